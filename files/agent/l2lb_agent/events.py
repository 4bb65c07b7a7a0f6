"""Write budgets for the controller: a token bucket, and the Event aggregator that spends one.

Core ring (pure: no clock, no I/O; `now` is any monotonic clock in seconds, given by the caller,
so tests run on fake time). Place in the flow: the controller decides an Event is due ->
`EventAggregator.offer(event, now)` -> WRITE (a token was free: send it now), QUEUED (waits in a
bounded backlog for a token: `due(now)` hands it out later), AGGREGATED (an identical Event about
the same object went out within `window`: it is counted, not written) or DROPPED (the backlog is
full: counted by reason). The writer reads `take_dropped()` to send one summary Event, so nothing
disappears without a trace: every offered Event is written, counted as a repeat, or counted as
dropped (metrics `l2lb_controller_events_{written,aggregated,dropped}_total`).

Why a global bucket and not only a per-object one (client-go's spam filter is per object): the
controller's Event storm is wide, not deep. 10,000 Services created at once means 10,000
IPAllocated Events on 10,000 objects, one each; a per-object bucket lets every one through.
Why not write repeats as `series` updates: the controller's Events rarely repeat (one per address
change, per new failure message, per write-failure streak), and patching Events would need one
more RBAC verb; repeats are counted instead. Not thread-safe: the caller holds a lock.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math


class TokenBucket:
    """Holds up to `burst` tokens and gains `rate` per second; starts full."""

    def __init__(self, rate: float, burst: float) -> None:
        for name, value in (("rate", rate), ("burst", burst)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if rate <= 0:
            raise ValueError(f"rate: must be > 0, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst: must be >= 1 (one write), got {burst!r}")
        self.rate, self.burst = float(rate), float(burst)
        self._tokens = float(burst)
        self._stamp: float | None = None

    def _fill(self, now: float) -> None:
        if self._stamp is None:
            self._stamp = now
        if now > self._stamp:  # a clock that went back grants nothing until it passes the stamp
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._fill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def reserve(self, now: float) -> float:
        """Take one token, going into debt if needed; returns the seconds to wait before using it.
        Parallel callers each get their own slot, so N threads together keep to `rate`."""
        self._fill(now)
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def wait(self, now: float) -> float:
        """Seconds until a token is free (0 when one is now); takes nothing."""
        self._fill(now)
        return max(0.0, (1 - self._tokens) / self.rate)


class Verdict(enum.Enum):
    WRITE = "write"
    QUEUED = "queued"
    AGGREGATED = "aggregated"
    DROPPED = "dropped"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """One Event to write: about object `key` (ns/name), with type, reason and message."""

    key: str
    type: str
    reason: str
    message: str
    payload: object = dataclasses.field(default=None, compare=False)  # what the writer needs

    def identity(self) -> tuple[str, str, str, str]:
        return self.key, self.type, self.reason, self.message


@dataclasses.dataclass(frozen=True, kw_only=True)
class Budget:
    """Event writes per second, burst, backlog bound and repeat window; invalid values raise
    ValueError naming the field."""

    rate: float = 5.0  # steady Events per second: a trickle next to the status writes
    burst: float = 25.0  # client-go's per-object spam-filter burst, here for all objects
    backlog: int = 1000  # client-go's broadcaster queue: beyond it, Events are dropped (counted)
    window: float = 600.0  # an identical Event within 10 minutes is a repeat (client-go's window)
    remembered: int = 4096  # identities kept for repeat detection (least recent forgotten)

    def __post_init__(self) -> None:
        TokenBucket(self.rate, self.burst)  # validates rate and burst
        for name in ("backlog", "remembered"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int | float) or not self.window >= 0:
            raise ValueError(f"window: expected seconds >= 0, got {self.window!r}")


class EventAggregator:
    """Decides which Events go out now, later, as a counted repeat, or dropped (counted)."""

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or Budget()
        self._bucket = TokenBucket(self.budget.rate, self.budget.burst)
        self._backlog: collections.deque[Event] = collections.deque()
        self._sent: collections.OrderedDict[tuple[str, str, str, str], float] = collections.OrderedDict()
        self._dropped: collections.Counter[str] = collections.Counter()  # reason -> since take_dropped
        self.counts: collections.Counter[tuple[Verdict, str]] = collections.Counter()  # (verdict, reason)

    def offer(self, event: Event, now: float) -> Verdict:
        """Classify a new Event (see the module docstring)."""
        verdict = self._classify(event, now)
        self.counts[verdict, event.reason] += 1
        return verdict

    def _classify(self, event: Event, now: float) -> Verdict:
        last = self._sent.get(event.identity())
        if last is not None and now - last < self.budget.window:
            return Verdict.AGGREGATED
        if not self._backlog and self._bucket.take(now):
            self._remember(event, now)
            return Verdict.WRITE
        if len(self._backlog) >= self.budget.backlog:
            self._dropped[event.reason] += 1
            return Verdict.DROPPED
        self._backlog.append(event)
        return Verdict.QUEUED

    def due(self, now: float) -> list[Event]:
        """Queued Events whose token has come, oldest first (call it when `wait(now)` has passed)."""
        out = []
        while self._backlog and self._bucket.take(now):
            event = self._backlog.popleft()
            self._remember(event, now)
            out.append(event)
        return out

    def wait(self, now: float) -> float | None:
        """Seconds until the next queued Event may go out; None when none waits."""
        if not self._backlog:
            return None
        return self._bucket.wait(now)

    def queued(self) -> int:
        return len(self._backlog)

    def take_dropped(self) -> dict[str, int]:
        """Reason -> Events dropped since the last call (for one summary Event)."""
        out = dict(self._dropped)
        self._dropped.clear()
        return out

    def _remember(self, event: Event, now: float) -> None:
        self._sent[event.identity()] = now
        self._sent.move_to_end(event.identity())
        while len(self._sent) > self.budget.remembered:
            self._sent.popitem(last=False)
