"""Can a pool's addresses be announced at all? The controller's placement checks (core ring, pure).

Flow: controller informers (Node labels; speakers' registration Leases with their announcing
subnets, annotation `l2lb.io/subnets`) -> a `View` snapshot -> `no_eligible_node` /
`no_matching_subnet` per assigned Service (Warning Events `NoEligibleNode`, `NoMatchingSubnet`)
and `without_subnet` per pool (gauge `l2lb_pool_without_subnet`).

The speakers decide where they answer; these checks only tell the operator, early and by name,
when a pool's rules leave an address with no node (node-selectors match no Node) or, for a pool
without an `interfaces` list, with no node that has the address in an interface's subnet (the
speaker then falls back to its configured interfaces). Not guaranteed: a View is as fresh as the
informers behind it; a speaker that has not published subnets (an older speaker, or one that has
just started) is not counted, and with none published the subnet check says nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import config

MAX_SHOWN = 8  # subnets named in one message
SUBNETS = "l2lb.io/subnets"  # on a speaker's registration Lease: its announcing interfaces' subnets
SPEAKER_ROLE = "l2lb.io/role=speaker-heartbeat"  # the label selector of registration Leases
SPEAKER_NODE = "l2lb.io/node"  # the registration's node


@dataclass(frozen=True, kw_only=True)
class View:
    """What the cluster looks like to the checks: node -> labels; node -> published subnets."""

    nodes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    subnets: Mapping[str, tuple[config.Network, ...]] = field(default_factory=dict)
    nodes_known: bool = False  # the Node cache has synced: an empty `nodes` means no Node

    def eligible(self, pool: config.Pool) -> list[str]:
        """Nodes whose labels the pool's node-selectors match (every node without selectors)."""
        return sorted(n for n, labels in self.nodes.items() if pool.node_matches(labels))

    def pool_subnets(self, pool: config.Pool) -> list[config.Network]:
        """Subnets published by speakers on nodes that may announce the pool (a speaker on a node
        the Node cache does not know yet counts: better a missed warning than a false one)."""
        return [net for node, nets in sorted(self.subnets.items())
                if node not in self.nodes or pool.node_matches(self.nodes[node]) for net in nets]


def no_eligible_node(pool: config.Pool, view: View) -> str | None:
    """Why no node may announce the pool, or None (also None while the Node cache is unknown)."""
    if not pool.node_selectors or not view.nodes_known or view.eligible(pool):
        return None
    selectors = "; ".join(map(str, pool.node_selectors))
    return (f"no node matches the node-selectors of pool {pool.name!r} [{selectors}] "
            f"(of {len(view.nodes)} nodes): nobody announces its addresses")


def no_matching_subnet(pool: config.Pool, ips: Iterable[config.IPAddress], view: View) -> str | None:
    """Why an address of pool is in no speaker's subnet, or None (also None for a pool with an
    `interfaces` list, which forces the interfaces, and while no speaker that may announce the pool
    has published subnets)."""
    if pool.interfaces or not view.subnets:
        return None
    nets = view.pool_subnets(pool)
    outside = [ip for ip in ips if not config.in_subnets(ip, nets)]
    if not outside or not nets:  # no speaker may announce the pool: that is NoEligibleNode's to say
        return None
    return (f"{', '.join(map(str, outside))} of pool {pool.name!r} is in no subnet of the speakers' "
            f"interfaces (seen: {_shown(nets)}); speakers answer on their configured interfaces "
            "instead; give the pool an `interfaces` list, or use addresses of a node subnet")


def without_subnet(pools: Iterable[config.Pool], view: View) -> dict[str, bool]:
    """pool name -> True when the pool has no interfaces list and none of its ranges meets a
    subnet of a speaker that may announce it (also when no such speaker published any); {} when
    no speaker has published subnets."""
    if not view.subnets:
        return {}
    return {p.name: not p.interfaces and not config.reaches_subnets(p, view.pool_subnets(p)) for p in pools}


def _shown(nets: list[config.Network]) -> str:
    unique = sorted({str(n) for n in nets})
    if not unique:
        return "none"
    more = f" and {len(unique) - MAX_SHOWN} more" if len(unique) > MAX_SHOWN else ""
    return ", ".join(unique[:MAX_SHOWN]) + more


# -- the informers' side: what their caches keep, and the View built from them ----------------

def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _annotation(obj: Mapping[str, Any], name: str) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(name) or "")


def project_labels(obj: dict[str, Any]) -> dict[str, Any]:
    """A Namespace or Node as a cache keeps it: name and labels (a Node's status heartbeats then
    change nothing, and wake nobody)."""
    meta = obj.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}}}


def project_speaker(lease: dict[str, Any]) -> dict[str, Any]:
    """A speaker's registration Lease as a cache keeps it: its node and subnets (not the announced
    IPs, which change often and would wake the checks for nothing)."""
    meta = lease.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                         "labels": {SPEAKER_NODE: labels_of(lease).get(SPEAKER_NODE, "")},
                         "annotations": {SUBNETS: _annotation(lease, SUBNETS)}}}


def view_of(nodes: Iterable[Mapping[str, Any]], speakers: Iterable[Mapping[str, Any]], *,
            nodes_known: bool) -> View:
    """The View from cached Nodes and registration Leases (only those that published subnets)."""
    subnets = {}
    for lease in speakers:
        text = _annotation(lease, SUBNETS)
        if text:
            node = labels_of(lease).get(SPEAKER_NODE) or str((lease.get("metadata") or {}).get("name"))
            subnets[node] = config.parse_subnets(text)
    return View(nodes={str((n.get("metadata") or {}).get("name")): labels_of(n) for n in nodes},
                subnets=subnets, nodes_known=nodes_known)
