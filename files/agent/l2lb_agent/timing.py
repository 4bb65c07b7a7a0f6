"""Timings: the one definition of every liveness knob (core ring, pure, standalone).

``LeaseTimings``: the controller's leader-election Lease. ``LanTimings``: the speaker's LAN
heartbeats (membership, fencing, hand-over; see ``membership`` and docs/membership.md).
This module imports nothing else of the agent, so the Ansible modules validate the role's
variables with this very code (plugins/module_utils symlinks it).

LeaseTimings (controller leader election). Values are seconds, read from the monotonic clock
of the process that uses them; no timing here ever compares two hosts' clocks.

How a Lease holder uses them:

* every ``renew_interval`` it renews its Lease (one API write);
* a peer is dead once this speaker has not *seen* its Lease change for
  ``lease_duration`` (the observer's clock starts when the change is seen, which
  is after the peer started that renewal);
* a holder whose last successful renewal *started* at ``t`` stops acting at
  ``t + fence_after`` (= ``lease_duration - fence_margin``), so it is silent before
  any observer may call it dead, whatever the network delay.

LanTimings (speaker): every ``heartbeat_interval`` each speaker sends one heartbeat frame per
announcing interface; a peer is dead ``dead_after`` seconds after its last heartbeat that proved
it hears us; a speaker answers only until ``fence_margin`` before any peer that proved it hears
us could call it dead; gaining an address from a live speaker waits ``handover_delay`` (the old
owner drops it as soon as it sees the same change); a speaker whose API view is older than
``api_yield_after`` yields to peers whose views are fresh. Defaults (0.1 / 0.4 / 0.05 / 1.0 s):
a dead owner is replaced ~0.3-0.4 s after its last heartbeat, 10 frames/s per node.

Not guaranteed: safety assumes the hosts' monotonic clocks run at about the same rate
(drift far below ``fence_margin / lease_duration`` and ``fence_margin / dead_after``, 25 %).
"""

from __future__ import annotations

import dataclasses
import math

DEFAULT_LEASE_DURATION = 2.0
DEFAULT_RENEW_INTERVAL = 0.6
DEFAULT_FENCE_MARGIN = 0.5
DEFAULT_HANDOVER_DELAY = 0.5


class TimingError(ValueError):
    """A timing knob is out of range; the message names the field and value."""


def _seconds(field: str, value: object) -> float:
    """value as float seconds, or TimingError naming field (bools and NaN are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TimingError(f"{field}: expected a finite number of seconds, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LeaseTimings:
    """Validated Lease timings (seconds). Construct with keywords; invalid values raise TimingError."""

    lease_duration: float = DEFAULT_LEASE_DURATION
    renew_interval: float = DEFAULT_RENEW_INTERVAL
    fence_margin: float = DEFAULT_FENCE_MARGIN
    handover_delay: float = DEFAULT_HANDOVER_DELAY

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = _seconds(field.name, getattr(self, field.name))
            if value <= 0:
                raise TimingError(f"{field.name}: must be > 0 seconds, got {value!r}")
            object.__setattr__(self, field.name, value)
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


DEFAULT_HEARTBEAT_INTERVAL = 0.1
DEFAULT_DEAD_AFTER = 0.4
DEFAULT_LAN_HANDOVER_DELAY = 0.05
DEFAULT_API_STALE_AFTER = 1.0
MIN_HEARTBEAT_INTERVAL = 0.02  # 50 frames/s per node and interface: more only burns CPU and LAN
MAX_SECONDS = 60.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class LanTimings:
    """Validated LAN heartbeat timings (seconds); invalid values raise TimingError naming the field."""

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    dead_after: float = DEFAULT_DEAD_AFTER
    handover_delay: float = DEFAULT_LAN_HANDOVER_DELAY
    api_stale_after: float = DEFAULT_API_STALE_AFTER

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = _seconds(field.name, getattr(self, field.name))
            if not 0 <= value <= MAX_SECONDS:
                raise TimingError(f"{field.name}: must be between 0 and {MAX_SECONDS:g} seconds, "
                                  f"got {value!r}")
            object.__setattr__(self, field.name, value)
        if self.heartbeat_interval < MIN_HEARTBEAT_INTERVAL:
            raise TimingError(f"heartbeat_interval: must be >= {MIN_HEARTBEAT_INTERVAL:g} s, "
                              f"got {self.heartbeat_interval:g}")
        if self.dead_after < 3 * self.heartbeat_interval:
            raise TimingError(f"dead_after: must be >= 3 x heartbeat_interval "
                              f"({3 * self.heartbeat_interval:g}) so two lost frames are not a death, "
                              f"got {self.dead_after:g}")
        if self.handover_delay > self.dead_after:
            raise TimingError(f"handover_delay: must be <= dead_after ({self.dead_after:g}), "
                              f"got {self.handover_delay:g}")
        if self.api_stale_after < 0.5:
            raise TimingError(f"api_stale_after: must be >= 0.5 s, got {self.api_stale_after:g}")

    @property
    def fence_margin(self) -> float:
        """How long before a peer may call us dead we stop answering (a quarter of dead_after)."""
        return self.dead_after / 4

    @property
    def confirm_fresh(self) -> float:
        """A peer whose last confirmation of us is older no longer holds our fence while others
        confirm us (membership._guards); it lapses before that confirmation could fence us."""
        return self.dead_after - self.fence_margin - self.heartbeat_interval / 2

    @property
    def api_probe_interval(self) -> float:
        """How often the speaker checks that the API server still answers it (one GET)."""
        return self.api_stale_after / 3

    @property
    def api_yield_after(self) -> float:
        """A node whose last answered probe is this old yields to peers whose views are fresh.

        Two probe intervals past staleness: in a global outage every peer's view goes stale within
        one probe interval of ours, so nobody yields to a peer that is about to go stale itself."""
        return self.api_stale_after + 2 * self.api_probe_interval

    @property
    def api_yield_hold(self) -> float:
        """How long a peer's view must have been fresh before a stale speaker yields to it: two
        probe intervals. When an outage ends, views turn fresh within one probe interval of each
        other, so nobody yields to a peer just ahead of it (its addresses would move away and back
        as the control plane comes back)."""
        return 2 * self.api_probe_interval

    def yields(self, view_age: float, peer_fresh_for: float | None) -> bool:
        """A speaker whose API view is `view_age` old yields to a peer whose view has been fresh for
        `peer_fresh_for` (None: no peer's is): after ``api_yield_after`` and ``api_yield_hold``."""
        return (peer_fresh_for is not None and view_age >= self.api_yield_after
                and peer_fresh_for >= self.api_yield_hold)

    @property
    def frames_per_second(self) -> float:
        """Heartbeat frames sent per second per node and interface."""
        return 1.0 / self.heartbeat_interval
