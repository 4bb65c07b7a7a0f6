# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install and remove l2lb's objects without touching anything l2lb did not create.

Place in the flow: l2lb_manifests main() -> checks + render -> **install (here)** -> k8s_apply.
Install: every check (kube-proxy, admission API, objects l2lb would take over) runs before the
first write. Remove: deletes only objects carrying l2lb's managed-by label (plus the Leases its
agents write), workloads first so no agent re-creates anything, and the namespace only when l2lb
created it (annotation) and nothing else is left in it. Kubernetes' own objects in every
namespace (ServiceAccount default, ConfigMap kube-root-ca.crt, Events) do not count as "else".
It does not retry, and a foreign object created while it runs may still be missed.
"""

from __future__ import annotations

import typing as t

from ansible_collections.l2lb.layer2.plugins.module_utils import (
    common,
    k8s_apply,
    memberlist,
    preflight,
    rbac,
    render,
)

Obj = t.Mapping[str, t.Any]
LEASES = "coordination.k8s.io/v1"
VAP = ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy")
# Created by Kubernetes in every namespace, or only records: not a reason to keep a namespace.
BUILTIN = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
RECORD_KINDS = ("Event",)


class InstallError(Exception):
    """A reason to change nothing; the message names the objects and the fix."""


def _key(obj: Obj) -> tuple[str, str, str, str | None]:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")


def apply(kube: k8s_apply.Kube, objects: list[dict[str, t.Any]], skip_kube_proxy_check: bool,
          warn: t.Callable[[str], None]) -> list[k8s_apply.Result]:
    """Preflight everything and dry-run every object, then server-side apply in order.

    A foreign namespace is used, not applied. Objects in a namespace that does not exist yet
    cannot be dry-run by the server (predicted instead; checks.py covers their values)."""
    if not skip_kube_proxy_check:
        _check_kube_proxy(kube, warn)
    if any((o["apiVersion"], o["kind"]) == VAP for o in objects) and not kube.serves(*VAP):
        raise InstallError(
            "the API server does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy "
            "(Kubernetes >= 1.30), which keeps each speaker to its own Lease: upgrade the cluster, or "
            "set l2lb_speaker_lease_guard: false to run without that guard")
    live = {render.ref(o): kube.get(*_key(o)) for o in objects}
    foreign = preflight.foreign(objects, live)
    if foreign:
        raise InstallError(
            f"refusing to overwrite objects that l2lb did not create: {', '.join(foreign)}. Remove or "
            "rename them, or install l2lb into another namespace (l2lb_namespace)")
    wanted = [o for o in objects
              if o["kind"] != "Namespace" or preflight.namespace_is_ours(live[render.ref(o)])]
    if len(wanted) < len(objects):
        warn(f"namespace {objects[0]['metadata']['name']} existed before l2lb: it is used as it is, "
             "and uninstall will not delete it")
    for obj in wanted:
        kube.apply(obj, dry_run=True)  # the API server's own validation of all, before any write
    return [kube.apply(obj) if obj in wanted else k8s_apply.Result(render.ref(obj), False, None, None)
            for obj in objects]


def _check_kube_proxy(kube: k8s_apply.Kube, warn: t.Callable[[str], None]) -> None:
    namespace, name = preflight.KUBE_PROXY
    try:
        configmap = kube.get("v1", "ConfigMap", name, namespace)
    except k8s_apply.KubeError as error:
        warn(f"kube-proxy check skipped: {error}")
        return
    problem = preflight.kube_proxy_problem(configmap)
    if problem:
        raise InstallError(problem)


def agent_objects(kube: k8s_apply.Kube, namespace: str) -> list[dict[str, t.Any]]:
    """What l2lb's agents and other modules put into the namespace: pools, keys, Leases."""
    found = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": render.CONFIG_MAP_NAME}},
             {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": memberlist.SECRET_NAME}}]
    for lease in kube.list(LEASES, "Lease", namespace):
        if is_agent_lease(lease):
            found.append({"apiVersion": LEASES, "kind": "Lease",
                          "metadata": {"name": lease["metadata"]["name"]}})
    for obj in found:
        obj["metadata"]["namespace"] = namespace
    return found


def is_agent_lease(lease: Obj) -> bool:
    name = lease["metadata"]["name"]
    return name == rbac.CONTROLLER_LEASE or name.startswith(rbac.SPEAKER_LEASE_PREFIX)


def _is_ours(obj: Obj) -> bool:
    """Applied by l2lb's Ansible content, or a Lease l2lb's agents write."""
    return render.is_managed(obj) or (obj.get("kind") == "Lease" and is_agent_lease(obj))


def remove(kube: k8s_apply.Kube, objects: list[dict[str, t.Any]], wait_timeout: int | None,
           ) -> tuple[list[k8s_apply.Result], list[dict[str, str]]]:
    """Delete l2lb's objects (workloads first); the namespace only if l2lb's and otherwise empty.

    Returns the results and what was kept, each with the reason."""
    namespace_obj, rest = objects[0], list(reversed(objects[1:]))
    namespace = namespace_obj["metadata"]["name"]
    workloads = [o for o in rest if o["kind"] in ("DaemonSet", "Deployment")]
    results, kept = _delete_managed(kube, workloads)
    if wait_timeout is not None and any(r.changed for r in results):
        _wait_pods_gone(kube, namespace, wait_timeout)
    others = [o for o in rest if o not in workloads] + agent_objects(kube, namespace)
    more, more_kept = _delete_managed(kube, others)
    results, kept = results + more, kept + more_kept
    live_ns = kube.get("v1", "Namespace", namespace)
    if live_ns is None:
        return results, kept
    reason = _keep_namespace_reason(kube, live_ns, namespace)
    if reason:
        return results, [*kept, {"ref": render.ref(namespace_obj), "reason": reason}]
    return [*results, kube.delete("v1", "Namespace", namespace)], kept


def _delete_managed(kube: k8s_apply.Kube, objects: t.Iterable[Obj],
                    ) -> tuple[list[k8s_apply.Result], list[dict[str, str]]]:
    """Delete each object that is l2lb's; one of that name that is not stays, listed as kept."""
    results, kept = [], []
    for obj in objects:
        live = kube.get(*_key(obj))
        if live is not None and not _is_ours(live):
            kept.append({"ref": render.ref(obj), "reason": "not created by l2lb"})
            results.append(k8s_apply.Result(render.ref(obj), False, None, None))
        elif live is None:
            results.append(k8s_apply.Result(render.ref(obj), False, None, None))
        else:
            results.append(kube.delete(*_key(obj)))
    return results, kept


def _keep_namespace_reason(kube: k8s_apply.Kube, live_ns: Obj, namespace: str) -> str | None:
    if not preflight.namespace_is_ours(live_ns):
        return "existed before l2lb (no l2lb.io/created-by annotation)"
    others = leftovers(kube.list_namespace_contents(namespace))
    if others:
        shown = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
        return f"holds objects l2lb did not create: {shown}"
    return None


def leftovers(contents: t.Iterable[Obj]) -> list[str]:
    """Refs of objects that are neither l2lb's, Kubernetes' per-namespace defaults, nor records."""
    found = []
    for obj in contents:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if obj.get("kind") in RECORD_KINDS or (obj.get("kind"), meta.get("name")) in BUILTIN:
            continue
        if labels.get("app.kubernetes.io/name") == "l2lb" or _is_ours(obj):
            continue  # ours, or made by our workloads (Pods, ReplicaSets, ControllerRevisions)
        found.append(render.ref(obj))
    return sorted(found)


def _wait_pods_gone(kube: k8s_apply.Kube, namespace: str, timeout: int) -> None:
    """Until every l2lb Pod is gone: a terminating speaker may still write its Lease."""
    def pods() -> list[str]:
        return [f"Pod/{namespace}/{p['metadata']['name']}" for p in kube.list(
            "v1", "Pod", namespace, label_selector="app.kubernetes.io/name=l2lb")]

    left = common.wait_for(pods, timeout)
    if left:
        raise common.NotReadyError(f"still present after {timeout}s: {', '.join(left)}")
