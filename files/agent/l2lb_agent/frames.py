"""ARP / NDP frame decisions on raw bytes, reply patching and the kernel filter (core ring, pure).

Place in the flow: announcer receives a raw Ethernet frame -> ``decide`` says answer or drop
(with a ``Verdict`` naming the reason) -> announcer patches a prebuilt reply template with
``arp_reply`` / ``na_reply`` and sends it.

Hot path, by design: the announcer builds one reply template per owned IP with scapy when the
IP is gained (never per request). Answering an ARP request is then one ``struct`` unpack, a
set lookup and three slice copies (requester MAC into the Ethernet destination and the ARP
target hardware address, requester IP into the ARP target protocol address). An NA also needs
its ICMPv6 checksum recomputed, done here in a few lines.

``bpf_program`` builds the classic BPF program the announcer attaches to each raw socket: only
incoming ARP requests and ICMPv6 Neighbor Solicitations whose target is an owned IP reach
Python, so a flood of other traffic never costs a context switch.

Not guaranteed: frames longer than the snapshot length given by the filter are judged on
their first ``SNAPLEN`` bytes.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Collection
from typing import NamedTuple

ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6
SNAPLEN = 1500

_ARP = struct.Struct("!6s6sHHHBBH6s4s6s4s")  # eth dst, src, type; arp htype..tpa (42 bytes)
_IP6 = struct.Struct("!6s6sHIHBB16s16s")  # eth dst, src, type; ver/tc/flow, plen, nh, hlim, src, dst
_ICMP6_OFF = 54
_NS_MIN = 24  # ICMPv6 NS: type, code, checksum, reserved, target
ZERO4 = bytes(4)
ZERO6 = bytes(16)
ALL_NODES6 = bytes.fromhex("ff020000000000000000000000000001")
ALL_NODES_MAC = bytes.fromhex("333300000001")


class Verdict(enum.Enum):
    """What to do with a frame: answer (ARP / NS / DAD) or one reason to drop it."""

    ANSWER_ARP = "answer arp"
    ANSWER_NS = "answer ns"
    ANSWER_DAD = "answer dad"  # someone probes (DAD) an owned IPv6 address: defend it
    TRUNCATED = "truncated"
    NOT_ARP_OR_NDP = "not arp or ndp"
    OWN_FRAME = "sent by us"
    FOREIGN_DESTINATION = "ethernet destination not us, broadcast or multicast"
    ARP_BAD_HEADER = "arp header not ethernet/ipv4"
    ARP_NOT_REQUEST = "arp not a request"
    ARP_GRATUITOUS = "gratuitous arp"
    BAD_SENDER = "sender mac invalid"
    NOT_OWNED = "target not owned"
    IPV6_BAD_HEADER = "ipv6 header invalid"
    NOT_ICMPV6 = "ipv6 next header not icmpv6"
    NDP_HOP_LIMIT = "ndp hop limit not 255"
    NDP_NOT_NS = "icmpv6 not a neighbor solicitation"
    NDP_BAD_CODE = "ns code not 0"
    NDP_BAD_CHECKSUM = "icmpv6 checksum wrong"
    NDP_BAD_TARGET = "ns target multicast"
    NDP_BAD_DESTINATION = "ns ipv6 destination neither target nor its solicited-node group"
    NDP_BAD_OPTION = "ns option malformed"
    NDP_DAD_WITH_SLLA = "dad ns carries a source link-layer option"
    FENCED = "lease not renewed: silent"


ANSWERS = frozenset({Verdict.ANSWER_ARP, Verdict.ANSWER_NS, Verdict.ANSWER_DAD})


class Decision(NamedTuple):
    """verdict; for answers: target IP, and the requester's MAC and IP the reply goes to."""

    verdict: Verdict
    target: bytes = b""
    peer_mac: bytes = b""
    peer_ip: bytes = b""


def decide(frame: bytes, my_mac: bytes, owned4: Collection[bytes], owned6: Collection[bytes]) -> Decision:
    """Answer or drop one Ethernet frame. owned4/owned6: packed IPs this node owns now."""
    if len(frame) < 42:
        return Decision(Verdict.TRUNCATED)
    etype = frame[12] << 8 | frame[13]
    if etype == ETH_ARP:
        return _decide_arp(frame, my_mac, owned4)
    if etype == ETH_IPV6:
        return _decide_ns(frame, my_mac, owned6)
    return Decision(Verdict.NOT_ARP_OR_NDP)


def _check_ether(dst: bytes, src: bytes, my_mac: bytes) -> Verdict | None:
    if src == my_mac:
        return Verdict.OWN_FRAME
    if src[0] & 1 or src == bytes(6):
        return Verdict.BAD_SENDER
    if dst != my_mac and not dst[0] & 1:
        return Verdict.FOREIGN_DESTINATION
    return None


