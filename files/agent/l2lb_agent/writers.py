"""Work plumbing for the controller (and the speaker's Events): a deduplicating key queue, sharded
parallel writers and a budgeted Event writer.

Component ring (threads, no decisions). `KeyQueue` coalesces repeated keys so a burst of watch
events for one Service is handled once. A key whose write failed is queued again by
`put_later(key)` after a per-key exponential backoff (BACKOFF_BASE doubling to BACKOFF_CAP, with
jitter so a fleet of failures does not retry in step); `forget(key)` ends the streak. Delayed keys
wait in a heap inside the queue: no thread or timer per failure, one entry per key.
`Writers` runs API writes on N threads; a key always maps
to the same thread, so the writes of one Service keep their order while different Services are
written in parallel; status writes go before Events. Every write re-checks `may_write()` (leadership)
just before it is sent. Not guaranteed: delivery; a failed write is reported to `on_error`.
`Throttle` keeps the writer threads together to a QPS with a burst (one token bucket shared by
all threads), so a resync that rewrites 10,000 statuses cannot outrun what the API server was
promised. `EventWriter` sends Events on one thread of its own through `events.EventAggregator`:
a few at once, the rest at a steady rate from a bounded backlog, repeats and overflow counted,
and one summary Event (`on_summary`) after a storm in which Events were dropped. Events wait while
status writes are queued (`Writers.busy`, at most MAX_DEFER): each Event costs the API server CPU
(about half a status write on the lab), and during a burst that delays the addresses.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable

from . import events, kube

log = logging.getLogger(__name__)


BACKOFF_BASE = 1.0  # seconds before the first retry of a failed key
BACKOFF_CAP = 300.0  # the longest wait between two retries (5 minutes)
# Events wait behind status writes at most this long (a 1,000-Service burst is written in ~15 s
# on the 2-core lab); a longer burst lets them through, under their own budget, meanwhile.
MAX_DEFER = 30.0
DEFER_POLL = 0.05  # seconds between looks at the status writers while Events wait


def backoff_delay(failures: int, jitter: float, base: float = BACKOFF_BASE,
                  cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after the failures-th failure in a row; jitter in [0, 1) takes off up to half."""
    return min(cap, base * 2 ** min(max(failures - 1, 0), 32)) * (1 - jitter / 2)


class KeyQueue:
    """FIFO of distinct keys: putting a key already waiting does nothing. Keys put_later wait in a
    heap until due; the clock and the jitter source are injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random) -> None:
        self._items: dict[str, None] = {}  # insertion-ordered set of ready keys
        self._later: list[tuple[float, str]] = []  # heap of (due, key); stale when _due disagrees
        self._due: dict[str, float] = {}  # key -> when it is due again
        self._failures: dict[str, int] = {}  # key -> failures in a row
        self._cond = threading.Condition()
        self._clock, self._jitter = clock, jitter

    def put(self, key: str) -> None:
        with self._cond:
            self._items[key] = None
            self._cond.notify()

    def put_many(self, keys: Iterable[str]) -> None:
        with self._cond:
            for key in keys:
                self._items[key] = None
            self._cond.notify()

    def put_later(self, key: str) -> tuple[int, float]:
        """Count a failure of key and queue it after its backoff; returns (failures in a row, delay)."""
        with self._cond:
            n = self._failures.get(key, 0) + 1
            self._failures[key] = n
            delay = backoff_delay(n, self._jitter())
            due = self._clock() + delay
            if key not in self._due or due < self._due[key]:
                self._due[key] = due
                heapq.heappush(self._later, (due, key))
            self._cond.notify()
            return n, delay

    def forget(self, key: str) -> int:
        """End key's failure streak; returns how many failures it had."""
        with self._cond:
            return self._failures.pop(key, 0)

    def failing(self) -> int:
        """Keys in a failure streak."""
        with self._cond:
            return len(self._failures)

    def get(self, timeout: float) -> str | None:
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                self._promote()
                if self._items:
                    key = next(iter(self._items))
                    del self._items[key]
                    return key
                now = self._clock()
                if now >= deadline:
                    return None
                wake = min(deadline, self._later[0][0]) if self._later else deadline
                self._cond.wait(max(0.0, wake - now))

    def _promote(self) -> None:
        """Move due delayed keys to the ready set (under the lock)."""
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            due, key = heapq.heappop(self._later)
            if self._due.get(key) == due:
                del self._due[key]
                self._items[key] = None

    def empty(self) -> bool:
        """No key is ready now (keys waiting for their backoff do not count)."""
        with self._cond:
            self._promote()
            return not self._items


Job = Callable[[], object]
_Item = tuple[int, int, str, Job, bool]  # (priority, sequence, key, job, report)


