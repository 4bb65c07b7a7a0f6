"""Pure parts of the IPAnnouncement writer: object names, what to write, the coalescing queue.

No API server: names and decisions are plain functions; the queue takes time as an argument.
The writer against a real API server and real speakers is tests/integration/test_announcements.py.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from l2lb_agent import announce_status as a

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.l2lb.layer2.plugins.module_utils import render, status  # noqa: E402

# A DNS-1123 subdomain (cluster-scoped object names): lowercase alphanumerics, '-' and '.',
# starting and ending alphanumeric, at most 253 characters.
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@pytest.mark.parametrize(("ip", "name"), [
    ("192.168.1.240", "192-168-1-240"),
    ("10.0.0.1", "10-0-0-1"),
    (" 192.168.1.240 ", "192-168-1-240"),
    ("fd00:4c32::f0", "fd00-4c32--f0"),
    ("FD00:4C32:0:0:0:0:0:F0", "fd00-4c32--f0"),  # canonical first: one IP, one name
    ("::1", "0--1"),  # a leading '::' would start the name with '-'
    ("fd00::", "fd00--0"),  # ... and a trailing one end it with '-'
    ("::", "0--0"),
    ("::ffff:192.168.1.1", "0--ffff-c0a8-101"),  # IPv4-mapped: no dotted tail, no 4-dash clash
    ("2001:db8:0:0:1:0:0:1", "2001-db8--1-0-0-1"),  # RFC 5952: the first longest zero run
    ("1:0:0:2:0:0:0:3", "1-0-0-2--3"),  # the longest run, not the first
    ("1:2:3:4:5:6:7:8", "1-2-3-4-5-6-7-8"),
    ("1:0:2:3:4:5:6:7", "1-0-2-3-4-5-6-7"),  # a single zero group is not compressed
], ids=str)
def test_object_name(ip: str, name: str) -> None:
    assert a.object_name(ip) == name
    assert DNS1123.match(name)
    assert a.ip_of(name) == str(ipaddress.ip_address(ip.strip()))


@pytest.mark.parametrize("bad", ["", "192.168.1", "fd00::g", "192.168.1.240/32", "fe80::1%eth0", "node1"])
def test_object_name_refuses_what_is_not_an_ip(bad: str) -> None:
    with pytest.raises(ValueError, match=f"ip: {re.escape(repr(bad))} is not an IPv4 or IPv6 address"):
        a.object_name(bad)


ADDRESSES = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6),
                      st.integers(0, 2**16 - 1).map(lambda n: ipaddress.IPv6Address(n << 64)),  # zero runs
                      st.integers(0, 2**32 - 1).map(lambda n: ipaddress.IPv6Address((0xFFFF << 32) | n)))


@settings(max_examples=500, deadline=None)
@given(ADDRESSES)
def test_names_are_valid_and_invert(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """ip_of(object_name(ip)) == ip for every address: the naming is injective."""
    name = a.object_name(str(ip))
    assert DNS1123.match(name) and len(name) <= 253, name
    assert ipaddress.ip_address(a.ip_of(name)) == ip


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4), st.ip_addresses(v=6))
def test_v4_and_v6_names_never_meet(v4: ipaddress.IPv4Address, v6: ipaddress.IPv6Address) -> None:
    assert a.object_name(str(v4)) != a.object_name(str(v6))


# -- decide: the one write (or none) -----------------------------------------------------------

ME, PEER = "node1", "node2"


def obj(node: str | None, services: tuple[str, ...] = ("ns/a",)) -> dict:
    status = {} if node is None else {"node": node, "services": list(services)}
    return {"metadata": {"name": "192-168-1-240", "resourceVersion": "7"}, "spec": {"ip": "192.168.1.240"},
            "status": status}


CLAIM = a.Want(node=ME, services=("ns/a",))
CLEAR = a.Want(node="", reason="no eligible live node")


@pytest.mark.parametrize(("want", "current", "action"), [
    (CLAIM, None, a.Action.CREATE),  # a brand-new IP
    (CLAIM, obj(ME), a.Action.NOTHING),  # steady state, and a restart: no write
    (CLAIM, obj(PEER), a.Action.CLAIM),  # failover: one write
    (CLAIM, obj(""), a.Action.CLAIM),  # nobody announced it
    (CLAIM, obj(None), a.Action.CLAIM),  # created, status never written (a crash in between)
    (CLAIM, obj(ME, ("ns/a", "ns/b")), a.Action.CLAIM),  # the Services sharing it changed
    (CLEAR, None, a.Action.NOTHING),  # gone (the controller deleted it): nothing to clear
    (CLEAR, obj(ME), a.Action.CLEAR),  # the only case a release writes
    (CLEAR, obj(PEER), a.Action.NOTHING),  # a new owner was faster: never overwrite it
    (CLEAR, obj(""), a.Action.NOTHING),  # already says nobody
], ids=lambda v: v.value if isinstance(v, a.Action) else None)
def test_decide(want: a.Want, current: dict | None, action: a.Action) -> None:
    assert a.decide(want, ME, current) is action


# -- the coalescing queue on fake time -----------------------------------------------------------

IP, IP2 = "192.168.1.240", "192.168.1.241"


def test_later_wants_replace_earlier_ones_not_yet_written() -> None:
    q = a.Queue()
    q.put(IP, CLAIM, now=0.0)
    q.put(IP, CLEAR, now=0.01)
    q.put(IP, CLAIM, now=0.02)  # a flap: three calls, one pending want
    assert q.due(0.02) == [(IP, CLAIM)]
    q.done(IP, CLAIM)
    assert q.due(100.0) == [] and q.next_due() is None


def test_done_keeps_a_want_that_arrived_during_the_write() -> None:
    q = a.Queue()
    q.put(IP, CLAIM, now=0.0)
    (ip, taken), = q.due(0.0)
    q.put(IP, CLEAR, now=0.001)  # the speaker lost the IP while its claim was being written
    q.done(ip, taken)
    assert q.due(0.001) == [(IP, CLEAR)]


def test_release_waits_for_its_grace() -> None:
    q = a.Queue()
    q.put(IP, a.Want(node="", reason="silent", not_before=2.0), now=0.0)
    assert q.due(1.99) == []
    assert q.next_due() == 2.0
    assert [ip for ip, _ in q.due(2.0)] == [IP]


def test_failures_back_off_doubling_to_a_cap_and_reset_on_success() -> None:
    q = a.Queue()
    q.put(IP, CLAIM, now=0.0)
    delays = [q.failed(IP, now=0.0) for _ in range(10)]
    assert delays[:4] == [0.25, 0.5, 1.0, 2.0] and max(delays) == a.MAX_RETRY
    q.put(IP, CLEAR, now=1.0)  # a new want does not jump its backoff: no hammering a failing server
    assert q.due(1.0) == []
    assert q.due(a.MAX_RETRY) == [(IP, CLEAR)]
    q.done(IP, CLEAR)
    q.put(IP, CLAIM, now=50.0)
    assert q.due(50.0) == [(IP, CLAIM)], "backoff forgotten after a success"


def test_one_failing_ip_does_not_hold_up_another() -> None:
    q = a.Queue()
    q.put(IP, CLAIM, now=0.0)
    q.put(IP2, CLAIM, now=0.0)
    q.failed(IP, now=0.0)
    assert q.due(0.0) == [(IP2, CLAIM)]


def test_a_hold_stops_every_ip_until_it_ends() -> None:
    """The CRD is missing: one probe per interval for all IPs, not one request per IP."""
    q = a.Queue()
    for ip in (IP, IP2):
        q.put(ip, CLAIM, now=0.0)
    q.failed(IP, now=0.0, delay=a.NO_CRD_RETRY)
    q.hold(a.NO_CRD_RETRY)
    assert q.held(1.0) and q.due(1.0) == [], "IP2 was due at once, yet waits for the probe"
    assert q.next_due() == a.NO_CRD_RETRY
    assert not q.held(a.NO_CRD_RETRY)
    assert q.due(a.NO_CRD_RETRY) == [(IP2, CLAIM), (IP, CLAIM)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([IP, IP2]), st.sampled_from([CLAIM, CLEAR]),
                          st.sampled_from(["put", "drain", "fail"])), max_size=40))
def test_at_most_one_write_per_ip_per_drain(steps: list) -> None:
    """Invariant after every step: at most one pending want per IP, and it is the latest put."""
    q, latest, now = a.Queue(), {}, 0.0
    for ip, want, op in steps:
        now += 0.1
        if op == "put":
            q.put(ip, want, now)
            latest[ip] = want
        elif op == "fail" and ip in q.wants:
            q.failed(ip, now)
        else:
            for due_ip, due_want in q.due(now + a.MAX_RETRY):
                q.done(due_ip, due_want)
                latest.pop(due_ip)
        batch = q.due(now + a.MAX_RETRY)
        assert len(batch) == len({ip for ip, _ in batch})
        assert dict(batch) == latest


# -- garbage and the CRD ---------------------------------------------------------------------------

def test_orphans_are_objects_whose_ip_no_service_holds() -> None:
    objects = [{"spec": {"ip": "192.168.1.240"}}, {"spec": {"ip": "fd00::f0"}}, {"spec": {}}]
    held = [ipaddress.ip_address("192.168.1.240"), "FD00:0::F0"]
    assert a.orphans(objects, held) == [{"spec": {}}]
    assert a.orphans(objects, []) == objects


def test_crd_matches_what_the_agent_writes() -> None:
    crd = render.announcements_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{a.PLURAL}.{a.GROUP}"
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (a.GROUP, "Cluster", a.KIND)
    (version,) = spec["versions"]
    assert version["name"] == a.VERSION and version["subresources"] == {"status": {}}
    props = version["schema"]["openAPIV3Schema"]["properties"]
    assert set(props["status"]["properties"]) == {"node", "services", "since", "reason"}
    assert set(a.new_object("192.168.1.240")["spec"]) <= set(props["spec"]["properties"])
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["IP", "Node", "Services", "Since", "Reason", "Age"]


def test_crd_comes_before_any_workload() -> None:
    kinds = [o["kind"] for o in render.manifests(render.Settings())]
    assert kinds.index("CustomResourceDefinition") < kinds.index("Deployment")
    assert kinds.index("CustomResourceDefinition") < kinds.index("DaemonSet")


def test_l2lb_info_reads_the_announcements_and_falls_back_to_leases() -> None:
    objects = [{"spec": {"ip": "192.168.1.241"}, "status": {"node": "", "reason": "no eligible live node"}},
               {"spec": {"ip": "192.168.1.240"}, "status": {"node": "node2", "services": ["default/nginx"],
                                                         "since": "2026-01-01T00:00:00Z"}}]
    announced = status.announcements(objects)
    assert [(e["ip"], e["node"], e["reason"]) for e in announced] == [
        ("192.168.1.240", "node2", ""), ("192.168.1.241", "", "no eligible live node")]
    svc = {"metadata": {"namespace": "default", "name": "nginx"}, "spec": {"type": "LoadBalancer"},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.240"}, {"ip": "192.168.1.241"}]}}}
    lease = {"metadata": {"labels": {"l2lb.io/node": "node3"},
                          "annotations": {"l2lb.io/announcing": "192.168.1.240"}}}
    (entry,) = status.assignments([svc], [lease], lambda _ip: None, announced)
    assert entry["announcers"] == {"192.168.1.240": "node2", "192.168.1.241": None}
    (entry,) = status.assignments([svc], [lease], lambda _ip: None)  # no CRD: the Leases say
    assert entry["announced_by"] == "node3"


def test_pending_is_the_latest_want_and_only_when_due() -> None:
    """The writer re-reads each IP before its (rate-limited, so maybe late) write: a newer want
    replaces the one it batched, a settled IP is skipped, a release in its grace waits."""
    q = a.Queue()
    first, second = a.Want(node="node1"), a.Want(node="node2")
    q.put(IP, first, 0.0)
    q.put(IP, second, 1.0)
    assert q.pending(IP, 1.0) == second
    q.done(IP, second)
    assert q.pending(IP, 2.0) is None
    q.put(IP, a.Want(node="", reason="gone", not_before=5.0), 2.0)
    assert q.pending(IP, 4.9) is None and q.pending(IP, 5.0) is not None
