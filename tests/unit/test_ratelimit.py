"""Answer rate limits (l2lb_agent.ratelimit) on fake time: tables and the spoofed-source flood."""

from __future__ import annotations

import pytest
from l2lb_agent import ratelimit
from l2lb_agent.ratelimit import Limit as L

SMALL = ratelimit.Rates(requester_rate=1, requester_burst=2, target_rate=10, target_burst=3,
                        total_rate=100, total_burst=5, max_requesters=4, max_targets=3)

# ordered scenario rows: (time, requester, target, expected); state carries from row to row
SCENARIO = [
    (0.0, b"a", b"t1", L.OK),
    (0.0, b"a", b"t1", L.OK),
    (0.0, b"a", b"t1", L.REQUESTER),  # a's burst of 2 is spent
    (0.0, b"b", b"t1", L.OK),  # t1's burst of 3 is now spent
    (0.0, b"c", b"t1", L.TARGET),
    (0.0, b"c", b"t2", L.OK),
    (0.0, b"c", b"t2", L.OK),  # total burst of 5 spent
    (0.0, b"d", b"t3", L.TOTAL),
    (0.5, b"a", b"t1", L.REQUESTER),  # a regains 0.5 token: not yet one
    (1.0, b"a", b"t1", L.OK),  # 1 s: a has 1, t1 has 3 (capped), total 5 (capped)
    (1.0, b"a", b"t1", L.REQUESTER),
]


def test_scenario_and_the_drops_are_counted() -> None:
    lim = ratelimit.AnswerLimiter(SMALL)
    for i, (now, req, tgt, expected) in enumerate(SCENARIO):
        assert lim.allow(req, tgt, now) is expected, f"row {i}"
        assert lim.tracked()[0] <= SMALL.max_requesters and lim.tracked()[1] <= SMALL.max_targets
    assert lim.counts == {L.OK: 6, L.REQUESTER: 3, L.TARGET: 1, L.TOTAL: 1}


def test_a_refused_answer_costs_no_token() -> None:
    lim = ratelimit.AnswerLimiter(SMALL)
    assert lim.allow(b"a", b"t", 0) is L.OK and lim.allow(b"a", b"t", 0) is L.OK
    for _ in range(100):
        assert lim.allow(b"a", b"t", 0) is L.REQUESTER
    assert lim.allow(b"b", b"t", 0) is L.OK  # t still had its third token


def test_spoofed_source_flood_is_capped_by_the_target_bucket() -> None:
    """The issue's flood: 20,000 requests from 20,000 spoofed sources in 0.4 s for one address."""
    lim = ratelimit.AnswerLimiter()
    r = lim.rates
    answers = sum(lim.allow(i.to_bytes(10, "big"), b"vip", 0.4 * i / 20_000) is L.OK for i in range(20_000))
    assert answers <= r.target_burst + 0.4 * r.target_rate + 1
    assert answers >= r.target_burst  # the burst is served: a real client is not starved at once
    assert lim.tracked()[0] == r.max_requesters  # memory stays bounded
    assert lim.counts[L.TARGET] == 20_000 - answers


def test_steady_legitimate_load_is_never_limited() -> None:
    lim = ratelimit.AnswerLimiter()
    for second in range(60):  # 100 clients, each asking for 3 addresses every second
        for client in range(100):
            for vip in (b"v1", b"v2", b"v3"):
                assert lim.allow(bytes([client]), vip, second + client / 1000) is L.OK


def test_forgotten_requester_starts_full_and_clock_going_back_is_harmless() -> None:
    lim = ratelimit.AnswerLimiter(SMALL)
    for req in (b"a", b"b", b"c", b"d", b"e"):  # max 4 requesters: a is forgotten
        lim.allow(req, b"t", 10.0)
    assert lim.tracked()[0] == 4
    assert lim.allow(b"x", b"u", 9.0) is L.OK  # time earlier than the last stamp: no refill, no crash


@pytest.mark.parametrize(("field", "value"), [
    ("requester_rate", 0), ("target_burst", 0.5), ("total_rate", float("nan")), ("max_requesters", 0),
    ("requester_burst", True), ("target_rate", "fast"),
])
def test_bad_rates_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ratelimit.Rates(**{field: value})  # type: ignore[arg-type]
