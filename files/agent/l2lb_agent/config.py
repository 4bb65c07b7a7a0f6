"""The pools config model: the one definition of l2lb's `address-pools` configuration.

Core ring (pure). Flow: inventory / ConfigMap text -> `load_config(raw)` -> `Config`, used by
the controller (allocation), the speaker and the Ansible modules alike
(plugins/module_utils/l2lb_config.py is a symlink to this file, so it imports only the standard
library, jsonschema and yaml, and nothing else of the agent).

Shape (the seed tutorial's):

    address-pools:
    - name: my-ip-space
      protocol: layer2          # the only protocol; "bgp" is refused as not supported
      addresses:                # CIDR, "start-end" range (spaces trimmed) or single IP; v4 or v6
      - 192.168.1.240/28
      auto-assign: true         # default true
      avoid-buggy-ips: false    # default false; skips IPv4 addresses ending in .0 and .255

Checks: JSON Schema first (types, unknown keys), then semantics (address syntax, range order,
mixed families, duplicate names, overlaps within and across pools, protocol). Every failure is
a `ConfigError` carrying the field path (`address-pools[1].addresses[0]`), the value, and a
message naming the pool. Ranges are kept as integer bounds, never enumerated, so a /8 or an
IPv6 /64 costs the same as a /30.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import yaml

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["address-pools"],
    "properties": {
        "address-pools": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "addresses"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^[^\s,]+$", "maxLength": 253},
                    "protocol": {"type": "string"},
                    "addresses": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "auto-assign": {"type": "boolean"},
                    "avoid-buggy-ips": {"type": "boolean"},
                },
            },
        },
    },
}
POOL_KEYS = ("name", "protocol", "addresses", "auto-assign", "avoid-buggy-ips")
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class ConfigError(ValueError):
    """An invalid config. `field` is a path like address-pools[1].addresses[0]."""

    def __init__(self, field: str, value: Any, message: str, pool: str | None = None) -> None:
        self.field, self.value, self.reason, self.pool = field, value, message, pool
        where = f"pool {pool!r}: " if pool else ""
        shown = "" if value is _MISSING else f" = {value!r}"
        super().__init__(f"{where}{field}{shown}: {message}")


_MISSING = object()


@dataclass(frozen=True, kw_only=True)
class AddressRange:
    """An inclusive range of addresses of one family, as integers; `text` is the canonical form."""

    version: int  # 4 or 6
    start: int
    end: int
    text: str

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, IPAddress) and ip.version == self.version and self.start <= int(ip) <= self.end


@dataclass(frozen=True, kw_only=True)
class Pool:
    name: str
    protocol: str = "layer2"
    addresses: tuple[AddressRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False

    def contains(self, ip: str | IPAddress) -> bool:
        """True when ip is in one of the pool's ranges (avoid-buggy-ips not considered)."""
        addr = _as_ip(ip)
        return addr is not None and any(addr in r for r in self.addresses)

    def usable(self, ip: str | IPAddress) -> bool:
        """True when the pool may hand out ip: in a range and not skipped by avoid-buggy-ips."""
        addr = _as_ip(ip)
        return addr is not None and self.contains(addr) and not (self.avoid_buggy_ips and is_buggy(addr))

    def families(self) -> frozenset[int]:
        return frozenset(r.version for r in self.addresses)

    def size(self, version: int | None = None) -> int:
        """How many addresses the pool can hand out (of one family, or all)."""
        return sum(usable_count(r, self.avoid_buggy_ips) for r in self.addresses
                   if version is None or r.version == version)


@dataclass(frozen=True, kw_only=True)
class Config:
    pools: tuple[Pool, ...] = ()

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)


def is_buggy(ip: IPAddress) -> bool:
    """IPv4 addresses ending in .0 or .255, which some old clients mistake for broadcast."""
    return ip.version == 4 and int(ip) & 0xFF in (0, 255)


def usable_count(r: AddressRange, avoid_buggy: bool) -> int:
    if not avoid_buggy or r.version != 4:
        return r.size

    # subtract x in [start, end] with x % 256 == 0 or 255, counted arithmetically
    def count(rem: int) -> int:
        return (r.end - rem) // 256 - (r.start - 1 - rem) // 256

    return r.size - count(0) - count(255)


def _as_ip(ip: str | IPAddress) -> IPAddress | None:
    if isinstance(ip, IPAddress):
        return ip
    try:
        return ipaddress.ip_address(str(ip).strip())
    except ValueError:
        return None


# -- loading --------------------------------------------------------------------------------

def load_config(raw: str | bytes | Mapping[str, Any] | None) -> Config:
    """Parse YAML text or a mapping, validate (schema, then semantics), return a frozen Config."""
    doc = _parse(raw)
    _check_schema(doc)
    pools = tuple(_pool(i, p) for i, p in enumerate(doc["address-pools"]))
    _check_names(pools)
    _check_overlaps(pools)
    return Config(pools=pools)


def _parse(raw: str | bytes | Mapping[str, Any] | None) -> Any:
    if isinstance(raw, str | bytes):
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError("config", _MISSING, f"not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError("config", _MISSING, "is empty; expected a mapping with address-pools")
    return raw


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def _check_schema(doc: Any) -> None:
    errors = sorted(_VALIDATOR.iter_errors(doc),
                    key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in e.absolute_path])
    if not errors:
        return
    err = errors[0]
    parts = list(err.absolute_path)
    pool = _pool_name_at(doc, parts)
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(str(k) for k in err.instance if k not in err.schema.get("properties", {}))
        raise ConfigError(_path([*parts, extra[0]]), err.instance[extra[0]],
                          f"unknown key {extra[0]!r} (allowed: {', '.join(allowed)})", pool)
    if err.validator == "required":
        raise ConfigError(_path(parts), _MISSING, err.message.replace("property", "key"), pool)
    if err.validator == "pattern":
        raise ConfigError(_path(parts), err.instance, "must be non-empty, without spaces or commas", pool)
    if err.validator == "type":
        raise ConfigError(_path(parts), err.instance,
                          f"expected {err.validator_value}, got {type(err.instance).__name__}", pool)
    raise ConfigError(_path(parts), err.instance, err.message, pool)


