# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MetalLB's layer-2 configuration -> l2lb pools: the pure conversion behind l2lb_metallb_import.

Place in the flow: cluster objects (read by the module) -> **l2lb_metallb (here)** -> l2lb pools
(the inventory's l2lb_address_pools) + what was refused and why + the Services that hold MetalLB
addresses. Pure: takes plain dicts, returns plain dicts; no Kubernetes, no Ansible.

Two sources, one result:
- MetalLB v0.6-v0.12: the ConfigMap `config` (key `config`), `address-pools` with `protocol`
  layer2 or bgp. Every layer2 pool was announced on every speaker node, on every interface.
- MetalLB v0.13+: IPAddressPool (addresses, autoAssign, avoidBuggyIPs, serviceAllocation) and
  L2Advertisement (which pools: ipAddressPools / ipAddressPoolSelectors, both empty = all; where:
  nodeSelectors, interfaces, empty = everywhere). A pool's l2lb node-selectors / interfaces come
  from the L2Advertisements that cover it.
Refused BY NAME, with the reason (`Refusal`): BGP pools and pools a BGPAdvertisement covers (l2lb is
layer 2 only); pools no L2Advertisement covers (MetalLB allocates from them but never announces
them: l2lb would start answering ARP/NDP for them); several L2Advertisements of one pool whose
node selectors AND interfaces differ (one l2lb pool has one node list and one interface list, so
their union would announce where MetalLB does not); unknown fields (a newer MetalLB's meaning
cannot be guessed); anything the l2lb config model refuses (`validated`).
Not guaranteed: that the speakers' own node selection (MetalLB's speaker DaemonSet nodeSelector,
tolerations) is carried over; the module reports it as a note.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import typing as t

try:
    import yaml
except ImportError:  # PyYAML comes with ansible-core
    yaml = None

MAX_TEXT = 1 << 20  # a ConfigMap holds at most 1 MiB
LABEL_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
POOL_SPEC_KEYS = ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation")
ALLOCATION_KEYS = {"priority": "priority", "namespaces": "namespaces",
                   "namespaceSelectors": "namespace-selectors", "serviceSelectors": "service-selectors"}
L2_SPEC_KEYS = ("ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces")
LEGACY_POOL_KEYS = ("name", "protocol", "addresses", "auto-assign", "avoid-buggy-ips")
LEGACY_BGP_KEYS = ("peers", "bgp-communities", "bfd-profiles")
# Service annotation suffixes (after metallb.universe.tf/ or metallb.io/) that l2lb reads as its own
HONOURED = ("address-pool", "loadBalancerIPs", "allow-shared-ip")
METALLB_PREFIXES = ("metallb.universe.tf/", "metallb.io/")


class MetalLBError(Exception):
    """The MetalLB configuration cannot be read at all (not one object refused: the whole input)."""


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Something of MetalLB's that l2lb cannot express: kind and name, and why."""

    kind: str  # IPAddressPool, L2Advertisement, BGPAdvertisement, address-pool (ConfigMap), ConfigMap key
    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class Conversion:
    """l2lb pools (dicts in the inventory's shape, in order) and what was refused, plus notes."""

    source: str  # "crds" or "configmap"
    pools: tuple[dict[str, t.Any], ...] = ()
    refused: tuple[Refusal, ...] = ()
    notes: tuple[str, ...] = ()
    # every MetalLB pool, refused or not: name -> its address texts (to find a Service's pool)
    metallb_pools: tuple[tuple[str, tuple[str, ...]], ...] = ()


# -- label selectors (Kubernetes semantics) -----------------------------------------------------

def selector_problem(selector: t.Any) -> str | None:
    """Why selector is not a Kubernetes label selector, or None."""
    if not isinstance(selector, dict):
        return f"a label selector must be a mapping, got {type(selector).__name__}"
    extra = sorted(set(selector) - {"matchLabels", "matchExpressions"})
    if extra:
        return f"unknown label selector field {extra[0]!r}"
    labels = selector.get("matchLabels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        return "matchLabels must map label keys to string values"
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict) or expr.get("operator") not in LABEL_OPERATORS:
            return f"matchExpressions entry {expr!r}: operator must be one of {', '.join(LABEL_OPERATORS)}"
        if set(expr) - {"key", "operator", "values"} or not isinstance(expr.get("key"), str):
            return f"matchExpressions entry {expr!r}: needs key, operator and optional values only"
    return None


