# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The speakers' heartbeat keys: what to write to the Secret `l2lb-memberlist`, and in what steps.

Place in the flow: l2lb_memberlist module -> **memberlist (here)** -> k8s_apply. Pure: key texts
in, a plan and Secret dicts out. Keys are validated by the agent's own parser (l2lb_keyring is a
symlink to l2lb_agent/keyring.py). Every key signs every heartbeat and any key is accepted, so
two speakers understand each other while their keyrings share a key; a change to a keyring that
shares no key with the live one therefore goes through a bridge (new keys plus one live key),
written first, and the final keyring only after the speakers have loaded the bridge: each speaker
publishes the ids of the keys it holds on its registration Lease, and `lagging_speakers` says
which of them would stop trusting their peers if a keyring were written now.
Nothing here ever puts a key into a message, a return value or a diff: only fingerprints.
It does not wait or talk to the cluster (the module does).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import secrets
import typing as t

from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_keyring, render, status

SECRET_NAME = l2lb_keyring.SECRET_NAME
SECRET_KEY = l2lb_keyring.SECRET_KEY
GENERATED_KEY_BYTES = 32  # base64: 44 characters, inside the keyring's 32-256


class Action(enum.StrEnum):
    KEEP = "keep"  # live keyring stays (no keys given, or the same keys)
    GENERATE = "generate"  # no Secret and no keys given: one random key
    WRITE = "write"  # new keys share a key with the live ones (or nothing usable is live): one write
    ROTATE = "rotate"  # no shared key: bridge, wait, final


@dataclasses.dataclass(frozen=True)
class Plan:
    action: Action
    steps: tuple[tuple[str, ...], ...]  # keyrings to write, in order (empty for KEEP)


class MemberlistError(ValueError):
    """Keys unusable, or the live Secret unusable with no keys given; names no key value."""


def generate_key() -> str:
    return base64.b64encode(secrets.token_bytes(GENERATED_KEY_BYTES)).decode("ascii")


def fingerprint(key: str) -> str:
    """Safe to show: identifies a key without revealing it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def check_keys(keys: t.Sequence[str]) -> tuple[str, ...]:
    """The given keys, stripped, validated by the agent's parser. Raises MemberlistError."""
    cleaned = tuple(str(key).strip() for key in keys)
    try:
        l2lb_keyring.format_keyring(cleaned)
    except l2lb_keyring.KeyringError as error:
        raise MemberlistError(f"memberlist_keys (l2lb_memberlist_keys): {error}") from None
    return cleaned


def live_keys(secret: t.Mapping[str, t.Any] | None) -> tuple[tuple[str, ...] | None, str | None]:
    """(keys, None) from a usable live Secret; (None, why) when it is absent or unusable."""
    if secret is None:
        return None, "absent"
    raw = (secret.get("data") or {}).get(SECRET_KEY)
    if raw is None:
        return None, f"has no data key {SECRET_KEY!r}"
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
        keys = l2lb_keyring.parse_keyring(text)
    except (binascii.Error, UnicodeDecodeError):
        return None, f"data key {SECRET_KEY!r} is not base64 of UTF-8 text"
    except l2lb_keyring.KeyringError as error:
        return None, str(error)
    return tuple(key.decode() for key in keys), None


def plan(live: tuple[str, ...] | None, live_problem: str | None,
         wanted: tuple[str, ...] | None) -> Plan:
    """What to write. live: usable live keys or None; wanted: the role's keys or None (unset)."""
    if wanted is None:
        if live is not None:
            return Plan(Action.KEEP, ())
        if live_problem == "absent":
            return Plan(Action.GENERATE, ((generate_key(),),))
        raise MemberlistError(
            f"Secret {SECRET_NAME} {live_problem}: the speakers cannot use it and stay silent. Set "
            f"l2lb_memberlist_keys to replace it, or delete the Secret to have a new key generated")
    if live == wanted:
        return Plan(Action.KEEP, ())
    if live is None or set(live) & set(wanted):
        return Plan(Action.WRITE, (wanted,))
    return Plan(Action.ROTATE, (bridge(live, wanted), wanted))


def bridge(live: tuple[str, ...], wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The wanted keys plus live ones, at most MAX_KEYS, always holding a key of each side."""
    if len(wanted) < l2lb_keyring.MAX_KEYS:
        return (*wanted, *[key for key in live if key not in wanted])[:l2lb_keyring.MAX_KEYS]
    return (*wanted[:l2lb_keyring.MAX_KEYS - 1], live[0])


def node_ready(node: t.Mapping[str, t.Any] | None) -> bool:
    """Whether a Node (None: gone) has its Ready condition True."""
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def lagging_speakers(registrations: t.Iterable[t.Mapping[str, t.Any]], ready: t.Callable[[str], bool],
                     keys: t.Sequence[str]) -> list[str]:
    """One line per speaker that would stop trusting its peers if `keys` were written now: on a
    Ready node, it has published keys and none of them is in `keys` (or it has not said yet).
    Speakers holding no key (silent, they take whatever is written) and those on Nodes that are not
    Ready (they load the Secret when they come back) do not hold a rotation up; `ready(node)` is
    asked only about a speaker that would otherwise."""
    wanted = {l2lb_keyring.key_id(key.encode()) for key in keys}
    lines = []
    for lease in registrations:
        meta = lease.get("metadata") or {}
        node = (meta.get("labels") or {}).get(status.NODE_LABEL)
        why = _lags(node, (meta.get("annotations") or {}).get(l2lb_keyring.KEY_IDS_ANNOTATION), wanted)
        if why is not None and ready(node):
            lines.append(why)
    return sorted(lines)


def _lags(node: str, raw: str | None, wanted: set[int]) -> str | None:
    """Why the speaker of `node`, publishing `raw` key ids, would lose its peers (None: it would not)."""
    if raw is None:
        return f"{node}: its speaker has not published its keys yet"
    try:
        held = l2lb_keyring.parse_key_ids(raw)
    except l2lb_keyring.KeyringError as error:
        return f"{node}: {error}"
    if held and not held & wanted:
        return f"{node}: its speaker holds only key ids {raw}, none of the keys to be written"
    return None


def secret(namespace: str, keys: t.Sequence[str]) -> dict[str, t.Any]:
    text = l2lb_keyring.format_keyring(tuple(keys))
    meta = render.common_labels()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": {
            **meta, "app.kubernetes.io/component": render.SPEAKER}},
        "data": {SECRET_KEY: base64.b64encode(text.encode()).decode("ascii")},
    }


def redacted(obj: t.Mapping[str, t.Any] | None) -> dict[str, t.Any] | None:
    """The Secret with each key replaced by its fingerprint (for diffs and return values)."""
    if obj is None:
        return None
    shown = dict(obj)
    keys, problem = live_keys(obj)
    data = dict(obj.get("data") or {})
    if SECRET_KEY in data:
        data[SECRET_KEY] = [fingerprint(k) for k in keys] if keys is not None else f"(unusable: {problem})"
    shown["data"] = {name: value if name == SECRET_KEY else "(hidden)" for name, value in data.items()}
    return shown
