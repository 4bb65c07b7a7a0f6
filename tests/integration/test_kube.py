"""l2lb_agent.kube (the agent's REST client and Informer) against the lab's real API server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from l2lb_agent import kube

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(lab: Any) -> kube.KubeClient:
    return kube.KubeClient.from_config(str(REPO / ".lab/kubeconfig"))


@pytest.fixture
def ns(client: kube.KubeClient) -> Iterator[str]:
    name = f"l2lb-kube-{uuid.uuid4().hex[:6]}"
    client.create(kube.NAMESPACES, {"metadata": {"name": name}})
    yield name
    client.delete(kube.NAMESPACES, name)


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_verbs_and_typed_errors(client: kube.KubeClient, ns: str) -> None:
    before = client.request_count
    created = client.create(kube.CONFIGMAPS, cm("x", a="1"), ns)
    assert client.get(kube.CONFIGMAPS, "x", ns)["data"] == {"a": "1"}
    with pytest.raises(kube.AlreadyExists):
        client.create(kube.CONFIGMAPS, cm("x"), ns)
    client.patch(kube.CONFIGMAPS, "x", {"data": {"b": "2"}}, ns)
    with pytest.raises(kube.Conflict) as info:
        client.replace(kube.CONFIGMAPS, "x", created, ns)  # stale resourceVersion
    assert info.value.status == 409
    applied = client.patch(
        kube.CONFIGMAPS, "x", cm("x", c="3"), ns, patch_type="apply", field_manager="t", force=True
    )
    assert applied["data"] == {"a": "1", "b": "2", "c": "3"}
    dry = client.create(kube.CONFIGMAPS, cm("y"), ns, dry_run=True)
    assert dry["metadata"]["name"] == "y"
    with pytest.raises(kube.NotFound):
        client.get(kube.CONFIGMAPS, "y", ns)
    items, rv = client.list(kube.CONFIGMAPS, ns, field_selector="metadata.name=x")
    assert [i["metadata"]["name"] for i in items] == ["x"] and rv
    client.delete(kube.CONFIGMAPS, "x", ns)
    with pytest.raises(kube.NotFound) as gone:
        client.delete(kube.CONFIGMAPS, "x", ns)
    assert "not found" in gone.value.message
    assert client.request_count - before == 11


def test_event_on_an_object(client: kube.KubeClient, ns: str) -> None:
    obj = client.create(kube.CONFIGMAPS, cm("z"), ns)
    client.create_event(ns, {"kind": "ConfigMap", **obj}, "Warning", "TestReason", "hello", "l2lb-test")
    items, _rv = client.list(kube.EVENTS, ns, field_selector="involvedObject.name=z")
    assert [(e["reason"], e["type"], e["message"], e["involvedObject"]["uid"]) for e in items] == [
        ("TestReason", "Warning", "hello", obj["metadata"]["uid"])
    ]


def test_unreachable_api_raises_quickly() -> None:
    cfg = kube.kubeconfig.ClusterConfig(
        server="https://127.0.0.1:1", ssl_context=None, token=kube.kubeconfig.TokenSource(), source="test"
    )
    client = kube.KubeClient(cfg, connect_timeout=1, read_timeout=1)
    started = time.monotonic()
    with pytest.raises(kube.ApiUnavailable):
        client.get(kube.NODES, "node1")
    assert time.monotonic() - started < 3


def test_informer_cache_handler_and_prompt_stop(client: kube.KubeClient, ns: str) -> None:
    seen: list[tuple[str, str]] = []
    client.create(kube.CONFIGMAPS, cm("pre"), ns)
    informer = kube.Informer(
        client,
        kube.CONFIGMAPS,
        lambda t, new, old: seen.append((t, (new or old or {})["metadata"]["name"])),
        namespace=ns,
        label_selector="!skip",
    )
    informer.start()
    assert informer.synced.wait(10)
    client.create(kube.CONFIGMAPS, cm("a"), ns)
    client.patch(kube.CONFIGMAPS, "a", {"data": {"k": "v"}}, ns)
    client.create(
        kube.CONFIGMAPS, {**cm("hidden"), "metadata": {"name": "hidden", "labels": {"skip": "1"}}}, ns
    )
    client.delete(kube.CONFIGMAPS, "a", ns)
    deadline = time.monotonic() + 10
    while ("DELETED", "a") not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [s for s in seen if s[1] in ("pre", "a", "hidden")] == [
        ("ADDED", "pre"),
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
    ]
    assert f"{ns}/pre" in informer.cache and f"{ns}/a" not in informer.cache
    assert "managedFields" not in informer.cache[f"{ns}/pre"]["metadata"]
    started = time.monotonic()
    informer.stop()
    assert time.monotonic() - started < 2
    assert not any(t.name == informer.name for t in threading.enumerate())
