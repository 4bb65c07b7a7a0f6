"""Which speakers are live, judged on the LAN: heartbeats, proofs, fences (core ring, pure).

Place in the flow: ``lanlink`` (raw frames, EtherType ``ETHERTYPE``) -> ``Membership.receive`` /
``Membership.heartbeat`` -> the speaker asks ``live_candidates``, ``fence`` and ``acked_since``
-> ``ownership`` -> ``announcer``. No sockets, no clocks: every method takes ``now`` (monotonic
seconds of this host); only durations ever cross hosts, never timestamps.

Protocol (full rationale and guarantees: docs/membership.md):
* Every ``heartbeat_interval`` a speaker sends one authenticated heartbeat: its node name,
  incarnation, sequence number, flags (CANDIDATE, LEAVING, API_FRESH) and one *entry* per peer it
  heard within ``dead_after``: the peer's last sequence number it heard, how long ago, and whether
  that heartbeat was a *proof*.
* A heartbeat from P is a **proof** for me when it acknowledges one of my own heartbeats sent less
  than ``dead_after`` ago: P is alive *and* hears me now. Replays can never be proofs (they cannot
  acknowledge a heartbeat I sent after they were recorded), so only proofs change anything: P is
  live for me until ``dead_after`` after its last proof reached me, and only a proof's flags count.
* **Fence:** when P's proof says "I proved your heartbeat k", P cannot call me dead before
  ``sent(k) + dead_after`` (it received k after I sent it). I answer only before
  ``min over proven peers (sent(k_P)) + dead_after - fence_margin``, so I am silent before any peer
  that hears me may call me dead, whatever the delays, with no clock shared. A speaker that proves
  no peer while others are registered is **isolated** and fenced (one-way links end here).
* **Indirect liveness:** entries from my proven peers say which nodes *they* prove and how long
  ago; a node they prove stays live for me (with the reporter's age, so no extra delay), so a
  broken link between two speakers that both reach a third never makes them both answer.

Not guaranteed: agreement across a LAN split into two groups that cannot hear each other at all
(each group answers for the IPs it ranks; like VRRP, layer 2 cannot do better without a quorum
that would silence the LAN on every split); safety if the hosts' monotonic clocks run at rates
that differ by more than ``fence_margin / dead_after`` (25 %).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import hmac
import struct
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence

from .keyring import key_id

ETHERTYPE = 0x88B5  # IEEE 802 "local experimental" EtherType 1: never routed, never IP
GROUP_MAC = bytes.fromhex("034c326c6200")  # locally administered multicast: only speakers join it
MAGIC = b"L2LB"
VERSION = 1
MAC_BYTES = 16  # HMAC-SHA256 truncated (RFC 2104 section 5)
MAX_FRAME = 1500 - 14  # one Ethernet payload
MAX_NAME = 253
MAX_KEYS = 3  # signatures per heartbeat (keyring.MAX_KEYS)

FLAG_CANDIDATE = 1  # takes part in owning IPs (synced, keyed, fenced right, API view usable)
FLAG_LEAVING = 2  # gone silent for good (SIGTERM): take its IPs now
FLAG_API_FRESH = 4  # its API view is fresh (peers with stale views yield to it)
FLAG_APPLIED_ACKS = 8  # its entries' APPLIED bits count: it acknowledges a candidacy once applied
_LIVE_SET_FLAGS = FLAG_CANDIDATE | FLAG_LEAVING  # a change of these changes who owns what

ENTRY_PROVEN = 1  # the reporter's last heartbeat from that peer was a proof
ENTRY_CANDIDATE = 2  # ... and that peer's flags said CANDIDATE
ENTRY_APPLIED = 4  # ... and the sender's owners and answers already count that candidacy

_HEAD = struct.Struct("!4sBBB")  # magic, version, flags, name length
FLAGS_AT = struct.calcsize("!4sB")  # where the flags byte is in a payload (a kernel filter reads it)
URGENT_IF_SET = FLAG_LEAVING  # frames a receiver should take at once, not in its next batch:
URGENT_IF_CLEAR = FLAG_CANDIDATE  # a peer leaving or not (or no longer) a candidate
_BODY = struct.Struct("!QIH")  # incarnation, seq, number of entries
_ENTRY = struct.Struct("!IIHB")  # peer id, seq, age ms, entry flags
_SIG = struct.Struct("!I16s")  # key id, MAC


class Reject(enum.Enum):
    """Why a heartbeat changed nothing (counted in l2lb_speaker_heartbeats_rejected)."""

    MALFORMED = "malformed"
    NO_KEYS = "no keys loaded"
    BAD_MAC = "authentication failed"
    SELF = "own heartbeat"
    UNKNOWN_NODE = "unknown node"
    REPLAY = "replayed or out of order"


class Entry(typing.NamedTuple):
    """What a heartbeat's sender says about one peer, in its wire form: ~30 arrive in every frame,
    so decoding makes them straight from the bytes and the judgements read them as properties."""

    peer: int  # node_id of the peer
    seq: int  # the peer's last heartbeat the sender heard (its last proof when proven)
    age_ms: int  # milliseconds since the sender heard that heartbeat (capped at 65,535)
    flags: int  # ENTRY_PROVEN | ENTRY_CANDIDATE | ENTRY_APPLIED

    @classmethod
    def make(cls, *, peer: int, seq: int, age: float, proven: bool, candidate: bool,
             applied: bool = False) -> Entry:
        flags = ((ENTRY_PROVEN if proven else 0) | (ENTRY_CANDIDATE if candidate else 0)
                 | (ENTRY_APPLIED if applied else 0))
        return cls(peer, seq & 0xFFFFFFFF, min(65535, max(0, round(age * 1000))), flags)

    @property
    def age(self) -> float:
        """Seconds since the sender heard that heartbeat."""
        return self.age_ms / 1000

    @property
    def proven(self) -> bool:
        """The sender's last heartbeat from that peer was a proof."""
        return bool(self.flags & ENTRY_PROVEN)

    @property
    def candidate(self) -> bool:
        """... and that peer's flags said CANDIDATE."""
        return bool(self.flags & ENTRY_CANDIDATE)

    @property
    def applied(self) -> bool:
        """... and the sender has applied owners with that candidacy (it is silent for what the
        peer wins)."""
        return bool(self.flags & ENTRY_APPLIED)


