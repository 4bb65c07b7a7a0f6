"""membership: the LAN heartbeat protocol on fake time.

Codec tables first, then ordered scenarios on a simulated LAN (per-direction links, pauses,
forgers) with the safety invariant checked after every 10 ms tick: no IP is ever answered by two
nodes. Each node runs the speaker's decision loop (membership -> ownership.step -> fence).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import random
from collections.abc import Iterator

import pytest
from l2lb_agent import membership as mb
from l2lb_agent import ownership, timing

T = timing.LanTimings()
KEY = b"k" * 32
KEY2 = b"n" * 32
IPS = [f"192.168.1.{i}" for i in range(240, 256)]


def member(name: str, keys: tuple[bytes, ...] = (KEY,),
           known: tuple[str, ...] = ("a", "b", "c")) -> mb.Membership:
    m = mb.Membership(name, incarnation=1, first_seq=random.Random(name).getrandbits(32),
                      dead_after=T.dead_after, fence_margin=T.fence_margin,
                      confirm_fresh=T.confirm_fresh)
    m.set_keys(keys)
    m.set_known(known)
    return m


# -- codec -----------------------------------------------------------------------------------


def test_round_trip() -> None:
    entry = mb.Entry.make(peer=mb.node_id("node2"), seq=9, age=0.031, proven=True, candidate=True)
    hb = mb.Heartbeat(node="node1", incarnation=7, seq=42, flags=mb.FLAG_CANDIDATE, entries=(entry,))
    got = mb.decode(mb.encode(hb, [KEY, KEY2]), {mb.key_id(KEY2): KEY2})
    assert got == dataclasses.replace(hb, entries=(hb.entries[0],))


def test_entry_found_only_on_an_entry_boundary() -> None:
    """A receiver looks up its own entry in the packed bytes; the same four bytes inside another
    entry's seq, age or flags must not be taken for it."""
    me = mb.node_id("node1")
    decoy = mb.Entry(peer=7, seq=me, age_ms=3, flags=0)  # my id's bytes as a seq: at offset 4
    straddle = mb.Entry(peer=(me >> 16) & 0xFFFF, seq=(me & 0xFFFF) << 16, age_ms=1, flags=1)
    mine = mb.Entry.make(peer=me, seq=5, age=0.02, proven=True, candidate=False)
    for entries, want in [((decoy,), None), ((decoy, straddle), None), ((decoy, straddle, mine), mine),
                          ((mine, decoy), mine), ((), None)]:
        hb = mb.Heartbeat(node="node2", incarnation=1, seq=1, flags=0, entries=entries)
        got = mb.decode(mb.encode(hb, [KEY]), {mb.key_id(KEY): KEY})
        assert isinstance(got, mb.Heartbeat)
        assert mb.find_entry(got.entries, me) == want == mb.find_entry(entries, me)
        assert got.entries == entries and len(got.entries) == len(entries)


def test_prepared_mac_is_hmac_sha256() -> None:
    """The per-key prepared state computes exactly RFC 2104 HMAC-SHA256 (the wire format)."""
    for key, body in [(KEY, b""), (KEY2, b"x" * 700), (b"short", b"abc"), (b"k" * 100, b"long key")]:
        assert mb._mac(key, body) == hmac.new(key, body, hashlib.sha256).digest()[:mb.MAC_BYTES]


def _sample() -> bytes:
    hb = mb.Heartbeat(node="node1", incarnation=1, seq=1, flags=0, entries=())
    return mb.encode(hb, [KEY])


@pytest.mark.parametrize(
    ("payload", "keys", "want"),
    [
        (b"", {mb.key_id(KEY): KEY}, mb.Reject.MALFORMED),
        (b"XXXX" + _sample()[4:], {mb.key_id(KEY): KEY}, mb.Reject.MALFORMED),
        (_sample()[:20], {mb.key_id(KEY): KEY}, mb.Reject.MALFORMED),
        (_sample(), {mb.key_id(KEY2): KEY2}, mb.Reject.BAD_MAC),
        (_sample()[:-1] + bytes([_sample()[-1] ^ 1]), {mb.key_id(KEY): KEY}, mb.Reject.BAD_MAC),
        (_sample(), {}, mb.Reject.NO_KEYS),
        (_sample()[:-21] + bytes([200]) + _sample()[-20:], {mb.key_id(KEY): KEY}, mb.Reject.MALFORMED),
    ],
    ids=["empty", "magic", "truncated", "other-key", "flipped-mac", "no-keys", "too-many-signatures"],
)
def test_decode_rejects(payload: bytes, keys: dict, want: mb.Reject) -> None:
    assert mb.decode(payload, keys) is want


