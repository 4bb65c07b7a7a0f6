"""frames: decide/drop tables for ARP and NDP, reply patching, the BPF program, fuzzing."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from l2lb_agent import announcer, frames
from l2lb_agent.frames import Verdict as V
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.unit import cbpf

MY_MAC = "02:4c:32:00:00:11"
MY = bytes.fromhex(MY_MAC.replace(":", ""))
PEER_MAC = "02:4c:32:00:00:01"
OWNED4 = {ipaddress.ip_address("192.168.1.240").packed}
OWNED6 = {ipaddress.ip_address("fd00:4c32:6c62::f0").packed}
V6 = "fd00:4c32:6c62::f0"
SNM = "ff02::1:ff00:f0"  # solicited-node group of V6
SNM_MAC = "33:33:ff:00:00:f0"


def arp(op: int = 1, dst: str = "ff:ff:ff:ff:ff:ff", src: str = PEER_MAC, psrc: str = "192.168.1.1",
        pdst: str = "192.168.1.240", hwsrc: str | None = None, **kw: object) -> bytes:
    return bytes(Ether(dst=dst, src=src) / ARP(op=op, hwsrc=hwsrc or src, psrc=psrc, pdst=pdst, **kw))


ARP_TABLE = [
    # name, frame, owned, should answer, reason
    ("request for owned", arp(), OWNED4, True, V.ANSWER_ARP),
    ("unicast refresh to our MAC", arp(dst=MY_MAC), OWNED4, True, V.ANSWER_ARP),
    ("padded to 60 bytes", arp().ljust(60, b"\0"), OWNED4, True, V.ANSWER_ARP),
    ("probe from 0.0.0.0 (RFC 5227)", arp(psrc="0.0.0.0"), OWNED4, True, V.ANSWER_ARP),
    ("not owned", arp(pdst="192.168.1.241"), OWNED4, False, V.NOT_OWNED),
    ("owned set empty", arp(), set(), False, V.NOT_OWNED),
    ("reply, not request", arp(op=2), OWNED4, False, V.ARP_NOT_REQUEST),
    ("unknown op", arp(op=9), OWNED4, False, V.ARP_NOT_REQUEST),
    ("gratuitous from someone else", arp(psrc="192.168.1.240"), OWNED4, False, V.ARP_GRATUITOUS),
    ("unicast to another MAC", arp(dst="02:00:00:00:00:99"), OWNED4, False, V.FOREIGN_DESTINATION),
    ("our own frame", arp(src=MY_MAC), OWNED4, False, V.OWN_FRAME),
    ("multicast sender MAC", arp(src="03:00:00:00:00:01"), OWNED4, False, V.BAD_SENDER),
    ("zero sender hw address", arp(hwsrc="00:00:00:00:00:00"), OWNED4, False, V.BAD_SENDER),
    ("hlen 8", arp(hwlen=8), OWNED4, False, V.ARP_BAD_HEADER),
    ("ptype IPv6", arp(ptype=0x86DD), OWNED4, False, V.ARP_BAD_HEADER),
    ("htype 6", arp(hwtype=6), OWNED4, False, V.ARP_BAD_HEADER),
    ("truncated", arp()[:30], OWNED4, False, V.TRUNCATED),
    ("VLAN tagged", bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / Dot1Q(vlan=5)
                          / ARP(hwsrc=PEER_MAC, psrc="192.168.1.1", pdst="192.168.1.240")),
     OWNED4, False, V.NOT_ARP_OR_NDP),
    ("IPv4 UDP", bytes(Ether(dst=MY_MAC, src=PEER_MAC) / IP(dst="192.168.1.240") / UDP() / (b"x" * 20)),
     OWNED4, False, V.NOT_ARP_OR_NDP),
]


def test_tagged_frames_are_dropped_whatever_they_ask() -> None:
    for frame in (arp(), ns(), ns(src="::", slla=None)):
        assert frames.decide(frame, MY, OWNED4, OWNED6).verdict in frames.ANSWERS
        assert frames.decide(frame, MY, OWNED4, OWNED6, tagged=True).verdict is V.VLAN_TAGGED


@pytest.mark.parametrize(("frame", "owned", "answer", "reason"),
                         [pytest.param(*row[1:], id=row[0]) for row in ARP_TABLE])
def test_arp_responder(frame: bytes, owned: set, answer: bool, reason: V) -> None:
    d = frames.decide(frame, MY, owned, OWNED6)
    assert d.verdict is reason
    assert (d.verdict in frames.ANSWERS) is answer


def ns(src: str = "fd00:4c32:6c62::1", dst: str = SNM, tgt: str = V6, hlim: int = 255,
       mac_dst: str = SNM_MAC, slla: str | None = PEER_MAC, code: int = 0, extra: bytes = b"") -> bytes:
    pkt = Ether(dst=mac_dst, src=PEER_MAC) / IPv6(src=src, dst=dst, hlim=hlim)
    pkt = pkt / ICMPv6ND_NS(tgt=tgt, code=code)
    if slla:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=slla)
    return bytes(pkt / extra) if extra else bytes(pkt)


def corrupt(frame: bytes, offset: int) -> bytes:
    return frame[:offset] + bytes([frame[offset] ^ 0xFF]) + frame[offset + 1:]


NDP_TABLE = [
    ("NS to solicited-node group", ns(), True, V.ANSWER_NS),
    ("unicast NS (NUD) to the target", ns(dst=V6, mac_dst=MY_MAC), True, V.ANSWER_NS),
    ("NS without source link-layer option", ns(slla=None), True, V.ANSWER_NS),
    ("DAD probe for owned address", ns(src="::", slla=None), True, V.ANSWER_DAD),
    ("DAD probe with SLLA (forbidden)", ns(src="::"), False, V.NDP_DAD_WITH_SLLA),
    ("DAD probe sent to the target, not its group", ns(src="::", slla=None, dst=V6, mac_dst=MY_MAC),
     False, V.NDP_DAD_NOT_SOLICITED_NODE),
    ("multicast source link-layer option", ns(slla="ff:ff:ff:ff:ff:ff"), False, V.NDP_BAD_SLLA),
    ("zero source link-layer option", ns(slla="00:00:00:00:00:00"), False, V.NDP_BAD_SLLA),
    ("solicited-node group sent to broadcast MAC", ns(mac_dst="ff:ff:ff:ff:ff:ff"), False,
     V.NDP_MAC_MISMATCH),
    ("solicited-node group to another group's MAC", ns(mac_dst="33:33:ff:00:00:f1"), False,
     V.NDP_MAC_MISMATCH),
    ("not owned target", ns(tgt="fd00:4c32:6c62::f1", dst="ff02::1:ff00:f1", mac_dst="33:33:ff:00:00:f1"),
     False, V.NOT_OWNED),
    ("hop limit 64", ns(hlim=64), False, V.NDP_HOP_LIMIT),
    ("code 1", ns(code=1), False, V.NDP_BAD_CODE),
    ("bad checksum", corrupt(ns(), 57), False, V.NDP_BAD_CHECKSUM),
    ("multicast target", ns(tgt="ff02::1"), False, V.NDP_BAD_TARGET),
    ("wrong IPv6 destination", ns(dst="ff02::1", mac_dst="33:33:00:00:00:01"), False, V.NDP_BAD_DESTINATION),
    ("option of length 0", bytes(Ether(dst=SNM_MAC, src=PEER_MAC) / IPv6(src="fd00:4c32:6c62::1", dst=SNM)
                                 / ICMPv6ND_NS(tgt=V6) / b"\x01\x00\x00\x00\x00\x00\x00\x00"),
     False, V.NDP_BAD_OPTION),
    ("NA, not NS", bytes(Ether(dst=SNM_MAC, src=PEER_MAC) / IPv6(src="fd00:4c32:6c62::1", dst=SNM, hlim=255)
                         / ICMPv6ND_NA(tgt=V6)), False, V.NDP_NOT_NS),
    ("echo request", bytes(Ether(dst=MY_MAC, src=PEER_MAC) / IPv6(dst=V6) / ICMPv6EchoRequest()),
     False, V.NDP_NOT_NS),
    ("UDP over IPv6", bytes(Ether(dst=MY_MAC, src=PEER_MAC) / IPv6(dst=V6) / UDP() / (b"x" * 30)),
     False, V.NOT_ICMPV6),
    ("IPv6 payload length beyond frame", ns()[:-8], False, V.TRUNCATED),
    ("version 4 in IPv6 header", ns()[:14] + b"\x40" + ns()[15:], False, V.IPV6_BAD_HEADER),
    ("our own NS", bytes(Ether(dst=SNM_MAC, src=MY_MAC) / IPv6(src="fd00:4c32:6c62::11", dst=SNM)
                         / ICMPv6ND_NS(tgt=V6)), False, V.OWN_FRAME),
]


@pytest.mark.parametrize(("frame", "answer", "reason"),
                         [pytest.param(*row[1:], id=row[0]) for row in NDP_TABLE])
def test_ndp_responder(frame: bytes, answer: bool, reason: V) -> None:
    d = frames.decide(frame, MY, OWNED4, OWNED6)
    assert d.verdict is reason
    assert (d.verdict in frames.ANSWERS) is answer


def test_arp_reply_is_patched_template() -> None:
    tpl = announcer.build_templates("192.168.1.240", MY)
    d = frames.decide(arp(), MY, OWNED4, OWNED6)
    reply = Ether(frames.arp_reply(tpl.reply, d.peer_mac, d.peer_ip))
    assert (reply.dst, reply.src) == (PEER_MAC, MY_MAC)
    assert (reply[ARP].op, reply[ARP].hwsrc, reply[ARP].psrc) == (2, MY_MAC, "192.168.1.240")
    assert (reply[ARP].hwdst, reply[ARP].pdst) == (PEER_MAC, "192.168.1.1")


def test_garp_template() -> None:
    garp = Ether(announcer.build_templates("192.168.1.240", MY).announce)
    assert garp.dst == "ff:ff:ff:ff:ff:ff" and garp[ARP].psrc == garp[ARP].pdst == "192.168.1.240"
    assert garp[ARP].hwsrc == MY_MAC


def test_na_reply_has_flags_option_and_valid_checksum() -> None:
    tpl = announcer.build_templates(V6, MY)
    d = frames.decide(ns(), MY, OWNED4, OWNED6)
    raw = frames.na_reply(tpl.reply, d.peer_mac, d.peer_ip)
    pkt = Ether(raw)
    assert pkt.dst == PEER_MAC and pkt[IPv6].dst == "fd00:4c32:6c62::1" and pkt[IPv6].hlim == 255
    na = pkt[ICMPv6ND_NA]
    assert (na.tgt, na.S, na.O, na.R) == (V6, 1, 1, 0)
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == MY_MAC
    assert frames.icmpv6_checksum(raw[22:38], raw[38:54], raw[54:]) == 0
    recomputed = Ether(raw)
    del recomputed[ICMPv6ND_NA].cksum
    assert Ether(bytes(recomputed))[ICMPv6ND_NA].cksum == na.cksum  # scapy agrees


def test_unsolicited_na_goes_to_all_nodes_with_override() -> None:
    pkt = Ether(announcer.build_templates(V6, MY).announce)
    assert pkt.dst == "33:33:00:00:00:01" and pkt[IPv6].dst == "ff02::1"
    assert (pkt[ICMPv6ND_NA].S, pkt[ICMPv6ND_NA].O) == (0, 1)


def test_solicited_node_helpers() -> None:
    packed = ipaddress.ip_address(V6).packed
    assert ipaddress.ip_address(frames.solicited_node(packed)) == ipaddress.ip_address(SNM)
    assert frames.multicast_mac(frames.solicited_node(packed)).hex(":") == SNM_MAC


# -- BPF ---------------------------------------------------------------------------------------

BPF_TABLE = [
    ("ARP request for owned", arp(), 0, True),
    ("ARP request not owned", arp(pdst="192.168.1.241"), 0, False),
    ("ARP reply for owned", arp(op=2), 0, False),
    ("outgoing ARP request", arp(), 4, False),
    ("NS for owned", ns(), 0, True),
    ("NS not owned", ns(tgt="fd00:4c32:6c62::f1"), 0, False),
    ("NS differing in last word only", ns(tgt="fd00:4c32:6c62::1:f0"), 0, False),
    ("NA for owned", bytes(Ether() / IPv6(dst=SNM) / ICMPv6ND_NA(tgt=V6)), 0, False),
    ("IPv4", bytes(Ether() / IP() / UDP()), 0, False),
    ("short frame", b"\x00" * 10, 0, False),
]


@pytest.mark.parametrize(("frame", "pkttype", "passes"), [pytest.param(*r[1:], id=r[0]) for r in BPF_TABLE])
def test_bpf_passes_only_requests_for_owned(frame: bytes, pkttype: int, passes: bool) -> None:
    owned4 = OWNED4 | {ipaddress.ip_address("10.1.1.1").packed}
    owned6 = OWNED6 | {ipaddress.ip_address("fd00::1").packed}
    prog = frames.bpf_program(owned4, owned6)
    cbpf.check(prog)
    assert (cbpf.run(prog, frame, pkttype) > 0) is passes


def test_bpf_drops_tagged_frames_by_metadata_unless_told_not_to() -> None:
    assert cbpf.run(frames.bpf_program(OWNED4, OWNED6), arp(), tagged=True) == 0
    assert cbpf.run(frames.bpf_program(OWNED4, OWNED6), ns(), tagged=True) == 0
    assert cbpf.run(frames.bpf_program(OWNED4, OWNED6, drop_tagged=False), arp(), tagged=True) > 0


def test_bpf_empty_sets_pass_nothing_and_none_passes_any_target() -> None:
    assert cbpf.run(frames.bpf_program(set(), set()), arp()) == 0
    assert cbpf.run(frames.bpf_program(set(), set()), ns()) == 0
    assert cbpf.run(frames.bpf_program(None, None), arp(pdst="1.2.3.4")) > 0
    assert cbpf.run(frames.bpf_program(None, None), ns(tgt="fd00::99")) > 0


def v4(n: int) -> bytes:
    return (0x0A000000 + n).to_bytes(4, "big")


def test_bpf_matches_a_whole_pool_as_one_range() -> None:
    pool = {v4(i) for i in range(100_000)}  # far beyond the old ~2,030-address fallback
    prog = frames.bpf_program(pool, OWNED6)
    cbpf.check(prog)
    assert len(prog) < 60
    assert cbpf.run(prog, arp(pdst="10.0.0.0")) > 0 and cbpf.run(prog, arp(pdst="10.1.134.159")) > 0
    assert cbpf.run(prog, arp(pdst="10.1.134.160")) == 0 and cbpf.run(prog, arp(pdst="9.255.255.255")) == 0


def test_bpf_scattered_addresses_beyond_the_limit_are_merged_into_a_superset() -> None:
    scattered = {v4(3 * i) for i in range(5000)}  # no two consecutive: 5,000 single ranges
    six = {bytes.fromhex(f"fd00000000000000000000{i % 3:02x}{7 * i:08x}") for i in range(3000)}
    prog = frames.bpf_program(scattered, six)
    cbpf.check(prog)
    rng = random.Random(11)  # a sample: each run walks a ~4,000-instruction program in Python
    probe4 = [*rng.sample(sorted(scattered), 200), min(scattered), max(scattered)]
    probe6 = [*rng.sample(sorted(six), 200), min(six), max(six)]
    assert all(cbpf.run(prog, arp(pdst=str(ipaddress.ip_address(ip)))) > 0 for ip in probe4)
    assert all(cbpf.run(prog, ns(tgt=str(ipaddress.ip_address(ip)), dst=SNM)) > 0 for ip in probe6)
    assert cbpf.run(prog, arp(pdst="10.1.0.0")) == 0  # beyond the last owned address: still dropped
    assert cbpf.run(prog, ns(tgt="fd00::5:0:1")) == 0  # a /96 none is in: still dropped


def test_bpf_small_scattered_sets_stay_exact() -> None:
    owned = {v4(2 * i) for i in range(1500)}
    prog = frames.bpf_program(owned, OWNED6)
    cbpf.check(prog)
    assert all(cbpf.run(prog, arp(pdst=str(ipaddress.ip_address(0x0A000000 + i)))) == 0
               for i in random.Random(5).sample(range(1, 3000, 2), 200))
    assert all(cbpf.run(prog, arp(pdst=str(ipaddress.ip_address(0x0A000000 + i)))) > 0
               for i in random.Random(6).sample(range(0, 3000, 2), 200))
    assert all(jt < 256 and jf < 256 for _, jt, jf, _ in prog)


@pytest.mark.parametrize(("values", "limit", "expected"), [
    pytest.param([1, 2, 3, 7, 8, 20], 9, [(1, 3), (7, 8), (20, 20)], id="runs"),
    pytest.param([1, 2, 3, 7, 8, 20], 2, [(1, 8), (20, 20)], id="smallest-gap-first"),
    pytest.param([1, 2, 3, 7, 8, 20], 1, [(1, 20)], id="one"),
    pytest.param([5], 1, [(5, 5)], id="single"),
    pytest.param([], 3, [], id="empty"),
])
def test_ranges_and_coarsen(values: list[int], limit: int, expected: list[tuple[int, int]]) -> None:
    assert frames.coarsen(frames.ranges_of(values), limit) == expected


# -- fuzz ----------------------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_decide_never_raises_on_random_bytes(data: bytes) -> None:
    d = frames.decide(data, MY, OWNED4, OWNED6)
    assert isinstance(d.verdict, V)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([arp(), ns(), ns(src="::", slla=None)]), st.integers(0, 120), st.integers(0, 255))
def test_mutated_requests_never_raise_and_answer_only_owned(frame: bytes, offset: int, byte: int) -> None:
    mutated = bytearray(frame)
    if offset < len(mutated):
        mutated[offset] = byte
    d = frames.decide(bytes(mutated), MY, OWNED4, OWNED6)
    if d.verdict in frames.ANSWERS:
        assert d.target in OWNED4 | OWNED6


@pytest.mark.parametrize("ip", ["192.168.1.240", V6])
def test_lab_fuzz_frames_are_all_dropped(ip: str) -> None:
    from tests.bench import speaker_probe

    src = "192.168.1.1" if "." in ip else "fd00:4c32:6c62::1"
    bad = speaker_probe.invalid_frames(ip, PEER_MAC, src, 2000)
    verdicts = {frames.decide(f, MY, OWNED4, OWNED6).verdict for f in bad}
    assert not verdicts & frames.ANSWERS
    good = speaker_probe.request(ip, PEER_MAC, src)  # and the unbroken request is answered
    assert frames.decide(good, MY, OWNED4, OWNED6).verdict in frames.ANSWERS