_make_entry = functools.partial(tuple.__new__, Entry)  # bytes -> Entry without Python code per entry


class PackedEntries(Sequence[Entry]):
    """A received heartbeat's entries, kept in their wire form: a receiver needs only the entry
    about itself per frame (``find``); the rest are read by the judgements a few times a second,
    so each frame is unpacked at most once, when first iterated. Equal to the same tuple of Entry."""

    __slots__ = ("_raw", "_tuple")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw  # a whole number of entries
        self._tuple: tuple[Entry, ...] | None = None

    def find(self, peer: int) -> Entry | None:
        """The entry about peer, if any, without unpacking the others."""
        needle, raw, size = peer.to_bytes(4, "big"), self._raw, _ENTRY.size
        at = raw.find(needle)
        while at >= 0:
            if at % size == 0:
                return _make_entry(_ENTRY.unpack_from(raw, at))
            at = raw.find(needle, at + 1)
        return None

    def _entries(self) -> tuple[Entry, ...]:
        if self._tuple is None:
            self._tuple = tuple(map(_make_entry, _ENTRY.iter_unpack(self._raw)))
        return self._tuple

    def __len__(self) -> int:
        return len(self._raw) // _ENTRY.size

    @typing.overload
    def __getitem__(self, index: int) -> Entry: ...

    @typing.overload
    def __getitem__(self, index: slice) -> tuple[Entry, ...]: ...

    def __getitem__(self, index: int | slice) -> Entry | tuple[Entry, ...]:
        return self._entries()[index]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedEntries | tuple):
            return self._entries() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._entries())

    def __repr__(self) -> str:
        return f"PackedEntries({self._entries()!r})"


