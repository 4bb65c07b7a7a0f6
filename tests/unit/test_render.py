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


CONTROLLER_CLUSTER = {
    ("", "services", "get"), ("", "services", "list"), ("", "services", "watch"),
    ("", "services/status", "update"), ("", "services/status", "patch"),
    ("", "events", "create"), ("", "events", "patch"),
}
SPEAKER_CLUSTER = {
    *((g, r, v) for g, r in [("", "services"), ("", "nodes"), ("discovery.k8s.io", "endpointslices")]
      for v in ("get", "list", "watch")),
    ("", "events", "create"), ("", "events", "patch"),
}


@pytest.mark.parametrize(("name", "expected"), [
    ("l2lb-controller", CONTROLLER_CLUSTER),
    ("l2lb-speaker", SPEAKER_CLUSTER),
], ids=["controller", "speaker"])
def test_cluster_rbac_is_exactly_what_the_component_needs(objects, name, expected):
    assert rules_of(objects, "ClusterRole", name) == expected


def test_namespaced_rbac(objects):
    controller = rules_of(objects, "Role", "l2lb-controller")
    speaker = rules_of(objects, "Role", "l2lb-speaker")
    assert {v for _, r, v in controller if r == "configmaps"} == {"get", "list", "watch"}
    assert {v for _, r, v in speaker if r == "leases"} == {
        "create", "get", "list", "watch", "update", "delete"}
    assert ("coordination.k8s.io", "leases", "update") in controller
    # nothing namespaced grants writes on configmaps, and no wildcard anywhere
    read = ("get", "list", "watch")
    assert not [t for t in controller | speaker if t[1] == "configmaps" and t[2] not in read]
    assert all("*" not in t for o in objects if o["kind"].endswith("Role") for t in rules_of(
        objects, o["kind"], o["metadata"]["name"]))


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
    assert "L2LB_LEASE_DURATION" not in env and "L2LB_RENEW_INTERVAL" not in env
    assert "L2LB_INTERFACES" not in env


def test_operator_settings_reach_the_pods():
    settings = render.Settings(
        namespace="lb", image="registry.example/l2lb-agent:1", controller_replicas=3,
        speaker_node_selector={"edge": "true"}, interfaces=("eth1", "eth2"), log_level="debug",
        tolerations=({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},),
        lease_duration=10.0, renew_interval=2.5,
    )
    objects = render.manifests(settings)
    speaker, controller = by_kind(objects, "DaemonSet"), by_kind(objects, "Deployment")
    env = env_of(speaker)
    assert env["L2LB_INTERFACES"] == "eth1,eth2"
    assert (env["L2LB_LEASE_DURATION"], env["L2LB_RENEW_INTERVAL"]) == ("10", "2.5")
    assert "L2LB_INTERFACES" not in env_of(controller)
    assert controller["spec"]["replicas"] == 3
    pod = speaker["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "edge": "true"}
    assert "dedicated" in {t["key"] for t in pod["tolerations"]}
    assert pod["containers"][0]["image"] == "registry.example/l2lb-agent:1"
    assert {o["metadata"].get("namespace") for o in objects} == {None, "lb"}


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


def event(service: str, message: str, stamp: str, reason: str = "nodeAssigned") -> dict:
    return {"reason": reason, "message": message, "lastTimestamp": stamp,
            "involvedObject": {"namespace": "default", "name": service}}


def test_announcer_is_the_newest_node_assigned_event():
    events = [
        event("nginx", 'announcing from node "node1"', "2026-01-01T00:00:01Z"),
        event("nginx", 'announcing from node "node3"', "2026-01-01T00:00:09Z"),
        event("nginx", "ip allocated", "2026-01-01T00:00:10Z", reason="IPAllocated"),
    ]
    services = [lb_service("nginx", "192.168.1.240"), lb_service("pending", None)]
    result = status.assignments(services, events, lambda ip: "my-ip-space")
    assert result == [
        {"service": "default/nginx", "ips": ["192.168.1.240"], "pools": {"192.168.1.240": "my-ip-space"},
         "announced_by": "node3", "loadbalancer_class": None},
        {"service": "default/pending", "ips": [], "pools": {}, "announced_by": None,
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
