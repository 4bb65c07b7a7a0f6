# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every Kubernetes manifest l2lb installs, rendered in one place.

Place in the flow: inventory variables -> Ansible module -> **render (here)** -> k8s_apply ->
kube-apiserver. Pure: plain values in, plain dicts out; no I/O, no Kubernetes client, so the
manifests are unit-tested without a cluster. It does not validate address pools (that is the
shared config model, l2lb_config) and does not decide ordering of deletes beyond returning
objects in apply order (dependencies first).
"""

from __future__ import annotations

import dataclasses
import typing as t

VERSION = "0.1.0"
DEFAULT_NAMESPACE = "l2lb-system"
DEFAULT_IMAGE = f"ghcr.io/l2lb/l2lb-agent:{VERSION}"
DEFAULT_LOADBALANCER_CLASS = "l2lb.io/layer2"
CONFIG_MAP_NAME = "config"
CONFIG_MAP_KEY = "config"
CONTROLLER = "controller"
SPEAKER = "speaker"
CONTROLLER_METRICS_PORT = 7472
SPEAKER_METRICS_PORT = 7473
# The speaker hands over on SIGTERM at once; a short grace keeps a rollout's gap small.
SPEAKER_GRACE_SECONDS = 5
CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
LOG_LEVELS = ("debug", "info", "warning", "error")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """What an operator may choose about the installation (the role's variables)."""

    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    controller_replicas: int = 2
    speaker_node_selector: t.Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[t.Mapping[str, t.Any], ...] = ()
    loadbalancer_class: str = DEFAULT_LOADBALANCER_CLASS
    interfaces: tuple[str, ...] = ()
    log_level: str = "info"
    # None: the agent's own default applies (one definition of the Lease timings).
    lease_duration: float | None = None
    renew_interval: float | None = None


def name_of(component: str) -> str:
    """Object name shared by a component's ServiceAccount, RBAC and workload."""
    return f"l2lb-{component}"


def common_labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "l2lb",
        "app.kubernetes.io/part-of": "l2lb",
        "app.kubernetes.io/version": VERSION,
        "app.kubernetes.io/managed-by": "l2lb-ansible",
    }


def selector_labels(component: str) -> dict[str, str]:
    # Selectors are immutable on Deployments/DaemonSets: keep them to stable keys only.
    return {"app.kubernetes.io/name": "l2lb", "app.kubernetes.io/component": component}


def pod_labels(component: str) -> dict[str, str]:
    return {**selector_labels(component), "component": component}


def _meta(name: str, namespace: str | None, component: str | None = None) -> dict[str, t.Any]:
    labels = common_labels()
    if component:
        labels["app.kubernetes.io/component"] = component
    meta: dict[str, t.Any] = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    return meta


def namespace(settings: Settings) -> dict[str, t.Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(settings.namespace, None)}


def service_account(settings: Settings, component: str) -> dict[str, t.Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name_of(component), settings.namespace, component),
    }


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, list[str]]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


READ = ["get", "list", "watch"]
EVENTS = _rule([""], ["events"], ["create", "patch"])

# component -> (cluster-wide rules, rules inside the l2lb namespace)
RULES: dict[str, tuple[list[dict[str, list[str]]], list[dict[str, list[str]]]]] = {
    CONTROLLER: (
        [
            _rule([""], ["services"], READ),
            _rule([""], ["services/status"], ["update", "patch"]),
            EVENTS,
        ],
        [
            _rule([""], ["configmaps"], READ),
            # Leader election: one Lease, created on first start then renewed.
            _rule(["coordination.k8s.io"], ["leases"], [*READ, "create", "update", "patch"]),
        ],
    ),
    SPEAKER: (
        [
            _rule([""], ["services", "nodes"], READ),
            _rule(["discovery.k8s.io"], ["endpointslices"], READ),
            EVENTS,
        ],
        [
            _rule([""], ["configmaps"], READ),
            # Heartbeat Leases: each speaker writes its own, reads the others', deletes on hand-over.
            _rule(["coordination.k8s.io"], ["leases"], [*READ, "create", "update", "delete"]),
        ],
    ),
}


def rbac(settings: Settings, component: str) -> list[dict[str, t.Any]]:
    """ClusterRole/Binding for cluster-wide reads, Role/Binding for the l2lb namespace only."""
    name = name_of(component)
    cluster_rules, ns_rules = RULES[component]
    subject = {"kind": "ServiceAccount", "name": name, "namespace": settings.namespace}
    group = "rbac.authorization.k8s.io"
    return [
        {"apiVersion": f"{group}/v1", "kind": "ClusterRole",
         "metadata": _meta(name, None, component), "rules": cluster_rules},
        {"apiVersion": f"{group}/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(name, None, component),
         "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": name}, "subjects": [subject]},
        {"apiVersion": f"{group}/v1", "kind": "Role",
         "metadata": _meta(name, settings.namespace, component), "rules": ns_rules},
        {"apiVersion": f"{group}/v1", "kind": "RoleBinding",
         "metadata": _meta(name, settings.namespace, component),
         "roleRef": {"apiGroup": group, "kind": "Role", "name": name}, "subjects": [subject]},
    ]


