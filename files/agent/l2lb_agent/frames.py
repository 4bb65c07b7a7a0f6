"""ARP / NDP frame decisions on raw bytes, reply patching and the kernel filter (core ring, pure).

Place in the flow: announcer receives a raw Ethernet frame -> ``decide`` says answer or drop
(with a ``Verdict`` naming the reason) -> announcer patches a prebuilt reply template with
``arp_reply`` / ``na_reply`` and sends it.

Hot path, by design: the announcer builds one reply template per owned IP (``arp_templates`` /
``na_templates``, a few microseconds) when the IP is gained, never per request. Answering an ARP
request is then one ``struct`` unpack, a set lookup and three slice copies (requester MAC into the
Ethernet destination and the ARP target hardware address, requester IP into the ARP target
protocol address). An NA also needs its ICMPv6 checksum recomputed, done here in a few lines.

``bpf_program`` builds the classic BPF program the announcer attaches to each raw socket: only
incoming, untagged ARP requests and ICMPv6 Neighbor Solicitations whose target is an owned IP
reach Python, so a flood of other traffic never costs a context switch. Owned addresses are
matched as ranges (consecutive addresses cost one range; IPv6 grouped by their first 96 bits),
so a pool's worth of addresses fits; only when the ranges still exceed the kernel's 4,096
instructions are the closest ranges merged (a superset: Python's ``decide`` stays exact), and
never "any target".

802.1Q/802.1ad: the kernel strips the tag before a packet socket sees the frame and records it
in the packet's metadata, so a request from VLAN 100 looks like one from the native VLAN. The
filter drops tagged frames (ancillary load SKF_AD_VLAN_TAG_PRESENT) and ``decide(...,
tagged=True)`` drops them too (for the announcer's PACKET_AUXDATA check). To serve a VLAN, run
the speaker on its sub-interface (e.g. eth0.100).

Not guaranteed: frames longer than the snapshot length given by the filter are judged on
their first ``SNAPLEN`` bytes. Answer rates are bounded by ``ratelimit``, not here.
"""

from __future__ import annotations

import enum
import functools
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
    NDP_DAD_NOT_SOLICITED_NODE = "dad ns not sent to the target's solicited-node group"
    NDP_BAD_SLLA = "ns source link-layer address multicast or zero"
    NDP_MAC_MISMATCH = "ns ethernet destination is not its ipv6 group's mac"
    VLAN_TAGGED = "802.1q tagged (serve a vlan from its sub-interface)"
    FENCED = "lease not renewed: silent"
    EARLY = "request arrived before this node answered for its target"
    RATE_LIMITED = "answer rate limit"


ANSWERS = frozenset({Verdict.ANSWER_ARP, Verdict.ANSWER_NS, Verdict.ANSWER_DAD})


class Decision(NamedTuple):
    """verdict; for answers: target IP, and the requester's MAC and IP the reply goes to."""

    verdict: Verdict
    target: bytes = b""
    peer_mac: bytes = b""
    peer_ip: bytes = b""


def decide(frame: bytes, my_mac: bytes, owned4: Collection[bytes], owned6: Collection[bytes], *,
           tagged: bool = False) -> Decision:
    """Answer or drop one Ethernet frame. owned4/owned6: packed IPs this node owns now; tagged:
    the packet's metadata says it carried an 802.1Q/802.1ad tag (stripped by the kernel)."""
    if tagged:
        return Decision(Verdict.VLAN_TAGGED)
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
    if ip_dst[0] == 0xFF and dst != multicast_mac(ip_dst):
        return Decision(Verdict.NDP_MAC_MISMATCH)
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
    if slla and (slla[0] & 1 or slla == bytes(6)):  # an answer would go to broadcast / nobody
        return Decision(Verdict.NDP_BAD_SLLA)
    if target not in owned6:
        return Decision(Verdict.NOT_OWNED)
    if ip_src == ZERO6:
        if slla:
            return Decision(Verdict.NDP_DAD_WITH_SLLA)
        if ip_dst != solicited_node(target):  # RFC 4862 5.4.2: DAD goes to the solicited-node group
            return Decision(Verdict.NDP_DAD_NOT_SOLICITED_NODE)
        return Decision(Verdict.ANSWER_DAD, target)
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


