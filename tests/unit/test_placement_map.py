"""Where each IP may be announced: node selectors, interface lists, subnet-aware default and its
fallback, unknown interfaces; and the netlink address parser behind the published interfaces."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from l2lb_agent import config, ifaddrs
from l2lb_agent.owner_index import OwnerIndex
from l2lb_agent.ownership import Endpoints, ServiceView, choose
from l2lb_agent.placement_map import Placement

POOLS = """
address-pools:
- name: lan
  addresses: [192.168.1.240/28, "fd00:4c32:6c62::f0/124"]
- name: rack-a
  addresses: [192.168.1.200-192.168.1.209]
  node-selectors: [{matchLabels: {rack: a}}]
- name: storage
  addresses: [10.0.2.240/28]
- name: forced
  addresses: [10.0.9.0/28]
  interfaces: ["eth1*"]
- name: routed
  addresses: [172.16.0.0/28]
"""
N = ipaddress.ip_network
IFACES = {
    "node1": {"eth0": (N("192.168.1.0/24"), N("fd00:4c32:6c62::/64"))},
    "node2": {"eth0": (N("192.168.1.0/24"),), "eth1": (N("10.0.2.0/24"),)},
    "node3": {"eth0": (N("192.168.1.0/24"),), "eth1.20": (N("10.0.2.0/24"),)},
}
LABELS = {"node1": {"rack": "a"}, "node2": {"rack": "b"}, "node3": {}, "node4": {"rack": "a"}}


@pytest.fixture
def placement() -> Placement:
    return Placement(config.load_config(POOLS), LABELS, {**IFACES, "node4": None})


@pytest.mark.parametrize(("ip", "allowed", "node2_ports"), [
    ("192.168.1.241", {"node1", "node2", "node3", "node4"}, {"eth0"}),  # subnet-aware: eth0 only
    ("fd00:4c32:6c62::f1", {"node1", "node4"}, set()),  # only node1 has the v6 subnet; node4 unknown
    ("192.168.1.201", {"node1", "node4"}, {"eth0"}),  # node-selectors rack=a
    ("10.0.2.241", {"node2", "node3", "node4"}, {"eth1"}),  # the second NIC's subnet, not eth0
    ("10.0.9.1", {"node2", "node3", "node4"}, {"eth1"}),  # interfaces forced by glob, subnet ignored
    ("172.16.0.1", None, None),  # no speaker has the subnet: fallback, every interface, any node
    ("203.0.113.7", None, None),  # in no pool: no rule
])
def test_rules(placement: Placement, ip: str, allowed: set | None, node2_ports: set | None) -> None:
    got = placement.allowed(ip)
    assert (set(got) if got is not None else None) == allowed
    ports = placement.ports(ip, "node2")
    assert (set(ports) if ports is not None else None) == node2_ports
    assert placement.ports(ip, "node4") is None  # unknown interfaces: all of them


def test_why_not_names_the_rule(placement: Placement) -> None:
    assert "node-selectors" in placement.why_not("192.168.1.201", "node2")
    assert "subnet holding 10.0.2.241" in placement.why_not("10.0.2.241", "node1")
    assert placement.why_not("10.0.2.241", "node2") is None


def test_equal_inputs_are_equal_placements() -> None:
    cfg = config.load_config(POOLS)
    assert Placement(cfg, LABELS, IFACES) == Placement(config.load_config(POOLS), dict(LABELS), dict(IFACES))
    assert Placement(cfg, LABELS, IFACES) != Placement(cfg, {**LABELS, "node3": {"rack": "a"}}, IFACES)


def test_a_successor_answers_as_a_fresh_placement_and_parses_nothing_again(placement: Placement) -> None:
    """A speaker leaving (node4's registration gone) or a label change keeps the parsed IPs; new
    subnets do not (an IP's subnets are part of what was parsed)."""
    ips = ["192.168.1.241", "192.168.1.201", "10.0.2.241", "10.0.9.1", "172.16.0.1", "fd00:4c32:6c62::f1"]
    for ip in ips:
        placement.allowed(ip)
    cfg = config.load_config(POOLS)
    labels = {**LABELS, "node3": {"rack": "a"}}
    successor = Placement(cfg, labels, IFACES, previous=placement)
    fresh = Placement(cfg, labels, IFACES)
    assert successor._where_of is placement._where_of
    for ip in ips:
        assert successor.allowed(ip) == fresh.allowed(ip)
        assert successor.ports(ip, "node3") == fresh.ports(ip, "node3")
    moved = {**IFACES, "node1": {"eth0": (N("192.168.7.0/24"),)}}
    assert Placement(cfg, LABELS, moved, previous=placement)._where_of is not placement._where_of


def test_the_index_with_placement_equals_a_full_recompute(placement: Placement) -> None:
    ips = ["192.168.1.241", "192.168.1.201", "10.0.2.241", "10.0.9.1", "172.16.0.1", "fd00:4c32:6c62::f1"]
    views = [ServiceView(key=f"ns/s{i}", ips=(ip,), local=False) for i, ip in enumerate(ips)]
    eps = {v.key: Endpoints(ready=True, nodes=frozenset()) for v in views}
    index = OwnerIndex()
    for v in views:
        index.set_service(v.key, v)
        index.set_endpoints(v.key, eps[v.key])
    index.set_allowed(placement.allowed)
    for candidates in ({"node1", "node2", "node3"}, {"node2", "node3"}, {"node3"}, {"node1", "node4"}):
        index.set_candidates(candidates)
        index.flush()
        assert index.choices == choose(views, eps, candidates, placement.allowed)
        for ip, c in index.choices.items():
            assert c.owner is None or placement.why_not(ip, c.owner) is None


# -- netlink parsing -----------------------------------------------------------------------------


def newaddr(family: int, prefix: int, index: int, addr: bytes, scope: int = 0,
            kind: int = ifaddrs.IFA_LOCAL) -> bytes:
    attr = struct.pack("=HH", 4 + len(addr), kind) + addr
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBBBI", family, prefix, 0, scope, index) + attr
    return struct.pack("=IHHII", 16 + len(body), ifaddrs.RTM_NEWADDR, 2, 1, 0) + body


def test_parse_netlink_addresses() -> None:
    v4 = newaddr(socket.AF_INET, 24, 2, bytes([192, 168, 1, 11]))
    v6 = newaddr(socket.AF_INET6, 64, 2, ipaddress.ip_address("fd00::11").packed, kind=ifaddrs.IFA_ADDRESS)
    lo = newaddr(socket.AF_INET, 8, 1, bytes([127, 0, 0, 1]), scope=ifaddrs.RT_SCOPE_HOST)
    done = struct.pack("=IHHII", 20, ifaddrs.NLMSG_DONE, 2, 1, 0) + b"\0\0\0\0"
    found, ended = ifaddrs.parse(v4 + v6 + lo + done)
    assert ended
    assert found == [(2, ipaddress.ip_interface("192.168.1.11/24")),
                     (2, ipaddress.ip_interface("fd00::11/64"))]


@pytest.mark.parametrize("junk", [b"", b"\x01\x02", struct.pack("=IHHII", 4, 20, 0, 0, 0),
                                  struct.pack("=IHHII", 9999, 20, 0, 0, 0) + b"x" * 8,
                                  newaddr(socket.AF_INET, 24, 2, b"\x01\x02")])  # short address
def test_malformed_netlink_is_dropped(junk: bytes) -> None:
    assert ifaddrs.parse(junk)[0] == []


def test_interfaces_annotation_round_trip() -> None:
    text = ifaddrs.format_interfaces(IFACES["node2"])
    assert text == "eth0=192.168.1.0/24;eth1=10.0.2.0/24"
    assert ifaddrs.parse_interfaces(text) == IFACES["node2"]
    assert ifaddrs.parse_interfaces("eth0=not-a-net") is None
    assert ifaddrs.parse_interfaces("=10.0.0.0/8") is None