def test_decode_never_raises_on_mutations() -> None:
    rng = random.Random(7)
    good = mb.encode(mb.Heartbeat(node="node1", incarnation=1, seq=1, flags=1, entries=tuple(
        mb.Entry.make(peer=i, seq=i, age=0.01, proven=True, candidate=True) for i in range(5))), [KEY])
    keys = {mb.key_id(KEY): KEY}
    for _ in range(20000):
        frame = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        frame = frame[: rng.randint(0, len(frame))] if rng.random() < 0.3 else frame
        got = mb.decode(bytes(frame), keys)
        assert isinstance(got, mb.Reject) or bytes(frame) == good or got.node  # authentic only if unchanged


def test_entries_are_cut_to_fit_one_frame() -> None:
    many = tuple(mb.Entry.make(peer=i, seq=i, age=0, proven=True, candidate=True) for i in range(300))
    hb = mb.Heartbeat(node="n" * 63, incarnation=1, seq=1, flags=0, entries=many)
    frame = mb.encode(hb, [KEY, KEY2, KEY])
    assert len(frame) <= mb.MAX_FRAME
    assert mb.max_entries("node1", 1) >= 120  # 100-node clusters fit


# -- the speaker's loop on a simulated LAN -----------------------------------------------------


@dataclasses.dataclass
class Node:
    m: mb.Membership
    phase: int  # its heartbeats go out on ticks where (tick + phase) % 10 == 0
    plan: ownership.Plan = dataclasses.field(default_factory=ownership.Plan)
    ready: bool = True  # synced and willing (the speaker's own checks)
    paused: bool = False
    inbox: list = dataclasses.field(default_factory=list)  # (deliver at, payload)
    answering: frozenset[str] = frozenset()
    last_desired: dict = dataclasses.field(default_factory=dict)  # ip -> owner at the step before
    lag: float = 0.0  # seconds a sync that sees a new live set takes to answer by it (many addresses)
    decided_live: frozenset[str] = frozenset()  # the live set of its last decision
    busy: tuple | None = None  # the sync under way: (done at, plan, desired, live, fence, changes read)
    live: bool = False  # its last applied sync had it live
    fence: float = 0.0  # the announcer's: set by an applied sync, moved on by frames only while it holds
    stepped: int | None = None  # the candidacy (its first seq) a step has counted it in (as the speaker)


