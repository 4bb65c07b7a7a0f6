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

Hostile input is refused in bounded time and memory, before anything is built from it: text over
MAX_BYTES (1 MiB, the size of a ConfigMap), YAML aliases and anchors (alias bombs), nesting deeper
than MAX_DEPTH, duplicate mapping keys (YAML would keep the last one silently), custom tags, more
than one document. YAML is read as a stream of events (libyaml when present) into plain values
without recursion. Addresses that can never be a LoadBalancer IP (unspecified, whole space,
loopback, multicast, limited broadcast, IPv4-mapped IPv6, scoped) are refused; link-local
addresses load with a warning in `Config.warnings` (`node_warnings` adds the pools that cover a
node's address). Error messages are capped at MAX_MESSAGE characters. `pool_of` is a bisection
over the sorted ranges: O(log n) per lookup.
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
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
                    "addresses": {"type": "array", "minItems": 1,
                                  "items": {"type": "string", "minLength": 1, "maxLength": 100}},
                    "auto-assign": {"type": "boolean"},
                    "avoid-buggy-ips": {"type": "boolean"},
                },
            },
        },
    },
}
POOL_KEYS = ("name", "protocol", "addresses", "auto-assign", "avoid-buggy-ips")
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
MAX_BYTES = 1 << 20  # 1 MiB: the most a ConfigMap may hold
MAX_DEPTH = 16  # the real shape nests 4 deep
MAX_MESSAGE = 600  # characters of a ConfigError message; a value is shown up to MAX_VALUE
MAX_VALUE = 120


class ConfigError(ValueError):
    """An invalid config. `field` is a path like address-pools[1].addresses[0]."""

    def __init__(self, field: str, value: Any, message: str, pool: str | None = None) -> None:
        self.field, self.value, self.reason, self.pool = field, value, message, pool
        where = f"pool {_clip(repr(pool), MAX_VALUE)}: " if pool else ""
        shown = "" if value is _MISSING else f" = {_clip(repr(value), MAX_VALUE)}"
        super().__init__(_clip(f"{where}{_clip(field, MAX_VALUE)}{shown}: {message}", MAX_MESSAGE))


_MISSING = object()


