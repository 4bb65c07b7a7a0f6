"""Where each pool is announced, with real frames: node-selectors, interface lists, and the
subnet-aware default on nodes with two LAN interfaces (issue 13, items 1-2).

A second LAN is built for this module: bridge br1 in l2lb-lan, 10.0.2.0/24, with a client of its
own (netns l2lb-client-lan2, 10.0.2.1) and a second interface eth1 on node2 and node3
(10.0.2.12/.13, MACs 02:4c:32:00:02:1x). node1 stays on the first LAN only. Speakers choose their
interfaces themselves (eth0, and eth1 where it exists). Every check probes from both LANs, so an
answer on the wrong NIC is seen, and counts the MACs answering each probe (never two).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import pytest
from l2lb_agent import kube as k8s

from tests.bench import speaker_harness as h

pytestmark = pytest.mark.lab

NS = "l2lb-test-placement"
LAN2 = "l2lb-client-lan2"
LAN1 = "l2lb-client"
ETH1_MAC = {"node2": "02:4c:32:00:02:12", "node3": "02:4c:32:00:02:13"}
ETH0_MAC = {n: h.MAC[n] for n in h.NODES}
RACK_LABEL = "l2lb-test.io/rack"
POOLS = f"""
address-pools:
- name: lan
  addresses: [192.168.1.232/29]
- name: rack
  addresses: [192.168.1.224/29]
  node-selectors: [{{matchLabels: {{{RACK_LABEL}: r2}}}}]
- name: storage
  addresses: [10.0.2.240/28]
- name: forced
  addresses: [192.168.1.216/29]
  interfaces: [eth1]
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def second_lan() -> Iterator[None]:
    """br1 + client + eth1 on node2/node3; removed afterwards (lab down removes leftovers too)."""
    remove_second_lan()
    ip("netns", "add", LAN2)
    ip("-n", LAN2, "link", "set", "lo", "up")
    ip("-n", "l2lb-lan", "link", "add", "br1", "type", "bridge", "stp_state", "0", "forward_delay", "0",
       "mcast_snooping", "0")
    ip("-n", "l2lb-lan", "link", "set", "br1", "up")
    hosts = [(LAN2, "vlan2c", "eth0", "02:4c:32:00:02:01", "10.0.2.1")]
    hosts += [(f"l2lb-{n}", f"v{n}-2", "eth1", mac, f"10.0.2.1{n[-1]}") for n, mac in ETH1_MAC.items()]
    for netns, port, dev, mac, addr in hosts:
        ip("-n", "l2lb-lan", "link", "add", port, "type", "veth", "peer", "name", dev, "address", mac,
           "netns", netns)
        ip("-n", netns, "addr", "add", f"{addr}/24", "dev", dev)
        ip("-n", netns, "link", "set", dev, "up")
        ip("-n", "l2lb-lan", "link", "set", port, "master", "br1", "up")
        if dev == "eth1":  # like eth0: the node's kernel never answers ARP for the LoadBalancer IPs
            ip("netns", "exec", netns, "sysctl", "-qw", "net.ipv4.conf.eth1.arp_ignore=1",
               "net.ipv4.conf.eth1.arp_announce=2")
    try:
        yield
    finally:
        remove_second_lan()


def remove_second_lan() -> None:
    for args in (["netns", "del", LAN2], ["-n", "l2lb-lan", "link", "del", "br1"],
                 *(["-n", "l2lb-lan", "link", "del", f"v{n}-2"] for n in ETH1_MAC)):
        subprocess.run(["ip", *args], check=False, capture_output=True)


def label_node(api: k8s.KubeClient, node: str, value: str | None) -> None:
    api.patch(k8s.NODES, node, {"metadata": {"labels": {RACK_LABEL: value}}})


@pytest.fixture(scope="module")
def placed(lab: object, kube: object) -> Iterator[h.Cluster]:
    cluster = h.Cluster(NS, extra_args=("--interfaces", ""))  # every suitable interface: eth0, eth1
    api = cluster.api
    with second_lan():
        cluster.setup()
        try:
            label_node(api, "node2", "r2")
            api.create(k8s.CONFIGMAPS, {"metadata": {"name": "config", "namespace": NS},
                                         "data": {"config": POOLS}}, NS)
            cluster.start_all()
            cluster.wait_ready(h.NODES)
            for name, addr in (("lan", "192.168.1.233"), ("rack", "192.168.1.225"),
                               ("storage", "10.0.2.241"), ("forced", "192.168.1.217")):
                cluster.service(name, [addr])
            yield cluster
        finally:
            cluster.teardown()
            with contextlib.suppress(k8s.ApiError):
                label_node(api, "node2", None)


