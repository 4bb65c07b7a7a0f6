"""Heartbeat frames on the LAN: raw Ethernet send and receive (adapter ring: AF_PACKET).

Place in the flow: ``membership.Membership.heartbeat`` -> ``LanLink`` sends it every interval on
every announcing interface (destination ``membership.GROUP_MAC``, EtherType ``membership.ETHERTYPE``)
-> peers' ``LanLink`` -> ``on_frames(payloads, ifname)`` -> ``Membership.receive``.

Why raw Ethernet and not UDP: the heartbeats must travel exactly where ARP/NDP answers travel
(the same interfaces, the same switch ports, no routing, no IP address needed), so a link that
cannot carry answers cannot carry liveness either. Each socket is bound to the EtherType (the
kernel delivers nothing else to it), joins only the l2lb group MAC, and has a bounded receive
buffer, so a flood costs the kernel, not memory. Frames this host sent are not delivered back.

Why one thread for every interface, sending and receiving: an idle speaker's cost is mostly its
wake-ups (a thread that slept 0.1 s wakes to cold caches, ~0.2-0.7 ms each on a busy host), so
beats are sent by the thread that already wakes for frames, and when frames come faster than
``BATCH_ABOVE`` a second (over ``RATE_WINDOW``) they are taken in one batch just before each beat
(at 30 nodes, 48 reads a second were half this thread's cost). Batching delays nothing that matters:
* each frame carries the kernel's receive time, so a peer's death is judged from when its last
  frame arrived, not from when it was read;
* frames that must act at once (a peer LEAVING, or not a candidate: a hand-over) reach a second
  socket of their own (a kernel filter on the flags byte splits them) that is always listened to;
* every frame queued is taken just before each beat, so our beats confirm the newest peer beats;
* a frame read late can only make its sender look older to us, never younger, and we confirm only
  what we have read, so its sender's fence still ends before we may call it dead (a late read can
  cost a needless move, never a double answer).
The batched socket receives into a ring shared with the kernel (``PACKET_RX_RING``, TPACKET_V2):
a frame is read from memory with its receive time beside it, no system call per frame (at 30
nodes ~300 frames a second, each a recvmsg otherwise).

Not guaranteed: delivery (heartbeats are periodic; loss is tolerated up to ``dead_after``).
Constructors start nothing: ``start()`` opens sockets and the thread, ``stop()`` closes them.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable

from . import announcer, frames, membership

log = logging.getLogger(__name__)

BATCH_ABOVE = 40  # frames/s: faster than this, steady beats are read in one batch before each beat

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_OUTGOING = 4
PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20: our own frames are not looped back to us
URGENT_RCVBUF = 64 * 1024  # the urgent socket: few frames, and a flood of them drops sooner
MAX_FRAME = 1514
ETH_HEADER = 14
IDLE_POLL = 0.5  # seconds: without beats, the thread still checks for stop this often
RATE_WINDOW = 0.1  # seconds over which the frame rate decides between reading each or in batches
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V2 = 1
TP_STATUS_USER = 1  # the slot holds a frame for us; writing 0 (TP_STATUS_KERNEL) hands it back
RING_SLOT = 2048  # bytes per frame slot: the ring header, the address and one whole frame
RING_SLOTS = 256  # frames of backlog (~0.85 s at 30 nodes), then the kernel drops (as RCVBUF did)
RING_BLOCK = 8 * RING_SLOT  # the kernel allocates the ring in blocks of whole pages
_TP2 = struct.Struct("=IIIHHII")  # tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec
_SLL_PKTTYPE = 32 + 10  # sockaddr_ll follows the 32-byte header; its packet type byte

Received = list[tuple[float, bytes]]  # (monotonic receive time, payload), in arrival order
Handler = Callable[[Received, str], None]  # (frames received together, interface)
BeatMaker = Callable[[float], "bytes | None"]  # monotonic now -> the payload to send (None: nothing)


def carrier(ifname: str) -> bool:
    """The interface is up and has a link (a cable, a peer veth)."""
    try:
        fd = os.open(f"/sys/class/net/{ifname}/carrier", os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.read(fd, 4)[:1] == b"1"
    except OSError:
        return False  # reading carrier of a down interface fails with EINVAL
    finally:
        os.close(fd)


class LanLink:
    """Two heartbeat sockets per interface (batched and urgent), one thread for all of them.

    start() / start_beats(make, interval) / beat_soon() / stop_beats() / send(payload) / stop().
    ``on_carrier`` is called (from the link's thread) when the set of interfaces with carrier changes.
    """

    def __init__(self, interfaces: Iterable[str], on_frames: Handler,
                 on_carrier: Callable[[], None] | None = None) -> None:
        self.interfaces = list(interfaces)
        self._on_frames = on_frames
        self._on_carrier = on_carrier or (lambda: None)
        self._socks: dict[str, tuple[socket.socket, socket.socket]] = {}  # ifname -> (batched, urgent)
        self._rings: dict[int, Ring] = {}  # batched socket fd -> its receive ring
        self._macs: dict[str, bytes] = {}  # ifname -> its MAC (the frames' source)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1  # a pipe: beat_soon() and stop() wake the poll at once
        self._make_beat: BeatMaker | None = None
        self._interval = 0.0
        self._soon = False
        self._up: list[str] = []
        self._offsets: dict[int, float] = {}  # socket fd -> realtime - monotonic before its last read
        self.sent = 0
        self.received = 0
        self.urgent = 0  # frames that came through the urgent socket
        self.send_errors = 0

    def start(self) -> None:
        for ifname in self.interfaces:
            self._socks[ifname] = (self._open(ifname, urgent=False), self._open(ifname, urgent=True))
            self._macs[ifname] = announcer.mac_of(ifname)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._up = self.up()
        self._thread = threading.Thread(target=self._loop, name="lanlink", daemon=True)
        self._thread.start()

    def _open(self, ifname: str, *, urgent: bool) -> socket.socket:
        # Protocol 0 until bind: no frame is queued before the filter is attached.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        if urgent:  # the batched socket receives into its ring instead, stamped there
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, URGENT_RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, announcer.SO_TIMESTAMPNS, 1)
        with contextlib.suppress(OSError):  # older kernel: _receive skips them instead
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        announcer.attach_filter(sock, frames.split_filter(
            ETH_HEADER + membership.FLAGS_AT, membership.URGENT_IF_SET, membership.URGENT_IF_CLEAR,
            urgent=urgent))
        index = socket.if_nametoindex(ifname)
        mreq = struct.pack("iHH8s", index, PACKET_MR_MULTICAST, 6, membership.GROUP_MAC)
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        if not urgent:  # before bind: no frame reaches the plain queue that nobody reads
            self._rings[sock.fileno()] = Ring(sock)
        sock.bind((ifname, membership.ETHERTYPE))
        sock.setblocking(False)  # the loop polls, then drains every queued frame
        return sock

    def start_beats(self, make: BeatMaker, interval: float) -> None:
        """From now on send make(now) every interval (and at once)."""
        self._make_beat, self._interval = make, interval
        self.beat_soon()

    def beat_soon(self) -> None:
        """Send the next heartbeat now rather than at the end of the interval."""
        self._soon = True
        self._poke()

    def stop_beats(self) -> None:
        self._make_beat = None

    def stop(self) -> None:
        self._stop.set()
        self._make_beat = None
        self._poke()
        if self._thread is not None:
            self._thread.join(1.0)
        for ring in self._rings.values():
            ring.close()
        self._rings.clear()
        for pair in self._socks.values():
            for sock in pair:
                sock.close()
        self._socks.clear()
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1  # no poke after close
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # not started, stopped, or full (a wake-up is pending)
            os.write(self._wake_w, b"\0")

    def alive(self) -> bool:
        """The link's thread still runs (for the liveness probe)."""
        return self._thread is not None and self._thread.is_alive()

    def up(self) -> list[str]:
        """Interfaces with carrier now (a node with none cannot be a candidate)."""
        return [i for i in self.interfaces if carrier(i)]

    def has_carrier(self) -> bool:
        """Some interface had carrier at the thread's last reading (at every beat; a change calls
        ``on_carrier``), so readers need not read sysfs again."""
        return bool(self._up)

    def send(self, payload: bytes, up: list[str] | None = None) -> None:
        """One heartbeat frame on every interface with carrier (any thread may call it);
        up: the interfaces with carrier, when the caller has just read them."""
        up = self.up() if up is None else up
        for ifname, (sock, _urgent) in list(self._socks.items()):
            if ifname not in up:
                continue
            header = membership.GROUP_MAC + self._macs[ifname] + struct.pack("!H", membership.ETHERTYPE)
            try:
                sock.send(header + payload)
                self.sent += 1
            except OSError as exc:
                self.send_errors += 1
                log.debug("%s: heartbeat not sent: %s", ifname, exc)

    # -- the thread ------------------------------------------------------------------------------

    def _loop(self) -> None:
        """Every frame is read as it comes while they come slower than BATCH_ABOVE a second (a small
        cluster). Faster (measured over RATE_WINDOW) and beating, the thread stops listening to the
        batched sockets and reads them just before each beat: one wake-up per beat, however many
        peers. Urgent frames and pokes wake it at once either way (a read takes both sockets)."""
        listen_all, listen_urgent = select.poll(), select.poll()
        for batched, urgent in self._socks.values():
            listen_all.register(batched, select.POLLIN)
            for p in (listen_all, listen_urgent):
                p.register(urgent, select.POLLIN)
        for p in (listen_all, listen_urgent):
            p.register(self._wake_r, select.POLLIN)
        next_beat = window = time.monotonic()
        busy, count = False, 0
        while not self._stop.is_set():
            if self._beat_due(next_beat):
                count += self._read_all()
                next_beat = self._beat(time.monotonic())
            now = time.monotonic()
            if now - window >= RATE_WINDOW:
                busy, count, window = count / (now - window) > BATCH_ABOVE, 0, now
            beating = self._make_beat is not None
            batch = busy and beating  # the batched sockets are read before each beat
            beat_at = next_beat if beating else now + IDLE_POLL
            ready = {fd for fd, _event in (listen_urgent if batch else listen_all).poll(
                max(0.0, beat_at - time.monotonic()) * 1000)}
            if self._wake_r in ready:
                self._drain_wake()
            if not ready - {self._wake_r}:
                continue  # a poke or the beat: no frame
            count += self._read_all()

    def _beat_due(self, next_beat: float) -> bool:
        return self._make_beat is not None and (self._soon or time.monotonic() >= next_beat)

    def _beat(self, now: float) -> float:
        """Send a beat (frames queued were read just before, so it confirms every peer heartbeat
        that arrived before it); returns when the next one is due."""
        make = self._make_beat
        self._soon = False
        up = self.up()
        if up != self._up:
            self._up = up
            self._on_carrier()
        try:
            payload = make(now) if make is not None else None
            if payload is not None:
                self.send(payload, up)
        except Exception:  # a failing beat must not stop receiving
            log.exception("heartbeat failed")
        return now + self._interval

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 512)

    def _read_all(self) -> int:
        """Every frame queued on every interface, batched socket first (older than any urgent
        frame queued after them); returns how many."""
        got = 0
        for ifname, (batched, urgent) in self._socks.items():
            frames_ = self._read(ifname, batched)
            hurry = self._read(ifname, urgent)
            self.urgent += len(hurry)
            frames_ += hurry
            got += len(frames_)
            if not frames_:
                continue
            try:
                self._on_frames(frames_, ifname)
            except Exception:  # bad frames must never stop liveness
                log.exception("%s: heartbeat handler failed on %d frame(s)", ifname, len(frames_))
        return got

    def _read(self, ifname: str, sock: socket.socket) -> Received:
        fd = sock.fileno()
        before = self._offsets.get(fd)  # every frame queued now arrived after this was taken
        self._offsets[fd] = time.time() - time.monotonic()
        ring = self._rings.get(fd)
        try:
            batch = ring.take() if ring is not None else _drain(sock)
        except (OSError, ValueError) as exc:  # ValueError: the ring was closed by stop()
            if not self._stop.is_set():
                log.error("%s: heartbeat receive failed: %s", ifname, exc)
                self._stop.wait(0.1)
            return []
        if not batch:
            return []
        mono = time.monotonic()
        offset = time.time() - mono
        if before is None or abs(offset - before) > announcer.WALL_STEP:
            offset = None  # realtime was stepped while these frames queued: date them now
        out = [(arrival(stamp, mono, offset), f[ETH_HEADER:]) for f, stamp, outgoing in batch
               if not outgoing and len(f) >= ETH_HEADER]
        self.received += len(out)
        return out


