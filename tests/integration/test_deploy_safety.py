"""A deploy that cannot hurt the cluster, proven with the real ansible-playbook on the lab.

- RBAC is exactly what each component calls: a `kubectl auth can-i` matrix (allowed and denied)
  against the live ClusterRoles/Roles; the Lease admission guard with real Pod-bound tokens.
- The Pods carry liveness probes, priority classes, and serve metrics on the node's IP only.
- What playbooks/render.yml writes is what site.yml applied (`kubectl diff --server-side`).
- Bad values, bad keys and a kube-proxy in IPVS mode without strictARP are refused before any
  change; keys rotate in two steps and never appear in the output.
- Uninstall deletes only what l2lb created: a namespace that existed before, or that holds
  anything else, stays.
Ordered like an operator's session; run single tests with -k under the shared lab lock.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes.client as k8s
import kubernetes.watch
import pytest
from ansible_run import NS, playbook, refused, succeeded
from l2lb_lab import controlplane
from l2lb_lab import topology as topo
from test_ansible import wait_for

pytestmark = pytest.mark.timeout(600)

KUBECTL = str(controlplane.locate_binaries(topo.Paths(topo.repo_root())) / "kubectl")
SECRET = "l2lb-memberlist"
KEY_1, KEY_2 = "k1" + "A" * 42, "k2" + "B" * 42
OTHER = "default"


def kubectl(lab, *args: str, kubeconfig: str | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, f"--kubeconfig={kubeconfig or lab.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture(scope="module")
def deployed(lab, kube):
    """l2lb deployed by site.yml with the lab inventory (idempotent when it already is)."""
    succeeded(playbook("site.yml"))
    return kube


def secret_keys(kube) -> list[str]:
    secret = kube.core.read_namespaced_secret(SECRET, NS)
    return base64.b64decode(secret.data["keys"]).decode().split()


# ---- RBAC: exactly what each component calls -----------------------------------------------------

# (verb, resource[/name], namespace or "-A" or None for cluster-scoped, allowed?)
CONTROLLER = [
    ("list", "services", "-A", True), ("watch", "services", "-A", True),
    ("patch", "services/status", OTHER, True), ("create", "events", OTHER, True),
    ("list", "nodes", None, True), ("watch", "nodes", None, True),  # InternalIPs, node-selectors
    ("list", "namespaces", None, True), ("watch", "namespaces", None, True),  # service-allocation
    ("list", "leases.coordination.k8s.io", NS, True),  # speakers' subnets (NoMatchingSubnet)
    ("watch", "leases.coordination.k8s.io", NS, True),
    ("list", "configmaps/config", NS, True), ("watch", "configmaps/config", NS, True),
    ("create", "leases.coordination.k8s.io", NS, True),
    ("get", "leases.coordination.k8s.io/l2lb-controller", NS, True),
    ("update", "leases.coordination.k8s.io/l2lb-controller", NS, True),
    ("list", "ipannouncements.l2lb.io", None, True), ("delete", "ipannouncements.l2lb.io", None, True),
    # the extra grants removed, and nothing else
    ("update", "services/status", OTHER, False), ("patch", "events", OTHER, False),
    ("get", "services", OTHER, False), ("update", "services", OTHER, False),
    ("list", "leases.coordination.k8s.io", OTHER, False), ("get", "namespaces/default", None, False),
    ("patch", "leases.coordination.k8s.io/l2lb-controller", NS, False),
    ("delete", "leases.coordination.k8s.io/l2lb-controller", NS, False),
    ("update", "leases.coordination.k8s.io/l2lb-speaker-node1", NS, False),
    ("create", "leases.coordination.k8s.io", OTHER, False),
    ("list", "configmaps", NS, False), ("get", "configmaps/other", NS, False),
    ("update", "configmaps/config", NS, False), ("list", "configmaps/config", OTHER, False),
    ("get", f"secrets/{SECRET}", NS, False), ("get", "nodes/node1", None, False),
    ("list", "endpointslices.discovery.k8s.io", "-A", False), ("list", "pods", NS, False),
    ("create", "ipannouncements.l2lb.io", None, False),
    ("patch", "ipannouncements.l2lb.io/status", None, False),
]
SPEAKER = [
    ("list", "services", "-A", True), ("watch", "services", "-A", True),
    ("list", "nodes", None, True), ("watch", "nodes", None, True),
    ("list", "endpointslices.discovery.k8s.io", "-A", True),
    ("watch", "endpointslices.discovery.k8s.io", "-A", True),
    ("create", "events", OTHER, True),
    *((verb, "leases.coordination.k8s.io", NS, True) for verb in ("list", "watch", "create")),
    *((verb, "leases.coordination.k8s.io/l2lb-speaker-node1", NS, True)
      for verb in ("get", "update", "delete")),
    *((verb, f"secrets/{SECRET}", NS, True) for verb in ("get", "list", "watch")),
    *((verb, "ipannouncements.l2lb.io", None, True) for verb in ("get", "list", "create")),
    ("patch", "ipannouncements.l2lb.io/status", None, True),
    ("list", "configmaps/config", NS, True), ("watch", "configmaps/config", NS, True),  # the pools, by name
    # the extra grants removed, and nothing else
    ("get", "configmaps/config", NS, False), ("list", "configmaps", NS, False),
    ("watch", "configmaps", NS, False), ("patch", "events", OTHER, False),
    ("patch", "leases.coordination.k8s.io/l2lb-speaker-node1", NS, False),
    ("create", "leases.coordination.k8s.io", OTHER, False),
    ("list", "secrets", NS, False), ("get", "secrets/other", NS, False),
    ("update", f"secrets/{SECRET}", NS, False), ("get", f"secrets/{SECRET}", OTHER, False),
    ("patch", "services/status", OTHER, False), ("get", "services", OTHER, False),
    ("get", "nodes/node1", None, False), ("update", "nodes/node1", None, False),
    ("list", "pods", NS, False), ("create", "services", OTHER, False),
    ("delete", "ipannouncements.l2lb.io", None, False), ("update", "ipannouncements.l2lb.io", None, False),
    ("watch", "ipannouncements.l2lb.io", None, False),
]


def can_i(lab, component: str, verb: str, resource: str, scope: str | None) -> bool:
    where = [] if scope is None else (["-A"] if scope == "-A" else ["-n", scope])
    if resource.endswith("/status"):  # a subresource, not a name
        where.append("--subresource=status")
        resource = resource.removesuffix("/status")
    result = kubectl(lab, "auth", "can-i", verb, resource, *where,
                     f"--as=system:serviceaccount:{NS}:l2lb-{component}")
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


@pytest.mark.parametrize(("component", "table"), [("controller", CONTROLLER), ("speaker", SPEAKER)])
def test_rbac_matrix_is_exactly_what_the_code_calls(deployed, lab, component, table):
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda row: can_i(lab, component, *row[:3]), table))
    wrong = [f"{verb} {res} ({scope}): expected {'yes' if want else 'no'}"
             for (verb, res, scope, want), got in zip(table, answers, strict=True) if got != want]
    assert not wrong, f"l2lb-{component}: " + "; ".join(wrong)


# ---- the Lease guard: a speaker writes only its own registration --------------------------------

def token_kubeconfig(lab, tmp_path: Path, component: str, node: str) -> str:
    """A kubeconfig holding a token bound to this component's Pod on `node` (as the kubelet mounts)."""
    pods = json.loads(kubectl(lab, "get", "pods", "-n", NS, "-o", "json", "-l",
                              f"app.kubernetes.io/component={component}", check=True).stdout)["items"]
    pod = next(p["metadata"]["name"] for p in pods if p["spec"].get("nodeName") == node)
    token = kubectl(lab, "create", "token", f"l2lb-{component}", "-n", NS, "--bound-object-kind", "Pod",
                    "--bound-object-name", pod, check=True).stdout.strip()
    admin = json.loads(kubectl(lab, "config", "view", "--raw", "-o", "json", check=True).stdout)
    cluster = admin["clusters"][0]["cluster"]
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
              "clusters": [{"name": "lab", "cluster": cluster}],
              "users": [{"name": "t", "user": {"token": token}}],
              "contexts": [{"name": "t", "context": {"cluster": "lab", "user": "t"}}]}
    path = tmp_path / f"{component}-{node}.kubeconfig"
    path.write_text(json.dumps(config))
    return str(path)


