"""Who announces each IP, as one cluster-scoped ``IPAnnouncement`` object per IP (adapter ring).

Place in the flow: ``speaker._apply`` (an IP gained or lost) -> ``StatusWriter.announced`` /
``released`` -> a coalescing per-IP queue -> one background thread -> the API server ->
``kubectl get ipannouncements`` and ``l2lb_info``. The controller deletes an IP's object when
it releases the IP and sweeps orphans (``orphans``).

Why a CRD and not a Service condition: a write on a Service wakes every speaker's and the
controller's Service watch; an IPAnnouncement is watched by nobody in l2lb. One object per IP,
not per Service, because ownership is per IP (Services may share one).

Writes (the point of this module is how few there are):
* gaining an IP: compare first (the start-up LIST, what this node wrote last, else one GET); no
  write when the object already names this node (steady state, restarts). Otherwise one status
  patch, or for a brand-new IP one create plus one status patch (POST ignores status when the
  status subresource is on). An IP nobody announced before in this node's view, that the start-up
  LIST lacked and this node never read since, is created without a GET first: objects are only
  created by the first owner, so it is most likely still absent, and if a peer created it
  meanwhile the create says so (then one GET). An IP taken over from a peer is read first: its
  object most likely exists.
* losing an IP to another node: nothing; the new owner writes. Losing it to nobody: one patch
  setting node "" with a reason, conditional on the object still naming this node (a faster new
  owner is never overwritten). Silenced while still the desired owner (not ready, stale view):
  the same, but only after ``RELEASE_GRACE`` and only if nobody took the IP meanwhile.
* a later call for the same IP replaces a pending one (coalescing): a flapping IP costs at most
  one write per attempt, and failures retry with backoff on the writer's thread, never the caller's.
Not guaranteed: a speaker killed or shut down as the last node leaves its name on its objects
(no node is left to write); the object does not prove the node is answering ARP right now.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from . import events, kube

log = logging.getLogger(__name__)

GROUP, VERSION, KIND, PLURAL = "l2lb.io", "v1alpha1", "IPAnnouncement", "ipannouncements"
IPANNOUNCEMENTS = kube.Resource(f"{GROUP}/{VERSION}", PLURAL, KIND)
RELEASE_GRACE = 2.0  # s a silenced owner waits before saying "nobody": a peer normally takes over first
FIRST_RETRY, MAX_RETRY = 0.25, 30.0  # s, doubling per failure of one IP
PRIME_FRESH = 10.0  # s the start-up LIST is trusted for
NO_CRD_RETRY = 5.0  # s between probes (one IP's write) while the CRD is not installed: the rest wait
# IPs written per second after a burst: a survivor inheriting thousands of IPs (a 3-node cluster
# at 10,000 Services) would otherwise send them a GET and a patch each as fast as the API server
# answers, on the API server the whole cluster shares, for a status nobody in l2lb waits on
WRITE_QPS, WRITE_BURST = 50.0, 200.0


# -- names (pure) -------------------------------------------------------------------------------

def object_name(ip: str) -> str:
    """The object's name: the canonical IP with '.' and ':' as '-' ("192-168-1-240", "fd00-4c32--f0").

    Injective (ip_of inverts it) and a valid DNS-1123 subdomain: IPv4 names never hold "--";
    an IPv6 '::' at either end gets a 0 ("::1" -> "0--1") so the name starts and ends alphanumeric."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError as exc:
        raise ValueError(f"ip: {ip!r} is not an IPv4 or IPv6 address") from exc
    if getattr(addr, "scope_id", None):  # fe80::1%eth0: a LoadBalancer IP is never scoped
        raise ValueError(f"ip: {ip!r} is not an IPv4 or IPv6 address (a scoped one)")
    if addr.version == 4:
        return str(addr).replace(".", "-")
    text = _compressed(addr.exploded)
    if text.startswith(":"):
        text = "0" + text
    if text.endswith(":"):
        text += "0"
    return text.replace(":", "-")