class Lan:
    """Nodes exchanging heartbeats every T.heartbeat_interval, 2 ms latency, links per direction."""

    def __init__(self, names: tuple[str, ...] = ("a", "b", "c")) -> None:
        self.now = 0.0
        self.ticks = 0
        self.nodes = {n: Node(member(n, known=names), phase=3 * i + 1) for i, n in enumerate(names)}
        for n in self.nodes.values():
            n.m.set_registered(names)
        self.cut: set[tuple[str, str]] = set()  # (from, to) links that drop frames
        self.violations: list[str] = []

    def send(self, src: str, payload: bytes) -> None:
        for dst, node in self.nodes.items():
            if dst != src and (src, dst) not in self.cut:
                node.inbox.append((self.now + 0.002, payload))

    def tick(self) -> None:
        self.ticks += 1
        self.now = self.ticks / 100
        for name, n in self.nodes.items():
            if n.paused:
                n.answering = frozenset()
                continue
            for _at, payload in [x for x in n.inbox if x[0] <= self.now]:
                n.m.receive(payload, self.now)
            n.inbox = [x for x in n.inbox if x[0] > self.now]
            if (self.ticks + n.phase) % round(T.heartbeat_interval * 100) == 0:
                n.m.candidate = n.ready
                payload = n.m.heartbeat(self.now)
                if payload:
                    self.send(name, payload)
            self._sync(name, n)
        self._check()

    def _sync(self, name: str, n: Node) -> None:
        """The speaker's sync: decide from the LAN now, answer by it `lag` later when the live set
        changed (meanwhile by the last one, within the fence: the announcer checks it per frame),
        then acknowledge."""
        now = self.now
        fence = n.m.fence(now)
        if now < n.fence:
            n.fence = max(n.fence, fence)  # frames move a holding fence on (never revive a lapsed one)
        if n.busy is None:
            since = n.m.candidate_since_seq
            me_live = n.ready and now < fence and since is not None
            joining = me_live and since != n.stepped
            if me_live:
                n.stepped = since
            live = n.m.live_candidates(now) | ({name} if me_live else set())
            desired = {ip: ownership.owner_of(ip, live) for ip in IPS}
            mine = [ip for ip, owner in desired.items() if owner == name]
            plan = ownership.step(n.plan, mine, n.last_desired, name, live, now, T.handover_delay,
                                  seen_by=n.m.acked_since(since),
                                  ack_when_applied=n.m.ack_when_applied() if joining else frozenset())
            lag = n.lag if live != n.decided_live else 0.0  # owners recomputed: slow; else quick
            n.decided_live = frozenset(live)
            n.busy = (now + lag, plan, desired, me_live, fence, n.m.changes)
        done, plan, desired, me_live, fence_then, changes = n.busy
        if now >= done:
            n.busy, n.plan, n.last_desired, n.live, n.fence = None, plan, desired, me_live, fence_then
            n.m.applied(changes)
        n.answering = n.plan.announce if n.live and n.ready and now < n.fence else frozenset()

    def _check(self) -> None:
        for ip in IPS:
            who = [name for name, n in self.nodes.items() if ip in n.answering]
            if len(who) > 1:
                self.violations.append(f"t={self.now:.2f} {ip} answered by {who}")

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.01)):
            self.tick()

    def inject(self, fault: str, victim: str, other: str) -> None:
        """One fault: victim's "rx" or "tx" cut, the victim-other "link" cut both ways, a "pause"
        (anything else: none)."""
        names = list(self.nodes)
        if fault == "rx":
            self.cut |= {(o, victim) for o in names if o != victim}
        elif fault == "tx":
            self.cut |= {(victim, o) for o in names if o != victim}
        elif fault == "link":
            self.cut |= {(victim, other), (other, victim)}
        elif fault == "pause":
            self.nodes[victim].paused = True

    def heal(self, victim: str) -> None:
        self.cut.clear()
        self.nodes[victim].paused = False

    def owners(self) -> dict[str, list[str]]:
        return {ip: [name for name, n in self.nodes.items() if ip in n.answering] for ip in IPS}

    def all_answered_once(self) -> bool:
        return all(len(v) == 1 for v in self.owners().values())

    def silent_for(self, seconds: float) -> float:
        """Longest time any IP went unanswered while running `seconds` more."""
        gap: dict[str, float] = dict.fromkeys(IPS, 0.0)
        worst = 0.0
        for _ in range(round(seconds / 0.01)):
            self.tick()
            for ip, who in self.owners().items():
                gap[ip] = 0.0 if who else gap[ip] + 0.01
                worst = max(worst, gap[ip])
        return worst


@pytest.fixture
def lan() -> Lan:
    net = Lan()
    net.run(1.0)
    assert net.all_answered_once(), net.owners()
    return net


def owner_of_all(net: Lan) -> set[str]:
    return {who[0] for who in net.owners().values() if who}


def test_join_spreads_ips_over_every_node(lan: Lan) -> None:
    assert owner_of_all(lan) == {"a", "b", "c"}
    assert not lan.violations


def test_death_is_replaced_within_dead_after(lan: Lan) -> None:
    del lan.nodes["b"]
    worst = lan.silent_for(1.0)
    assert lan.all_answered_once() and owner_of_all(lan) == {"a", "c"}
    assert worst <= T.dead_after + 0.05
    assert not lan.violations


def test_leaving_hands_over_at_once(lan: Lan) -> None:
    b = lan.nodes["b"]
    b.ready = False
    b.answering = frozenset()
    b.m.leaving = True
    lan.send("b", b.m.heartbeat(lan.now))
    del lan.nodes["b"]
    assert lan.silent_for(0.5) <= 0.03
    assert lan.all_answered_once() and not lan.violations


