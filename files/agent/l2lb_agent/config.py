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
      # extensions, with MetalLB's names (L2Advertisement, IPAddressPool.serviceAllocation), all optional:
      node-selectors:           # Kubernetes label selectors, ORed; absent or [] = every node
      - matchLabels: {rack: a}  #   (within one selector, every label and expression must hold)
        matchExpressions: [{key: zone, operator: In, values: [x, y]}]  # In, NotIn, Exists, DoesNotExist
      interfaces: [eth0, "ens*"]  # names or fnmatch globs; absent = subnet-aware (the speaker's choice)
      service-allocation:       # who may use the pool; absent = every Service
        priority: 10            # lower = preferred among auto-assign pools; absent = after all numbered
        namespaces: [team-a]    # namespaces and namespace-selectors are ORed with each other,
        namespace-selectors: [{matchLabels: {team: a}}]  # and ANDed with service-selectors
        service-selectors: [{matchExpressions: [{key: app, operator: Exists}]}]

Checks: JSON Schema first (types, unknown keys, list caps), then semantics (address syntax, range
order, mixed families, duplicate names, overlaps within and across pools, protocol, label keys and
values, selector operators, namespace and interface names, priority range). Every failure is
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
over the sorted ranges: O(log n) per lookup. Every list of the extensions is capped (MAX_SELECTORS,
MAX_EXPRESSIONS, MAX_LABELS, MAX_VALUES, MAX_INTERFACES, MAX_NAMESPACES), so a selector match costs
a bounded amount even for a mapping handed over directly.
"""

from __future__ import annotations

import bisect
import dataclasses
import fnmatch
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import yaml

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_SELECTORS = 32  # label selectors in one list
MAX_EXPRESSIONS = 32  # matchExpressions of one selector
MAX_LABELS = 64  # matchLabels entries of one selector
MAX_VALUES = 256  # values of one expression
MAX_INTERFACES = 64
MAX_NAMESPACES = 1024
_SELECTORS: dict[str, Any] = {
    "type": "array", "maxItems": MAX_SELECTORS,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "matchLabels": {"type": "object"},  # keys and values are checked as Kubernetes does
            "matchExpressions": {
                "type": "array", "maxItems": MAX_EXPRESSIONS,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string"},
                        "operator": {"type": "string"},
                        "values": {"type": "array", "maxItems": MAX_VALUES, "items": {"type": "string"}},
                    },
                },
            },
        },
    },
}
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
                    "node-selectors": _SELECTORS,
                    "interfaces": {"type": "array", "maxItems": MAX_INTERFACES,
                                   "items": {"type": "string", "minLength": 1, "maxLength": 64}},
                    "service-allocation": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "priority": {"type": "integer"},
                            "namespaces": {"type": "array", "maxItems": MAX_NAMESPACES,
                                           "items": {"type": "string", "minLength": 1, "maxLength": 63}},
                            "namespace-selectors": _SELECTORS,
                            "service-selectors": _SELECTORS,
                        },
                    },
                },
            },
        },
    },
}
POOL_KEYS = ("name", "protocol", "addresses", "auto-assign", "avoid-buggy-ips", "node-selectors",
             "interfaces", "service-allocation")
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
MAX_BYTES = 1 << 20  # 1 MiB: the most a ConfigMap may hold
MAX_DEPTH = 16  # the real shape nests 9 deep (a selector's expression values)
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


OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry; `values` is empty for Exists and DoesNotExist."""

    key: str
    operator: str  # one of OPERATORS
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":  # as Kubernetes: a missing label is "not in"
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels

    def __str__(self) -> str:
        if self.operator in ("In", "NotIn"):
            return f"{self.key} {self.operator.lower()} ({','.join(self.values)})"
        return self.key if self.operator == "Exists" else f"!{self.key}"


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector: every label and every expression must hold; empty = everything."""

    match_labels: tuple[tuple[str, str], ...] = ()  # (key, value), sorted by key
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (all(labels.get(k) == v for k, v in self.match_labels)
                and all(r.matches(labels) for r in self.match_expressions))

    def __str__(self) -> str:
        """Kubernetes' selector syntax (kubectl -l), e.g. `rack=a,zone in (x,y)`."""
        parts = [f"{k}={v}" for k, v in self.match_labels] + [str(r) for r in self.match_expressions]
        return ",".join(parts) or "(everything)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [{"key": r.key, "operator": r.operator,
                                        **({"values": list(r.values)} if r.values else {})}
                                       for r in self.match_expressions]
        return out


