"""Who announces each IP, in the lab: `kubectl get ipannouncements` with real speakers and frames.

Real speakers (tests/bench/speaker_harness.py) on real veths, the real API server, a client
probing ARP every 20 ms. The IPAnnouncement CRD is applied here as the deploy role renders it.
Writes are counted from a watch on ipannouncements (every write that changes an object is one
ADDED/MODIFIED event): a failover must cost one write per moved IP, a restart none.
Run under the shared lab lock: flock /tmp/l2lb-shared-lab.lock .venv/bin/pytest -m lab <this file>
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from l2lb_agent import announce_status as a
from l2lb_agent import kube, ownership

from tests.bench import speaker_harness as h

pytestmark = pytest.mark.timeout(300)

NS = "l2lb-announce-it"
CANDIDATES = [f"192.168.1.{n}" for n in range(160, 190)]  # used by no other test


class Recorder:
    """Every change to ipannouncements seen by a watch: (monotonic time, type, ip, node)."""

    def __init__(self, api: kube.KubeClient) -> None:
        self.api = api
        self.events: list[tuple[float, str, str, str]] = []
        self._stream: kube.WatchStream | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Recorder:
        _items, rv = self.api.list(a.IPANNOUNCEMENTS)
        self._stream = self.api.watch(a.IPANNOUNCEMENTS, resource_version=rv, bookmarks=False)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._stream is not None
        with contextlib.suppress(kube.ApiError):
            for kind, obj in self._stream:
                node = (obj.get("status") or {}).get("node") or ""
                self.events.append((time.monotonic(), kind, a.announced_ip(obj) or "", node))

    def __exit__(self, *_exc: object) -> None:
        time.sleep(0.3)  # the last events in flight
        if self._stream is not None:
            self._stream.close()

    def of(self, ip: str, since: float = 0.0) -> list[tuple[float, str, str, str]]:
        return [e for e in self.events if e[2] == ip and e[0] >= since]


def node_of(api: kube.KubeClient, ip: str) -> str | None:
    try:
        obj = api.get(a.IPANNOUNCEMENTS, a.object_name(ip))
    except kube.NotFound:
        return None
    return (obj.get("status") or {}).get("node")


def exists(api: kube.KubeClient, ip: str) -> bool:
    try:
        api.get(a.IPANNOUNCEMENTS, a.object_name(ip))
    except kube.NotFound:
        return False
    return True


def wait_node(api: kube.KubeClient, ip: str, node: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := node_of(api, ip)) != node:
        if time.monotonic() > deadline:
            raise AssertionError(f"IPAnnouncement of {ip} says {got!r}, expected {node!r}")
        time.sleep(0.1)


def owned_by(node: str, count: int) -> list[str]:
    """IPs whose owner among the three nodes is `node` (every node has endpoints)."""
    return [ip for ip in CANDIDATES if ownership.owner_of(ip, h.NODES) == node][:count]


@pytest.fixture(scope="module")
def cluster(lab: Any) -> Iterator[h.Cluster]:
    api = h.client()
    h.ensure_crd(api)
    for ip in CANDIDATES:  # leftovers of an interrupted run would make the first write a no-op
        with contextlib.suppress(kube.NotFound):
            api.delete(a.IPANNOUNCEMENTS, a.object_name(ip))
    with h.running(NS) as c:
        yield c
    for ip in CANDIDATES:
        with contextlib.suppress(kube.NotFound):
            api.delete(a.IPANNOUNCEMENTS, a.object_name(ip))


@pytest.fixture
def up(cluster: h.Cluster) -> h.Cluster:
    return cluster.ensure_up()


def test_kubectl_names_the_announcing_node(up: h.Cluster, lab: Any) -> None:
    ip = owned_by("node2", 1)[0]
    up.service("who", [ip])
    _t, macs = h.wait_answer(ip)
    assert macs == [h.MAC["node2"]]
    wait_node(up.api, ip, "node2", timeout=2.0)
    out = lab.kubectl("get", "ipannouncements", a.object_name(ip)).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "IP", "NODE", "SERVICES"], header
    assert row.split()[:3] == [a.object_name(ip), ip, "node2"], row
    assert f"{NS}/who" in row
    up.delete_service("who")


def test_sigkill_failover_is_recorded_within_a_second_with_one_write_per_ip(up: h.Cluster) -> None:
    victim = "node3"
    ips = owned_by(victim, 3)
    heir = {ip: ownership.owner_of(ip, [n for n in h.NODES if n != victim]) for ip in ips}
    up.service("failover", ips)
    for ip in ips:
        wait_node(up.api, ip, victim)
    with Recorder(up.api) as rec, h.probing(ips[0], 5.0) as res:
        time.sleep(0.5)
        killed = time.monotonic()
        up.kill(victim, signal.SIGKILL)
        time.sleep(4.0)
    probes = res["probes"]
    first_answer = next(t for t, macs in probes if t >= killed and macs == [h.MAC[heir[ips[0]]]])
    recorded = next(t for t, kind, _ip, node in rec.of(ips[0], killed) if node == heir[ips[0]])
    lag = recorded - first_answer
    print(f"takeover {first_answer - killed:.3f}s after SIGKILL; IPAnnouncement {lag:+.3f}s after the "
          "new owner's first ARP answer")
    assert lag <= 1.0, f"IPAnnouncement followed the takeover {lag:.3f}s after the first answer"
    for ip in ips:
        writes = [(kind, node) for _t, kind, _ip, node in rec.of(ip, killed)]
        assert writes == [("MODIFIED", heir[ip])], f"{ip}: one write by the new owner, got {writes}"
    up.delete_service("failover")


def test_restarts_write_nothing(up: h.Cluster) -> None:
    """Every speaker SIGKILLed (nobody writes), then started again, the owner first: its objects
    already name it, so the restart costs no write; a non-owner's restart neither."""
    ips = owned_by("node1", 2)
    up.service("restart", ips)
    for ip in ips:
        wait_node(up.api, ip, "node1")
    with Recorder(up.api) as rec:
        since = time.monotonic()
        for node in h.NODES:
            up.kill(node, signal.SIGKILL)
        time.sleep(0.5)
        up.start("node1")  # the owner of these IPs in every set of nodes holding it
        time.sleep(1.0)
        for node in ("node2", "node3"):
            up.start(node)
        up.wait_ready(h.NODES)
        for ip in ips:
            h.wait_answer(ip)
        up.kill("node2", signal.SIGKILL)  # not an owner: nothing to write
        up.start("node2")
        up.wait_ready(h.NODES)
        time.sleep(2.0)
    assert [e for ip in ips for e in rec.of(ip, since)] == [], "a restart wrote"
    assert all(node_of(up.api, ip) == "node1" for ip in ips)
    up.delete_service("restart")


