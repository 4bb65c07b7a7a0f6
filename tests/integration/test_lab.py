"""The lab's "Done when" (issue 2), checked from outside through the contract's names.

Order matters only for the last test, which takes the lab down and up again (marked `last`).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client as k8s
import pytest
from kubernetes.client.rest import ApiException
from l2lb_lab import controlplane, lock, procs
from l2lb_lab import topology as topo
from l2lb_lab.testing import wait_until

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = (REPO / "lab/k8s-build/versions.env").read_text().split("K8S_VERSION=")[1].split()[0]




def node_ready(kube, name: str) -> str:
    node = kube.core.read_node(name)
    return next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "missing")


def live_pids(pattern: str) -> list[int]:
    """Pids whose command line matches pattern (pgrep -f), zombies left out."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if procs.alive(int(p))]


@pytest.fixture
def namespace(kube) -> Iterator[str]:
    name = f"labtest-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    kube.core.delete_namespace(name)


def test_kubectl_reports_the_built_server_version(lab):
    out = json.loads(lab.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == K8S_VERSION
    assert out["clientVersion"]["gitVersion"] == K8S_VERSION


def test_namespaces_and_addresses_follow_the_contract(lab, netns_run):
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for ns in ("l2lb-lan", "l2lb-client", "l2lb-node1", "l2lb-node2", "l2lb-node3"):
        assert ns in names
    for host in topo.HOSTS:
        link = json.loads(netns_run(host.name, "ip", "-j", "addr", "show", "eth0", check=True).stdout)[0]
        addrs = {(a["local"], a["prefixlen"]) for a in link["addr_info"]}
        assert link["address"] == host.mac
        assert {(host.ipv4, 24), (host.ipv6, 64)} <= addrs
    # the host namespace got nothing: no LAN address and no route into the LAN
    host_addrs = subprocess.run(["ip", "addr"], capture_output=True, text=True, check=True).stdout
    host_routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert "192.168.1." not in host_addrs + host_routes
    assert "fd00:4c32:6c62" not in host_addrs


def test_three_nodes_are_ready_with_lan_internal_ips(lab, kube):
    nodes = {n.metadata.name: n for n in kube.core.list_node().items}
    assert sorted(nodes) == list(topo.NODE_NAMES)
    for host in topo.NODES:
        node = nodes[host.name]
        ready = next(c.status for c in node.status.conditions if c.type == "Ready")
        internal = {a.address for a in node.status.addresses if a.type == "InternalIP"}
        assert ready == "True", host.name
        assert host.ipv4 in internal, host.name


def test_lan_answers_arp_and_ndp_but_node_kernels_ignore_lb_addresses(lab, netns_run, arp_who_has,
                                                                      ndp_who_has):
    node = topo.NODES[1]
    assert arp_who_has(node.ipv4) == [node.mac]
    assert ndp_who_has(node.ipv6) == [node.mac]
    # an address on kube-lb0 (where the kubelet parks LoadBalancer IPs) is not answered by the kernel
    lb4, lb6 = "192.168.1.250", "fd00:4c32:6c62::250"
    netns_run(node.name, "ip", "addr", "add", f"{lb4}/32", "dev", topo.LB_DUMMY, check=True)
    netns_run(node.name, "ip", "addr", "add", f"{lb6}/128", "dev", topo.LB_DUMMY, "nodad", check=True)
    try:
        assert netns_run(node.name, "ping", "-c1", "-W1", lb4).returncode == 0  # it is local there
        assert arp_who_has(lb4) == []
        assert ndp_who_has(lb6) == []
    finally:
        netns_run(node.name, "ip", "addr", "del", f"{lb4}/32", "dev", topo.LB_DUMMY)
        netns_run(node.name, "ip", "addr", "del", f"{lb6}/128", "dev", topo.LB_DUMMY)


def test_second_lab_up_reuses_what_runs(lab):
    before = controlplane.running(lab.paths)
    out = lab.run("up")
    assert "reusing" in out.stderr
    assert controlplane.running(lab.paths) == before


def test_lab_up_undoes_node_down_and_api_down(lab):
    lab.node_down("node1")
    lab.api_down("node3")
    assert lab.run("status", check=False).returncode == 3
    out = lab.run("up").stderr
    assert "node1: LAN link plugged back in" in out
    assert "node3: API path restored" in out
    assert lab.run("status", check=False).returncode == 0


def test_taken_port_is_named(lab):
    taken = r"127\.0\.0\.1:6443 \(needed by kube-apiserver\) is taken by"
    with pytest.raises(controlplane.ControlPlaneError, match=taken):
        controlplane.check_ports()


def test_not_root_gets_a_clear_message_and_nothing_changes(lab):
    before = controlplane.running(lab.paths), sorted(lab.paths.state.rglob("*"))
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          str(REPO / ".venv/bin/lab"), "up"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "must run as root" in res.stderr
    assert (controlplane.running(lab.paths), sorted(lab.paths.state.rglob("*"))) == before


def test_api_down_cuts_only_the_api_path(lab, netns_run):
    kubectl = [str(controlplane.locate_binaries(lab.paths) / "kubectl"), f"--kubeconfig={lab.kubeconfig}",
               "get", "--raw=/readyz", "--request-timeout=3s"]
    assert netns_run("node2", *kubectl).returncode == 0
    lab.api_down("node2")
    try:
        res = netns_run("node2", *kubectl, timeout=20)
        assert res.returncode != 0
        assert netns_run("node2", "ping", "-c1", "-W2", topo.CLIENT.ipv4).returncode == 0
        assert netns_run("node3", *kubectl).returncode == 0
    finally:
        lab.api_up("node2")
    assert netns_run("node2", *kubectl).returncode == 0


def test_roleless_serviceaccount_token_is_forbidden_to_list_secrets(lab, kube, namespace):
    kube.core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(name="nobody")))
    req = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    token = kube.core.create_namespaced_service_account_token("nobody", namespace, req).status.token
    cfg = k8s.Configuration()
    cfg.host = kube.api_client.configuration.host
    cfg.ssl_ca_cert = kube.api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_sa = k8s.ApiClient(cfg)
    # authenticated as the ServiceAccount (so the 403 below is RBAC, not a bad token)
    review = k8s.AuthenticationV1Api(as_sa).create_self_subject_review(k8s.V1SelfSubjectReview())
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"
    with pytest.raises(ApiException) as err:
        k8s.CoreV1Api(as_sa).list_namespaced_secret("kube-system")
    assert err.value.status == 403