def pause_and_resume(net: Lan, paused: float, after: float) -> None:
    """b paused (its peers take its addresses), then resumed (it takes them back)."""
    net.nodes["b"].paused = True
    net.run(paused)
    assert owner_of_all(net) == {"a", "c"}
    net.nodes["b"].paused = False
    net.run(after)
    assert owner_of_all(net) == {"a", "b", "c"} and net.all_answered_once()


def test_pause_then_resume_never_double_answers_and_rejoins(lan: Lan) -> None:
    pause_and_resume(lan, 5.0, 1.0)
    assert not lan.violations


@pytest.mark.parametrize("lag", [0.1, 0.3, 0.6])
@pytest.mark.parametrize("slow", [("a", "c"), ("a", "b", "c")])
def test_slow_syncs_hand_back_without_double_answers(lag: float, slow: tuple[str, ...]) -> None:
    """Heirs whose syncs take longer than the hand-over delay and a heartbeat (thousands of
    addresses on a loaded host) and a node coming back, quick or as slow (then the heirs'
    acknowledgements may come before its own first step): it waits until each node answering
    its addresses has applied its candidacy, not merely heard it."""
    net = Lan()
    for name in slow:
        net.nodes[name].lag = lag
    net.run(2.0)
    assert net.all_answered_once(), net.owners()
    for _ in range(3):
        pause_and_resume(net, 2.0, 2.0)
    assert not net.violations, net.violations[:5]


@pytest.mark.parametrize("offset", range(10))
def test_starters_leave_a_lone_owner_its_addresses(offset: int) -> None:
    """A whole-cluster restart where a starts first, alone: it counts itself cut off (b and c are
    registered, unproven) and is no candidate. When b and c start (at every phase of a's beat),
    they prove a before its flag rises, a beat after they confirm it. Neither may take a's
    addresses meanwhile (silent, but each gain writes status and is handed back at once)."""
    net = Lan()
    starters = {n: net.nodes.pop(n) for n in ("b", "c")}
    net.run(1.0 + offset / 100)
    assert not net.nodes["a"].answering  # cut off: registered speakers it cannot prove
    net.nodes.update({n: dataclasses.replace(node, m=_registered(member(n)))
                      for n, node in starters.items()})
    theirs = {ip for ip in IPS if ownership.owner_of(ip, {"a", "b", "c"}) == "a"}
    taken = []
    for _ in range(100):
        net.tick()
        taken += [(net.now, n, sorted(net.nodes[n].plan.announce & theirs)) for n in starters
                  if net.nodes[n].plan.announce & theirs]
    assert not taken, taken[:3]
    assert net.all_answered_once() and owner_of_all(net) == {"a", "b", "c"}, net.owners()
    assert not net.violations, net.violations[:5]


def _registered(m: mb.Membership) -> mb.Membership:
    m.set_registered(["a", "b", "c"])
    return m


def test_an_older_speakers_ack_counts_once_heard() -> None:
    """A heartbeat without FLAG_APPLIED_ACKS (a speaker from before it, mid-upgrade) acknowledges
    a candidacy by proving it, as it always did; with the flag, only an APPLIED entry does."""
    for flags, applied, acked in [(mb.FLAG_CANDIDATE, False, True),
                                  (mb.FLAG_CANDIDATE | mb.FLAG_APPLIED_ACKS, False, False),
                                  (mb.FLAG_CANDIDATE | mb.FLAG_APPLIED_ACKS, True, True)]:
        a = member("a")
        a.candidate = True
        a.set_registered(["a", "b"])
        sent = mb.decode(a.heartbeat(0.0), a.keys)
        entry = mb.Entry.make(peer=mb.node_id("a"), seq=sent.seq, age=0.0, proven=True, candidate=True,
                              applied=applied)
        hb = mb.Heartbeat(node="b", incarnation=1, seq=5, flags=flags, entries=(entry,))
        a.receive(mb.encode(hb, [KEY]), 0.01)
        a.heartbeat(0.05)  # the candidacy starts once b is proven (settled)
        since = a.candidate_since_seq
        hb = mb.Heartbeat(node="b", incarnation=1, seq=6, flags=flags, entries=(
            mb.Entry.make(peer=mb.node_id("a"), seq=since, age=0.0, proven=True, candidate=True,
                          applied=applied),))
        a.receive(mb.encode(hb, [KEY]), 0.06)
        assert (a.acked_since(since) == {"b"}) is acked, (flags, applied)
        assert a.ack_when_applied() == ({"b"} if flags & mb.FLAG_APPLIED_ACKS else set())


