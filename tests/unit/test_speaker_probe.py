"""The lab's probe counts each answer for the request it answers, however late it lands."""

from __future__ import annotations

from tests.bench import speaker_probe

A, B = b"\xc0\xa8\x01\x64", b"\xc0\xa8\x01\x65"  # two requesters (192.168.1.100, .101)


def _attributed(answers: list[tuple[float, str, bytes]]) -> list[set[str]]:
    sent, answered, latest = [0.00, 0.02], [set(), set()], {A: 0, B: 1}
    speaker_probe._attribute(answers, sent, answered, latest)
    return answered


def test_a_late_answer_counts_for_its_request_not_the_window_it_lands_in() -> None:
    assert _attributed([(0.03, "m1", A), (0.03, "m2", B)]) == [{"m1"}, {"m2"}]


def test_two_macs_answering_one_request_are_a_double_answer() -> None:
    assert _attributed([(0.03, "m1", B), (0.04, "m2", B)]) == [set(), {"m1", "m2"}]


def test_answers_to_no_request_of_ours_or_too_late_count_for_nothing() -> None:
    stranger = b"\xc0\xa8\x01\x01"
    late = speaker_probe.LATE_ANSWER + 0.01
    assert _attributed([(0.01, "m1", stranger), (late, "m2", A)]) == [set(), set()]