# -- templates: built once per owned IP and interface ------------------------------------------

_ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")  # ff02::1
_NA_ROUTER, _NA_SOLICITED, _NA_OVERRIDE = 0x80, 0x40, 0x20
_ZERO_MAC, _BROADCAST = bytes(6), b"\xff" * 6


_ARP_PAD = bytes(60 - 42)  # to the Ethernet minimum (the kernel does not pad raw sends)


@functools.lru_cache(maxsize=64)
def _arp_head(dst_mac: bytes, op: int, mac: bytes) -> bytes:
    """An ARP frame up to its sender IP: the same for every IP of one MAC, so built once (a
    takeover of thousands of IPs then costs one concatenation per template)."""
    return dst_mac + mac + struct.pack("!HHHBBH", ETH_ARP, 1, 0x0800, 6, 4, op) + mac


def arp_templates(ip4: bytes, mac: bytes) -> tuple[bytes, bytes]:
    """(ARP reply template for ``arp_reply``, gratuitous ARP request) for ip4 owned at mac."""
    return (_arp_head(_ZERO_MAC, 2, mac) + ip4 + _ZERO_MAC + bytes(4) + _ARP_PAD,
            _arp_head(_BROADCAST, 1, mac) + ip4 + _ZERO_MAC + ip4 + _ARP_PAD)


def _na(ip6: bytes, mac: bytes, flags: int) -> bytes:
    icmp = struct.pack("!BBHB3x", 136, 0, 0, flags) + ip6 + bytes([2, 1]) + mac  # + target link-layer option
    csum = icmpv6_checksum(ip6, _ALL_NODES, icmp)
    icmp = icmp[:2] + struct.pack("!H", csum) + icmp[4:]
    ipv6 = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + ip6 + _ALL_NODES
    return multicast_mac(_ALL_NODES) + mac + struct.pack("!H", ETH_IPV6) + ipv6 + icmp


def na_templates(ip6: bytes, mac: bytes) -> tuple[bytes, bytes]:
    """(solicited NA template for ``na_reply``, unsolicited NA to all nodes) for ip6 owned at mac.
    Both carry Override and the target link-layer address; neither claims to be a router."""
    return _na(ip6, mac, _NA_SOLICITED | _NA_OVERRIDE), _na(ip6, mac, _NA_OVERRIDE)


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
_JEQ, _JGT, _JGE, _JA, _RET = 0x15, 0x25, 0x35, 0x05, 0x06
_SKF_AD_OFF = 0xFFFFF000  # -0x1000: ancillary data loads
_PKTTYPE = _SKF_AD_OFF + 4  # SKF_AD_PKTTYPE
_VLAN_TAG_PRESENT = _SKF_AD_OFF + 48  # SKF_AD_VLAN_TAG_PRESENT
_PACKET_OUTGOING = 4
BPF_MAX_INSNS = 4096
_ACCEPT, _DROP = (_RET, 0, 0, SNAPLEN), (_RET, 0, 0, 0)
_LD_LEN, _JSET = 0x80, 0x45  # BPF_LD | BPF_W | BPF_LEN; BPF_JMP | BPF_JSET | BPF_K
Insn = tuple[int, int, int, int]  # code, jt, jf, k
Ranges = list[tuple[int, int]]  # sorted, disjoint, inclusive


def _require(load: Insn, value: int) -> list[Insn]:
    """load; if A != value: drop (a local `ret 0`, so no jump ever exceeds 255)."""
    return [load, (_JEQ, 1, 0, value), _DROP]


