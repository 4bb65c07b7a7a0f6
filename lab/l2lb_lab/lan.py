"""The lab's LAN: network namespaces joined by bridge br0, which lives in netns l2lb-lan.

Second step of `lab up` (after the control plane). Every device is created directly inside
its namespace (`ip -n`), so the host namespace never gets an address, a route or a link.
Node namespaces get arp_ignore=1/arp_announce=2 so their kernel never answers ARP for the
LoadBalancer IPs the kubelet parks on the dummy `kube-lb0`: only the l2lb speaker may.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import topology as topo

NODE_NETNS_PREFIX = "l2lb-node"
# node namespaces of a larger lab, and extra clients tests add (a second LAN): `lab down` removes them
EXTRA_NETNS_PREFIXES = (NODE_NETNS_PREFIX, "l2lb-client-")


def all_netns() -> tuple[str, ...]:
    """Every lab namespace: the LAN's, the hosts', and any node namespace left by a larger lab."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    extra = [ln.split()[0] for ln in listed.splitlines()
             if ln.startswith(EXTRA_NETNS_PREFIXES) and ln.split()[0] not in {h.netns for h in topo.HOSTS}]
    return (topo.LAN_NS, *(h.netns for h in topo.HOSTS), *sorted(extra))


def arp_sysctls(dev: str) -> list[str]:
    """Answer ARP only for addresses on the receiving link; announce only the link's own address."""
    return [f"net.ipv4.conf.{dev}.arp_ignore=1", f"net.ipv4.conf.{dev}.arp_announce=2"]


class LanError(RuntimeError):
    """An `ip` command failed while building or changing the LAN."""


def run(*args: str) -> str:
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LanError(f"`{' '.join(args)}` failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def sysctl(netns: str, *settings: str) -> None:
    run("ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings)


def is_complete() -> bool:
    """All namespaces exist and every host is plugged into the bridge."""
    if not all(netns_exists(n) for n in (topo.LAN_NS, *(h.netns for h in topo.HOSTS))):
        return False
    ports = subprocess.run(["ip", "-n", topo.LAN_NS, "-o", "link", "show", "master", topo.BRIDGE],
                           capture_output=True, text=True, check=False).stdout
    return all(f" {h.bridge_port}@" in ports for h in topo.HOSTS)


def create() -> None:
    """Build the LAN from nothing (call delete() first if remains may exist)."""
    lan = topo.LAN_NS
    run("ip", "netns", "add", lan)
    run("ip", "-n", lan, "link", "set", "lo", "up")
    # bridge ports carry frames only: no IPv6 link-local chatter from the switch itself
    sysctl(lan, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    # a dumb switch: no STP delay, and multicast (NDP solicitations) flooded to every port
    run("ip", "-n", lan, "link", "add", topo.BRIDGE, "type", "bridge",
        "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
    run("ip", "-n", lan, "link", "set", topo.BRIDGE, "up")
    for host in topo.HOSTS:
        _add_host(host)


def _add_host(host: topo.Host) -> None:
    ns, lan, dev = host.netns, topo.LAN_NS, topo.IFACE
    run("ip", "netns", "add", ns)
    run("ip", "-n", ns, "link", "set", "lo", "up")
    # no duplicate address detection: addresses are usable at once, and the lab owns the LAN
    sysctl(ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    if host in topo.NODES:
        sysctl(ns, *arp_sysctls("all"), *arp_sysctls("default"))
    run("ip", "-n", lan, "link", "add", host.bridge_port, "type", "veth",
        "peer", "name", dev, "address", host.mac, "netns", ns)
    run("ip", "-n", ns, "addr", "add", f"{host.ipv4}/{topo.LAN_V4_PREFIX}", "dev", dev)
    run("ip", "-n", ns, "addr", "add", f"{host.ipv6}/{topo.LAN_V6_PREFIX}", "dev", dev, "nodad")
    run("ip", "-n", ns, "link", "set", dev, "up")
    if host in topo.NODES:
        sysctl(ns, *arp_sysctls(dev))
        _add_dummy(ns)
    run("ip", "-n", lan, "link", "set", host.bridge_port, "master", topo.BRIDGE, "up")


def _add_dummy(ns: str) -> None:
    """kube-lb0: a link-less home for LoadBalancer IPs. Kernels built without the dummy driver
    (as here) get an ifb device instead, which behaves the same for this: NOARP, never transmits."""
    try:
        run("ip", "-n", ns, "link", "add", topo.LB_DUMMY, "type", "dummy")
    except LanError:
        run("ip", "-n", ns, "link", "add", topo.LB_DUMMY, "type", "ifb")
    run("ip", "-n", ns, "link", "set", topo.LB_DUMMY, "up")


def delete() -> list[str]:
    """Remove every lab namespace that exists (their processes must be gone); return the names removed."""
    removed = []
    for name in reversed(all_netns()):
        if netns_exists(name):
            run("ip", "netns", "del", name)
            removed.append(name)
    return removed


def set_port(host: topo.Host, up: bool) -> None:
    """Plug or unplug a host's cable: its bridge-side veth goes up or down (its eth0 loses carrier)."""
    run("ip", "-n", topo.LAN_NS, "link", "set", host.bridge_port, "up" if up else "down")


def port_is_up(host: topo.Host) -> bool:
    out = subprocess.run(["ip", "-n", topo.LAN_NS, "-o", "link", "show", host.bridge_port],
                         capture_output=True, text=True, check=False).stdout
    flags = out.split("<", 1)[-1].split(">", 1)[0].split(",")
    return "UP" in flags
