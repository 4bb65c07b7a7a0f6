"""Ownership: ranking determinism and spread, eligibility tables, hand-over steps, liveness."""

from __future__ import annotations

import collections
import ipaddress
from typing import Any

import pytest
from l2lb_agent import ownership as own

NODES = ["node1", "node2", "node3"]
IPS = [str(ipaddress.ip_address("10.0.0.0") + i) for i in range(3000)]


# -- ranking ---------------------------------------------------------------------------------


def test_rank_is_deterministic_and_order_free() -> None:
    for ip in IPS[:200]:
        assert own.rank(ip, NODES) == own.rank(ip, list(reversed(NODES))) == own.rank(ip, set(NODES))


def test_rank_matches_sha256_of_node_hash_key() -> None:
    import hashlib

    best = max(NODES, key=lambda n: hashlib.sha256(f"{n}#10.0.0.7".encode()).digest())
    assert own.owner_of("10.0.0.7", NODES) == best


def test_rank_copies_input() -> None:
    nodes = ["node2", "node1"]
    own.rank("x", nodes)
    assert nodes == ["node2", "node1"]


def test_owner_of_nobody() -> None:
    assert own.owner_of("10.0.0.1", []) is None


def test_spread_is_even() -> None:
    counts = collections.Counter(own.owner_of(ip, NODES) for ip in IPS)
    assert set(counts) == set(NODES)
    for n in NODES:
        assert abs(counts[n] - len(IPS) / 3) < len(IPS) * 0.05, counts  # within 5 points of 1/3


def test_minimal_movement_on_leave_and_join() -> None:
    before = {ip: own.owner_of(ip, NODES) for ip in IPS}
    after_leave = {ip: own.owner_of(ip, ["node1", "node2"]) for ip in IPS}
    moved = [ip for ip in IPS if before[ip] != after_leave[ip]]
    assert all(before[ip] == "node3" for ip in moved)  # only node3's keys move
    after_join = {ip: own.owner_of(ip, [*NODES, "node4"]) for ip in IPS}
    moved = [ip for ip in IPS if before[ip] != after_join[ip]]
    assert all(after_join[ip] == "node4" for ip in moved)  # only keys node4 wins move
    assert abs(len(moved) - len(IPS) / 4) < len(IPS) * 0.05


# -- parsing ---------------------------------------------------------------------------------


def node(name: str, ready: str = "True", net_unavail: str | None = None, exclude: bool = False) -> dict:
    conds = [{"type": "Ready", "status": ready}]
    if net_unavail is not None:
        conds.append({"type": "NetworkUnavailable", "status": net_unavail})
    labels = {own.EXCLUDE_LABEL: ""} if exclude else {}
    return {"metadata": {"name": name, "labels": labels}, "status": {"conditions": conds}}


@pytest.mark.parametrize(
    ("obj", "eligible"),
    [
        pytest.param(node("n"), True, id="ready"),
        pytest.param(node("n", ready="False"), False, id="not-ready"),
        pytest.param(node("n", ready="Unknown"), False, id="ready-unknown"),
        pytest.param({"metadata": {"name": "n"}}, False, id="no-conditions"),
        pytest.param(node("n", net_unavail="True"), False, id="network-unavailable"),
        pytest.param(node("n", net_unavail="False"), True, id="network-available"),
        pytest.param(node("n", exclude=True), False, id="exclude-label-empty-value"),
    ],
)
def test_node_eligible(obj: dict, eligible: bool) -> None:
    assert own.node_eligible(obj)[0] is eligible