def _field_env(name: str, path: str) -> dict[str, t.Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _env(settings: Settings, component: str) -> list[dict[str, t.Any]]:
    env = [
        _field_env("L2LB_NAMESPACE", "metadata.namespace"),
        _field_env("L2LB_NODE_NAME", "spec.nodeName"),
        _field_env("L2LB_POD_NAME", "metadata.name"),
        {"name": "L2LB_LOG_LEVEL", "value": settings.log_level},
        {"name": "L2LB_LOADBALANCER_CLASS", "value": settings.loadbalancer_class},
    ]
    if component == SPEAKER and settings.interfaces:
        env.append({"name": "L2LB_INTERFACES", "value": ",".join(settings.interfaces)})
    if settings.lease_duration is not None:
        env.append({"name": "L2LB_LEASE_DURATION", "value": _number(settings.lease_duration)})
    if settings.renew_interval is not None:
        env.append({"name": "L2LB_RENEW_INTERVAL", "value": _number(settings.renew_interval)})
    return env


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _container(settings: Settings, component: str, port: int, security: dict[str, t.Any]) -> dict[str, t.Any]:
    return {
        "name": component,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [component],
        "env": _env(settings, component),
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "25m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": security,
    }


def controller_deployment(settings: Settings) -> dict[str, t.Any]:
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    spread = {
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchLabels": selector_labels(CONTROLLER)},
            "topologyKey": "kubernetes.io/hostname",
        },
    }
    pod_spec = {
        "serviceAccountName": name_of(CONTROLLER),
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [spread]}},
        "containers": [_container(settings, CONTROLLER, CONTROLLER_METRICS_PORT, security)],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name_of(CONTROLLER), settings.namespace, CONTROLLER),
        "spec": {
            "replicas": settings.controller_replicas,
            "selector": {"matchLabels": selector_labels(CONTROLLER)},
            "template": {"metadata": {"labels": pod_labels(CONTROLLER)}, "spec": pod_spec},
        },
    }


def _speaker_tolerations(settings: Settings) -> list[dict[str, t.Any]]:
    builtin = [{"key": key, "operator": "Exists", "effect": "NoSchedule"} for key in CONTROL_PLANE_TAINTS]
    return builtin + [dict(item) for item in settings.tolerations if dict(item) not in builtin]


def speaker_daemonset(settings: Settings) -> dict[str, t.Any]:
    # Root inside the container only to hold NET_RAW for AF_PACKET; everything else dropped.
    security = {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsUser": 0,
        "runAsNonRoot": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]},
    }
    pod_spec = {
        "serviceAccountName": name_of(SPEAKER),
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "terminationGracePeriodSeconds": SPEAKER_GRACE_SECONDS,
        "nodeSelector": {"kubernetes.io/os": "linux", **dict(settings.speaker_node_selector)},
        "tolerations": _speaker_tolerations(settings),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(settings, SPEAKER, SPEAKER_METRICS_PORT, security)],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(name_of(SPEAKER), settings.namespace, SPEAKER),
        "spec": {
            "selector": {"matchLabels": selector_labels(SPEAKER)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": pod_labels(SPEAKER)}, "spec": pod_spec},
        },
    }


def manifests(settings: Settings) -> list[dict[str, t.Any]]:
    """Everything but the pools ConfigMap, in apply order (namespace and RBAC before workloads)."""
    objects = [namespace(settings)]
    for component in (CONTROLLER, SPEAKER):
        objects.append(service_account(settings, component))
        objects.extend(rbac(settings, component))
    objects.append(controller_deployment(settings))
    objects.append(speaker_daemonset(settings))
    return objects


def pools_document(pools: t.Sequence[t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    """The seed's shape, with `addresses` always a list (the inventory may give one string)."""
    normalized = []
    for pool in pools:
        item = dict(pool)
        if isinstance(item.get("addresses"), str):
            item["addresses"] = [item["addresses"]]
        normalized.append(item)
    return {"address-pools": normalized}


def config_map(namespace_name: str, config_text: str) -> dict[str, t.Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(CONFIG_MAP_NAME, namespace_name),
        "data": {CONFIG_MAP_KEY: config_text},
    }


def ref(obj: t.Mapping[str, t.Any]) -> str:
    """Human name of an object: Kind/namespace/name or Kind/name."""
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj['kind']}/{ns}/{meta['name']}" if ns else f"{obj['kind']}/{meta['name']}"