def _decide_arp(frame: bytes, my_mac: bytes, owned4: Collection[bytes]) -> Decision:
    dst, src, _ethertype, htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(frame)
    bad = _check_ether(dst, src, my_mac)
    if bad is not None:
        return Decision(bad)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return Decision(Verdict.ARP_BAD_HEADER)
    if op != 1:
        return Decision(Verdict.ARP_NOT_REQUEST)
    if sha[0] & 1 or sha == bytes(6):
        return Decision(Verdict.BAD_SENDER)
    if spa == tpa:
        return Decision(Verdict.ARP_GRATUITOUS)
    if tpa not in owned4:
        return Decision(Verdict.NOT_OWNED)
    return Decision(Verdict.ANSWER_ARP, tpa, sha, spa)  # spa 0.0.0.0 = RFC 5227 probe: answered too


def _decide_ns(frame: bytes, my_mac: bytes, owned6: Collection[bytes]) -> Decision:
    if len(frame) < _ICMP6_OFF + 4:
        return Decision(Verdict.TRUNCATED)
    dst, src, _ethertype, vtf, plen, nh, hlim, ip_src, ip_dst = _IP6.unpack_from(frame)
    bad = _check_ether(dst, src, my_mac)
    if bad is not None:
        return Decision(bad)
    if vtf >> 28 != 6 or ip_src[0] == 0xFF:
        return Decision(Verdict.IPV6_BAD_HEADER)
    if nh != 58:
        return Decision(Verdict.NOT_ICMPV6)
    if len(frame) < _ICMP6_OFF + plen or plen < 4:
        return Decision(Verdict.TRUNCATED)
    icmp = frame[_ICMP6_OFF:_ICMP6_OFF + plen]
    if icmp[0] != 135:
        return Decision(Verdict.NDP_NOT_NS)
    if plen < _NS_MIN:
        return Decision(Verdict.TRUNCATED)
    if hlim != 255:
        return Decision(Verdict.NDP_HOP_LIMIT)
    if icmp[1] != 0:
        return Decision(Verdict.NDP_BAD_CODE)
    if icmpv6_checksum(ip_src, ip_dst, icmp) != 0:
        return Decision(Verdict.NDP_BAD_CHECKSUM)
    return _decide_ns_target(icmp, src, ip_src, ip_dst, owned6)


def _decide_ns_target(icmp: bytes, src: bytes, ip_src: bytes, ip_dst: bytes,
                      owned6: Collection[bytes]) -> Decision:
    target = icmp[8:24]
    if target[0] == 0xFF:
        return Decision(Verdict.NDP_BAD_TARGET)
    if ip_dst != target and ip_dst != solicited_node(target):
        return Decision(Verdict.NDP_BAD_DESTINATION)
    slla, opt_ok = _source_lladdr(icmp[24:])
    if not opt_ok:
        return Decision(Verdict.NDP_BAD_OPTION)
    if target not in owned6:
        return Decision(Verdict.NOT_OWNED)
    if ip_src == ZERO6:
        return Decision(Verdict.NDP_DAD_WITH_SLLA) if slla else Decision(Verdict.ANSWER_DAD, target)
    return Decision(Verdict.ANSWER_NS, target, slla or src, ip_src)


def _source_lladdr(options: bytes) -> tuple[bytes, bool]:
    """(source link-layer address or b"", options well formed) per RFC 4861 section 4.6."""
    slla, i = b"", 0
    while i < len(options):
        if i + 2 > len(options) or options[i + 1] == 0 or i + options[i + 1] * 8 > len(options):
            return b"", False
        if options[i] == 1 and options[i + 1] == 1:
            slla = options[i + 2:i + 8]
        i += options[i + 1] * 8
    return slla, True


def solicited_node(ip6: bytes) -> bytes:
    """The solicited-node multicast group ff02::1:ffXX:XXXX of a packed IPv6 address."""
    return bytes.fromhex("ff0200000000000000000001ff") + ip6[13:16]


def multicast_mac(ip6: bytes) -> bytes:
    """The Ethernet address 33:33:xx:xx:xx:xx of an IPv6 multicast group."""
    return b"\x33\x33" + ip6[12:16]


def icmpv6_checksum(src: bytes, dst: bytes, icmp: bytes) -> int:
    """Ones' complement sum over the IPv6 pseudo-header and ICMPv6 message (0 when valid)."""
    data = src + dst + struct.pack("!I3xB", len(icmp), 58) + icmp
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- replies: patch templates built once per IP -------------------------------------------------


