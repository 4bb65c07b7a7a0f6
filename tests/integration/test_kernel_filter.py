"""The kernel runs `frames.bpf_program` as written: a packet socket with the filter attached, in a
network namespace of this test's own (two veth ends), receives ARP requests and NS for owned
addresses only, and no request that arrived 802.1Q-tagged (the kernel strips the tag into the
packet's metadata, where SKF_AD_VLAN_TAG_PRESENT finds it). Needs root; touches no other namespace.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

# Runs inside the namespace: attach the filter to vb, send each frame on va, report what vb got.
PROBE = r"""
import ctypes, json, socket, struct, sys, time
from l2lb_agent import frames
owned4, owned6, cases, drop_tagged = json.loads(sys.stdin.read())
prog = frames.bpf_program({bytes.fromhex(x) for x in owned4}, {bytes.fromhex(x) for x in owned6},
                          drop_tagged=drop_tagged)
insns = b"".join(struct.pack("HBBI", c, jt, jf, k) for c, jt, jf, k in prog)
buf = ctypes.create_string_buffer(insns)
fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
rx.bind(("vb", 0))
rx.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
while True:  # drain what arrived before the filter was attached
    rx.settimeout(0.05)
    try:
        rx.recv(2048)
    except TimeoutError:
        break
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
tx.bind(("va", 0))
got = []
for frame in cases:
    tx.send(bytes.fromhex(frame))
    rx.settimeout(0.3)
    try:
        data = rx.recv(2048)
        got.append(data.hex())
    except TimeoutError:
        got.append(None)
print(json.dumps({"insns": len(prog), "got": got}))
"""


def _probe(run: Callable[[str, Any], Any], owned4: set[str], owned6: set[str], frames_: list[bytes],
           drop_tagged: bool = True) -> dict:
    return run(PROBE, [[ipaddress.ip_address(a).packed.hex() for a in owned4],
                       [ipaddress.ip_address(a).packed.hex() for a in owned6], [f.hex() for f in frames_],
                       drop_tagged])


def test_kernel_accepts_the_filter_and_passes_only_untagged_requests_for_owned(
        in_netns: Callable[[str, Any], Any]) -> None:
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

    peer = "02:4c:32:00:00:01"

    def arp(ip: str, tag: object = None) -> bytes:
        eth = Ether(dst="ff:ff:ff:ff:ff:ff", src=peer)
        return bytes((eth / tag if tag else eth) / ARP(hwsrc=peer, psrc="10.0.0.1", pdst=ip))

    def ns(ip: str) -> bytes:
        return bytes(Ether(dst="33:33:ff:00:00:f5", src=peer) / IPv6(src="fd00::1", dst="ff02::1:ff00:f5")
                     / ICMPv6ND_NS(tgt=ip) / ICMPv6NDOptSrcLLAddr(lladdr=peer))

    owned4 = {str(ipaddress.ip_address(0x0A140000 + i)) for i in range(0, 60000)}  # one range
    owned4 |= {"192.168.1.240", "192.168.1.242"}
    cases = [
        (arp("10.20.0.0"), True), (arp("10.20.234.95"), True), (arp("10.20.234.96"), False),
        (arp("192.168.1.242"), True), (arp("192.168.1.241"), False),
        (arp("192.168.1.240", Dot1Q(vlan=100)), False), (arp("192.168.1.240", Dot1AD(vlan=7)), False),
        (ns("fd00:4c32:6c62::f5"), True), (ns("fd00:4c32:6c62::f6"), False),
    ]
    result = _probe(in_netns, owned4, {"fd00:4c32:6c62::f5"}, [f for f, _ in cases])
    assert result["insns"] < 100  # 60,000 addresses: one range
    for (frame, expected), got in zip(cases, result["got"], strict=True):
        assert (got is not None) is expected, frame.hex()
    # why tagged frames need the metadata test: the kernel hands them over untagged
    tagged = [arp("192.168.1.240", Dot1Q(vlan=100))]
    (got,) = _probe(in_netns, owned4, set(), tagged, drop_tagged=False)["got"]
    assert got is not None and bytes.fromhex(got)[12:14] == b"\x08\x06"
