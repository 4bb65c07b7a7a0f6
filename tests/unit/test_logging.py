"""cli.setup_logging: logging never waits for its sink (the answering thread logs), drops past a
bound and says how many, and keeps every record's own time and the agent's format."""

from __future__ import annotations

import io
import logging
import os
import queue
import threading

import pytest
from l2lb_agent import cli


@pytest.fixture(autouse=True)
def _root_logger_restored():
    """setup_logging configures the root logger: put back what pytest had."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, cli.NonBlockingLogHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_a_stuck_sink_never_blocks_a_logging_call() -> None:
    read_end, write_end = os.pipe()  # nobody reads: once its buffer is full, a write blocks for good
    stream = os.fdopen(write_end, "w", buffering=1)
    listener = cli.setup_logging("debug", stream)
    log = logging.getLogger("l2lb_agent.test")
    try:
        done = threading.Event()

        def flood() -> None:
            for n in range(3 * cli.LOG_QUEUE_LIMIT):  # ~1 MB of lines: far past the pipe's 64 KiB
                log.debug("line %d %s", n, "x" * 300)
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(60), "a logging call blocked on the stuck sink"
        handler = next(h for h in logging.getLogger().handlers if isinstance(h, cli.NonBlockingLogHandler))
        assert handler.dropped > 0, "the bound was never reached: the test did not fill the queue"
    finally:
        drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(read_end, 65536), b"")])
        drain.start()  # the sink moves again: the writer thread empties the queue and stops
        listener.stop()
        stream.close()
        drain.join(10)
        os.close(read_end)


def test_dropped_records_are_counted_then_reported_before_the_next_one() -> None:
    sink: queue.Queue = queue.Queue(2)
    handler = cli.NonBlockingLogHandler(sink)
    record = logging.LogRecord("l2lb_agent", logging.INFO, __file__, 1, "r%d", (1,), None)
    for _ in range(5):
        handler.handle(record)
    assert (sink.qsize(), handler.dropped) == (2, 3)
    sink.get_nowait(), sink.get_nowait()
    handler.handle(record)
    warning, kept = sink.get_nowait(), sink.get_nowait()
    assert warning.levelno == logging.WARNING and warning.getMessage().startswith("3 log records dropped")
    assert kept.getMessage() == "r1" and handler.dropped == 0


def test_lines_keep_the_agent_format_and_tracebacks() -> None:
    out = io.StringIO()
    listener = cli.setup_logging("info", out)
    try:
        log = logging.getLogger("l2lb_agent.test")
        log.debug("not shown at info")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed %s", "here")
    finally:
        listener.stop()
    lines = out.getvalue().splitlines()
    assert "not shown" not in out.getvalue()
    assert lines[0].endswith("Z ERROR   l2lb_agent.test: failed here"), lines[0]
    assert "ValueError: boom" in out.getvalue()
