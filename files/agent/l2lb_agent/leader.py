"""Leader election on a coordination.k8s.io/v1 Lease (`l2lb-controller`): only the leader writes.

Adapter ring. Protocol, with `timing.LeaseTimings` (one definition of every knob):
- every `renew_interval` each replica reads the Lease. The holder writes a new renewTime (PUT with
  the Lease's resourceVersion, so two writers never both succeed);
- a follower judges expiry by what it *observes*: the holder is gone once the Lease has not changed
  for `lease_duration` (or the Lease's own leaseDurationSeconds, if longer) on the follower's own
  monotonic clock. A state counts as seen when the GET's answer *arrived*, not when the GET was
  sent: a slow answer may carry a renewal written after the request left, and dating it from the
  send would cut the holder's time short. The silence is measured up to the *start* of the
  latest GET that still showed the same state. Both choices err towards waiting longer. Clocks of
  two hosts are never compared; renewTime is informational;
- the holder is leader only until `fence_after` (= lease_duration - fence_margin) after the start of
  its last successful renewal; `is_leader()` computes that from the clock at each call, so a holder
  cut from the API stops writing before any follower may take over, even if this thread is stuck;
- `stop()` (SIGTERM) releases the Lease (empty holder) so a follower takes over at its next read.
Not guaranteed: progress when the API server is unreachable (then nobody leads, by design).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import kube, timing

log = logging.getLogger(__name__)


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Explicit start()/stop(); on_start/on_stop run on the elector's thread."""

    def __init__(self, client: kube.KubeClient, namespace: str, name: str, identity: str,
                 timings: timing.LeaseTimings, *, on_start: Callable[[], None] = lambda: None,
                 on_stop: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # own client: a Lease request must time out before the fence, whatever the caller's timeouts
        self._client = kube.KubeClient(client.config, pool_size=2, connect_timeout=timings.request_timeout,
                                       read_timeout=timings.request_timeout)
        # a random suffix keeps two processes with one name (same host, copied Pod spec) apart
        self.identity = f"{identity}_{uuid.uuid4().hex[:8]}"
        self.namespace, self.name, self.t = namespace, name, timings
        self._on_start, self._on_stop, self._clock = on_start, on_stop, clock
        self._renewed_at: float | None = None  # clock at the start of the last successful write
        self._seen: tuple[Any, ...] | None = None  # (holder, renewTime, resourceVersion) last observed
        self._seen_at = 0.0  # clock when _seen last changed
        self._leading = False  # whether on_start has been called without on_stop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_leader(self) -> bool:
        r = self._renewed_at
        return r is not None and self._clock() - r < self.t.fence_after

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.t.lease_duration)
        if release and self.is_leader():
            self._release()
        self._renewed_at = None
        self._transition()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                self._step(started)
            except kube.ApiError as exc:
                log.warning("leader election: Lease %s/%s: %s", self.namespace, self.name, exc)
            self._transition()
            self._stop.wait(max(0.0, self.t.renew_interval - (self._clock() - started)))

    def _transition(self) -> None:
        leading = self.is_leader()
        if leading == self._leading:
            return
        self._leading = leading
        log.info("%s leadership of Lease %s/%s (identity %s)", "acquired" if leading else "lost",
                 self.namespace, self.name, self.identity)
        (self._on_start if leading else self._on_stop)()

    def _step(self, started: float) -> None:
        try:
            lease = self._client.get(kube.LEASES, self.name, self.namespace)
        except kube.NotFound:
            self._create(started)
            return
        arrived = self._clock()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        seen = (holder, spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
        if seen != self._seen:
            self._seen, self._seen_at = seen, arrived
        if holder == self.identity:
            self._write(lease, started, takeover=False)
        elif not holder or started - self._seen_at >= self._expiry(spec):
            log.info("Lease %s/%s: holder %r silent for %.1fs, taking over", self.namespace, self.name,
                     holder, started - self._seen_at)
            self._write(lease, started, takeover=True)
        else:
            self._renewed_at = None  # someone else leads

    def _expiry(self, spec: dict[str, Any]) -> float:
        return max(self.t.lease_duration, float(spec.get("leaseDurationSeconds") or 0))

    def _create(self, started: float) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(transitions=0, acquire=True)}
        try:
            self._client.create(kube.LEASES, body, self.namespace)
        except kube.AlreadyExists:
            return
        self._renewed_at = started

    def _spec(self, transitions: int, acquire: bool, old: dict[str, Any] | None = None) -> dict[str, Any]:
        now = _now_micro()
        spec = dict(old or {})
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.t.lease_duration_seconds,
                    renewTime=now, leaseTransitions=transitions)
        if acquire:
            spec["acquireTime"] = now
        return spec

    def _write(self, lease: dict[str, Any], started: float, takeover: bool) -> None:
        old = lease.get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0) + (1 if takeover else 0)
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": lease["metadata"],
                "spec": self._spec(transitions, takeover, old)}
        try:
            self._client.replace(kube.LEASES, self.name, body, self.namespace)
        except kube.Conflict:
            self._renewed_at = None  # someone else wrote first: they lead
            return
        self._renewed_at = started

    def _release(self) -> None:
        try:
            lease = self._client.get(kube.LEASES, self.name, self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["renewTime"] = _now_micro()
            self._client.replace(kube.LEASES, self.name, lease, self.namespace)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except kube.ApiError as exc:
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)