def _compressed(exploded: str) -> str:
    """RFC 5952 text without the dotted IPv4 tail Python uses for mapped addresses."""
    groups = [g.lstrip("0") or "0" for g in exploded.split(":")]
    best, start = (0, -1), -1
    for i, g in enumerate([*groups, "x"]):
        if g == "0" and start < 0:
            start = i
        elif g != "0" and start >= 0:
            best, start = max(best, (i - start, -start)), -1
    length, first = best[0], -best[1]
    if length < 2:
        return ":".join(groups)
    return ":".join(groups[:first]) + "::" + ":".join(groups[first + length:])


def ip_of(name: str) -> str:
    """The IP an object name stands for (the inverse of object_name)."""
    text = name.replace("-", ":") if name.count("-") != 3 or "--" in name else name.replace("-", ".")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise ValueError(f"name: {name!r} is not an IPAnnouncement name") from exc


def announced_ip(obj: Mapping[str, Any]) -> str | None:
    """The exact IP an object is about (spec.ip)."""
    return (obj.get("spec") or {}).get("ip")


def orphans(objects: Iterable[Mapping[str, Any]], held: Iterable[str]) -> list[Mapping[str, Any]]:
    """Objects whose IP no Service holds (the controller deletes them)."""
    keep = {str(ipaddress.ip_address(ip)) for ip in held}
    return [o for o in objects if announced_ip(o) not in keep]


# -- what to write (pure) -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Want:
    """What this node wants an IP's object to say. node "" = nobody announces it."""

    node: str
    services: tuple[str, ...] = ()
    reason: str = ""
    not_before: float = 0.0  # monotonic; a release that waits for a peer to take over first


class Action(enum.Enum):
    NOTHING = "nothing"
    CREATE = "create"  # no object: create it, then set its status
    CLAIM = "claim"  # set node (and services) to this node
    CLEAR = "clear"  # node "" with a reason, only if the object still names this node


def decide(want: Want, me: str, current: Mapping[str, Any] | None) -> Action:
    """The one write (or none) that makes the object say what `want` says."""
    status = (current or {}).get("status") or {}
    if want.node:
        if current is None:
            return Action.CREATE
        same = status.get("node") == want.node and tuple(status.get("services") or ()) == want.services
        return Action.NOTHING if same else Action.CLAIM
    if current is None or status.get("node") != me:
        return Action.NOTHING  # gone, or a new owner already wrote: never overwrite it
    return Action.CLEAR


class Queue:
    """Pending wants per IP, coalesced, with per-IP backoff. Pure: time is passed in."""

    def __init__(self) -> None:
        self.wants: dict[str, Want] = {}  # ip -> latest want not yet written
        self._due: dict[str, float] = {}  # ip -> monotonic time of the next attempt
        self._failures: dict[str, int] = {}  # ip -> failed attempts in a row
        self._held_until = float("-inf")  # nothing is due before this (see hold)

    def put(self, ip: str, want: Want, now: float) -> None:
        """Replace any pending want for ip; due at once (or at want.not_before)."""
        self.wants[ip] = want
        self._due[ip] = max(now, want.not_before) if ip not in self._failures else self._due[ip]

    def due(self, now: float) -> list[tuple[str, Want]]:
        if self.held(now):
            return []
        return [(ip, self.wants[ip]) for ip, at in sorted(self._due.items(), key=lambda kv: kv[1])
                if at <= now]

    def pending(self, ip: str, now: float) -> Want | None:
        """The want for ip if it is due now (a later call may have replaced or settled it)."""
        due = self._due.get(ip)
        return self.wants[ip] if due is not None and due <= now else None

    def next_due(self) -> float | None:
        first = min(self._due.values(), default=None)
        return None if first is None else max(first, self._held_until)

    def hold(self, until: float) -> None:
        """Nothing is due before `until`, whatever each IP's own time (the CRD is missing: one
        probe per interval for all IPs, not one request per IP)."""
        self._held_until = until

    def held(self, now: float) -> bool:
        return now < self._held_until

    def done(self, ip: str, want: Want) -> None:
        """Written (or nothing to write): forget it, unless a newer want came meanwhile."""
        self._failures.pop(ip, None)
        if self.wants.get(ip) == want:
            del self.wants[ip], self._due[ip]

    def failed(self, ip: str, now: float, delay: float | None = None) -> float:
        """Try again later: FIRST_RETRY doubling to MAX_RETRY (or `delay`). Returns the delay."""
        n = self._failures.get(ip, 0) + 1
        self._failures[ip] = n
        wait = delay if delay is not None else min(MAX_RETRY, FIRST_RETRY * 2 ** (n - 1))
        self._due[ip] = now + wait
        return wait


