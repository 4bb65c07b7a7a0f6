"""The controller's placement checks (l2lb_agent.placement) and the subnet helpers of the config
model: tables of pools, nodes and published subnets -> the warning or None."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from l2lb_agent import config, placement


def pool(**extra: Any) -> config.Pool:
    raw = {"name": "p", "addresses": ["192.168.1.240/28", "fd00:4c32:6c62::100-fd00:4c32:6c62::1ff"], **extra}
    return config.load_config({"address-pools": [raw]}).pools[0]


RACK_A = {"node-selectors": [{"matchLabels": {"rack": "a"}}]}
NODES = {"node1": {"rack": "a"}, "node2": {"rack": "b"}, "node3": {}}
LAN4 = config.parse_subnets("192.168.1.0/24")
LAN6 = config.parse_subnets("fd00:4c32:6c62::/64")
OTHER = config.parse_subnets("10.9.0.0/16")


def view(subnets: dict[str, tuple[config.Network, ...]] | None = None, nodes: dict[str, Any] | None = None,
         known: bool = True) -> placement.View:
    return placement.View(nodes=NODES if nodes is None else nodes, subnets=subnets or {}, nodes_known=known)


def test_parse_subnets_skips_garbage_and_caps() -> None:
    assert config.parse_subnets("192.168.1.0/24, fd00::/64,,bogus,10.0.0.1/8") == (
        ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("fd00::/64"),
        ipaddress.ip_network("10.0.0.0/8"))
    assert config.parse_subnets(None) == ()
    assert len(config.parse_subnets(",".join(["10.0.0.0/8"] * 1000))) == config.MAX_SUBNETS


@pytest.mark.parametrize(("subnets", "expected"), [
    (LAN4, True), (LAN6, True), (OTHER, False), ((), False),
    (config.parse_subnets("192.168.1.248/29"), True),  # a subnet inside the pool's range
    (config.parse_subnets("192.168.0.0/16"), True),
    (config.parse_subnets("fd00:4c32:6c62::200/120"), False),  # just after the v6 range
])
def test_reaches_subnets(subnets: tuple[config.Network, ...], expected: bool) -> None:
    assert config.reaches_subnets(pool(), subnets) is expected


NO_NODE = [
    pytest.param({}, view(), None, id="no-selectors"),
    pytest.param(RACK_A, view(), None, id="node1-matches"),
    pytest.param({"node-selectors": [{"matchLabels": {"rack": "z"}}]}, view(), "no node matches", id="none"),
    pytest.param({"node-selectors": [{"matchLabels": {"rack": "z"}}]}, view(known=False), None,
                 id="node-cache-not-synced"),
    pytest.param({"node-selectors": [{"matchLabels": {"rack": "z"}}, {"matchLabels": {"rack": "b"}}]}, view(),
                 None, id="second-selector-ORed"),
]


@pytest.mark.parametrize(("extra", "v", "words"), NO_NODE)
def test_no_eligible_node(extra: dict[str, Any], v: placement.View, words: str | None) -> None:
    got = placement.no_eligible_node(pool(**extra), v)
    if words is None:
        assert got is None
    else:
        assert got is not None and words in got and "'p'" in got and "rack=z" in got and "3 nodes" in got


V4 = ipaddress.ip_address("192.168.1.241")
V6 = ipaddress.ip_address("fd00:4c32:6c62::100")
SUBNET = [
    pytest.param({}, [V4], view({"node1": LAN4}), None, id="v4-in-subnet"),
    pytest.param({}, [V6], view({"node1": LAN4 + LAN6}), None, id="v6-in-subnet"),
    pytest.param({}, [V4, V6], view({"node1": LAN4}), "fd00:4c32:6c62::100 of pool 'p'", id="v6-missing"),
    pytest.param({}, [V4], view({"node1": OTHER}), "seen: 10.9.0.0/16", id="wrong-subnet"),
    pytest.param({}, [V4], view({}), None, id="nothing-published-says-nothing"),
    pytest.param({"interfaces": ["eth0"]}, [V4], view({"node1": OTHER}), None, id="forced-interfaces"),
    pytest.param(RACK_A, [V4], view({"node2": LAN4, "node1": OTHER}), "seen: 10.9.0.0/16",
                 id="only-eligible-nodes-count"),
    pytest.param(RACK_A, [V4], view({"node9": LAN4, "node1": OTHER}), None, id="unknown-node-counts"),
    pytest.param(RACK_A, [V4], view({"node2": LAN4}), None, id="no-eligible-speaker-is-NoEligibleNode"),
]


@pytest.mark.parametrize(("extra", "ips", "v", "words"), SUBNET)
def test_no_matching_subnet(extra: dict[str, Any], ips: list[config.IPAddress], v: placement.View,
                            words: str | None) -> None:
    got = placement.no_matching_subnet(pool(**extra), ips, v)
    if words is None:
        assert got is None
    else:
        assert got is not None and words in got


def test_without_subnet_per_pool() -> None:
    cfg = config.load_config({"address-pools": [
        {"name": "lan", "addresses": ["192.168.1.240/28"]},
        {"name": "far", "addresses": ["10.200.0.0/28"]},
        {"name": "forced", "addresses": ["10.201.0.0/28"], "interfaces": ["eth1"]},
        {"name": "rack-b", "addresses": ["192.168.1.0/28"],
         "node-selectors": [{"matchLabels": {"rack": "b"}}]},
    ]})
    v = view({"node1": LAN4, "node2": OTHER})
    assert placement.without_subnet(cfg.pools, v) == {"lan": False, "far": True, "forced": False,
                                                      "rack-b": True}
    assert placement.without_subnet(cfg.pools, view({})) == {}


def test_many_subnets_are_shown_bounded() -> None:
    nets = config.parse_subnets(",".join(f"10.{i}.0.0/16" for i in range(40)))
    got = placement.no_matching_subnet(pool(), [V4], view({"node1": nets}))
    assert got is not None and f"and {40 - placement.MAX_SHOWN} more" in got


def lease(name: str, node: str | None, subnets: str | None, announcing: str = "") -> dict[str, Any]:
    labels = {"l2lb.io/role": "speaker-heartbeat", **({"l2lb.io/node": node} if node else {})}
    annotations = {"l2lb.io/announcing": announcing, **({"l2lb.io/subnets": subnets} if subnets else {})}
    return {"metadata": {"name": name, "namespace": "l2lb-system", "labels": labels,
                         "annotations": annotations, "resourceVersion": "7"},
            "spec": {"holderIdentity": name}}


def test_projections_keep_only_what_the_checks_read() -> None:
    node = {"metadata": {"name": "node1", "labels": {"rack": "a"}, "uid": "u"}, "status": {"conditions": []}}
    assert placement.project_labels(node) == {"metadata": {"name": "node1", "labels": {"rack": "a"}}}
    # a change of the announced IPs leaves the projection equal: the informer wakes nobody
    a = placement.project_speaker(lease("l2lb-speaker-node1", "node1", "10.0.0.0/8", announcing="10.0.0.1"))
    b = placement.project_speaker(lease("l2lb-speaker-node1", "node1", "10.0.0.0/8", announcing="10.0.0.2"))
    assert a == b and "l2lb.io/announcing" not in str(a)


def test_view_of_caches() -> None:
    v = placement.view_of(
        [placement.project_labels({"metadata": {"name": "node1", "labels": {"rack": "a"}}})],
        [placement.project_speaker(lease("l2lb-speaker-node1", "node1", "192.168.1.0/24")),
         placement.project_speaker(lease("l2lb-speaker-node2", "node2", None)),  # an older speaker
         placement.project_speaker(lease("l2lb-speaker-x", None, "10.0.0.0/8"))],  # no node label
        nodes_known=True)
    assert v.nodes == {"node1": {"rack": "a"}}
    assert v.subnets == {"node1": LAN4, "l2lb-speaker-x": config.parse_subnets("10.0.0.0/8")}
    assert v.nodes_known
