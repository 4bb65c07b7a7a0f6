"""Answer rate limits for the speaker: token buckets per requester, per target and in total.

Core ring (pure: no clock, no I/O). Place in the flow: announcer receives a frame ->
``frames.decide`` says answer -> ``AnswerLimiter.allow(requester, target, now)`` says whether this
answer may go out now -> the reply is sent, or dropped and counted under the limit that stopped it.

Why three buckets: a per-requester bucket stops one host (or one spoofed source) from drawing a
reply storm; a flood from thousands of spoofed sources gets a fresh requester bucket per source,
so a per-target bucket caps the replies for one address, and a total bucket caps the node.
A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second; an answer takes one
token from each of the three, and only when all three have one (a refused answer costs nothing).

Memory is bounded: at most ``max_requesters`` and ``max_targets`` buckets are kept, the least
recently used one is forgotten first (a forgotten key starts again with a full bucket, which the
target and total buckets still bound). ``now`` is any monotonic clock in seconds, given by the
caller, so tests run on fake time. Not thread-safe: one limiter per receiving thread.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math


class Limit(enum.Enum):
    """The outcome of `allow`; the value is the metric label of a drop."""

    OK = "ok"
    REQUESTER = "requester"
    TARGET = "target"
    TOTAL = "total"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rates:
    """Answers per second and bursts; invalid values raise ValueError naming the field."""

    requester_rate: float = 10.0  # one host refreshing its neighbour cache needs far less
    requester_burst: float = 20.0
    target_rate: float = 200.0  # e.g. 6,000 clients each refreshing one address every 30 s
    target_burst: float = 400.0
    total_rate: float = 2000.0
    total_burst: float = 4000.0
    max_requesters: int = 4096
    max_targets: int = 65536

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{field.name}: expected a finite number, got {value!r}")
            if value <= 0 or (field.name.startswith("max_") and value < 1):
                raise ValueError(f"{field.name}: must be > 0, got {value!r}")
            if field.name.endswith("_burst") and value < 1:
                raise ValueError(f"{field.name}: must be >= 1 (one answer), got {value!r}")


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens, self.stamp = tokens, stamp

    def fill(self, now: float, rate: float, burst: float) -> float:
        """Add what accrued since the last look (never more than burst); returns the tokens."""
        if now > self.stamp:
            self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
            self.stamp = now
        return self.tokens


class AnswerLimiter:
    """Decides whether one more answer may go out; counts answers and drops by limit."""

    def __init__(self, rates: Rates | None = None) -> None:
        self.rates = rates or Rates()
        self._requesters: collections.OrderedDict[bytes, _Bucket] = collections.OrderedDict()
        self._targets: collections.OrderedDict[bytes, _Bucket] = collections.OrderedDict()
        self._total: _Bucket | None = None
        self.counts: collections.Counter[Limit] = collections.Counter()  # limit -> answers (OK) or drops

    def allow(self, requester: bytes, target: bytes, now: float) -> Limit:
        """May an answer for target go to requester (e.g. its MAC + IP) at time now?"""
        r = self.rates
        req = self._bucket(self._requesters, requester, now, r.requester_burst, r.max_requesters)
        tgt = self._bucket(self._targets, target, now, r.target_burst, r.max_targets)
        if self._total is None:
            self._total = _Bucket(r.total_burst, now)
        if req.fill(now, r.requester_rate, r.requester_burst) < 1:
            verdict = Limit.REQUESTER
        elif tgt.fill(now, r.target_rate, r.target_burst) < 1:
            verdict = Limit.TARGET
        elif self._total.fill(now, r.total_rate, r.total_burst) < 1:
            verdict = Limit.TOTAL
        else:
            for bucket in (req, tgt, self._total):
                bucket.tokens -= 1
            verdict = Limit.OK
        self.counts[verdict] += 1
        return verdict

    @staticmethod
    def _bucket(table: collections.OrderedDict[bytes, _Bucket], key: bytes, now: float, burst: float,
                limit: int) -> _Bucket:
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = _Bucket(burst, now)
            if len(table) > limit:
                table.popitem(last=False)  # forget the least recently used
        else:
            table.move_to_end(key)
        return bucket

    def tracked(self) -> tuple[int, int]:
        """(requesters, targets) with a bucket now: bounded by max_requesters and max_targets."""
        return len(self._requesters), len(self._targets)