def answers(addr: str, netns: str, seconds: float = 3.0) -> list[str]:
    """MACs answering addr from netns once the speakers settled (retries while nobody answers)."""
    deadline = time.monotonic() + seconds
    while True:
        macs = h.owner_now(addr, tries=4, netns=netns)
        if macs or time.monotonic() > deadline:
            return macs
        time.sleep(0.2)


def test_a_pool_limited_to_node2_is_answered_by_node2_only(placed: h.Cluster) -> None:
    assert answers("192.168.1.225", LAN1) == [ETH0_MAC["node2"]]
    assert answers("192.168.1.225", LAN2, seconds=0.5) == []  # node2's eth1 has no 192.168.1.0/24


def test_subnet_aware_default_answers_on_the_nic_that_holds_the_subnet(placed: h.Cluster) -> None:
    lan2 = answers("10.0.2.241", LAN2)
    assert len(lan2) == 1 and lan2[0] in ETH1_MAC.values()  # node2 or node3, on eth1; never node1
    assert answers("10.0.2.241", LAN1, seconds=0.5) == []  # not on eth0 of anyone
    lan1 = answers("192.168.1.233", LAN1)
    assert len(lan1) == 1 and lan1[0] in ETH0_MAC.values()
    assert answers("192.168.1.233", LAN2, seconds=0.5) == []


def test_an_interface_list_is_honoured(placed: h.Cluster) -> None:
    lan2 = answers("192.168.1.217", LAN2)  # forced onto eth1, although its subnet is eth0's
    assert len(lan2) == 1 and lan2[0] in ETH1_MAC.values()
    assert answers("192.168.1.217", LAN1, seconds=0.5) == []


def test_failover_stays_on_nodes_that_can_answer(placed: h.Cluster) -> None:
    owner_mac = answers("10.0.2.241", LAN2)[0]
    owner = next(n for n, mac in ETH1_MAC.items() if mac == owner_mac)
    other = next(n for n in ETH1_MAC if n != owner)
    with h.probing("10.0.2.241", 5.0, netns=LAN1) as run, h.probing("10.0.2.241", 5.0, netns=LAN2) as got:
        time.sleep(0.7)
        killed = time.monotonic()
        placed.kill(owner, 9)
    try:
        probes = got["probes"]
        assert h.double_windows(probes) == 0
        took = h.takeover(probes, killed, owner_mac)
        assert took is not None and took < 2.0, probes[-5:]
        assert {m for t, macs in probes if t >= killed + took for m in macs} == {ETH1_MAC[other]}
        assert all(not macs for _, macs in run["probes"])
    finally:
        placed.start(owner)
        placed.wait_ready(h.NODES)


def test_a_label_change_moves_the_pool(placed: h.Cluster) -> None:
    api = placed.api
    label_node(api, "node2", None)
    label_node(api, "node3", "r2")
    try:
        deadline = time.monotonic() + 5
        while answers("192.168.1.225", LAN1) != [ETH0_MAC["node3"]]:
            assert time.monotonic() < deadline, "the rack pool did not move to node3"
        assert answers("192.168.1.225", LAN1) == [ETH0_MAC["node3"]]
    finally:
        label_node(api, "node3", None)
        label_node(api, "node2", "r2")


def test_an_invalid_config_keeps_the_last_good_placement(placed: h.Cluster) -> None:
    api = placed.api
    api.patch(k8s.CONFIGMAPS, "config", {"data": {"config": "address-pools: [{name: x}]"}}, NS)
    try:
        time.sleep(1.0)
        assert answers("192.168.1.225", LAN1) == [ETH0_MAC["node2"]]
        logs = " ".join(placed.log_of(n).read_text(errors="replace") for n in h.NODES)
        assert "keeping the last good pools" in logs and "addresses" in logs
    finally:
        api.patch(k8s.CONFIGMAPS, "config", {"data": {"config": POOLS}}, NS)
