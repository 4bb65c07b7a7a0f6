"""The speaker's heartbeat Lease: renew, fence, release (component ring).

Place in the flow: ``Heartbeat`` thread -> Lease ``l2lb-speaker-<node>`` in the l2lb namespace
(label ``l2lb.io/role: speaker-heartbeat``) -> every speaker's Lease watch (``ownership.Liveness``).

Protocol (timings from ``l2lb_agent.timing``):
* every ``renew_interval`` one PUT of the Lease (optimistic concurrency on resourceVersion), with
  the annotation ``l2lb.io/renew-seq`` = a counter, so when this speaker later sees its own
  renewal in the watch it knows when that renewal *started* (``started(seq)``);
* after a renewal that started at ``t`` succeeds, ``fence`` = ``t + fence_after``: the speaker
  answers only before that monotonic time, so it falls silent before any observer (whose clock
  starts when it sees the change, i.e. after ``t``) may call it dead — without synced clocks;
* a failed renewal is counted and retried at the next interval; the speaker comes back by
  itself when the API answers again (``revived`` tells the caller it had been fenced);
* ``release()`` (SIGTERM) deletes the Lease so the others take over at once.

Not guaranteed: the Lease's renewTime is informational (wall clock); nobody compares it.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import kube, timing

log = logging.getLogger(__name__)

ROLE_LABEL = "l2lb.io/role"
ROLE = "speaker-heartbeat"
NODE_LABEL = "l2lb.io/node"
SEQ_ANNOTATION = "l2lb.io/renew-seq"


def lease_name(node: str) -> str:
    return f"l2lb-speaker-{node}"


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(node: str, namespace: str, identity: str, seq: int, t: timing.LeaseTimings,
               base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Lease to write (base: the last Lease read, to keep its resourceVersion)."""
    body: dict[str, Any] = dict(base or {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease"})
    meta = dict(body.get("metadata") or {})
    meta.update(name=lease_name(node), namespace=namespace)
    meta["labels"] = {**(meta.get("labels") or {}), ROLE_LABEL: ROLE, NODE_LABEL: node}
    meta["annotations"] = {**(meta.get("annotations") or {}), SEQ_ANNOTATION: str(seq)}
    body["metadata"] = meta
    spec = dict(body.get("spec") or {})
    now = _now_rfc3339()
    spec.update(holderIdentity=identity, leaseDurationSeconds=t.lease_duration_seconds, renewTime=now)
    spec.setdefault("acquireTime", now)
    body["spec"] = spec
    return body


def lease_node(lease: dict[str, Any]) -> str | None:
    """The node a heartbeat Lease belongs to."""
    return ((lease.get("metadata") or {}).get("labels") or {}).get(NODE_LABEL)


def lease_seq(lease: dict[str, Any]) -> int | None:
    raw = ((lease.get("metadata") or {}).get("annotations") or {}).get(SEQ_ANNOTATION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


class Heartbeat:
    """Renews this node's Lease on its own thread. start() / release() / stop()."""

    def __init__(self, client: kube.KubeClient, namespace: str, node: str, identity: str,
                 t: timing.LeaseTimings, on_renewed: Callable[[float, bool], None]) -> None:
        self._client, self._ns, self._node, self._identity, self._t = client, namespace, node, identity, t
        self._on_renewed = on_renewed  # (new fence, revived) after each successful renewal
        self._seq = itertools.count(1)
        self._starts: dict[int, float] = {}  # renew seq -> monotonic start time (recent ones)
        self._last: dict[str, Any] | None = None  # the Lease as last written/read
        self.fence = 0.0  # monotonic: answering allowed strictly before this
        self.live_since = float("inf")  # start of the renewal that ended the last silent spell
        self.ok_starts: collections.deque[float] = collections.deque(maxlen=64)  # recent successful starts
        self.failures = 0
        self.writes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def started(self, seq: int) -> float | None:
        """When the renewal carrying seq started (None if unknown or too old)."""
        return self._starts.get(seq)

    def valid(self, now: float) -> bool:
        return now < self.fence

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._t.request_timeout + 1)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.renew_once()
            self._stop.wait(max(0.0, self._t.renew_interval - (time.monotonic() - began)))

    def renew_once(self) -> bool:
        """One renewal attempt; True on success."""
        seq = next(self._seq)
        start = time.monotonic()
        self._starts[seq] = start
        self._starts.pop(seq - 50, None)
        try:
            self._write(seq)
        except kube.ApiError as exc:
            self.failures += 1
            if isinstance(exc, kube.Conflict):
                self._last = None  # read it again next time
            log.warning("heartbeat Lease %s not renewed (%s); silent at fence in %.2fs",
                        lease_name(self._node), exc, max(0.0, self.fence - time.monotonic()))
            return False
        revived = start >= self.fence  # the fence had passed when this renewal began: we were silent
        self.fence = max(self.fence, start + self._t.fence_after)
        self.ok_starts.append(start)
        if revived:
            self.live_since = start
            log.info("heartbeat Lease %s renewed: answering allowed again", lease_name(self._node))
        self._on_renewed(self.fence, revived)
        return True

    def _write(self, seq: int) -> None:
        name = lease_name(self._node)
        if self._last is None:
            try:
                self._last = self._client.get(kube.LEASES, name, self._ns)
            except kube.NotFound:
                body = lease_body(self._node, self._ns, self._identity, seq, self._t)
                self.writes += 1
                self._last = self._client.create(kube.LEASES, body, self._ns)
                return
        body = lease_body(self._node, self._ns, self._identity, seq, self._t, self._last)
        self.writes += 1
        try:
            self._last = self._client.replace(kube.LEASES, name, body, self._ns)
        except kube.NotFound:
            self._last = None
            raise

    def release(self) -> None:
        """Give the Lease up at once (graceful hand-over): delete it so peers see DELETED."""
        self.fence = 0.0
        try:
            self._client.delete(kube.LEASES, lease_name(self._node), self._ns)
            log.info("heartbeat Lease %s deleted: peers take over now", lease_name(self._node))
        except kube.NotFound:
            pass
        except kube.ApiError as exc:
            log.warning("heartbeat Lease %s not deleted (%s); peers take over when it expires",
                        lease_name(self._node), exc)
