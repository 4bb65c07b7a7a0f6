"""ARP / NDP answering on raw sockets (adapter ring: AF_PACKET, classic BPF).

Place in the flow: speaker -> ``Announcer.update(owned IPs)`` and ``set_fence`` -> one thread per
LAN interface answers ARP requests and Neighbor Solicitations for owned IPs with the
interface's MAC -> gratuitous ARP / unsolicited NA when an IP is gained.

Design:
* Each reply template is built once, when an IP is gained (``_Templates``, ``frames``: a few
  microseconds, so a takeover of thousands of IPs is not held up by it); the hot path only
  patches the requester's MAC/IP into the bytes (``frames.arp_reply`` / ``na_reply``).
* The state the receive threads read is one immutable ``_Snapshot`` swapped by reference
  (owned IPs -> templates, fence deadline): losing an IP or passing the fence takes effect on
  the next frame, without locks. Every frame is checked against the fence (monotonic clock),
  so a late timer can never make a fenced speaker answer.
* Each socket carries a classic BPF filter (``frames.bpf_program``) rebuilt on every change of
  the owned set; the filter is attached before the socket is bound, and the receive buffer is
  bounded (``RCVBUF``), so a flood costs the kernel, not Python, and cannot grow memory.

* A request is answered only if the kernel received it (``SO_TIMESTAMPNS``) while this port was
  answering for its target: at or after the target's gain and the fence's last revival. One that
  waited in the socket from before (a receive thread held up, e.g. while the speaker loads
  10,000 Services at start-up) belonged to whoever answered then, and answering it late makes a
  second MAC for one request; the gratuitous ARP sent on the gain tells its requester instead.
  The kernel stamps in wall-clock time; after a clock step, ``WallOffset`` dates the stamps of
  the frames queued across it with the larger realtime-monotonic offset, so a clock stepped back
  while requests queued makes them look earlier (dropped; the requester asks again), never later.

Not guaranteed: an answer already handed to the kernel when an IP is lost still goes out.
Constructors start nothing: ``start()`` opens sockets and threads, ``stop()`` closes them.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import fcntl
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from . import frames, ratelimit

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35  # a struct timespec (CLOCK_REALTIME) of the kernel's receive, per frame
TIMESPEC = struct.Struct("@ll")  # struct timespec: two C longs (SO_TIMESTAMPNS_OLD)
ANCILLARY_SPACE = socket.CMSG_SPACE(TIMESPEC.size)
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_ALLMULTI = 2
SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
WALL_STEP = 0.002  # seconds: realtime - monotonic moving more than this means realtime was stepped
STEP_MEMORY = 60.0  # seconds at most that a step's larger offset dates frames (until the socket is empty)
RCVBUF = 1 << 20  # bytes; bounded so a flood drops in the kernel instead of growing memory
GARP_SCHEDULE = (0.0, 0.5, 1.5, 3.0)  # seconds after a gain: at once, then a few more

EXCLUDED_PREFIXES = ("veth", "cali", "cni", "flannel", "docker", "kube-", "lxc", "cilium", "lo")
EXCLUDED_DRIVERS = {"dummy", "bridge", "tun", "vxlan", "geneve", "ipip", "ip_gre", "ip6_gre", "gre",
                    "sit", "ip6_tunnel", "wireguard", "openvswitch", "nlmon", "ifb", "vrf"}
EXCLUDED_DEVTYPES = {"bridge", "vxlan", "geneve", "wireguard", "ipip", "gre", "sit", "tunnel"}


# -- interface choice ------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def driver_of(name: str) -> str:
    """The kernel driver of an interface (ethtool GDRVINFO), "" when unknown."""
    buf = array.array("B", struct.pack("I", ETHTOOL_GDRVINFO) + bytes(192))
    ifreq = struct.pack("16sP", name.encode()[:15], buf.buffer_info()[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s, SIOCETHTOOL, ifreq)
        except OSError:
            return ""
    return bytes(buf[4:36]).split(b"\0", 1)[0].decode(errors="replace")


def unsuitable(name: str, sysfs: Path = Path("/sys/class/net")) -> str | None:
    """Why an interface is not a LAN interface for announcing, or None when it is suitable.

    A veth named eth0 (a container or lab namespace's uplink) is suitable; CNI-style names are not.
    """
    base = sysfs / name
    if name.startswith(EXCLUDED_PREFIXES):
        return "name looks like loopback, CNI or container plumbing"
    if _read(base / "type") != "1":
        return "not an Ethernet interface"
    if not int(_read(base / "flags") or "0", 16) & 1:
        return "down"
    devtype = next((ln.split("=", 1)[1] for ln in _read(base / "uevent").splitlines()
                    if ln.startswith("DEVTYPE=")), "")
    if devtype in EXCLUDED_DEVTYPES or (base / "bridge").exists():
        return f"virtual device type {devtype or 'bridge'}"
    driver = driver_of(name)
    if driver in EXCLUDED_DRIVERS:
        return f"virtual device driver {driver}"
    return None


def choose_interfaces(configured: Iterable[str] = (), sysfs: Path = Path("/sys/class/net")) -> list[str]:
    """The configured interfaces (must exist), or every suitable one."""
    names = sorted(p.name for p in sysfs.iterdir()) if sysfs.exists() else []
    configured = list(configured)
    if configured:
        missing = [n for n in configured if n not in names]
        if missing:
            raise ValueError(f"interfaces: {', '.join(missing)} not found (have: {', '.join(names)})")
        return configured
    chosen = []
    for name in names:
        why = unsuitable(name, sysfs)
        log.debug("interface %s: %s", name, why or "suitable")
        if why is None:
            chosen.append(name)
    return chosen


def attach_filter(sock: socket.socket, prog: list[frames.Insn]) -> None:
    """Attach a classic BPF program (frames.Insn list) to a packet socket; it replaces any before."""
    code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = array.array("B", code)
    fprog = struct.pack("HL", len(prog), buf.buffer_info()[0])
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def mac_of(name: str) -> bytes:
    return bytes.fromhex(_read(Path("/sys/class/net") / name / "address").replace(":", ""))


# -- templates and snapshot ------------------------------------------------------------------


class _Templates(NamedTuple):
    """Frames built once per (interface, IP) (``frames.arp_templates`` / ``na_templates``); a
    NamedTuple, as thousands are built at a takeover (a third of a frozen dataclass's cost)."""

    packed: bytes  # the IP, 4 or 16 bytes: the snapshot's key
    reply: bytes  # ARP reply or solicited NA, patched per request
    announce: bytes  # gratuitous ARP, or unsolicited NA to all nodes (also the answer to DAD)


def pack(ip: str) -> bytes:
    """A canonical IP text as 4 or 16 bytes (inet_pton: 20x cheaper than ipaddress at takeover)."""
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def build_templates(ip: str, mac: bytes) -> _Templates:
    packed = pack(ip)
    reply, announce = (frames.arp_templates if len(packed) == 4 else frames.na_templates)(packed, mac)
    return _Templates(packed, reply, announce)


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    owned4: dict[bytes, _Templates]  # packed IPv4 -> templates
    owned6: dict[bytes, _Templates]  # packed IPv6 -> templates
    fence: float  # monotonic deadline; no answer at or after it
    since: dict[bytes, float] = dataclasses.field(default_factory=dict)  # packed IP -> monotonic gain time
    revived: float = 0.0  # monotonic time the fence last came back after it had passed


def refusal(snap: _Snapshot, target: bytes, arrived: float, now: float) -> frames.Verdict | None:
    """Why a request for target that the kernel received at `arrived` must not be answered `now`
    (monotonic times), or None: the fence holds, target is answered here, and the request arrived
    while it was (not before its gain, nor before the fence last came back)."""
    if now >= snap.fence:
        return frames.Verdict.FENCED
    gained = snap.since.get(target)
    if gained is None:
        return frames.Verdict.NOT_OWNED
    if arrived < max(gained, snap.revived):
        return frames.Verdict.EARLY
    return None


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's receive time of a frame (realtime seconds) from its SCM_TIMESTAMPNS, or None."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return sec + nsec * 1e-9
    return None


def arrival(ancillary: list[tuple[int, int, bytes]], now: float, offset: float) -> float:
    """The monotonic time the kernel received a frame: its stamp less `offset` (realtime -
    monotonic, see WallOffset); `now` when the stamp is missing or from the future (a clock step)."""
    stamp = kernel_stamp(ancillary)
    return now if stamp is None else min(now, stamp - offset)


class WallOffset:
    """realtime - monotonic as the stamps of frames still queued may carry it. After a step
    (settimeofday, an NTP step; slewing moves both clocks alike) frames queued before it carry the
    old offset and later ones the new: until the socket has been found empty (`drained`), or for
    STEP_MEMORY at most, the larger of the two dates them, so a stamp taken before a step back is
    never dated later than it arrived. Observed where a stamp is dated (each answer) and at every
    receive timeout; a step since the previous look is seen then. One per thread."""

    def __init__(self) -> None:
        self._last: float | None = None  # the offset at the previous observation
        self._high = 0.0
        self._hold_until = 0.0  # monotonic: until then _high keeps the offset from before a step

    def observe(self, now: float, wall_now: float) -> float:
        """Note the offset at monotonic `now` and return the one to date stamps with."""
        offset, last = wall_now - now, self._last
        self._last = offset
        if last is not None and abs(offset - last) > WALL_STEP:  # stepped since the last look
            self._high = max(self._high, last, offset)
            self._hold_until = now + STEP_MEMORY
        elif self.holding(now):
            self._high = max(self._high, offset)
        else:
            self._high, self._hold_until = offset, 0.0
        return self._high

    @property
    def stepped(self) -> bool:
        """A step is held or its cap passed unobserved (holding() tells which)."""
        return self._hold_until != 0.0

    def holding(self, now: float) -> bool:
        """Whether frames queued before a step may still be read."""
        return now < self._hold_until

    def drained(self) -> None:
        """The socket was found empty after the last observation: every frame read from here on
        was stamped after it (a step since then is seen at the next observation)."""
        self._hold_until = 0.0
        if self._last is not None:
            self._high = self._last


class Stats:
    """Counters kept by the receive threads (plain ints: the hot path takes no locks)."""

    def __init__(self) -> None:
        self.answered: collections.Counter[str] = collections.Counter()  # "arp"|"ns"|"dad" -> count
        self.dropped: collections.Counter[frames.Verdict] = collections.Counter()  # reason -> count
        self.announcements = 0
        self.send_errors = 0
        self.rate_limited: collections.Counter[str] = collections.Counter()  # limit -> answers held back


# -- one interface ---------------------------------------------------------------------------


class Port:
    """A raw socket on one interface and its receive thread."""

    def __init__(self, ifname: str, stats: Stats) -> None:
        self.ifname = ifname
        self.mac = mac_of(ifname)
        self._stats = stats
        self.snap = _Snapshot({}, {}, 0.0)  # replaced (never mutated) by the Announcer
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.templates: dict[str, _Templates] = {}  # ip text -> templates for this MAC
        self.limiter = ratelimit.AnswerLimiter()  # used by the receive thread only
        self._mld: socket.socket | None = None  # joins solicited-node groups (MLD reports)
        self._groups: set[bytes] = set()  # solicited-node groups joined
        self._wall = WallOffset()  # used by the receive thread only

    def start(self, prog: list[frames.Insn]) -> None:
        self.open(prog)
        self._thread = threading.Thread(target=self._loop, name=f"announce-{self.ifname}", daemon=True)
        self._thread.start()

    def open(self, prog: list[frames.Insn]) -> None:
        """Open and bind the socket (frames queue in it from here on) without reading it."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing yet
        self._sock = sock
        self.set_filter(prog)  # before bind, so no unfiltered frame is ever queued
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        ifindex = socket.if_nametoindex(self.ifname)
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_ALLMULTI, 0, b"")  # solicited-node groups
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.bind((self.ifname, ETH_P_ALL))
        sock.settimeout(0.5)
        self._wall.observe(time.monotonic(), time.time())  # a step before the first read is seen

    def set_groups(self, groups: set[bytes]) -> None:
        """Join exactly these IPv6 multicast groups (the solicited-node groups of owned IPv6s), so
        the kernel sends MLD reports and switches that snoop MLD forward NS to this port."""
        if self._mld is None:
            try:
                self._mld = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            except OSError as exc:  # no IPv6 on this host: nothing to join
                log.debug("%s: no IPv6 socket for MLD: %s", self.ifname, exc)
                return
        index = socket.if_nametoindex(self.ifname)
        for group, opt in ([(g, socket.IPV6_LEAVE_GROUP) for g in self._groups - groups]
                           + [(g, socket.IPV6_JOIN_GROUP) for g in groups - self._groups]):
            try:
                self._mld.setsockopt(socket.IPPROTO_IPV6, opt, group + struct.pack("@I", index))
            except OSError as exc:  # e.g. the kernel's membership limit: ALLMULTI still receives
                log.warning("%s: MLD %s %s failed: %s", self.ifname,
                            "join" if opt == socket.IPV6_JOIN_GROUP else "leave",
                            socket.inet_ntop(socket.AF_INET6, group), exc)
                continue
            (self._groups.add if opt == socket.IPV6_JOIN_GROUP else self._groups.discard)(group)

    def set_filter(self, prog: list[frames.Insn]) -> None:
        if self._sock is not None:
            attach_filter(self._sock, prog)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._mld is not None:
            self._mld.close()  # leaves every group
            self._mld, self._groups = None, set()

    def send(self, frame: bytes) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.send(frame)
        except OSError as exc:
            self._stats.send_errors += 1
            log.warning("%s: send failed: %s", self.ifname, exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.receive_one()

    def receive_one(self) -> None:
        """Read one frame (waiting up to the socket's timeout) and answer or drop it."""
        sock = self._sock
        assert sock is not None
        try:
            frame, ancillary, _flags, _address = sock.recvmsg(frames.SNAPLEN, ANCILLARY_SPACE)
        except TimeoutError:
            self._wall.observe(time.monotonic(), time.time())  # a step is seen while idle too
            self._end_hold_when_drained(sock)
            return
        except OSError as exc:
            if not self._stop.is_set():
                log.error("%s: receive failed: %s", self.ifname, exc)
                self._stop.wait(0.1)
            return
        try:
            self._handle(sock, frame, ancillary)
        except Exception:  # never let one frame kill the responder; count and log it
            log.exception("%s: unexpected error on a %d-byte frame", self.ifname, len(frame))
        self._end_hold_when_drained(sock)

    def _end_hold_when_drained(self, sock: socket.socket) -> None:
        """After a clock step, the frames queued across it are read once the socket is empty."""
        if not self._wall.stepped or not self._wall.holding(time.monotonic()):
            return  # the steady path: one attribute test per frame
        try:
            readable = select.select([sock], [], [], 0)[0]
        except (OSError, ValueError):  # closed by stop()
            return
        if not readable:
            self._wall.drained()

    def _handle(self, sock: socket.socket, frame: bytes, ancillary: list[tuple[int, int, bytes]]) -> None:
        """Answer or drop one frame; ancillary carries the kernel's receive stamp, read only for an answer."""
        snap, mac, stats = self.snap, self.mac, self._stats
        d = frames.decide(frame, mac, snap.owned4, snap.owned6)
        verdict, reply = d.verdict, b""
        if verdict is frames.Verdict.ANSWER_ARP:
            reply, kind = frames.arp_reply(snap.owned4[d.target].reply, d.peer_mac, d.peer_ip), "arp"
        elif verdict is frames.Verdict.ANSWER_NS:
            reply, kind = frames.na_reply(snap.owned6[d.target].reply, d.peer_mac, d.peer_ip), "ns"
        elif verdict is frames.Verdict.ANSWER_DAD:
            reply, kind = snap.owned6[d.target].announce, "dad"
        if reply:
            limit = self.limiter.allow(d.peer_mac + d.peer_ip, d.target, time.monotonic())
            if limit is not ratelimit.Limit.OK:
                stats.rate_limited[limit.value] += 1
                return
        if reply:  # checked last, right before the send, on the newest snapshot
            now = time.monotonic()
            offset = self._wall.observe(now, time.time())  # a step since the last look is seen here
            refused = refusal(self.snap, d.target, arrival(ancillary, now, offset), now)
            if refused is not None:
                verdict, reply = refused, b""
        if not reply:
            stats.dropped[verdict] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: dropped %d-byte frame: %s", self.ifname, len(frame), verdict.value)
            return
        sock.send(reply)
        stats.answered[kind] += 1
        if log.isEnabledFor(logging.DEBUG):
            _log_answer(self.ifname, d, mac)


def _log_answer(ifname: str, d: frames.Decision, mac: bytes) -> None:
    fam = socket.AF_INET if len(d.target) == 4 else socket.AF_INET6
    target = socket.inet_ntop(fam, d.target)
    peer = socket.inet_ntop(fam, d.peer_ip) if d.peer_ip else "::"
    peer_mac = ":".join(f"{b:02x}" for b in d.peer_mac) if d.peer_mac else "-"
    log.debug("%s: Request: who-has %s? tell %s (%s). reply: %s is-at %s", ifname, target, peer,
              peer_mac, target, ":".join(f"{b:02x}" for b in mac))


# -- the announcer -----------------------------------------------------------------------------

Where = Callable[[str], "frozenset[str] | None"]
"""where(ip): the interface names that answer ip; None: every interface."""


class Announcer:
    """Answers for the IPs the speaker owns, on every chosen interface."""

    def __init__(self, interfaces: Iterable[str]) -> None:
        self.stats = Stats()
        self.ports = [Port(name, self.stats) for name in interfaces]
        self._fence = 0.0
        self._owned: frozenset[str] = frozenset()
        self._per_port: dict[str, frozenset[str]] = {}  # interface -> IPs it answers
        self._standby: frozenset[str] = frozenset()  # see prepare
        self._passing: dict[str, frozenset[str]] = {}  # interface -> IPs its kernel filter passes
        self._where: Where | None = None  # see set_where
        self._where_changed = False
        self._lock = threading.Lock()  # serialises update() callers, never the hot path
        self._garp_stop = threading.Event()
        self._garp_wake = threading.Event()
        self._garp_thread: threading.Thread | None = None
        self._garp_due: list[tuple[float, tuple[str, ...]]] = []  # (monotonic time, IPs) to announce again
        self.answering_since = 0.0  # perf_counter when the last update's answers and filter were in place

    @property
    def owned(self) -> frozenset[str]:
        return self._owned

    @property
    def interfaces(self) -> list[str]:
        return [port.ifname for port in self.ports]

    def start(self) -> None:
        for port in self.ports:
            port.start(frames.bpf_program(set(), set()))
            log.info("announcing on %s (%s)", port.ifname, ":".join(f"{b:02x}" for b in port.mac))
        self._garp_thread = threading.Thread(target=self._garp_loop, name="announce-garp", daemon=True)
        self._garp_thread.start()

    def stop(self) -> None:
        self.silence()
        self._garp_stop.set()
        self._garp_wake.set()
        for port in self.ports:
            port.stop()
        if self._garp_thread is not None:
            self._garp_thread.join(2.0)

    def silence(self) -> None:
        """Stop answering at once (SIGTERM, fence)."""
        self.set_fence(0.0)

    def extend_fence(self, deadline: float) -> None:
        """Move a fence that still holds further out; never revives a fenced announcer (set_fence does)."""
        if deadline <= self._fence or time.monotonic() >= self._fence:
            return
        with self._lock:
            if time.monotonic() < self._fence < deadline:
                self._fence = deadline
                for port in self.ports:
                    port.snap = dataclasses.replace(port.snap, fence=deadline)

    def set_fence(self, deadline: float) -> None:
        """Answers are allowed until this monotonic time (the speaker's membership fence); if it
        had passed, only requests that arrive from now on are answered."""
        with self._lock:
            now = time.monotonic()
            revived = self._fence <= now < deadline
            self._fence = deadline
            for port in self.ports:
                port.snap = dataclasses.replace(port.snap, fence=deadline,
                                                revived=now if revived else port.snap.revived)

    def set_where(self, where: Where | None) -> None:
        """where(ip): the interfaces that answer ip (None: every port), from the next update on,
        which then asks it for every owned IP (otherwise only for the IPs it gains)."""
        self._where, self._where_changed = where, True

    def update(self, owned: Iterable[str], announce_now: bool = True) -> tuple[set[str], set[str]]:
        """Announce exactly `owned` (canonical IP texts) from now on; returns (gained, lost).
        A change of where alone (``set_where``) moves an IP between ports without counting as
        gained or lost. The first gratuitous announcements of what is gained are sent before
        returning; with ``announce_now`` False they are due at once on the announcer's own thread
        instead, for a caller with more to take right after (thousands of sends would hold it up).

        Costs O(changed IPs) in Python (the rest is set and dict copies), so a takeover of
        thousands of IPs is answered in milliseconds; of IPs prepared for (``prepare``) the
        templates exist and the filter passes them already, so their gain only swaps the snapshot
        before answering (the filter is rebuilt after the gratuitous ARPs). Called from one thread
        (the speaker's sync loop); templates are built before taking the lock so a renewal's
        set_fence never waits for them. The fence is left as it is.
        """
        owned = frozenset(owned)
        gained, lost = set(owned - self._owned), set(self._owned - owned)
        if not gained and not lost and not self._where_changed:
            return gained, lost
        per_port = self._per_port_after(owned, gained, lost)
        empty: frozenset[str] = frozenset()
        drop = {name: self._per_port.get(name, empty) - ips for name, ips in per_port.items()}
        add = {name: ips - self._per_port.get(name, empty) for name, ips in per_port.items()}
        built = {(port.ifname, ip): build_templates(ip, port.mac) for port in self.ports
                 for ip in add[port.ifname] if ip not in port.templates}
        with self._lock:
            for port in self.ports:  # stop answering first (what each port loses) ...
                self._edit(port, drop[port.ifname], ())
                for ip in drop[port.ifname] - self._standby:
                    port.templates.pop(ip, None)
            for port in self.ports:  # ... then answer what it gains
                for ip in add[port.ifname]:
                    if ip not in port.templates:
                        port.templates[ip] = built[port.ifname, ip]
                self._edit(port, (), add[port.ifname])
            fresh = tuple(sorted(set().union(*add.values())))
            self._owned, self._per_port = owned, per_port
            if fresh:
                now = time.monotonic()
                self._schedule_garps([(now + d, fresh) for d in GARP_SCHEDULE[1:]])
        first = [port for port in self.ports if not add[port.ifname] <= self._passing.get(port.ifname, empty)]
        self._refilter(first)  # the kernel must pass requests for what is gained before it counts
        self.answering_since = time.perf_counter()  # requests are answered from here; the GARPs follow
        if announce_now:
            for ip in fresh:  # gained, or answered on a new interface: tell the LAN at once
                self.announce(ip)
        elif fresh:  # only now: never announced before the filter passes its requests
            with self._lock:
                self._schedule_garps([(time.monotonic(), fresh)])
        self._refilter([port for port in self.ports if drop[port.ifname] and port not in first])  # narrower
        return gained, lost

    def _schedule_garps(self, rounds: list[tuple[float, tuple[str, ...]]]) -> None:
        """Queue rounds of gratuitous announcements for the announcer's thread (under the lock)."""
        self._garp_due += rounds
        self._garp_due.sort(key=lambda due: due[0])
        self._garp_wake.set()

    def prepare(self, standby: frozenset[str]) -> None:
        """Get ready to answer `standby` (the IPs this node may gain next: those it inherits if
        their owner alone leaves, gains waiting for a hand-over) without answering them: their
        templates are built and the kernel filter passes their requests from now on, so that
        taking them (``update``) only swaps the snapshot. The receive threads still answer only
        what update() owns; this decides nothing. Costs O(IPs that entered or left standby), and
        a filter rebuild when any did."""
        if standby is self._standby or standby == self._standby:  # the same object: no O(n) compare
            return
        came, went = standby - self._standby, self._standby - standby
        built = [(port, ip, build_templates(ip, port.mac)) for port in self.ports
                 for ip in came if ip not in port.templates]
        with self._lock:
            for port, ip, templates in built:
                port.templates[ip] = templates
            for port in self.ports:
                for ip in went - self._per_port.get(port.ifname, frozenset()):
                    port.templates.pop(ip, None)
            self._standby = standby
        self._refilter(self.ports)

    def _per_port_after(self, owned: frozenset[str], gained: set[str],
                        lost: set[str]) -> dict[str, frozenset[str]]:
        """The IPs each port answers once `owned` is applied: asks where() only for gained IPs,
        unless set_where changed it (then for every owned IP)."""
        fresh_where, self._where_changed = self._where_changed, False
        ask = owned if fresh_where else gained
        names = {ip: self._where(ip) if self._where is not None else None for ip in ask}
        per_port = {}
        for port in self.ports:
            here = frozenset(ip for ip, only in names.items() if only is None or port.ifname in only)
            kept = frozenset() if fresh_where else self._per_port.get(port.ifname, frozenset()) - lost
            per_port[port.ifname] = kept | here
        return per_port

    def ports_of(self, ip: str) -> list[str]:
        """The interfaces answering ip now."""
        return [name for name, ips in self._per_port.items() if ip in ips]

    def _edit(self, port: Port, drop: Iterable[str], add: Iterable[str]) -> None:
        """Swap in a snapshot without `drop` and with `add` (both with templates in port.templates);
        a copy of the maps, so the receive thread never sees one half-changed."""
        if not drop and not add:
            return
        old = port.snap
        owned, since = {4: dict(old.owned4), 16: dict(old.owned6)}, dict(old.since)
        for ip in drop:
            tpl = port.templates[ip]
            owned[len(tpl.packed)].pop(tpl.packed, None)
            since.pop(tpl.packed, None)
        now = time.monotonic()  # requests the kernel received before this are not answered
        for ip in add:
            tpl = port.templates[ip]
            owned[len(tpl.packed)][tpl.packed] = tpl
            since[tpl.packed] = now
        port.snap = _Snapshot(owned[4], owned[16], self._fence, since, old.revived)

    def _refilter(self, ports: Iterable[Port]) -> None:
        """Let the kernel pass requests for exactly what each port answers now and what this node
        stands by for (``prepare``), and join the solicited-node groups of those IPv6 addresses."""
        for port in ports:
            snap = port.snap
            standby = [port.templates[ip].packed for ip in self._standby]
            owned4 = snap.owned4.keys() | [p for p in standby if len(p) == 4]
            owned6 = snap.owned6.keys() | [p for p in standby if len(p) == 16]
            port.set_groups({frames.solicited_node(p) for p in owned6})
            prog = frames.bpf_program(owned4, owned6)
            try:
                port.set_filter(prog)
            except OSError as exc:
                log.error("%s: cannot attach BPF filter (%d instructions): %s", port.ifname, len(prog), exc)
                continue
            self._passing[port.ifname] = self._per_port.get(port.ifname, frozenset()) | self._standby

    def _garp_loop(self) -> None:
        wait = 1.0
        while not self._garp_stop.is_set():
            self._garp_wake.wait(wait)  # idle until a gain schedules repeats: no busy polling
            self._garp_wake.clear()
            now = time.monotonic()
            with self._lock:
                due = [ips for t, ips in self._garp_due if t <= now]
                self._garp_due = [(t, ips) for t, ips in self._garp_due if t > now]
                wait = max(0.01, self._garp_due[0][0] - now) if self._garp_due else 1.0
            for ips in due:
                for ip in ips:
                    self.announce(ip)

    def announce(self, ip: str) -> None:
        """Send one gratuitous ARP / unsolicited NA for ip on every port, if still owned and not fenced."""
        if ip not in self._owned or time.monotonic() >= self._fence:
            return
        for port in self.ports:
            tpl = port.templates.get(ip)
            if tpl is not None:
                port.send(tpl.announce)
                self.stats.announcements += 1
        log.debug("gratuitous announcement for %s", ip)
