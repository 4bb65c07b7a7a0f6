"""Service dict -> allocation request: the adapter between Kubernetes JSON and the allocator.

Core ring (pure). `is_ours(spec, lb_class, claim_unclassed)` is the one definition of "l2lb answers
for this Service" (controller and speaker alike); `is_managed(svc, ...)` applies it to a whole
Service. `request_for(svc)` turns a Service into an `allocator.Request`: requested addresses
(annotation `l2lb.io/loadBalancerIPs` or spec.loadBalancerIP, never both), pool
(`l2lb.io/address-pool`), sharing key (`l2lb.io/allow-shared-ip`), ports, backend key (the selector
when externalTrafficPolicy is Local), families (spec.ipFamilies + ipFamilyPolicy) and the addresses
already in status. MetalLB's annotation names (`metallb.universe.tf/...`, `metallb.io/...`) are
accepted too; when several are set, l2lb.io wins. A malformed Service yields a Request whose `error`
says why, so the allocator reports it like any other failure (an AllocationFailed Event): an address
that does not parse, a scoped IPv6 address (`fd00::5%eth0`: it would compare unequal to `fd00::5`
and could be entered twice), two per family, a pool name or sharing key over 253 characters or
with control or invisible characters. Quoted values in messages are cut to MAX_SHOWN characters.
"""

from __future__ import annotations

import ipaddress
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from . import allocator

PREFIXES = ("l2lb.io/", "metallb.io/", "metallb.universe.tf/")
IPS_ANNOTATION = "loadBalancerIPs"
POOL_ANNOTATION = "address-pool"
SHARING_ANNOTATION = "allow-shared-ip"
FAMILY = {"IPv4": 4, "IPv6": 6}
MAX_SHOWN = 80  # characters of a bad value quoted in a message (an annotation may be 256 KiB)
MAX_NAME = 253  # pool names and sharing keys


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


def key_of(svc: Mapping[str, Any]) -> str:
    meta = svc.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def is_ours(spec: Mapping[str, Any], lb_class: str, claim_unclassed: bool) -> bool:
    """Whether l2lb answers for a Service with this spec: type LoadBalancer, and loadBalancerClass
    equal to lb_class, or no class (absent or empty) when claim_unclassed."""
    if spec.get("type") != "LoadBalancer":
        return False
    cls = spec.get("loadBalancerClass")
    return cls == lb_class or (cls in (None, "") and claim_unclassed)


def is_managed(svc: Mapping[str, Any], lb_class: str, unclassed: bool = True) -> bool:
    """`is_ours` for a whole Service dict."""
    return is_ours(svc.get("spec") or {}, lb_class, unclassed)


def annotation(svc: Mapping[str, Any], name: str) -> str | None:
    """The value of l2lb.io/<name>, else of a MetalLB alias; None when unset or blank."""
    ann = (svc.get("metadata") or {}).get("annotations") or {}
    for prefix in PREFIXES:
        value = ann.get(prefix + name)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def status_ips(svc: Mapping[str, Any]) -> tuple[allocator.IP, ...]:
    """Addresses in status.loadBalancer.ingress (hostnames, scoped addresses and junk ignored)."""
    out = []
    for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        text = str(ing.get("ip", "")) if isinstance(ing, Mapping) else ""
        if "%" in text:
            continue
        try:
            out.append(ipaddress.ip_address(text))
        except ValueError:
            continue
    return tuple(out)


def _bad(reason: allocator.Reason, message: str) -> allocator.Request:
    return allocator.Request(error=allocator.Failure(reason, message))


def _families(spec: Mapping[str, Any], requested: tuple[allocator.IP, ...]) -> tuple[tuple[int, ...], bool]:
    """(wanted families, primary first; whether all are required)."""
    fams = tuple(FAMILY[f] for f in spec.get("ipFamilies") or [] if f in FAMILY)
    if not fams:  # not defaulted by an API server (unit tests): follow the requested addresses
        fams = tuple(dict.fromkeys(ip.version for ip in requested)) or (4,)
    policy = spec.get("ipFamilyPolicy") or "SingleStack"
    if policy == "SingleStack":
        return fams[:1], True
    return fams, policy == "RequireDualStack"