@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_one_way_loss_ends_with_one_answer_per_ip(lan: Lan, direction: str) -> None:
    for other in ("a", "c"):
        lan.cut.add((other, "b") if direction == "rx" else ("b", other))
    lan.run(2.0)
    assert "b" not in owner_of_all(lan) and lan.all_answered_once()
    assert not lan.violations
    lan.cut.clear()
    lan.run(1.0)
    assert owner_of_all(lan) == {"a", "b", "c"} and not lan.violations


def test_link_between_two_nodes_cut_both_ways_still_one_answer(lan: Lan) -> None:
    lan.cut |= {("a", "b"), ("b", "a")}
    lan.run(2.0)
    assert lan.all_answered_once() and not lan.violations
    assert owner_of_all(lan) == {"a", "b", "c"}  # a and b still know each other through c


def test_isolated_node_goes_silent(lan: Lan) -> None:
    lan.cut |= {(x, y) for x in "abc" for y in "abc" if x != y and "a" in (x, y)}
    lan.run(2.0)
    assert not lan.nodes["a"].answering
    assert owner_of_all(lan) == {"b", "c"} and lan.all_answered_once() and not lan.violations


def test_replayed_heartbeats_keep_no_dead_node_alive(lan: Lan) -> None:
    recorded: list[bytes] = []
    original = lan.send

    def tap(src: str, payload: bytes) -> None:
        if src == "b":
            recorded.append(payload)
        original(src, payload)

    lan.send = tap  # type: ignore[method-assign]
    lan.run(1.0)
    del lan.nodes["b"]
    for i in range(100):  # an attacker replays b's last second over and over, one frame per tick
        for n in lan.nodes.values():
            n.inbox.append((lan.now + 0.001, recorded[i % len(recorded)]))
        lan.tick()
    assert "b" not in owner_of_all(lan) and lan.all_answered_once()
    assert lan.nodes["a"].m.rejected[mb.Reject.REPLAY] > 0
    assert not lan.violations


def test_forged_heartbeats_change_nothing(lan: Lan) -> None:
    forger = member("b", keys=(KEY2,))  # right name, wrong key: a host on the LAN that is not a speaker
    forger.candidate, forger.leaving = True, True
    before = lan.owners()
    for _ in range(50):
        lan.send("b", forger.heartbeat(lan.now))
        lan.tick()
    assert lan.owners() == before and not lan.violations
    assert lan.nodes["a"].m.rejected[mb.Reject.BAD_MAC] >= 50


def test_unknown_node_is_ignored(lan: Lan) -> None:
    stranger = member("mallory", known=("a", "b", "c", "mallory"))
    stranger.candidate = True
    for _ in range(20):
        lan.send("mallory", stranger.heartbeat(lan.now))
        lan.tick()
    assert lan.nodes["a"].m.rejected[mb.Reject.UNKNOWN_NODE] >= 20
    assert "mallory" not in lan.nodes["a"].m.peers


def test_key_rotation_without_outage(lan: Lan) -> None:
    for n in lan.nodes.values():  # step 1, one node at a time: [new, old]
        n.m.set_keys((KEY2, KEY))
        assert lan.silent_for(0.3) == 0.0
    for n in lan.nodes.values():  # step 2: [new]
        n.m.set_keys((KEY2,))
        assert lan.silent_for(0.3) == 0.0
    assert lan.all_answered_once() and not lan.violations


def test_wrong_key_on_one_node_silences_only_it(lan: Lan) -> None:
    lan.nodes["c"].m.set_keys((KEY2,))
    lan.run(2.0)
    assert owner_of_all(lan) == {"a", "b"} and lan.all_answered_once() and not lan.violations


