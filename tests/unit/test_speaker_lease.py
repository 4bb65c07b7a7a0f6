"""Heartbeat Lease bodies: names, labels, the renewal counter, and what a reader gets back."""

from __future__ import annotations

import pytest
from l2lb_agent import speaker_lease as sl
from l2lb_agent import timing


def test_lease_body_names_labels_and_seq() -> None:
    body = sl.lease_body("node1", "l2lb-system", "speaker-abc", 7, timing.LeaseTimings())
    meta = body["metadata"]
    assert meta["name"] == "l2lb-speaker-node1" and meta["namespace"] == "l2lb-system"
    assert meta["labels"] == {"l2lb.io/role": "speaker-heartbeat", "l2lb.io/node": "node1"}
    assert body["spec"]["holderIdentity"] == "speaker-abc"
    assert body["spec"]["leaseDurationSeconds"] == 2
    assert sl.lease_node(body) == "node1" and sl.lease_seq(body) == 7


def test_lease_body_keeps_resource_version_and_other_labels_of_base() -> None:
    base = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l2lb-speaker-node1", "resourceVersion": "42", "labels": {"x": "y"}},
            "spec": {"acquireTime": "2026-01-01T00:00:00.000000Z"}}
    body = sl.lease_body("node1", "ns", "id", 8, timing.LeaseTimings(), base)
    assert body["metadata"]["resourceVersion"] == "42"
    assert body["metadata"]["labels"]["x"] == "y"
    assert body["spec"]["acquireTime"] == "2026-01-01T00:00:00.000000Z"
    assert base["metadata"]["labels"] == {"x": "y"}  # the base is not modified


@pytest.mark.parametrize(
    ("lease", "seq"),
    [
        pytest.param({}, None, id="empty"),
        pytest.param({"metadata": {"annotations": {sl.SEQ_ANNOTATION: "x"}}}, None, id="not-a-number"),
        pytest.param({"metadata": {"annotations": {sl.SEQ_ANNOTATION: "12"}}}, 12, id="number"),
    ],
)
def test_lease_seq(lease: dict, seq: int | None) -> None:
    assert sl.lease_seq(lease) == seq


def test_heartbeat_starts_fenced() -> None:
    beat = sl.Heartbeat(None, "ns", "node1", "id", timing.LeaseTimings(), lambda *_: None)  # type: ignore[arg-type]
    assert not beat.valid(0.0) and beat.started(1) is None
