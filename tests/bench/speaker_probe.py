"""Client-side ARP/NDP probes and floods for the speaker's tests and benchmark (runs in a netns).

Run inside the lab's client namespace (it opens raw sockets on its eth0):

    ip netns exec l2lb-client .venv/bin/python -m tests.bench.speaker_probe probe --ip 192.168.1.240 \
        --interval 0.02 --duration 5            # JSON: [[monotonic send time, [MACs answering]], ...]
    ip netns exec l2lb-client .venv/bin/python -m tests.bench.speaker_probe flood --ip 192.168.1.240 \
        --rate 20000 --count 40000              # JSON: sent, answered, latency percentiles

`probe` sends one request every interval and files each answer under the last request sent
before it (answers come back in well under a millisecond, the interval is >= 10 ms), so a probe
listing two MACs is a window in which two nodes answered. `flood` paces requests from
FLOOD_SENDERS distinct sender IPs (so the kernel's neighbour table never overflows when the
kernel is the responder) and matches each answer to the oldest outstanding request of its
sender IP. Times are CLOCK_MONOTONIC, which every network namespace shares, so the caller can
compare them with its own time.monotonic(). Only lab namespaces, bounded count and duration.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import os
import select
import socket
import sys
import time
from pathlib import Path

from l2lb_agent import frames
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from tests.bench import PROBE_STARTED

ETH_P_ALL = 0x0003
FLOOD_SENDERS = [f"192.168.1.{i}" for i in range(150, 200)]
# Probes rotate over 100 source addresses: each source asks about once a second, as a real host
# might, so the speaker's per-requester answer limit (ratelimit.Rates) never hides an answer.
PROBE_SENDERS4 = [f"192.168.1.{i}" for i in range(100, 150)] + [f"192.168.1.{i}" for i in range(71, 100)]
PROBE_SENDERS6 = [f"fd00:4c32:6c62::1:{i:x}" for i in range(100)]
MAX_FLOOD = 200_000
MAX_DURATION = 120.0
LATE_ANSWER = 0.5  # an answer later than this is counted for no request


def _mac(iface: str) -> str:
    return Path(f"/sys/class/net/{iface}/address").read_text().strip()


def _ip_of(iface: str, family: int) -> str:
    import subprocess

    out = subprocess.run(["ip", "-j", "addr", "show", "dev", iface], capture_output=True, text=True,
                         check=True).stdout
    for info in json.loads(out)[0]["addr_info"]:
        fam = socket.AF_INET if info["family"] == "inet" else socket.AF_INET6
        if fam == family and info.get("scope") == "global":
            return info["local"]
    raise SystemExit(f"{iface}: no global address of family {family}")


def request(ip: str, mac: str, src_ip: str) -> bytes:
    """An ARP request or a Neighbor Solicitation (to the solicited-node group) for ip."""
    if ipaddress.ip_address(ip).version == 4:
        return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=src_ip, pdst=ip))
    group = frames.solicited_node(ipaddress.ip_address(ip).packed)
    pkt = (Ether(src=mac, dst=frames.multicast_mac(group).hex(":"))
           / IPv6(src=src_ip, dst=str(ipaddress.ip_address(group)), hlim=255)
           / ICMPv6ND_NS(tgt=ip) / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    return bytes(pkt)


def answer_of(frame: bytes, ip_packed: bytes) -> tuple[str, bytes] | None:
    """(answering MAC, requester IP) if frame answers for ip_packed (ARP reply or NA), else None."""
    if len(frame) >= 42 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02" \
            and frame[28:32] == ip_packed:
        return frame[22:28].hex(":"), frame[38:42]
    if len(frame) >= 78 and frame[12:14] == b"\x86\xdd" and frame[20] == 58 and frame[54] == 136 \
            and frame[58] & 0x40 and frame[62:78] == ip_packed:  # solicited NAs only, not announcements
        return frame[6:12].hex(":"), frame[38:54]
    return None


def _socket(iface: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((iface, ETH_P_ALL))
    s.setblocking(False)
    return s


def _drain(sock: socket.socket, ip_packed: bytes, timeout: float) -> list[tuple[float, str, bytes]]:
    """Answers (receive time, MAC, requester IP) arriving within timeout."""
    out = []
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return out
        while True:
            try:
                frame, (_, _, pkttype, *_rest) = sock.recvfrom(2048)
            except BlockingIOError:
                break
            if pkttype == socket.PACKET_OUTGOING:
                continue
            ans = answer_of(frame, ip_packed)
            if ans is not None:
                out.append((time.monotonic(), *ans))


def probe(ip: str, iface: str, interval: float, duration: float,
          until_answer: bool = False) -> list[tuple[float, list[str]]]:
    """One request per interval for duration: [(send time, sorted MACs that answered it)].

    Each request comes from its own sender address (they rotate), so an answer is counted for
    the request it answers, however late (up to LATE_ANSWER), not for whichever window it lands in:
    a slow reply is neither silence nor, next to a quick one, a false double answer."""
    senders = PROBE_SENDERS4 if ipaddress.ip_address(ip).version == 4 else PROBE_SENDERS6
    mac = _mac(iface)
    frames_out = [request(ip, mac, src) for src in senders]
    packed_senders = [ipaddress.ip_address(src).packed for src in senders]
    packed = ipaddress.ip_address(ip).packed
    sock = _socket(iface)
    sent: list[float] = []
    answered: list[set[str]] = []
    latest: dict[bytes, int] = {}  # sender address -> index of the last request it sent
    end = time.monotonic() + min(duration, MAX_DURATION)
    while (now := time.monotonic()) < end:
        sender = len(sent) % len(frames_out)
        sock.send(frames_out[sender])
        if not sent:
            print(PROBE_STARTED, file=sys.stderr, flush=True)  # the caller may start its clock now
        latest[packed_senders[sender]] = len(sent)
        sent.append(now)
        answered.append(set())
        heard = _attribute(_drain(sock, packed, max(0.0, now + interval - time.monotonic())),
                           sent, answered, latest)
        if until_answer and heard:
            break
    if not until_answer:
        _attribute(_drain(sock, packed, LATE_ANSWER), sent, answered, latest)
    return [(t, sorted(macs)) for t, macs in zip(sent, answered, strict=True)]


def _attribute(answers: list[tuple[float, str, bytes]], sent: list[float], answered: list[set[str]],
               latest: dict[bytes, int]) -> int:
    """Count each answer for the request it answers (by requester address), if sent <= LATE_ANSWER
    ago; returns how many were counted."""
    counted = 0
    for received, mac, requester in answers:
        index = latest.get(requester)
        if index is not None and received - sent[index] <= LATE_ANSWER:
            answered[index].add(mac)
            counted += 1
    return counted


def flood(ip: str, iface: str, rate: float, count: int) -> dict:
    """count ARP requests at rate/s; how many were answered and how fast (ms)."""
    count = min(count, MAX_FLOOD)
    mac, packed = _mac(iface), ipaddress.ip_address(ip).packed
    reqs = [request(ip, mac, src) for src in FLOOD_SENDERS]
    sock = _socket(iface)
    rx = _socket(iface)
    pending: dict[bytes, collections.deque[float]] = {socket.inet_aton(s): collections.deque()
                                                      for s in FLOOD_SENDERS}
    lat: list[float] = []
    start = time.monotonic()
    sent = 0
    while sent < count:
        due = start + sent / rate
        now = time.monotonic()
        if now < due:
            _collect(rx, packed, pending, lat)
            continue
        src = FLOOD_SENDERS[sent % len(FLOOD_SENDERS)]
        try:
            sock.send(reqs[sent % len(reqs)])
        except BlockingIOError:
            continue
        pending[socket.inet_aton(src)].append(now)
        sent += 1
    elapsed = time.monotonic() - start
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        _collect(rx, packed, pending, lat)
    lat.sort()
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3) if lat else None  # noqa: E731
    return {"sent": sent, "answered": len(lat), "send_rate": round(sent / elapsed),
            "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def _collect(rx: socket.socket, packed: bytes, pending: dict, lat: list[float]) -> None:
    for _ in range(64):
        try:
            frame = rx.recv(2048)
        except BlockingIOError:
            return
        ans = answer_of(frame, packed)
        if ans is None:
            continue
        queue = pending.get(ans[1])
        if queue:
            lat.append(time.monotonic() - queue.popleft())


def invalid_frames(ip: str, mac: str, src_ip: str, count: int, seed: int = 4) -> list[bytes]:
    """count frames about ip that no correct responder answers: each breaks one rule on purpose."""
    import random

    rnd = random.Random(seed)
    v4 = ipaddress.ip_address(ip).version == 4
    base = request(ip, mac, src_ip)
    out = []
    for n in range(count):
        f = bytearray(base)
        rule = n % 8
        if v4:
            if rule == 0:
                f[18] = rnd.choice([0, 4, 8, 16])  # hlen
            elif rule == 1:
                f[20:22] = rnd.choice([b"\0\2", b"\0\3", b"\0\x09", b"\xff\xff"])  # not a request
            elif rule == 2:
                f[28:32] = f[38:42]  # gratuitous: sender IP == target IP
            elif rule == 3:
                f[0:6] = bytes([2, 0, 0, 0, 0, rnd.randrange(256)])  # unicast to someone else
            elif rule == 4:
                f = f[:rnd.randrange(14, 42)]  # truncated
            elif rule == 5:
                f[14:16] = b"\0\x06"  # htype IEEE 802
            elif rule == 6:
                f[22] |= 1  # multicast sender hardware address
            else:
                f[16:18] = b"\x86\xdd"  # ptype IPv6
        else:
            if rule == 0:
                f[21] = rnd.choice([1, 64, 254])  # hop limit
            elif rule == 1:
                f[56] ^= 0xFF  # checksum
            elif rule == 2:
                f[55] = 1  # code
            elif rule == 3:
                f = f[:rnd.randrange(14, len(f) - 1)]  # truncated
            elif rule == 4:
                f[79] = 0  # option length 0
            elif rule == 5:
                f[0:6] = bytes([2, 0, 0, 0, 0, rnd.randrange(256)])  # unicast to someone else
            elif rule == 6:
                f[38:54] = bytes.fromhex("ff020000000000000000000000000001")  # wrong destination
            else:
                f[54] = rnd.choice([128, 133, 134, 136, 137])  # other ICMPv6 types
        truncated = len(f) < len(base)
        if rnd.random() < 0.3 and not truncated:  # and some random trailing garbage
            f += bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
        out.append(bytes(f))
    return out


def fuzz(ip: str, iface: str, count: int) -> dict:
    """Send count invalid frames about ip; report how many answers for ip came back."""
    fam = socket.AF_INET if ipaddress.ip_address(ip).version == 4 else socket.AF_INET6
    mac = _mac(iface)
    bad = invalid_frames(ip, mac, _ip_of(iface, fam), min(count, MAX_FLOOD))
    sock = _socket(iface)
    answers = []
    for i, frame in enumerate(bad):
        sock.send(frame)
        if i % 50 == 49:
            answers += _drain(sock, ipaddress.ip_address(ip).packed, 0.001)
    answers += _drain(sock, ipaddress.ip_address(ip).packed, 0.5)
    return {"sent": len(bad), "answers": len(answers), "macs": sorted({m for _, m, _ in answers})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="speaker_probe")
    p.add_argument("mode", choices=["probe", "flood", "fuzz"])
    p.add_argument("--ip", required=True)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=20000)
    p.add_argument("--count", type=int, default=40000)
    p.add_argument("--until-answer", type=int, default=0, help="1: stop at the first answer")
    a = p.parse_args(argv)
    if not os.path.exists("/var/run/netns") or "l2lb" not in os.popen("ip netns identify").read():
        print("speaker_probe: run me inside a lab namespace (ip netns exec l2lb-client ...)", file=sys.stderr)
        return 2
    if a.mode == "probe":
        json.dump(probe(a.ip, a.iface, a.interval, a.duration, bool(a.until_answer)), sys.stdout)
    elif a.mode == "fuzz":
        json.dump(fuzz(a.ip, a.iface, a.count), sys.stdout)
    else:
        json.dump(flood(a.ip, a.iface, a.rate, a.count), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