def find_entry(entries: Sequence[Entry], peer: int) -> Entry | None:
    """The entry about peer in a heartbeat's entries (packed or built)."""
    if isinstance(entries, PackedEntries):
        return entries.find(peer)
    return next((e for e in entries if e.peer == peer), None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Heartbeat:
    node: str
    incarnation: int
    seq: int
    flags: int
    entries: Sequence[Entry]  # built: a tuple; received: PackedEntries


@functools.lru_cache(maxsize=4096)
def node_id(name: str) -> int:
    """A node's 32-bit id in entries (names would not fit 100 peers in one frame); cached: every
    heartbeat names every peer."""
    return int.from_bytes(hashlib.sha256(b"l2lb-node\0" + name.encode()).digest()[:4], "big")


@functools.lru_cache(maxsize=64)
def _keyed(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 with the key already absorbed: copying it costs ~4 us, where hmac.digest sets
    the key up again for every frame (~20 us on OpenSSL 3; ~30 frames per interval at 30 nodes)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _mac(key: bytes, body: bytes) -> bytes:
    mac = _keyed(key).copy()
    mac.update(body)
    return mac.digest()[:MAC_BYTES]


def max_entries(name: str, n_keys: int) -> int:
    """How many entries fit one frame beside the header and n_keys signatures."""
    fixed = _HEAD.size + len(name.encode()) + _BODY.size + 1 + n_keys * _SIG.size
    return max(0, (MAX_FRAME - fixed) // _ENTRY.size)


def encode(hb: Heartbeat, keys: Iterable[bytes]) -> bytes:
    """The signed payload (after the Ethernet header). Every key signs, so rotations overlap."""
    keys = tuple(keys)
    name = hb.node.encode()
    entries = hb.entries[: max_entries(hb.node, len(keys))]
    parts = [_HEAD.pack(MAGIC, VERSION, hb.flags & 0xFF, len(name)), name,
             _BODY.pack(hb.incarnation, hb.seq & 0xFFFFFFFF, len(entries))]
    parts += [_ENTRY.pack(*e) for e in entries]
    body = b"".join(parts)
    sigs = b"".join(_SIG.pack(key_id(k), _mac(k, body)) for k in keys)
    return body + bytes([len(keys)]) + sigs


def decode(payload: bytes, keys: Mapping[int, bytes]) -> Heartbeat | Reject:
    """Parse and authenticate; keys: key_id -> key. Never raises on any input."""
    if not keys:
        return Reject.NO_KEYS
    try:
        magic, version, flags, name_len = _HEAD.unpack_from(payload, 0)
        if magic != MAGIC or version != VERSION or not 0 < name_len <= MAX_NAME:
            return Reject.MALFORMED
        pos = _HEAD.size
        name = payload[pos:pos + name_len].decode("ascii")
        pos += name_len
        incarnation, seq, count = _BODY.unpack_from(payload, pos)
        pos += _BODY.size
        raw_entries = payload[pos:pos + count * _ENTRY.size]
        if len(raw_entries) != count * _ENTRY.size:
            return Reject.MALFORMED
        pos += count * _ENTRY.size
        body, n_sigs = payload[:pos], payload[pos]
        if n_sigs > MAX_KEYS:
            return Reject.MALFORMED  # bounded work per frame: at most MAX_KEYS HMACs
        sigs = [_SIG.unpack_from(payload, pos + 1 + i * _SIG.size) for i in range(n_sigs)]
    except (struct.error, IndexError, UnicodeDecodeError):
        return Reject.MALFORMED
    if not _authentic(body, sigs, keys):
        return Reject.BAD_MAC
    return Heartbeat(node=name, incarnation=incarnation, seq=seq, flags=flags,
                     entries=PackedEntries(raw_entries))


def _authentic(body: bytes, sigs: list[tuple[int, bytes]], keys: Mapping[int, bytes]) -> bool:
    for kid, mac in sigs:
        key = keys.get(kid)
        if key is not None and hmac.compare_digest(_mac(key, body), mac):
            return True
    return False


# -- the state ---------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class Peer:
    """What this speaker knows of one peer (times: this host's monotonic clock)."""

    incarnation: int
    seq: int  # last sequence number accepted
    heard: float  # when that heartbeat arrived
    proof: float = float("-inf")  # when its last proof arrived
    proof_seq: int = 0
    flags: int = 0  # flags of its last proof
    entries: Sequence[Entry] = ()  # entries of its last proof
    confirmed: float = float("-inf")  # send time of my newest heartbeat it proved (drives my fence)
    acked_seq: int = -1  # my newest sequence number it proved having applied my candidacy (see receive)
    rose: int = 0  # my `changes` when its candidacy last began in my view (flag up, or proven again)
    told_seq: int | None = None  # my first heartbeat that told it I prove it (its fence may follow me)
    had_beat: bool = False  # it proved told_seq or later: its flags since count my confirmation


class Membership:
    """One speaker's view of the LAN. Not thread-safe: the adapter serialises calls.

    ``me``/``incarnation``/``first_seq`` identify this process; ``first_seq`` is random in
    production, so an acknowledgement of an earlier incarnation never matches a heartbeat of this one.
    """

    def __init__(self, me: str, *, incarnation: int, first_seq: int, dead_after: float,
                 fence_margin: float, confirm_fresh: float) -> None:
        self.me, self.my_id, self.incarnation = me, node_id(me), incarnation
        self._seq = first_seq & 0xFFFFFFFF
        self.dead_after, self.fence_margin, self.confirm_fresh = dead_after, fence_margin, confirm_fresh
        self.keys: dict[int, bytes] = {}  # key id -> key
        self.known: dict[int, str] = {}  # node id -> name, from the API's Node list
        self.registered: frozenset[str] = frozenset()  # speakers registered in the API (not me)
        self.peers: dict[str, Peer] = {}  # node name -> state
        self.sent: dict[int, float] = {}  # my seq -> send time (the last few dead_after)
        self.candidate = False  # set by the speaker: it may own IPs (when fenced right)
        self.api_fresh = False
        self.leaving = False
        self.candidate_since_seq: int | None = None  # first seq that carried CANDIDATE this spell
        self.first_beat: float | None = None  # when this process sent its first heartbeat
        self.rejected: dict[Reject, int] = dict.fromkeys(Reject, 0)
        self.accepted = 0
        self.changes = 0  # bumped when a peer is newly proven or its candidacy changes: worth a sync now
        self.applied_changes = 0  # my owners and answers count every change up to this (see applied)
        self._fence_holder: tuple[str, float] | None = None  # (guard, confirmation) the last fence came from

    # -- inputs from the API ----------------------------------------------------------------------

    def set_keys(self, keys: Iterable[bytes]) -> None:
        self.keys = {key_id(k): k for k in keys}

    def set_known(self, nodes: Iterable[str]) -> None:
        self.known = {node_id(n): n for n in nodes}

    def set_registered(self, speakers: Iterable[str]) -> None:
        self.registered = frozenset(speakers) - {self.me}

    # -- receiving ---------------------------------------------------------------------------------

    def receive(self, payload: bytes, now: float) -> Reject | None:
        """Take one heartbeat payload; returns why it was ignored, or None when accepted."""
        hb = decode(payload, self.keys)
        if isinstance(hb, Heartbeat):
            hb = self._admit(hb)
        if isinstance(hb, Reject):
            self.rejected[hb] += 1
            return hb
        self.accepted += 1
        peer = self.peers.get(hb.node)
        if peer is None or hb.incarnation != peer.incarnation:
            peer = self.peers[hb.node] = Peer(incarnation=hb.incarnation, seq=hb.seq, heard=now)
        peer.seq, peer.heard = hb.seq, now
        mine = find_entry(hb.entries, self.my_id)
        sent = self.sent.get(mine.seq) if mine is not None else None
        if sent is None or now - sent >= self.dead_after:
            return None  # heard, not a proof: it does not (yet) hear me, or it is a replay
        newly = now - peer.proof >= self.dead_after
        if newly or (peer.flags ^ hb.flags) & _LIVE_SET_FLAGS:
            self.changes += 1  # API_FRESH alone waits for the next sync: it matters only to a stale view
            if hb.flags & FLAG_CANDIDATE and (newly or not peer.flags & FLAG_CANDIDATE):
                peer.rose = self.changes  # a candidacy begins: acknowledged once a sync applies it
        peer.proof, peer.proof_seq, peer.flags, peer.entries = now, hb.seq, hb.flags, hb.entries
        if mine is not None and peer.told_seq is not None and not _newer(peer.told_seq, mine.seq):
            peer.had_beat = True
        if mine is not None and mine.proven:  # it cannot call me dead before sent + dead_after
            peer.confirmed = max(peer.confirmed, sent)
            # our candidacy counts as seen once its owners and answers count it (it is silent for
            # what we win by then); a peer without APPLIED acks (an older speaker): once heard
            applied = mine.applied or not hb.flags & FLAG_APPLIED_ACKS
            if applied and (peer.acked_seq < 0 or _newer(mine.seq, peer.acked_seq)):
                since = self.candidate_since_seq
                if since is not None and (peer.acked_seq < 0 or _newer(since, peer.acked_seq)) \
                        and not _newer(since, mine.seq):
                    self.changes += 1  # it has now seen our candidacy: a pending gain may proceed
                peer.acked_seq = mine.seq
        return None

    def _admit(self, hb: Heartbeat) -> Heartbeat | Reject:
        if hb.node == self.me:
            return Reject.SELF
        if self.known.get(node_id(hb.node)) != hb.node:
            return Reject.UNKNOWN_NODE
        peer = self.peers.get(hb.node)
        if peer is not None:
            if hb.incarnation < peer.incarnation:
                return Reject.REPLAY
            if hb.incarnation == peer.incarnation and not _newer(hb.seq, peer.seq):
                return Reject.REPLAY
        return hb

    # -- sending -----------------------------------------------------------------------------------

    def heartbeat(self, now: float) -> bytes | None:
        """The next signed heartbeat payload (None without keys); records its send time."""
        if not self.keys:
            return None
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self.sent[self._seq] = now
        if self.first_beat is None:
            self.first_beat = now
        for old in [s for s, t in self.sent.items() if now - t > 2 * self.dead_after]:
            del self.sent[old]
        flags = self._flags(now)
        if flags & FLAG_CANDIDATE and self.candidate_since_seq is None:
            self.candidate_since_seq = self._seq
        elif not flags & FLAG_CANDIDATE:
            self.candidate_since_seq = None
        entries = self.entries(now)[: max_entries(self.me, len(self.keys))]  # what the frame carries
        if self._settling(now):  # the only time settled() reads what we told whom
            self._note_told(entries)
        hb = Heartbeat(node=self.me, incarnation=self.incarnation, seq=self._seq, flags=flags,
                       entries=entries)
        return encode(hb, self.keys.values())

    def _note_told(self, entries: Iterable[Entry]) -> None:
        """The peers this heartbeat tells for the first time that I prove them."""
        for e in entries:
            peer = self.peers.get(self.known.get(e.peer, "")) if e.proven else None
            if peer is not None and peer.told_seq is None:
                peer.told_seq = self._seq

    def _flags(self, now: float) -> int:
        flags = FLAG_APPLIED_ACKS | (FLAG_API_FRESH if self.api_fresh else 0)
        if self.leaving:
            return flags | FLAG_LEAVING
        if self.candidate and now < self.fence(now) and self.settled(now):
            flags |= FLAG_CANDIDATE
        return flags

    def settled(self, now: float) -> bool:
        """I have heard the LAN long enough to own IPs: every registered speaker is proven and is a
        candidate or has had its beat (below), or ``dead_after`` has passed since my first heartbeat
        (one not proven by then is dead, as for anyone). Before that, an unproven one may be a live
        owner I have not heard yet: two speakers starting together would otherwise prove each other
        first and share out its IPs. A proven one whose flag is down may be an owner that was cut off
        (alone among registered speakers, so fenced): it raises its flag in its first heartbeat after
        one of mine tells it I prove it, so its flags count once it has proved such a heartbeat."""
        if self.first_beat is None:
            return False
        if not self._settling(now):
            return True
        proven = self.proven(now)
        return all(name in proven and (proven[name].had_beat or proven[name].flags & FLAG_CANDIDATE)
                   for name in self.registered - self._left())

    def _settling(self, now: float) -> bool:
        """Within ``dead_after`` of my first heartbeat: settled() still asks about each peer."""
        return self.first_beat is not None and now - self.first_beat < self.dead_after

    def entries(self, now: float) -> tuple[Entry, ...]:
        """One entry per peer heard within dead_after, freshest first (they are cut to fit a frame)."""
        out = []
        for name, p in self.peers.items():
            if now - p.heard >= self.dead_after:
                continue
            proven = now - p.proof < self.dead_after
            cand = proven and bool(p.flags & FLAG_CANDIDATE) and not p.flags & FLAG_LEAVING
            seq, at = (p.proof_seq, p.proof) if proven else (p.seq, p.heard)
            out.append(Entry.make(peer=node_id(name), seq=seq, age=now - at, proven=proven, candidate=cand,
                                  applied=cand and p.rose <= self.applied_changes))
        out.sort(key=lambda e: e.age_ms)
        return tuple(out)

    # -- judgements -------------------------------------------------------------------------------

    def proven(self, now: float) -> dict[str, Peer]:
        """Peers whose last proof is younger than dead_after: alive and hearing me."""
        return {n: p for n, p in self.peers.items() if now - p.proof < self.dead_after}

    def _guards(self, now: float) -> dict[str, Peer]:
        """Proven peers that could take an IP from me, so my fence follows their confirmations.

        Never a LEAVING one (it never answers again). While some peers confirm me freshly (within
        ``confirm_fresh``), a peer whose confirmations went stale is left out before it could fence
        me: it has stopped hearing me, so it is dead, or hears no one (isolated, so fenced), or
        still hears a peer that hears me and so sees me live through that peer's entries. Keeping
        it would darken every IP of the cluster whenever one node dies or loses its receive path.
        When no peer confirms me freshly, my own send path is the likely fault: all of them count.
        """
        proven = {n: p for n, p in self.proven(now).items() if not p.flags & FLAG_LEAVING}
        fresh = {n: p for n, p in proven.items() if now - p.confirmed < self.confirm_fresh}
        return fresh or proven

    def _left(self) -> set[str]:
        return {n for n, p in self.peers.items() if p.flags & FLAG_LEAVING}

    def isolated(self, now: float) -> bool:
        """I prove no peer although other speakers exist (registered on Ready nodes, or heard lately)."""
        if self._guards(now):
            return False
        left = self._left()
        heard = any(now - p.heard < 4 * self.dead_after for n, p in self.peers.items() if n not in left)
        return bool(self.registered - left) or heard

    def fence(self, now: float) -> float:
        """Monotonic time until which I may answer (0 when I may not)."""
        if not self.keys or self.isolated(now):
            return 0.0
        guards = self._guards(now)
        if not guards:
            return float("inf")  # no other speaker exists: nobody can take over from me
        holder = min(guards, key=lambda n: guards[n].confirmed)
        self._fence_holder = (holder, guards[holder].confirmed)
        return max(0.0, guards[holder].confirmed + self.dead_after - self.fence_margin)

    def fence_holder_confirmed(self) -> bool:
        """The guard whose confirmation set the last ``fence`` has confirmed me again since, so the
        fence moves now. O(1): asked after every frame; fence() itself is O(peers). Another guard's
        confirmation cannot move it (the oldest one sets it)."""
        if self._fence_holder is None:
            return False
        name, confirmed = self._fence_holder
        peer = self.peers.get(name)
        return peer is not None and peer.confirmed > confirmed

    def live_candidates(self, now: float) -> frozenset[str]:
        """Other nodes that may own IPs now: proven directly, or proven by a peer I prove."""
        direct = self.proven(now)
        live = {n for n, p in direct.items() if p.flags & FLAG_CANDIDATE and not p.flags & FLAG_LEAVING}
        for name, reporter, e in self._indirect(direct):
            peer = self.peers.get(name)
            if peer is not None and peer.flags & FLAG_LEAVING and now - peer.proof < self.dead_after:
                continue  # it told me itself that it left
            if now - (reporter.proof - e.age) < self.dead_after:
                live.add(name)
        return frozenset(live)

    def _indirect(self, direct: Mapping[str, Peer]) -> Iterator[tuple[str, Peer, Entry]]:
        """(node, reporter, entry) for every proven, candidate entry that a peer I prove gives about
        a known node I do not prove myself. Looked up per such node (none in a healthy cluster where
        every node runs a speaker), not by reading every entry of every peer: N² at 30 nodes."""
        for peer_id, name in self.known.items():
            if name == self.me or name in direct:
                continue
            for reporter in direct.values():
                e = find_entry(reporter.entries, peer_id)
                if e is not None and e.proven and e.candidate:
                    yield name, reporter, e

    def next_expiry(self, now: float) -> float:
        """The next monotonic time at which who is live, or my fence, may change without a frame.

        Only the moments that matter, since each is a wake-up of the sync loop: a peer's proof
        lapsing (death); the last fresh guard going stale (the fence then falls back to every
        proven peer, so it may move back); an entry lapsing for a peer live only through others.
        Not the fence itself (the announcer stops at it on its own) nor one of several fresh
        guards going stale (that only moves the fence forward, which frames do as they come).
        Each time is taken under the same test as the judgement it ends (proven, _guards,
        live_candidates), so float rounding cannot hide one; it may be <= now: wake at once."""
        direct = self.proven(now)
        times = [p.proof + self.dead_after for p in direct.values()]
        if self.first_beat is not None and self._settling(now):
            times.append(self.first_beat + self.dead_after)  # settled at the latest then
        fresh = [p.confirmed + self.confirm_fresh for p in direct.values()
                 if now - p.confirmed < self.confirm_fresh and not p.flags & FLAG_LEAVING]
        if fresh:
            times.append(max(fresh))
        times += [reporter.proof - e.age + self.dead_after for _name, reporter, e in self._indirect(direct)
                  if now - (reporter.proof - e.age) < self.dead_after]  # an entry lapses
        return min(times, default=now + 1.0)

    def api_fresh_peer(self, now: float) -> bool:
        """Some proven peer says its API view is fresh."""
        return any(p.flags & FLAG_API_FRESH for p in self.proven(now).values())

    def applied(self, changes: int) -> None:
        """The speaker's owners and answers now count every change up to `changes` (the value it
        read with the live set it applied): candidacies begun by then are acknowledged as applied."""
        self.applied_changes = max(self.applied_changes, changes)

    def acked_since(self, seq: int | None) -> frozenset[str]:
        """Peers that proved one of my heartbeats numbered seq or later having applied my candidacy
        (ENTRY_APPLIED; an older speaker's proof alone) (None: none)."""
        if seq is None:
            return frozenset()
        return frozenset(n for n, p in self.peers.items()
                         if p.acked_seq >= 0 and not _newer(seq, p.acked_seq))

    def ack_when_applied(self) -> frozenset[str]:
        """Peers that acknowledge a candidacy only once it is applied (FLAG_APPLIED_ACKS): their
        acknowledgement proves them silent for what the candidate wins."""
        return frozenset(n for n, p in self.peers.items() if p.flags & FLAG_APPLIED_ACKS)

    def forget(self, now: float, after: float = 60.0) -> None:
        """Drop peers not heard for `after` seconds (bounded memory across node churn)."""
        for name in [n for n, p in self.peers.items() if now - p.heard > after]:
            del self.peers[name]


def _newer(a: int, b: int) -> bool:
    """a comes after b in 32-bit sequence space (RFC 1982 serial arithmetic)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000
