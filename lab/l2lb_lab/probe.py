"""Who answers ARP / NDP for an address? Run inside the client netns by the test fixtures.

`python -m l2lb_lab.probe arp|ndp IP` sends a few who-has / neighbor solicitations from the
client's eth0 and prints, as JSON, every MAC that answered with the number of answers.
The MAC is the one an ARP cache would learn: the ARP sender hardware address, or the NA's
target link-layer address option (the Ethernet source when the option is missing).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import time
from collections import Counter
from pathlib import Path

from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether
from scapy.utils6 import in6_getnsma, in6_getnsmac

from . import topology as topo

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
PACKET_OUTGOING = 4


def arp_request(ip: str, mac: str, src_ip: str) -> bytes:
    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=1, hwsrc=mac, psrc=src_ip, pdst=ip))


def neighbor_solicitation(ip: str, mac: str, src_ip: str) -> bytes:
    group = in6_getnsma(socket.inet_pton(socket.AF_INET6, ip))
    dst = socket.inet_ntop(socket.AF_INET6, group)
    frame = (Ether(dst=in6_getnsmac(group), src=mac) / IPv6(src=src_ip, dst=dst, hlim=255)
             / ICMPv6ND_NS(tgt=ip) / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    return bytes(frame)


def arp_answer(frame: bytes, ip: str) -> str | None:
    """The sender MAC if frame is an ARP reply for ip."""
    pkt = Ether(frame)
    if ARP in pkt and pkt[ARP].op == 2 and pkt[ARP].psrc == ip:
        return str(pkt[ARP].hwsrc).lower()
    return None


def ndp_answer(frame: bytes, ip: str) -> str | None:
    """The advertised MAC if frame is a neighbor advertisement for ip."""
    pkt = Ether(frame)
    if ICMPv6ND_NA not in pkt or ipaddress.ip_address(pkt[ICMPv6ND_NA].tgt) != ipaddress.ip_address(ip):
        return None
    if ICMPv6NDOptDstLLAddr in pkt:
        return str(pkt[ICMPv6NDOptDstLLAddr].lladdr).lower()
    return str(pkt[Ether].src).lower()


def probe(kind: str, ip: str, *, iface: str, count: int, interval: float, wait: float) -> Counter:
    """Send count requests interval apart, listen wait seconds more; MAC -> number of answers."""
    proto = ETH_P_ARP if kind == "arp" else ETH_P_IPV6
    mac = Path(f"/sys/class/net/{iface}/address").read_text().strip()
    if kind == "arp":
        request, match = arp_request(ip, mac, topo.CLIENT.ipv4), arp_answer
    else:
        request, match = neighbor_solicitation(ip, mac, topo.CLIENT.ipv6), ndp_answer
    answers: Counter = Counter()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto)) as sock:
        sock.bind((iface, proto))
        sends = [time.monotonic() + i * interval for i in range(count)]
        deadline = sends[-1] + wait
        while (now := time.monotonic()) < deadline:
            if sends and now >= sends[0]:
                sends.pop(0)
                sock.send(request)
            sock.settimeout(max(0.01, min(deadline, sends[0] if sends else deadline) - now))
            try:
                frame, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            if addr[2] != PACKET_OUTGOING and (who := match(frame, ip)):
                answers[who] += 1
    return answers


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m l2lb_lab.probe", description=__doc__.split("\n")[0])
    p.add_argument("kind", choices=("arp", "ndp"))
    p.add_argument("ip")
    p.add_argument("--iface", default=topo.IFACE)
    p.add_argument("--count", type=int, default=3, help="requests to send")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between requests")
    p.add_argument("--wait", type=float, default=0.5, help="seconds to listen after the last request")
    args = p.parse_args(argv)
    version = 4 if args.kind == "arp" else 6
    if ipaddress.ip_address(args.ip).version != version:
        p.error(f"{args.kind} needs an IPv{version} address, got {args.ip!r}")
    if args.count < 1:
        p.error(f"--count must be >= 1, got {args.count}")
    answers = probe(args.kind, args.ip, iface=args.iface, count=args.count,
                    interval=args.interval, wait=args.wait)
    print(json.dumps(dict(sorted(answers.items()))))


if __name__ == "__main__":
    main()
