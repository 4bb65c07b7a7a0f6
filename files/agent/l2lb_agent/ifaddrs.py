"""The addresses of this node's interfaces, from the kernel (adapter ring: rtnetlink).

Place in the flow: ``Speaker`` (every few seconds) -> ``read(names)`` -> the registration Lease
(``speaker_registry``: annotation ``l2lb.io/interfaces``) -> every speaker's ``placement``, which
answers an IP only on an interface whose subnet holds it (issue: announcing on the wrong NIC).

One RTM_GETADDR dump over a netlink socket: every address of every interface (IPv4 secondaries
included, which the old ioctls miss), no subprocess, nothing to install in the image.
``parse`` is pure and tested with built messages; host-scope addresses (loopback) are skipped.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from collections.abc import Container, Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_DONE, NLMSG_ERROR = 3, 2
IFA_ADDRESS, IFA_LOCAL = 1, 2
RT_SCOPE_HOST = 254
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12
_NLMSG = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse(data: bytes, wanted: Container[int] | None = None) -> tuple[list[tuple[int, IPInterface]], bool]:
    """(ifindex, address/prefix) pairs from netlink messages (of the wanted interfaces only: a node
    may hold thousands of LoadBalancer addresses on kube-lb0), and whether the dump ended."""
    out, offset, done = [], 0, False
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data):
            break  # malformed: stop rather than loop or read past the buffer
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            done = True
        elif kind == RTM_NEWADDR and length >= _NLMSG.size + _IFADDRMSG.size and (
                wanted is None or _IFADDRMSG.unpack_from(data, offset + _NLMSG.size)[4] in wanted):
            found = _address(data[offset + _NLMSG.size: offset + length])
            if found is not None:
                out.append(found)
        offset += _align(length)
    return out, done


def _address(msg: bytes) -> tuple[int, IPInterface] | None:
    family, prefix, _flags, scope, index = _IFADDRMSG.unpack_from(msg, 0)
    if scope == RT_SCOPE_HOST or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs: dict[int, bytes] = {}
    offset = _IFADDRMSG.size
    while offset + _RTATTR.size <= len(msg):
        length, kind = _RTATTR.unpack_from(msg, offset)
        if length < _RTATTR.size or offset + length > len(msg):
            break
        attrs[kind] = msg[offset + _RTATTR.size: offset + length]
        offset += _align(length)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)  # IFA_LOCAL: ours (IFA_ADDRESS: a peer's on p2p)
    size = 4 if family == socket.AF_INET else 16
    if raw is None or len(raw) != size:
        return None
    return index, ipaddress.ip_interface((ipaddress.ip_address(raw), prefix))


def read(names: Iterable[str]) -> dict[str, tuple[IPNetwork, ...]]:
    """name -> the subnets of its addresses (sorted), for each of these interfaces that exists."""
    index_of = {}
    for name in names:
        try:
            index_of[socket.if_nametoindex(name)] = name
        except OSError:
            continue
    nets: dict[str, set[IPNetwork]] = {name: set() for name in index_of.values()}
    for index, iface in _dump(set(index_of)):
        if index in index_of and not iface.is_link_local:  # fe80::/64 is on every link: says nothing
            nets[index_of[index]].add(iface.network)
    return {name: tuple(sorted(found, key=lambda n: (n.version, n))) for name, found in nets.items()}


def _dump(wanted: set[int]) -> list[tuple[int, IPInterface]]:
    """One RTM_GETADDR dump per wanted interface. With strict checking (Linux >= 4.20) the kernel
    returns that interface's addresses only; without it, every address, filtered in ``parse``."""
    found: list[tuple[int, IPInterface]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(2.0)
        with contextlib.suppress(OSError):  # an older kernel: the whole dump, filtered in parse
            sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        for seq, index in enumerate(sorted(wanted), 1):
            body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)
            sock.send(_NLMSG.pack(_NLMSG.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
                      + body)
            for _read in range(1000):  # bounded: a dump of a few hundred addresses takes a handful of reads
                part, done = parse(sock.recv(1 << 16), wanted)
                found += part
                if done:
                    break
    return found


def format_interfaces(ifaces: dict[str, tuple[IPNetwork, ...]]) -> str:
    """The registration annotation: "eth0=192.168.1.0/24,fd00::/64;eth1=10.0.2.0/24"."""
    return ";".join(f"{name}={','.join(str(n) for n in nets)}" for name, nets in sorted(ifaces.items()))


def parse_interfaces(text: str) -> dict[str, tuple[IPNetwork, ...]] | None:
    """The inverse of format_interfaces; None when the text is not in that form (unknown, not empty)."""
    out: dict[str, tuple[IPNetwork, ...]] = {}
    try:
        for part in filter(None, text.split(";")):
            name, _sep, nets = part.partition("=")
            if not name.strip():
                return None
            out[name.strip()] = tuple(ipaddress.ip_network(n.strip(), strict=False)
                                      for n in nets.split(",") if n.strip())
    except ValueError:
        return None
    return out
