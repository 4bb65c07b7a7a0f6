"""Write budgets on fake time: the token bucket, the Event aggregator, the status-write throttle."""

from __future__ import annotations

import threading
import time

import pytest
from l2lb_agent import events, writers
from l2lb_agent.events import Verdict


def ev(key: str = "ns/a", reason: str = "IPAllocated", message: str = "Assigned IP 10.0.0.1") -> events.Event:
    return events.Event(key=key, type="Normal", reason=reason, message=message)


@pytest.mark.parametrize(("rate", "burst", "times", "want"), [
    (1.0, 1, [0.0, 0.0, 0.5, 1.0], [True, False, False, True]),
    (10.0, 3, [0.0] * 4 + [0.1], [True, True, True, False, True]),
    # the refill stops at the burst
    (2.0, 2, [0.0, 0.0, 0.0, 100.0, 100.0, 100.0], [True, True, False, True, True, False]),
    (1.0, 1, [5.0, 4.0, 5.0], [True, False, False]),  # a clock going back grants nothing
], ids=["rate-1", "burst-3", "cap-at-burst", "clock-back"])
def test_token_bucket_table(rate: float, burst: int, times: list[float], want: list[bool]) -> None:
    b = events.TokenBucket(rate, burst)
    assert [b.take(t) for t in times] == want


