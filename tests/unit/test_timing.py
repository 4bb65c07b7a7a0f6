"""LeaseTimings: defaults meet the goals, every knob is validated with a message naming it."""

from __future__ import annotations

import pytest
from l2lb_agent import timing


def test_defaults_meet_the_goals() -> None:
    t = timing.LeaseTimings()
    assert t.lease_duration <= 3.0  # hard takeover <= lease_duration (+ watch delay), goal 3 s
    assert t.writes_per_second <= 2.0  # goal: <= 2 API writes/s per node
    assert t.fence_after < t.lease_duration  # silent before any peer may call us dead
    assert t.fence_after >= 2 * t.renew_interval  # two renewal attempts before fencing
    assert t.request_timeout <= t.fence_after


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"lease_duration": 0}, "lease_duration", id="zero-lease"),
        pytest.param({"lease_duration": -1.0}, "lease_duration", id="negative-lease"),
        pytest.param({"lease_duration": float("nan")}, "lease_duration", id="nan-lease"),
        pytest.param({"lease_duration": float("inf")}, "lease_duration", id="inf-lease"),
        pytest.param({"lease_duration": "2"}, "lease_duration", id="string-lease"),
        pytest.param({"renew_interval": True}, "renew_interval", id="bool-renew"),
        pytest.param({"renew_interval": 1.0}, "renew_interval", id="renew-too-slow-for-two-tries"),
        pytest.param({"fence_margin": 1.0}, "fence_margin", id="margin-half-lease"),
        pytest.param({"fence_margin": 0.05}, "fence_margin", id="margin-too-small"),
        pytest.param({"handover_delay": 5.0}, "handover_delay", id="handover-longer-than-lease"),
        pytest.param({"handover_delay": 0}, "handover_delay", id="handover-zero"),
    ],
)
def test_invalid_knobs_name_field_and_value(kwargs: dict, field: str) -> None:
    with pytest.raises(timing.TimingError) as err:
        timing.LeaseTimings(**kwargs)
    assert str(err.value).startswith(f"{field}:")
    value = kwargs[field]
    shown = {repr(value)} | ({f"{value:g}"} if isinstance(value, int | float) else set())
    assert any(f"got {v}" in str(err.value) for v in shown), str(err.value)


@pytest.mark.parametrize(
    ("lease", "renew", "expect_lease", "expect_renew"),
    [
        pytest.param(None, None, 2.0, 0.6, id="defaults"),
        pytest.param(10.0, None, 10.0, 3.0, id="lease-only-scales-renew"),
        pytest.param(10.0, 2.0, 10.0, 2.0, id="both"),
        pytest.param(None, 0.5, 2.0, 0.5, id="renew-only"),
    ],
)
def test_from_options(lease: float | None, renew: float | None, expect_lease: float,
                      expect_renew: float) -> None:
    t = timing.from_options(lease, renew)
    assert (t.lease_duration, t.renew_interval) == (expect_lease, expect_renew)


def test_from_options_rejects_renew_too_slow() -> None:
    with pytest.raises(timing.TimingError, match="renew_interval"):
        timing.from_options(2.0, 1.5)


def test_frozen() -> None:
    t = timing.LeaseTimings()
    with pytest.raises(AttributeError):
        t.lease_duration = 5.0  # type: ignore[misc]


def test_ints_become_floats_and_lease_seconds_round_up() -> None:
    t = timing.LeaseTimings(lease_duration=3, renew_interval=1, fence_margin=0.5)
    assert isinstance(t.lease_duration, float)
    assert timing.LeaseTimings(lease_duration=2.5, renew_interval=0.5).lease_duration_seconds == 3


# -- LanTimings (speaker heartbeats) ---------------------------------------------------------


def test_lan_defaults() -> None:
    t = timing.LanTimings()
    assert (t.heartbeat_interval, t.dead_after, t.handover_delay) == (0.1, 0.4, 0.05)
    assert t.fence_margin == pytest.approx(0.1)
    assert t.frames_per_second == pytest.approx(10)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"heartbeat_interval": 0.01}, "heartbeat_interval: must be >= 0.02"),
        ({"heartbeat_interval": float("nan")}, "heartbeat_interval: expected a finite number"),
        ({"heartbeat_interval": True}, "heartbeat_interval: expected a finite number"),
        ({"heartbeat_interval": "0.1"}, "heartbeat_interval: expected a finite number"),
        ({"dead_after": 0.2}, "dead_after: must be >= 3 x heartbeat_interval"),
        ({"dead_after": 61}, "dead_after: must be between 0 and 60"),
        ({"handover_delay": -1}, "handover_delay: must be between 0 and 60"),
        ({"handover_delay": 0.5}, "handover_delay: must be <= dead_after"),
        ({"api_stale_after": 0.1}, "api_stale_after: must be >= 0.5"),
    ],
    ids=["interval-floor", "nan", "bool", "text", "dead-too-short", "dead-too-long", "negative",
         "handover-over-dead", "stale-floor"],
)
def test_lan_invalid(kwargs: dict, fragment: str) -> None:
    with pytest.raises(timing.TimingError, match=fragment.replace("(", r"\(")):
        timing.LanTimings(**kwargs)


LAN = timing.LanTimings()  # api_stale_after 1.0: probes every 1/3 s, yield after 1.67 s of staleness
_HOLD = 2 * LAN.api_probe_interval


@pytest.mark.parametrize(("view_age", "peer_fresh_for", "yields"), [
    (0.5, 10.0, False),  # my view is fresh enough
    (LAN.api_yield_after, None, False),  # nobody's view is fresh: a global outage, nobody yields
    (LAN.api_yield_after, 10.0, True),  # cut off from the API alone: yield to peers that are not
    (LAN.api_yield_after - 0.001, 10.0, False),
    (10.0, 0.05, False),  # an outage ends: a peer's view turned fresh just before mine will
    (10.0, _HOLD - 0.001, False),
    (10.0, _HOLD, True),  # mine stayed stale two probe intervals after it: I am the one cut off
])
def test_a_stale_view_yields_only_to_a_view_fresh_for_two_probes(
        view_age: float, peer_fresh_for: float | None, yields: bool) -> None:
    assert LAN.yields(view_age, peer_fresh_for) is yields