def test_no_keys_never_answers() -> None:
    m = member("a", keys=())
    m.candidate = True
    assert m.heartbeat(0.0) is None and m.fence(0.0) == 0.0


def test_single_speaker_cluster_answers_alone() -> None:
    net = Lan(("a",))
    net.run(0.5)
    assert net.all_answered_once()


def _candidate_flag(m: mb.Membership, now: float) -> bool:
    hb = mb.decode(m.heartbeat(now), {mb.key_id(KEY): KEY})
    assert isinstance(hb, mb.Heartbeat)
    return bool(hb.flags & mb.FLAG_CANDIDATE)


@pytest.mark.parametrize("a_answers", [True, False])
def test_a_restart_is_no_candidate_until_it_has_heard_every_registered_speaker(a_answers: bool) -> None:
    """b and c restart together beside a, which owns IPs: they prove each other first. Neither may
    be a candidate (and take a's IPs between them) until it proves a too, or until a could be
    dead by the same rule as anyone's death: dead_after without a proof. a was up alone (cut off,
    so its flag is down): they wait until it has had a beat to raise its flag."""
    a, b, c = member("a"), member("b"), member("c")
    for m in (a, b, c):
        m.set_registered(["a", "b", "c"])
        m.candidate = True
    a.heartbeat(-T.dead_after)  # up for a while, alone
    c.receive(b.heartbeat(0.000), 0.001)
    b.receive(c.heartbeat(0.002), 0.003)  # c acknowledges b: b proves c
    c.receive(b.heartbeat(0.004), 0.005)  # and the other way round
    b.receive(c.heartbeat(0.006), 0.007)  # c confirms it proves b: b's fence follows c
    assert set(b.proven(0.008)) == {"c"} and b.fence(0.008) > 0.008  # it could answer: fenced right
    assert not b.settled(0.008) and not _candidate_flag(b, 0.008)
    assert not c.settled(0.008) and not _candidate_flag(c, 0.008)
    if a_answers:  # a's heartbeat acknowledges theirs: both prove it, with its flag down
        for m in (b, c):
            a.receive(m.heartbeat(0.009), 0.010)
        frame = a.heartbeat(0.011)
        for m in (b, c):
            m.receive(frame, 0.012)
        assert set(b.proven(0.012)) == {"a", "c"} and not b.settled(0.012) and not c.settled(0.012)
        for m, other in ((b, c), (c, b)):  # they tell a they prove it: its fence follows, its flag rises
            beat = m.heartbeat(0.013)
            a.receive(beat, 0.014)
            other.receive(beat, 0.014)
        frame = a.heartbeat(0.015)
        assert mb.decode(frame, a.keys).flags & mb.FLAG_CANDIDATE
        for m in (b, c):
            m.receive(frame, 0.016)
        assert b.settled(0.016) and c.settled(0.016) and _candidate_flag(b, 0.016)
        return
    now = b.first_beat + T.dead_after - 0.001
    c.receive(b.heartbeat(now - 0.002), now - 0.001)
    b.receive(c.heartbeat(now - 0.001), now)  # c keeps confirming b: its fence stays valid
    assert not b.settled(now) and b.next_expiry(now) <= b.first_beat + T.dead_after
    now += 0.001
    assert b.settled(now) and _candidate_flag(b, now)  # a proved nothing for dead_after: dead


def test_only_the_guard_whose_confirmation_sets_the_fence_moves_it() -> None:
    """The speaker recomputes its fence (O(peers)) after a frame when fence_holder_confirmed says
    it moved: the oldest confirmation sets it, so a newer one from another guard cannot."""
    a, b, c = member("a"), member("b"), member("c")
    for tick in range(3):  # everyone proves everyone: a's fence follows b's and c's confirmations
        frames = {m.me: m.heartbeat(tick * 0.1) for m in (a, b, c)}
        for m in (a, b, c):
            for frame in (f for sender, f in frames.items() if sender != m.me):
                m.receive(frame, tick * 0.1 + 0.001)

    def confirm(guard: mb.Membership, sent: float) -> None:  # a's heartbeat reaches guard, which answers
        guard.receive(a.heartbeat(sent), sent + 0.001)
        a.receive(guard.heartbeat(sent + 0.005), sent + 0.006)

    confirm(b, 0.25)
    fence = a.fence(0.26)  # set by c, the older confirmation (0.1)
    assert fence == pytest.approx(0.1 + T.dead_after - T.fence_margin)
    confirm(b, 0.27)
    assert not a.fence_holder_confirmed() and a.fence(0.28) == fence  # b is not what holds it
    confirm(c, 0.29)
    assert a.fence_holder_confirmed() and a.fence(0.30) == pytest.approx(0.27 + T.dead_after - T.fence_margin)
    assert not a.fence_holder_confirmed()  # until b, the new holder, confirms a newer heartbeat