class Writers:
    """N writer threads, one priority queue each; explicit start()/stop().

    Priority 0 (status) runs before priority 1 (Events) on the same thread: under a burst the
    addresses land first and the Events follow. Within a priority, a key's jobs keep their order.
    """

    def __init__(self, n: int, may_write: Callable[[], bool],
                 on_error: Callable[[str, kube.ApiError], None],
                 on_success: Callable[[str], None] = lambda key: None,
                 throttle: Throttle | None = None) -> None:
        self._queues: list[queue.PriorityQueue[_Item]] = [queue.PriorityQueue() for _i in range(n)]
        self._may_write, self._on_error, self._on_success = may_write, on_error, on_success
        self._throttle = throttle
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._running = 0  # jobs being written now (queued ones are in the queues)
        self._running_lock = threading.Lock()

    def start(self) -> None:
        for i, q in enumerate(self._queues):
            t = threading.Thread(target=self._run, args=(q,), name=f"writer-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        for q in self._queues:
            q.put((-1, next(self._seq), "", lambda: None, False))  # sorts first: stop now
        for t in self._threads:
            t.join(2)

    def submit(self, key: str, job: Job, report: bool = True, priority: int = 0) -> None:
        """Run job on key's writer thread; report=True sends failures to on_error, success to on_success."""
        shard = zlib.crc32(key.encode()) % len(self._queues)
        self._queues[shard].put((priority, next(self._seq), key, job, report))

    def busy(self) -> bool:
        """A write is queued or being sent."""
        return self._running > 0 or any(not q.empty() for q in self._queues)

    def _run(self, q: queue.PriorityQueue[_Item]) -> None:
        while True:
            priority, _seq, key, job, report = q.get()
            if priority < 0:
                return
            with self._running_lock:
                self._running += 1
            try:
                self._write(key, job, report)
            finally:
                with self._running_lock:
                    self._running -= 1

    def _write(self, key: str, job: Job, report: bool) -> None:
        if not self._may_write():
            log.debug("%s: not the leader, write dropped", key)
            return
        if self._throttle is not None:
            self._throttle.acquire()
        try:
            job()
            if report:
                self._on_success(key)
        except kube.NotFound:
            pass  # the object is gone; its deletion is handled from the watch
        except kube.ApiError as exc:
            log.warning("%s: write failed: %s", key, exc)
            if report:
                self._on_error(key, exc)
        except Exception:
            log.exception("%s: write failed", key)


class Throttle:
    """A token bucket shared by threads: `acquire()` blocks until the caller may send one request.
    Each caller reserves its own slot, so N threads together keep to `qps` after the first `burst`."""

    def __init__(self, qps: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._bucket = events.TokenBucket(qps, burst)
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        self.waited = 0.0  # seconds callers spent waiting, in total (a metric)

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        with self._lock:
            delay = self._bucket.reserve(self._clock())
            self.waited += delay
        if delay > 0:
            self._sleep(delay)
        return delay


Send = Callable[[events.Event], object]


class EventWriter:
    """Sends Events on its own thread through an `events.EventAggregator`; explicit start()/stop().

    `send(event)` writes one Event (its payload carries what the API needs); `on_summary(dropped)`
    writes one Event saying how many were dropped by reason, once the backlog has drained.
    `submit` never blocks the caller (the controller's worker) and never does I/O itself."""

    def __init__(self, send: Send, on_summary: Callable[[dict[str, int]], object],
                 may_write: Callable[[], bool], budget: events.Budget | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 status_busy: Callable[[], bool] = lambda: False, max_defer: float = MAX_DEFER) -> None:
        self.aggregator = events.EventAggregator(budget)
        self._status_busy, self._max_defer = status_busy, max_defer
        self._send, self._on_summary, self._may_write, self._clock = send, on_summary, may_write, clock
        self._ready: list[events.Event] = []  # allowed now, not yet sent
        self._sending = 0  # taken for sending, not yet written or failed
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.written = 0  # Events sent (summaries included)
        self.failed = 0  # Events the API refused or could not take

    def submit(self, event: events.Event) -> events.Verdict:
        with self._cond:
            verdict = self.aggregator.offer(event, self._clock())
            if verdict is events.Verdict.WRITE:
                self._ready.append(event)
            if verdict in (events.Verdict.WRITE, events.Verdict.QUEUED):
                self._cond.notify()
        if verdict is events.Verdict.DROPPED:
            log.debug("%s: Event %s dropped (backlog full)", event.key, event.reason)
        return verdict

    def pending(self) -> int:
        """Events accepted and not yet written: waiting for their budget, or being sent (zero
        means every accepted Event has reached the API server, or failed)."""
        with self._cond:
            return self.aggregator.queued() + len(self._ready) + self._sending

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(2)

    def _next(self) -> tuple[list[events.Event], dict[str, int]] | None:
        """Block until there is something to send; None when stopping."""
        with self._cond:
            while not self._stopping:
                batch = self._ready + self.aggregator.due(self._clock())
                self._ready = []
                self._sending = len(batch)
                dropped = self.aggregator.take_dropped() if not self.aggregator.queued() else {}
                if batch or dropped:
                    return batch, dropped
                self._cond.wait(self.aggregator.wait(self._clock()))
            return None

    def _run(self) -> None:
        while (work := self._next()) is not None:
            batch, dropped = work
            self._after_status_writes()
            for event in batch:
                self._write(event.key, lambda e=event: self._send(e))
                with self._cond:
                    self._sending -= 1
            if dropped:
                log.warning("Events dropped under a burst (backlog full): %s", dropped)
                self._write("summary", lambda d=dropped: self._on_summary(d))

    def _after_status_writes(self) -> None:
        """Addresses first: wait while status writes are queued or in flight, at most max_defer
        seconds, so a burst's Events do not slow its status writes on the same API server."""
        deadline = self._clock() + self._max_defer
        with self._cond:
            while not self._stopping and self._status_busy() and self._clock() < deadline:
                self._cond.wait(DEFER_POLL)

    def _write(self, key: str, job: Job) -> None:
        if not self._may_write():
            return
        try:
            job()
            self.written += 1
        except kube.NotFound:
            self.failed += 1  # the object is gone
        except kube.ApiError as exc:
            self.failed += 1
            log.warning("%s: Event not written: %s", key, exc)
        except Exception:
            self.failed += 1
            log.exception("%s: Event not written", key)