# -- the writer (I/O) -----------------------------------------------------------------------------

class NoCrd(kube.NotFound):
    """The API server does not serve ipannouncements (the CRD is not installed)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_object(ip: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": object_name(ip), "labels": {"app.kubernetes.io/name": "l2lb"}},
            "spec": {"ip": str(ipaddress.ip_address(ip))}}


class StatusWriter:
    """Keeps IPAnnouncements up to date for one node. start() / stop(); calls never block."""

    def __init__(self, client: kube.KubeClient, node: str, qps: float = WRITE_QPS,
                 burst: float = WRITE_BURST) -> None:
        self._client, self._node = client, node
        self._queue = Queue()
        self._bucket = events.TokenBucket(qps, burst)  # used by the writer's thread only
        self._known: dict[str, dict[str, Any] | None] = {}  # ip -> object as last listed/written
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writes = 0  # requests that changed an object (create, status patch)
        self.failures = 0
        self._crd_missing_logged = False
        self._listed: dict[str, dict[str, Any]] = {}  # ip -> object, from the LIST at start
        self._listed_until = float("-inf")
        self._listed_ips: frozenset[str] | None = None  # every IP the start-up LIST had (None: no LIST)
        self._touched: set[str] = set()  # IPs read or written since start
        self._first_owned: set[str] = set()  # IPs claimed while nobody had announced them before

    def announced(self, ip: str, services: tuple[str, ...], taken_from: str | None = None) -> None:
        """This node answers for ip now (on behalf of these Service keys); taken_from: the node
        that announced it before, in this node's view (None: nobody, so its object may not exist)."""
        with self._lock:
            if taken_from is None:
                self._first_owned.add(ip)
            else:
                self._first_owned.discard(ip)
        self._put(ip, Want(node=self._node, services=tuple(sorted(services))))

    def released(self, ip: str, new_owner: str | None, why: str) -> None:
        """This node stopped answering for ip; new_owner is who should (None: nobody)."""
        with self._lock:
            self._known.pop(ip, None)  # others may write it from now on: read it before the next write
            if new_owner not in (None, self._node):  # the new owner writes
                self._queue.done(ip, self._queue.wants.get(ip, Want(node="")))
                return
        grace = RELEASE_GRACE if new_owner == self._node else 0.0
        self._put(ip, Want(node="", reason=why, not_before=time.monotonic() + grace))

    def busy(self) -> bool:
        """Writes are waiting (not held back by a missing CRD): Events wait for them."""
        with self._lock:
            return bool(self._queue.wants) and not self._queue.held(time.monotonic())

    def backlog(self) -> int:
        """IPs waiting for a write (after a takeover at scale: thousands, drained at WRITE_QPS)."""
        with self._lock:
            return len(self._queue.wants)

    def _put(self, ip: str, want: Want) -> None:
        with self._lock:
            self._queue.put(ip, want, time.monotonic())
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="announce-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Pending writes are dropped: at shutdown the peers taking over write anyway."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(1.0)  # short: the speaker's grace period is 5 s in all

    def _loop(self) -> None:
        self._prime()
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                batch = self._queue.due(now)
                nxt = self._queue.next_due()
            for ip, _want in batch:
                if self._stop.wait(self._bucket.reserve(time.monotonic())):
                    return
                with self._lock:
                    now = time.monotonic()
                    if self._queue.held(now):
                        break  # the CRD is missing: the rest waits for the next probe
                    want = self._queue.pending(ip, now)  # the batch may be seconds old by now
                if want is not None:
                    self._attempt(ip, want)
            if not batch:
                self._wake.wait(1.0 if nxt is None else min(1.0, max(0.0, nxt - now)))
                self._wake.clear()

    def _prime(self) -> None:
        """One LIST at start: objects that already name this node need no write after a restart.
        Trusted for PRIME_FRESH seconds only: later, peers may have written them since."""
        try:
            items, _rv = self._client.list(IPANNOUNCEMENTS)
        except kube.ApiError as exc:
            log.info("IPAnnouncements not listed (%s): each IP is read before its first write", exc)
            return
        with self._lock:
            self._listed = {ip: obj for obj in items if (ip := announced_ip(obj))}
            self._listed_until = time.monotonic() + PRIME_FRESH
            self._listed_ips = frozenset(self._listed)

    def _attempt(self, ip: str, want: Want) -> None:
        try:
            self._write(ip, want)
        except kube.ApiError as exc:
            self.failures += 1
            crd_missing = isinstance(exc, NoCrd)
            with self._lock:
                self._known.pop(ip, None)  # read it again next time
                now = time.monotonic()
                delay = self._queue.failed(ip, now, NO_CRD_RETRY if crd_missing else None)
                if crd_missing:
                    self._queue.hold(now + NO_CRD_RETRY)
            if crd_missing and not self._crd_missing_logged:
                self._crd_missing_logged = True
                log.warning("IPAnnouncement CRD not installed (%s); retrying every %.0fs", exc, delay)
            elif not crd_missing:
                level = logging.INFO if isinstance(exc, kube.Conflict) else logging.WARNING  # peer was first
                log.log(level, "IPAnnouncement %s not written (%s); retrying in %.1fs",
                        object_name(ip), exc, delay)
            return
        with self._lock:
            self._queue.done(ip, want)

    def _current(self, ip: str, want: Want) -> dict[str, Any] | None:
        """The object as this node last wrote it, as listed at start, or else as the API has it;
        None without asking when a claim may simply create it (see _absent_likely)."""
        with self._lock:
            if ip in self._known:
                return self._known[ip]
            listed = self._listed.pop(ip, None)
            if listed is not None and time.monotonic() < self._listed_until:
                return listed
            if want.node and self._absent_likely(ip):
                return None
            self._touched.add(ip)
        try:
            return self._client.get(IPANNOUNCEMENTS, object_name(ip))
        except kube.NotFound:
            return None

    def _absent_likely(self, ip: str) -> bool:
        """No object for ip is likely: nobody announced it before this node's claim, the start-up
        LIST lacked it and this node has not read or written it since. Only a claim may act on it:
        it creates, and a create of an existing object fails and reads it (a release must read: it
        must not skip an object naming this node)."""
        return (ip in self._first_owned and self._listed_ips is not None and ip not in self._listed_ips
                and ip not in self._touched)

    def _create(self, ip: str) -> tuple[dict[str, Any], bool]:
        """(the object, whether this call created it)."""
        with self._lock:
            self._touched.add(ip)
        try:
            obj = self._client.create(IPANNOUNCEMENTS, new_object(ip))
        except kube.AlreadyExists:
            return self._client.get(IPANNOUNCEMENTS, object_name(ip)), False
        except kube.NotFound as exc:  # POST to the collection: the resource itself is not served
            raise NoCrd(exc.status, exc.message, exc.reason, exc.body) from exc
        self.writes += 1
        return obj, True

    def _write(self, ip: str, want: Want) -> None:
        current = self._current(ip, want)
        action = decide(want, self._node, current)
        if action is Action.NOTHING:
            return
        name = object_name(ip)
        if action is Action.CREATE:
            current, created = self._create(ip)
            if not created and decide(want, self._node, current) is Action.NOTHING:
                return  # a peer's create was first, and the object says what we want already
        old = (current or {}).get("status") or {}
        status = {"node": want.node, "services": list(want.services), "reason": want.reason,
                  "since": old.get("since") if old.get("node") == want.node and old.get("since") else _now()}
        body: dict[str, Any] = {"status": status}
        if action is Action.CLEAR:  # a precondition: Conflict if a new owner wrote meanwhile
            body["metadata"] = {"resourceVersion": (current or {}).get("metadata", {}).get("resourceVersion")}
        written = self._client.patch_status(IPANNOUNCEMENTS, name, body)  # NotFound: read again, retry
        self.writes += 1
        with self._lock:
            if self._queue.wants.get(ip) == want:  # a release meanwhile made it stale
                self._known[ip] = written
        log.info("IPAnnouncement %s: node %s%s", name, want.node or '""',
                 f" ({want.reason})" if want.reason else "")


