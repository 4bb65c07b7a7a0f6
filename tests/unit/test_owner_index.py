"""OwnerIndex: incremental owners equal a full recompute after any sequence of changes, and cost
follows what changed (counted in IPs recomputed, not timed)."""

from __future__ import annotations

import ipaddress
import random

import pytest
from l2lb_agent import ownership as own
from l2lb_agent.owner_index import OwnerIndex

NODES = [f"node{i}" for i in range(8)]
IPS = [f"192.168.1.{i}" for i in range(30)] + ["fd00::1", "fd00::2"]


class Model:
    """The same inputs kept plainly, for ownership.choose."""

    def __init__(self) -> None:
        self.services: dict[str, own.ServiceView] = {}
        self.endpoints: dict[str, own.Endpoints] = {}
        self.candidates: frozenset[str] = frozenset()
        self.allowed: dict[str, frozenset[str]] | None = None

    def allow(self, ip: str) -> frozenset[str] | None:
        return None if self.allowed is None else self.allowed.get(ip)

    def full(self) -> dict[str, own.Choice]:
        return own.choose(self.services.values(), self.endpoints, self.candidates,
                          self.allow if self.allowed is not None else None)


def random_change(rng: random.Random, model: Model, index: OwnerIndex) -> None:
    what = rng.random()
    if what < 0.35:
        key = f"ns/svc{rng.randrange(15)}"
        if rng.random() < 0.15:
            model.services.pop(key, None)
            index.set_service(key, None)
            return
        view = own.ServiceView(key=key, ips=tuple(sorted(set(rng.sample(IPS, rng.choice([0, 1, 1, 1, 2]))))),
                               local=rng.random() < 0.3)
        model.services[key] = view
        index.set_service(key, view)
    elif what < 0.7:
        key = f"ns/svc{rng.randrange(15)}"
        if rng.random() < 0.1:
            model.endpoints.pop(key, None)
            index.set_endpoints(key, None)
            return
        eps = own.Endpoints(ready=rng.random() < 0.85, nodes=frozenset(rng.sample(NODES, rng.randrange(4))))
        model.endpoints[key] = eps
        index.set_endpoints(key, eps)
    elif what < 0.95:
        nodes = set(model.candidates)
        for _ in range(rng.choice([1, 1, 2, 3])):
            nodes ^= {rng.choice(NODES)}  # one joins or leaves
        model.candidates = frozenset(nodes)
        index.set_candidates(nodes)
    else:
        model.allowed = None if rng.random() < 0.3 else {
            ip: frozenset(rng.sample(NODES, rng.randrange(3, 9))) for ip in IPS if rng.random() < 0.5}
        snapshot = dict(model.allowed) if model.allowed is not None else None  # as a Placement: fixed
        index.set_allowed(snapshot.get if snapshot is not None else None)


@pytest.mark.parametrize("seed", range(40))
def test_incremental_equals_full_after_any_sequence(seed: int) -> None:
    rng = random.Random(seed)
    model, index = Model(), OwnerIndex()
    seen: dict[str, own.Choice] = {}
    for _ in range(300):
        for _ in range(rng.choice([1, 1, 2, 5])):
            random_change(rng, model, index)
        for ip, choice in index.flush().items():  # the reported changes, applied, give the whole
            if choice is None:
                seen.pop(ip, None)
            else:
                seen[ip] = choice
        full = model.full()
        assert index.choices == full
        assert seen == full
        owners: dict[str, set[str]] = {}
        for ip, c in full.items():
            if c.owner:
                owners.setdefault(c.owner, set()).add(ip)
        assert index.by_owner == owners
        for node in {*owners, *NODES}:
            assert index.owned_by(node) == owners.get(node, set())  # the frozen copy follows every change
            # a standby IP is owned by another node (a hint: never the node's own, never unowned)
            assert all(full[ip].owner not in (None, node) for ip in index.standby_of(node))


@pytest.mark.parametrize("seed", range(30))
def test_incremental_equals_full_under_node_churn(seed: int) -> None:
    """Mostly one node leaving or joining at a time (runner-ups inherit, joiners re-rank them),
    sometimes several before one flush, between ordinary changes."""
    rng = random.Random(1000 + seed)
    model, index = Model(), OwnerIndex()
    model.candidates = frozenset(NODES)
    index.set_candidates(NODES)
    for _ in range(300):
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if rng.random() < 0.7:
                model.candidates = model.candidates ^ {rng.choice(NODES)}
                index.set_candidates(model.candidates)
            else:
                random_change(rng, model, index)
        index.flush()
        assert index.choices == model.full()


def build(n_services: int, nodes: list[str]) -> OwnerIndex:
    index = OwnerIndex()
    base = ipaddress.ip_address("10.0.0.0")
    for i in range(n_services):
        key = f"ns/s{i}"
        index.set_service(key, own.ServiceView(key=key, ips=(str(base + i),), local=False))
        index.set_endpoints(key, own.Endpoints(ready=True, nodes=frozenset()))
    index.set_candidates(nodes)
    index.flush()
    return index


def test_an_endpoint_change_recomputes_only_its_service() -> None:
    index = build(2000, NODES)
    before = index.recomputed
    index.set_endpoints("ns/s7", own.Endpoints(ready=False, nodes=frozenset()))
    changed = index.flush()
    assert index.recomputed - before == 1
    assert changed["10.0.0.7"].why is own.Why.NO_READY_ENDPOINTS


