"""Pure tests of the Ansible collection's module_utils: rendering, pool checks, status, diffing.

No cluster and no Ansible run: render/pools/status/k8s_apply.comparable take and return plain
values. The collection is imported the way Ansible does, through collections/ansible_collections.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.l2lb.layer2.plugins.module_utils import (  # noqa: E402
    common,
    k8s_apply,
    pools,
    render,
    status,
)

TUTORIAL = [{"name": "my-ip-space", "protocol": "layer2", "addresses": "192.168.1.240/28"}]


def by_kind(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def rules_of(objects: list[dict], kind: str, name: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a Role/ClusterRole grants."""
    return {(g, r, v) for rule in by_kind(objects, kind, name)["rules"]
            for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.fixture()
def objects() -> list[dict]:
    return render.manifests(render.Settings())


def test_objects_in_apply_order(objects):
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace"
    assert kinds.index("ServiceAccount") < kinds.index("Deployment") < kinds.index("DaemonSet")
    assert all(o["metadata"].get("namespace") in (None, "l2lb-system") for o in objects)


def test_every_object_is_labelled(objects):
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "l2lb", render.ref(obj)


@pytest.mark.parametrize(("component", "kind"), [("controller", "Deployment"), ("speaker", "DaemonSet")])
def test_pod_labels_and_selector(objects, component, kind):
    workload = by_kind(objects, kind)
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/name": "l2lb", "app.kubernetes.io/component": component,
                      "component": component}
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()