def svc(name: str, ips: list[str], *, ns: str = "default", typ: str = "LoadBalancer", cls: str | None = None,
        local: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": typ, "externalTrafficPolicy": "Local" if local else "Cluster"}
    if cls is not None:
        spec["loadBalancerClass"] = cls
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


@pytest.mark.parametrize(
    ("obj", "ips"),
    [
        pytest.param(svc("a", ["192.168.1.240"]), ("192.168.1.240",), id="plain"),
        pytest.param(svc("a", ["192.168.1.240"], cls="l2lb.io/layer2"), ("192.168.1.240",), id="our-class"),
        pytest.param(svc("a", ["192.168.1.240"], cls="other.io/lb"), None, id="other-class"),
        pytest.param(svc("a", ["192.168.1.240"], typ="ClusterIP"), None, id="not-loadbalancer"),
        pytest.param(svc("a", []), (), id="pending"),
        pytest.param(svc("a", ["fd00:0:0::0001", "bogus"]), ("fd00::1",), id="ipv6-canonical-bogus-skipped"),
    ],
)
def test_service_view(obj: dict, ips: tuple | None) -> None:
    view = own.service_view(obj, "l2lb.io/layer2")
    assert (view.ips if view else None) == ips


def eps(*endpoints: tuple[str, bool | None]) -> dict:
    def one(name: str, ready: bool | None) -> dict:
        return {"nodeName": name, "conditions": {} if ready is None else {"ready": ready}}

    return {"endpoints": [one(n, r) for n, r in endpoints]}


def test_endpoints_of_ready_unset_counts_as_ready() -> None:
    e = own.endpoints_of([eps(("node1", False), ("node2", None)), eps(("node3", True))])
    assert e.ready and e.nodes == {"node2", "node3"}
    assert not own.endpoints_of([eps(("node1", False))]).ready


# -- choose ----------------------------------------------------------------------------------

SV = own.ServiceView
EP = own.Endpoints


def on(*nodes: str) -> own.Endpoints:
    return own.Endpoints(ready=True, nodes=frozenset(nodes))

ALL = frozenset(NODES)
IP = "192.168.1.240"


@pytest.mark.parametrize(
    ("services", "endpoints", "candidates", "owners"),
    [
        pytest.param([SV(key="d/a", ips=(IP,), local=False)], {"d/a": on("node1")},
                     ALL, {own.owner_of(IP, NODES)}, id="cluster-any-node"),
        pytest.param([SV(key="d/a", ips=(IP,), local=False)], {"d/a": EP(ready=False, nodes=frozenset())},
                     ALL, {None}, id="no-ready-endpoint"),
        pytest.param([SV(key="d/a", ips=(IP,), local=False)], {}, ALL, {None}, id="no-slices"),
        pytest.param([SV(key="d/a", ips=(IP,), local=True)], {"d/a": on("node2")},
                     ALL, {"node2"}, id="local-picks-endpoint-node"),
        pytest.param([SV(key="d/a", ips=(IP,), local=True)], {"d/a": on("node2")},
                     frozenset({"node1", "node3"}), {None}, id="local-endpoint-node-not-candidate"),
        pytest.param([SV(key="d/a", ips=(IP,), local=False)], {"d/a": EP(ready=True, nodes=frozenset())},
                     frozenset(), {None}, id="no-live-speaker"),
        pytest.param([SV(key="d/a", ips=(IP,), local=True), SV(key="d/b", ips=(IP,), local=True)],
                     {"d/a": EP(ready=True, nodes=frozenset({"node1", "node3"})),
                      "d/b": EP(ready=True, nodes=frozenset({"node3", "node2"}))},
                     ALL, {"node3"}, id="shared-local-intersection"),
        pytest.param([SV(key="d/a", ips=(IP,), local=True), SV(key="d/b", ips=(IP,), local=True)],
                     {"d/a": on("node1"),
                      "d/b": on("node2")},
                     ALL, {own.owner_of(IP, ["node1", "node2"])}, id="shared-disjoint-union"),
        pytest.param([SV(key="d/a", ips=(IP,), local=True), SV(key="d/b", ips=(IP,), local=False)],
                     {"d/a": EP(ready=False, nodes=frozenset()), "d/b": EP(ready=True, nodes=frozenset())},
                     ALL, {own.owner_of(IP, NODES)}, id="shared-one-without-endpoints-ignored"),
    ],
)
def test_choose(services: list, endpoints: dict, candidates: frozenset, owners: set) -> None:
    choice = own.choose(services, endpoints, candidates)[IP]
    assert choice.owner in owners
    assert (choice.why is own.Why.OWNED) == (choice.owner is not None)
    assert choice.services == tuple(sorted(s.key for s in services))


def test_shared_ip_single_owner_regardless_of_service_order() -> None:
    a = SV(key="d/a", ips=(IP,), local=False)
    b = SV(key="d/b", ips=(IP, "192.168.1.241"), local=False)
    ready = {"d/a": EP(ready=True, nodes=frozenset()), "d/b": EP(ready=True, nodes=frozenset())}
    assert own.choose([a, b], ready, ALL) == own.choose([b, a], ready, ALL)
    assert own.choose([a, b], ready, ALL)[IP].owner == own.owner_of(IP, NODES)  # hashed on the IP


# -- hand-over steps (ordered scenario, invariant after every row) ------------------------------

# (name, time, desired owner of IP, live nodes, expected announce by node1?)
SCENARIO = [
    ("start: node2 owns, node1 not live yet", 0.0, "node2", {"node2"}, False),
    ("node1 live and wins: node2 still live -> wait", 0.1, "node1", {"node1", "node2"}, False),
    ("still waiting", 0.5, "node1", {"node1", "node2"}, False),
    ("delay over", 0.61, "node1", {"node1", "node2"}, True),
    ("keeps it", 1.0, "node1", {"node1", "node2"}, True),
    ("loses to node3: immediate", 1.1, "node3", {"node1", "node2", "node3"}, False),
    ("node3 dies: back to node1, from a dead node -> immediate", 3.2, "node1", {"node1", "node2"}, True),
    ("nobody eligible", 4.0, None, {"node1", "node2"}, False),
    ("from nobody -> immediate", 4.1, "node1", {"node1", "node2"}, True),
]


class Steps:
    """Drives ownership.step from whole desired maps, as the speaker's index does: each step gets
    the IPs desired for me, and for each the owner desired at the step before."""

    def __init__(self, me: str, delay: float, last: dict | None = None) -> None:
        self.me, self.delay, self.last, self.plan = me, delay, dict(last or {}), own.Plan()

    def __call__(self, desired: dict, live: set, now: float, seen_by: set | None = None,
                 ack_when_applied: frozenset = frozenset()) -> own.Plan:
        mine = [ip for ip, owner in desired.items() if owner == self.me]
        self.plan = own.step(self.plan, mine, self.last, self.me, live, now, self.delay, seen_by=seen_by,
                             ack_when_applied=ack_when_applied)
        self.last = dict(desired)
        return self.plan


def test_step_scenario() -> None:
    steps = Steps("node1", 0.5)
    for name, now, owner, live, expect in SCENARIO:
        plan = steps({IP: owner}, live, now)
        assert (IP in plan.announce) is expect, name
        assert not (plan.announce & set(plan.pending)), name  # invariant: never both
        assert all(ip_owner == "node1" for ip_owner in [owner] if IP in plan.announce), name


def test_step_pending_cancelled_when_ownership_moves_away() -> None:
    steps = Steps("node1", 0.5, last={IP: "node2"})
    plan = steps({IP: "node1"}, {"node1", "node2"}, 0.0)
    assert plan.pending == {IP: 0.5} and plan.next_due() == 0.5
    plan = steps({IP: "node2"}, {"node1", "node2"}, 0.2)
    assert not plan.pending and not plan.announce
    assert plan.next_due() is None


def test_step_drops_ips_that_vanish() -> None:
    steps = Steps("node1", 0.5)
    assert steps({IP: "node1"}, {"node1"}, 0.0).announce == {IP}
    assert steps({}, {"node1"}, 0.1).announce == frozenset()


def test_step_cost_follows_mine_not_all_ips() -> None:
    """Only the IPs passed as mine are looked at: 10,000 others cost nothing."""
    plan = own.step(own.Plan(), [IP], {}, "node1", {"node1"}, 0.0, 0.5)
    assert plan.announce == {IP}


def test_step_in_the_steady_state_returns_the_plan_it_was_given() -> None:
    """All of mine announced and nothing pending: the same Plan, as a full pass would compute it."""
    mine = frozenset(f"10.0.{i // 250}.{i % 250}" for i in range(1000))
    plan = own.step(own.Plan(), mine, {}, "node1", {"node1"}, 0.0, 0.5)
    assert plan.announce is mine
    assert own.step(plan, mine, {}, "node1", {"node1", "node2"}, 1.0, 0.5) is plan
    assert own.step(plan, set(mine), {}, "node1", {"node1"}, 1.0, 0.5) == plan  # no shortcut: same answer
    fewer = mine - {"10.0.0.0"}
    assert own.step(plan, fewer, {}, "node1", {"node1"}, 1.0, 0.5).announce == fewer


# -- rivals must have seen us; Ready not trusted when no live node has it ------------------------


def test_step_waits_until_the_rival_saw_our_candidacy() -> None:
    ip = "192.168.1.240"
    me, rival = "b", "a"
    steps = Steps(me, 0.1)
    steps({ip: rival}, {me, rival}, 0.0, seen_by=set())
    plan = steps({ip: me}, {me, rival}, 0.0, seen_by=set())
    assert ip not in plan.announce and plan.pending_from[ip] == (rival,)
    plan = steps({ip: me}, {me, rival}, 0.5, seen_by=set())
    assert ip not in plan.announce  # the delay passed, but the rival has not acknowledged us
    plan = steps({ip: me}, {me, rival}, 0.5, seen_by={rival})
    assert ip in plan.announce


HAND_BACK = [
    # ack_when_applied given (the candidacy's first step, the rival acks once applied), the rival's
    # acknowledgement already in at that step: announced at 0.0 / at 0.01 (the acknowledgement then)
    (True, False, False, True),  # a return: the acknowledgement proves the holder silent, no delay on top
    (True, True, True, True),  # a slow first step (10,000 addresses): the acknowledgement came before it
    (False, False, False, False),  # an older rival, or a later step (a gain by another change): the delay
    (False, True, False, False),
]


@pytest.mark.parametrize(("given", "acked_first", "at_0", "at_ack"), HAND_BACK)
def test_step_hand_back_waits_for_an_applied_acknowledgement_alone(given: bool, acked_first: bool,
                                                                    at_0: bool, at_ack: bool) -> None:
    ip = "192.168.1.240"
    me, rival = "b", "a"
    steps = Steps(me, 0.05)
    first = {rival} if acked_first else set()
    steps({ip: rival}, {rival}, 0.0)
    when_applied = frozenset({rival} if given else ())
    plan = steps({ip: me}, {me, rival}, 0.0, seen_by=first, ack_when_applied=when_applied)
    assert (ip in plan.announce) is at_0
    plan = steps({ip: me}, {me, rival}, 0.01, seen_by={rival})
    assert (ip in plan.announce) is at_ack
    plan = steps({ip: me}, {me, rival}, 0.05, seen_by={rival})
    assert ip in plan.announce


def test_step_cold_start_keeps_the_delay_for_a_runner_up_rival() -> None:
    """No previous owner in our view (a cold start): a slower node may be about to raise its flag,
    so an acknowledging runner-up does not shorten the delay."""
    ip = "192.168.1.240"
    assert own.owner_of(ip, {"b", "a", "c"}) == "b"
    runner = own.owner_of(ip, {"a", "c"})
    steps = Steps("b", 0.05)
    plan = steps({ip: "b"}, {"b", "a", "c"}, 0.0, seen_by=set(), ack_when_applied=frozenset({"a", "c"}))
    assert ip not in plan.announce and plan.pending_from[ip] == (runner,)
    assert ip not in steps({ip: "b"}, {"b", "a", "c"}, 0.01, seen_by={runner}).announce
    assert ip in steps({ip: "b"}, {"b", "a", "c"}, 0.05, seen_by={runner}).announce


def test_step_without_seen_by_ignores_ack_when_applied() -> None:
    """No acknowledgements to wait for: the delay, never an immediate gain from a live rival."""
    ip = "192.168.1.240"
    steps = Steps("b", 0.05)
    steps({ip: "a"}, {"a"}, 0.0)
    assert ip not in steps({ip: "b"}, {"a", "b"}, 0.0, ack_when_applied=frozenset({"a"})).announce
    assert ip in steps({ip: "b"}, {"a", "b"}, 0.05).announce


def test_step_gain_from_a_dead_owner_is_immediate_when_the_runner_up_saw_us() -> None:
    ip = "192.168.1.240"
    steps = Steps("b", 0.1)
    steps({ip: "dead"}, {"b", "c", "dead"}, 0.0, seen_by={"c", "dead"})
    plan = steps({ip: "b"}, {"b", "c"}, 1.0, seen_by={"c"})
    assert ip in plan.announce


def test_step_cold_start_waits_for_a_runner_up_that_has_not_seen_us() -> None:
    ip = "192.168.1.240"
    runner = own.owner_of(ip, {"a", "c"})
    plan = Steps("zz", 0.1)({ip: "zz"}, {"zz", "a", "c"}, 0.0, seen_by=set())
    if own.owner_of(ip, {"zz", "a", "c"}) == "zz":
        assert ip not in plan.announce and plan.pending_from[ip] == (runner,)


def node(name: str, ready: bool, labels: dict | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


@pytest.mark.parametrize(
    ("nodes", "live", "want"),
    [
        ([node("a", True), node("b", False)], {"a", "b"}, {"a"}),
        ([node("a", False), node("b", False)], {"a", "b"}, {"a", "b"}),
        ([node("a", False), node("b", False, {own.EXCLUDE_LABEL: ""})], {"a", "b"}, {"a"}),
        ([node("a", False)], set(), set()),
    ],
    ids=["ready-trusted", "all-notready-after-restart", "exclusion-still-applies", "nobody-live"],
)
def test_eligible_nodes(nodes: list, live: set, want: set) -> None:
    assert own.eligible_nodes(nodes, live) == want


@pytest.mark.parametrize(
    ("cls", "claim", "served"),
    [(None, True, True), (None, False, False), ("l2lb.io/layer2", False, True),
     ("metallb.io/x", True, False)],
    ids=["classless-claimed", "classless-not-claimed", "our-class", "foreign-class"],
)
def test_service_view_follows_is_ours(cls: str | None, claim: bool, served: bool) -> None:
    svc = {"metadata": {"namespace": "d", "name": "s"},
           "spec": {"type": "LoadBalancer", **({"loadBalancerClass": cls} if cls else {})},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.240"}]}}}
    assert (own.service_view(svc, "l2lb.io/layer2", claim) is not None) is served


# -- projections: what the speaker's caches keep gives the same answers as the whole objects --------


def test_projected_slices_give_the_same_endpoints() -> None:
    import random

    rng = random.Random(7)
    for _ in range(300):
        slices = []
        for k in range(rng.randrange(1, 4)):
            eps = [{"addresses": ["10.0.0.1"], "nodeName": rng.choice(["node1", "node2", "node3", None]),
                    "conditions": rng.choice([{}, {"ready": True}, {"ready": False}, {"ready": None}])}
                   for _ in range(rng.randrange(0, 6))]
            slices.append({"metadata": {"name": f"s-{k}", "namespace": "ns", "resourceVersion": "1",
                                        "labels": {own.SERVICE_NAME_LABEL: "s"}}, "endpoints": eps})
        projected = [own.project_slice(sl) for sl in slices]
        assert own.endpoints_of(projected) == own.endpoints_of(slices)
        assert all(own.slice_service_key(p) == "ns/s" for p in projected)
        assert all("endpoints" not in p for p in projected)  # the Pod list is not kept
