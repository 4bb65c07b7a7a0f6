# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What l2lb is doing, read from plain Kubernetes objects: readiness and IP assignments.

Place in the flow: l2lb_info module -> k8s_apply (reads) -> **status (here)** -> the deploy
role's wait and the operator. Pure: takes the Deployment, DaemonSet, Pods, Services and Events as
dicts and returns plain values. It reports what the API says; it does not probe the LAN.
"""

from __future__ import annotations

import re
import typing as t

Obj = t.Mapping[str, t.Any]

# `announcing from node "node1"`, `node=node1`, `on node node1`: take the name after "node".
NODE_IN_MESSAGE = re.compile(r"\bnode\b[\s:=]*\"?([A-Za-z0-9][A-Za-z0-9.\-]*)\"?")


def _status(obj: Obj | None) -> t.Mapping[str, t.Any]:
    return (obj or {}).get("status") or {}


def _generation_seen(obj: Obj) -> bool:
    wanted = (obj.get("metadata") or {}).get("generation", 0)
    return _status(obj).get("observedGeneration", 0) >= wanted


def controller_problems(deployment: Obj | None) -> list[str]:
    """Why the controller Deployment is not Ready yet (empty list: Ready)."""
    if deployment is None:
        return ["controller Deployment is missing"]
    want = (deployment.get("spec") or {}).get("replicas", 1)
    status = _status(deployment)
    ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    problems = []
    if not _generation_seen(deployment):
        problems.append("controller Deployment: newest spec not yet observed")
    if updated < want or ready < want:
        problems.append(f"controller Deployment: {ready}/{want} ready, {updated}/{want} updated")
    return problems


def speaker_problems(daemonset: Obj | None) -> list[str]:
    """Why the speaker DaemonSet is not Ready yet (empty list: every speaker Ready)."""
    if daemonset is None:
        return ["speaker DaemonSet is missing"]
    status = _status(daemonset)
    want = status.get("desiredNumberScheduled", 0)
    ready, updated = status.get("numberReady", 0), status.get("updatedNumberScheduled", 0)
    if not _generation_seen(daemonset):
        return ["speaker DaemonSet: newest spec not yet observed"]
    if want == 0:
        return ["speaker DaemonSet: no node matches its node selector and tolerations"]
    if ready < want or updated < want:
        return [f"speaker DaemonSet: {ready}/{want} ready, {updated}/{want} updated"]
    return []


def pod_problems(pods: t.Iterable[Obj]) -> list[str]:
    """One line per l2lb Pod that is not Ready, naming its node and why."""
    problems = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, _status(pod)
        if meta.get("deletionTimestamp"):
            continue  # on its way out during a rollout; the counts above cover the gap
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready = conditions.get("Ready", {})
        if ready.get("status") == "True":
            continue
        node = (pod.get("spec") or {}).get("nodeName") or "no node yet"
        why = _waiting_reason(status) or ready.get("reason") or status.get("phase") or "unknown"
        problems.append(f"pod {meta.get('name')} on {node}: not ready ({why})")
    return sorted(problems)


def _waiting_reason(status: t.Mapping[str, t.Any]) -> str | None:
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        for key in ("waiting", "terminated"):
            if state.get(key):
                detail = state[key].get("reason") or key
                message = state[key].get("message")
                return f"{detail}: {message}" if message else detail
    return None


def _service_name(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def announcers(events: t.Iterable[Obj]) -> dict[str, str]:
    """namespace/name of a Service -> node named by its newest `nodeAssigned` Event."""
    newest: dict[str, tuple[str, str]] = {}  # service -> (timestamp, node)
    for event in events:
        if event.get("reason") != "nodeAssigned":
            continue
        involved = event.get("involvedObject") or {}
        service = f"{involved.get('namespace')}/{involved.get('name')}"
        match = NODE_IN_MESSAGE.search(event.get("message") or "")
        node = match.group(1) if match else (event.get("source") or {}).get("host")
        stamp = str(event.get("lastTimestamp") or event.get("eventTime")
                    or (event.get("metadata") or {}).get("creationTimestamp") or "")
        if node and (service not in newest or stamp >= newest[service][0]):
            newest[service] = (stamp, node)
    return {service: entry[1] for service, entry in newest.items()}


def assignments(services: t.Iterable[Obj], events: t.Iterable[Obj],
                pool_of: t.Callable[[str], str | None]) -> list[dict[str, t.Any]]:
    """One entry per LoadBalancer Service: its addresses, their pools and the announcing node."""
    by_service = announcers(events)
    out = []
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        ingress = (_status(svc).get("loadBalancer") or {}).get("ingress") or []
        ips = [entry["ip"] for entry in ingress if entry.get("ip")]
        name = _service_name(svc)
        out.append({
            "service": name,
            "ips": ips,
            "pools": {ip: pool_of(ip) for ip in ips},
            "announced_by": by_service.get(name) if ips else None,
            "loadbalancer_class": spec.get("loadBalancerClass"),
        })
    return sorted(out, key=lambda item: item["service"])
