"""Lease timings: the one definition of every Lease knob (core ring, pure).

Used by the speaker (heartbeat Leases, self-fencing, takeover) and by the
controller's leader election. Values are seconds, read from the monotonic clock
of the process that uses them; no timing here ever compares two hosts' clocks.

How the speaker uses them (see ``speaker`` for the full protocol):

* every ``renew_interval`` it renews its heartbeat Lease (one API write);
* a peer is dead once this speaker has not *seen* its Lease change for
  ``lease_duration`` (the observer's clock starts when the change is seen, which
  is after the peer started that renewal);
* a speaker whose last successful renewal *started* at ``t`` stops answering at
  ``t + fence_after`` (= ``lease_duration - fence_margin``), so it is silent before
  any observer may call it dead, whatever the network delay;
* a speaker that gains an address from a node that is still alive (join,
  revival, eligibility change) waits ``handover_delay`` so the old owner, which
  drops the address as soon as it sees the same change, is silent first.

Defaults (lease 2.0 s, renew 0.6 s, margin 0.5 s, handover 0.5 s) meet the goals:
hard takeover lands between ``lease_duration - renew_interval`` and
``lease_duration`` after the crash (<= 2.0 s + watch delay, goal 3 s); a speaker cut
from the API is silent after <= 1.5 s and replaced after ~2 s (goal 10 s), with
two renewal attempts before it fences; steady state costs 1/0.6 = 1.7 Lease
writes/s per node whatever the Service count (goal <= 2).

Not guaranteed: safety assumes the two monotonic clocks run at about the same
rate (drift far below ``fence_margin / lease_duration``, i.e. 25 %).
"""

from __future__ import annotations

import dataclasses
import math

DEFAULT_LEASE_DURATION = 2.0
DEFAULT_RENEW_INTERVAL = 0.6
DEFAULT_FENCE_MARGIN = 0.5
DEFAULT_HANDOVER_DELAY = 0.5


class TimingError(ValueError):
    """A Lease timing knob is out of range; the message names the field and value."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LeaseTimings:
    """Validated Lease timings (seconds). Construct with keywords; invalid values raise TimingError."""

    lease_duration: float = DEFAULT_LEASE_DURATION
    renew_interval: float = DEFAULT_RENEW_INTERVAL
    fence_margin: float = DEFAULT_FENCE_MARGIN
    handover_delay: float = DEFAULT_HANDOVER_DELAY

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise TimingError(f"{field.name}: expected a finite number of seconds, got {value!r}")
            if value <= 0:
                raise TimingError(f"{field.name}: must be > 0 seconds, got {value!r}")
            object.__setattr__(self, field.name, float(value))
        _check_relations(self)

    @property
    def fence_after(self) -> float:
        """Seconds after a successful renewal *started* at which its holder must stop acting."""
        return self.lease_duration - self.fence_margin

    @property
    def request_timeout(self) -> float:
        """Timeout for one renewal request: a late answer is useless once the fence has passed."""
        return max(self.fence_after - self.renew_interval, self.renew_interval)

    @property
    def lease_duration_seconds(self) -> int:
        """Lease.spec.leaseDurationSeconds (an integer in the API; rounded up, informational)."""
        return max(1, math.ceil(self.lease_duration))

    @property
    def writes_per_second(self) -> float:
        """Steady-state Lease writes per second for one holder."""
        return 1.0 / self.renew_interval


def _check_relations(t: LeaseTimings) -> None:
    """Cross-field rules; each message names the fields and values involved."""
    if t.fence_margin >= t.lease_duration / 2:
        raise TimingError(
            f"fence_margin: must be < lease_duration / 2 ({t.lease_duration / 2:g}), got {t.fence_margin:g}"
        )
    if t.fence_margin < 0.05 * t.lease_duration or t.fence_margin < 0.1:
        raise TimingError(
            f"fence_margin: must be >= 0.1 s and >= 5% of lease_duration ({t.lease_duration:g}), "
            f"got {t.fence_margin:g}"
        )
    if t.renew_interval * 2 > t.fence_after:
        raise TimingError(
            f"renew_interval: must allow two renewals before the fence (<= "
            f"(lease_duration - fence_margin) / 2 = {t.fence_after / 2:g}), got {t.renew_interval:g}"
        )
    if t.handover_delay > t.lease_duration:
        raise TimingError(
            f"handover_delay: must be <= lease_duration ({t.lease_duration:g}), got {t.handover_delay:g}"
        )


def from_options(lease_duration: float | None = None, renew_interval: float | None = None) -> LeaseTimings:
    """Timings from the CLI/env options; None keeps the default.

    When only lease_duration is given, the margin and renew interval scale with it so
    that the result stays valid (margin 25 %, renew 30 % of the lease).
    """
    kwargs: dict[str, float] = {}
    if lease_duration is not None:
        kwargs["lease_duration"] = lease_duration
        if isinstance(lease_duration, int | float) and lease_duration > 0:
            kwargs["fence_margin"] = max(0.1, lease_duration * DEFAULT_FENCE_MARGIN / DEFAULT_LEASE_DURATION)
            if renew_interval is None:
                kwargs["renew_interval"] = lease_duration * DEFAULT_RENEW_INTERVAL / DEFAULT_LEASE_DURATION
    if renew_interval is not None:
        kwargs["renew_interval"] = renew_interval
    return LeaseTimings(**kwargs)
