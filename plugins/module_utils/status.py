# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What l2lb is doing, read from plain Kubernetes objects: readiness and IP assignments.

Place in the flow: l2lb_info module -> k8s_apply (reads) -> **status (here)** -> the deploy
role's wait and the operator. Pure: takes the Deployment, DaemonSet, Pods, Services and the
speakers' registration Leases as dicts and returns plain values. It reports what the API says;
it does not probe the LAN.
"""

from __future__ import annotations

import typing as t

Obj = t.Mapping[str, t.Any]


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


ANNOUNCING = "l2lb.io/announcing"  # speaker_registry.ANNOUNCING: the IPs a speaker answers for
NODE_LABEL = "l2lb.io/node"
HEARTBEAT_SELECTOR = "l2lb.io/role=speaker-heartbeat"  # the speakers' registration Leases


def announcers(leases: t.Iterable[Obj]) -> dict[str, str]:
    """IP -> the node whose speaker registration Lease says it announces that IP now.

    Each speaker writes the IPs it answers for into its own registration (at most once a second,
    only on change), so this is exact and does not expire, unlike Events."""
    out: dict[str, str] = {}
    for lease in leases:
        meta = lease.get("metadata") or {}
        node = (meta.get("labels") or {}).get(NODE_LABEL)
        for ip in ((meta.get("annotations") or {}).get(ANNOUNCING) or "").split(","):
            if node and ip:
                out[ip] = node
    return out


def announcements(objects: t.Iterable[Obj]) -> list[dict[str, t.Any]]:
    """The speakers' IPAnnouncement objects (one per IP, l2lb.io/v1alpha1), as plain entries:
    ip, node ("" when nobody announces it), services, since and reason; sorted by IP."""
    out = []
    for obj in objects:
        spec, state = obj.get("spec") or {}, _status(obj)
        if spec.get("ip"):
            out.append({"ip": spec["ip"], "node": state.get("node") or "",
                        "services": state.get("services") or [], "since": state.get("since"),
                        "reason": state.get("reason") or ""})
    return sorted(out, key=lambda item: item["ip"])


def assignments(services: t.Iterable[Obj], leases: t.Iterable[Obj],
                pool_of: t.Callable[[str], str | None],
                announced: t.Iterable[t.Mapping[str, t.Any]] | None = None) -> list[dict[str, t.Any]]:
    """One entry per LoadBalancer Service: its addresses, their pools and the announcing nodes,
    from `announced` (entries of `announcements`) when given, else from the registration Leases."""
    if announced is None:
        by_ip = announcers(leases)
    else:
        by_ip = {item["ip"]: item["node"] for item in announced if item["node"]}
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
            "announced_by": next((by_ip[ip] for ip in ips if ip in by_ip), None),
            "announcers": {ip: by_ip.get(ip) for ip in ips},
            "loadbalancer_class": spec.get("loadBalancerClass"),
        })
    return sorted(out, key=lambda item: item["service"])