def selector_matches(selector: t.Mapping[str, t.Any], labels: t.Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics: every label and every expression must hold."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _canonical(selector: t.Mapping[str, t.Any]) -> str:
    return json.dumps(selector, sort_keys=True)


# -- v0.13+ CRDs -------------------------------------------------------------------------------

def _name(obj: t.Mapping[str, t.Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def _spec(obj: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    spec = obj.get("spec") or {}
    return spec if isinstance(spec, dict) else {}


def _unknown(spec: t.Mapping[str, t.Any], known: t.Iterable[str], where: str) -> str | None:
    extra = sorted(set(spec) - set(known))
    if extra:
        return (f"unknown field {where}.{extra[0]} (known: {', '.join(known)}); l2lb will not guess "
                "what a newer MetalLB meant by it")
    return None


def _selectors_problem(selectors: t.Any, where: str) -> str | None:
    if not isinstance(selectors, list):
        return f"{where} must be a list of label selectors"
    for i, sel in enumerate(selectors):
        problem = selector_problem(sel)
        if problem:
            return f"{where}[{i}]: {problem}"
    return None


def _allocation(raw: t.Any) -> tuple[dict[str, t.Any] | None, str | None]:
    """serviceAllocation -> l2lb service-allocation (None when empty), or the problem."""
    if raw in (None, {}):
        return None, None
    if not isinstance(raw, dict):
        return None, "spec.serviceAllocation must be a mapping"
    problem = _unknown(raw, ALLOCATION_KEYS, "spec.serviceAllocation")
    for key in ("namespaceSelectors", "serviceSelectors"):
        problem = problem or _selectors_problem(raw.get(key) or [], f"spec.serviceAllocation.{key}")
    if problem:
        return None, problem
    out = {ALLOCATION_KEYS[k]: v for k, v in raw.items() if v not in (None, [], "")}
    return out or None, None


def _pool_base(obj: t.Mapping[str, t.Any]) -> tuple[dict[str, t.Any] | None, str | None]:
    """An IPAddressPool -> l2lb pool without where it is announced, or why not."""
    spec = _spec(obj)
    problem = _unknown(spec, POOL_SPEC_KEYS, "spec")
    addresses = spec.get("addresses")
    if not problem and (not isinstance(addresses, list) or not addresses):
        problem = "spec.addresses is empty or not a list"
    allocation, alloc_problem = _allocation(spec.get("serviceAllocation"))
    if problem or alloc_problem:
        return None, problem or alloc_problem
    pool: dict[str, t.Any] = {"name": _name(obj), "protocol": "layer2",
                              "addresses": [str(a) for a in addresses],
                              "auto-assign": spec.get("autoAssign", True) is not False,
                              "avoid-buggy-ips": spec.get("avoidBuggyIPs", False) is True}
    if allocation:
        pool["service-allocation"] = allocation
    return pool, None


def _pools_ref_problem(spec: t.Mapping[str, t.Any]) -> str | None:
    """Why an advertisement's ipAddressPools / ipAddressPoolSelectors cannot be read, or None."""
    names = spec.get("ipAddressPools") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "spec.ipAddressPools must be a list of IPAddressPool names"
    return _selectors_problem(spec.get("ipAddressPoolSelectors") or [], "spec.ipAddressPoolSelectors")


def covered(advertisement: t.Mapping[str, t.Any], pools: t.Sequence[t.Mapping[str, t.Any]]) -> list[str]:
    """Names of the pools an advertisement (L2 or BGP) covers: by name or by label; neither = all.
    One whose references cannot be read counts as covering every pool (the side that refuses)."""
    spec = _spec(advertisement)
    names = spec.get("ipAddressPools") or []
    selectors = spec.get("ipAddressPoolSelectors") or []
    if (not names and not selectors) or _pools_ref_problem(spec):
        return [_name(p) for p in pools]
    out = []
    for pool in pools:
        labels = (pool.get("metadata") or {}).get("labels") or {}
        if _name(pool) in names or any(selector_matches(s, labels) for s in selectors):
            out.append(_name(pool))
    return out


def _advertisement_problem(ad: t.Mapping[str, t.Any]) -> str | None:
    spec = _spec(ad)
    problem = (_unknown(spec, L2_SPEC_KEYS, "spec") or _pools_ref_problem(spec)
               or _selectors_problem(spec.get("nodeSelectors") or [], "spec.nodeSelectors"))
    ifaces = spec.get("interfaces") or []
    if not problem and not (isinstance(ifaces, list) and all(isinstance(i, str) and i for i in ifaces)):
        problem = "spec.interfaces must be a list of interface names"
    return problem


@dataclasses.dataclass(frozen=True)
class _Where:
    """Where one L2Advertisement announces: node selectors and interfaces; None = everywhere."""

    ad: str
    nodes: frozenset[str] | None  # canonical selectors, ORed
    ifaces: frozenset[str] | None

    def within(self, other: _Where) -> bool:
        """Every (node, interface) this one announces on, other announces on too."""
        return all(o is None or (s is not None and s <= o)
                   for s, o in ((self.nodes, other.nodes), (self.ifaces, other.ifaces)))


def _where(ad: t.Mapping[str, t.Any]) -> _Where:
    spec = _spec(ad)
    nodes = spec.get("nodeSelectors") or []
    ifaces = spec.get("interfaces") or []
    return _Where(_name(ad), frozenset(map(_canonical, nodes)) if nodes else None,
                  frozenset(ifaces) if ifaces else None)


def _union(sets: t.Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    out: frozenset[str] = frozenset()
    for s in sets:
        if s is None:
            return None
        out |= s
    return out


def merge_where(wheres: t.Sequence[_Where]) -> tuple[_Where | None, str | None]:
    """One pool's advertisements -> one (nodes, interfaces), exactly; else why it cannot be.

    An advertisement within another adds nothing. The union is exact when the rest share their
    node selectors (interfaces are unioned) or share their interfaces (node selectors are unioned)."""
    kept = [w for i, w in enumerate(wheres)
            if not any(j != i and w.within(o) and (not o.within(w) or j < i) for j, o in enumerate(wheres))]
    names = ", ".join(w.ad for w in kept)
    if len({w.nodes for w in kept}) == 1:
        return _Where(names, kept[0].nodes, _union(w.ifaces for w in kept)), None
    if len({w.ifaces for w in kept}) == 1:
        return _Where(names, _union(w.nodes for w in kept), kept[0].ifaces), None
    shown = "; ".join(f"{w.ad} (nodes {_shown(w.nodes)}, interfaces {_shown(w.ifaces)})" for w in kept)
    return None, (f"L2Advertisements {shown} differ in both node selectors and interfaces; an l2lb pool "
                  "has one node-selectors list and one interfaces list, so their union would announce on "
                  "interfaces of nodes where MetalLB does not. Split the pool, or align the advertisements")


def _shown(items: frozenset[str] | None) -> str:
    return "all" if items is None else "[" + ", ".join(sorted(items)) + "]"


def from_crds(pools: t.Sequence[t.Mapping[str, t.Any]], l2ads: t.Sequence[t.Mapping[str, t.Any]],
              bgpads: t.Sequence[t.Mapping[str, t.Any]] = ()) -> Conversion:
    """IPAddressPools + L2Advertisements (+ BGPAdvertisements, to refuse what they cover)."""
    pools = sorted(pools, key=_name)  # a stable order; serviceAllocation.priority (kept) ranks first
    refused: list[Refusal] = []
    notes: list[str] = []
    good_ads = []
    bad_cover: dict[str, str] = {}  # pool -> the refused advertisement covering it
    for ad in sorted(l2ads, key=_name):
        problem = _advertisement_problem(ad)
        if problem:
            refused.append(Refusal("L2Advertisement", _name(ad), problem))
            bad_cover.update({p: _name(ad) for p in covered(ad, pools) if p not in bad_cover})
        else:
            good_ads.append(ad)
        _note_missing(ad, "L2Advertisement", pools, notes)
    bgp_cover: dict[str, list[str]] = {}  # pool -> BGPAdvertisements covering it
    for ad in sorted(bgpads, key=_name):
        problem = _pools_ref_problem(_spec(ad))
        if problem:
            refused.append(Refusal("BGPAdvertisement", _name(ad),
                                   f"{problem}; counted as covering every pool"))
        for name in covered(ad, pools):
            bgp_cover.setdefault(name, []).append(_name(ad))
    out = []
    for pool in pools:
        converted, refusal = _convert_pool(pool, good_ads, pools, bgp_cover, bad_cover)
        if refusal:
            refused.append(refusal)
        elif converted:
            out.append(converted)
    known = tuple((_name(p), _texts(_spec(p).get("addresses"))) for p in pools)
    return Conversion("crds", tuple(out), tuple(refused), tuple(notes), known)


def _texts(addresses: t.Any) -> tuple[str, ...]:
    """A pool's address entries as text (nothing when they are not a list)."""
    return tuple(str(a) for a in addresses) if isinstance(addresses, list) else ()


def _note_missing(ad: t.Mapping[str, t.Any], kind: str, pools: t.Sequence[t.Mapping[str, t.Any]],
                  notes: list[str]) -> None:
    if _pools_ref_problem(_spec(ad)):
        return
    names = {_name(p) for p in pools}
    for missing in sorted(set(_spec(ad).get("ipAddressPools") or []) - names):
        notes.append(f"{kind} {_name(ad)} names IPAddressPool {missing}, which does not exist (ignored)")


def _convert_pool(pool: t.Mapping[str, t.Any], ads: t.Sequence[t.Mapping[str, t.Any]],
                  pools: t.Sequence[t.Mapping[str, t.Any]], bgp_cover: dict[str, list[str]],
                  bad_cover: dict[str, str]) -> tuple[dict[str, t.Any] | None, Refusal | None]:
    name = _name(pool)
    if name in bgp_cover:
        return None, Refusal("IPAddressPool", name, f"announced over BGP (BGPAdvertisement "
                             f"{', '.join(bgp_cover[name])}); l2lb is layer 2 only. Remove the pool from the "
                             "BGPAdvertisement first if layer-2 announcement is enough")
    if name in bad_cover:
        return None, Refusal("IPAddressPool", name, f"covered by L2Advertisement {bad_cover[name]}, which is "
                             "refused (see its entry)")
    base, problem = _pool_base(pool)
    if problem:
        return None, Refusal("IPAddressPool", name, problem)
    mine = [_where(ad) for ad in ads if name in covered(ad, pools)]
    if not mine:
        return None, Refusal("IPAddressPool", name, "no L2Advertisement covers it: MetalLB hands out its "
                             "addresses but never announces them, and l2lb announces every pool, so "
                             "converting it would start answering ARP/NDP for them. Add an L2Advertisement "
                             "first if it should be announced, or write the pool by hand")
    where, problem = merge_where(mine)
    if where is None or base is None:
        return None, Refusal("IPAddressPool", name, problem or "cannot be converted")
    if where.nodes is not None:
        base["node-selectors"] = [json.loads(s) for s in sorted(where.nodes)]
    if where.ifaces is not None:
        base["interfaces"] = sorted(where.ifaces)
    return base, None


# -- v0.6-v0.12 ConfigMap ----------------------------------------------------------------------

def from_configmap(text: str) -> Conversion:
    """The legacy ConfigMap's `config` text -> pools; bgp pools and BGP sections refused by name."""
    doc = _legacy_doc(text)
    refused = [Refusal("ConfigMap key", key, "BGP configuration; l2lb is layer 2 only (ignored: no layer2 "
                       "pool depends on it)") for key in LEGACY_BGP_KEYS if doc.get(key)]
    for key in sorted(set(doc) - {"address-pools", *LEGACY_BGP_KEYS}):
        refused.append(Refusal("ConfigMap key", key, "unknown top-level key of MetalLB's ConfigMap"))
    pools, known = [], []
    for i, raw in enumerate(doc.get("address-pools") or []):
        name = str(raw.get("name")) if isinstance(raw, dict) else f"address-pools[{i}]"
        if isinstance(raw, dict):
            known.append((name, _texts(raw.get("addresses"))))
        pool, refusal = _legacy_pool(raw, name)
        if refusal:
            refused.append(refusal)
        else:
            pools.append(pool)
    return Conversion("configmap", tuple(pools), tuple(refused), (), tuple(known))


def _legacy_doc(text: str) -> dict[str, t.Any]:
    if yaml is None:
        raise MetalLBError("PyYAML is required to read MetalLB's ConfigMap")
    if len(text) > MAX_TEXT:
        raise MetalLBError(f"MetalLB's ConfigMap text is {len(text)} characters; the limit is {MAX_TEXT}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MetalLBError(f"MetalLB's ConfigMap key config is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise MetalLBError("MetalLB's ConfigMap key config is not a mapping with address-pools")
    if not isinstance(doc.get("address-pools") or [], list):
        raise MetalLBError("MetalLB's ConfigMap: address-pools is not a list")
    return doc


def _legacy_pool(raw: t.Any, name: str) -> tuple[dict[str, t.Any], Refusal | None]:
    kind = "address-pool"
    if not isinstance(raw, dict):
        return {}, Refusal(kind, name, "not a mapping")
    if raw.get("protocol") == "bgp":
        return {}, Refusal(kind, name, "protocol bgp; l2lb is layer 2 only")
    if raw.get("protocol") != "layer2":
        return {}, Refusal(kind, name, f"protocol {raw.get('protocol')!r}; expected layer2")
    extra = sorted(set(raw) - set(LEGACY_POOL_KEYS))
    if extra:
        return {}, Refusal(kind, name, f"unknown key {extra[0]!r} in a layer2 pool (known: "
                           f"{', '.join(LEGACY_POOL_KEYS)})")
    addresses = raw.get("addresses")
    if not isinstance(addresses, list) or not addresses:
        return {}, Refusal(kind, name, "addresses is empty or not a list")
    return {"name": name, "protocol": "layer2", "addresses": [str(a) for a in addresses],
            "auto-assign": raw.get("auto-assign", True) is not False,
            "avoid-buggy-ips": raw.get("avoid-buggy-ips", False) is True}, None


# -- the l2lb model's word, Services, the vars file --------------------------------------------

def validated(conv: Conversion, load_config: t.Callable[[t.Any], t.Any],
              config_error: type[Exception]) -> Conversion:
    """Run l2lb's own config model; a pool it refuses is moved to `refused` with the model's words.
    An error naming no pool (the document as a whole) is raised as MetalLBError."""
    pools, refused = list(conv.pools), list(conv.refused)
    while pools:
        try:
            load_config({"address-pools": pools})
            break
        except config_error as exc:
            name = getattr(exc, "pool", None)
            at = re.match(r"address-pools\[(\d+)\]", str(getattr(exc, "field", "")))
            index = int(at.group(1)) if at and int(at.group(1)) < len(pools) else None
            if index is None or name is None:
                raise MetalLBError(f"l2lb's config model refuses the converted pools: {exc}") from None
            pools.pop(index)
            refused.append(Refusal("IPAddressPool" if conv.source == "crds" else "address-pool", name,
                                   f"l2lb refuses it: {exc}"))
    return dataclasses.replace(conv, pools=tuple(pools), refused=tuple(refused))


def _in_addresses(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, texts: t.Iterable[str]) -> bool:
    for text in texts:
        s = text.strip()
        try:
            if "-" in s:
                lo, hi = (ipaddress.ip_address(p.strip()) for p in s.split("-", 1))
                if lo.version == ip.version and int(lo) <= int(ip) <= int(hi):
                    return True
            elif ip in ipaddress.ip_network(s, strict=False):
                return True
        except ValueError:
            continue
    return False


def metallb_pool_of(conv: Conversion, ip: str) -> str | None:
    """The MetalLB pool (converted or refused) whose addresses contain ip."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return next((name for name, texts in conv.metallb_pools if _in_addresses(addr, texts)), None)


def annotations_report(annotations: t.Mapping[str, str]) -> list[dict[str, t.Any]]:
    """MetalLB annotations of a Service, each with its l2lb name and whether l2lb reads it as is."""
    out = []
    for key in sorted(annotations):
        prefix = next((p for p in METALLB_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        suffix = key[len(prefix):]
        if suffix in HONOURED:
            out.append({"annotation": key, "value": annotations[key], "l2lb": f"l2lb.io/{suffix}",
                        "honoured": True, "note": "l2lb reads it as is; renaming is optional"})
        elif suffix == "ip-allocated-from-pool":
            out.append({"annotation": key, "value": annotations[key], "l2lb": None, "honoured": False,
                        "note": "written by MetalLB for information; l2lb ignores it (remove it after "
                                "migrating)"})
        else:
            out.append({"annotation": key, "value": annotations[key], "l2lb": None, "honoured": False,
                        "note": "l2lb has no equivalent; it is ignored"})
    return out


def services_report(services: t.Iterable[t.Mapping[str, t.Any]], conv: Conversion, lb_class: str,
                    claim_unclassed: bool) -> list[dict[str, t.Any]]:
    """One entry per (Service, address) that lies in a MetalLB pool: whether l2lb keeps it, and why."""
    converted = {p["name"] for p in conv.pools}
    out = []
    for svc in services:
        spec, meta = svc.get("spec") or {}, svc.get("metadata") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            pool = metallb_pool_of(conv, str(ing.get("ip") or ""))
            if pool is None:
                continue  # not a MetalLB address (another provider's, or a hostname)
            keeps, why = _keeps(spec, pool, converted, lb_class, claim_unclassed)
            out.append({"service": f"{meta.get('namespace')}/{meta.get('name')}", "ip": ing["ip"],
                        "pool": pool, "loadbalancer_class": spec.get("loadBalancerClass"),
                        "keeps_address": keeps, "why": why,
                        "annotations": annotations_report(meta.get("annotations") or {})})
    return sorted(out, key=lambda e: (e["service"], e["ip"]))


def _keeps(spec: t.Mapping[str, t.Any], pool: str, converted: set[str], lb_class: str,
           claim_unclassed: bool) -> tuple[bool, str]:
    cls = spec.get("loadBalancerClass")
    if cls not in (None, "") and cls != lb_class:
        return False, (f"loadBalancerClass {cls!r} is not l2lb's ({lb_class!r}) and cannot be changed on a "
                       f"live Service: install l2lb with loadbalancer_class {cls!r}")
    if cls in (None, "") and not claim_unclassed:
        return False, "no loadBalancerClass and l2lb does not claim class-less Services (claim_unclassed)"
    if pool not in converted:
        return False, (f"pool {pool} was refused: l2lb's controller keeps the address (flagged "
                       "IPOutsidePools) but no l2lb pool contains it")
    return True, f"l2lb's controller adopts addresses in status that lie in pool {pool}"


def vars_file(conv: Conversion, origin: str) -> str:
    """The inventory vars file: l2lb_address_pools, deterministic (same input, same bytes)."""
    head = (f"---\n# l2lb_address_pools converted from MetalLB's {origin}\n"
            "# by l2lb.layer2.l2lb_metallb_import. Review it, then deploy with site.yml\n"
            "# (docs/migration.md).\n")
    if yaml is None:
        return head + "l2lb_address_pools: " + json.dumps(list(conv.pools), indent=2) + "\n"
    body = yaml.safe_dump({"l2lb_address_pools": list(conv.pools)}, sort_keys=False, default_flow_style=False)
    return head + body
