"""LAN liveness in the lab: faults that the API server cannot see, or that take it away.

Real speakers (tests/bench/speaker_harness.py) on real veths, the real API server, a client
probing every 20 ms. Every test asserts the invariant: no probe is ever answered by two MACs.
Figures with >= 20 trials each come from `make bench`; here a trial or two of each.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from l2lb_agent import ownership

from tests.bench import speaker_harness as h

pytestmark = pytest.mark.timeout(300)

NS = "l2lb-lanlive-it"


@pytest.fixture(scope="module")
def cluster(lab: object) -> Iterator[h.Cluster]:
    with h.running(NS) as c:
        yield c


@pytest.fixture
def up(cluster: h.Cluster) -> h.Cluster:
    return cluster.ensure_up()


def owner(ip: str, nodes: tuple[str, ...] = h.NODES) -> str:
    got = ownership.owner_of(ip, nodes)
    assert got is not None
    return got


def survivors_owner(ip: str, gone: str) -> str:
    return owner(ip, tuple(n for n in h.NODES if n != gone))


def serve(cluster: h.Cluster, name: str, ip: str) -> str:
    cluster.service(name, [ip])
    h.wait_answer(ip)
    return owner(ip)


def test_steady_state_answers_every_request(up: h.Cluster) -> None:
    """Nothing happens: every request gets exactly one answer. The owner's fence moves as its peers
    confirm it; a fence that lagged behind them left gaps of tens of ms every few seconds, and a
    host whose request falls in one waits a second (ARP) for its retry."""
    ip = "192.168.1.227"
    first = serve(up, "steady", ip)
    try:
        with h.probing(ip, 8.0) as res:
            pass
        probes = res["probes"]
        unanswered = [round(t - probes[0][0], 3) for t in h.unanswered(probes)]
        assert unanswered == [], f"{len(unanswered)} of {len(probes)} unanswered, at (s): {unanswered}"
        assert {m for _, ms in probes for m in ms} == {h.MAC[first]}
    finally:
        up.delete_service("steady")


def test_control_plane_freeze_keeps_every_ip_answering(up: h.Cluster, lab) -> None:
    ip = "192.168.1.230"
    first = serve(up, "freeze", ip)
    try:
        with h.probing(ip, 12.0) as res:
            time.sleep(0.5)
            lab.run("api-freeze")
            frozen = time.monotonic()
            time.sleep(10.0)
            lab.run("api-thaw")
            thawed = time.monotonic()
        probes = res["probes"]
        assert h.double_windows(probes) == 0
        assert h.longest_silence(probes, frozen, thawed) <= 0.2, "an IP went dark during the freeze"
        assert {m for t, ms in probes if frozen <= t for m in ms} == {h.MAC[first]}, "no IP moves"
    finally:
        lab.run("api-thaw")
        up.delete_service("freeze")


def test_owner_killed_during_freeze_is_replaced_during_freeze(up: h.Cluster, lab) -> None:
    ip = "192.168.1.231"
    first = serve(up, "freeze-kill", ip)
    try:
        with h.probing(ip, 6.0) as res:
            lab.run("api-freeze")
            time.sleep(1.0)
            killed = time.monotonic()
            up.kill(first, signal.SIGKILL)
            time.sleep(4.0)
        probes = res["probes"]
        took = h.takeover(probes, killed, h.MAC[first])
        assert h.double_windows(probes) == 0
        assert took is not None and took <= 1.0, f"takeover during the freeze: {took}"
        assert probes[-1][1] == [h.MAC[survivors_owner(ip, first)]]
    finally:
        lab.run("api-thaw")
        up.delete_service("freeze-kill")


def test_paused_owner_is_replaced_and_resumes_without_double_answers(up: h.Cluster) -> None:
    ip = "192.168.1.232"
    first = serve(up, "pause", ip)
    with h.probing(ip, 10.0) as res:
        time.sleep(0.5)
        stopped = time.monotonic()
        up.kill(first, signal.SIGSTOP)
        time.sleep(5.0)
        up.kill(first, signal.SIGCONT)
        resumed = time.monotonic()
        time.sleep(3.5)
    probes = res["probes"]
    assert h.double_windows(probes) == 0
    took = h.takeover(probes, stopped, h.MAC[first])
    assert took is not None and took <= 1.0
    assert probes[-1][1] == [h.MAC[first]], "the resumed node takes its IP back once peers see it"
    assert h.longest_silence(probes, resumed) <= 0.3
    up.delete_service("pause")


@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_one_way_loss_on_the_owner_ends_with_one_answer(up: h.Cluster, direction: str) -> None:
    ip = "192.168.1.233" if direction == "rx" else "192.168.1.234"
    first = serve(up, f"oneway-{direction}", ip)
    try:
        with h.probing(ip, 8.0) as res:
            time.sleep(0.5)
            h.one_way_loss(first, direction, True)
            cut = time.monotonic()
            time.sleep(4.0)
            h.one_way_loss(first, direction, False)
            time.sleep(3.0)
        probes = res["probes"]
        assert h.double_windows(probes) == 0
        during = {m for t, ms in probes if cut + 1.0 <= t <= cut + 4.0 for m in ms}
        assert during == {h.MAC[survivors_owner(ip, first)]}, f"exactly one other node answers: {during}"
        assert probes[-1][1] == [h.MAC[first]], f"the owner answers again at the end: {probes[-8:]}"
    finally:
        h.one_way_loss(first, direction, False)
        up.delete_service(f"oneway-{direction}")


def test_carrier_down_moves_the_ip(up: h.Cluster) -> None:
    ip = "192.168.1.235"
    first = serve(up, "carrier", ip)
    try:
        with h.probing(ip, 6.0) as res:
            time.sleep(0.5)
            h.carrier(first, False)
            cut = time.monotonic()
            time.sleep(2.5)
            h.carrier(first, True)
            time.sleep(2.5)
        probes = res["probes"]
        assert h.double_windows(probes) == 0
        took = h.takeover(probes, cut, h.MAC[first])
        assert took is not None and took <= 1.0
        assert probes[-1][1] == [h.MAC[first]]
    finally:
        h.carrier(first, True)
        up.delete_service("carrier")


def test_forged_and_replayed_heartbeats_change_nothing(up: h.Cluster, tmp_path) -> None:
    ip = "192.168.1.236"
    first = serve(up, "forge", ip)
    capture = tmp_path / "heartbeats.json"
    assert h.lan_tool("capture", "--seconds", "1", "--out", str(capture))["captured"] >= 10
    with h.probing(ip, 4.0) as res:
        for node in h.NODES:  # a host that is not a speaker claims to be each of them
            assert h.lan_tool("forge", "--node", node, "--seconds", "1")["sent"] > 50
    assert h.double_windows(res["probes"]) == 0
    assert {m for _, ms in res["probes"] for m in ms} == {h.MAC[first]}, "a forger moved the IP"
    with h.probing(ip, 5.0) as res:
        time.sleep(0.3)
        killed = time.monotonic()
        up.kill(first, signal.SIGKILL)
        h.lan_tool("replay", "--file", str(capture), "--seconds", "3")  # keep the dead node "alive"?
    took = h.takeover(res["probes"], killed, h.MAC[first])
    assert took is not None and took <= 1.0, f"replayed heartbeats kept a dead owner: {took}"
    assert h.double_windows(res["probes"]) == 0
    up.delete_service("forge")


def test_deleting_every_lease_changes_nothing(up: h.Cluster, lab) -> None:
    ip = "192.168.1.229"
    first = serve(up, "leases", ip)
    with h.probing(ip, 4.0) as res:
        time.sleep(0.5)
        lab.kubectl("delete", "lease", "--all", "-n", NS)
        time.sleep(3.0)
    assert h.double_windows(res["probes"]) == 0
    assert {m for _, ms in res["probes"] for m in ms} == {h.MAC[first]}
    assert h.longest_silence(res["probes"], res["probes"][0][0]) <= 0.1
    leases = h.wait_until_registered(up, h.NODES)
    assert leases == set(h.NODES), "every speaker writes its registration again"
    up.delete_service("leases")


def test_no_keys_means_silent(lab: object) -> None:
    c = h.Cluster("l2lb-nokeys-it", lb_class="nokeys.l2lb.io/speaker")
    c.setup()
    c.api.delete(h.SECRETS, "l2lb-memberlist", c.ns)
    try:
        c.start("node1")
        c.service("nokeys", ["192.168.1.228"])
        time.sleep(2.0)
        assert h.owner_now("192.168.1.228") == []
        assert "no heartbeat keys" in c.log_of("node1").read_text()
    finally:
        c.teardown()