def ranges_of(values: Collection[int]) -> Ranges:
    """Sorted values joined into inclusive runs of consecutive integers."""
    ordered = sorted(values)
    if not ordered:
        return []
    out: Ranges = []
    start = last = ordered[0]
    for v in ordered[1:]:
        if v != last + 1:
            out.append((start, last))
            start = v
        last = v
    out.append((start, last))
    return out


def coarsen(ranges: Ranges, limit: int) -> Ranges:
    """At most limit ranges covering every input range: the smallest gaps are filled first."""
    if len(ranges) <= max(limit, 1):
        return ranges
    widths = [ranges[i + 1][0] - ranges[i][1] for i in range(len(ranges) - 1)]
    by_width = sorted(range(len(widths)), key=widths.__getitem__)  # stable: equal gaps left first
    fill = set(by_width[:len(ranges) - max(limit, 1)])
    out: Ranges = []
    start = ranges[0][0]
    for i in range(len(widths)):
        if i not in fill:
            out.append((start, ranges[i][1]))
            start = ranges[i + 1][0]
    out.append((start, ranges[-1][1]))
    return out


def _match(ranges: Ranges) -> list[Insn]:
    """A holds a 32-bit word: accept when it lies in one of ranges, else fall through."""
    out: list[Insn] = []
    for lo, hi in ranges:
        if lo == hi:
            out += [(_JEQ, 0, 1, lo), _ACCEPT]
        else:  # A > hi: next range; A >= lo: accept; else next range
            out += [(_JGT, 2, 0, hi), (_JGE, 0, 1, lo), _ACCEPT]
    return out


def _cost(ranges: Ranges) -> int:
    return sum(2 if lo == hi else 3 for lo, hi in ranges)


def _v4_ranges(owned: Collection[bytes]) -> Ranges:
    return ranges_of(struct.unpack(f"!{len(owned)}I", b"".join(owned)))  # one call for all: cheap at takeover


