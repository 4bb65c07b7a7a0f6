"""Service dict -> allocation request: the adapter between Kubernetes JSON and the allocator.

Core ring (pure). The controller calls `is_managed(svc, lb_class)` to decide whether l2lb answers
for a Service, and `request_for(svc)` to turn it into an `allocator.Request`: requested addresses
(annotation `l2lb.io/loadBalancerIPs` or spec.loadBalancerIP, never both), pool
(`l2lb.io/address-pool`), sharing key (`l2lb.io/allow-shared-ip`), ports, backend key (the selector
when externalTrafficPolicy is Local), families (spec.ipFamilies + ipFamilyPolicy) and the addresses
already in status. MetalLB's annotation names (`metallb.universe.tf/...`, `metallb.io/...`) are
accepted too; when several are set, l2lb.io wins. A malformed Service yields a Request whose `error`
says why, so the allocator reports it like any other failure.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from . import allocator

PREFIXES = ("l2lb.io/", "metallb.io/", "metallb.universe.tf/")
IPS_ANNOTATION = "loadBalancerIPs"
POOL_ANNOTATION = "address-pool"
SHARING_ANNOTATION = "allow-shared-ip"
FAMILY = {"IPv4": 4, "IPv6": 6}


def key_of(svc: Mapping[str, Any]) -> str:
    meta = svc.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def is_managed(svc: Mapping[str, Any], lb_class: str, unclassed: bool = True) -> bool:
    """type LoadBalancer, with the class l2lb answers to, or with none (unless unclassed is False)."""
    spec = svc.get("spec") or {}
    cls = spec.get("loadBalancerClass")
    return spec.get("type") == "LoadBalancer" and (cls == lb_class or (cls is None and unclassed))


def annotation(svc: Mapping[str, Any], name: str) -> str | None:
    """The value of l2lb.io/<name>, else of a MetalLB alias; None when unset or blank."""
    ann = (svc.get("metadata") or {}).get("annotations") or {}
    for prefix in PREFIXES:
        value = ann.get(prefix + name)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def status_ips(svc: Mapping[str, Any]) -> tuple[allocator.IP, ...]:
    """Addresses in status.loadBalancer.ingress (hostnames and junk ignored)."""
    out = []
    for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        try:
            out.append(ipaddress.ip_address(str(ing.get("ip", ""))))
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
        return _bad(allocator.Reason.BOTH_SET, f"both the loadBalancerIPs annotation ({ann}) and "
                    f"spec.loadBalancerIP ({field}) are set; use one")
    raw = ann or field or ""
    ips = []
    for part in (p.strip() for p in str(raw).split(",")):
        if not part:
            continue
        try:
            ips.append(ipaddress.ip_address(part))
        except ValueError:
            return _bad(allocator.Reason.INVALID_REQUEST, f"requested address {part!r} is not an IP address")
    if len({ip.version for ip in ips}) != len(ips):
        return _bad(allocator.Reason.INVALID_REQUEST,
                    f"requested addresses {raw!r}: give at most one per family")
    return tuple(ips)


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
    families, require_all = _families(spec, requested)
    return allocator.Request(
        families=families,
        require_all=require_all,
        ips=requested,
        pool=annotation(svc, POOL_ANNOTATION),
        sharing_key=annotation(svc, SHARING_ANNOTATION),
        ports=_ports(spec),
        backend_key=_backend_key(spec),
        current=status_ips(svc),
    )


def ingress_of(ips: tuple[allocator.IP, ...]) -> list[dict[str, str]]:
    """status.loadBalancer.ingress for the given addresses."""
    return [{"ip": str(ip), "ipMode": "VIP"} for ip in ips]
