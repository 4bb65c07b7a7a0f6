"""Pod Events as a kubelet records them (Started, Killing, BackOff, Unhealthy, Failed).

Where it sits: pods.py and container.py call `Recorder.pod_event()`; a single
background thread writes the Events, so a slow or cut API never stalls a Pod worker.
Best effort by design: when the queue is full or the API refuses, the Event is dropped
(logged at debug level).  `kubectl describe pod` then reads like on a real node.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from typing import Any

from kubernetes import client

from . import api

log = logging.getLogger("kubelet.events")

QUEUE_SIZE = 500


def event_body(pod: dict[str, Any], node: str, reason: str, message: str, kind: str, now: str,
               field_path: str = "") -> api.JSON:
    """A core/v1 Event about the Pod, reported by the kubelet of `node`."""
    meta = pod["metadata"]
    involved = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "namespace": meta["namespace"],
                "uid": meta["uid"]}
    if field_path:
        involved["fieldPath"] = field_path
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class Recorder:
    """Queue + writer thread; start() once, then pod_event() from any thread."""

    def __init__(self, node: str, api_client: client.ApiClient) -> None:
        self._node = node
        self._core = client.CoreV1Api(api_client)
        self._queue: queue.Queue[api.JSON] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def pod_event(self, pod: dict[str, Any], reason: str, message: str, warning: bool = False,
                  container: str = "") -> None:
        field_path = f"spec.containers{{{container}}}" if container else ""
        body = event_body(pod, self._node, reason, message, "Warning" if warning else "Normal",
                          api.now_rfc3339(), field_path)
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            log.debug("event queue full; dropped %s %s", reason, message)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                api.call(self._core.create_namespaced_event, body["metadata"]["namespace"], body=body)
            except (api.ApiException, api.ApiUnavailable) as exc:
                log.debug("event %s dropped: %s", body["reason"], api.describe(exc))