@dataclass(frozen=True)
class ServiceAllocation:
    """Who may use a pool, and its preference among pools (MetalLB's serviceAllocation)."""

    priority: int | None = None  # lower is preferred; None = after every numbered pool
    namespaces: tuple[str, ...] = ()
    namespace_selectors: tuple[LabelSelector, ...] = ()
    service_selectors: tuple[LabelSelector, ...] = ()

    def admits(self, namespace: str, ns_labels: Mapping[str, str],
               svc_labels: Mapping[str, str]) -> str | None:
        """None when a Service of namespace with svc_labels may use the pool, else the refusing rule.
        The namespace rules are ORed with each other (either admits); service-selectors must hold too."""
        if (self.namespaces or self.namespace_selectors) and not (
                namespace in self.namespaces or any(s.matches(ns_labels) for s in self.namespace_selectors)):
            return _clip(self._namespace_refusal(namespace, ns_labels), MAX_MESSAGE)
        if self.service_selectors and not any(s.matches(svc_labels) for s in self.service_selectors):
            return _clip(f"Service labels {_labels_text(svc_labels)} match no service-allocation."
                         f"service-selectors [{'; '.join(map(str, self.service_selectors))}]", MAX_MESSAGE)
        return None

    def _namespace_refusal(self, namespace: str, ns_labels: Mapping[str, str]) -> str:
        parts = []
        if self.namespaces:
            parts.append(f"is not in service-allocation.namespaces [{', '.join(self.namespaces)}]")
        if self.namespace_selectors:
            parts.append(f"has labels {_labels_text(ns_labels)} matching no service-allocation."
                         f"namespace-selectors [{'; '.join(map(str, self.namespace_selectors))}]")
        return f"namespace {namespace} " + " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.priority is not None:
            out["priority"] = self.priority
        if self.namespaces:
            out["namespaces"] = list(self.namespaces)
        if self.namespace_selectors:
            out["namespace-selectors"] = [s.to_dict() for s in self.namespace_selectors]
        if self.service_selectors:
            out["service-selectors"] = [s.to_dict() for s in self.service_selectors]
        return out


def _labels_text(labels: Mapping[str, str]) -> str:
    return _clip("{" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}", 200)


@dataclass(frozen=True, kw_only=True)
class Pool:
    name: str
    protocol: str = "layer2"
    addresses: tuple[AddressRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    node_selectors: tuple[LabelSelector, ...] = ()  # ORed; () = every node
    interfaces: tuple[str, ...] = ()  # names or fnmatch globs; () = subnet-aware (speaker's choice)
    service_allocation: ServiceAllocation | None = None

    def node_matches(self, labels: Mapping[str, str]) -> bool:
        """True when a node with these labels may announce the pool's addresses."""
        return not self.node_selectors or any(s.matches(labels) for s in self.node_selectors)

    def interface_matches(self, name: str) -> bool:
        """True when the pool may be answered on interface name (case-sensitive glob match)."""
        return not self.interfaces or any(fnmatch.fnmatchcase(name, pat) for pat in self.interfaces)

    def admits(self, namespace: str, ns_labels: Mapping[str, str],
               svc_labels: Mapping[str, str]) -> str | None:
        """None when the Service may use the pool, else the refusing rule (see ServiceAllocation)."""
        if self.service_allocation is None:
            return None
        return self.service_allocation.admits(namespace, ns_labels, svc_labels)

    @property
    def priority(self) -> int | None:
        return self.service_allocation.priority if self.service_allocation else None

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
             "minLength", "maxLength", "minItems", "maxItems"}


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
        return (schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
                and all(_fits(items, v) for v in value))
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