def lease_write(lab, kubeconfig: str, tmp_path: Path, name: str, verb: str) -> subprocess.CompletedProcess:
    """A server dry run (admission runs, nothing is stored) of replace/create/delete on one Lease."""
    if verb == "delete":
        return kubectl(lab, "delete", "lease", name, "-n", NS, "--dry-run=server", kubeconfig=kubeconfig)
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": NS}, "spec": {"holderIdentity": "intruder"}}
    live = kubectl(lab, "get", "lease", name, "-n", NS, "-o", "json")
    if verb == "replace" and live.returncode == 0:
        body = {**json.loads(live.stdout), "spec": {"holderIdentity": "intruder"}}
        # Unconditional: the holder renews its Lease every few seconds, and a stale resourceVersion
        # would be refused as a Conflict before admission ever looked at the write.
        del body["metadata"]["resourceVersion"]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(body))
    return kubectl(lab, verb, "-f", str(path), "--dry-run=server", kubeconfig=kubeconfig)


# verb -> Leases of others to try (replace/delete need existing ones: a missing one is a 404 first)
OTHERS = {"replace": ("l2lb-speaker-node2", "l2lb-controller"),
          "delete": ("l2lb-speaker-node2", "l2lb-controller"),
          "create": ("l2lb-speaker-node1x", "l2lb-speaker-node9", "l2lb-controller-2")}