def test_api_fresh_flag_is_carried() -> None:
    net = Lan()
    net.nodes["b"].m.api_fresh = True
    net.run(1.0)
    assert net.nodes["a"].m.api_fresh_peer(net.now) and not net.nodes["b"].m.api_fresh_peer(net.now)


@pytest.mark.parametrize(("flip", "wakes"), [
    (mb.FLAG_API_FRESH, False),  # matters only to a stale view, which the sync reads on its own
    (mb.FLAG_CANDIDATE, True),  # who may own IPs changed: sync at once
])
def test_only_candidacy_changes_wake_the_sync(flip: int, wakes: bool) -> None:
    net = Lan()
    net.run(1.0)
    seen = net.nodes["a"].m.changes
    if flip == mb.FLAG_API_FRESH:
        net.nodes["b"].m.api_fresh = True
    else:
        net.nodes["b"].ready = False
    net.run(0.3)
    assert (net.nodes["a"].m.changes != seen) is wakes


def test_sequence_wraps() -> None:
    assert mb._newer(0, 0xFFFFFFFF) and not mb._newer(0xFFFFFFFF, 0) and not mb._newer(5, 5)


def test_state_is_bounded() -> None:
    m = member("a")
    for i in range(1000):
        m.heartbeat(i * 0.1)
    assert len(m.sent) <= 2 * T.dead_after / 0.1 + 2
    m.peers["ghost"] = mb.Peer(incarnation=1, seq=1, heard=0.0)
    m.forget(100.0)
    assert "ghost" not in m.peers


def single_faults(seed: int, rounds: int, faults: list[str],
                  settle: float) -> Iterator[tuple[Lan, random.Random]]:
    """Five nodes; each round one random fault, yielded while it lasts, then healed and left to
    settle for up to `settle` seconds."""
    rng = random.Random(seed)
    net = Lan(("a", "b", "c", "d", "e"))
    net.run(1.0)
    for _ in range(rounds):
        victim, other = rng.sample(list(net.nodes), 2)
        net.inject(rng.choice(faults), victim, other)
        yield net, rng
        net.heal(victim)
        net.run(rng.uniform(0.05, settle))


@pytest.mark.parametrize("seed", range(6))
def test_random_single_faults_never_double_answer(seed: int) -> None:
    """One fault at a time (a node's rx or tx cut, a link cut both ways, a pause), 20 s each seed."""
    for net, rng in single_faults(seed, 20, ["rx", "tx", "link", "pause"], settle=1.0):
        net.run(rng.uniform(0.05, 1.0))
    net.run(1.5)
    assert not net.violations, net.violations[:5]
    assert net.all_answered_once()


def _judgements_hold_until_next_expiry(m: mb.Membership, now: float) -> None:
    """Without a new frame, who is live and my fence do not change before next_expiry (so the
    sync loop may sleep until then); the fence may only move forward."""
    until = m.next_expiry(now)
    assert until >= now
    live, fence = m.live_candidates(now), m.fence(now)
    t = now
    while t < min(until, now + 1.0):
        assert m.live_candidates(t) == live, (m.me, now, t, until)
        if fence > t:
            assert m.fence(t) >= fence, (m.me, now, t, until)
        t += 0.003


@pytest.mark.parametrize("seed", range(8))
def test_next_expiry_misses_no_judgement(seed: int) -> None:
    for net, rng in single_faults(seed, 12, ["rx", "tx", "link", "pause", "none"], settle=0.5):
        for _step in range(rng.randint(3, 60)):
            net.tick()
            if rng.random() < 0.2:
                _judgements_hold_until_next_expiry(net.nodes[rng.choice(list(net.nodes))].m, net.now)
