"""The speakers' shared heartbeat keys: parsing and validation (core ring, pure, standalone).

Place in the flow: Secret ``l2lb-memberlist`` (data key ``keys``, written by the Ansible role)
-> ``parse_keyring`` -> ``membership`` signs every heartbeat with every key and accepts a
heartbeat signed by any of them, so a rotation is: write [new, old], wait until every speaker
has loaded it, write [new]. Each speaker publishes the ids of the keys it has loaded (its
registration Lease, annotation ``KEY_IDS_ANNOTATION``), so that wait is a check, not a guess. The
Ansible modules validate the role's keys with this same code
(plugins/module_utils symlinks it), so a key the speakers would refuse never reaches the cluster.

Errors name a key by its position, never by its value (keys are secrets).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Any

SECRET_NAME = "l2lb-memberlist"
SECRET_KEY = "keys"
MAX_KEYS = 3
MIN_KEY_CHARS = 32
MAX_KEY_CHARS = 256
MAX_TEXT = 4096
_KEY = re.compile(r"[A-Za-z0-9+/=_-]+")
KEY_IDS_ANNOTATION = "l2lb.io/key-ids"  # on a speaker's registration Lease: the keys it has loaded
_KEY_ID_DOMAIN = b"l2lb-key\0"
_KEY_IDS = re.compile(rf"(?:[0-9a-f]{{8}}(?:,[0-9a-f]{{8}}){{0,{MAX_KEYS - 1}}})?")


class KeyringError(ValueError):
    """The keyring text is unusable; the message says which key and why, never the key."""


def parse_keyring(text: str) -> tuple[bytes, ...]:
    """Keys from newline-separated text (blank lines ignored), in order; raises KeyringError."""
    if not isinstance(text, str):
        raise KeyringError(f"keys: expected text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise KeyringError(f"keys: {len(text)} characters, at most {MAX_TEXT} allowed")
    keys = [line.strip() for line in text.splitlines() if line.strip()]
    if not keys:
        raise KeyringError("keys: no key given (need 1 to 3 keys, one per line)")
    if len(keys) > MAX_KEYS:
        raise KeyringError(f"keys: {len(keys)} keys given, at most {MAX_KEYS} (rotate by removing old ones)")
    for n, key in enumerate(keys, 1):
        if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
            raise KeyringError(f"keys[{n}]: {len(key)} characters, need {MIN_KEY_CHARS}-{MAX_KEY_CHARS} "
                               "(e.g. `openssl rand -base64 32`)")
        if not _KEY.fullmatch(key):
            raise KeyringError(f"keys[{n}]: only letters, digits and + / = _ - are allowed")
    if len(set(keys)) != len(keys):
        raise KeyringError("keys: the same key is listed twice")
    return tuple(k.encode() for k in keys)


def format_keyring(keys: list[str] | tuple[str, ...]) -> str:
    """The Secret's text for keys (validated): one per line."""
    text = "\n".join(keys) + "\n"
    parse_keyring(text)
    return text


def from_secret(secret: Mapping[str, Any]) -> tuple[bytes, ...]:
    """Keys from a Secret object as the API returns it (base64 ``data``); raises KeyringError."""
    raw = (secret.get("data") or {}).get(SECRET_KEY)
    if not isinstance(raw, str):
        raise KeyringError(f"Secret has no data key {SECRET_KEY!r}")
    try:
        text = base64.b64decode(raw, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise KeyringError(f"data.{SECRET_KEY}: not base64 of ASCII text") from None
    return parse_keyring(text)


@functools.lru_cache(maxsize=64)  # every heartbeat names each of its keys: hash each key once
def key_id(key: bytes) -> int:
    """The 32-bit id that names a key in every heartbeat and in a registration. It reveals nothing
    usable about the key (4 bytes of a domain-separated SHA-256), and it is on the LAN anyway."""
    return int.from_bytes(hashlib.sha256(_KEY_ID_DOMAIN + key).digest()[:4], "big")


def format_key_ids(ids: tuple[int, ...] | list[int]) -> str:
    """The annotation text for key ids, in keyring order ("" for none)."""
    return ",".join(f"{i:08x}" for i in ids)


def parse_key_ids(text: str) -> frozenset[int]:
    """Key ids from an annotation written by ``format_key_ids``; raises KeyringError."""
    if not isinstance(text, str) or not _KEY_IDS.fullmatch(text):
        raise KeyringError(f"{KEY_IDS_ANNOTATION}: {str(text)[:60]!r} is not up to {MAX_KEYS} "
                           "comma-separated 8-digit hex key ids")
    return frozenset(int(part, 16) for part in text.split(",") if part)