def _clip(text: str, limit: int) -> str:
    """text cut to about limit characters, saying how long it was (a 1 MB value must not be logged)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


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
    # things that load but deserve an operator's look (link-local pools); not part of equality
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    # indexes built once: name -> pool; version -> sorted (start, end, pool) for bisection
    _by_name: dict[str, Pool] = dataclasses.field(init=False, repr=False, compare=False)
    _ranges: dict[int, tuple[list[int], list[tuple[int, Pool]]]] = dataclasses.field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in reversed(self.pools)})
        ranges: dict[int, tuple[list[int], list[tuple[int, Pool]]]] = {}
        for version in (4, 6):
            entries = sorted(((r.start, r.end, i) for i, p in enumerate(self.pools)
                              for r in p.addresses if r.version == version))
            ranges[version] = ([e[0] for e in entries], [(e[1], self.pools[e[2]]) for e in entries])
        object.__setattr__(self, "_ranges", ranges)

    def pool(self, name: str) -> Pool | None:
        return self._by_name.get(name)

    def pool_at(self, ip: IPAddress) -> Pool | None:
        """The pool whose ranges contain ip: the last range starting at or below ip, if it reaches."""
        starts, ends = self._ranges[ip.version]
        value = int(ip)
        i = bisect.bisect_right(starts, value) - 1
        return ends[i][1] if i >= 0 and ends[i][0] >= value else None


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
    try:
        doc = _parse(raw)
        _check_schema(doc)
        pools = tuple(_pool(i, p) for i, p in enumerate(doc["address-pools"]))
        _check_names(pools)
        _check_overlaps(pools)
    except RecursionError:  # a deep mapping given directly (text is depth-checked while read)
        raise ConfigError("config", _MISSING, "nested too deeply") from None
    warnings = tuple(w for i, p in enumerate(pools) for j, r in enumerate(p.addresses)
                     if (w := _link_local_warning(r, f"address-pools[{i}].addresses[{j}]", p.name)))
    return Config(pools=pools, warnings=warnings)


def _parse(raw: str | bytes | Mapping[str, Any] | None) -> Any:
    if isinstance(raw, bytes):
        if len(raw) > MAX_BYTES:
            raise _too_big(len(raw))
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError("config", _MISSING, f"not UTF-8 text: {exc}") from None
    if isinstance(raw, str):
        if len(raw) > MAX_BYTES or len(raw.encode("utf-8", "surrogatepass")) > MAX_BYTES:
            raise _too_big(len(raw.encode("utf-8", "surrogatepass")))
        raw = _read_yaml(raw)
    if raw is None:
        raise ConfigError("config", _MISSING, "is empty; expected a mapping with address-pools")
    return raw


def _too_big(size: int) -> ConfigError:
    return ConfigError("config", _MISSING, f"is {size} bytes; the limit is {MAX_BYTES} bytes (1 MiB)")


# -- YAML, read as events: no aliases, no anchors, no duplicate keys, bounded depth -------------

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed: 10x faster
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_STR = "tag:yaml.org,2002:str"
_PLAIN_TAGS = {None, "!", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "null")}


class _Frame:
    """A list or mapping being filled; `key` is the mapping key waiting for its value."""

    __slots__ = ("key", "lines", "path", "value")

    def __init__(self, value: list[Any] | dict[Any, Any], path: list[Any]) -> None:
        self.value, self.path, self.key = value, path, _MISSING
        self.lines: dict[Any, int] = {}  # mapping key -> line it was first seen on


def _read_yaml(text: str) -> Any:
    """One YAML document -> plain values, iteratively; every refusal is a ConfigError."""
    stack: list[_Frame] = []
    out: list[Any] = []
    docs = 0
    try:
        for ev in yaml.parse(text, Loader=_LOADER):
            cls = type(ev)
            if cls is yaml.ScalarEvent:
                if ev.anchor is not None:
                    _refuse_anchor(stack, ev)
                _add(stack, out, _scalar(ev, stack), ev)
            elif cls is yaml.MappingStartEvent or cls is yaml.SequenceStartEvent:
                _open(stack, ev)
            elif cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
                _add(stack, out, stack.pop().value, ev)
            elif cls is yaml.AliasEvent:
                _refuse_anchor(stack, ev)
            elif cls is yaml.DocumentStartEvent:
                docs += 1
                if docs > 1:
                    raise ConfigError("config", _MISSING, f"more than one YAML document (line {_line(ev)})")
    except yaml.YAMLError as exc:
        raise ConfigError("config", _MISSING, f"not valid YAML: {_clip(str(exc), 300)}") from None
    except RecursionError:
        raise ConfigError("config", _MISSING, "nested too deeply") from None
    return out[0] if out else None


def _refuse_anchor(stack: list[_Frame], ev: Any) -> None:
    kind = "aliases (*" if isinstance(ev, yaml.AliasEvent) else "anchors (&"
    raise ConfigError(_here(stack), _MISSING, f"YAML {kind}{_clip(str(ev.anchor), 40)}) are not allowed "
                      f"(line {_line(ev)}); write the values out")


def _open(stack: list[_Frame], ev: Any) -> None:
    if ev.anchor is not None:
        _refuse_anchor(stack, ev)
    if ev.tag not in _PLAIN_TAGS:
        raise ConfigError(_here(stack), ev.tag, f"YAML tags are not allowed (line {_line(ev)})")
    if len(stack) >= MAX_DEPTH:
        raise ConfigError(_here(stack), _MISSING, f"nested deeper than {MAX_DEPTH} levels (line {_line(ev)})")
    path = _child_path(stack, ev) if stack else []
    stack.append(_Frame([] if isinstance(ev, yaml.SequenceStartEvent) else {}, path))


def _here(stack: list[_Frame]) -> str:
    """The field path of the next value: list index or the waiting mapping key."""
    if not stack:
        return "config"
    top = stack[-1]
    if isinstance(top.value, list):
        return _path([*top.path, len(top.value)])
    return _path(top.path if top.key is _MISSING else [*top.path, top.key])


def _line(ev: Any) -> int:
    return ev.start_mark.line + 1 if ev.start_mark is not None else 0


def _child_path(stack: list[_Frame], ev: Any) -> list[Any]:
    top = stack[-1]
    if isinstance(top.value, list):
        return [*top.path, len(top.value)]
    if top.key is _MISSING:
        raise ConfigError(_path(top.path), _MISSING, f"a mapping key must be text (line {_line(ev)})")
    return [*top.path, top.key]


def _scalar(ev: Any, stack: list[_Frame]) -> Any:
    tag = ev.tag
    if tag is None:
        tag = _RESOLVER.resolve(yaml.ScalarNode, ev.value, ev.implicit)
    if tag == _STR or tag == "!":
        return ev.value
    if tag == "tag:yaml.org,2002:merge":
        raise ConfigError(_here(stack), ev.value, f"YAML merge keys are not allowed (line {_line(ev)})")
    if tag not in _SCALAR_TAGS:
        raise ConfigError(_here(stack), _clip(ev.value, MAX_VALUE), f"YAML tag {_clip(tag, 60)} is not "
                          f"allowed (line {_line(ev)})")
    try:  # int, float, bool, null: built by PyYAML's safe constructor from one scalar
        return _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, ev.value))
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise ConfigError(_here(stack), ev.value, f"bad {tag.rsplit(':', 1)[-1]} (line {_line(ev)}): "
                          f"{_clip(str(exc), 100)}") from None


def _add(stack: list[_Frame], out: list[Any], value: Any, ev: Any) -> None:
    if not stack:
        out.append(value)
        return
    top = stack[-1]
    if isinstance(top.value, list):
        top.value.append(value)
    elif top.key is _MISSING:
        if not isinstance(value, str):
            raise ConfigError(_path(top.path), _clip(repr(value), MAX_VALUE), "a mapping key must be "
                              f"text (line {_line(ev)})")
        if value in top.lines:
            raise ConfigError(_path([*top.path, value]), _MISSING, f"duplicate key (line {_line(ev)}; first "
                              f"on line {top.lines[value]}); YAML would silently keep only the last one")
        top.lines[value] = _line(ev)
        top.key = value
    else:
        top.value[top.key] = value
        top.key = _MISSING


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


_KEYWORDS = {"$schema", "type", "additionalProperties", "required", "properties", "items", "pattern",
             "minLength", "maxLength", "minItems"}


def _fits(schema: Mapping[str, Any], value: Any) -> bool:
    """SCHEMA's keywords evaluated directly: jsonschema's answer at a tenth of the cost for the
    valid case (20,000 pools); jsonschema itself still explains every failure. A test holds the
    two equal; a keyword not handled here is an error at import."""
    if "type" in schema and not _VALIDATOR.is_type(value, schema["type"]):
        return False
    if isinstance(value, str):
        return (schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value))
                and ("pattern" not in schema or re.search(schema["pattern"], value) is not None))
    if isinstance(value, list):
        items = schema.get("items", {})
        return len(value) >= schema.get("minItems", 0) and all(_fits(items, v) for v in value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if not all(k in value for k in schema.get("required", ())):
            return False
        if schema.get("additionalProperties") is False and not all(k in props for k in value):
            return False
        return all(_fits(props[k], v) for k, v in value.items() if k in props)
    return True


def _keywords(schema: Mapping[str, Any]) -> set[str]:
    subs = [*schema.get("properties", {}).values(), *([schema["items"]] if "items" in schema else [])]
    return set(schema).union(*(_keywords(sub) for sub in subs))


assert _keywords(SCHEMA) <= _KEYWORDS, "config._fits must learn the new schema keywords"


def _check_schema(doc: Any) -> None:
    if _fits(SCHEMA, doc):
        return
    errors = sorted(_VALIDATOR.iter_errors(doc),
                    key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in e.absolute_path])
    if not errors:
        return
    err = errors[0]
    parts = list(err.absolute_path)
    pool = _pool_name_at(doc, parts)
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted((k for k in err.instance if k not in err.schema.get("properties", {})), key=str)
        raise ConfigError(_path([*parts, extra[0]]), err.instance[extra[0]], f"unknown key "
                          f"{_clip(repr(extra[0]), MAX_VALUE)} (allowed: {', '.join(allowed)})", pool)
    if err.validator == "required":
        raise ConfigError(_path(parts), _MISSING, err.message.replace("property", "key"), pool)
    if err.validator == "pattern":
        raise ConfigError(_path(parts), err.instance, "must be non-empty, without spaces or commas", pool)
    if err.validator == "minItems":
        raise ConfigError(_path(parts), err.instance, "a pool needs at least one address (an empty pool "
                          "is refused, as MetalLB does)", pool)
    if err.validator == "minLength":
        raise ConfigError(_path(parts), err.instance, "must not be empty", pool)
    if err.validator == "maxLength":
        raise ConfigError(_path(parts), err.instance, f"longer than {err.validator_value} characters", pool)
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


# character categories never allowed in a pool name: control, format (zero-width), surrogate,
# private use, unassigned, separators
_BAD_CATEGORIES = {"Cc": "control", "Cf": "invisible format", "Cs": "surrogate", "Co": "private-use",
                   "Cn": "unassigned", "Zs": "space", "Zl": "line separator", "Zp": "paragraph separator"}


def _check_name(name: str, where: str) -> None:
    for ch in name:
        kind = _BAD_CATEGORIES.get(unicodedata.category(ch))
        if kind:
            raise ConfigError(f"{where}.name", name, f"contains U+{ord(ch):04X} ({kind} character); "
                              "use visible characters only")


def _pool(index: int, raw: Mapping[str, Any]) -> Pool:
    name = raw["name"]
    where = f"address-pools[{index}]"
    _check_name(name, where)
    protocol = raw.get("protocol", "layer2")
    if protocol == "bgp":
        raise ConfigError(f"{where}.protocol", protocol, "bgp is not supported (layer2 only)", name)
    if protocol != "layer2":
        raise ConfigError(f"{where}.protocol", protocol, "unknown protocol; expected layer2", name)
    ranges = tuple(parse_address(a, f"{where}.addresses[{j}]", name) for j, a in enumerate(raw["addresses"]))
    return Pool(name=name, protocol=protocol, addresses=ranges,
                auto_assign=raw.get("auto-assign", True), avoid_buggy_ips=raw.get("avoid-buggy-ips", False))


def parse_address(text: str, field: str = "address", pool: str | None = None) -> AddressRange:
    """One pool entry: CIDR, "start-end" range or a single IP; refuses addresses no LB may have."""
    s = text.strip()
    if "%" in s:
        raise ConfigError(field, text, "scoped IPv6 addresses (%zone) cannot be LoadBalancer IPs; "
                          "drop the %zone", pool)
    try:
        if "-" in s:
            r = _range(text, s, field, pool)
        elif "/" in s:
            r = _cidr(text, s, field, pool)
        else:
            ip = ipaddress.ip_address(s)
            r = AddressRange(version=ip.version, start=int(ip), end=int(ip), text=str(ip))
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(field, text, f"not an IP address, CIDR or range: {_clip(str(exc), 100)}",
                          pool) from None
    _check_usable(r, text, field, pool)
    return r


def _net(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address), int(net.broadcast_address)


# ((version, first, last), block, why no LoadBalancer IP can be there)
_NEVER = [(_net(c), c, why) for c, why in (
    ("0.0.0.0/32", "the unspecified address"), ("127.0.0.0/8", "loopback"), ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "the limited broadcast address"), ("::/128", "the unspecified address"),
    ("::1/128", "loopback"), ("ff00::/8", "multicast"),
    ("::ffff:0:0/96", "IPv4-mapped IPv6 (write the IPv4 address in an IPv4 pool)"))]
_LINK_LOCAL = [(_net(c), c) for c in ("169.254.0.0/16", "fe80::/10")]


def _check_usable(r: AddressRange, text: str, field: str, pool: str | None) -> None:
    if r.start == 0 and r.end == (1 << (32 if r.version == 4 else 128)) - 1:
        raise ConfigError(field, text, f"covers the whole IPv{r.version} address space (a default "
                          "route), not a pool", pool)
    make = ipaddress.IPv4Address if r.version == 4 else ipaddress.IPv6Address
    for (version, lo, hi), block, why in _NEVER:
        if version == r.version and r.start <= hi and lo <= r.end:
            raise ConfigError(field, text, f"contains {make(max(lo, r.start))}: {why} ({block}) can never "
                              "be a LoadBalancer IP", pool)


def _link_local_warning(r: AddressRange, field: str, pool: str) -> str | None:
    for (version, lo, hi), cidr in _LINK_LOCAL:
        if version == r.version and r.start <= hi and lo <= r.end:
            return (f"pool {pool!r}: {field} = {r.text!r} is link-local ({cidr}): routers do not "
                    "forward it, so only this LAN can reach it")
    return None


def _range(text: str, s: str, field: str, pool: str | None) -> AddressRange:
    a_txt, _sep, b_txt = s.partition("-")
    a, b = ipaddress.ip_address(a_txt.strip()), ipaddress.ip_address(b_txt.strip())
    if a.version != b.version:
        raise ConfigError(field, text, f"range mixes IPv{a.version} {a} and IPv{b.version} {b}", pool)
    if int(a) > int(b):
        raise ConfigError(field, text, f"range start {a} is after its end {b}", pool)
    return AddressRange(version=a.version, start=int(a), end=int(b), text=f"{a}-{b}")


def _cidr(text: str, s: str, field: str, pool: str | None) -> AddressRange:
    addr, _sep, plen = s.partition("/")
    if plen.isascii() and plen.isdigit() and len(plen) <= 3:  # the common form, without building a network
        ip = ipaddress.ip_address(addr)
        host = (1 << (ip.max_prefixlen - int(plen))) - 1 if int(plen) <= ip.max_prefixlen else -1
        if host >= 0 and not int(ip) & host:
            return AddressRange(version=ip.version, start=int(ip), end=int(ip) | host,
                                text=f"{ip}/{int(plen)}")
    try:  # netmask forms, bad prefixes and host bits: ipaddress explains
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
    """The pool whose ranges contain ip, or None (pools never overlap, so at most one); O(log n)."""
    addr = _as_ip(ip)
    return None if addr is None else config.pool_at(addr)


def node_warnings(config: Config, node_ips: Iterable[tuple[str, str]]) -> list[str]:
    """Warnings for pools covering a node's own address; node_ips is (node name, InternalIP)."""
    out = []
    for node, ip in node_ips:
        pool = pool_of(config, ip)
        if pool is not None:
            out.append(f"pool {pool.name!r} contains {ip}, the InternalIP of node {node!r}: a Service "
                       "given it would take the node's address")
    return out


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
