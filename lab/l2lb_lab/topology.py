"""The lab's fixed names, addresses and paths: the single definition the rest of the lab reads.

Pure values only (no I/O). docs/internals.md ("Lab") is the human-readable copy of this contract.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LAN_NS = "l2lb-lan"
BRIDGE = "br0"
CLIENT_NS = "l2lb-client"
NODE_NAMES: tuple[str, ...] = ("node1", "node2", "node3")  # rebound by set_node_count
LAN_V4_PREFIX = 24
LAN_V6_PREFIX = 64
IFACE = "eth0"
LB_DUMMY = "kube-lb0"

API_HOST = "127.0.0.1"
API_PORT = 6443
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
KCM_PORT = 12257
SCHEDULER_PORT = 12259
SERVICE_CIDRS = "10.96.0.0/16,fd00:10:96::/112"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True, kw_only=True)
class Host:
    """One namespace on the LAN: the client or a node."""

    name: str  # short name: "client" or "node1".."nodeN" (= Kubernetes node name)
    netns: str
    ipv4: str
    ipv6: str
    mac: str
    bridge_port: str  # the veth end inside LAN_NS that plugs this host into br0


def _host(name: str, last: int) -> Host:
    return Host(
        name=name,
        netns=f"l2lb-{name}",
        ipv4=f"192.168.1.{last}",
        ipv6=f"fd00:4c32:6c62::{last}",
        mac=f"02:4c:32:00:00:{last:02d}",
        bridge_port=f"v{name}",
    )


CLIENT = _host("client", 1)
DEFAULT_NODE_COUNT = 3
MAX_NODE_COUNT = 60  # 192.168.1.11-70: far below the pools the demo and tests use (.240+)


def node_count_file(root: Path | None = None) -> Path:
    """Where `lab up --nodes N` records N, so every later `lab` command sees the same nodes."""
    return (root or repo_root()) / ".lab" / "node-count"


def _recorded_count() -> int:
    try:
        n = int(node_count_file().read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_NODE_COUNT
    return n if 1 <= n <= MAX_NODE_COUNT else DEFAULT_NODE_COUNT


def set_node_count(n: int) -> None:
    """Rebind NODE_NAMES / NODES / HOSTS for n nodes (node1..nodeN, 192.168.1.11..)."""
    global NODE_NAMES, NODES, HOSTS
    if not 1 <= n <= MAX_NODE_COUNT:
        raise ValueError(f"--nodes: expected 1-{MAX_NODE_COUNT}, got {n}")
    NODE_NAMES = tuple(f"node{i}" for i in range(1, n + 1))
    NODES = tuple(_host(name, 11 + i) for i, name in enumerate(NODE_NAMES))
    HOSTS = (CLIENT, *NODES)


NODES: tuple[Host, ...] = ()
HOSTS: tuple[Host, ...] = ()


def find_host(name: str) -> Host:
    """Resolve `client`, `node1` or a full netns name (`l2lb-node1`) to its Host."""
    for h in HOSTS:
        if name in (h.name, h.netns):
            return h
    known = ", ".join(h.name for h in HOSTS)
    raise ValueError(f"unknown lab namespace {name!r}: expected one of {known} (or l2lb-<name>)")


def find_node(name: str) -> Host:
    """Like find_host, but only nodes are accepted."""
    host = find_host(name)
    if host not in NODES:
        raise ValueError(f"{name!r} is not a lab node: expected one of {', '.join(NODE_NAMES)}")
    return host


def repo_root() -> Path:
    """The checkout holding this package (installed editable), or $L2LB_REPO."""
    env = os.environ.get("L2LB_REPO")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


set_node_count(_recorded_count())


@dataclass(frozen=True)
class Paths:
    """Where the lab keeps its state: everything under <repo>/.lab, removed by `lab down`."""

    repo: Path

    @property
    def state(self) -> Path:
        return self.repo / ".lab"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def etcd(self) -> Path:
        return self.state / "etcd"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def api_sock(self) -> Path:
        return self.run / "api.sock"

    @property
    def python(self) -> Path:
        return self.repo / ".venv" / "bin" / "python"

    @property
    def build_script(self) -> Path:
        return self.repo / "lab" / "k8s-build" / "build.sh"

    def node_state(self, node: str) -> Path:
        return self.state / "nodes" / node

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def blackhole_flag(self, host: str) -> Path:
        return self.run / f"api-down-{host}"
