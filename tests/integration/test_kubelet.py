"""The lab kubelet (issue 2, item 4) against the lab's real API server, scheduler and LAN.

Pods are checked through what a cluster user sees (Pod status, EndpointSlices, HTTP from
the client namespace) and, where only the node can tell, through the Pod's directory
(<state-dir>/pods/<ns>_<name>_<uid8>/) and `ip` inside the node's namespace.
LoadBalancer tests use 192.168.1.230 / fd00:4c32:6c62::230 (outside the tutorial's pool
192.168.1.240/28, so no l2lb speaker of another test announces them) and a
loadBalancerClass no controller handles, so only this test writes their status.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from l2lb_lab import nodeprocs
from l2lb_lab import topology as topo
from l2lb_lab.testing import wait_until

LB4, LB6 = "192.168.1.230", "fd00:4c32:6c62::230"
NO_CLASS = "lab.test/nobody"




@pytest.fixture
def namespace(kube) -> Iterator[str]:
    name = f"kubelet-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": name}})
    yield name
    kube.core.delete_namespace(name)


def raw_pod(kube, ns: str, name: str) -> dict[str, Any]:
    resp = kube.core.read_namespaced_pod(name, ns, _preload_content=False)
    return json.loads(resp.data)


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


def pod_dir(lab, pod: dict[str, Any]) -> Path:
    meta = pod["metadata"]
    return lab.paths.node_state(pod["spec"]["nodeName"]) / "pods" / \
        f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"


def event_reasons(kube, ns: str, name: str) -> set[str]:
    events = kube.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return {e.reason for e in events if e.source and e.source.component == "kubelet"}


def node_of(pod: dict[str, Any]) -> topo.Host:
    return next(h for h in topo.NODES if h.name == pod["spec"]["nodeName"])


def create_pod(kube, ns: str, name: str, container: dict[str, Any], **spec: Any) -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "main", **container}], **spec}}
    kube.core.create_namespaced_pod(ns, body)


def nginx_deployment(name: str, port: int, replicas: int = 1) -> dict[str, Any]:
    container = {"name": "nginx", "image": "nginx:1.27",
                 "ports": [{"name": "http", "containerPort": port}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [container]}}}}


def ready_pods(kube, ns: str, app: str) -> list[dict[str, Any]]:
    resp = kube.core.list_namespaced_pod(ns, label_selector=f"app={app}", _preload_content=False)
    pods = json.loads(resp.data)["items"]
    return [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in (p.get("status") or {}).get("conditions") or [])]


def kube_lb0(netns_run, node: str) -> set[str]:
    out = netns_run(node, "ip", "-j", "addr", "show", "dev", topo.LB_DUMMY, check=True).stdout
    return {a["local"] for link in json.loads(out) for a in link.get("addr_info", [])}


def test_nginx_deployment_becomes_ready_and_serves_its_container_port(lab, kube, namespace, http_get):
    kube.apps.create_namespaced_deployment(namespace, nginx_deployment("web", 8088))
    kube.core.create_namespaced_service(namespace, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ipFamilyPolicy": "RequireDualStack",
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    pod = wait_until("a Ready nginx Pod", lambda: ready_pods(kube, namespace, "web"), timeout=90)[0]
    host = node_of(pod)
    status = pod["status"]
    assert status["phase"] == "Running"
    assert status["podIP"] == status["hostIP"] == host.ipv4
    assert [i["ip"] for i in status["podIPs"]] == [host.ipv4, host.ipv6]
    assert status["startTime"]
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                     "ContainersReady": "True", "PodScheduled": "True"}
    cs = container_status(pod)
    assert cs["ready"] and cs["started"] and "running" in cs["state"] and cs["restartCount"] == 0
    wait_until("Deployment web available", lambda: (kube.apps.read_namespaced_deployment(
        "web", namespace).status.available_replicas or 0) == 1)

    def endpoints() -> set[str]:
        slices = kube.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web").items
        return {a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses}
    both = wait_until("ready endpoints, v4 and v6", lambda: len(eps := endpoints()) == 2 and eps)
    assert both == {host.ipv4, host.ipv6}
    for url in (f"http://{host.ipv4}:8088/", f"http://[{host.ipv6}]:8088/"):
        page = http_get(url)
        assert page.ok and "Welcome to nginx!" in page.body, (url, page)
    log = pod_dir(lab, pod) / "nginx.log"
    assert wait_until("the access log line in the container log", lambda: "GET / HTTP" in log.read_text())


def test_unsupported_image_stays_waiting_with_the_reason(kube, namespace):
    create_pod(kube, namespace, "box", {"image": "busybox:1.36", "command": ["sleep", "3600"]})
    state = wait_until("the Waiting reason", lambda: container_status(raw_pod(kube, namespace, "box"))
                       .get("state", {}).get("waiting", {}).get("reason") == "ImageNotSupportedInLab"
                       and container_status(raw_pod(kube, namespace, "box"))["state"]["waiting"])
    assert "busybox:1.36" in state["message"] and "l2lb-agent and nginx" in state["message"]
    time.sleep(3)
    pod = raw_pod(kube, namespace, "box")
    assert pod["status"]["phase"] == "Pending"
    assert container_status(pod)["restartCount"] == 0
    assert "Failed" in wait_until("the kubelet's Failed Event", lambda: event_reasons(kube, namespace, "box"))


def test_crashing_container_restarts_with_crashloopbackoff(kube, namespace):
    create_pod(kube, namespace, "crash", {"image": "ghcr.io/l2lb/l2lb-agent:0.1.0",
                                          "command": ["python3", "-c", "import sys; sys.exit(3)"]})

    def crashlooping() -> dict[str, Any] | None:
        cs = container_status(raw_pod(kube, namespace, "crash"))
        waiting = cs.get("state", {}).get("waiting", {})
        return cs if cs.get("restartCount", 0) >= 2 and waiting.get("reason") == "CrashLoopBackOff" else None
    cs = wait_until("two restarts and CrashLoopBackOff", crashlooping, timeout=60)
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    assert not cs["ready"]
    pod = raw_pod(kube, namespace, "crash")
    assert pod["status"]["phase"] == "Running"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "False"
    assert {"Started", "BackOff"} <= wait_until("Started and BackOff Events", lambda: (
        r := event_reasons(kube, namespace, "crash")) >= {"Started", "BackOff"} and r)


AGENT_SCRIPT = """
import json, os, sys, urllib.error, urllib.request
from l2lb_agent import kubeconfig
cfg = kubeconfig.resolve()
def call(method, path, body=None):
    req = urllib.request.Request(cfg.server + path, method=method, data=body and json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + cfg.token.get(),
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=cfg.ssl_context, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, {}
review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
_, who = call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
secrets, _ = call("GET", "/api/v1/namespaces/kube-system/secrets")
keys = ("MY_NODE", "MY_POD", "MY_NS", "MY_IP", "MY_HOST_IP", "MY_SA", "COMBINED", "KUBECONFIG")
print(json.dumps({"env": {k: os.environ.get(k) for k in keys}, "argv": sys.argv[1:], "source": cfg.source,
                  "user": who["status"]["userInfo"]["username"], "secrets": secrets}))
"""


def runs_in_runc(pod: dict[str, Any]) -> bool:
    """The kubelet reports runc:// container IDs for containers it runs with runc."""
    cs = container_status(pod)
    ids = [cs.get("containerID", ""), *(s.get("containerID", "") for s in cs.get("lastState", {}).values())]
    return any(i.startswith("runc://") for i in ids)


@pytest.fixture
def runc_nodes(kube) -> None:
    """Skip unless every lab kubelet runs agent containers with runc (its Node says so)."""
    nodes = kube.core.list_node().items
    runtimes = {n.metadata.name: n.status.node_info.container_runtime_version for n in nodes}
    if not all(r.startswith("runc://") for r in runtimes.values()):
        pytest.skip(f"the lab kubelets run agent Pods as processes (L2LB_LAB_RUNTIME=process): {runtimes}")


def test_agent_image_gets_downward_api_env_and_a_serviceaccount_token(lab, kube, namespace):
    def field(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}
    env = [{"name": "MY_NODE", **field("spec.nodeName")}, {"name": "MY_POD", **field("metadata.name")},
           {"name": "MY_NS", **field("metadata.namespace")}, {"name": "MY_IP", **field("status.podIP")},
           {"name": "MY_HOST_IP", **field("status.hostIP")},
           {"name": "MY_SA", **field("spec.serviceAccountName")},
           {"name": "COMBINED", "value": "$(MY_POD)@$(MY_NODE)"}]
    create_pod(kube, namespace, "agent", {"image": "ghcr.io/l2lb/l2lb-agent:0.1.0",
                                          "command": ["python", "-c", AGENT_SCRIPT],
                                          "args": ["--node=$(MY_NODE)", "$$(MY_NODE)"], "env": env},
               restartPolicy="Never")
    pod = wait_until("the Pod to succeed", lambda: (p := raw_pod(kube, namespace, "agent"))["status"].get(
        "phase") in ("Succeeded", "Failed") and p, timeout=90)
    log = (pod_dir(lab, pod) / "main.log").read_text()
    assert pod["status"]["phase"] == "Succeeded", log
    assert container_status(pod)["state"]["terminated"]["exitCode"] == 0
    out = json.loads(log.strip().splitlines()[-1])
    host = node_of(pod)
    # In a container the token is the mounted ServiceAccount volume; as a process, a kubeconfig.
    kubeconfig = None if runs_in_runc(pod) else str(pod_dir(lab, pod) / "kubeconfig")
    assert out["env"] == {"MY_NODE": host.name, "MY_POD": "agent", "MY_NS": namespace, "MY_IP": host.ipv4,
                          "MY_HOST_IP": host.ipv4, "MY_SA": "default", "COMBINED": f"agent@{host.name}",
                          "KUBECONFIG": kubeconfig}
    assert out["source"].startswith("in-cluster" if kubeconfig is None else "kubeconfig")
    assert out["argv"] == [f"--node={host.name}", "$(MY_NODE)"]
    assert out["user"] == f"system:serviceaccount:{namespace}:default"
    assert out["secrets"] == 403  # RBAC applies: the default ServiceAccount has no roles


def test_deleting_a_pod_stops_its_processes_then_removes_the_object(lab, kube, namespace, netns_run):
    create_pod(kube, namespace, "gone", {"image": "nginx", "ports": [{"containerPort": 8089}]},
               terminationGracePeriodSeconds=5)
    pod = wait_until("the Pod running", lambda: (p := raw_pod(kube, namespace, "gone"))["status"].get(
        "phase") == "Running" and p, timeout=60)
    state = json.loads((pod_dir(lab, pod) / "main.state.json").read_text())
    pid = state["proc"]["pid"]
    assert Path(f"/proc/{pid}").exists()
    kube.core.delete_namespaced_pod("gone", namespace)

    def object_gone() -> bool:
        try:
            kube.core.read_namespaced_pod("gone", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False
    wait_until("the kubelet to delete the Pod object", object_gone, timeout=30)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    host = node_of(pod)
    assert netns_run(host.name, "curl", "-s", "-m", "2", f"http://{host.ipv4}:8089/").returncode != 0


@pytest.mark.slow
def test_loadbalancer_ip_is_accepted_where_an_endpoint_is_and_never_answered_by_the_kernel(
        lab, kube, namespace, netns_run, arp_who_has, ndp_who_has, http_get):
    kube.apps.create_namespaced_deployment(namespace, nginx_deployment("lb", 8090))
    kube.core.create_namespaced_service(namespace, {
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": NO_CLASS, "externalTrafficPolicy": "Local",
                 "ipFamilyPolicy": "RequireDualStack", "selector": {"app": "lb"},
                 "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}})
    pod = wait_until("a Ready nginx Pod", lambda: ready_pods(kube, namespace, "lb"), timeout=90)[0]
    home = node_of(pod)
    others = [h for h in topo.NODES if h.name != home.name]
    kube.core.patch_namespaced_service_status("lb", namespace, {
        "status": {"loadBalancer": {"ingress": [{"ip": LB4}, {"ip": LB6}]}}})
    wait_until(f"{LB4} and {LB6} on {home.name}'s kube-lb0",
               lambda: {LB4, LB6} <= kube_lb0(netns_run, home.name), timeout=30)
    assert all(not {LB4, LB6} & kube_lb0(netns_run, h.name) for h in others)  # Local: only where the pod is
    # the node accepts the IP, but its kernel never claims it on the LAN: only a speaker may
    assert arp_who_has(LB4) == []
    assert ndp_who_has(LB6) == []
    _check_reachable_through(netns_run, http_get, home)
    # externalTrafficPolicy Cluster: the other nodes accept it too and relay to the endpoint
    kube.core.patch_namespaced_service("lb", namespace, {"spec": {"externalTrafficPolicy": "Cluster"}})
    wait_until("the IP on every node", lambda: all(LB4 in kube_lb0(netns_run, h.name) for h in topo.NODES),
               timeout=30)
    _check_reachable_through(netns_run, http_get, others[0])
    kube.core.delete_namespaced_service("lb", namespace)
    wait_until("the IP gone from every node", lambda: all(
        not {LB4, LB6} & kube_lb0(netns_run, h.name) for h in topo.NODES), timeout=30)


def _check_reachable_through(netns_run, http_get, node: topo.Host) -> None:
    """Point the client's neighbour entry for LB4 at node (what a speaker's ARP reply would do)."""
    netns_run("client", "ip", "neigh", "replace", LB4, "lladdr", node.mac, "dev", "eth0", check=True)
    try:
        url = f"http://{LB4}:8080/"
        page = wait_until(f"HTTP via {node.name}", lambda: (r := http_get(url, timeout=3)).ok and r, 20)
        assert "Welcome to nginx!" in page.body
    finally:
        netns_run("client", "ip", "neigh", "del", LB4, "dev", "eth0")


def _running_pod(kube, ns: str, name: str, port: int) -> dict[str, Any]:
    create_pod(kube, ns, name, {"image": "nginx", "ports": [{"containerPort": port}]})
    return wait_until(f"Pod {name} ready", lambda: container_status(p := raw_pod(kube, ns, name)).get("ready")
                      and p, timeout=60)


def test_kubelet_restart_adopts_running_pods(lab, kube, namespace):
    """SIGTERM stops only the kubelet; the next one adopts the process instead of starting another."""
    pod = _running_pod(kube, namespace, "keep", 8087)
    state_file = pod_dir(lab, pod) / "main.state.json"
    pid = json.loads(state_file.read_text())["proc"]["pid"]
    host = node_of(pod)
    kubelet = nodeprocs.kubelet_pid(lab.paths, host)
    assert kubelet
    os.kill(kubelet, signal.SIGTERM)
    wait_until("the kubelet to exit", lambda: not Path(f"/proc/{kubelet}").exists(), timeout=15)
    assert Path(f"/proc/{pid}").exists()  # the Pod outlives its kubelet
    lab.run("up")  # starts the missing kubelet again
    wait_until("a new kubelet", lambda: nodeprocs.kubelet_pid(lab.paths, host), timeout=30)
    time.sleep(4)  # a few worker ticks
    cs = container_status(raw_pod(kube, namespace, "keep"))
    assert cs["ready"] and cs["restartCount"] == 0
    assert json.loads(state_file.read_text())["proc"]["pid"] == pid
    assert Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_pods_that_vanished_with_their_node_are_restarted_on_node_up(lab, kube, namespace):
    pod = _running_pod(kube, namespace, "back", 8086)
    state_file = pod_dir(lab, pod) / "main.state.json"
    pid = json.loads(state_file.read_text())["proc"]["pid"]
    host = node_of(pod)
    lab.node_down(host.name)  # SIGKILLs everything in the node, the Pod's nginx included
    lab.node_up(host.name)

    def restarted() -> dict[str, Any] | None:
        cs = container_status(raw_pod(kube, namespace, "back"))
        return cs if cs.get("restartCount", 0) >= 1 and cs.get("ready") else None
    cs = wait_until("the Pod restarted after node-up", restarted, timeout=90)
    assert cs["lastState"]["terminated"]["exitCode"] == 137  # what SIGKILL leaves behind
    assert json.loads(state_file.read_text())["proc"]["pid"] != pid


def _lease_renewed(kube, node: str) -> str:
    return kube.coordination.read_namespaced_lease(node, "kube-node-lease").spec.renew_time.isoformat()


@pytest.mark.slow
def test_api_outage_keeps_pods_running_and_the_kubelet_recovers(lab, kube, namespace):
    pod = _running_pod(kube, namespace, "steady", 8085)
    host = node_of(pod)
    pid = json.loads((pod_dir(lab, pod) / "main.state.json").read_text())["proc"]["pid"]
    kubelet = nodeprocs.kubelet_pid(lab.paths, host)
    lab.api_down(host.name)
    try:
        before = _lease_renewed(kube, host.name)
        time.sleep(12)  # calls hang now; every one of them must time out, not block forever
        assert _lease_renewed(kube, host.name) == before  # heartbeats really stopped
        assert Path(f"/proc/{pid}").exists() and nodeprocs.kubelet_pid(lab.paths, host) == kubelet
    finally:
        lab.api_up(host.name)
    wait_until("the Lease renewed again", lambda: _lease_renewed(kube, host.name) != before, timeout=30)
    # the Pod watch recovers too: a new Pod for this node starts
    create_pod(kube, namespace, "after", {"image": "nginx", "ports": [{"containerPort": 8084}]},
               nodeSelector={"kubernetes.io/hostname": host.name})
    wait_until("the new Pod ready", lambda: container_status(raw_pod(kube, namespace, "after")).get("ready"),
               timeout=60)
    assert container_status(raw_pod(kube, namespace, "steady"))["restartCount"] == 0


def test_failing_liveness_probe_restarts_the_container(kube, namespace):
    create_pod(kube, namespace, "sick", {
        "image": "nginx", "ports": [{"containerPort": 8083}],
        "livenessProbe": {"tcpSocket": {"port": 8082}, "periodSeconds": 1, "failureThreshold": 2}})

    def restarted() -> dict[str, Any] | None:
        cs = container_status(raw_pod(kube, namespace, "sick"))
        return cs if cs.get("restartCount", 0) >= 1 else None
    cs = wait_until("a restart caused by the liveness probe", restarted, timeout=45)
    assert "terminated" in cs["lastState"]


# -- the agent image under runc: what a cluster's container runtime applies ---------------------
PROBE_SCRIPT = """
import json, os, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
try:
    open("/written-by-the-container", "w").close()
    root_write = "ok"
except OSError as exc:
    root_write = exc.strerror
with open("/sys/fs/cgroup/memory/memory.limit_in_bytes") as f:
    memory = int(f.read())
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "python": os.path.realpath(sys.executable),
                  "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
                  "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
                  "root_write": root_write, "memory": memory,
                  "sbom": os.path.exists("/usr/share/l2lb/sbom.txt"),
                  "token": os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")}))
"""
NET_RAW_BIT = 1 << 13


def _finished(kube, ns: str, name: str) -> dict[str, Any]:
    return wait_until(f"Pod {name} to finish", lambda: (p := raw_pod(kube, ns, name))["status"].get(
        "phase") in ("Succeeded", "Failed") and p, timeout=120)


@pytest.mark.parametrize("uid, caps", [(65532, {"drop": ["ALL"]}),
                                       (0, {"drop": ["ALL"], "add": ["NET_RAW"]})],
                         ids=["controller-like", "speaker-like"])
def test_agent_container_gets_the_pods_security_context_and_memory_limit(lab, kube, namespace, runc_nodes,
                                                                          uid, caps):
    security = {"runAsUser": uid, "runAsNonRoot": uid != 0, "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True, "capabilities": caps}
    create_pod(kube, namespace, "sc", {"image": "ghcr.io/l2lb/l2lb-agent:0.1.0", "command": ["python3", "-c"],
                                       "args": [PROBE_SCRIPT], "securityContext": security,
                                       "resources": {"limits": {"memory": "96Mi"}}},
               restartPolicy="Never", securityContext={"seccompProfile": {"type": "RuntimeDefault"}})
    pod = _finished(kube, namespace, "sc")
    assert runs_in_runc(pod)
    log = (pod_dir(lab, pod) / "main.log").read_text()
    assert pod["status"]["phase"] == "Succeeded", log
    out = json.loads(log.strip().splitlines()[-1])
    assert (out["uid"], out["gid"]) == (uid, 65532 if uid else 0)
    assert out["python"] == "/usr/bin/python3.11" and out["sbom"] and out["token"]  # the image's python
    bounding = NET_RAW_BIT if caps.get("add") else 0
    assert int(out["cap_bnd"], 16) == bounding  # everything else dropped
    assert int(out["cap_eff"], 16) == (bounding if uid == 0 else 0)  # a non-root user holds none
    assert out["no_new_privs"] == "1" and out["seccomp"] == "2"  # 2: a seccomp filter is installed
    assert out["root_write"] == "Read-only file system"
    assert out["memory"] == 96 * 2**20


def test_run_as_non_root_refuses_a_root_user_with_the_kubelets_reason(kube, namespace, runc_nodes):
    create_pod(kube, namespace, "rootish", {"image": "ghcr.io/l2lb/l2lb-agent:0.1.0",
                                            "securityContext": {"runAsNonRoot": True, "runAsUser": 0}})

    def refused() -> dict[str, Any] | None:
        waiting = container_status(raw_pod(kube, namespace, "rootish")).get("state", {}).get("waiting", {})
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None
    waiting = wait_until("CreateContainerConfigError", refused, timeout=60)
    assert "runAsNonRoot and image will run as root" in waiting["message"]
    assert raw_pod(kube, namespace, "rootish")["status"]["phase"] == "Pending"


def test_speaker_without_net_raw_crashes_with_the_error_in_the_pod_status(lab, kube, namespace, runc_nodes):
    env = [{"name": "L2LB_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "L2LB_NAMESPACE", "value": namespace},
           {"name": "L2LB_LOADBALANCER_CLASS", "value": NO_CLASS}]
    security = {"runAsUser": 0, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}}  # the speaker's, less NET_RAW
    create_pod(kube, namespace, "mute", {"image": "ghcr.io/l2lb/l2lb-agent:0.1.0", "args": ["speaker"],
                                         "env": env, "securityContext": security,
                                         "terminationMessagePolicy": "FallbackToLogsOnError"},
               hostNetwork=True)

    def crashed() -> dict[str, Any] | None:
        cs = container_status(raw_pod(kube, namespace, "mute"))
        return cs if "terminated" in cs.get("lastState", {}) else None
    cs = wait_until("the speaker to crash", crashed, timeout=90)
    assert runs_in_runc(raw_pod(kube, namespace, "mute"))
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] == 2 and last["reason"] == "Error"
    assert "CAP_NET_RAW" in last["message"] and "Operation not permitted" in last["message"], last
    assert not cs["ready"]