def test_an_ip_nobody_announces_says_so(up: h.Cluster) -> None:
    ip = owned_by("node2", 2)[1]
    up.service("gone", [ip])
    wait_node(up.api, ip, "node2")
    with Recorder(up.api) as rec:
        since = time.monotonic()
        up.endpoints("gone", h.NODES, ready=False)  # no ready endpoint anywhere: nobody may announce
        wait_node(up.api, ip, "", timeout=2.0)
        took = time.monotonic() - since
        time.sleep(1.0)
    obj = up.api.get(a.IPANNOUNCEMENTS, a.object_name(ip))
    assert obj["status"]["reason"], obj["status"]
    assert [(k, n) for _t, k, _ip, n in rec.of(ip, since)] == [("MODIFIED", "")]
    assert took <= 1.5, f"'nobody' recorded {took:.3f}s after the endpoints went"
    up.delete_service("gone")


def test_janitor_deletes_released_and_orphaned_objects_only(up: h.Cluster) -> None:
    """The controller's janitor against the real API server: a released IP's object goes after
    RELEASE_DELAY unless a Service holds the IP again; a sweep takes orphans, never young ones."""
    held, orphan, released = CANDIDATES[-1], CANDIDATES[-2], CANDIDATES[-3]
    for ip in (held, orphan, released):
        with contextlib.suppress(kube.AlreadyExists):
            up.api.create(a.IPANNOUNCEMENTS, a.new_object(ip))

    def still_held() -> list[str]:  # every other object in the cluster is someone's: never touch it
        items, _rv = up.api.list(a.IPANNOUNCEMENTS)
        return [ip for o in items if (ip := a.announced_ip(o)) and ip not in (orphan, released)]

    janitor = a.Janitor(up.api, lambda: True, still_held)
    janitor.sweep()  # all three are younger than SWEEP_MIN_AGE: kept
    assert all(exists(up.api, ip) for ip in (held, orphan, released))
    janitor.start()
    try:
        janitor.forget([released, held])  # held: handed on to another Service meanwhile
        time.sleep(a.RELEASE_DELAY + 1.0)
    finally:
        janitor.stop()
    assert not exists(up.api, released) and exists(up.api, held)
    janitor.sweep(min_age=0.0)
    assert not exists(up.api, orphan) and exists(up.api, held)
    assert janitor.deleted == 2