def _v4_block(ranges: Ranges, budget: int) -> list[Insn]:
    """ARP target (offset 38) in ranges: load once, then the range matches (merged to fit budget)."""
    if _cost(ranges) > budget - 2:
        ranges = coarsen(ranges, (budget - 2) // 3)
    return [(_LD_W, 0, 0, 38), *_match(ranges), _DROP]


def _v6_groups(owned: Collection[bytes]) -> dict[bytes, Ranges]:
    groups: dict[bytes, set[int]] = {}
    for ip in owned:
        groups.setdefault(ip[:12], set()).add(int.from_bytes(ip[12:], "big"))
    return {prefix: ranges_of(words) for prefix, words in sorted(groups.items())}


def _v6_cost(groups: dict[bytes, Ranges]) -> int:
    return 1 + sum(10 + _cost(r) for r in groups.values())


def _v6_block(groups: dict[bytes, Ranges], budget: int) -> list[Insn] | None:
    """NS target (offset 62): per 96-bit prefix (``_v6_groups``), compare its three words (a mismatch
    jumps to the next prefix), then match the last word's ranges. None when the prefixes alone do
    not fit."""
    if _v6_cost(groups) > budget:
        fixed = 1 + 13 * len(groups)  # each prefix: 10 to compare, at least one range of 3
        if fixed > budget:
            return None
        spare = (budget - fixed) // 3  # ranges beyond the first one per prefix
        extra = sum(len(r) - 1 for r in groups.values()) or 1
        groups = {p: coarsen(r, 1 + spare * (len(r) - 1) // extra) for p, r in groups.items()}
    out: list[Insn] = []
    for prefix, ranges in groups.items():
        body = [(_LD_W, 0, 0, 74), *_match(ranges)]
        for n in range(3):
            word = int.from_bytes(prefix[4 * n:4 * n + 4], "big")
            out += [(_LD_W, 0, 0, 62 + 4 * n), (_JEQ, 1, 0, word), (_JA, 0, 0, 3 * (2 - n) + len(body))]
        out += body
    return [*out, _DROP]


def _budgets(need4: int, need6: int, budget: int) -> tuple[int, int]:
    """Instructions for the ARP and NS target checks: all they need, else a fair share."""
    if need4 + need6 <= budget:
        return need4, need6
    if need6 <= budget // 2:
        return budget - need6, need6
    if need4 <= budget // 2:
        return need4, budget - need4
    return budget // 2, budget - budget // 2


def bpf_program(owned4: Collection[bytes] | None, owned6: Collection[bytes] | None, *,
                drop_tagged: bool = True) -> list[Insn]:
    """Classic BPF: pass incoming (untagged, unless drop_tagged is False) ARP requests / ICMPv6 NS
    whose target is owned. None = any target of that family; an empty set passes nothing of it.
    Owned sets too big for BPF_MAX_INSNS are matched by merged ranges (a superset)."""
    arp_head = [*_require((_LD_W, 0, 0, 14), 0x00010800),  # htype 1, ptype IPv4
                *_require((_LD_H, 0, 0, 20), 1)]  # a request
    ns_head = [*_require((_LD_B, 0, 0, 20), 58), *_require((_LD_B, 0, 0, 54), 135)]  # ICMPv6 NS
    tag = [(_LD_W, 0, 0, _VLAN_TAG_PRESENT), (_JEQ, 1, 0, 0), _DROP] if drop_tagged else []
    budget = BPF_MAX_INSNS - (9 + len(tag) + len(arp_head) + len(ns_head))
    ranges4 = None if owned4 is None else _v4_ranges(owned4)
    groups6 = None if owned6 is None else _v6_groups(owned6)
    need4 = 1 if ranges4 is None else 2 + _cost(ranges4)
    need6 = 1 if groups6 is None else _v6_cost(groups6)
    b4, b6 = _budgets(need4, need6, budget)
    ns = None if groups6 is None else _v6_block(groups6, b6)
    ns = [_ACCEPT] if ns is None else ns  # None: thousands of distinct /96 prefixes; Python decides
    arp = [_ACCEPT] if ranges4 is None else _v4_block(ranges4, budget - len(ns) if ns == [_ACCEPT] else b4)
    arp, ns = [*arp_head, *arp], [*ns_head, *ns]
    head = [
        (_LD_W, 0, 0, _PKTTYPE), (_JEQ, 0, 1, _PACKET_OUTGOING), _DROP,  # never our own sends
        *tag,
        (_LD_H, 0, 0, 12),
        (_JEQ, 0, 1, ETH_ARP), (_JA, 0, 0, 3),  # -> arp block
        (_JEQ, 0, 1, ETH_IPV6), (_JA, 0, 0, 1 + len(arp)),  # -> ns block
        _DROP,
    ]
    return head + arp + ns


def split_filter(flags_at: int, urgent_if_set: int, urgent_if_clear: int, *, urgent: bool) -> list[Insn]:
    """Classic BPF splitting frames between two sockets by one flags byte at offset flags_at:
    "urgent" when any bit of urgent_if_set is set or no bit of urgent_if_clear is. urgent=True
    passes exactly those; urgent=False passes the rest, frames too short to hold the byte included
    (so the reader still sees, and counts, malformed ones). Every frame reaches exactly one socket."""
    bulk, hurry = (_DROP, _ACCEPT) if urgent else (_ACCEPT, _DROP)
    return [
        (_LD_LEN, 0, 0, 0),
        (_JGE, 0, 3, flags_at + 1),  # too short -> bulk
        (_LD_B, 0, 0, flags_at),
        (_JSET, 2, 0, urgent_if_set),  # -> hurry
        (_JSET, 0, 1, urgent_if_clear),  # set -> bulk, clear -> hurry
        bulk,
        hurry,
    ]