@pytest.mark.parametrize("verb", list(OTHERS))
def test_speaker_writes_only_its_own_lease(deployed, lab, tmp_path, verb):
    speaker = token_kubeconfig(lab, tmp_path, "speaker", "node1")
    for name in OTHERS[verb]:
        result = lease_write(lab, speaker, tmp_path, name, verb)
        assert result.returncode != 0, f"speaker on node1 could {verb} Lease {name}"
        assert "may write only Lease l2lb-speaker-node1" in result.stderr, result.stderr
    own_exists = kubectl(lab, "get", "lease", "l2lb-speaker-node1", "-n", NS).returncode == 0
    assert own_exists or verb == "create", "the speaker on node1 has not registered"
    if verb != "create" or not own_exists:
        mine = lease_write(lab, speaker, tmp_path, "l2lb-speaker-node1", verb)
        assert mine.returncode == 0, mine.stderr


def test_controller_writes_only_its_election_lease(deployed, lab, tmp_path):
    node = json.loads(kubectl(lab, "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=controller",
                              "-o", "json", check=True).stdout)["items"][0]["spec"]["nodeName"]
    controller = token_kubeconfig(lab, tmp_path, "controller", node)
    result = lease_write(lab, controller, tmp_path, "l2lb-speaker-node3x", "create")
    assert result.returncode != 0 and "the controller may write only Lease l2lb-controller" in result.stderr
    assert lease_write(lab, controller, tmp_path, "l2lb-controller", "replace").returncode == 0


# ---- what runs: probes, priority, metrics on the node's IP --------------------------------------

def test_pods_have_probes_priority_and_metrics_off_the_wildcard(deployed, lab, netns_run):
    pods = json.loads(kubectl(lab, "get", "pods", "-n", NS, "-o", "json", check=True).stdout)["items"]
    priorities = {"controller": "system-cluster-critical", "speaker": "system-node-critical"}
    for pod in pods:
        component = pod["metadata"]["labels"]["component"]
        container = pod["spec"]["containers"][0]
        assert pod["spec"]["priorityClassName"] == priorities[component]
        assert pod["spec"]["priority"] >= 2_000_000_000
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pdb = json.loads(kubectl(lab, "get", "pdb", "l2lb-controller", "-n", NS, "-o", "json", check=True).stdout)
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["status"]["expectedPods"] == 2
    listening = netns_run("node1", "ss", "-ltnH", "sport = :7473", check=True).stdout
    assert "192.168.1.11:7473" in listening and "0.0.0.0:7473" not in listening and "*:7473" not in listening


