"""Frame fuzz: 100,000 random and mutated frames through `frames.decide` and the kernel filter.

The filter (`frames.bpf_program`) runs in tests/unit/cbpf.py, an interpreter written from the
kernel's rules, and its verdict is compared with `filter_should_pass`, an independent statement of
what the filter is for. `decide` must never raise, never answer for an address it does not own,
never answer a frame the kernel filter would have dropped, and answer only well-formed requests
(checked again here field by field). Seeded, so a failure names a reproducible frame.
"""

from __future__ import annotations

import ipaddress
import random

from l2lb_agent import frames
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.unit import cbpf

FRAMES = 100_000
MY = bytes.fromhex("024c32000011")
PEER = "02:4c:32:00:00:01"
V4 = [f"192.168.1.{240 + i}" for i in range(8)] + ["10.0.0.1", "10.0.0.3"]
V6 = [f"fd00:4c32:6c62::{0xf0 + i:x}" for i in range(8)] + ["fd00::1", "fd01::5"]
OWNED4 = {ipaddress.ip_address(a).packed for a in V4}
OWNED6 = {ipaddress.ip_address(a).packed for a in V6}
PROG = frames.bpf_program(OWNED4, OWNED6)
PACKET_OUTGOING = 4


def filter_should_pass(frame: bytes, pkttype: int, tagged: bool) -> bool:
    """Incoming, untagged ARP requests (Ethernet/IPv4) and ICMPv6 NS whose target is owned."""
    if pkttype == PACKET_OUTGOING or tagged or len(frame) < 14:
        return False
    if frame[12:14] == b"\x08\x06":
        return len(frame) >= 42 and frame[14:18] == b"\x00\x01\x08\x00" and frame[20:22] == b"\x00\x01" \
            and frame[38:42] in OWNED4
    if frame[12:14] == b"\x86\xdd":
        return len(frame) >= 78 and frame[20] == 58 and frame[54] == 135 and frame[62:78] in OWNED6
    return False


def _snm(ip: str) -> tuple[str, str]:
    packed = ipaddress.ip_address(ip).packed
    group = frames.solicited_node(packed)
    return str(ipaddress.ip_address(group)), frames.multicast_mac(group).hex(":")


def _seeds() -> list[bytes]:
    out = []
    for ip in [*V4, "192.168.1.248", "10.0.0.2"]:
        out.append(bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER)
                         / ARP(hwsrc=PEER, psrc="192.168.1.1", pdst=ip)))
        out.append(bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER) / Dot1Q(vlan=100)
                         / ARP(hwsrc=PEER, psrc="192.168.1.1", pdst=ip)))
    for ip in [*V6, "fd00:4c32:6c62::f8", "fd00::2"]:
        group, mac = _snm(ip)
        ns = ICMPv6ND_NS(tgt=ip)
        out.append(bytes(Ether(dst=mac, src=PEER) / IPv6(src="fd00:4c32:6c62::1", dst=group, hlim=255) / ns
                         / ICMPv6NDOptSrcLLAddr(lladdr=PEER)))
        out.append(bytes(Ether(dst=mac, src=PEER) / IPv6(src="::", dst=group, hlim=255) / ns))
        out.append(bytes(Ether(dst="02:4c:32:00:00:11", src=PEER) / IPv6(src="fd00:4c32:6c62::1", dst=ip,
                                                                          hlim=255) / ns))
        out.append(bytes(Ether(dst=mac, src=PEER) / IPv6(src="fd00:4c32:6c62::1", dst=group, hlim=255)
                         / ICMPv6ND_NA(tgt=ip)))
    out.append(bytes(Ether(dst="02:4c:32:00:00:11", src=PEER) / IP(dst=V4[0]) / UDP() / (b"x" * 30)))
    return out


SEEDS = _seeds()
# offsets worth hitting: Ethernet, ARP fields, IPv6 header, ICMPv6 type/code/checksum/target, options
HOT = [*range(0, 14), *range(14, 42), 18, 19, 20, 21, *range(54, 86)]


def mutate(rng: random.Random, frame: bytes) -> bytes:
    out = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.55 and out:
            out[rng.choice(HOT) % len(out)] = rng.randrange(256)
        elif op < 0.7:
            out = out[:rng.randrange(len(out) + 1)]
        elif op < 0.8:
            out += rng.randbytes(rng.randint(1, 40))
        elif op < 0.9 and len(out) >= 78:  # another target: owned or a neighbour of one
            if out[12:14] == b"\x08\x06":
                out[38:42] = rng.choice(sorted(OWNED4))[:3] + bytes([rng.randrange(256)])
            else:
                out[62:78] = rng.choice(sorted(OWNED6))[:15] + bytes([rng.randrange(256)])
        elif out:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _well_formed_answer(frame: bytes, d: frames.Decision) -> bool:
    """The fields an answer relies on, read again independently of decide."""
    if d.verdict is frames.Verdict.ANSWER_ARP:
        return frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01" and frame[38:42] == d.target \
            and frame[22:28] == d.peer_mac and not d.peer_mac[0] & 1 and d.target != frame[28:32]
    icmp = frame[54:]
    common = frame[12:14] == b"\x86\xdd" and frame[20] == 58 and frame[21] == 255 and icmp[0] == 135 \
        and icmp[1] == 0 and frame[62:78] == d.target
    if d.verdict is frames.Verdict.ANSWER_DAD:
        return common and frame[22:38] == bytes(16) and frame[38:54] == frames.solicited_node(d.target)
    return common and not d.peer_mac[0] & 1 and d.peer_mac != bytes(6) and d.peer_ip == frame[22:38]


def test_filter_program_passes_the_kernel_checks() -> None:
    cbpf.check(PROG)


def test_fuzz_decide_and_kernel_filter_agree_with_the_oracle() -> None:
    rng = random.Random(20261202)
    answers = passed = 0
    for i in range(FRAMES):
        frame = rng.randbytes(rng.randrange(121)) if i % 5 == 0 else mutate(rng, rng.choice(SEEDS))
        pkttype = PACKET_OUTGOING if rng.random() < 0.03 else rng.choice((0, 1, 2, 3))
        tagged = rng.random() < 0.03
        got = cbpf.run(PROG, frame, pkttype, tagged) > 0
        assert got == filter_should_pass(frame, pkttype, tagged), (i, frame.hex(), pkttype, tagged)
        d = frames.decide(frame, MY, OWNED4, OWNED6, tagged=tagged)
        if d.verdict in frames.ANSWERS:
            assert d.target in OWNED4 | OWNED6, (i, frame.hex())
            assert got or pkttype == PACKET_OUTGOING, (i, frame.hex())  # the filter never starves an answer
            assert _well_formed_answer(frame, d), (i, frame.hex(), d)
            answers += 1
        passed += got
    assert answers > FRAMES // 20 and passed > answers  # the mutations kept enough valid requests