def _over_cap(schema: Mapping[str, Any], value: Any, parts: list[Any]) -> tuple[list[Any], int] | None:
    """The first list longer than its maxItems, found before jsonschema would walk all of its items."""
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            return parts, schema["maxItems"]
        items = schema.get("items", {})
        return next((hit for i, v in enumerate(value) if (hit := _over_cap(items, v, [*parts, i]))), None)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return next((hit for k, v in value.items()
                     if k in props and (hit := _over_cap(props[k], v, [*parts, k]))), None)
    return None


def _check_schema(doc: Any) -> None:
    if _fits(SCHEMA, doc):
        return
    capped = _over_cap(SCHEMA, doc, [])
    if capped is not None:
        raise ConfigError(_path(capped[0]), _MISSING, f"more than {capped[1]} entries",
                          _pool_name_at(doc, capped[0]))
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
    if err.validator == "maxItems":
        raise ConfigError(_path(parts), _MISSING, f"more than {err.validator_value} entries", pool)
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
    alloc = raw.get("service-allocation")
    return Pool(name=name, protocol=protocol, addresses=ranges,
                auto_assign=raw.get("auto-assign", True), avoid_buggy_ips=raw.get("avoid-buggy-ips", False),
                node_selectors=_selectors(raw.get("node-selectors", ()), f"{where}.node-selectors", name),
                interfaces=tuple(_interface(x, f"{where}.interfaces[{j}]", name)
                                 for j, x in enumerate(raw.get("interfaces", ()))),
                service_allocation=None if alloc is None else _service_allocation(
                    alloc, f"{where}.service-allocation", name))


# Kubernetes' rules (apimachinery validation): a label name or value is up to 63 characters,
# alphanumeric at both ends, with - _ . inside; a key may have a DNS-subdomain prefix and a slash.
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_GLOB_CHARS = set("*?[")
MAX_PRIORITY = 2**31 - 1  # MetalLB's field is an int32


def _label_key(key: Any, field: str, pool: str) -> str:
    if not isinstance(key, str):
        raise ConfigError(field, key, f"a label key must be text, got {type(key).__name__}", pool)
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ConfigError(field, key, "the key's prefix must be a DNS subdomain (lower case, digits, - "
                          "and ., at most 253 characters), as Kubernetes requires", pool)
    if not (len(name) <= 63 and _LABEL_NAME.fullmatch(name)):
        raise ConfigError(field, key, "a label key's name must be 1-63 characters, alphanumeric at both "
                          "ends, with - _ . inside, as Kubernetes requires", pool)
    return key


