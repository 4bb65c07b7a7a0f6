"""Who announces each LoadBalancer IP: eligibility, rendezvous ranking, hand-over (core ring, pure).

Place in the flow: the speaker's watches (Services, EndpointSlices, Nodes, heartbeat Leases)
give plain dicts -> this module -> the set of IPs this node announces -> announcer.

Algorithm:
* ``rank(key, nodes)`` orders nodes by sha256(node + "#" + key), highest first (rendezvous
  hashing): every speaker computes the same order from the same inputs, without writes, and
  a node joining or leaving moves only the keys it wins or held (~1/N of them).
* An IP's candidates are the nodes that are live speakers and eligible: Node Ready, not
  NetworkUnavailable, not labelled ``node.kubernetes.io/exclude-from-external-load-balancers``;
  the Service has a ready endpoint; with ``externalTrafficPolicy: Local`` only nodes with a
  ready local endpoint. Services sharing an IP are hashed on the IP (so one node answers);
  their candidate sets are intersected (a node that serves all of them), and if no node
  serves all, united (a node that serves some beats no answer at all).
* ``step`` turns the desired owners into what to announce now: losing an IP is immediate;
  gaining one from a node that is still live waits ``handover_delay`` (that node drops the IP
  as soon as it sees the same change, so it is silent first); gaining from a dead node or
  from nobody is immediate.

Not guaranteed here: liveness itself (``membership`` judges it on the LAN) and agreement while the
speakers' watches disagree (the hand-over delay covers the usual watch delay).
Inputs are copied; outputs are frozen.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import ipaddress
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from . import services

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
NODE_READINESS = "l2lb:nodeReadiness"  # the projected slice's pairs (not a Kubernetes field name)


class Why(enum.Enum):
    """Why an IP has no owner (or OWNED when it has one)."""

    OWNED = "owned"
    NO_READY_ENDPOINTS = "no ready endpoints"
    NO_ELIGIBLE_NODE = "no eligible live speaker"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceView:
    """The parts of a Service the speaker needs."""

    key: str  # "namespace/name"
    ips: tuple[str, ...]  # canonical ingress IPs
    local: bool  # externalTrafficPolicy Local


@dataclasses.dataclass(frozen=True, kw_only=True)
class Endpoints:
    """Ready endpoints of one Service, from its EndpointSlices."""

    ready: bool  # at least one ready endpoint
    nodes: frozenset[str]  # nodes hosting a ready endpoint


class Choice(NamedTuple):
    """The owner of one IP (None when nobody may announce it) and why (a NamedTuple: a takeover
    makes thousands, at a quarter of a frozen dataclass's cost)."""

    ip: str
    owner: str | None
    why: Why
    services: tuple[str, ...]  # service keys announcing this IP


# -- ranking ---------------------------------------------------------------------------------


def score(node: str, key: str) -> bytes:
    """The rendezvous score of node for key (bigger wins)."""
    return hashlib.sha256(f"{node}#{key}".encode()).digest()


Ranked = tuple[bytes, str]  # (score, node): compares as the ranking does


def ranked(node: str, key: str) -> Ranked:
    """node's place in key's ranking: bigger is better; ties (impossible in practice) by name."""
    return score(node, key), node


def rank(key: str, nodes: Iterable[str]) -> list[str]:
    """Nodes ordered best first for key."""
    return sorted(set(nodes), key=lambda n: ranked(n, key), reverse=True)


def owner_of(key: str, nodes: Iterable[str]) -> str | None:
    """rank(key, nodes)[0] in one pass (no sort), None for no nodes."""
    return max(nodes, key=lambda n: ranked(n, key), default=None)


# -- parsing Kubernetes dicts ------------------------------------------------------------------


def canonical_ip(text: str) -> str | None:
    """The canonical text form of an IP, or None when it is not one."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except (ValueError, AttributeError):
        return None


def _condition(obj: Mapping[str, Any], kind: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def node_ready(node: Mapping[str, Any]) -> bool:
    return _condition(node, "Ready") == "True"


def node_eligible(node: Mapping[str, Any], trust_ready: bool = True) -> tuple[bool, str]:
    """(eligible, reason) for a Node dict."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if EXCLUDE_LABEL in labels:
        return False, f"labelled {EXCLUDE_LABEL}"
    if trust_ready and not node_ready(node):
        return False, "not Ready"
    if _condition(node, "NetworkUnavailable") == "True":
        return False, "NetworkUnavailable"
    return True, "eligible"


def eligible_nodes(nodes: Iterable[Mapping[str, Any]], live: Iterable[str]) -> frozenset[str]:
    """Names of eligible nodes. When no live speaker's node is Ready, Ready is not trusted: every
    node NotReady at once is the control plane's doing (a restart, an outage), not the nodes'."""
    nodes = list(nodes)
    live_set = frozenset(live)
    names = frozenset(str((n.get("metadata") or {}).get("name")) for n in nodes if node_eligible(n)[0])
    if names & live_set or not live_set:
        return names
    return frozenset(str((n.get("metadata") or {}).get("name")) for n in nodes
                     if node_eligible(n, trust_ready=False)[0])


def service_view(svc: Mapping[str, Any], lb_class: str, claim_unclassed: bool = True) -> ServiceView | None:
    """The ServiceView of a LoadBalancer Service this speaker serves (``services.is_ours``), else None."""
    spec = svc.get("spec") or {}
    if not services.is_ours(spec, lb_class, claim_unclassed):
        return None
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips = (canonical_ip(str(i.get("ip", ""))) for i in ingress if isinstance(i, Mapping) and i.get("ip"))
    meta = svc.get("metadata") or {}
    return ServiceView(
        key=f"{meta.get('namespace')}/{meta.get('name')}",
        ips=tuple(sorted({ip for ip in ips if ip})),
        local=spec.get("externalTrafficPolicy") == "Local",
    )


def endpoints_of(slices: Iterable[Mapping[str, Any]]) -> Endpoints:
    """Ready endpoints over a Service's EndpointSlices, whole or projected (``project_slice``)."""
    ready, nodes = False, set()
    for sl in slices:
        for node, is_ready in node_readiness(sl):
            if is_ready:
                ready = True
                if node:
                    nodes.add(node)
    return Endpoints(ready=ready, nodes=frozenset(nodes))


def node_readiness(sl: Mapping[str, Any]) -> frozenset[tuple[str | None, bool]]:
    """A slice's distinct (node name, ready) pairs; an unset `ready` counts as ready."""
    if NODE_READINESS in sl:
        return sl[NODE_READINESS]
    pairs = set()
    for ep in sl.get("endpoints") or []:
        if isinstance(ep, Mapping):
            node = ep.get("nodeName")
            ready = (ep.get("conditions") or {}).get("ready") is not False
            pairs.add((sys.intern(str(node)) if node else None, ready))
    return frozenset(pairs)


def slice_service_key(sl: Mapping[str, Any]) -> str | None:
    """"namespace/service" an EndpointSlice belongs to, from its service-name label."""
    meta = sl.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace')}/{name}" if name else None


# -- projections: what the speaker's caches keep of each object ------------------------------


def _meta(obj: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {k: meta[k] for k in ("name", "namespace", "resourceVersion", *keys) if k in meta}


def project_service(svc: dict[str, Any], lb_class: str,
                    claim_unclassed: bool = True) -> dict[str, Any] | None:
    """The fields of a Service this speaker reads, or None when it does not serve it (not kept)."""
    spec = svc.get("spec") or {}
    if not services.is_ours(spec, lb_class, claim_unclassed):
        return None
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return {"metadata": _meta(svc, "uid"),
            "spec": {k: spec[k] for k in ("type", "loadBalancerClass", "externalTrafficPolicy") if k in spec},
            "status": {"loadBalancer": {"ingress": [{"ip": i["ip"]} for i in ingress
                                                    if isinstance(i, Mapping) and i.get("ip")]}}}


def project_slice(sl: dict[str, Any]) -> dict[str, Any]:
    """An EndpointSlice as its Service label and its distinct (node, ready) pairs (node names
    interned): a slice of 1,000 Pods on 3 nodes keeps at most 6 small tuples, ~0.7 KB in all. Slices
    of every Service are kept (small as they are): a Service may become a LoadBalancer later."""
    meta = _meta(sl)
    name = ((sl.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
    if name:
        meta["labels"] = {SERVICE_NAME_LABEL: name}
    return {"metadata": meta, NODE_READINESS: node_readiness(sl)}


def project_node(node: dict[str, Any]) -> dict[str, Any]:
    """A Node as its name, labels and the two conditions eligibility reads (Ready's heartbeat
    timestamps change every few seconds; without them an unchanged Node wakes nobody)."""
    conds = [{"type": c.get("type"), "status": c.get("status")}
             for c in (node.get("status") or {}).get("conditions") or []
             if isinstance(c, Mapping) and c.get("type") in ("Ready", "NetworkUnavailable")]
    return {"metadata": _meta(node, "labels"), "status": {"conditions": conds}}


# -- choosing owners ---------------------------------------------------------------------------


Allowed = Callable[[str], "frozenset[str] | None"]
"""allowed(ip): the nodes that may announce ip (pool node selectors, interfaces), None for any."""


def choose(services: Iterable[ServiceView], endpoints: Mapping[str, Endpoints],
           candidates: Iterable[str], allowed: Allowed | None = None) -> dict[str, Choice]:
    """ip -> Choice, for every IP of services, from scratch. candidates: eligible nodes with a live
    speaker. ``owner_index.OwnerIndex`` gives the same answers, recomputing only what changed."""
    pool = frozenset(candidates)
    by_ip: dict[str, list[ServiceView]] = {}  # ip -> services announcing it
    for svc in services:
        for ip in svc.ips:
            by_ip.setdefault(ip, []).append(svc)
    return {ip: choose_ip(ip, svcs, endpoints, restrict(pool, allowed, ip))
            for ip, svcs in sorted(by_ip.items())}


def restrict(pool: frozenset[str], allowed: Allowed | None, ip: str) -> frozenset[str]:
    """The candidates that may announce ip."""
    return within(pool, allowed(ip) if allowed is not None else None)


def within(pool: frozenset[str], only: frozenset[str] | None) -> frozenset[str]:
    """The nodes of pool that `only` allows (None: no restriction)."""
    return pool if only is None else pool & only


def choose_ip(ip: str, svcs: Iterable[ServiceView], endpoints: Mapping[str, Endpoints],
              pool: frozenset[str]) -> Choice:
    """The Choice for one IP announced by svcs, among pool (the candidates allowed for ip)."""
    return choose_ip_ranked(ip, svcs, endpoints, pool)[0]


def choose_ip_ranked(ip: str, svcs: Iterable[ServiceView], endpoints: Mapping[str, Endpoints],
                     pool: frozenset[str]) -> tuple[Choice, Ranked | None, Ranked | None]:
    """choose_ip, plus the owner's and the runner-up's (score, node) from the same pass.

    The runner-up is the owner of this IP if the owner alone left the candidates (and nothing
    else changed): removing a node from pool removes it from every Service's set, so the
    intersection loses it too, and a runner-up exists only if what remains is not empty."""
    keys = tuple(sorted(s.key for s in svcs))
    sets = []
    for svc in svcs:
        eps = endpoints.get(svc.key)
        if eps is None or not eps.ready:
            continue  # a Service without ready endpoints cannot take traffic
        sets.append(pool & eps.nodes if svc.local else pool)
    if not sets:
        return Choice(ip=ip, owner=None, why=Why.NO_READY_ENDPOINTS, services=keys), None, None
    nodes = frozenset.intersection(*sets) or frozenset.union(*sets)
    scored = [ranked(n, ip) for n in nodes]
    best = max(scored, default=None)
    if best is not None:
        scored.remove(best)
    choice = Choice(ip=ip, owner=best[1] if best else None, why=Why.OWNED if best else Why.NO_ELIGIBLE_NODE,
                    services=keys)
    return choice, best, max(scored, default=None)


# -- hand-over -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """What this node announces now; an immutable snapshot swapped by reference."""

    announce: frozenset[str] = frozenset()
    pending: Mapping[str, float] = dataclasses.field(default_factory=dict)  # ip -> not before (monotonic)
    # ip -> live nodes that may answer it until they have seen us
    pending_from: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def next_due(self) -> float | None:
        """The earliest time a pending gain matures, or None."""
        return min(self.pending.values(), default=None)


def step(plan: Plan, mine: Iterable[str], before: Mapping[str, str | None], me: str, live: Iterable[str],
         now: float, delay: float, seen_by: Iterable[str] | None = None,
         ack_when_applied: Collection[str] = ()) -> Plan:
    """The next Plan. mine: the IPs whose desired owner is me; before: ip -> its desired owner
    before it became mine (absent: nobody); live: nodes whose speaker is live now (incl. me if live).
    Costs O(mine) in set operations and O(IPs not yet announced) in Python, whatever the number of IPs.

    Losing is immediate. A gain waits ``delay`` when another live node may still answer the IP:
    its previous owner, or (with ``seen_by``, the peers that acknowledged this node's current
    candidacy) the node that owns it in a view without us, until that node is in ``seen_by``.
    Such a node drops the IP as soon as it sees the same change, so it is silent first. A gain
    whose only rival is its previous owner, which acknowledges our candidacy only once it has
    applied it (``ack_when_applied``, given by the caller for the step where our candidacy begins:
    what it gains then, it gains by that candidacy; only with ``seen_by``), waits for that
    acknowledgement alone: it proves the rival silent for it, and the delay would only guess at it.
    """
    if mine is plan.announce and not plan.pending:
        return plan  # all of mine announced already (the steady state): nothing to decide
    live_set = frozenset(live)
    acked = None if seen_by is None else frozenset(seen_by)
    others = live_set - {me}
    unacked = frozenset() if acked is None else others - acked  # peers that may not know we are live yet
    mine_set = mine if isinstance(mine, frozenset | set) else frozenset(mine)
    announce = set(plan.announce & mine_set)  # kept; what is not in mine is lost (or never ours): stop now
    pending: dict[str, float] = {}
    pending_from: dict[str, tuple[str, ...]] = {}
    for ip in mine_set - plan.announce:  # a takeover's thousands: kept lean
        due, waits = plan.pending.get(ip), plan.pending_from.get(ip, ())
        if due is None:
            previous = before.get(ip)
            waits = _rivals(ip, previous, me, others, unacked)
            # by the acks alone: only a hand-back from the node that answered it in our last view (at a
            # cold start a slower node may still be about to raise its flag: the delay covers it)
            gated = acked is not None and waits == (previous,) and previous in ack_when_applied
            due = now if not waits or gated else now + delay
        blocked = waits and acked is not None and any(w in live_set and w not in acked for w in waits)
        if due <= now and not blocked:
            announce.add(ip)
            continue
        pending[ip] = due
        pending_from[ip] = waits
    whole = isinstance(mine_set, frozenset) and len(announce) == len(mine_set)
    announced = mine_set if whole else frozenset(announce)  # the same object: next time returns at once
    return Plan(announce=announced, pending=MappingProxyType(pending),
                pending_from=MappingProxyType(pending_from))


def _rivals(ip: str, before: str | None, me: str, others: frozenset[str],
            unacked: frozenset[str]) -> tuple[str, ...]:
    """Live nodes that may be answering ip as we gain it. others: the live nodes but me;
    unacked: those of them known not to have acknowledged our candidacy yet."""
    rivals = (before,) if before is not None and before in others else ()  # it owned ip in our last view
    if unacked:  # none unacknowledged (the steady state): no view lacks us, no ranking to compute
        runner = owner_of(ip, others)
        if runner in unacked and runner != before:
            rivals = tuple(sorted((*rivals, runner)))  # it owns ip in any view lacking us, has not seen us
    return rivals