# -- garbage (the controller's leader) ------------------------------------------------------------

RELEASE_DELAY = 3.0  # s after a release before its object goes: an IP handed on at once keeps it
SWEEP_INTERVAL = 60.0  # s between sweeps for orphans (objects whose IP no Service holds)
SWEEP_MIN_AGE = 60.0  # s an object must have existed before a sweep may take it (no race at creation)


class Janitor:
    """Deletes IPAnnouncements of released IPs, and orphans every SWEEP_INTERVAL, while leading.

    `held()` returns every IP some Service's status holds (any class: two installations or test
    speakers must not lose each other's objects). start() / stop(); forget() never blocks."""

    def __init__(self, client: kube.KubeClient, is_leader: Callable[[], bool],
                 held: Callable[[], Iterable[Any]]) -> None:
        self._client, self._is_leader, self._held = client, is_leader, held
        self._released: dict[str, float] = {}  # ip -> monotonic time its object may go
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.deleted = 0

    def forget(self, ips: Iterable[Any]) -> None:
        """These IPs were released: delete their objects soon, unless a Service holds them again."""
        at = time.monotonic() + RELEASE_DELAY
        with self._lock:
            self._released.update({str(ip): at for ip in ips})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="announce-janitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                due = [ip for ip, at in self._released.items() if at <= now]
                for ip in due:
                    del self._released[ip]
            if not self._is_leader():
                continue
            try:
                if due:
                    self._delete_unheld([new_object(ip) for ip in due], min_age=0.0)
                if now >= next_sweep:
                    next_sweep = now + SWEEP_INTERVAL
                    self.sweep()
            except kube.ApiError as exc:
                log.info("IPAnnouncements not cleaned up (%s); next sweep in %.0fs", exc, SWEEP_INTERVAL)

    def sweep(self, min_age: float = SWEEP_MIN_AGE) -> None:
        """Delete every object older than min_age seconds whose IP no Service holds."""
        items, _rv = self._client.list(IPANNOUNCEMENTS)
        self._delete_unheld(items, min_age)

    def _delete_unheld(self, objects: Iterable[Mapping[str, Any]], min_age: float) -> None:
        now = datetime.now(UTC)
        for obj in orphans(objects, self._held()):
            made = (obj.get("metadata") or {}).get("creationTimestamp")
            if made and (now - datetime.fromisoformat(made.replace("Z", "+00:00"))).total_seconds() < min_age:
                continue
            name = (obj.get("metadata") or {}).get("name") or ""
            try:
                self._client.delete(IPANNOUNCEMENTS, name)
            except kube.NotFound:
                continue
            self.deleted += 1
            log.info("IPAnnouncement %s deleted: no Service holds %s", name, announced_ip(obj))
