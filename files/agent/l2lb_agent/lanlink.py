"""Heartbeat frames on the LAN: raw Ethernet send and receive (adapter ring: AF_PACKET).

Place in the flow: ``membership.Membership.heartbeat`` -> ``LanLink.send`` -> every announcing
interface (destination ``membership.GROUP_MAC``, EtherType ``membership.ETHERTYPE``) -> peers'
``LanLink`` receive threads -> ``on_frames(payloads, ifname)`` -> ``Membership.receive``.

Why raw Ethernet and not UDP: the heartbeats must travel exactly where ARP/NDP answers travel
(the same interfaces, the same switch ports, no routing, no IP address needed), so a link that
cannot carry answers cannot carry liveness either. Each socket is bound to the EtherType (the
kernel delivers nothing else to it), joins only the l2lb group MAC, and has a bounded receive
buffer, so a flood costs the kernel, not memory. Frames this host sent are skipped.

Not guaranteed: delivery (heartbeats are periodic; loss is tolerated up to ``dead_after``).
Constructors start nothing: ``start()`` opens sockets and threads, ``stop()`` closes them.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import announcer, membership

log = logging.getLogger(__name__)

COALESCE = 0.01  # seconds between receive wake-ups: at most 100 a second, whatever the peer count

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_OUTGOING = 4
RCVBUF = 256 * 1024  # bytes: ~1,000 heartbeats of backlog, then the kernel drops
MAX_FRAME = 1514

Handler = Callable[[list[bytes], str], None]  # (payloads received together, interface)


def carrier(ifname: str, sysfs: Path = Path("/sys/class/net")) -> bool:
    """The interface is up and has a link (a cable, a peer veth)."""
    try:
        return (sysfs / ifname / "carrier").read_text().strip() == "1"
    except OSError:
        return False  # reading carrier of a down interface fails with EINVAL


class LanLink:
    """One heartbeat socket per interface. start() / send(payload) / stop()."""

    def __init__(self, interfaces: Iterable[str], on_frames: Handler) -> None:
        self.interfaces = list(interfaces)
        self._on_frames = on_frames
        self._socks: dict[str, socket.socket] = {}  # ifname -> socket
        self._macs: dict[str, bytes] = {}  # ifname -> its MAC (the frames' source)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.sent = 0
        self.received = 0
        self.send_errors = 0

    def start(self) -> None:
        for ifname in self.interfaces:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(membership.ETHERTYPE))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            index = socket.if_nametoindex(ifname)
            mreq = struct.pack("iHH8s", index, PACKET_MR_MULTICAST, 6, membership.GROUP_MAC)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.bind((ifname, membership.ETHERTYPE))
            sock.setblocking(False)  # _loop polls, then drains every queued frame
            self._socks[ifname] = sock
            self._macs[ifname] = announcer.mac_of(ifname)
            thread = threading.Thread(target=self._loop, args=(ifname, sock), name=f"lanlink-{ifname}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(1.0)
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()

    def alive(self) -> bool:
        """Every receive thread still runs (for the liveness probe)."""
        return all(t.is_alive() for t in self._threads)

    def up(self) -> list[str]:
        """Interfaces with carrier now (a node with none cannot be a candidate)."""
        return [i for i in self.interfaces if carrier(i)]

    def send(self, payload: bytes) -> None:
        """One heartbeat frame on every interface with carrier."""
        for ifname, sock in list(self._socks.items()):
            if not carrier(ifname):
                continue
            header = membership.GROUP_MAC + self._macs[ifname] + struct.pack("!H", membership.ETHERTYPE)
            try:
                sock.send(header + payload)
                self.sent += 1
            except OSError as exc:
                self.send_errors += 1
                log.debug("%s: heartbeat not sent: %s", ifname, exc)

    def _loop(self, ifname: str, sock: socket.socket) -> None:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(500):  # ms; wakes on a frame, or checks _stop twice a second
                continue
            try:
                batch = _drain(sock)  # one wake-up for every frame queued: cost per peer stays small
            except OSError as exc:
                if not self._stop.is_set():
                    log.error("%s: heartbeat receive failed: %s", ifname, exc)
                    self._stop.wait(0.1)
                continue
            payloads = [f[14:] for f, addr in batch if addr[2] != PACKET_OUTGOING and len(f) >= 14]
            self.received += len(payloads)
            try:
                self._on_frames(payloads, ifname)
            except Exception:  # bad frames must never stop liveness
                log.exception("%s: heartbeat handler failed on %d frame(s)", ifname, len(payloads))
            # Let the next frames queue up for a moment: at 30 peers x 10 heartbeats/s one wake-up
            # per frame costs more than the frames. Safe: a later receive only delays our judgement
            # that a peer is live or dead, never a peer's own fence (that follows its send times).
            self._stop.wait(COALESCE)


def _drain(sock: socket.socket, limit: int = 256) -> list[tuple[bytes, Any]]:
    """Every frame queued now (the socket is non-blocking), at most limit."""
    out = []
    for _attempt in range(limit):
        try:
            out.append(sock.recvfrom(MAX_FRAME))
        except (BlockingIOError, InterruptedError):
            break
    return out
