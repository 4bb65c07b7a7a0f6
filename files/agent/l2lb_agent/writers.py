"""Work plumbing for the controller: a deduplicating key queue and sharded parallel writers.

Component ring (threads, no decisions). `KeyQueue` coalesces repeated keys so a burst of watch
events for one Service is handled once. `Writers` runs API writes on N threads; a key always maps
to the same thread, so the writes of one Service keep their order while different Services are
written in parallel; status writes go before Events. Every write re-checks `may_write()` (leadership)
just before it is sent. Not guaranteed: delivery; a failed write is reported to `on_error`.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import zlib
from collections.abc import Callable, Iterable

from . import kube

log = logging.getLogger(__name__)


class KeyQueue:
    """FIFO of distinct keys: putting a key already waiting does nothing."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}  # insertion-ordered set
        self._cond = threading.Condition()

    def put(self, key: str) -> None:
        with self._cond:
            self._items[key] = None
            self._cond.notify()

    def put_many(self, keys: Iterable[str]) -> None:
        with self._cond:
            for key in keys:
                self._items[key] = None
            self._cond.notify()

    def get(self, timeout: float) -> str | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._items, timeout):
                return None
            key = next(iter(self._items))
            del self._items[key]
            return key

    def empty(self) -> bool:
        with self._cond:
            return not self._items


Job = Callable[[], object]
_Item = tuple[int, int, str, Job, bool]  # (priority, sequence, key, job, report)


class Writers:
    """N writer threads, one priority queue each; explicit start()/stop().

    Priority 0 (status) runs before priority 1 (Events) on the same thread: under a burst the
    addresses land first and the Events follow. Within a priority, a key's jobs keep their order.
    """

    def __init__(self, n: int, may_write: Callable[[], bool],
                 on_error: Callable[[str, kube.ApiError], None]) -> None:
        self._queues: list[queue.PriorityQueue[_Item]] = [queue.PriorityQueue() for _i in range(n)]
        self._may_write, self._on_error = may_write, on_error
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []

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
        """Run job on key's writer thread; report=True sends failures to on_error."""
        shard = zlib.crc32(key.encode()) % len(self._queues)
        self._queues[shard].put((priority, next(self._seq), key, job, report))

    def _run(self, q: queue.PriorityQueue[_Item]) -> None:
        while True:
            priority, _seq, key, job, report = q.get()
            if priority < 0:
                return
            if not self._may_write():
                log.debug("%s: not the leader, write dropped", key)
                continue
            try:
                job()
            except kube.NotFound:
                pass  # the object is gone; its deletion is handled from the watch
            except kube.ApiError as exc:
                log.warning("%s: write failed: %s", key, exc)
                if report:
                    self._on_error(key, exc)
            except Exception:
                log.exception("%s: write failed", key)