def agent_pids(pod: str) -> list[int]:
    """PIDs of the agent processes of one Pod, whatever runs them (the environment names the Pod)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"L2LB_POD_NAME={pod}".encode() in environ and b"l2lb_agent" in cmdline:
            found.append(int(proc.name))
    return found


def test_a_hung_speaker_is_restarted_by_its_liveness_probe(deployed, lab, kube):
    pod = next(p for p in kube.core.list_namespaced_pod(NS, label_selector="component=speaker").items
               if p.spec.node_name == "node1")
    restarts = pod.status.container_statuses[0].restart_count
    pids = agent_pids(pod.metadata.name)
    assert pids, f"no agent process found for {pod.metadata.name}"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # heartbeat, sync and HTTP threads all stop: /healthz times out
    try:
        def restarted():
            now = kube.core.read_namespaced_pod(pod.metadata.name, NS).status
            status = now.container_statuses[0]
            return status.restart_count > restarts and status.ready
        wait_for(restarted, 150, "the kubelet to restart the hung speaker and see it Ready")
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    events = kubectl(lab, "get", "events", "-n", NS, "--field-selector",
                     f"involvedObject.name={pod.metadata.name}", "-o", "json", check=True).stdout
    assert "failed liveness probe" in events


# ---- render-only output is what is applied ------------------------------------------------------

def test_rendered_manifests_are_what_site_applied(deployed, lab, tmp_path):
    out = tmp_path / "rendered"
    succeeded(playbook("playbooks/render.yml", extra={"l2lb_render_dir": str(out)}, tmp=tmp_path))
    stream = (out / "l2lb.yaml").read_text()
    assert "kind: DaemonSet" in stream and "kind: ConfigMap" in stream and "kind: Secret" not in stream
    diff = kubectl(lab, "diff", "--server-side", "--field-manager=l2lb-ansible", "--force-conflicts",
                   "-f", str(out / "l2lb.yaml"))
    assert diff.returncode == 0, f"rendered differs from applied:\n{diff.stdout[-4000:]}{diff.stderr[-2000:]}"


# ---- refused before any change -------------------------------------------------------------------

def generations(kube) -> tuple:
    ds = kube.apps.read_namespaced_daemon_set("l2lb-speaker", NS)
    deploy = kube.apps.read_namespaced_deployment("l2lb-controller", NS)
    secret = kube.core.read_namespaced_secret(SECRET, NS)
    return ds.metadata.generation, deploy.metadata.generation, secret.metadata.resource_version


@pytest.mark.parametrize(("extra", "named"), [
    ({"l2lb_heartbeat_interval": 0.001}, ["l2lb_heartbeat_interval", "0.001"]),
    ({"l2lb_dead_after": 0.2, "l2lb_heartbeat_interval": 0.1}, ["l2lb_dead_after", "0.2"]),
    ({"l2lb_renew_interval": 5}, ["l2lb_renew_interval"]),
    ({"l2lb_speaker_metrics_host": "localhost"}, ["l2lb_speaker_metrics_host", "localhost"]),
    ({"l2lb_memberlist_keys": [KEY_1, "tooshort"]}, ["keys[2]", "l2lb_memberlist_keys"]),
    # only the API server knows these: its dry run of every object runs before the first write
    ({"l2lb_tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule",
                            "tolerationSeconds": 5}]},
     ["DaemonSet/l2lb-system/l2lb-speaker", "tolerationSeconds"]),
    ({"l2lb_speaker_resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "1Mi"}}},
     ["DaemonSet/l2lb-system/l2lb-speaker", "must be less than or equal to memory limit"]),
], ids=["heartbeat", "dead-after", "renew", "metrics-host", "bad-key", "toleration", "resources"])
def test_bad_values_refused_before_any_change(deployed, kube, tmp_path, extra, named):
    before = generations(kube)
    result = playbook("site.yml", extra={**extra, "l2lb_log_level": "warning"}, tmp=tmp_path)
    failure = refused(result, *named)
    assert "tooshort" not in failure and KEY_1 not in failure
    assert generations(kube) == before


KUBE_PROXY_IPVS = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n"


def test_kube_proxy_ipvs_without_strict_arp_is_refused(deployed, kube, tmp_path):
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="kube-proxy", namespace="kube-system"),
                           data={"config.conf": KUBE_PROXY_IPVS + "ipvs:\n  strictARP: false\n"})
    kube.core.create_namespaced_config_map("kube-system", body)
    try:
        before = generations(kube)
        extra = {"l2lb_log_level": "warning"}
        refused(playbook("site.yml", extra=extra, tmp=tmp_path), "strictARP: true", "kube-system/kube-proxy",
                "l2lb_skip_kube_proxy_check")
        assert generations(kube) == before
        succeeded(playbook("site.yml", "--check", extra={**extra, "l2lb_skip_kube_proxy_check": True},
                           tmp=tmp_path))
        body.data = {"config.conf": KUBE_PROXY_IPVS + "ipvs:\n  strictARP: true\n"}
        kube.core.replace_namespaced_config_map("kube-proxy", "kube-system", body)
        succeeded(playbook("site.yml", "--check", extra=extra, tmp=tmp_path))
    finally:
        kube.core.delete_namespaced_config_map("kube-proxy", "kube-system")


# ---- keys: kept, rotated in two steps, never shown -------------------------------------------------

def watch_keyrings(kube, seen: list[list[str]], stop: threading.Event) -> None:
    watcher = kubernetes.watch.Watch()
    for event in watcher.stream(kube.core.list_namespaced_secret, NS,
                                field_selector=f"metadata.name={SECRET}", timeout_seconds=120):
        keys = base64.b64decode(event["object"].data["keys"]).decode().split()
        if not seen or seen[-1] != keys:
            seen.append(keys)
        if stop.is_set():
            watcher.stop()


def test_keys_generated_kept_then_rotated_in_two_steps_never_shown(deployed, kube, tmp_path):
    kube.core.delete_namespaced_secret(SECRET, NS)
    assert succeeded(playbook("site.yml"))["changed"] == 1  # missing and unset: one key generated
    generated = secret_keys(kube)
    assert len(generated) == 1 and len(generated[0]) == 44
    assert succeeded(playbook("site.yml"))["changed"] == 0  # unset keys: the live one is kept
    assert secret_keys(kube) == generated
    seen: list[list[str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_keyrings, args=(kube, seen, stop), daemon=True)
    watcher.start()
    extra = {"l2lb_memberlist_keys": [KEY_1], "l2lb_memberlist_rotation_wait": 3}
    result = playbook("site.yml", extra=extra, tmp=tmp_path)
    stop.set()
    succeeded(result)
    assert KEY_1 not in result.stdout + result.stderr
    assert secret_keys(kube) == [KEY_1]
    assert [KEY_1, generated[0]] in seen and seen[-1] == [KEY_1], seen  # bridge first, then final
    assert seen.index([KEY_1, generated[0]]) < len(seen) - 1
    assert succeeded(playbook("site.yml", extra=extra, tmp=tmp_path))["changed"] == 0
    check = playbook("site.yml", "--check", "--diff", extra={"l2lb_memberlist_keys": [KEY_2]}, tmp=tmp_path)
    succeeded(check)
    assert "sha256:" in check.stdout and KEY_2 not in check.stdout + check.stderr
    assert KEY_1 not in check.stdout + check.stderr
    assert secret_keys(kube) == [KEY_1]


# ---- uninstall deletes only what l2lb created ----------------------------------------------------

def l2lb_objects_gone(lab, namespace: str) -> None:
    for kind, name, ns in (
        ("deployment", "l2lb-controller", namespace), ("daemonset", "l2lb-speaker", namespace),
        ("configmap", "config", namespace), ("secret", SECRET, namespace),
        ("serviceaccount", "l2lb-speaker", namespace), ("role", "l2lb-speaker", namespace),
        ("pdb", "l2lb-controller", namespace), ("clusterrole", "l2lb-speaker", None),
        ("clusterrolebinding", "l2lb-controller", None),
        ("validatingadmissionpolicy", f"l2lb-leases.{namespace}", None),
    ):
        where = ["-n", ns] if ns else []
        assert kubectl(lab, "get", kind, name, *where).returncode != 0, f"{kind} {name} still there"
    leases = kubectl(lab, "get", "leases", "-n", namespace, "-o", "name").stdout
    assert "l2lb-" not in leases, leases


def test_uninstall_keeps_a_namespace_that_holds_other_objects(deployed, kube, lab):
    foreign = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="team-notes"), data={"a": "b"})
    kube.core.create_namespaced_config_map(NS, foreign)
    result = succeeded(playbook("playbooks/uninstall.yml"))
    assert result["changed"] > 0
    l2lb_objects_gone(lab, NS)
    assert kube.core.read_namespaced_config_map("team-notes", NS).data == {"a": "b"}
    kube.core.delete_namespaced_config_map("team-notes", NS)
    succeeded(playbook("playbooks/uninstall.yml"))  # now empty of anything else: it goes
    assert NS not in {n.metadata.name for n in kube.core.list_namespace().items}


def test_existing_namespace_is_used_never_taken_over_nor_deleted(lab, kube, tmp_path):
    namespace = "monitoring"
    kube.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace,
                                                                         labels={"team": "obs"})))
    try:
        kube.core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(
            metadata=k8s.V1ObjectMeta(name="l2lb-speaker")))
        kube.core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name="dashboards"), data={"d": "1"}))
        extra = {"l2lb_namespace": namespace}
        refused(playbook("site.yml", extra=extra, tmp=tmp_path), "ServiceAccount/monitoring/l2lb-speaker")
        kube.core.delete_namespaced_service_account("l2lb-speaker", namespace)
        succeeded(playbook("site.yml", extra=extra, tmp=tmp_path))
        meta = kube.core.read_namespace(namespace).metadata
        assert meta.labels.get("app.kubernetes.io/managed-by") is None and not (meta.annotations or {})
        result = playbook("playbooks/uninstall.yml", extra=extra, tmp=tmp_path)
        succeeded(result)
        assert "existed before l2lb" in result.stdout
        l2lb_objects_gone(lab, namespace)
        assert kube.core.read_namespaced_config_map("dashboards", namespace).data == {"d": "1"}
        assert kube.core.read_namespace(namespace).status.phase == "Active"
    finally:
        playbook("playbooks/uninstall.yml", extra={"l2lb_namespace": namespace}, tmp=tmp_path)
        kube.core.delete_namespace(namespace)