def test_a_node_death_hands_its_ips_to_their_runner_up_without_computing() -> None:
    index = build(2000, NODES)
    owned = index.owned_by("node3")
    before = index.recomputed
    alive = set(NODES) - {"node3"}
    index.set_candidates(alive)
    changed = index.flush()
    assert index.recomputed - before == 0  # each IP's runner-up was ranked when it was computed
    assert set(changed) == owned and changed == {ip: c for ip, c in full(2000, alive).items() if ip in owned}
    assert index.previous[next(iter(owned))] == "node3"
    node5 = index.owned_by("node5")
    assert owned & node5, "node5 inherited some of node3's IPs (whose own runner-up is not known yet)"
    before = index.recomputed
    alive -= {"node5"}
    index.set_candidates(alive)
    index.flush()
    # computed: what node5 inherited, and its IPs whose runner-up was node3; the rest are handed on
    assert len(owned & node5) <= index.recomputed - before < len(node5)
    assert index.choices == full(2000, alive)


def test_standby_is_what_a_node_inherits_when_an_owner_alone_leaves() -> None:
    standby = build(2000, NODES).standby_of("node5")
    assert standby
    inherited: set[str] = set()
    for gone in set(NODES) - {"node5"}:
        index = build(2000, NODES)
        owned, was = index.owned_by(gone), index.owned_by("node5")
        index.set_candidates(set(NODES) - {gone})
        index.flush()
        gained = index.owned_by("node5") - was
        assert gained == standby & owned
        assert not gained & index.standby_of("node5")  # owned now: no longer standing by for them
        inherited |= gained
    assert inherited == standby
    index = build(2000, NODES)
    assert index.standby_of("node5") is index.standby_of("node5")  # the same object until it changes


def full(n_services: int, candidates: set[str]) -> dict[str, own.Choice]:
    """What ownership.choose says for build(n_services, ...)'s Services among candidates."""
    base = ipaddress.ip_address("10.0.0.0")
    views = [own.ServiceView(key=f"ns/s{i}", ips=(str(base + i),), local=False) for i in range(n_services)]
    return own.choose(views, {v.key: own.Endpoints(ready=True, nodes=frozenset()) for v in views},
                      frozenset(candidates))


def test_a_join_takes_over_the_plain_ips_the_joiner_wins_without_computing() -> None:
    """One Service per IP, Cluster policy: the joiner's score against the owner's decides; the old
    owner becomes the runner-up, so the joiner's death hands each IP back without computing."""
    index = build(2000, NODES[:-1])
    before = index.recomputed
    index.set_candidates(NODES)
    changed = index.flush()
    assert index.recomputed == before
    assert set(changed) == index.owned_by(NODES[-1]) and all(c.owner == NODES[-1] for c in changed.values())
    assert index.choices == full(2000, set(NODES))
    index.set_candidates(NODES[:-1])
    assert set(index.flush()) == set(changed) and index.recomputed == before
    assert index.choices == full(2000, set(NODES[:-1]))


def test_a_join_recomputes_the_local_ips_the_joiner_may_win() -> None:
    """externalTrafficPolicy Local: a joiner counts only where it has an endpoint, so an IP whose
    owner or runner-up it outscores is computed, and no other."""
    index = OwnerIndex()
    views = [own.ServiceView(key=f"ns/l{i}", ips=(f"10.1.0.{i}",), local=True) for i in range(200)]
    for v in views:
        index.set_service(v.key, v)
        index.set_endpoints(v.key, own.Endpoints(ready=True, nodes=frozenset(NODES[:2])))
    index.set_candidates(NODES[:-1])
    index.flush()
    before = index.recomputed
    index.set_candidates(NODES)
    assert index.flush() == {}  # the joiner has no endpoint: no owner changes
    # the owner and runner-up are the two endpoint nodes: an IP is computed where the joiner
    # outscores either, since only its endpoints can tell whether it counts
    outscores = [v for v in views
                 if own.ranked(NODES[-1], v.ips[0]) > min(own.ranked(n, v.ips[0]) for n in NODES[:2])]
    assert 0 < len(outscores) < len(views) and index.recomputed - before == len(outscores)


def test_allowed_changes_recompute_only_ips_whose_candidates_differ() -> None:
    """A speaker leaving or registering changes who may announce, but not among the candidates."""
    index = build(2000, NODES[:-1])
    before = index.recomputed
    index.set_allowed({f"10.0.0.{i}": frozenset(NODES[:-1]) for i in range(256)}.get)  # [-1]: no candidate
    assert index.flush() == {} and index.recomputed == before
    index.set_allowed({f"10.0.0.{i}": frozenset(NODES[1:]) for i in range(10)}.get)  # NODES[0] is one
    first = {f"10.0.0.{i}" for i in range(10)}
    owned_by_0 = first & index.owned_by(NODES[0])
    assert owned_by_0, "NODES[0] owns some of them: the change matters"
    changed = index.flush()
    assert index.recomputed - before == 10
    assert set(changed) == owned_by_0 and all(c.owner != NODES[0] for c in changed.values())


def test_unchanged_inputs_recompute_nothing() -> None:
    index = build(500, NODES)
    before = index.recomputed
    index.set_endpoints("ns/s1", own.Endpoints(ready=True, nodes=frozenset()))  # same as before
    index.set_candidates(NODES)
    assert index.flush() == {} and index.recomputed == before