def _pool_name_at(doc: Any, parts: list[Any]) -> str | None:
    if len(parts) >= 2 and parts[0] == "address-pools" and isinstance(parts[1], int):
        entry = doc["address-pools"][parts[1]]
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            return entry["name"]
    return None


def _pool(index: int, raw: Mapping[str, Any]) -> Pool:
    name = raw["name"]
    where = f"address-pools[{index}]"
    protocol = raw.get("protocol", "layer2")
    if protocol == "bgp":
        raise ConfigError(f"{where}.protocol", protocol, "bgp is not supported (layer2 only)", name)
    if protocol != "layer2":
        raise ConfigError(f"{where}.protocol", protocol, "unknown protocol; expected layer2", name)
    ranges = tuple(parse_address(a, f"{where}.addresses[{j}]", name) for j, a in enumerate(raw["addresses"]))
    return Pool(name=name, protocol=protocol, addresses=ranges,
                auto_assign=raw.get("auto-assign", True), avoid_buggy_ips=raw.get("avoid-buggy-ips", False))


def parse_address(text: str, field: str = "address", pool: str | None = None) -> AddressRange:
    """One pool entry: CIDR, "start-end" range or a single IP."""
    s = text.strip()
    try:
        if "-" in s:
            return _range(text, s, field, pool)
        if "/" in s:
            return _cidr(text, s, field, pool)
        ip = ipaddress.ip_address(s)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(field, text, f"not an IP address, CIDR or range: {exc}", pool) from None
    return AddressRange(version=ip.version, start=int(ip), end=int(ip), text=str(ip))


def _range(text: str, s: str, field: str, pool: str | None) -> AddressRange:
    a_txt, _sep, b_txt = s.partition("-")
    a, b = ipaddress.ip_address(a_txt.strip()), ipaddress.ip_address(b_txt.strip())
    if a.version != b.version:
        raise ConfigError(field, text, f"range mixes IPv{a.version} {a} and IPv{b.version} {b}", pool)
    if int(a) > int(b):
        raise ConfigError(field, text, f"range start {a} is after its end {b}", pool)
    return AddressRange(version=a.version, start=int(a), end=int(b), text=f"{a}-{b}")


def _cidr(text: str, s: str, field: str, pool: str | None) -> AddressRange:
    try:
        net = ipaddress.ip_network(s, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = ipaddress.ip_network(s, strict=False)
            raise ConfigError(field, text, f"host bits set; did you mean {fixed}?", pool) from None
        raise
    return AddressRange(version=net.version, start=int(net.network_address),
                        end=int(net.broadcast_address), text=str(net))


def _check_names(pools: tuple[Pool, ...]) -> None:
    seen: dict[str, int] = {}
    for i, p in enumerate(pools):
        if p.name in seen:
            raise ConfigError(f"address-pools[{i}].name", p.name,
                              f"duplicate pool name (also address-pools[{seen[p.name]}])", p.name)
        seen[p.name] = i


def _check_overlaps(pools: tuple[Pool, ...]) -> None:
    """Sweep the ranges sorted by start; any range starting before the previous max end overlaps."""
    entries = sorted(
        ((r.version, r.start, r.end, i, j, p.name, r.text)
         for i, p in enumerate(pools) for j, r in enumerate(p.addresses)),
    )
    prev = None
    for cur in entries:
        if prev is not None and cur[0] == prev[0] and cur[1] <= prev[2]:
            _raise_overlap(prev, cur)
        if prev is None or cur[0] != prev[0] or cur[2] > prev[2]:
            prev = cur


def _raise_overlap(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    version, lo, hi = a[0], max(a[1], b[1]), min(a[2], b[2])
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    common = str(make(lo)) if lo == hi else f"{make(lo)}-{make(hi)}"
    # report at the later entry in config order, naming the earlier one
    first, second = sorted((a, b), key=lambda e: (e[3], e[4]))
    where = "the same pool" if first[5] == second[5] else f"pool {first[5]!r}"
    raise ConfigError(
        f"address-pools[{second[3]}].addresses[{second[4]}]", second[6],
        f"overlaps {first[6]!r} of {where} (address-pools[{first[3]}].addresses[{first[4]}]): "
        f"{common} in both", second[5])


# -- helpers for the Ansible modules and the agent -------------------------------------------

def pool_of(config: Config, ip: str | IPAddress) -> Pool | None:
    """The pool whose ranges contain ip, or None (pools never overlap, so at most one)."""
    return next((p for p in config.pools if p.contains(ip)), None)


def contains(config: Config, ip: str | IPAddress) -> bool:
    return pool_of(config, ip) is not None


def to_dict(config: Config) -> dict[str, Any]:
    """Canonical plain form: every key explicit, addresses normalized."""
    return {"address-pools": [
        {"name": p.name, "protocol": p.protocol, "addresses": [r.text for r in p.addresses],
         "auto-assign": p.auto_assign, "avoid-buggy-ips": p.avoid_buggy_ips}
        for p in config.pools
    ]}


def to_yaml(config: Config | str | Mapping[str, Any]) -> str:
    """Canonical YAML (validates raw input first), stable for diffs and ConfigMap data."""
    cfg = config if isinstance(config, Config) else load_config(config)
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
