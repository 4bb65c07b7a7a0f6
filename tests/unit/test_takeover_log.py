"""The speaker's `live set applied` line, as an operator reads it and as bench-scale parses it."""

from __future__ import annotations

import logging
import time

import pytest
from l2lb_agent import cli
from l2lb_agent.speaker import Speaker

from tests.bench import speaker_harness as h


def test_takeover_line_says_when_answers_were_in_place(caplog: pytest.LogCaptureFixture) -> None:
    wall0, cpu0 = time.perf_counter() - 0.2, time.thread_time()
    with caplog.at_level(logging.INFO, logger="l2lb_agent.speaker"):
        Speaker._log_takeover_cost(1676, 2, wall0 + 0.05, True, wall0, cpu0)
    message = caplog.records[-1].getMessage()
    assert message.startswith("live set applied: 1676 addresses gained, 2 lost; answers in place 50 ms")
    assert "gratuitous ARPs sent after 2" in message  # 200 ms and a little since wall0
    fmt = logging.Formatter(cli.LOG_FORMAT, cli.LOG_DATEFMT)  # the agent's: what the bench reads
    fmt.converter = time.gmtime
    line = fmt.format(caplog.records[-1])
    at = h.log_time(line)
    assert at is not None and abs(at - caplog.records[-1].created) < 0.002
    assert h._IN_PLACE.search(line).group(1) == "50"


@pytest.mark.parametrize("line, expected", [
    ("2026-12-03T14:02:07.045Z INFO    l2lb_agent.speaker: live speakers: node2", 1796306527.045),
    ("Traceback (most recent call last):", None),
    ("2026-12-03 14:02:07 INFO no millisecond stamp", None),
])
def test_log_time(line: str, expected: float | None) -> None:
    got = h.log_time(line)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_takeover_line_says_when_the_gratuitous_arps_were_left_to_the_announcer(
        caplog: pytest.LogCaptureFixture) -> None:
    """While more gains wait for a hand-over the sync does not send them itself: the line must not
    claim they were sent."""
    wall0, cpu0 = time.perf_counter() - 0.2, time.thread_time()
    with caplog.at_level(logging.INFO, logger="l2lb_agent.speaker"):
        Speaker._log_takeover_cost(1677, 0, wall0 + 0.05, False, wall0, cpu0)
    message = caplog.records[-1].getMessage()
    assert "gratuitous ARPs queued for the announcer's thread after 2" in message
    assert "sent" not in message
