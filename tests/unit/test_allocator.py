"""The allocator (l2lb_agent.allocator): ordered scenario tables with an invariant after every row,
plus property tests on random operation sequences."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from l2lb_agent import allocator, config
from l2lb_agent.allocator import Reason, Request, Tenant

R = Reason


def ip(text: str) -> allocator.IP:
    return ipaddress.ip_address(text)


def cfg(*pools: dict[str, Any]) -> config.Config:
    return config.load_config({"address-pools": list(pools)})


def pool(name: str, *addresses: str, **flags: Any) -> dict[str, Any]:
    return {"name": name, "addresses": list(addresses), **flags}


def req(*ips: str, families: tuple[int, ...] | None = None, **kw: Any) -> Request:
    wanted = families or tuple(dict.fromkeys(ip(i).version for i in ips)) or (4,)
    current = tuple(ip(c) for c in kw.pop("current", ()))
    ports = frozenset(kw.pop("ports", {(80, "TCP")}))
    return Request(families=wanted, ips=tuple(ip(i) for i in ips), current=current, ports=ports, **kw)


def check_invariant(al: allocator.Allocator) -> None:
    """What must hold after every operation."""
    held: dict[allocator.IP, set[str]] = {}
    for key in al.holders():
        ips = al.ips_of(key)
        assert ips, f"{key} is allocated with no address"
        assert len({a.version for a in ips}) == len(ips), f"{key} holds two addresses of one family"
        pools = {config.pool_of(al.config, a) for a in ips}  # type: ignore[arg-type]
        assert len(pools) == 1 or None in pools, f"{key} holds addresses from several pools"
        for a in ips:
            held.setdefault(a, set()).add(key)
    for a, keys in held.items():
        assert al.users(a) == keys
        reqs = [al.request_of(k) for k in keys]
        if len(keys) > 1:
            assert all(r is not None and r.sharing_key and r.sharing_key == reqs[0].sharing_key for r in reqs)
            assert len({r.backend_key for r in reqs if r}) == 1
            ports = [p for r in reqs if r for p in r.ports]
            assert len(ports) == len(set(ports)), f"port clash on {a}"
    if al.config is not None:
        in_pools = {a for a in held if config.contains(al.config, a)}
        assert sum(used for _, used, _ in al.stats()) == len(in_pools)


@dataclass
class Step:
    op: str  # assign | release | config
    key: str = ""
    request: Request | None = None
    config: config.Config | None = None
    ips: tuple[str, ...] = ()  # expected addresses (assign) or freed ones (release)
    reason: Reason | None = None  # expected failure
    pool: str | None = None
    outside: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def A(key: str, request: Request, *ips: str, reason: Reason | None = None, pool: str | None = None,
      outside: bool = False) -> Step:
    return Step("assign", key, request, ips=ips, reason=reason, pool=pool, outside=outside)


def F(key: str, *ips: str) -> Step:
    return Step("release", key, ips=ips)


def C(new: config.Config, *outside_keys: str) -> Step:
    return Step("config", config=new, ips=outside_keys)


TUTORIAL = cfg(pool("my-ip-space", "192.168.1.240/28"))
THREE = cfg(pool("manual", "10.0.0.1", **{"auto-assign": False}), pool("b", "10.0.1.1-10.0.1.2"),
            pool("c", "10.0.2.1"))
DUAL = cfg(pool("v4only", "10.1.0.0/30"), pool("dual", "10.2.0.0/30", "fd00::/126"),
           pool("v6only", "fd01::1"))

TENANTS = cfg(
    pool("web-only", "10.0.0.1", **{"service-allocation": {
        "service-selectors": [{"matchLabels": {"app": "web"}}]}}),
    pool("open", "10.0.1.1-10.0.1.3"),
    pool("mid", "10.0.2.1", **{"service-allocation": {"priority": 5, "namespaces": ["team-a"]}}),
    pool("fast", "10.0.3.1-10.0.3.2", **{"service-allocation": {
        "priority": 1, "namespace-selectors": [{"matchLabels": {"team": "a"}}]}}),
    pool("open2", "10.0.4.1", **{"auto-assign": False}))
TEAM_A = Tenant(namespace="team-a", namespace_labels={"team": "a"})
TEAM_B = Tenant(namespace="team-b", namespace_labels={"team": "b"}, service_labels={"app": "web"})

SCENARIOS = {
    "tutorial-lowest-free": (TUTORIAL, [
        A("default/nginx", req(), "192.168.1.240", pool="my-ip-space"),
        A("default/b", req(), "192.168.1.241"),
        A("default/nginx", req(current=["192.168.1.240"]), "192.168.1.240"),  # idempotent
        F("default/nginx", "192.168.1.240"),
        A("default/c", req(), "192.168.1.240"),
        F("default/nope"),
    ]),
    "exhaustion-then-release": (cfg(pool("p", "10.0.0.1-10.0.0.2")), [
        A("n/a", req(), "10.0.0.1"),
        A("n/b", req(), "10.0.0.2"),
        A("n/c", req(), reason=R.POOL_EXHAUSTED),
        F("n/a", "10.0.0.1"),
        A("n/c", req(), "10.0.0.1"),
    ]),
    "pool-order-and-choice": (THREE, [
        A("n/a", req(), "10.0.1.1", pool="b"),
        A("n/b", req(), "10.0.1.2"),
        A("n/c", req(), "10.0.2.1", pool="c"),
        A("n/d", req(), reason=R.POOL_EXHAUSTED),
        A("n/e", req(pool="manual"), "10.0.0.1", pool="manual"),
        A("n/f", req("10.0.0.1"), reason=R.IP_IN_USE),
        A("n/g", req(pool="nope"), reason=R.UNKNOWN_POOL),
        F("n/b", "10.0.1.2"),
        A("n/h", req(pool="c"), reason=R.POOL_EXHAUSTED),
        A("n/i", req(pool="b"), "10.0.1.2"),
    ]),
    "requested-addresses": (THREE, [
        A("n/a", req("10.9.9.9"), reason=R.OUTSIDE_POOLS),
        A("n/a", req("10.0.1.2", pool="c"), reason=R.WRONG_POOL),
        A("n/a", req("10.0.1.2"), "10.0.1.2", pool="b"),
        A("n/a", req("10.0.1.2"), "10.0.1.2"),
        A("n/b", req(), "10.0.1.1"),
        A("n/a", req("10.0.2.1"), "10.0.2.1"),  # request changed: moves, frees the old one
        A("n/c", req("10.0.1.2"), "10.0.1.2"),
        A("n/d", req(), reason=R.POOL_EXHAUSTED),
    ]),
    "sharing": (cfg(pool("p", "10.0.0.1-10.0.0.3")), [
        A("n/a", req(sharing_key="k", ports={(80, "TCP")}), "10.0.0.1"),
        A("n/b", req(sharing_key="k", ports={(443, "TCP")}), "10.0.0.1"),
        A("n/c", req(sharing_key="k", ports={(80, "UDP")}), "10.0.0.1"),
        A("n/d", req("10.0.0.1", sharing_key="k", ports={(443, "TCP")}), reason=R.SHARING_CLASH),
        A("n/d", req(sharing_key="k", ports={(443, "TCP")}), "10.0.0.2"),  # auto: clash -> fresh address
        A("n/e", req("10.0.0.1", sharing_key="other"), reason=R.IP_IN_USE),
        A("n/e", req("10.0.0.1"), reason=R.IP_IN_USE),
        A("n/f", req("10.0.0.1", sharing_key="k", ports={(8080, "TCP")}, backend_key='{"app": "x"}'),
          reason=R.SHARING_MISMATCH),
        F("n/a"),
        F("n/b"),
        F("n/c", "10.0.0.1"),
    ]),
    "sharing-local-same-selector": (cfg(pool("p", "10.0.0.1-10.0.0.3")), [
        A("n/a", req(sharing_key="k", backend_key="sel", ports={(80, "TCP")}), "10.0.0.1"),
        A("n/b", req(sharing_key="k", backend_key="sel", ports={(81, "TCP")}), "10.0.0.1"),
        A("n/c", req(sharing_key="k", backend_key="other", ports={(82, "TCP")}), "10.0.0.2"),
    ]),
    "dual-stack": (DUAL, [
        A("n/req", req(families=(4, 6), require_all=True), "10.2.0.0", "fd00::", pool="dual"),
        A("n/pref", req(families=(6, 4), require_all=False), "fd00::1", "10.2.0.1", pool="dual"),
        A("n/v4", req(families=(4,)), "10.1.0.0", pool="v4only"),
        A("n/v6", req(families=(6,)), "fd00::2", pool="dual"),
        A("n/two", req("10.1.0.3", "fd01::1", require_all=True), reason=R.DIFFERENT_POOLS),
        A("n/one", req("10.2.0.3", families=(4, 6), require_all=True), reason=R.FAMILY_MISMATCH),
        A("n/wrongfam", req("fd00::3", families=(4,)), reason=R.FAMILY_MISMATCH),
        A("n/both", req("10.2.0.3", "fd00::3", require_all=True), "10.2.0.3", "fd00::3"),
        A("n/req2", req(families=(4, 6), require_all=True), reason=R.POOL_EXHAUSTED),
        A("n/pref2", req(families=(4, 6), require_all=False), "10.1.0.1", pool="v4only"),
        A("n/req", req(families=(4,), current=["10.2.0.0", "fd00::"]), "10.2.0.0"),  # v6 dropped
        A("n/req2", req(families=(4, 6), require_all=True), "10.2.0.2", "fd00::"),
    ]),
    "avoid-buggy-ips": (cfg(pool("p", "10.0.0.254-10.0.1.1", **{"avoid-buggy-ips": True})), [
        A("n/a", req(), "10.0.0.254"),
        A("n/b", req(), "10.0.1.1"),
        A("n/c", req(), reason=R.POOL_EXHAUSTED),
        A("n/d", req("10.0.0.255"), reason=R.BUGGY_IP),
    ]),
    "config-swap-keeps-addresses": (cfg(pool("old", "10.0.0.0/30")), [
        A("n/a", req(), "10.0.0.0"),
        A("n/b", req(), "10.0.0.1"),
        C(cfg(pool("new", "10.9.0.0/30")), "n/a", "n/b"),
        A("n/a", req(current=["10.0.0.0"]), "10.0.0.0", outside=True),
        A("n/c", req(), "10.9.0.0", pool="new"),
        A("n/d", req("10.0.0.1"), reason=R.OUTSIDE_POOLS),
        A("n/b", req("10.9.0.3"), "10.9.0.3"),  # the operator acts: the kept address goes
        F("n/a", "10.0.0.0"),
        C(cfg(pool("new", "10.9.0.0/30"), pool("old", "10.0.0.0/30"))),
    ]),
    "rebuild-from-status": (TUTORIAL, [
        A("n/kept", req(current=["192.168.1.250"]), "192.168.1.250"),
        A("n/dup", req(current=["192.168.1.250"]), "192.168.1.240"),  # someone else holds it: renumbered
        A("n/gone", req(current=["10.7.7.7"]), "10.7.7.7", outside=True),
        A("n/new", req(), "192.168.1.241"),
        A("n/pool", req(current=["192.168.1.242"], pool="nope"), reason=R.UNKNOWN_POOL),
    ]),
    "service-allocation-priority-then-config-order": (TENANTS, [
        A("team-a/x", req(tenant=TEAM_A), "10.0.3.1", pool="fast"),  # priority 1 beats earlier pools
        A("team-a/y", req(tenant=TEAM_A), "10.0.3.2", pool="fast"),
        A("team-a/z", req(tenant=TEAM_A), "10.0.2.1", pool="mid"),  # fast exhausted: priority 5 next
        A("team-a/w", req(tenant=TEAM_A), "10.0.1.1", pool="open"),  # no priority: after numbered ones
        A("team-b/x", req(tenant=TEAM_B), "10.0.0.1", pool="web-only"),  # config order; labels admit
        A("team-b/y", req(tenant=TEAM_B, pool="mid"), reason=R.NOT_ADMITTED),
        A("team-b/y", req("10.0.3.2", tenant=TEAM_B), reason=R.NOT_ADMITTED),  # refused before "in use"
        A("team-b/y", req("10.0.1.3", tenant=TEAM_B), "10.0.1.3"),
        A("team-b/z", req(tenant=TEAM_B), "10.0.1.2", pool="open"),  # fast and mid refuse team-b
        A("team-a/x", req(tenant=TEAM_B, current=["10.0.3.1"]), "10.0.3.1"),  # held: kept, not renumbered
        F("team-a/y", "10.0.3.2"),
        A("other/n", req(tenant=None), "10.0.3.2", pool="fast"),  # no tenant: rules not checked
    ]),
    "service-allocation-none-admits": (cfg(
        pool("a", "10.0.0.1", **{"service-allocation": {"namespaces": ["team-a"]}}),
        pool("b", "10.0.1.1", **{"service-allocation": {"service-selectors": [{"matchLabels": {"x": "y"}}]}}),
        pool("m", "10.0.2.1", **{"auto-assign": False})), [
        A("team-b/s", req(tenant=Tenant(namespace="team-b")), reason=R.NOT_ADMITTED),
        A("team-b/s", req(pool="m", tenant=Tenant(namespace="team-b")), "10.0.2.1"),  # no rules: admitted
        A("team-a/s", req(tenant=Tenant(namespace="team-a")), "10.0.0.1", pool="a"),
    ]),
    "malformed-request-releases": (TUTORIAL, [
        A("n/a", req(), "192.168.1.240"),
        A("n/a", Request(error=allocator.Failure(R.BOTH_SET, "both")), reason=R.BOTH_SET),
        A("n/b", req(), "192.168.1.240"),
    ]),
}


@pytest.mark.parametrize(("initial", "steps"), list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenarios(initial: config.Config, steps: list[Step]) -> None:
    al = allocator.Allocator(initial)
    for n, step in enumerate(steps):
        where = f"row {n} ({step.op} {step.key})"
        if step.op == "assign":
            assert step.request is not None
            res = al.assign(step.key, step.request)
            if step.reason is not None:
                assert res.failure is not None and res.failure.reason is step.reason, f"{where}: {res}"
                assert al.ips_of(step.key) == ()
            else:
                assert res.ok, f"{where}: {res.failure}"
                assert tuple(map(str, res.ips)) == step.ips, where
                assert al.ips_of(step.key) == res.ips
                assert res.outside_pools is step.outside, where
                if step.pool:
                    assert res.pool == step.pool, where
        elif step.op == "release":
            assert tuple(map(str, al.release(step.key))) == step.ips, where
        else:
            assert step.config is not None
            assert sorted(al.set_config(step.config)) == sorted(step.ips), where
        check_invariant(al)


def test_no_config_assigns_nothing() -> None:
    res = allocator.Allocator(None).assign("n/a", req())
    assert res.failure is not None and res.failure.reason is R.NO_CONFIG


def test_no_auto_assign_pool() -> None:
    al = allocator.Allocator(cfg(pool("m", "10.0.0.1", **{"auto-assign": False})))
    res = al.assign("n/a", req())
    assert res.failure is not None and res.failure.reason is R.NO_AUTO_ASSIGN_POOL


def test_refusal_messages_name_pool_and_rule() -> None:
    al = allocator.Allocator(TENANTS)
    got = [al.assign("team-b/s", r).failure for r in (
        req(tenant=TEAM_B, pool="fast"), req("10.0.2.1", tenant=TEAM_B),
        req(tenant=Tenant(namespace="team-c"), families=(6,)))]
    assert [f.reason if f else None for f in got] == [R.NOT_ADMITTED, R.NOT_ADMITTED, R.NO_POOL_FOR_FAMILY]
    assert got[0] is not None and got[0].message == (
        "pool 'fast' refuses the Service: namespace team-b has labels {team=b} matching no "
        "service-allocation.namespace-selectors [team=a]")
    assert got[1] is not None and got[1].message == (
        "requested 10.0.2.1 is in pool 'mid', which refuses the Service: namespace team-b is not in "
        "service-allocation.namespaces [team-a]")
    al2 = allocator.Allocator(cfg(pool("a", "10.0.0.1", **{"service-allocation": {"namespaces": ["x"]}})))
    res = al2.assign("n/s", req(tenant=Tenant(namespace="n")))
    assert res.failure is not None and res.failure.message == (
        "no auto-assign pool admits the Service (pool 'a': namespace n is not in "
        "service-allocation.namespaces [x])")


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        pytest.param(req("10.0.1.1"), ["10.0.1.1 is in use by n/holder"], id="in-use-names-holder"),
        pytest.param(req("10.0.1.1", sharing_key="k", ports={(80, "TCP")}), ["sharing clash on port 80/TCP"],
                     id="clash-names-port"),
        pytest.param(req(pool="zzz"), ["unknown pool 'zzz'", "b, c"], id="unknown-pool-lists-pools"),
        pytest.param(req("192.0.2.1"), ["192.0.2.1 is outside every pool"], id="outside"),
    ],
)
def test_failure_messages(request_: Request, words: list[str]) -> None:
    al = allocator.Allocator(THREE)
    al.assign("n/holder", req("10.0.1.1", sharing_key="k", ports={(80, "TCP")}))
    res = al.assign("n/x", request_)
    assert res.failure is not None
    for word in words:
        assert word in res.failure.message


def test_huge_v6_pool_is_fast() -> None:
    al = allocator.Allocator(cfg(pool("v6", "fd00::/64"), pool("v4", "10.0.0.0/8")))
    for i in range(2000):
        assert al.assign(f"n/{i}", req(families=(6,))).ok
    assert str(al.ips_of("n/1999")[0]) == "fd00::7cf"
    assert al.stats()[0][1:] == (2000, 2**64)


OPS = st.lists(
    st.tuples(st.sampled_from(["assign", "release"]), st.integers(0, 7), st.sampled_from([None, "k", "j"]),
              st.integers(80, 82), st.sampled_from([(4,), (6,), (4, 6)])),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_random_sequences_keep_invariant(ops: list[tuple[str, int, str | None, int, tuple[int, ...]]],
                                         ) -> None:
    al = allocator.Allocator(cfg(pool("a", "10.0.0.0-10.0.0.3", **{"avoid-buggy-ips": True}),
                                 pool("b", "10.0.1.0/31", "fd00::/127")))
    for op, n, key, port, fams in ops:
        name = f"n/{n}"
        if op == "release":
            al.release(name)
        else:
            r = Request(families=fams, require_all=True, sharing_key=key, ports=frozenset({(port, "TCP")}))
            res = al.assign(name, r)
            again = al.assign(name, r)
            assert again.ips == res.ips, "assign is not idempotent"
        check_invariant(al)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=30))
def test_auto_assign_takes_lowest_free(releases: list[int]) -> None:
    al = allocator.Allocator(cfg(pool("p", "10.0.0.0/28")))
    for i in range(10):
        al.assign(f"n/{i}", req())
    for j, i in enumerate(releases):
        al.release(f"n/{i}")
        held = {int(a) for k in al.holders() for a in al.ips_of(k)}
        res = al.assign(f"n/new{j}", req())
        free = [x for x in range(int(ip("10.0.0.0")), int(ip("10.0.0.15")) + 1) if x not in held]
        if free:
            assert int(res.ips[0]) == free[0]
        else:
            assert res.failure is not None and res.failure.reason is R.POOL_EXHAUSTED