Taken = list[tuple[bytes, "float | None", bool]]  # (frame, kernel receive time (realtime s), sent by us)


def arrival(stamp: float | None, now: float, offset: float | None) -> float:
    """The monotonic time a frame arrived, from its kernel timestamp (realtime seconds); never later
    than now, and announcer.WALL_STEP later than measured (later is the safe side: a peer's proof then
    lapses later, never before the peer's own fence). Without a usable timestamp or offset: now."""
    if offset is None or stamp is None:
        return now
    return min(now, stamp - offset + announcer.WALL_STEP)


def receive_time(ancillary: list[tuple[int, int, bytes]], now: float, offset: float | None) -> float:
    """``arrival`` for a frame read with recvmsg: its SO_TIMESTAMPNS ancillary data."""
    return arrival(announcer.kernel_stamp(ancillary), now, offset)


def _drain(sock: socket.socket, limit: int = 256) -> Taken:
    """Every frame queued now on a plain (non-blocking) socket, at most limit."""
    out: Taken = []
    for _attempt in range(limit):
        try:
            data, anc, _flags, addr = sock.recvmsg(MAX_FRAME, announcer.ANCILLARY_SPACE)
        except (BlockingIOError, InterruptedError):
            break
        out.append((data, announcer.kernel_stamp(anc), addr[2] == PACKET_OUTGOING))
    return out


