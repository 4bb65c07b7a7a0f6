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
beats are sent by the thread that already wakes for frames, and received frames are taken in
batches at most every ``COALESCE``.

Not guaranteed: delivery (heartbeats are periodic; loss is tolerated up to ``dead_after``).
Constructors start nothing: ``start()`` opens sockets and the thread, ``stop()`` closes them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import announcer, membership

log = logging.getLogger(__name__)

COALESCE = 0.01  # seconds between receive wake-ups: at most 100 a second, whatever the peer count

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_OUTGOING = 4
PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20: our own frames are not looped back to us
RCVBUF = 256 * 1024  # bytes: ~1,000 heartbeats of backlog, then the kernel drops
MAX_FRAME = 1514
IDLE_POLL = 0.5  # seconds: without beats, the thread still checks for stop this often

Handler = Callable[[list[bytes], str], None]  # (payloads received together, interface)
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
    """One heartbeat socket per interface, one thread for all of them.

    start() / start_beats(make, interval) / beat_soon() / stop_beats() / send(payload) / stop().
    ``on_carrier`` is called (from the link's thread) when the set of interfaces with carrier changes.
    """

    def __init__(self, interfaces: Iterable[str], on_frames: Handler,
                 on_carrier: Callable[[], None] | None = None) -> None:
        self.interfaces = list(interfaces)
        self._on_frames = on_frames
        self._on_carrier = on_carrier or (lambda: None)
        self._socks: dict[str, socket.socket] = {}  # ifname -> socket
        self._macs: dict[str, bytes] = {}  # ifname -> its MAC (the frames' source)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1  # a pipe: beat_soon() and stop() wake the poll at once
        self._make_beat: BeatMaker | None = None
        self._interval = 0.0
        self._soon = False
        self._up: list[str] = []
        self.sent = 0
        self.received = 0
        self.send_errors = 0

    def start(self) -> None:
        for ifname in self.interfaces:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(membership.ETHERTYPE))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            with contextlib.suppress(OSError):  # older kernel: _receive skips them instead
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            index = socket.if_nametoindex(ifname)
            mreq = struct.pack("iHH8s", index, PACKET_MR_MULTICAST, 6, membership.GROUP_MAC)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.bind((ifname, membership.ETHERTYPE))
            sock.setblocking(False)  # the loop polls, then drains every queued frame
            self._socks[ifname] = sock
            self._macs[ifname] = announcer.mac_of(ifname)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._up = self.up()
        self._thread = threading.Thread(target=self._loop, name="lanlink", daemon=True)
        self._thread.start()

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
        for sock in self._socks.values():
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

    def send(self, payload: bytes, up: list[str] | None = None) -> None:
        """One heartbeat frame on every interface with carrier (any thread may call it);
        up: the interfaces with carrier, when the caller has just read them."""
        up = self.up() if up is None else up
        for ifname, sock in list(self._socks.items()):
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
        poller, pause = select.poll(), select.poll()
        by_fd = {sock.fileno(): (ifname, sock) for ifname, sock in self._socks.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        for p in (poller, pause):
            p.register(self._wake_r, select.POLLIN)
        next_beat = last_drain = time.monotonic()
        while not self._stop.is_set():
            next_beat = self._beat_if_due(next_beat)
            timeout = next_beat - time.monotonic() if self._make_beat is not None else IDLE_POLL
            ready = [fd for fd, _event in poller.poll(max(0.0, timeout) * 1000)]
            if self._wake_r in ready:
                self._drain_wake()
            frames = [by_fd[fd] for fd in ready if fd != self._wake_r]
            if not frames:
                continue
            # At most one drain per COALESCE: at 30 peers x 10 heartbeats/s a wake-up per frame
            # costs more than the frames, while sparse frames (a small cluster) pay no pause at
            # all. Safe: a later receive only delays our judgement that a peer is live or dead,
            # never a peer's own fence (that follows its send times). A due beat, beat_soon() or
            # stop() ends the pause.
            rest = min(last_drain + COALESCE, next_beat) - time.monotonic()
            if rest > 0 and pause.poll(rest * 1000):
                self._drain_wake()
            last_drain = time.monotonic()
            for ifname, sock in frames:
                self._receive(ifname, sock)

    def _beat_if_due(self, next_beat: float) -> float:
        """Send a beat when due (or asked for); returns when the next one is due. Frames queued
        are taken first, so the beat confirms every peer heartbeat that arrived before it."""
        make = self._make_beat
        if make is None or (time.monotonic() < next_beat and not self._soon):
            return next_beat if make is not None else time.monotonic()
        self._soon = False
        for ifname, sock in self._socks.items():
            self._receive(ifname, sock)
        now = time.monotonic()
        up = self.up()
        if up != self._up:
            self._up = up
            self._on_carrier()
        try:
            payload = make(now)
            if payload is not None:
                self.send(payload, up)
        except Exception:  # a failing beat must not stop receiving
            log.exception("heartbeat failed")
        return now + self._interval

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 512)

    def _receive(self, ifname: str, sock: socket.socket) -> bool:
        try:
            batch = _drain(sock)  # one wake-up for every frame queued: cost per peer stays small
        except OSError as exc:
            if not self._stop.is_set():
                log.error("%s: heartbeat receive failed: %s", ifname, exc)
                self._stop.wait(0.1)
            return False
        payloads = [f[14:] for f, addr in batch if addr[2] != PACKET_OUTGOING and len(f) >= 14]
        self.received += len(payloads)
        if not payloads:
            return bool(batch)
        try:
            self._on_frames(payloads, ifname)
        except Exception:  # bad frames must never stop liveness
            log.exception("%s: heartbeat handler failed on %d frame(s)", ifname, len(payloads))
        return bool(batch)


def _drain(sock: socket.socket, limit: int = 256) -> list[tuple[bytes, Any]]:
    """Every frame queued now (the socket is non-blocking), at most limit."""
    out = []
    for _attempt in range(limit):
        try:
            out.append(sock.recvfrom(MAX_FRAME))
        except (BlockingIOError, InterruptedError):
            break
    return out
