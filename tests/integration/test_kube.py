"""l2lb_agent.kube (the agent's REST client and Informer) against the lab's real API server."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import socket
import threading
import time
import urllib.parse
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


class Relay:
    """A TCP relay to the API server whose connections can all be cut at once: a real API blip
    (broken watch streams, refused reconnects) without touching the shared API server."""

    def __init__(self, target: tuple[str, int], request_delay: float = 0.0) -> None:
        self.target, self.down, self.request_delay = target, False, request_delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _addr = self._listener.accept()
            except OSError:
                return
            if self.down:
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [conn, upstream]
            for a, b, delay in ((conn, upstream, self.request_delay), (upstream, conn, 0.0)):
                threading.Thread(target=self._pump, args=(a, b, delay), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                time.sleep(delay)  # client -> server only: the server answers with a later state
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until restore()."""
        self.down = True
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        self._listener.close()


def test_informer_resumes_after_a_blip_without_listing_again(client: kube.KubeClient, ns: str) -> None:
    url = urllib.parse.urlsplit(client.config.server)
    relay = Relay((url.hostname or "127.0.0.1", url.port or 443))
    via = kube.KubeClient(dataclasses.replace(client.config, server=f"https://127.0.0.1:{relay.port}"))
    seen: list[tuple[str, str]] = []
    informer = kube.Informer(via, kube.CONFIGMAPS, lambda t, new, old: seen.append(
        (t, (new or old or {})["metadata"]["name"])), namespace=ns)
    try:
        informer.start()
        assert informer.synced.wait(10)
        client.create(kube.CONFIGMAPS, cm("before"), ns)
        wait_for(lambda: ("ADDED", "before") in seen)
        relay.cut()  # the watch stream breaks; reconnects are refused
        client.create(kube.CONFIGMAPS, cm("during"), ns)
        client.delete(kube.CONFIGMAPS, "before", ns)
        time.sleep(2)  # a few refused resumes (backoff 0.5 s, 1 s)
        relay.restore()
        wait_for(lambda: ("ADDED", "during") in seen and ("DELETED", "before") in seen)
        client.create(kube.CONFIGMAPS, cm("after"), ns)
        wait_for(lambda: ("ADDED", "after") in seen)
        assert informer.lists == 1  # resumed from its resourceVersion: no relist
        assert sorted(k.split("/")[1] for k in informer.cache) == ["after", "during", "kube-root-ca.crt"]
    finally:
        informer.stop()
        relay.close()


def wait_for(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_slow_get_never_shortens_the_holders_time(client: kube.KubeClient, ns: str) -> None:
    """A follower whose requests reach the API server late sees a renewal written after its GET
    left; dating that observation from the send would let it take over before the holder's time is
    up. The takeover must start at least lease_duration after the holder's last renewal."""
    from l2lb_agent import leader, timing

    t = timing.LeaseTimings(lease_duration=4.0, renew_interval=1.0, fence_margin=1.0)
    url = urllib.parse.urlsplit(client.config.server)
    relay = Relay((url.hostname or "127.0.0.1", url.port or 443), request_delay=0.8)
    slow = kube.KubeClient(dataclasses.replace(client.config, server=f"https://127.0.0.1:{relay.port}"))
    holder = leader.LeaderElector(client, ns, "l2lb-test", "holder", t)
    follower = leader.LeaderElector(slow, ns, "l2lb-test", "follower", t)
    try:
        holder.start()
        wait_for(holder.is_leader)
        follower.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the holder renews: the follower never leads
            assert not follower.is_leader()
            time.sleep(0.05)
        holder.stop(release=False)  # silent from now on, without handing over
        spec = client.get(kube.LEASES, "l2lb-test", ns)["spec"]
        assert spec["holderIdentity"] == holder.identity
        last_renewal = dt.datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=dt.UTC).timestamp()
        wait_for(follower.is_leader, timeout=20)
        took_over = time.time() - (time.monotonic() - (follower._renewed_at or 0.0))
        assert took_over - last_renewal >= t.lease_duration - 0.01
    finally:
        follower.stop(release=False)
        holder.stop(release=False)
        relay.close()
