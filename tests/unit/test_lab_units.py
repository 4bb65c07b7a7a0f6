"""Pure and loopback-only parts of the lab (no root, no namespaces): names, endpoints, the API
forwarder's blackhole, the ARP/NDP answer parsing and the throwaway PKI."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from l2lb_lab import forwarder, pki, probe
from l2lb_lab import topology as topo
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether


@pytest.mark.parametrize(("name", "netns"), [("client", "l2lb-client"), ("node2", "l2lb-node2"),
                                             ("l2lb-node3", "l2lb-node3")], ids=["short", "node", "full"])
def test_find_host_accepts_short_and_full_names(name, netns):
    assert topo.find_host(name).netns == netns


@pytest.fixture
def default_lab():
    """The contract's 3-node lab, whatever `lab up --nodes N` last recorded on this machine."""
    before = len(topo.NODES)
    topo.set_node_count(topo.DEFAULT_NODE_COUNT)
    yield
    topo.set_node_count(before)


def test_node_count_follows_lab_up_nodes(default_lab):
    topo.set_node_count(30)
    assert topo.NODES[-1].name == "node30" and topo.NODES[-1].ipv4 == "192.168.1.40"
    assert topo.find_node("node30").mac == "02:4c:32:00:00:40"
    with pytest.raises(ValueError, match="--nodes: expected 1-60, got 61"):
        topo.set_node_count(61)


def test_unknown_names_are_rejected_naming_the_value(default_lab):
    with pytest.raises(ValueError, match="'node9'"):
        topo.find_host("node9")
    with pytest.raises(ValueError, match="'client' is not a lab node"):
        topo.find_node("client")


def test_topology_matches_the_contract(default_lab):
    assert [(h.netns, h.ipv4, h.ipv6, h.mac) for h in topo.HOSTS] == [
        ("l2lb-client", "192.168.1.1", "fd00:4c32:6c62::1", "02:4c:32:00:00:01"),
        ("l2lb-node1", "192.168.1.11", "fd00:4c32:6c62::11", "02:4c:32:00:00:11"),
        ("l2lb-node2", "192.168.1.12", "fd00:4c32:6c62::12", "02:4c:32:00:00:12"),
        ("l2lb-node3", "192.168.1.13", "fd00:4c32:6c62::13", "02:4c:32:00:00:13"),
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("tcp:127.0.0.1:6443", ("tcp", "127.0.0.1:6443")),
    ("unix:/x/api.sock", ("unix", "/x/api.sock")),
    ("udp:1.2.3.4:5", None), ("unix:", None), ("127.0.0.1:6443", None),
], ids=["tcp", "unix", "bad-kind", "empty", "no-kind"])
def test_parse_endpoint(text, expected):
    if expected is None:
        with pytest.raises(ValueError, match="endpoint"):
            forwarder.parse_endpoint(text)
    else:
        assert forwarder.parse_endpoint(text) == expected


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _roundtrip(port: int, writer=None, reader=None, timeout: float = 1.0) -> bytes:
    if writer is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4), timeout)
    except TimeoutError:
        return b"<silence>"


async def _blackhole_scenario(flag: Path) -> list[bytes]:
    upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    relay = forwarder.Relay(f"tcp:127.0.0.1:{up_port}", flag)
    front = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    port = front.sockets[0].getsockname()[1]
    seen = [await _roundtrip(port)]                              # relayed
    old_r, old_w = await asyncio.open_connection("127.0.0.1", port)
    seen.append(await _roundtrip(port, old_w, old_r))            # open connection relays
    flag.touch()
    relay.apply_flag()
    seen.append(await _roundtrip(port, old_w, old_r, 0.3))       # cut: silence, no reset
    new_r, new_w = await asyncio.open_connection("127.0.0.1", port)
    seen.append(await _roundtrip(port, new_w, new_r, 0.3))       # new one: accepted, silent
    flag.unlink()
    relay.apply_flag()
    seen.append(await asyncio.wait_for(new_r.read(), 1.0))      # restored: held ones closed (EOF)
    seen.append(await _roundtrip(port))                          # and new ones relay again
    for server in (front, upstream):
        server.close()
    return seen


def test_forwarder_blackhole_holds_then_releases(tmp_path):
    seen = asyncio.run(_blackhole_scenario(tmp_path / "api-down"))
    assert seen == [b"ping", b"ping", b"<silence>", b"<silence>", b"", b"ping"]


IP4, MAC = "192.168.1.240", "02:4c:32:00:00:12"


@pytest.mark.parametrize(("frame", "expected"), [
    (Ether(src=MAC) / ARP(op=2, hwsrc=MAC, psrc=IP4), MAC),
    (Ether(src=MAC) / ARP(op=1, hwsrc=MAC, psrc=IP4), None),
    (Ether(src=MAC) / ARP(op=2, hwsrc=MAC, psrc="192.168.1.241"), None),
], ids=["reply", "request", "other-ip"])
def test_arp_answer(frame, expected):
    assert probe.arp_answer(bytes(frame), IP4) == expected


IP6 = "fd00:4c32:6c62::240"


@pytest.mark.parametrize(("frame", "expected"), [
    (Ether(src=MAC) / IPv6() / ICMPv6ND_NA(tgt=IP6) / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:99"),
     "02:00:00:00:00:99"),
    (Ether(src=MAC) / IPv6() / ICMPv6ND_NA(tgt="fd00:4c32:6c62:0::240"), MAC),
    (Ether(src=MAC) / IPv6() / ICMPv6ND_NA(tgt="fd00:4c32:6c62::241"), None),
    (Ether(src=MAC) / IPv6(), None),
], ids=["option", "no-option-same-ip-other-spelling", "other-ip", "not-na"])
def test_ndp_answer(frame, expected):
    assert probe.ndp_answer(bytes(frame), IP6) == expected


def test_neighbor_solicitation_goes_to_the_solicited_node_group():
    frame = Ether(probe.neighbor_solicitation(IP6, MAC, "fd00:4c32:6c62::1"))
    assert frame.dst == "33:33:ff:00:02:40"
    assert frame[IPv6].dst == "ff02::1:ff00:240"
    assert frame[IPv6].hlim == 255


def test_pki_serving_and_client_certs():
    ca = pki.make_ca()
    server = pki.issue(ca, "kube-apiserver", server=True)
    admin = pki.issue(ca, "lab-admin", org="system:masters")
    for leaf in (server, admin):
        leaf.cert.verify_directly_issued_by(ca.cert)
    sans = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "kubernetes.default.svc"} <= set(sans.get_values_for_type(x509.DNSName))
    ips = set(sans.get_values_for_type(x509.IPAddress))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.96.0.1")} <= ips
    org = admin.cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert [a.value for a in org] == ["system:masters"]
    kc = pki.kubeconfig(b"ca", admin, "admin")
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
