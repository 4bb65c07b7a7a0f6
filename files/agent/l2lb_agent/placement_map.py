"""Where each IP may be announced: which nodes, and on which of their interfaces (core ring, pure).

The speakers' side; `placement` holds the controller's warnings about the same rules.

Place in the flow: pools (``config``), Nodes' labels, and every speaker's interfaces with their
subnets (registration annotation ``l2lb.io/interfaces``, from ``ifaddrs``) -> ``Placement`` ->
``OwnerIndex.set_allowed(placement.allowed)`` (who may own an IP) and the announcer (on which of
this node's interfaces it answers). Every speaker builds the same Placement from the same
objects, so they agree on owners without talking.

Rules, per IP (its pool is the one whose ranges hold it):
* ``node-selectors``: only nodes whose labels match one of them (none listed: every node);
* ``interfaces`` listed: only those interfaces (names or globs) of the node's speaker; a node
  with none of them is not a candidate (the IP moves to a node that can answer);
* no ``interfaces`` (the default, subnet-aware): only interfaces whose own subnet holds the IP,
  and a node with no such interface is not a candidate. When no node at all has such a subnet
  (the pool is routed to the LAN some other way), every interface of the speaker answers, as
  before (the controller warns: ``NoMatchingSubnet``);
* a node whose speaker has not published its interfaces (an older speaker, mid-upgrade) counts
  as able to answer on all of them: unknown is not "cannot".
IPs outside every pool are answered anywhere (as before pools had placement rules).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from .config import Config, Network, Pool, pool_of

IPNetwork = Network
Interfaces = Mapping[str, tuple[IPNetwork, ...]]  # interface name -> its subnets


MAX_CACHED_IPS = 100_000  # IPs whose pool and subnets a Placement keeps (about 10 MB at most)


class Placement:
    """allowed(ip) -> nodes that may own ip (None: any); ports(ip, node) -> its interfaces for ip."""

    def __init__(self, config: Config | None, labels: Mapping[str, Mapping[str, str]],
                 interfaces: Mapping[str, Interfaces | None], previous: Placement | None = None) -> None:
        """labels: node -> its labels (every Node); interfaces: node -> what its speaker published
        (None or absent: not published); previous: the Placement this one replaces, whose parsed
        IPs it shares when the pools and the published subnets are the same (a speaker leaving
        or joining, a label change: no IP is parsed again)."""
        self.config = config
        self.labels = {n: dict(v) for n, v in labels.items()}
        self.interfaces = {n: (dict(v) if v is not None else None) for n, v in interfaces.items()}
        self._nets = sorted({net for ifs in self.interfaces.values() if ifs for nets in ifs.values()
                             for net in nets}, key=lambda n: (n.version, n))
        self._allowed: dict[tuple[str, frozenset[IPNetwork]], frozenset[str] | None] = {}
        self._where_of: dict[str, tuple[Pool | None, frozenset[IPNetwork]]] = {}  # see _where
        if previous is not None and previous.config == config and previous._nets == self._nets:
            self._where_of = previous._where_of  # depends on the pools and the subnets only

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Placement) and self.config == other.config and self.labels == other.labels
                and self.interfaces == other.interfaces)

    __hash__ = None  # type: ignore[assignment]  # mutable cache inside: not hashable

    def _pool(self, ip: str) -> Pool | None:
        return pool_of(self.config, ip) if self.config is not None else None

    def _containing(self, ip: str) -> frozenset[IPNetwork]:
        addr = ipaddress.ip_address(ip)
        return frozenset(n for n in self._nets if n.version == addr.version and addr in n)

    def _subnet_fallback(self, pool: Pool, containing: frozenset[IPNetwork]) -> bool:
        """Subnet-aware placement applies unless no published subnet holds the IP at all."""
        return not pool.interfaces and not containing

    def _where(self, ip: str) -> tuple[Pool | None, frozenset[IPNetwork]]:
        """ip's pool and the published subnets holding it (those only matter without interfaces),
        parsed once per IP: owners and ports are asked about thousands of IPs at a takeover."""
        found = self._where_of.get(ip)
        if found is None:
            if len(self._where_of) >= MAX_CACHED_IPS:  # IPs come and go for months: stay bounded
                self._where_of.clear()
            pool = self._pool(ip)
            containing = self._containing(ip) if pool is not None and not pool.interfaces else frozenset()
            found = self._where_of[ip] = (pool, containing)
        return found

    def ports(self, ip: str, node: str) -> frozenset[str] | None:
        """The node's interfaces that may answer ip (empty: none); None: all of them."""
        pool, containing = self._where(ip)
        ifaces = self.interfaces.get(node)
        if pool is None or ifaces is None:
            return None
        if pool.interfaces:
            return frozenset(name for name in ifaces if pool.interface_matches(name))
        if self._subnet_fallback(pool, containing):
            return None
        return frozenset(name for name, nets in ifaces.items() if containing.intersection(nets))

    def allowed(self, ip: str) -> frozenset[str] | None:
        """Nodes that may own ip (None: no restriction)."""
        pool, containing = self._where(ip)
        if pool is None:
            return None
        key = (pool.name, containing)
        if key not in self._allowed:
            self._allowed[key] = self._compute(ip, pool, containing)
        return self._allowed[key]

    def _compute(self, ip: str, pool: Pool, containing: frozenset[IPNetwork]) -> frozenset[str] | None:
        if not pool.node_selectors and self._subnet_fallback(pool, containing):
            return None
        nodes = [n for n, labels in self.labels.items() if pool.node_matches(labels)]
        return frozenset(n for n in nodes if self.ports(ip, n) != frozenset())

    def why_not(self, ip: str, node: str) -> str | None:
        """Why node may not own ip (for logs), or None when it may."""
        pool = self._pool(ip)
        if pool is None:
            return None
        if not pool.node_matches(self.labels.get(node, {})):
            return f"node {node} matches no node-selectors of pool {pool.name}"
        if self.ports(ip, node) == frozenset():
            what = (f"interfaces {list(pool.interfaces)}" if pool.interfaces else f"a subnet holding {ip}")
            return f"node {node} has no interface matching pool {pool.name}'s {what}"
        return None
