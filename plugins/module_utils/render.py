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

import copy
import dataclasses
import typing as t

from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_keyring, rbac

VERSION = "0.1.0"
DEFAULT_NAMESPACE = "l2lb-system"
DEFAULT_IMAGE = f"ghcr.io/l2lb/l2lb-agent:{VERSION}"
DEFAULT_LOADBALANCER_CLASS = "l2lb.io/layer2"
CONFIG_MAP_NAME = rbac.CONFIG_MAP_NAME
CONFIG_MAP_KEY = "config"
CONTROLLER = rbac.CONTROLLER
SPEAKER = rbac.SPEAKER
CONTROLLER_METRICS_PORT = 7472
SPEAKER_METRICS_PORT = 7473
# The speaker hands over on SIGTERM at once; a short grace keeps a rollout's gap small.
SPEAKER_GRACE_SECONDS = 5
CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
LOG_LEVELS = ("debug", "info", "warning", "error")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {"requests": {"cpu": "25m", "memory": "64Mi"},
                                                "limits": {"memory": "256Mi"}}
MEMBERLIST_SECRET = l2lb_keyring.SECRET_NAME
MANAGED_BY = "l2lb-ansible"
# Set only when l2lb itself created the namespace: uninstall never deletes one it did not create.
CREATED_BY_ANNOTATION = "l2lb.io/created-by"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """What an operator may choose about the installation (the role's variables).

    Timings left None are not rendered, so the agent's own default applies (one definition:
    l2lb_agent.timing). A metrics host left "" is the Pod's IP from the downward API.
    """

    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    controller_replicas: int = 2
    speaker_node_selector: t.Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[t.Mapping[str, t.Any], ...] = ()
    loadbalancer_class: str = DEFAULT_LOADBALANCER_CLASS
    interfaces: tuple[str, ...] = ()
    log_level: str = "info"
    # Controller leader election only (the speaker's liveness is on the LAN).
    lease_duration: float | None = None
    renew_interval: float | None = None
    # Speaker LAN heartbeats.
    heartbeat_interval: float | None = None
    dead_after: float | None = None
    handover_delay: float | None = None
    controller_metrics_host: str = ""
    speaker_metrics_host: str = ""
    controller_priority_class: str = "system-cluster-critical"
    speaker_priority_class: str = "system-node-critical"
    controller_resources: t.Mapping[str, t.Any] = dataclasses.field(
        default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    speaker_resources: t.Mapping[str, t.Any] = dataclasses.field(
        default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    speaker_lease_guard: bool = True
    # Serve Services with no loadBalancerClass too (the agent's services.is_ours): false next to
    # another load balancer (MetalLB during a migration), so only our class is answered.
    claim_unclassed: bool = True
    # The controller's status writes per second, all writer threads together (burst: twice that);
    # the agent's own default (l2lb_agent.controller.API_QPS): see the README for why so high.
    controller_api_qps: float = 200.0


def name_of(component: str) -> str:
    """Object name shared by a component's ServiceAccount, RBAC and workload."""
    return f"l2lb-{component}"


def common_labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "l2lb",
        "app.kubernetes.io/part-of": "l2lb",
        "app.kubernetes.io/version": VERSION,
        "app.kubernetes.io/managed-by": MANAGED_BY,
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


def is_managed(obj: t.Mapping[str, t.Any] | None) -> bool:
    """True when l2lb's Ansible content applied this object (its managed-by label)."""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/managed-by") == MANAGED_BY


def namespace(settings: Settings) -> dict[str, t.Any]:
    meta = _meta(settings.namespace, None)
    meta["annotations"] = {CREATED_BY_ANNOTATION: MANAGED_BY}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account(settings: Settings, component: str) -> dict[str, t.Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name_of(component), settings.namespace, component),
    }


def _field_env(name: str, path: str) -> dict[str, t.Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


# component -> (flag's env var, Settings field) for the optional timings, rendered only when set.
TIMING_ENV: dict[str, tuple[tuple[str, str], ...]] = {
    CONTROLLER: (("L2LB_LEASE_DURATION", "lease_duration"), ("L2LB_RENEW_INTERVAL", "renew_interval")),
    SPEAKER: (("L2LB_HEARTBEAT_INTERVAL", "heartbeat_interval"), ("L2LB_DEAD_AFTER", "dead_after"),
              ("L2LB_HANDOVER_DELAY", "handover_delay")),
}


def metrics_host(settings: Settings, component: str) -> str:
    return settings.controller_metrics_host if component == CONTROLLER else settings.speaker_metrics_host


def _env(settings: Settings, component: str) -> list[dict[str, t.Any]]:
    env = [
        _field_env("L2LB_NAMESPACE", "metadata.namespace"),
        _field_env("L2LB_NODE_NAME", "spec.nodeName"),
        _field_env("L2LB_POD_NAME", "metadata.name"),
        {"name": "L2LB_LOG_LEVEL", "value": settings.log_level},
        {"name": "L2LB_LOADBALANCER_CLASS", "value": settings.loadbalancer_class},
        {"name": "L2LB_CLAIM_UNCLASSED", "value": "true" if settings.claim_unclassed else "false"},
    ]
    host = metrics_host(settings, component)
    # Not 0.0.0.0: on the speaker's host network that would serve every interface of the node.
    env.append({"name": "L2LB_METRICS_HOST", "value": host} if host
               else _field_env("L2LB_METRICS_HOST", "status.podIP"))
    if component == CONTROLLER:
        env.append({"name": "L2LB_API_QPS", "value": _number(settings.controller_api_qps)})
        env.append({"name": "L2LB_API_BURST", "value": str(max(1, round(2 * settings.controller_api_qps)))})
    if component == SPEAKER:
        env.append({"name": "L2LB_MEMBERLIST_SECRET", "value": MEMBERLIST_SECRET})
        if settings.interfaces:
            env.append({"name": "L2LB_INTERFACES", "value": ",".join(settings.interfaces)})
    for var, field in TIMING_ENV[component]:
        value = getattr(settings, field)
        if value is not None:
            env.append({"name": var, "value": _number(value)})
    return env


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _probe(settings: Settings, component: str, period: int, failures: int) -> dict[str, t.Any]:
    get: dict[str, t.Any] = {"path": "/healthz", "port": "metrics"}
    host = metrics_host(settings, component)
    if host and host not in ("0.0.0.0", "::"):
        get["host"] = host  # the kubelet probes the Pod IP unless told otherwise
    return {"httpGet": get, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": failures}


def _container(settings: Settings, component: str, port: int, security: dict[str, t.Any]) -> dict[str, t.Any]:
    resources = settings.controller_resources if component == CONTROLLER else settings.speaker_resources
    return {
        "name": component,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [component],
        "env": _env(settings, component),
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": _probe(settings, component, period=2, failures=3),
        # /healthz false for a minute (e.g. a dead heartbeat thread): the kubelet restarts it.
        "livenessProbe": _probe(settings, component, period=10, failures=6),
        "resources": copy.deepcopy(dict(resources)),
        "securityContext": security,
    }


def _pod_common(settings: Settings, component: str) -> dict[str, t.Any]:
    spec: dict[str, t.Any] = {
        "serviceAccountName": name_of(component),
        "priorityClassName": (settings.controller_priority_class if component == CONTROLLER
                              else settings.speaker_priority_class),
    }
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    return spec


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
        **_pod_common(settings, CONTROLLER),
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


def controller_disruption_budget(settings: Settings) -> dict[str, t.Any]:
    """At most one controller evicted at a time (maxUnavailable, so one replica never blocks a drain)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name_of(CONTROLLER), settings.namespace, CONTROLLER),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(CONTROLLER)}},
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
        **_pod_common(settings, SPEAKER),
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


# The speakers' record of who announces each IP (l2lb_agent.announce_status): one object per IP.
ANNOUNCEMENTS_GROUP, ANNOUNCEMENTS_VERSION = "l2lb.io", "v1alpha1"
ANNOUNCEMENTS_CRD = f"{rbac.ANNOUNCEMENTS}.{ANNOUNCEMENTS_GROUP}"


def _column(name: str, path: str, type_: str = "string", **extra: t.Any) -> dict[str, t.Any]:
    return {"name": name, "type": type_, "jsonPath": path, **extra}


def announcements_crd() -> dict[str, t.Any]:
    """CRD ipannouncements.l2lb.io: cluster-scoped, named after the IP; `kubectl get ipannouncements`
    lists every announced IP with its node. Cluster-wide on purpose: the IPs are."""
    text = {"type": "string"}
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "required": ["ip"],
                 "properties": {"ip": {"type": "string", "maxLength": 45, "description": "The IP."}}},
        "status": {"type": "object", "properties": {
            "node": {**text, "description": "The node answering ARP/NDP for the IP; empty: none."},
            "services": {"type": "array", "items": text, "description": "Services (namespace/name)."},
            "since": {**text, "format": "date-time", "description": "When node took the IP over."},
            "reason": {**text, "description": "Why no node announces the IP (node empty)."}}},
    }}
    columns = [_column("IP", ".spec.ip"), _column("Node", ".status.node"),
               _column("Services", ".status.services"), _column("Since", ".status.since", "date"),
               _column("Reason", ".status.reason", priority=1),
               _column("Age", ".metadata.creationTimestamp", "date")]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": _meta(ANNOUNCEMENTS_CRD, None),
        "spec": {
            "group": ANNOUNCEMENTS_GROUP,
            "scope": "Cluster",
            "names": {"plural": rbac.ANNOUNCEMENTS, "singular": "ipannouncement", "kind": "IPAnnouncement",
                      "listKind": "IPAnnouncementList", "shortNames": ["ipann"], "categories": ["l2lb"]},
            "versions": [{"name": ANNOUNCEMENTS_VERSION, "served": True, "storage": True,
                          "subresources": {"status": {}}, "additionalPrinterColumns": columns,
                          "schema": {"openAPIV3Schema": schema}}],
        },
    }


def manifests(settings: Settings) -> list[dict[str, t.Any]]:
    """Everything but the pools ConfigMap and the keys Secret, in apply order: namespace and the
    CRD, then identities and permissions (and the Lease guard) before any workload starts."""
    objects = [namespace(settings), announcements_crd()]
    for component in (CONTROLLER, SPEAKER):
        objects.append(service_account(settings, component))
        objects.extend(rbac.objects(_meta, settings.namespace, component, MEMBERLIST_SECRET))
    if settings.speaker_lease_guard:
        objects.extend(rbac.lease_guard(_meta, settings.namespace))
    objects.append(controller_disruption_budget(settings))
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
