"""The IP allocator: pure bookkeeping of which Service holds which pool address.

Core ring (pure, no I/O). Flow: controller -> `services.request_for(svc)` -> `Allocator.assign`
-> `Result` (addresses or a typed `Failure`) -> controller writes Service status and Events.

Rules (the issue's, and MetalLB's where it is silent):
- `assign(key, request)` is idempotent: a Service that already holds addresses that still fit its
  request keeps them. `request.current` carries the addresses in the Service's status, so the
  controller rebuilds state after a restart by assigning every Service (oldest first) before
  anything new; a valid address is never moved.
- An address that is in no pool any more (config swap) stays with its Service, flagged
  `outside_pools`, until the operator acts (deletes the Service or requests other addresses).
- Auto-assign: the lowest free address (ranges in config order, ascending within each) of the first
  auto-assign pool that admits the Service and can serve every required family, pools ordered by
  `service-allocation.priority` (lower first; pools without one after every numbered pool), then
  config order. One address per family, all from one pool. `avoid-buggy-ips` skips IPv4 addresses
  ending in .0 and .255.
- Who may use a pool (`service-allocation`, checked when `request.tenant` is given): a Service may
  be given, request by annotation, or request by address only a pool that admits it; a refusal is
  `Reason.NOT_ADMITTED` naming the pool and the rule. Addresses a Service already holds are kept
  when a later change of rules or labels no longer admits it (as an address outside every pool:
  never renumbered silently); the controller warns.
- Sharing: Services with the same sharing key may hold the same address when their (port, protocol)
  pairs do not clash and their backend keys (the selector, for externalTrafficPolicy Local) match.
  With a key, an already shared compatible address is preferred to a fresh one.
Free-address search walks a sorted list of used addresses, so its cost never grows with the pool's
size (a /64 is fine); it starts from a per-range mark below which every address is known taken
(lowered by a release), so a burst of n allocations costs O(n log n), not O(n^2).
Not guaranteed: thread safety (the controller calls it from one thread).
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from . import config as cfgmod

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class Reason(enum.Enum):
    """Why an allocation failed; the value is the metric label."""

    NO_CONFIG = "no_config"
    POOL_EXHAUSTED = "pool_exhausted"
    NO_POOL_FOR_FAMILY = "no_pool_for_family"
    NO_AUTO_ASSIGN_POOL = "no_auto_assign_pool"
    UNKNOWN_POOL = "unknown_pool"
    OUTSIDE_POOLS = "ip_outside_pools"
    WRONG_POOL = "ip_not_in_requested_pool"
    DIFFERENT_POOLS = "ips_in_different_pools"
    BUGGY_IP = "buggy_ip"
    IP_IN_USE = "ip_in_use"
    SHARING_CLASH = "sharing_port_clash"
    SHARING_MISMATCH = "sharing_incompatible"
    FAMILY_MISMATCH = "family_mismatch"
    BOTH_SET = "annotation_and_spec_set"
    INVALID_REQUEST = "invalid_request"
    NOT_ADMITTED = "pool_refuses_service"


@dataclass(frozen=True)
class Failure:
    reason: Reason
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, kw_only=True)
class Tenant:
    """Who asks: what a pool's service-allocation rules look at."""

    namespace: str
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    service_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Request:
    """What a Service asks for (built by `services.request_for`)."""

    families: tuple[int, ...] = (4,)  # wanted address families, primary first
    require_all: bool = True  # False for PreferDualStack: only the primary family is required
    ips: tuple[IP, ...] = ()  # explicitly requested addresses
    pool: str | None = None  # requested pool name
    sharing_key: str | None = None
    ports: frozenset[tuple[int, str]] = frozenset()  # (port, protocol)
    backend_key: str = ""  # the selector when externalTrafficPolicy is Local, else ""
    current: tuple[IP, ...] = ()  # addresses in the Service's status now
    error: Failure | None = None  # the Service itself is malformed (set by services.py)
    tenant: Tenant | None = None  # None: service-allocation rules are not checked


@dataclass(frozen=True, kw_only=True)
class Result:
    ips: tuple[IP, ...] = ()
    pool: str | None = None  # None when failed or when the addresses are outside every pool
    failure: Failure | None = None
    outside_pools: bool = False  # kept addresses that no pool contains any more

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class _Alloc:
    ips: tuple[IP, ...]
    pool: str | None
    request: Request


def _fail(reason: Reason, message: str) -> Result:
    return Result(failure=Failure(reason, message))


def _refusal(pool: cfgmod.Pool, req: Request) -> str | None:
    """Why pool's service-allocation refuses the requesting Service, or None."""
    t = req.tenant
    return None if t is None else pool.admits(t.namespace, t.namespace_labels, t.service_labels)


