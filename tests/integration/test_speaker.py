"""The speaker in the lab: real frames on real veths, real API server, speaker processes per node.

Speakers run as subprocesses in l2lb-node1..3 (tests/bench/speaker_harness.py) with their own
namespace and loadBalancerClass, so a deployed l2lb neither sees nor disturbs these Services.
The client probes every 20 ms from l2lb-client and records which MACs answered each probe:
every failover test asserts a takeover and zero probes answered by two MACs.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from l2lb_agent import ownership

from tests.bench import speaker_harness as h

pytestmark = pytest.mark.timeout(300)

NS = "l2lb-speaker-it"
IP = "192.168.1.245"


def wait_ready_nodes(kube: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = h.client().list(h.kube.NODES)[0]
        if len(nodes) >= 3 and all(ownership.node_eligible(n)[0] for n in nodes):
            return
        time.sleep(1)
    pytest.fail("lab nodes not all Ready (and not excluded); cannot test the speaker")


@pytest.fixture(scope="module")
def cluster(lab: object, kube: object) -> Iterator[h.Cluster]:
    wait_ready_nodes(kube)
    with h.running(NS) as c:
        yield c


@pytest.fixture
def all_up(cluster: h.Cluster, lab: object) -> h.Cluster:
    """Every speaker running and every node Ready before the test."""
    cluster.ensure_up()
    wait_ready_nodes(None)
    time.sleep(1.0)  # handover delay + a renewal, so every speaker sees every other as live
    return cluster


def expected_owner(ip: str, nodes: tuple[str, ...] = h.NODES) -> str:
    owner = ownership.owner_of(ip, nodes)
    assert owner is not None
    return owner


def test_owner_mac_answers_and_event_names_node(all_up: h.Cluster, kube) -> None:
    all_up.service("owner", [IP])
    owner = expected_owner(IP)
    _, macs = h.wait_answer(IP)
    assert macs == [h.MAC[owner]]
    assert h.owner_now(IP) == [h.MAC[owner]]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = kube.core.list_namespaced_event(NS, field_selector="involvedObject.name=owner").items
        assigned = [e for e in events if e.reason == "nodeAssigned"]
        if assigned:
            assert owner in assigned[-1].message
            break
        time.sleep(0.3)
    else:
        pytest.fail("no nodeAssigned Event on the Service")
    all_up.delete_service("owner")


def _failover(cluster: h.Cluster, lab, how: str, ip: str, duration: float) -> tuple[float | None, int, str]:
    owner = expected_owner(ip)
    cluster.service(f"fo-{how}", [ip])
    h.wait_answer(ip)
    with h.probing(ip, duration) as res:
        time.sleep(1.0)
        event = time.monotonic()
        h.fail_owner(cluster, lab, how, owner)
    probes = res["probes"]
    return h.takeover(probes, event, h.MAC[owner]), h.double_windows(probes), owner


@pytest.mark.parametrize(
    ("how", "limit", "duration"),
    [("graceful", 0.5, 4.0), ("sigkill", 3.0, 6.0), ("node-down", 3.0, 6.0), ("api-down", 10.0, 8.0)],
)
def test_takeover_without_double_answers(all_up: h.Cluster, lab, how: str, limit: float,
                                         duration: float) -> None:
    ip = {"graceful": "192.168.1.246", "sigkill": "192.168.1.247", "node-down": "192.168.1.248",
          "api-down": "192.168.1.249"}[how]
    owner = expected_owner(ip)
    try:
        took, doubles, _ = _failover(all_up, lab, how, ip, duration)
        assert doubles == 0, f"{doubles} probes answered by two MACs"
        assert took is not None, f"nobody took over {ip} after {how} of {owner}"
        assert took <= limit, f"takeover after {how} took {took:.2f}s (limit {limit}s)"
        survivors = tuple(n for n in h.NODES if n != owner)
        assert h.owner_now(ip) == [h.MAC[expected_owner(ip, survivors)]]
        if how == "api-down":
            assert all_up.alive(owner), "the speaker cut from the API must keep running"
    finally:
        if how == "node-down":
            lab.node_up(owner)
        if how == "api-down":
            lab.api_up(owner)
        all_up.delete_service(f"fo-{how}")


def test_api_down_owner_comes_back_by_itself_without_double(all_up: h.Cluster, lab) -> None:
    ip = "192.168.1.244"
    owner = expected_owner(ip)
    all_up.service("comeback", [ip])
    h.wait_answer(ip)
    lab.api_down(owner)
    try:
        time.sleep(4.0)
        assert h.owner_now(ip) != [h.MAC[owner]]
        with h.probing(ip, 5.0) as res:
            lab.api_up(owner)
        probes = res["probes"]
        assert h.double_windows(probes) == 0
        assert probes[-1][1] == [h.MAC[owner]], "the recovered owner should announce again"
    finally:
        lab.api_up(owner)
        all_up.delete_service("comeback")


def client_neigh(ip: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", "l2lb-client", "ip", "neigh", "show", ip],
                         capture_output=True, text=True, check=True).stdout
    return out.split("lladdr ")[1].split()[0] if "lladdr" in out else ""


def test_garp_updates_client_neighbour_table(all_up: h.Cluster) -> None:
    ip = "192.168.1.243"
    owner = expected_owner(ip)
    all_up.service("garp", [ip])
    h.wait_answer(ip)
    subprocess.run(["ip", "netns", "exec", "l2lb-client", "ping", "-c1", "-W1", ip], capture_output=True)
    assert client_neigh(ip) == h.MAC[owner]
    time.sleep(1.2)  # past the neighbour entry's locktime (1 s), as in a real LAN after a while
    all_up.stop(owner, signal.SIGTERM)
    new = expected_owner(ip, tuple(n for n in h.NODES if n != owner))
    deadline = time.monotonic() + 5.0
    while client_neigh(ip) != h.MAC[new] and time.monotonic() < deadline:
        time.sleep(0.05)  # only look: the client sends nothing, the GARP must update the entry
    assert client_neigh(ip) == h.MAC[new]
    all_up.delete_service("garp")


def test_shared_ip_answered_by_one_node(all_up: h.Cluster) -> None:
    ip = "192.168.1.242"
    all_up.service("share-a", [ip], endpoints=["node1", "node2"], local=True)
    all_up.service("share-b", [ip], endpoints=["node2", "node3"], local=True)
    time.sleep(0.5)
    macs = set()
    for _, m in h.run_probe("probe", ip, interval=0.02, duration=1.0):
        assert len(m) <= 1
        macs.update(m)
    assert macs == {h.MAC["node2"]}  # the only node serving both Services
    all_up.delete_service("share-a")
    all_up.delete_service("share-b")


def test_external_traffic_policy_local_follows_endpoint(all_up: h.Cluster) -> None:
    ip = "192.168.1.241"
    first = next(n for n in h.NODES if n != expected_owner(ip))  # not the Cluster-policy owner
    all_up.service("local", [ip], endpoints=[first], local=True)
    h.wait_answer(ip)
    time.sleep(0.3)
    assert h.owner_now(ip) == [h.MAC[first]]
    second = next(n for n in h.NODES if n != first)
    all_up.endpoints("local", [second])
    deadline = time.monotonic() + 5
    while h.owner_now(ip) != [h.MAC[second]] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert h.owner_now(ip) == [h.MAC[second]]
    all_up.endpoints("local", [second], ready=False)
    time.sleep(0.5)
    assert h.owner_now(ip) == [], "no ready endpoint: nobody may answer"
    all_up.delete_service("local")


def test_exclusion_label_respected(all_up: h.Cluster, lab) -> None:
    ip = "192.168.1.239"
    owner = expected_owner(ip)
    all_up.service("excl", [ip])
    h.wait_answer(ip)
    lab.kubectl("label", "node", owner, f"{ownership.EXCLUDE_LABEL}=true", "--overwrite")
    try:
        other = expected_owner(ip, tuple(n for n in h.NODES if n != owner))
        deadline = time.monotonic() + 5
        while h.owner_now(ip) != [h.MAC[other]] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert h.owner_now(ip) == [h.MAC[other]]
    finally:
        lab.kubectl("label", "node", owner, f"{ownership.EXCLUDE_LABEL}-")
        all_up.delete_service("excl")


@pytest.mark.parametrize("ip", ["192.168.1.238", "fd00:4c32:6c62::ee"])
def test_fuzzed_invalid_frames_get_no_answer_and_no_crash(all_up: h.Cluster, ip: str) -> None:
    owner = expected_owner(ip)
    all_up.service("fuzz", [ip])
    h.wait_answer(ip)
    report = h.run_probe("fuzz", ip, count=5000)
    assert report["sent"] == 5000
    assert report["answers"] == 0, report
    assert all_up.alive(owner)
    assert h.owner_now(ip) == [h.MAC[owner]]  # still answers a valid request
    all_up.delete_service("fuzz")


def test_ipv6_neighbor_solicitation_answered(all_up: h.Cluster) -> None:
    ip = "fd00:4c32:6c62::f5"
    owner = expected_owner(ip)
    all_up.service("v6", [ip])
    _, macs = h.wait_answer(ip)
    assert macs == [h.MAC[owner]]
    all_up.delete_service("v6")


def test_service_without_our_class_or_endpoints_not_answered(all_up: h.Cluster) -> None:
    ip = "192.168.1.237"
    all_up.service("noeps", [ip], endpoints=[])
    time.sleep(0.5)
    assert h.owner_now(ip) == []
    all_up.delete_service("noeps")


def test_owner_joins_the_solicited_node_group_for_mld_snooping(all_up: h.Cluster) -> None:
    ip = "fd00:4c32:6c62::f6"
    owner = expected_owner(ip)
    all_up.service("mld", [ip])
    h.wait_answer(ip)
    out = subprocess.run(["ip", "-n", f"l2lb-{owner}", "-6", "maddr", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    assert "ff02::1:ff00:f6" in out, out  # the kernel sends MLD reports for it
    all_up.delete_service("mld")
    deadline = time.monotonic() + 3
    while "ff02::1:ff00:f6" in subprocess.run(["ip", "-n", f"l2lb-{owner}", "-6", "maddr", "show", "dev",
                                                "eth0"], capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, "group not left after the IP went away"
        time.sleep(0.1)


def test_one_requester_flood_is_rate_limited(all_up: h.Cluster) -> None:
    ip = "192.168.1.236"
    all_up.service("limited", [ip])
    h.wait_answer(ip)
    time.sleep(3.0)  # the target bucket refills after wait_answer's probes
    report = h.run_probe("flood", ip, rate=2000, count=2000)  # 1 s of 2,000 requests from 50 sources
    # per requester 20 burst + 10/s; per target 400 burst + 200/s: the target limit binds
    assert 0 < report["answered"] <= 400 + 200 * 1.5, report
    all_up.delete_service("limited")


def test_classless_foreign_ip_not_answered_when_not_claimed(lab: object) -> None:
    """Next to another load balancer (claim_unclassed false), a Service with no class whose status
    another implementation wrote (a foreign IP) gets no answer from l2lb; with the default, it does."""
    ip = "192.168.1.226"
    ours = h.Cluster("l2lb-classless-it", lb_class="classless.l2lb.io/speaker")  # test speakers: false
    ours.setup()
    try:
        ours.start_all()
        ours.wait_ready(h.NODES)
        body = {"metadata": {"name": "foreign", "namespace": ours.ns},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}}
        ours.api.create(h.kube.SERVICES, body, ours.ns)
        ours.endpoints("foreign", h.NODES)
        status = {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}
        ours.api.patch_status(h.kube.SERVICES, "foreign", status, ours.ns)
        time.sleep(1.0)
        assert h.owner_now(ip) == [], "a class-less Service was answered though not claimed"
        ours.stop_all()
        ours.extra_args = ("--claim-unclassed", "true")  # the last flag wins
        ours.start_all()
        ours.wait_ready(h.NODES)
        _, macs = h.wait_answer(ip)
        assert macs == [h.MAC[expected_owner(ip)]]
    finally:
        ours.teardown()