def grants(objects: list[dict], kind: str, name: str) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, resourceName or '*') a Role/ClusterRole grants."""
    return {(g, r, v, n) for rule in by_kind(objects, kind, name)["rules"]
            for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
            for n in rule.get("resourceNames") or ["*"]}


# Exactly the calls each component issues (controller.py, leader.py, writers.py; the speaker per
# docs/internals.md): informers list+watch, never get; no patch of Events; speakers read the pools
# ConfigMap by name (where each pool may be announced), never write it.
EXPECTED_GRANTS = {
    ("ClusterRole", "l2lb-controller"): {
        *(("", r, v, "*") for r in ("services", "nodes", "namespaces") for v in ("list", "watch")),
        ("", "services/status", "patch", "*"), ("", "events", "create", "*"),
        ("l2lb.io", "ipannouncements", "list", "*"), ("l2lb.io", "ipannouncements", "delete", "*"),
    },
    ("Role", "l2lb-controller"): {
        ("", "configmaps", "list", "config"), ("", "configmaps", "watch", "config"),
        ("coordination.k8s.io", "leases", "create", "*"),
        ("coordination.k8s.io", "leases", "get", "l2lb-controller"),
        ("coordination.k8s.io", "leases", "update", "l2lb-controller"),
        ("coordination.k8s.io", "leases", "list", "*"), ("coordination.k8s.io", "leases", "watch", "*"),
    },
    ("ClusterRole", "l2lb-speaker"): {
        *(("", r, v, "*") for r in ("services", "nodes") for v in ("list", "watch")),
        *(("discovery.k8s.io", "endpointslices", v, "*") for v in ("list", "watch")),
        ("", "events", "create", "*"),
        *(("l2lb.io", "ipannouncements", v, "*") for v in ("get", "list", "create")),
        ("l2lb.io", "ipannouncements/status", "patch", "*"),
    },
    ("Role", "l2lb-speaker"): {
        *(("coordination.k8s.io", "leases", v, "*")
          for v in ("list", "watch", "get", "create", "update", "delete")),
        *(("", "secrets", v, "l2lb-memberlist") for v in ("get", "list", "watch")),
        ("", "configmaps", "list", "config"), ("", "configmaps", "watch", "config"),
    },
}


@pytest.mark.parametrize(("kind", "name"), list(EXPECTED_GRANTS), ids=lambda v: str(v))
def test_rbac_is_exactly_what_the_component_calls(objects, kind, name):
    assert grants(objects, kind, name) == EXPECTED_GRANTS[(kind, name)]


def test_no_wildcard_in_any_rule(objects):
    for obj in objects:
        for rule in obj.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (render.ref(obj), rule)


def test_bindings_point_at_own_service_account(objects):
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for name in ("l2lb-controller", "l2lb-speaker"):
            binding = by_kind(objects, kind, name)
            assert binding["roleRef"]["name"] == name
            subject = {"kind": "ServiceAccount", "name": name, "namespace": "l2lb-system"}
            assert binding["subjects"] == [subject]


def test_controller_runs_non_root_read_only(objects):
    deployment = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["ports"][0]["containerPort"] == 7472
    assert container["args"] == ["controller"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_speaker_has_net_raw_only_and_host_network(objects):
    pod = by_kind(objects, "DaemonSet")["spec"]["template"]["spec"]
    security = pod["containers"][0]["securityContext"]
    assert pod["hostNetwork"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert pod["containers"][0]["ports"][0]["containerPort"] == 7473
    assert pod["terminationGracePeriodSeconds"] <= 10
    assert {t["key"] for t in pod["tolerations"]} >= set(render.CONTROL_PLANE_TAINTS)
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}


def env_of(workload: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in workload["spec"]["template"]["spec"]
            ["containers"][0]["env"]}


def test_env_defaults_leave_timings_to_the_agent(objects):
    env = env_of(by_kind(objects, "DaemonSet"))
    assert env["L2LB_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["L2LB_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["L2LB_LOADBALANCER_CLASS"] == "l2lb.io/layer2"
    assert env["L2LB_MEMBERLIST_SECRET"] == "l2lb-memberlist"
    for var in ("L2LB_LEASE_DURATION", "L2LB_RENEW_INTERVAL", "L2LB_HEARTBEAT_INTERVAL", "L2LB_DEAD_AFTER",
                "L2LB_HANDOVER_DELAY", "L2LB_INTERFACES"):
        assert var not in env


def test_operator_settings_reach_the_pods():
    settings = render.Settings(
        namespace="lb", image="registry.example/l2lb-agent:1", controller_replicas=3,
        speaker_node_selector={"edge": "true"}, interfaces=("eth1", "eth2"), log_level="debug",
        tolerations=({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},),
        lease_duration=10.0, renew_interval=2.5, heartbeat_interval=0.2, dead_after=1.0, handover_delay=0.3,
        image_pull_secrets=("regcred",), speaker_priority_class="edge-critical",
        speaker_resources={"limits": {"memory": "128Mi"}},
    )
    objects = render.manifests(settings)
    speaker, controller = by_kind(objects, "DaemonSet"), by_kind(objects, "Deployment")
    env, controller_env = env_of(speaker), env_of(controller)
    assert env["L2LB_INTERFACES"] == "eth1,eth2"
    # Lease timings are the controller's only; heartbeat timings the speaker's only.
    assert (controller_env["L2LB_LEASE_DURATION"], controller_env["L2LB_RENEW_INTERVAL"]) == ("10", "2.5")
    assert (env["L2LB_HEARTBEAT_INTERVAL"], env["L2LB_DEAD_AFTER"], env["L2LB_HANDOVER_DELAY"]) == (
        "0.2", "1", "0.3")
    assert "L2LB_LEASE_DURATION" not in env and "L2LB_HEARTBEAT_INTERVAL" not in controller_env
    assert "L2LB_INTERFACES" not in controller_env and "L2LB_MEMBERLIST_SECRET" not in controller_env
    assert controller["spec"]["replicas"] == 3
    pod = speaker["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "edge": "true"}
    assert "dedicated" in {t["key"] for t in pod["tolerations"]}
    assert pod["containers"][0]["image"] == "registry.example/l2lb-agent:1"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "edge-critical"
    assert pod["containers"][0]["resources"] == {"limits": {"memory": "128Mi"}}
    assert controller["spec"]["template"]["spec"]["priorityClassName"] == "system-cluster-critical"
    assert {o["metadata"].get("namespace") for o in objects} == {None, "lb"}


@pytest.mark.parametrize(("component", "kind", "priority"), [
    ("controller", "Deployment", "system-cluster-critical"),
    ("speaker", "DaemonSet", "system-node-critical"),
])
def test_metrics_on_the_pod_ip_with_probes(objects, component, kind, priority):
    pod = by_kind(objects, kind)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert env_of(by_kind(objects, kind))["L2LB_METRICS_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container[probe]["timeoutSeconds"] >= 1
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30  # a slow API is not a dead process
    assert pod["priorityClassName"] == priority
    assert "imagePullSecrets" not in pod


def test_speaker_metrics_on_loopback_probe_loopback():
    objects = render.manifests(render.Settings(speaker_metrics_host="127.0.0.1"))
    speaker = by_kind(objects, "DaemonSet")
    assert env_of(speaker)["L2LB_METRICS_HOST"] == "127.0.0.1"
    probe = speaker["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert probe["httpGet"]["host"] == "127.0.0.1"
    controller = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "host" not in controller["livenessProbe"]["httpGet"]


def test_controller_disruption_budget_allows_one_eviction(objects):
    pdb = by_kind(objects, "PodDisruptionBudget")
    deployment = by_kind(objects, "Deployment")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}


def test_namespace_records_that_l2lb_created_it(objects):
    namespace = by_kind(objects, "Namespace")
    assert namespace["metadata"]["annotations"] == {"l2lb.io/created-by": "l2lb-ansible"}
    assert render.is_managed(namespace)


def test_lease_guard_is_rendered_before_workloads_and_optional(objects):
    kinds = [o["kind"] for o in objects]
    assert kinds.index("ValidatingAdmissionPolicyBinding") < kinds.index("DaemonSet")
    policy = by_kind(objects, "ValidatingAdmissionPolicy")
    assert policy["metadata"]["name"] == "l2lb-leases.l2lb-system"
    condition = policy["spec"]["matchConditions"][0]["expression"]
    assert "system:serviceaccount:l2lb-system:l2lb-speaker" in condition
    binding = by_kind(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    without = render.manifests(render.Settings(speaker_lease_guard=False))
    assert not [o for o in without if o["kind"].startswith("ValidatingAdmissionPolicy")]


def test_config_map_carries_the_canonical_pools():
    _, text = pools.validate(TUTORIAL)
    cm = render.config_map("l2lb-system", text)
    assert (cm["metadata"]["name"], list(cm["data"])) == ("config", ["config"])
    doc = yaml.safe_load(cm["data"]["config"])
    assert doc["address-pools"][0]["addresses"] == ["192.168.1.240/28"]
    # a string and a one-element list are the same pool, byte for byte (idempotence)
    assert pools.validate([{**TUTORIAL[0], "addresses": ["192.168.1.240/28"]}])[1] == text


@pytest.mark.parametrize(("given", "named"), [
    ([{"name": "a", "addresses": "192.168.1.0/28"}, {"name": "b", "addresses": "192.168.1.8-192.168.1.20"}],
     ["'a'", "'b'", "192.168.1.8"]),
    ([{"name": "bad", "protocol": "layer2", "addresses": ["192.168.1.300"]}], ["bad", "192.168.1.300"]),
    ([{"name": "x", "protocol": "bgp", "addresses": ["10.0.0.1"]}], ["x", "protocol", "bgp"]),
    ([{"name": "y", "adresses": ["10.0.0.1"]}], ["y", "adresses"]),
], ids=["overlap", "invalid-address", "bgp", "typo-key"])
def test_invalid_pools_are_refused_naming_the_offender(given, named):
    with pytest.raises(pools.PoolsError) as caught:
        pools.validate(given)
    for part in named:
        assert part in str(caught.value)


def lb_service(name: str, ip: str | None, cls: str | None = None, kind: str = "LoadBalancer") -> dict:
    svc = {"metadata": {"namespace": "default", "name": name}, "spec": {"type": kind}}
    if cls:
        svc["spec"]["loadBalancerClass"] = cls
    if ip:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
    return svc


SERVICES = [
    lb_service("nginx", "192.168.1.240"),
    lb_service("other-class", "192.168.1.241", cls="example.com/other"),
    lb_service("pending", None),
    lb_service("cluster-ip", "192.168.1.242", kind="ClusterIP"),
    lb_service("outside", "10.9.9.9"),
]


@pytest.mark.parametrize(("new_addresses", "expected"), [
    ("192.168.1.240/28", []),
    ("192.168.1.248/29", [("default/nginx", "192.168.1.240")]),
    (None, [("default/nginx", "192.168.1.240")]),
], ids=["unchanged", "shrunk", "removed"])
def test_orphans_are_in_use_addresses_leaving_the_pools(new_addresses, expected):
    live, _ = pools.validate(TUTORIAL)
    new = pools.validate([{"name": "p", "addresses": new_addresses}])[0] if new_addresses else None
    found = pools.orphans(live, new, pools.service_addresses(SERVICES, "l2lb.io/layer2"))
    assert [(o.service, o.address) for o in found] == expected
    if found:
        message = pools.orphan_message(found)
        assert "default/nginx" in message and "192.168.1.240" in message and "allow_orphaned" in message


def test_no_live_config_protects_nothing():
    new, _ = pools.validate([{"name": "p", "addresses": "10.0.0.0/30"}])
    assert pools.orphans(pools.parse_live(None), new, [("default/nginx", "192.168.1.240")]) == []
    assert pools.parse_live("address-pools: [{name: x, addresses: [bogus]}]") is None


def deployment(replicas: int, ready: int, updated: int, generation: int = 1, observed: int = 1) -> dict:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"readyReplicas": ready, "updatedReplicas": updated, "observedGeneration": observed}}


def daemonset(desired: int, ready: int, updated: int) -> dict:
    return {"metadata": {"generation": 1}, "status": {
        "desiredNumberScheduled": desired, "numberReady": ready, "updatedNumberScheduled": updated,
        "observedGeneration": 1}}


@pytest.mark.parametrize(("obj", "expected"), [
    (deployment(2, 2, 2), []),
    (deployment(2, 1, 2), ["controller Deployment: 1/2 ready, 2/2 updated"]),
    (deployment(2, 2, 2, generation=2), ["controller Deployment: newest spec not yet observed"]),
    (None, ["controller Deployment is missing"]),
], ids=["ready", "one-missing", "stale", "absent"])
def test_controller_readiness(obj, expected):
    assert status.controller_problems(obj) == expected


@pytest.mark.parametrize(("obj", "expected"), [
    (daemonset(3, 3, 3), []),
    (daemonset(3, 2, 3), ["speaker DaemonSet: 2/3 ready, 3/3 updated"]),
    (daemonset(0, 0, 0), ["speaker DaemonSet: no node matches its node selector and tolerations"]),
], ids=["ready", "one-not-ready", "no-nodes"])
def test_speaker_readiness(obj, expected):
    assert status.speaker_problems(obj) == expected


def test_pod_problems_name_pod_node_and_reason():
    pods = [
        {"metadata": {"name": "l2lb-speaker-a"}, "spec": {"nodeName": "node3"},
         "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}},
        {"metadata": {"name": "l2lb-speaker-b"}, "spec": {"nodeName": "node1"},
         "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    ]
    assert status.pod_problems(pods) == ["pod l2lb-speaker-a on node3: not ready (ImagePullBackOff)"]


def registration(node: str, ips: str) -> dict:
    return {"metadata": {"name": f"l2lb-speaker-{node}", "labels": {"l2lb.io/node": node},
                         "annotations": {"l2lb.io/announcing": ips}}}


def test_announcer_comes_from_the_speakers_registrations():
    leases = [registration("node1", "192.168.1.241"), registration("node3", "192.168.1.240,fd00::1"),
              registration("node2", "")]
    services = [lb_service("nginx", "192.168.1.240"), lb_service("pending", None)]
    result = status.assignments(services, leases, lambda ip: "my-ip-space")
    assert result == [
        {"service": "default/nginx", "ips": ["192.168.1.240"], "pools": {"192.168.1.240": "my-ip-space"},
         "announced_by": "node3", "announcers": {"192.168.1.240": "node3"}, "loadbalancer_class": None},
        {"service": "default/pending", "ips": [], "pools": {}, "announced_by": None, "announcers": {},
         "loadbalancer_class": None},
    ]


def test_comparable_ignores_bookkeeping_only():
    live = {"kind": "ConfigMap", "metadata": {"name": "config", "resourceVersion": "1", "generation": 1,
                                              "managedFields": [{}], "uid": "u",
                                              "creationTimestamp": "t"}, "data": {"config": "a"}}
    returned = {**live, "metadata": {**live["metadata"], "resourceVersion": "2", "managedFields": [{}, {}]},
                "status": {"x": 1}}
    assert k8s_apply.comparable(live) == k8s_apply.comparable(returned)
    changed = {**returned, "data": {"config": "b"}}
    assert k8s_apply.comparable(live) != k8s_apply.comparable(changed)


def test_diff_shows_only_changed_objects():
    results = [
        k8s_apply.Result("ConfigMap/ns/config", True, {"data": {"config": "a"}}, {"data": {"config": "b"}}),
        k8s_apply.Result("Namespace/ns", False, {"kind": "Namespace"}, {"kind": "Namespace"}),
    ]
    shown = k8s_apply.diff(results, lambda obj: yaml.safe_dump(obj), check_mode=True)
    assert shown["before"] == "data:\n  config: a\n" and shown["after"] == "data:\n  config: b\n"
    assert shown["after_header"] == "server dry run"


def test_wait_outlasts_api_errors_and_reports_what_is_left():
    answers = iter([k8s_apply.KubeError("connection refused"), ["speaker DaemonSet: 2/3 ready"], []])

    def problems() -> list[str]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert common.wait_for(problems, timeout=5, interval=0.01) == []
    assert common.wait_for(lambda: ["still 1/2"], timeout=0.05, interval=0.01) == ["still 1/2"]

    def api_down() -> list[str]:
        raise k8s_apply.KubeError("down")

    assert common.wait_for(api_down, timeout=0.02, interval=0.01) == ["API error: down"]