def arp_reply(template: bytes, peer_mac: bytes, peer_ip: bytes) -> bytes:
    """An ARP reply from a template (dst MAC @0, THA @32, TPA @38 are overwritten)."""
    return peer_mac + template[6:32] + peer_mac + peer_ip + template[42:]


def na_reply(template: bytes, peer_mac: bytes, peer_ip: bytes) -> bytes:
    """A solicited NA from a template: Ethernet dst @0, IPv6 dst @38, checksum @56 recomputed."""
    body = template[_ICMP6_OFF:_ICMP6_OFF + 2] + b"\0\0" + template[_ICMP6_OFF + 4:]
    csum = icmpv6_checksum(template[22:38], peer_ip, body)
    return peer_mac + template[6:38] + peer_ip + body[:2] + struct.pack("!H", csum) + body[4:]


# -- kernel filter (classic BPF) -----------------------------------------------------------------

_LD_W, _LD_H, _LD_B = 0x20, 0x28, 0x30  # BPF_LD | size | BPF_ABS
_JEQ, _JA, _RET = 0x15, 0x05, 0x06
_PKTTYPE = 0xFFFFF004  # SKF_AD_OFF + SKF_AD_PKTTYPE
_PACKET_OUTGOING = 4
BPF_MAX_INSNS = 4096
Insn = tuple[int, int, int, int]  # code, jt, jf, k


def _require(load: Insn, value: int) -> list[Insn]:
    """load; if A != value: drop (a local `ret 0`, so no jump ever exceeds 255)."""
    return [load, (_JEQ, 1, 0, value), (_RET, 0, 0, 0)]


def _targets(offset: int, ips: Collection[bytes] | None) -> list[Insn]:
    """Accept when the packed IP at offset is one of ips (None = any target); else drop."""
    accept = (_RET, 0, 0, SNAPLEN)
    if ips is None:
        return [accept]
    out: list[Insn] = []
    for ip in sorted(ips):
        words = struct.unpack(f"!{len(ip) // 4}I", ip)
        if len(words) == 1:  # IPv4: A already holds the target (loaded once below): 2 insns per IP
            out += [(_JEQ, 0, 1, words[0]), accept]
            continue
        for n, word in enumerate(words):
            left = 2 * (len(words) - n) - 1  # instructions after this jeq up to the accept
            out += [(_LD_W, 0, 0, offset + 4 * n), (_JEQ, 0, left, word)]
        out.append(accept)
    first = [(_LD_W, 0, 0, offset)] if ips and len(next(iter(ips))) == 4 else []
    return [*first, *out, (_RET, 0, 0, 0)]


def bpf_program(owned4: Collection[bytes] | None, owned6: Collection[bytes] | None) -> list[Insn]:
    """Classic BPF: pass incoming ARP requests / ICMPv6 NS for owned targets only.

    owned4/owned6 None means "any target" (the fallback when the owned set would not fit in
    BPF_MAX_INSNS instructions); an empty set passes nothing of that family.
    """
    arp = [*_require((_LD_H, 0, 0, 20), 1), *_targets(38, owned4)]  # ARP op == request
    arp = [*_require((_LD_W, 0, 0, 14), 0x00010800), *arp]  # htype 1, ptype IPv4
    ns = [*_require((_LD_B, 0, 0, 20), 58), *_require((_LD_B, 0, 0, 54), 135), *_targets(62, owned6)]
    head = [
        (_LD_W, 0, 0, _PKTTYPE), (_JEQ, 0, 1, _PACKET_OUTGOING), (_RET, 0, 0, 0),  # never our own sends
        (_LD_H, 0, 0, 12),
        (_JEQ, 0, 1, ETH_ARP), (_JA, 0, 0, 3),  # -> arp block
        (_JEQ, 0, 1, ETH_IPV6), (_JA, 0, 0, 1 + len(arp)),  # -> ns block
        (_RET, 0, 0, 0),
    ]
    prog = head + arp + ns
    if len(prog) > BPF_MAX_INSNS and (owned4 is not None or owned6 is not None):
        return bpf_program(None, None)
    return prog


def run_bpf(prog: list[Insn], frame: bytes, pkttype: int = 0) -> int:
    """A tiny interpreter for the instructions bpf_program emits (for tests): bytes accepted."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code in (_LD_W, _LD_H, _LD_B):
            size = {_LD_W: 4, _LD_H: 2, _LD_B: 1}[code]
            if k == _PKTTYPE:
                a = pkttype
            elif k + size > len(frame):
                return 0
            else:
                a = int.from_bytes(frame[k:k + size], "big")
        elif code == _JEQ:
            pc += jt if a == k else jf
        elif code == _JA:
            pc += k
        elif code == _RET:
            return min(k, len(frame))
        else:
            raise ValueError(f"bpf opcode {code:#x} not supported")