def _preference(pool: cfgmod.Pool) -> tuple[bool, int]:
    """Sort key among pools: numbered priorities first, lowest number first."""
    return (pool.priority is None, pool.priority or 0)


@dataclass
class _PoolTry:
    """Outcome of trying one pool: the chosen addresses or why not."""

    ips: list[IP] = field(default_factory=list)
    failure: Failure | None = None


class Allocator:
    """State: who holds which address. Construct, `set_config`, then `assign`/`release`."""

    def __init__(self, config: cfgmod.Config | None = None) -> None:
        self.config = config
        self._alloc: dict[str, _Alloc] = {}  # service key -> its allocation
        self._users: dict[IP, dict[str, Request]] = {}  # address -> service key -> request
        self._used: dict[int, list[int]] = {4: [], 6: []}  # family -> sorted used addresses (ints)
        self._floor: dict[tuple[int, int, int], int] = {}  # (family, start, end) -> all below taken

    # -- queries ----------------------------------------------------------------------------

    def ips_of(self, key: str) -> tuple[IP, ...]:
        a = self._alloc.get(key)
        return a.ips if a else ()

    def request_of(self, key: str) -> Request | None:
        a = self._alloc.get(key)
        return a.request if a else None

    def users(self, ip: IP) -> frozenset[str]:
        return frozenset(self._users.get(ip, {}))

    def holders(self) -> Iterator[str]:
        """Keys of the Services holding addresses."""
        return iter(self._alloc)

    def __len__(self) -> int:
        return len(self._alloc)

    def outside_pools(self) -> list[str]:
        """Keys holding an address no pool contains."""
        return [k for k, a in self._alloc.items() if any(not self._in_pools(ip) for ip in a.ips)]

    def stats(self) -> list[tuple[str, int, int]]:
        """(pool, addresses in use, addresses total) per pool, in config order."""
        if self.config is None:
            return []
        return [(p.name, sum(self._count_used(r) for r in p.addresses), p.size()) for p in self.config.pools]

    def _count_used(self, r: cfgmod.AddressRange) -> int:
        used = self._used[r.version]
        return bisect.bisect_right(used, r.end) - bisect.bisect_left(used, r.start)

    def _in_pools(self, ip: IP) -> bool:
        return self.config is not None and cfgmod.contains(self.config, ip)

    # -- changes ----------------------------------------------------------------------------

    def set_config(self, config: cfgmod.Config) -> list[str]:
        """Swap the config; every allocation stays. Returns keys now holding out-of-pool addresses."""
        self.config = config
        for key, a in list(self._alloc.items()):
            pool = self._pool_of_ips(a.ips)
            self._alloc[key] = replace(a, pool=pool.name if pool else None)
        return self.outside_pools()

    def release(self, key: str) -> tuple[IP, ...]:
        """Forget key's allocation; returns the addresses that became free (not shared any more)."""
        a = self._alloc.pop(key, None)
        if a is None:
            return ()
        freed = []
        for ip in a.ips:
            users = self._users.get(ip, {})
            users.pop(key, None)
            if not users:
                self._users.pop(ip, None)
                used = self._used[ip.version]
                del used[bisect.bisect_left(used, int(ip))]
                freed.append(ip)
                self._lower_floors(ip)
        return tuple(freed)

    def assign(self, key: str, req: Request) -> Result:
        """Give key addresses that fit req (keeping what it holds when that still fits)."""
        if req.error is not None:
            self.release(key)
            return Result(failure=req.error)
        if self.config is None:
            return _fail(Reason.NO_CONFIG, "no valid config (ConfigMap) loaded yet")
        held = self._alloc.get(key)
        for candidate in (held.ips if held else (), req.current):
            kept = self._keepable(key, req, candidate)
            if kept is not None:
                return self._commit(key, req, kept)
        # what it held no longer fits: free it first, so the search may hand the key its own old
        # addresses (else a second identical call would find them free and answer differently)
        self.release(key)
        result = self._allocate(key, req)
        if result.ok:
            return self._commit(key, req, result.ips)
        return result

    def _commit(self, key: str, req: Request, ips: Iterable[IP]) -> Result:
        ips = tuple(ips)
        self.release(key)
        for ip in ips:
            users = self._users.setdefault(ip, {})
            if not users:
                bisect.insort(self._used[ip.version], int(ip))
            users[key] = req
        pool = self._pool_of_ips(ips)
        self._alloc[key] = _Alloc(ips, pool.name if pool else None, req)
        outside = any(not self._in_pools(ip) for ip in ips)
        return Result(ips=ips, pool=pool.name if pool else None, outside_pools=outside)

    def _pool_of_ips(self, ips: Iterable[IP]) -> cfgmod.Pool | None:
        assert self.config is not None
        pools = {cfgmod.pool_of(self.config, ip) for ip in ips}
        return pools.pop() if len(pools) == 1 else None

    # -- keeping what a Service holds --------------------------------------------------------

    def _keepable(self, key: str, req: Request, ips: tuple[IP, ...]) -> tuple[IP, ...] | None:
        """ips, if the Service may go on holding them under req; else None."""
        ips = tuple(ip for ip in ips if ip.version in req.families)  # a dropped family is released
        if not ips or len({ip.version for ip in ips}) != len(ips):
            return None
        if req.ips and set(ips) != set(req.ips):
            return None
        if any(self._clash(key, req, ip) for ip in ips):
            return None
        pools = {cfgmod.pool_of(self.config, ip) for ip in ips}  # type: ignore[arg-type]
        if None in pools:  # out of every pool: keep (never renumber silently) unless another is asked
            return ips
        if len(pools) != 1:
            return None
        pool = pools.pop()
        assert pool is not None
        if req.pool and pool.name != req.pool:
            return None
        return self._complete(key, req, pool, ips)

    def _complete(self, key: str, req: Request, pool: cfgmod.Pool,
                  ips: tuple[IP, ...]) -> tuple[IP, ...] | None:
        """Add missing families from the same pool; None if a required one cannot be had."""
        have = {ip.version for ip in ips}
        out = list(ips)
        for i, fam in enumerate(req.families):
            if fam in have:
                continue
            ip = self._lowest(key, req, pool, fam)
            if ip is not None:
                out.append(ip)
            elif req.require_all or i == 0:
                return None
        return tuple(sorted(out, key=lambda a: req.families.index(a.version)))

    # -- fresh allocation -------------------------------------------------------------------

    def _allocate(self, key: str, req: Request) -> Result:
        assert self.config is not None
        if req.ips:
            return self._allocate_requested(key, req)
        if req.pool:
            pool = self.config.pool(req.pool)
            if pool is None:
                names = ", ".join(p.name for p in self.config.pools) or "none"
                return _fail(Reason.UNKNOWN_POOL, f"unknown pool {req.pool!r} (pools: {names})")
            refusal = _refusal(pool, req)
            if refusal is not None:
                return _fail(Reason.NOT_ADMITTED, f"pool {pool.name!r} refuses the Service: {refusal}")
            return self._from_pools(key, req, [pool])
        pools = [p for p in self.config.pools if p.auto_assign]
        if not pools:
            return _fail(Reason.NO_AUTO_ASSIGN_POOL, "no pool has auto-assign enabled; request a pool")
        admitted = [p for p in pools if _refusal(p, req) is None]
        if not admitted:
            why = "; ".join(f"pool {p.name!r}: {_refusal(p, req)}" for p in pools)
            return _fail(Reason.NOT_ADMITTED, f"no auto-assign pool admits the Service ({why})")
        # sorted() is stable: equal priorities keep config order
        return self._from_pools(key, req, sorted(admitted, key=_preference))

    def _from_pools(self, key: str, req: Request, pools: list[cfgmod.Pool]) -> Result:
        """First pool (in order) that serves every required family; else the most telling failure."""
        if not req.require_all and len(req.families) > 1:
            # PreferDualStack: a pool that serves every family beats an earlier one serving only the primary
            for pool in pools:
                t = self._try_pool(key, replace(req, require_all=True), pool)
                if t.failure is None:
                    return Result(ips=tuple(t.ips), pool=pool.name)
        failures = []
        for pool in pools:
            t = self._try_pool(key, req, pool)
            if t.failure is None:
                return Result(ips=tuple(t.ips), pool=pool.name)
            failures.append(t.failure)
        exhausted = [f.message for f in failures if f.reason is Reason.POOL_EXHAUSTED]
        if exhausted:
            return _fail(Reason.POOL_EXHAUSTED, "; ".join(exhausted))
        return Result(failure=failures[0])

    def _try_pool(self, key: str, req: Request, pool: cfgmod.Pool) -> _PoolTry:
        t = _PoolTry()
        for i, fam in enumerate(req.families):
            required = req.require_all or i == 0
            if fam not in pool.families():
                if required:
                    t.failure = Failure(Reason.NO_POOL_FOR_FAMILY,
                                        f"pool {pool.name!r} has no IPv{fam} addresses")
                    return t
                continue
            ip = self._lowest(key, req, pool, fam)
            if ip is None and required:
                t.failure = Failure(Reason.POOL_EXHAUSTED,
                                    f"pool {pool.name!r} has no free IPv{fam} address")
                return t
            if ip is not None:
                t.ips.append(ip)
        return t

    def _allocate_requested(self, key: str, req: Request) -> Result:
        assert self.config is not None
        pools = set()
        for ip in req.ips:
            if ip.version not in req.families:
                return _fail(Reason.FAMILY_MISMATCH, f"requested {ip} is IPv{ip.version}, but the Service's "
                             f"ipFamilies are {', '.join(f'IPv{f}' for f in req.families)}")
            pool = cfgmod.pool_of(self.config, ip)
            if pool is None:
                return _fail(Reason.OUTSIDE_POOLS, f"requested {ip} is outside every pool")
            if req.pool and pool.name != req.pool:
                return _fail(Reason.WRONG_POOL,
                             f"requested {ip} is in pool {pool.name!r}, not in {req.pool!r}")
            refusal = _refusal(pool, req)
            if refusal is not None:
                return _fail(Reason.NOT_ADMITTED, f"requested {ip} is in pool {pool.name!r}, which refuses "
                             f"the Service: {refusal}")
            if not pool.usable(ip):
                return _fail(Reason.BUGGY_IP, f"requested {ip} ends in .0 or .255 and pool {pool.name!r} "
                             "avoids buggy IPs")
            clash = self._clash(key, req, ip)
            if clash is not None:
                return Result(failure=clash)
            pools.add(pool.name)
        if len(pools) > 1:
            return _fail(Reason.DIFFERENT_POOLS,
                         f"requested addresses are in different pools: {', '.join(sorted(pools))}")
        if req.require_all and len(req.ips) < len(req.families):
            missing = sorted(set(req.families) - {ip.version for ip in req.ips})
            return _fail(Reason.FAMILY_MISMATCH,
                         f"RequireDualStack: no address requested for IPv{missing[0]}")
        return Result(ips=tuple(req.ips), pool=pools.pop())

    # -- address search and sharing ---------------------------------------------------------

    def _lowest(self, key: str, req: Request, pool: cfgmod.Pool, fam: int) -> IP | None:
        """A compatible shared address of the pool first (lowest), else the lowest free one."""
        if req.sharing_key:
            shared = [ip for ip, users in self._users.items()
                      if ip.version == fam and key not in users and pool.contains(ip)
                      and self._clash(key, req, ip) is None]
            if shared:
                return min(shared, key=int)
        for r in pool.addresses:
            if r.version == fam:
                ip = self._lowest_free(r, pool.avoid_buggy_ips)
                if ip is not None:
                    return ip
        return None

    def _lowest_free(self, r: cfgmod.AddressRange, avoid_buggy: bool) -> IP | None:
        used = self._used[r.version]
        mark = (r.version, r.start, r.end)
        cand = max(r.start, self._floor.get(mark, r.start))
        i = bisect.bisect_left(used, cand)
        while cand <= r.end:
            if avoid_buggy and r.version == 4 and cand & 0xFF in (0, 255):
                cand += 1
            elif i < len(used) and used[i] == cand:
                cand, i = cand + 1, i + 1
            else:
                self._floor[mark] = cand  # every address below cand is taken (or avoided)
                return ipaddress.ip_address(cand) if r.version == 4 else ipaddress.IPv6Address(cand)
        self._floor[mark] = cand
        return None

    def _lower_floors(self, ip: IP) -> None:
        """A freed address may be the lowest free one again: move the marks of its ranges down."""
        n = int(ip)
        for mark, floor in self._floor.items():
            if mark[0] == ip.version and mark[1] <= n < floor:
                self._floor[mark] = n

    def _clash(self, key: str, req: Request, ip: IP) -> Failure | None:
        """Why key may not hold ip next to its current users, or None."""
        for other, oreq in self._users.get(ip, {}).items():
            if other == key:
                continue
            if not req.sharing_key or req.sharing_key != oreq.sharing_key:
                return Failure(Reason.IP_IN_USE, f"{ip} is in use by {other}")
            if req.backend_key != oreq.backend_key:
                return Failure(Reason.SHARING_MISMATCH, f"{ip} is shared with {other}, whose "
                               "externalTrafficPolicy/selector differ (Local needs identical selectors)")
            common = sorted(req.ports & oreq.ports)
            if common:
                port, proto = common[0]
                return Failure(Reason.SHARING_CLASH,
                               f"sharing clash on port {port}/{proto} with {other} ({ip})")
        return None