def _label_value(value: Any, field: str, pool: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(field, value, f"a label value must be text, got {type(value).__name__} (quote it: "
                          f"\"{_clip(str(value).lower() if isinstance(value, bool) else str(value), 40)}\")",
                          pool)
    if value and not (len(value) <= 63 and _LABEL_NAME.fullmatch(value)):
        raise ConfigError(field, value, "a label value must be empty or 1-63 characters, alphanumeric at "
                          "both ends, with - _ . inside, as Kubernetes requires", pool)
    return value


def _selectors(raw: Any, field: str, pool: str) -> tuple[LabelSelector, ...]:
    return tuple(_selector(s, f"{field}[{i}]", pool) for i, s in enumerate(raw))


def _selector(raw: Mapping[str, Any], field: str, pool: str) -> LabelSelector:
    labels = raw.get("matchLabels", {})
    if len(labels) > MAX_LABELS:
        raise ConfigError(f"{field}.matchLabels", _MISSING, f"more than {MAX_LABELS} labels", pool)
    pairs = tuple(sorted((_label_key(k, f"{field}.matchLabels", pool),
                          _label_value(v, f"{field}.matchLabels.{k}", pool)) for k, v in labels.items()))
    exprs = tuple(_requirement(e, f"{field}.matchExpressions[{i}]", pool)
                  for i, e in enumerate(raw.get("matchExpressions", ())))
    return LabelSelector(match_labels=pairs, match_expressions=exprs)


def _requirement(raw: Mapping[str, Any], field: str, pool: str) -> Requirement:
    key = _label_key(raw["key"], f"{field}.key", pool)
    op = raw["operator"]
    if op not in OPERATORS:
        raise ConfigError(f"{field}.operator", op, "unknown operator; expected one of "
                          f"{', '.join(OPERATORS)} (case matters)", pool)
    values = tuple(_label_value(v, f"{field}.values[{i}]", pool) for i, v in enumerate(raw.get("values", ())))
    if op in ("In", "NotIn") and not values:
        raise ConfigError(f"{field}.values", list(values), f"{op} needs at least one value", pool)
    if op in ("Exists", "DoesNotExist") and values:
        raise ConfigError(f"{field}.values", list(values), f"{op} takes no values", pool)
    return Requirement(key=key, operator=op, values=values)


def _interface(name: str, field: str, pool: str) -> str:
    if any(ch.isspace() or ch in "/:" or not ch.isprintable() for ch in name):
        raise ConfigError(field, name, "an interface name or glob has no spaces, '/' or ':'", pool)
    if not _GLOB_CHARS & set(name) and len(name) > 15:
        raise ConfigError(field, name, "longer than 15 characters: no Linux interface has such a name "
                          "(use a glob such as 'ens*' to match several)", pool)
    return name


def _service_allocation(raw: Mapping[str, Any], field: str, pool: str) -> ServiceAllocation:
    priority = raw.get("priority")
    if priority is not None and not -MAX_PRIORITY - 1 <= priority <= MAX_PRIORITY:
        raise ConfigError(f"{field}.priority", priority, "out of range (a 32-bit integer, as MetalLB's)",
                          pool)
    for i, ns in enumerate(raw.get("namespaces", ())):
        if not _DNS_LABEL.fullmatch(ns):
            raise ConfigError(f"{field}.namespaces[{i}]", ns, "not a namespace name (lower case, digits and "
                              "'-', alphanumeric at both ends)", pool)
    return ServiceAllocation(
        priority=priority, namespaces=tuple(raw.get("namespaces", ())),
        namespace_selectors=_selectors(raw.get("namespace-selectors", ()), f"{field}.namespace-selectors",
                                       pool),
        service_selectors=_selectors(raw.get("service-selectors", ()), f"{field}.service-selectors", pool))


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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_SUBNETS = 64  # per speaker: a node with more announcing subnets is not expected


def parse_subnets(text: str | None) -> tuple[Network, ...]:
    """A speaker's published subnets ("192.168.1.0/24,fd00::/64"); bad entries are skipped (the
    text comes from another program's annotation, not from the operator)."""
    out = []
    for part in (text or "").split(",")[:MAX_SUBNETS]:
        try:
            out.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            continue
    return tuple(out)


def in_subnets(ip: IPAddress, subnets: Iterable[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in subnets)


def reaches_subnets(pool: Pool, subnets: Iterable[Network]) -> bool:
    """True when some address range of pool overlaps one of subnets."""
    nets = [(n.version, int(n.network_address), int(n.broadcast_address)) for n in subnets]
    return any(v == r.version and lo <= r.end and r.start <= hi for r in pool.addresses for v, lo, hi in nets)


def contains(config: Config, ip: str | IPAddress) -> bool:
    return pool_of(config, ip) is not None


def to_dict(config: Config) -> dict[str, Any]:
    """Canonical plain form: every key explicit, addresses normalized."""
    return {"address-pools": [_pool_dict(p) for p in config.pools]}


def _pool_dict(p: Pool) -> dict[str, Any]:
    """The seed's keys always; the extensions only when set (older configs render unchanged)."""
    out: dict[str, Any] = {"name": p.name, "protocol": p.protocol, "addresses": [r.text for r in p.addresses],
                           "auto-assign": p.auto_assign, "avoid-buggy-ips": p.avoid_buggy_ips}
    if p.node_selectors:
        out["node-selectors"] = [s.to_dict() for s in p.node_selectors]
    if p.interfaces:
        out["interfaces"] = list(p.interfaces)
    if p.service_allocation is not None:
        out["service-allocation"] = p.service_allocation.to_dict()
    return out


def to_yaml(config: Config | str | Mapping[str, Any]) -> str:
    """Canonical YAML (validates raw input first), stable for diffs and ConfigMap data."""
    cfg = config if isinstance(config, Config) else load_config(config)
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