def test_reserve_spaces_parallel_callers_at_the_rate() -> None:
    b = events.TokenBucket(50, 100)
    waits = [b.reserve(0.0) for _ in range(200)]
    assert waits[:100] == [0.0] * 100  # the burst goes at once
    assert waits[100:] == pytest.approx([(i + 1) / 50 for i in range(100)])  # then 50 per second


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"rate": 0}, "rate"), ({"rate": float("nan")}, "rate"), ({"burst": 0.5}, "burst"),
    ({"backlog": 0}, "backlog"), ({"remembered": True}, "remembered"), ({"window": -1}, "window"),
])
def test_budget_refuses_bad_values_by_name(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        events.Budget(**kwargs)


def test_burst_of_10000_allocations_writes_the_burst_then_the_rate_and_counts_the_rest() -> None:
    agg = events.EventAggregator(events.Budget(rate=5, burst=25, backlog=1000))
    verdicts = [agg.offer(ev(f"ns/s{i}"), 0.0) for i in range(10_000)]
    assert verdicts.count(Verdict.WRITE) == 25
    assert verdicts.count(Verdict.QUEUED) == 1000
    assert verdicts.count(Verdict.DROPPED) == 10_000 - 25 - 1000
    assert agg.due(0.0) == []
    assert len(agg.due(1.0)) == 5  # 5 per second from the backlog, oldest first
    assert agg.wait(1.0) == pytest.approx(0.2)
    assert agg.take_dropped() == {"IPAllocated": 8975} and agg.take_dropped() == {}
    # nothing vanished: written + queued + dropped = offered
    sent, queued = 25 + 5, agg.queued()
    assert sent + queued + 8975 == 10_000


def test_backlog_keeps_order_and_new_events_wait_behind_it() -> None:
    agg = events.EventAggregator(events.Budget(rate=1, burst=1, backlog=10))
    assert agg.offer(ev("ns/a"), 0.0) is Verdict.WRITE
    assert agg.offer(ev("ns/b"), 0.0) is Verdict.QUEUED
    assert agg.offer(ev("ns/c"), 5.0) is Verdict.QUEUED  # tokens accrued, but b goes first
    assert [e.key for e in agg.due(5.0)] == ["ns/b"]  # the bucket holds at most burst = 1
    assert [e.key for e in agg.due(6.0)] == ["ns/c"]
    assert agg.wait(6.0) is None


# Ordered scenario: (time, event, verdict). Invariant after each row: every offer is accounted for.
REPEATS = [
    (0.0, ev(), Verdict.WRITE),
    (1.0, ev(), Verdict.AGGREGATED),  # identical within the window
    (2.0, ev(message="Assigned IP 10.0.0.2"), Verdict.WRITE),  # another message is news
    (3.0, ev(key="ns/b"), Verdict.WRITE),  # the same message on another object too
    (599.0, ev(), Verdict.AGGREGATED),
    (601.0, ev(), Verdict.WRITE),  # the window (600 s) has passed since it was written
]


def test_identical_events_within_the_window_are_counted_not_written() -> None:
    agg = events.EventAggregator(events.Budget(rate=100, burst=100))
    for i, (now, event, want) in enumerate(REPEATS):
        assert agg.offer(event, now) is want, f"row {i}"
        assert sum(agg.counts.values()) == i + 1
    assert agg.counts[Verdict.AGGREGATED, "IPAllocated"] == 2


def test_remembered_identities_are_bounded() -> None:
    agg = events.EventAggregator(events.Budget(rate=1000, burst=1000, remembered=2))
    for key in ("ns/a", "ns/b", "ns/c"):
        agg.offer(ev(key), 0.0)
    assert agg.offer(ev("ns/a"), 1.0) is Verdict.WRITE  # forgotten: least recent of three
    assert agg.offer(ev("ns/c"), 1.0) is Verdict.AGGREGATED


def test_throttle_on_fake_time_keeps_threads_to_the_qps() -> None:
    now = [0.0]
    slept: list[float] = []
    t = writers.Throttle(50, 100, clock=lambda: now[0], sleep=slept.append)
    for _ in range(150):
        t.acquire()
    assert len(slept) == 50 and slept[-1] == pytest.approx(1.0)  # 150 writes: 100 at once, 50 in 1 s
    now[0] = 10.0  # idle: the bucket refills to the burst, never beyond
    slept.clear()
    for _ in range(100):
        t.acquire()
    assert slept == []
    assert t.acquire() == pytest.approx(0.02)


def test_event_writer_sends_the_burst_then_a_summary_of_the_dropped() -> None:
    sent: list[str] = []
    summaries: list[dict[str, int]] = []
    done = threading.Event()

    def summary(d: dict[str, int]) -> None:
        summaries.append(d)
        done.set()

    w = writers.EventWriter(lambda e: sent.append(e.key), summary, lambda: True,
                            events.Budget(rate=1000, burst=3, backlog=2))
    verdicts = [w.submit(ev(f"ns/s{i}")) for i in range(10)]
    assert verdicts.count(Verdict.DROPPED) == 5
    w.start()
    assert done.wait(5)
    w.stop()
    assert sent == [f"ns/s{i}" for i in range(5)]  # the burst, then the backlog in order
    assert summaries == [{"IPAllocated": 5}]
    assert w.written == 6


def test_events_wait_while_status_writes_are_pending_then_go() -> None:
    sent: list[str] = []
    busy = threading.Event()
    busy.set()
    w = writers.EventWriter(lambda e: sent.append(e.key), lambda d: None, lambda: True,
                            status_busy=busy.is_set, max_defer=30.0)
    w.start()
    w.submit(ev("ns/a"))
    time.sleep(0.3)
    assert sent == []  # the status writers are busy: the Event waits
    busy.clear()
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert sent == ["ns/a"]


def test_pending_counts_events_until_written_not_until_they_leave_the_backlog() -> None:
    """The events_queued gauges read pending(): an Event held behind status writes, or being sent,
    is still pending; zero means every accepted Event was written."""
    release, sending = threading.Event(), threading.Event()

    def send(_e: events.Event) -> None:
        sending.set()
        assert release.wait(5)
    busy = threading.Event()
    busy.set()
    w = writers.EventWriter(send, lambda d: None, lambda: True, status_busy=busy.is_set, max_defer=30.0)
    w.start()
    w.submit(ev("ns/a"))
    time.sleep(0.2)
    assert w.aggregator.queued() == 0 and w.pending() == 1  # out of the backlog, held behind status writes
    busy.clear()
    assert sending.wait(5)
    assert w.pending() == 1  # in flight
    release.set()
    deadline = time.monotonic() + 5
    while w.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert w.pending() == 0 and w.written == 1


def test_events_wait_behind_status_writes_at_most_max_defer() -> None:
    sent: list[float] = []
    w = writers.EventWriter(lambda e: sent.append(time.monotonic()), lambda d: None, lambda: True,
                            status_busy=lambda: True, max_defer=0.3)
    w.start()
    began = time.monotonic()
    w.submit(ev("ns/a"))
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert len(sent) == 1 and 0.25 <= sent[0] - began < 3  # never starved by a busy writer


def test_writers_are_busy_while_a_write_is_queued_or_in_flight() -> None:
    release, started = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)

    w = writers.Writers(2, lambda: True, lambda key, exc: None)
    assert not w.busy()
    w.start()
    w.submit("ns/a", slow)
    assert started.wait(5) and w.busy()  # in flight, none queued
    release.set()
    deadline = time.monotonic() + 5
    while w.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not w.busy()
    w.stop()