def _requested(svc: Mapping[str, Any]) -> tuple[allocator.IP, ...] | allocator.Request:
    spec = svc.get("spec") or {}
    ann = annotation(svc, IPS_ANNOTATION)
    field = spec.get("loadBalancerIP")
    if ann and field:
        return _bad(allocator.Reason.BOTH_SET, f"both the loadBalancerIPs annotation ({_shown(ann)}) and "
                    f"spec.loadBalancerIP ({_shown(field)}) are set; use one")
    where = "the loadBalancerIPs annotation" if ann else "spec.loadBalancerIP"
    raw = ann or field or ""
    ips = []
    for part in (p.strip() for p in str(raw).split(",")):
        if not part:
            continue
        if "%" in part:
            return _bad(allocator.Reason.INVALID_REQUEST, f"{where}: requested address {_shown(part)} has a "
                        "zone (%...): scoped IPv6 addresses cannot be LoadBalancer IPs")
        try:
            ips.append(ipaddress.ip_address(part))
        except ValueError:
            return _bad(allocator.Reason.INVALID_REQUEST,
                        f"{where}: requested address {_shown(part)} is not an IP address")
    if len({ip.version for ip in ips}) != len(ips):
        return _bad(allocator.Reason.INVALID_REQUEST,
                    f"{where}: requested addresses {_shown(raw)}: give at most one per family")
    return tuple(ips)


def _name_annotation(svc: Mapping[str, Any], name: str) -> str | allocator.Request | None:
    """A pool name or sharing key; a Request carrying the error when it is unusable."""
    value = annotation(svc, name)
    if value is None:
        return None
    if len(value) > MAX_NAME:
        return _bad(allocator.Reason.INVALID_REQUEST, f"annotation {name} = {_shown(value)}: longer than "
                    f"{MAX_NAME} characters")
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return _bad(allocator.Reason.INVALID_REQUEST, f"annotation {name} = {_shown(value)}: contains "
                        f"U+{ord(ch):04X} (a control or invisible character)")
    return value


def _ports(spec: Mapping[str, Any]) -> frozenset[tuple[int, str]]:
    out = set()
    for p in spec.get("ports") or []:
        if isinstance(p.get("port"), int):
            out.add((p["port"], str(p.get("protocol") or "TCP")))
    return frozenset(out)


def _backend_key(spec: Mapping[str, Any]) -> str:
    if spec.get("externalTrafficPolicy") != "Local":
        return ""
    return json.dumps(spec.get("selector") or {}, sort_keys=True)


def request_for(svc: Mapping[str, Any]) -> allocator.Request:
    """The allocation request of a managed Service."""
    spec = svc.get("spec") or {}
    requested = _requested(svc)
    if isinstance(requested, allocator.Request):
        return requested
    pool = _name_annotation(svc, POOL_ANNOTATION)
    if isinstance(pool, allocator.Request):
        return pool
    sharing_key = _name_annotation(svc, SHARING_ANNOTATION)
    if isinstance(sharing_key, allocator.Request):
        return sharing_key
    families, require_all = _families(spec, requested)
    return allocator.Request(
        families=families,
        require_all=require_all,
        ips=requested,
        pool=pool,
        sharing_key=sharing_key,
        ports=_ports(spec),
        backend_key=_backend_key(spec),
        current=status_ips(svc),
    )


def ingress_of(ips: tuple[allocator.IP, ...]) -> list[dict[str, str]]:
    """status.loadBalancer.ingress for the given addresses."""
    return [{"ip": str(ip), "ipMode": "VIP"} for ip in ips]
