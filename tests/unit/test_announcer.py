"""Announcer pieces that need no socket: which interfaces count as LAN interfaces, and how update()
changes what each interface answers (incremental, never answering an IP being lost)."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import pytest
from l2lb_agent import announcer, frames


def make_iface(root: Path, name: str, *, type_: str = "1", flags: str = "0x1003", devtype: str = "",
               bridge: bool = False) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "type").write_text(type_ + "\n")
    (d / "flags").write_text(flags + "\n")
    (d / "uevent").write_text(f"INTERFACE={name}\n" + (f"DEVTYPE={devtype}\n" if devtype else ""))
    (d / "address").write_text("02:00:00:00:00:01\n")
    if bridge:
        (d / "bridge").mkdir()


IFACES = [
    # name, kwargs, suitable
    ("eth0", {}, True),  # the lab's node uplink is a veth named eth0: it counts
    ("enp3s0", {}, True),
    ("bond0", {"devtype": "bond"}, True),
    ("lo", {"type_": "772"}, False),
    ("veth1a2b", {}, False),
    ("cali123", {}, False),
    ("cni0", {}, False),
    ("flannel.1", {}, False),
    ("docker0", {}, False),
    ("kube-lb0", {}, False),
    ("lxc42", {}, False),
    ("cilium_host", {}, False),
    ("br-lan", {"bridge": True}, False),
    ("vx0", {"devtype": "vxlan"}, False),
    ("wg0", {"type_": "65534"}, False),
    ("eth1", {"flags": "0x1002"}, False),  # down
]


@pytest.mark.parametrize(("name", "kwargs", "suitable"), [pytest.param(*r, id=r[0]) for r in IFACES])
def test_unsuitable(tmp_path: Path, name: str, kwargs: dict, suitable: bool) -> None:
    make_iface(tmp_path, name, **kwargs)
    why = announcer.unsuitable(name, tmp_path)
    assert (why is None) is suitable, why


def test_choose_interfaces_default_and_configured(tmp_path: Path) -> None:
    for name, kwargs, _ in IFACES:
        make_iface(tmp_path, name, **kwargs)
    assert announcer.choose_interfaces((), tmp_path) == ["bond0", "enp3s0", "eth0"]
    assert announcer.choose_interfaces(["veth1a2b"], tmp_path) == ["veth1a2b"]  # the operator decides
    with pytest.raises(ValueError, match="interfaces: nope not found"):
        announcer.choose_interfaces(["nope"], tmp_path)


def test_speaker_metrics_exposed_from_plain_counters() -> None:
    from l2lb_agent import frames, membership, speaker, speaker_metrics, timing
    from prometheus_client import CollectorRegistry, generate_latest

    sp = speaker.Speaker(None, None, namespace="ns", node="node1", identity="pod",  # type: ignore[arg-type]
                         lb_class="l2lb.io/layer2", t=timing.LanTimings(), interfaces=[])
    sp.announcer.stats.answered["arp"] += 3
    sp.announcer.stats.dropped[frames.Verdict.NOT_OWNED] += 2
    sp.members.rejected[membership.Reject.BAD_MAC] += 4
    reg = CollectorRegistry()
    reg.register(speaker_metrics.Collector(sp))
    text = generate_latest(reg).decode()
    assert 'l2lb_speaker_requests_answered_total{kind="arp"} 3.0' in text
    assert 'l2lb_speaker_frames_dropped_total{reason="not_owned"} 2.0' in text
    assert 'l2lb_speaker_heartbeats_rejected_total{reason="bad_mac"} 4.0' in text
    assert "l2lb_speaker_owned_ips 0.0" in text
    assert "l2lb_speaker_fenced 1.0" in text  # no keys, never started: silent
    assert "l2lb_speaker_keys_loaded 0.0" in text
    assert "l2lb_speaker_garps_sent_total 0.0" in text
    assert "l2lb_speaker_api_requests_total 0.0" in text  # no client: nothing sent
    assert 'l2lb_speaker_events_total{outcome="dropped"} 0.0' in text
    assert "l2lb_speaker_events_queued 0.0" in text
    for i in range(1100):  # a takeover of 1,100 Services (the writer is not started: nothing is sent)
        sp._queue_event(f"ns/s{i}", f"10.0.{i // 250}.{i % 250}")
    text = generate_latest(reg).decode()
    burst, backlog = speaker.EVENT_BUDGET.burst, speaker.EVENT_BUDGET.backlog
    # none written yet (the writer is not started): the burst, ready to go, and the backlog waiting for tokens
    assert f"l2lb_speaker_events_queued {backlog + burst:.1f}" in text
    assert f'l2lb_speaker_events_total{{outcome="dropped"}} {1100 - backlog - burst:.1f}' in text
    assert "l2lb_speaker_ipannouncements_pending 0.0" in text
    for i in range(30):  # gained, not yet written (the writer is not started)
        sp.status.announced(f"10.1.0.{i}", ("ns/s",))
    assert "l2lb_speaker_ipannouncements_pending 30.0" in generate_latest(reg).decode()


# -- update(): incremental snapshots ----------------------------------------------------------------

UNIVERSE = [f"10.0.{i // 200}.{i % 200}" for i in range(600)] + [f"fd00::{i:x}" for i in range(1, 200)]
PORTS = ("eth0", "eth1", "eth2")
MACS = {name: bytes([2, 0, 0, 0, 0, i]) for i, name in enumerate(PORTS, 1)}


class _Recorded(announcer.Port):
    """A Port (never started: no socket) that keeps every snapshot the announcer swaps in."""

    @property
    def snap(self) -> announcer._Snapshot:
        return self._snaps[-1]

    @snap.setter
    def snap(self, value: announcer._Snapshot) -> None:
        self.__dict__.setdefault("_snaps", []).append(value)

    def set_groups(self, groups: set[bytes]) -> None:
        self.groups = groups  # no MLD socket: the host's interfaces are not touched

    def set_filter(self, prog: list) -> None:
        self.__dict__.setdefault("filters", []).append(prog)


def _passes(owned4: set[bytes], owned6: set[bytes]) -> list:
    """Stands for frames.bpf_program (tested against the kernel's rules elsewhere): what it passes."""
    return [frozenset(owned4) | frozenset(owned6)]


def _announcer(monkeypatch: pytest.MonkeyPatch) -> announcer.Announcer:
    monkeypatch.setattr(announcer, "mac_of", MACS.__getitem__)
    monkeypatch.setattr(announcer, "Port", _Recorded)
    monkeypatch.setattr(announcer.frames, "bpf_program", _passes)
    return announcer.Announcer(PORTS)


def _filtered(port: announcer.Port) -> frozenset[bytes]:
    filters = port.__dict__.get("filters")
    return filters[-1][0] if filters else frozenset()


def _answered(port: announcer.Port, snap: announcer._Snapshot | None = None) -> set[bytes]:
    snap = snap or port.snap
    return set(snap.owned4) | set(snap.owned6)


def _random_where(rng: random.Random) -> announcer.Where:
    table = {ip: rng.choice([None, frozenset(), frozenset(rng.sample(PORTS, rng.randint(1, 3)))])
             for ip in UNIVERSE}
    return table.__getitem__


def test_update_matches_a_rebuild_after_any_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    """After every step each port answers exactly the owned IPs where() gives it, with templates
    for its own MAC (and for the standby), its filter passes all of them, and no snapshot swapped
    in during a step holds an IP the step takes away."""
    rng = random.Random(7)
    ann = _announcer(monkeypatch)
    owned: frozenset[str] = frozenset()
    standby: frozenset[str] = frozenset()
    where = None
    for _ in range(300):
        if rng.random() < 0.15:
            where = _random_where(rng)
            ann.set_where(where)
        if rng.random() < 0.3:  # what we would inherit: often some of it gained next
            standby = frozenset(rng.sample(UNIVERSE, rng.randint(0, 40)))
            ann.prepare(standby)
        if rng.random() < 0.2:
            new = frozenset(rng.sample(UNIVERSE, rng.randint(0, 300)))
        else:  # a few gained and lost: the common case
            new = (owned - set(rng.sample(sorted(owned), min(len(owned), rng.randint(0, 5))))) | set(
                rng.sample(UNIVERSE, rng.randint(0, 5)))
        before = {port.ifname: len(port.__dict__.get("_snaps", [])) for port in ann.ports}
        gained, lost = ann.update(new)
        assert (gained, lost) == (set(new - owned), set(owned - new))
        owned = new
        for port in ann.ports:
            want = {ip for ip in owned if where is None or where(ip) is None or port.ifname in where(ip)}
            packed = {announcer.pack(ip) for ip in want}
            assert _answered(port) == packed
            assert set(port.templates) == want | standby
            assert all(port.templates[ip] == announcer.build_templates(ip, port.mac) for ip in want | standby)
            assert _filtered(port) >= packed | {announcer.pack(ip) for ip in standby}
            assert ann.ports_of(next(iter(want))) if want else True
            for snap in port.__dict__.get("_snaps", [])[before[port.ifname]:]:
                assert _answered(port, snap) <= packed, "a snapshot answered an IP being lost"
        assert ann.owned == owned


def test_update_without_change_swaps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    ann = _announcer(monkeypatch)
    ann.update(UNIVERSE[:100])
    swaps = [len(port._snaps) for port in ann.ports]
    assert ann.update(UNIVERSE[:100]) == (set(), set())
    ann.update(UNIVERSE[:99] + UNIVERSE[200:201])  # one lost, one gained: one edit each way
    assert [len(port._snaps) for port in ann.ports] == [n + 2 for n in swaps]


def test_a_prepared_gain_only_swaps_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """What prepare() was given is answered on its gain without building a frame or a filter first;
    an unprepared gain gets its filter before update() returns (its answers are counted from there)."""
    ann = _announcer(monkeypatch)
    ann.update(UNIVERSE[:100])
    ann.prepare(frozenset(UNIVERSE[100:150]))
    filters = [len(port.filters) for port in ann.ports]
    built = []
    monkeypatch.setattr(announcer, "build_templates", lambda *a: built.append(a))
    ann.update(UNIVERSE[:130])  # a takeover of 30 prepared IPs
    assert built == [] and [len(port.filters) for port in ann.ports] == filters
    assert all(_answered(port) == {announcer.pack(ip) for ip in UNIVERSE[:130]} for port in ann.ports)
    monkeypatch.undo()
    ann = _announcer(monkeypatch)
    ann.update(UNIVERSE[:100])
    ann.update(UNIVERSE[:101])  # unprepared
    assert all(announcer.pack(UNIVERSE[100]) in _filtered(port) for port in ann.ports)


@pytest.mark.parametrize("announce_now", [True, False])
def test_first_gratuitous_round_inline_or_on_the_announcers_thread(monkeypatch: pytest.MonkeyPatch,
                                                                   announce_now: bool) -> None:
    """update() sends the first round of what it gains before returning, or (announce_now False:
    a caller with more gains coming) leaves it due at once to the announcer's thread; either way
    every round of GARP_SCHEDULE is sent, each once."""
    clock = [1000.0]
    monkeypatch.setattr(announcer.time, "monotonic", lambda: clock[0])
    ann = _announcer(monkeypatch)
    sent: list[str] = []
    monkeypatch.setattr(ann, "announce", sent.append)
    ann.update(UNIVERSE[:3], announce_now=announce_now)
    assert sent == (UNIVERSE[:3] if announce_now else [])
    due = sorted(t - 1000.0 for t, ips in ann._garp_due for _ in ips)
    rounds = announcer.GARP_SCHEDULE[1:] if announce_now else announcer.GARP_SCHEDULE
    assert due == sorted(d for d in rounds for _ in range(3))
    assert ann._garp_wake.is_set()


# -- which queued requests are answered: arrival vs gain, fence --------------------------------------

IP_A, IP_B = announcer.pack("10.0.0.1"), announcer.pack("10.0.0.2")
SNAP = announcer._Snapshot({}, {}, fence=100.0, since={IP_A: 10.0}, revived=5.0)
V = announcer.frames.Verdict

REFUSALS = [
    # target, arrived, now, refused: answered only if it arrived while its target was answered here
    (IP_A, 10.0, 11.0, None),  # arrived at the gain
    (IP_A, 50.0, 99.9, None),  # waited long, but arrived after the gain: still ours
    (IP_A, 9.99, 10.01, V.EARLY),  # queued before the gain: whoever answered then had it
    (IP_A, 50.0, 100.0, V.FENCED),  # the fence passed: silent whatever the request
    (IP_B, 50.0, 60.0, V.NOT_OWNED),  # lost since decide() saw the older snapshot
]


@pytest.mark.parametrize(("target", "arrived", "now", "refused"), REFUSALS)
def test_refusal(target: bytes, arrived: float, now: float, refused: object) -> None:
    assert announcer.refusal(SNAP, target, arrived, now) is refused


def test_a_revived_fence_refuses_what_queued_while_it_was_down() -> None:
    snap = announcer._Snapshot({}, {}, fence=100.0, since={IP_A: 10.0}, revived=40.0)
    assert announcer.refusal(snap, IP_A, 39.0, 41.0) is V.EARLY
    assert announcer.refusal(snap, IP_A, 40.0, 41.0) is None


def test_set_fence_records_a_revival_only(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(announcer.time, "monotonic", lambda: clock[0])
    ann = _announcer(monkeypatch)
    ann.set_fence(1010.0)  # the first fence: answering begins now
    assert {port.snap.revived for port in ann.ports} == {1000.0}
    clock[0] = 1005.0
    ann.set_fence(1020.0)  # moved while it held: nothing queued meanwhile was refused
    ann.extend_fence(1030.0)
    assert {port.snap.revived for port in ann.ports} == {1000.0}
    clock[0] = 1031.0  # passed
    ann.set_fence(1040.0)
    assert {port.snap.revived for port in ann.ports} == {1031.0}


def test_a_gain_is_answered_from_its_swap_and_a_loss_forgets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(announcer.time, "monotonic", lambda: clock[0])
    ann = _announcer(monkeypatch)
    ann.update(UNIVERSE[:2])
    clock[0] = 1001.0
    ann.update(UNIVERSE[1:3])
    for port in ann.ports:
        assert port.snap.since == {announcer.pack(UNIVERSE[1]): 1000.0, announcer.pack(UNIVERSE[2]): 1001.0}


def _timestamp(wall: float) -> list[tuple[int, int, bytes]]:
    sec = int(wall)
    return [(announcer.socket.SOL_SOCKET, announcer.SO_TIMESTAMPNS,
             announcer.TIMESPEC.pack(sec, round((wall - sec) * 1e9)))]


WALL = 1_700_000_000.0  # realtime - monotonic before any step in these tables

ARRIVALS = [
    # ancillary data, monotonic now, offset (realtime - monotonic), arrival (monotonic)
    (_timestamp(WALL + 49.75), 50.0, WALL, 49.75),  # received 0.25 s ago
    ([], 50.0, WALL, 50.0),  # no stamp: as if just received
    (_timestamp(WALL + 51.0), 50.0, WALL, 50.0),  # stamped in the future (a clock step)
    ([(announcer.socket.SOL_SOCKET, announcer.SO_TIMESTAMPNS, b"\0" * 4)], 50.0, WALL, 50.0),  # short
    (_timestamp(WALL - 1.0 + 49.9), 50.0, WALL, 48.9),  # dated with the offset before a 1 s step back
]


@pytest.mark.parametrize(("ancillary", "now", "offset", "arrived"), ARRIVALS)
def test_arrival(ancillary: list, now: float, offset: float, arrived: float) -> None:
    assert announcer.arrival(ancillary, now, offset) == pytest.approx(arrived, abs=1e-6)


DRAINED = "drained"  # in an observation list: the socket was found empty then

WALL_OFFSETS = [
    # (monotonic now, realtime now) observed in order, or DRAINED -> offset returned by the last one
    ("steady", [(10.0, WALL + 10.0), (10.5, WALL + 10.5)], WALL),
    ("stepped back 1 s: the earlier offset holds", [(10.0, WALL + 10.0), (10.5, WALL + 9.5)], WALL),
    ("still held just before STEP_MEMORY", [(10.0, WALL + 10.0), (10.5, WALL + 9.5),
                                            (10.5 + announcer.STEP_MEMORY - 0.1, WALL - 1 + 70.4)], WALL),
    ("released after STEP_MEMORY without another step",
     [(10.0, WALL + 10.0), (10.5, WALL + 9.5), (71.0, WALL - 1 + 71.0)], WALL - 1),
    ("released once the socket is found empty",
     [(10.0, WALL + 10.0), (10.5, WALL + 9.5), DRAINED, (10.6, WALL - 1 + 10.6)], WALL - 1),
    ("a step after the socket was found empty holds again",
     [(10.0, WALL + 10.0), (10.5, WALL + 9.5), DRAINED, (10.6, WALL - 1 + 10.6), (10.7, WALL - 3 + 10.7)],
     WALL - 1),
    ("stepped forward 1 s: the new, larger offset", [(10.0, WALL + 10.0), (10.5, WALL + 11.5)], WALL + 1),
    ("back then forward again while held: the largest",
     [(10.0, WALL + 10.0), (10.5, WALL + 9.5), (11.0, WALL + 12.0)], WALL + 1),
    ("jitter below WALL_STEP is no step", [(10.0, WALL + 10.0), (10.5, WALL + 10.501)], WALL + 0.001),
    ("a step before the first read (observed at open) is seen",
     [(10.0, WALL + 10.0), (20.0, WALL + 15.0)], WALL),
]


@pytest.mark.parametrize(("case", "observations", "offset"), WALL_OFFSETS, ids=[c[0] for c in WALL_OFFSETS])
def test_wall_offset(case: str, observations: list, offset: float) -> None:
    wall = announcer.WallOffset()
    got = None
    for seen in observations:
        if seen == DRAINED:
            wall.drained()
        else:
            got = wall.observe(*seen)
    assert got == pytest.approx(offset, abs=1e-6), case


def test_the_hold_of_a_step_ends_when_the_socket_is_found_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real socket: while a frame queued across a step waits, the hold stays; once read, it ends."""
    monkeypatch.setattr(announcer, "mac_of", MACS.__getitem__)
    port = announcer.Port(PORTS[0], announcer.Stats())
    reader, writer = socket.socketpair()
    with reader, writer:
        now = time.monotonic()
        port._wall.observe(now, WALL + now)
        port._wall.observe(now, WALL - 1.0 + now)  # stepped back 1 s
        writer.send(b"queued across the step")
        port._end_hold_when_drained(reader)
        assert port._wall.holding(time.monotonic())
        reader.recv(100)
        port._end_hold_when_drained(reader)
        assert not port._wall.holding(time.monotonic())
        assert port._wall.observe(now, WALL - 1.0 + now) == pytest.approx(WALL - 1.0)


def test_a_request_queued_across_a_step_back_stays_early() -> None:
    """The request arrived 0.1 s before the gain; realtime then went back 1 s before it was read:
    dated with the current offset it would look 0.9 s later than the gain and be answered twice."""
    wall = announcer.WallOffset()
    wall.observe(99.0, WALL + 99.0)
    stamp = _timestamp(WALL + 99.9)  # received at monotonic 99.9
    snap = announcer._Snapshot({}, {}, fence=200.0, since={b"t": 100.0})
    now = 101.0
    offset = wall.observe(now, WALL - 1.0 + now)
    assert announcer.refusal(snap, b"t", announcer.arrival(stamp, now, offset), now) is frames.Verdict.EARLY
    dated_now = announcer.arrival(stamp, now, WALL - 1.0)  # with the offset after the step
    assert announcer.refusal(snap, b"t", dated_now, now) is None
