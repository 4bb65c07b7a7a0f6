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
