"""Pod status as a real kubelet reports it, computed from the lab's view of its containers.

Where it sits: pods.py keeps one `ContainerView` per container (what the process is doing)
and calls `pod_status()` after every change; the result is written whole to the Pod's
status subresource with a JSON merge patch.  Pure: no clock, no I/O (time comes in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ContainerView:
    """One container's state in Kubernetes' own terms."""

    name: str
    image: str
    state: JSON  # exactly one of {"waiting": ...}, {"running": ...}, {"terminated": ...}
    last_state: JSON = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    container_id: str = ""
    will_restart: bool = False  # a terminated container that restartPolicy will start again

    def as_status(self) -> JSON:
        status: JSON = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": "running" in self.state,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def waiting(reason: str, message: str = "") -> JSON:
    body = {"reason": reason}
    if message:
        body["message"] = message
    return {"waiting": body}


def running(started_at: str) -> JSON:
    return {"running": {"startedAt": started_at}}


def terminated(exit_code: int, started_at: str, finished_at: str, container_id: str = "", *,
               reason: str = "", message: str = "") -> JSON:
    body: JSON = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": started_at,
        "finishedAt": finished_at,
    }
    if message:
        body["message"] = message
    if exit_code > 128:
        body["signal"] = exit_code - 128
    if container_id:
        body["containerID"] = container_id
    return {"terminated": body}


MESSAGE_FILE_MAX = 4096  # bytes of terminationMessagePath a kubelet reports
MESSAGE_LOG_LINES, MESSAGE_LOG_MAX = 80, 2048  # FallbackToLogsOnError: the log's tail


def termination_message(file_text: str, log_text: str, policy: str, exit_code: int) -> str:
    """state.terminated.message as a kubelet fills it from the termination log or the logs."""
    message = file_text[-MESSAGE_FILE_MAX:].strip()
    if not message and policy == "FallbackToLogsOnError" and exit_code != 0:
        tail = "\n".join(log_text.splitlines()[-MESSAGE_LOG_LINES:])
        message = tail[-MESSAGE_LOG_MAX:].strip()
    return message


def pod_phase(views: list[ContainerView]) -> str:
    """Pending until every container has started once; Succeeded/Failed when all are done."""
    if not views:
        return "Pending"
    never_ran = [v for v in views if "waiting" in v.state and v.restart_count == 0 and not v.last_state]
    if never_ran:
        return "Pending"
    done = [v for v in views if "terminated" in v.state and not v.will_restart]
    if len(done) == len(views):
        failed = any(v.state["terminated"]["exitCode"] != 0 for v in done)
        return "Failed" if failed else "Succeeded"
    return "Running"


def pod_conditions(views: list[ContainerView], phase: str, now: str,
                   previous: list[JSON] | None) -> list[JSON]:
    """The five conditions; a condition keeps its lastTransitionTime while its status holds."""
    unready = [v.name for v in views if not v.ready]
    ready = not unready and phase == "Running"
    reason, message = "", ""
    if phase == "Succeeded" or (phase == "Failed" and not unready):
        reason = "PodCompleted"
    elif not ready:
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(unready)}]"
    wanted = [
        ("PodReadyToStartContainers", True, "", ""),
        ("Initialized", True, "", ""),
        ("Ready", ready, reason, message),
        ("ContainersReady", ready, reason, message),
        ("PodScheduled", True, "", ""),
    ]
    before = {c.get("type"): c for c in previous or []}
    out = []
    for kind, ok, why, text in wanted:
        status = "True" if ok else "False"
        old = before.get(kind, {})
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        cond: JSON = {"type": kind, "status": status, "lastProbeTime": None,
                      "lastTransitionTime": since or now}
        if why:
            cond["reason"] = why
        if text:
            cond["message"] = text
        out.append(cond)
    return out


def pod_status(*, views: list[ContainerView], ipv4: str, ipv6: str, start_time: str, now: str,
               previous_conditions: list[JSON] | None) -> JSON:
    """The whole status block written by the kubelet (podIP = hostIP: Pods share the node netns)."""
    phase = pod_phase(views)
    ips = [{"ip": ip} for ip in (ipv4, ipv6) if ip]
    return {
        "phase": phase,
        "conditions": pod_conditions(views, phase, now, previous_conditions),
        "hostIP": ipv4,
        "hostIPs": ips,
        "podIP": ipv4,
        "podIPs": ips,
        "startTime": start_time,
        "containerStatuses": [v.as_status() for v in views],
    }


def comparable(status: JSON) -> JSON:
    """The status without heartbeat-like timestamps, to decide whether a write is needed."""
    conds = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions", [])]
    return {**status, "conditions": conds}


def backoff_seconds(crashes: int, base: float, cap: float) -> float:
    """Delay before restart number `crashes` (1-based): base, 2*base, 4*base ... up to cap."""
    if crashes <= 0:
        return 0.0
    return min(cap, base * (2 ** (crashes - 1)))


def exit_code_of(returncode: int) -> int:
    """Popen's negative signal numbers become the 128+N a container runtime reports."""
    return 128 - returncode if returncode < 0 else returncode