def _nginx_objects(namespace: str) -> tuple[k8s.V1Deployment, k8s.V1Service]:
    labels = {"app": "web"}
    container = k8s.V1Container(name="nginx", image="nginx:1.27",
                                ports=[k8s.V1ContainerPort(container_port=80, name="http")])
    deploy = k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="web", namespace=namespace),
        spec=k8s.V1DeploymentSpec(replicas=1, selector=k8s.V1LabelSelector(match_labels=labels),
                                  template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels),
                                                                 spec=k8s.V1PodSpec(containers=[container]))))
    svc = k8s.V1Service(metadata=k8s.V1ObjectMeta(name="web", namespace=namespace),
                        spec=k8s.V1ServiceSpec(selector=labels, ports=[k8s.V1ServicePort(port=80,
                                                                                         target_port="http")]))
    return deploy, svc


def _ready_endpoints(kube, namespace: str) -> list[str]:
    slices = kube.discovery.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=web").items
    return [a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses]


@pytest.mark.slow
def test_nginx_deployment_serves_the_lan_until_its_node_goes_down(lab, kube, namespace, http_get):
    deploy, svc = _nginx_objects(namespace)
    kube.apps.create_namespaced_deployment(namespace, deploy)
    kube.core.create_namespaced_service(namespace, svc)
    wait_until("Deployment web available", lambda: (kube.apps.read_namespaced_deployment(
        "web", namespace).status.available_replicas or 0) >= 1, timeout=90)
    pod = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items[0]
    assert next(c.status for c in pod.status.conditions if c.type == "Ready") == "True"
    host = next(h for h in topo.NODES if h.name == pod.spec.node_name)
    assert pod.status.host_ip == host.ipv4
    endpoints = wait_until("a ready EndpointSlice endpoint", lambda: _ready_endpoints(kube, namespace))
    assert endpoints == [host.ipv4]
    page = http_get(f"http://{host.ipv4}/")
    assert page.ok and "Welcome to nginx!" in page.body, page
    lab.node_down(host.name)
    try:
        assert http_get(f"http://{host.ipv4}/", timeout=3).status is None
        wait_until(f"{host.name} noticed as not Ready", lambda: node_ready(kube, host.name) != "True", 30)
    finally:
        lab.node_up(host.name)
    wait_until(f"{host.name} Ready again", lambda: node_ready(kube, host.name) == "True", 60)


@pytest.mark.last
@pytest.mark.slow
def test_lab_down_leaves_nothing_and_warm_up_is_quick(lab, kube):
    with lock.exclusive():  # nobody may restart the lab between our down and our checks
        lab.run("down", lock_held=True)
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert "l2lb-" not in names
        assert not lab.paths.state.exists()
        daemons = (*controlplane.COMPONENTS, "l2lb_lab.forwarder", "l2lb_lab.kubelet", "l2lb_agent", "nginx")
        # (other tools may name .lab/kubeconfig in passing; what must be gone are the lab's daemons)
        left = [procs.cmdline(p) for p in procs.pids_mentioning(str(lab.paths.state))]
        assert [c for c in left if any(d in c for d in daemons)] == []
        for pattern in (*controlplane.COMPONENTS, r"l2lb_lab\.(forwarder|kubelet)"):
            assert live_pids(pattern) == [], pattern
        t0 = time.monotonic()
        lab.run("up", lock_held=True)
        elapsed = time.monotonic() - t0
    assert lab.run("status", check=False).returncode == 0
    assert elapsed <= 30, f"warm lab up took {elapsed:.1f}s"