class Ring:
    """A packet socket's receive ring (TPACKET_V2): the kernel writes each frame into the next
    free slot with its receive time and marks it ours; ``take`` copies them out in order and hands
    the slots back. Set up before the socket is bound; poll() on the socket says a slot is ours.
    Not thread-safe (the link's thread alone reads it)."""

    def __init__(self, sock: socket.socket, slots: int = RING_SLOTS) -> None:
        per_block = RING_BLOCK // RING_SLOT
        blocks = -(-slots // per_block)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING,
                        struct.pack("IIII", RING_BLOCK, blocks, RING_SLOT, blocks * per_block))
        self.slots = blocks * per_block
        self._map = mmap.mmap(sock.fileno(), RING_BLOCK * blocks, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self._next = 0  # the slot the kernel fills next after the ones we hold

    def take(self) -> Taken:
        """Every frame waiting in the ring, oldest first (at most one ring's worth)."""
        out: Taken = []
        ring, slot = self._map, self._next
        for _slot in range(self.slots):
            at = slot * RING_SLOT
            status, _length, snaplen, mac, _net, sec, nsec = _TP2.unpack_from(ring, at)
            if not status & TP_STATUS_USER:
                break
            out.append((ring[at + mac:at + mac + min(snaplen, MAX_FRAME)], sec + nsec / 1e9,
                        ring[at + _SLL_PKTTYPE] == PACKET_OUTGOING))
            ring[at:at + 4] = b"\0\0\0\0"  # TP_STATUS_KERNEL: the slot is the kernel's again
            slot = (slot + 1) % self.slots
        self._next = slot
        return out

    def close(self) -> None:
        self._map.close()
