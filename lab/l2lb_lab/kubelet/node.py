"""The lab kubelet's Node: registration, NodeStatus and the kube-node-lease heartbeat.

Where it sits: kubelet.py starts `NodeAgent` once; the pure builders (`node_object`,
`node_status`, `lease_body`) turn plain values into API bodies and are unit-testable.
Heartbeats are what the node lifecycle controller watches: the Lease is renewed every
LEASE_RENEW seconds, the NodeStatus (conditions' lastHeartbeatTime) every STATUS_EVERY
seconds.  If the API is unreachable the loop simply retries; nothing else stops.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import threading
import time
from dataclasses import dataclass

from kubernetes import client

from . import api

log = logging.getLogger("kubelet.node")

KUBELET_VERSION = "v1.37.2"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40  # what a real kubelet writes; the lab's controller-manager grace decides
LEASE_RENEW = 2.0
STATUS_EVERY = 8.0
CONDITIONS = {  # type -> (reason, message) when healthy
    "MemoryPressure": ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    "DiskPressure": ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    "PIDPressure": ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    "NetworkUnavailable": ("RouteCreated", "lab LAN is a plain bridge: no routes needed"),
    "Ready": ("KubeletReady", "lab kubelet is posting ready status"),
}


@dataclass(frozen=True, kw_only=True)
class NodeIdentity:
    name: str
    ipv4: str
    ipv6: str
    runtime: str = "lab://0.1"  # status.nodeInfo.containerRuntimeVersion, e.g. runc://1.1.5


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def node_object(node: NodeIdentity) -> api.JSON:
    """The Node as the kubelet registers it (metadata + spec; status is patched after)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": node_labels(node)},
        "spec": {},
    }


def node_labels(node: NodeIdentity) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": _arch(),
    }


def node_status(node: NodeIdentity, now: str, transitions: dict[str, str]) -> api.JSON:
    """Full NodeStatus; `transitions` maps condition type -> lastTransitionTime to keep."""
    capacity = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"}
    conditions = []
    for kind, (reason, message) in CONDITIONS.items():
        conditions.append({
            "type": kind,
            "status": "True" if kind == "Ready" else "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": transitions.get(kind, now),
        })
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": node.ipv4},
            {"type": "InternalIP", "address": node.ipv6},
            {"type": "Hostname", "address": node.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": _node_info(node),
    }


def _node_info(node: NodeIdentity) -> dict[str, str]:
    # machineID/systemUUID must differ per node although they share one host.
    ident = hashlib.sha256(f"l2lb-lab/{node.name}".encode()).hexdigest()
    return {
        "machineID": ident[:32],
        "systemUUID": f"{ident[:8]}-{ident[8:12]}-{ident[12:16]}-{ident[16:20]}-{ident[20:32]}",
        "bootID": _boot_id(),
        "kernelVersion": platform.release(),
        "osImage": _os_image(),
        "containerRuntimeVersion": node.runtime,
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux",
        "architecture": _arch(),
    }


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _os_image() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def lease_body(node_name: str, node_uid: str, now_micro: str) -> api.JSON:
    owner = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}] if node_uid else []
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node_name, "namespace": LEASE_NAMESPACE, "ownerReferences": owner},
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro},
    }


class NodeAgent:
    """Registers the Node and keeps it alive; run() loops until stop()."""

    def __init__(self, node: NodeIdentity, api_client: client.ApiClient) -> None:
        self.node = node
        self._core = client.CoreV1Api(api_client)
        self._coord = client.CoordinationV1Api(api_client)
        self._stop = threading.Event()
        self._uid = ""
        self._transitions: dict[str, str] = {}
        self._last_status = 0.0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._tick()
            except (api.ApiException, api.ApiUnavailable) as exc:
                log.warning("heartbeat failed: %s", api.describe(exc))
            except Exception:  # heartbeats must go on whatever one pass hit
                log.exception("heartbeat: unexpected error")
            self._stop.wait(max(0.2, LEASE_RENEW - (time.monotonic() - started)))

    def _tick(self) -> None:
        if not self._uid:
            self._register()
        self._renew_lease()
        if time.monotonic() - self._last_status >= STATUS_EVERY:
            try:
                self._post_status()
            except api.ApiException as exc:
                if exc.status == 404:  # someone deleted our Node: register again
                    log.warning("Node %s disappeared; registering again", self.node.name)
                    self._uid = ""
                raise

    def _register(self) -> None:
        name = self.node.name
        try:
            obj = api.call(self._core.create_node, body=node_object(self.node))
            log.info("registered Node %s", name)
        except api.ApiException as exc:
            if exc.status != 409:
                raise
            # A Node from an earlier run (kubelet restart or node-up): reuse it.
            obj = api.merge_patch(self._core.patch_node, name,
                                  body={"metadata": {"labels": node_labels(self.node)}})
            log.info("reusing existing Node %s", name)
        for cond in obj.get("status", {}).get("conditions", []) or []:
            if cond.get("status") == ("True" if cond["type"] == "Ready" else "False"):
                self._transitions[cond["type"]] = cond.get("lastTransitionTime", "")
        self._uid = obj["metadata"]["uid"]
        self._post_status()

    def _post_status(self) -> None:
        now = api.now_rfc3339()
        status = node_status(self.node, now, self._transitions)
        api.merge_patch(self._core.patch_node_status, self.node.name, body={"status": status})
        for cond in status["conditions"]:
            self._transitions.setdefault(cond["type"], cond["lastTransitionTime"])
        self._last_status = time.monotonic()

    def _renew_lease(self) -> None:
        body = lease_body(self.node.name, self._uid, api.now_micro())
        try:
            api.merge_patch(self._coord.patch_namespaced_lease, self.node.name, LEASE_NAMESPACE, body=body)
        except api.ApiException as exc:
            if exc.status != 404:
                raise
            api.call(self._coord.create_namespaced_lease, LEASE_NAMESPACE, body=body)
