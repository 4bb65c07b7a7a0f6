"""The controller's work plumbing (l2lb_agent.writers): key dedup, per-key order, priorities, fencing."""

from __future__ import annotations

import threading
import time

from l2lb_agent import kube, writers


def test_key_queue_dedups_and_keeps_first_position() -> None:
    q = writers.KeyQueue()
    q.put_many(["a", "b", "a"])
    q.put("c")
    q.put("b")
    assert [q.get(0.1) for _ in range(3)] == ["a", "b", "c"]
    assert q.empty()
    assert q.get(0.05) is None


def test_writes_of_one_key_keep_order_and_status_goes_before_events() -> None:
    done: list[str] = []
    gate = threading.Event()
    w = writers.Writers(1, lambda: True, lambda key, exc: None)
    w.submit("k", gate.wait)  # holds the only thread while the rest is queued
    w.submit("k", lambda: done.append("event-1"), priority=1)
    w.submit("k", lambda: done.append("status-1"))
    w.submit("k", lambda: done.append("status-2"))
    w.submit("k", lambda: done.append("event-2"), priority=1)
    w.start()
    gate.set()
    deadline = time.monotonic() + 5
    while len(done) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert done == ["status-1", "status-2", "event-1", "event-2"]


def test_no_write_without_leadership_and_errors_reported() -> None:
    leading = threading.Event()
    errors: list[tuple[str, int]] = []
    ran: list[str] = []
    w = writers.Writers(2, leading.is_set, lambda key, exc: errors.append((key, exc.status)))
    w.start()
    w.submit("a", lambda: ran.append("a"))
    time.sleep(0.2)
    leading.set()

    def fail() -> None:
        raise kube.ApiError(500, "boom")

    def gone() -> None:
        raise kube.NotFound(404, "gone")

    w.submit("b", fail)
    w.submit("c", gone)
    w.submit("d", fail, report=False)
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    w.stop()
    assert ran == []
    assert errors == [("b", 500)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_to_the_cap_with_jitter_taking_off_at_most_half() -> None:
    assert [writers.backoff_delay(n, 0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert writers.backoff_delay(9, 0.0) == 256.0
    assert writers.backoff_delay(10, 0.0) == writers.BACKOFF_CAP == 300.0
    assert writers.backoff_delay(10_000, 0.0) == 300.0  # no overflow after days of failures
    assert writers.backoff_delay(1, 0.999) > 0.5 and writers.backoff_delay(12, 0.5) == 225.0


def test_failed_key_waits_its_backoff_then_comes_back_once() -> None:
    clock = FakeClock()
    q = writers.KeyQueue(clock=clock, jitter=lambda: 0.0)
    assert q.put_later("a") == (1, 1.0)
    assert q.get(0) is None and q.empty()
    clock.now += 0.99
    assert q.get(0) is None
    clock.now += 0.01
    assert not q.empty()
    assert q.get(0) == "a" and q.get(0) is None
    assert q.put_later("a") == (2, 2.0)
    clock.now += 2.0
    assert q.get(0) == "a"
    assert q.failing() == 1
    assert q.forget("a") == 2 and q.failing() == 0
    assert q.put_later("a") == (1, 1.0)  # a new streak starts from the base again


def test_streak_of_failures_keeps_one_entry_per_key_and_ready_keys_go_first() -> None:
    clock = FakeClock()
    q = writers.KeyQueue(clock=clock, jitter=lambda: 0.0)
    for _ in range(50):
        q.put_later("a")  # the first due time wins; later ones do not pile up
    q.put_later("b")
    q.put("c")
    assert len(q._later) <= 2 and q.get(0) == "c"
    clock.now += 1.0
    assert sorted([q.get(0), q.get(0)]) == ["a", "b"]  # type: ignore[type-var]
    assert q.get(0) is None


def test_get_sleeps_until_a_delayed_key_is_due() -> None:
    q = writers.KeyQueue(jitter=lambda: 1.0)  # real clock; delay 0.5 s
    started = time.monotonic()
    q.put_later("a")
    assert q.get(5.0) == "a"
    assert time.monotonic() - started >= 0.45


def test_success_is_reported_for_reported_jobs_only() -> None:
    ok: list[str] = []
    w = writers.Writers(1, lambda: True, lambda key, exc: None, ok.append)
    w.start()
    w.submit("s", lambda: None)
    w.submit("e", lambda: None, report=False, priority=1)
    deadline = time.monotonic() + 5
    while not ok and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    w.stop()
    assert ok == ["s"]