def test_writes_keep_to_their_rate_after_the_burst(cluster: h.Cluster) -> None:
    """A takeover of thousands of IPs must not flood the API server: after `burst`, the writer
    sends at most `qps` IPs per second, and still writes every one (objects only: no frames)."""
    ips = [f"198.51.100.{n}" for n in range(1, 16)]  # TEST-NET-2: nothing on the lab LAN uses it
    for ip in ips:
        with contextlib.suppress(kube.NotFound):
            cluster.api.delete(a.IPANNOUNCEMENTS, a.object_name(ip))
    writer = a.StatusWriter(cluster.api, "node-rate", qps=10.0, burst=3.0)
    try:
        with Recorder(cluster.api) as rec:
            writer.start()
            for ip in ips:
                writer.announced(ip, ("rate/test",))
            for ip in ips:
                wait_node(cluster.api, ip, "node-rate", timeout=15.0)
        written = sorted(next(t for t, _k, _ip, node in rec.of(ip) if node == "node-rate") for ip in ips)
        span = written[-1] - written[0]
        # 3 at once, then one per 0.1 s: the 15th cannot be written before 1.2 s after the first
        assert span >= 1.1, f"15 IPs written within {span:.2f} s at 10/s after a burst of 3"
    finally:
        writer.stop()
        for ip in ips:
            with contextlib.suppress(kube.NotFound):
                cluster.api.delete(a.IPANNOUNCEMENTS, a.object_name(ip))


def settled_count(api: kube.KubeClient, quiet: float = 0.5, timeout: float = 10.0) -> int:
    """The client's request count once it has sent some and then none for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = api.request_count, time.monotonic()
    while not (last and time.monotonic() - since >= quiet):
        assert time.monotonic() < deadline, "the writer's requests never settled"
        time.sleep(0.05)
        if api.request_count != last:
            last, since = api.request_count, time.monotonic()
    return last


def test_brand_new_ips_cost_a_create_and_a_status_write_each(cluster: h.Cluster) -> None:
    """An IP nobody announced before and the start-up LIST lacked is created without a GET first
    (two requests, not three); one a peer created after that LIST costs the failed create and a
    read, and still ends up ours; one taken over from a peer is read first (a GET and a write)."""
    fresh = [f"198.51.100.{n}" for n in range(31, 37)]
    peers, taken = "198.51.100.40", "198.51.100.41"
    for ip in [*fresh, peers, taken]:
        with contextlib.suppress(kube.NotFound):
            cluster.api.delete(a.IPANNOUNCEMENTS, a.object_name(ip))
    api = h.client()  # the writer's own: its request count is the writer's alone
    writer = a.StatusWriter(api, "node-new")
    try:
        writer.start()
        listed = settled_count(api)  # the start-up LIST (paged: one request per 500 objects)
        for ip in (peers, taken):  # a peer's, after the LIST
            cluster.api.create(a.IPANNOUNCEMENTS, a.new_object(ip))
            cluster.api.patch_status(a.IPANNOUNCEMENTS, a.object_name(ip), {"status": {"node": "node-peer"}})
        for ip in [*fresh, peers]:
            writer.announced(ip, ("new/test",))
        writer.announced(taken, ("new/test",), taken_from="node-peer")
        for ip in [*fresh, peers, taken]:
            wait_node(cluster.api, ip, "node-new")
        time.sleep(0.2)  # any request still in flight would be counted
        assert api.request_count - listed == 2 * len(fresh) + 3 + 2, (
            f"{api.request_count - listed} requests: expected create + status write per new IP, "
            "create + GET + status write for the one a peer made, GET + status write for the one taken over")
        assert writer.failures == 0
    finally:
        writer.stop()
        for ip in [*fresh, peers, taken]:
            with contextlib.suppress(kube.NotFound):
                cluster.api.delete(a.IPANNOUNCEMENTS, a.object_name(ip))
