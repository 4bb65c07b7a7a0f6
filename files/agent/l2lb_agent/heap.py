"""Short garbage-collector pauses with large caches (adapter ring: the interpreter's collector).

A speaker holding 10,000 Services keeps ~190,000 container objects (caches, owner index), and
CPython's full collection walks every one of them: ~110 ms on the lab host, holding the GIL, so
ARP answers and a takeover wait behind it, whenever enough young objects have survived (under
EndpointSlice churn, every few seconds). ``Settler`` freezes what has survived (``gc.freeze``:
the collector no longer walks it) once the caches are loaded, and again every ``SETTLE_EVERY``
seconds after a collection that walks only what changed since: a full collection then costs
the churn of those seconds, not the size of the caches.

Not guaranteed: an object frozen while reachable that later becomes part of an unreachable
cycle is never reclaimed. What the caches hold is acyclic (decoded JSON, tuples, frozen
dataclasses) and freed by reference counting when replaced, frozen or not.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

SETTLE_EVERY = 300.0  # seconds between settles: bounds what a full collection walks to this much churn


class Settler:
    """Freezes the survivors of a collection; ``due(now)`` settles at most every ``every`` seconds."""

    def __init__(self, every: float = SETTLE_EVERY) -> None:
        self._every = every
        self._last: float | None = None

    def settle(self, now: float) -> None:
        began = time.perf_counter()
        gc.collect()
        gc.freeze()
        self._last = now
        log.debug("heap settled: %d objects frozen, %.1f ms", gc.get_freeze_count(),
                  (time.perf_counter() - began) * 1e3)

    def due(self, now: float) -> None:
        if self._last is None or now - self._last >= self._every:
            self.settle(now)
