"""Pure parts of the lab kubelet: image mapping, env/downward API, status, back-off, proxy rules."""

from __future__ import annotations

import pytest
from l2lb_lab import proxy
from l2lb_lab.kubelet import images as images
from l2lb_lab.kubelet import node as node
from l2lb_lab.kubelet import probe as probe
from l2lb_lab.kubelet import status as st

POD = {
    "metadata": {"name": "speaker-x", "namespace": "l2lb-system", "uid": "0123456789abcdef",
                 "labels": {"app": "l2lb"}, "annotations": {"a.io/b": "c"}},
    "spec": {"nodeName": "node2", "serviceAccountName": "l2lb-speaker", "containers": []},
    "status": {"podIP": "192.168.1.12", "hostIP": "192.168.1.12",
               "podIPs": [{"ip": "192.168.1.12"}, {"ip": "fd00:4c32:6c62::12"}]},
}


@pytest.mark.parametrize(("image", "kind"), [
    ("ghcr.io/l2lb/l2lb-agent:0.1.0", images.ImageKind.AGENT),
    ("l2lb-agent", images.ImageKind.AGENT),
    ("registry.local:5000/x/l2lb-agent@sha256:abc", images.ImageKind.AGENT),
    ("nginx:1.27", images.ImageKind.NGINX),
    ("nginx", images.ImageKind.NGINX),
    ("docker.io/library/nginx:alpine", images.ImageKind.NGINX),
    ("ghcr.io/l2lb/l2lb-agent-debug:1", images.ImageKind.UNSUPPORTED),
    ("busybox:1.36", images.ImageKind.UNSUPPORTED),
    ("nginxinc/nginx-unprivileged:1.27", images.ImageKind.NGINX),
    ("registry.k8s.io/ingress-nginx/controller:v1.12.0", images.ImageKind.UNSUPPORTED),
], ids=lambda v: str(v))
def test_image_kind(image, kind):
    assert images.image_kind(image) is kind


@pytest.mark.parametrize(("text", "expected"), [
    ("--node=$(NODE)", "--node=node2"),
    ("$$(NODE)", "$(NODE)"),
    ("$(MISSING)-x", "$(MISSING)-x"),
    ("a$(NODE)b$(NS)", "anode2bl2lb-system"),
    ("plain", "plain"),
])
def test_expand_follows_kubernetes_rules(text, expected):
    assert images.expand(text, {"NODE": "node2", "NS": "l2lb-system"}) == expected


def test_env_resolves_downward_api_in_order():
    container = {"name": "speaker", "env": [
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "ID", "value": "$(POD)@$(NODE)"},
        {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
    ]}
    def lookup(kind, ns, name, key):
        return {"k": "v"}[key] if (kind, ns, name) == ("configMapKeyRef", "l2lb-system", "cfg") else None
    env = images.resolve_env(container, POD, lookup)
    assert env == {"NODE": "node2", "POD": "speaker-x", "NS": "l2lb-system", "IP": "192.168.1.12",
                   "HOST": "192.168.1.12", "SA": "l2lb-speaker", "APP": "l2lb",
                   "ID": "speaker-x@node2", "CM": "v"}


def test_env_errors_name_the_field():
    bad_path = {"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}
    with pytest.raises(ValueError, match=r"spec\.bogus"):
        images.resolve_env(bad_path, POD)
    missing = {"name": "c", "env": [{"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(ValueError, match="secretKeyRef l2lb-system/s"):
        images.resolve_env(missing, POD, lambda *a: None)


@pytest.mark.parametrize(("container", "tail"), [
    ({"args": ["speaker", "--node-name=$(N)"]}, ["/r/.venv/bin/python", "-m", "l2lb_agent", "speaker",
                                                  "--node-name=n2"]),
    ({"command": ["python3", "-m", "l2lb_agent"], "args": ["controller"]},
     ["/r/.venv/bin/python", "-m", "l2lb_agent", "controller"]),
    ({"command": ["/usr/local/bin/l2lb-agent", "speaker"]}, ["/r/.venv/bin/l2lb-agent", "speaker"]),
    ({"command": ["sh", "-c", "exit 3"]}, ["sh", "-c", "exit 3"]),
], ids=["args-only", "python3-command", "entrypoint", "other-command"])
def test_agent_argv_maps_the_image_to_the_checkout(container, tail):
    assert images.agent_argv({"name": "c", **container}, "/r", {"N": "n2"}) == tail


def test_nginx_config_listens_on_every_port_v4_and_v6():
    spec = {"ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}
    ports = images.container_ports(spec)
    conf = images.nginx_config("/p", ports)
    assert "listen 8080 reuseport;" in conf and "listen [::]:8080 ipv6only=on reuseport;" in conf
    assert "53" not in conf and "daemon off;" in conf and "root /p/html;" in conf
    assert images.container_ports({}) == [80]


def _view(state, **kw):
    return st.ContainerView(name=kw.pop("name", "c"), image="i", state=state, **kw)


@pytest.mark.parametrize(("views", "phase"), [
    ([], "Pending"),
    ([_view(st.waiting("ContainerCreating"))], "Pending"),
    ([_view(st.waiting(images.UNSUPPORTED_REASON))], "Pending"),
    ([_view(st.running("t"))], "Running"),
    ([_view(st.running("t")), _view(st.waiting("ContainerCreating"), name="d")], "Pending"),
    ([_view(st.waiting("CrashLoopBackOff"), restart_count=2, last_state=st.terminated(1, "t", "t"),
            will_restart=True)], "Running"),
    ([_view(st.terminated(0, "t", "t"))], "Succeeded"),
    ([_view(st.terminated(0, "t", "t")), _view(st.terminated(2, "t", "t"), name="d")], "Failed"),
    ([_view(st.terminated(1, "t", "t"), will_restart=True)], "Running"),
], ids=["none", "creating", "unsupported", "running", "one-not-started", "crashloop", "succeeded",
        "failed", "restarting"])
def test_pod_phase(views, phase):
    assert st.pod_phase(views) == phase


def test_status_ready_conditions_keep_transition_time():
    view = _view(st.running("t0"), ready=True)
    first = st.pod_status(views=[view], ipv4="192.168.1.11", ipv6="fd00::11", start_time="t0", now="t1",
                          previous_conditions=None)
    conds = {c["type"]: c for c in first["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["ContainersReady"]["status"] == "True"
    assert first["podIPs"] == [{"ip": "192.168.1.11"}, {"ip": "fd00::11"}]
    assert first["hostIP"] == first["podIP"] == "192.168.1.11"
    again = st.pod_status(views=[view], ipv4="192.168.1.11", ipv6="fd00::11", start_time="t0", now="t2",
                          previous_conditions=first["conditions"])
    assert again["conditions"] == first["conditions"]
    unready = st.pod_status(views=[_view(st.running("t0"))], ipv4="192.168.1.11", ipv6="", start_time="t0",
                            now="t3", previous_conditions=first["conditions"])
    ready = {c["type"]: c for c in unready["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["lastTransitionTime"] == "t3"
    assert ready["message"] == "containers with unready status: [c]"


def test_terminated_reports_signal_and_reason():
    assert st.terminated(137, "a", "b")["terminated"]["signal"] == 9
    assert st.terminated(0, "a", "b")["terminated"]["reason"] == "Completed"
    assert st.exit_code_of(-15) == 143 and st.exit_code_of(3) == 3


def test_backoff_doubles_up_to_the_cap():
    assert [st.backoff_seconds(n, 2, 60) for n in range(0, 8)] == [0, 2, 4, 8, 16, 32, 60, 60]


def test_prober_thresholds():
    spec = {"periodSeconds": 5, "failureThreshold": 2, "initialDelaySeconds": 3}
    p = probe.Prober(spec, 100.0, initial=False)
    assert not p.due(102.9) and p.due(103.0)
    assert p.record(True, 103) is True  # successThreshold 1
    assert p.next_at == 108
    assert p.record(False, 108) is True  # one failure is not enough
    assert p.record(False, 113) is False


def test_node_status_is_ready_and_dual_stack():
    ident = node.NodeIdentity(name="node1", ipv4="192.168.1.11", ipv6="fd00:4c32:6c62::11")
    status = node.node_status(ident, "now", {"Ready": "earlier"})
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["lastTransitionTime"] == "earlier"
    assert all(conds[k]["status"] == "False" for k in ("MemoryPressure", "DiskPressure", "PIDPressure",
                                                       "NetworkUnavailable"))
    assert [a["address"] for a in status["addresses"]] == ["192.168.1.11", "fd00:4c32:6c62::11", "node1"]
    assert status["nodeInfo"]["containerRuntimeVersion"] == "lab://0.1"
    runc = node.NodeIdentity(name="node1", ipv4="192.168.1.11", ipv6="", runtime="runc://1.1.5")
    assert node.node_status(runc, "now", {})["nodeInfo"]["containerRuntimeVersion"] == "runc://1.1.5"
    assert status["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    assert status["allocatable"]["pods"] == "110"


def _svc(name, ips, policy="Cluster", port=80, target=80):
    return {"metadata": {"namespace": "d", "name": name},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy,
                     "ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def _slice(service, endpoints, port=80, family="IPv4"):
    return {"metadata": {"namespace": "d", "name": f"{service}-x",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": family, "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [addr], "nodeName": node_name, "conditions": {"ready": ready}}
                          for addr, node_name, ready in endpoints]}


@pytest.mark.parametrize(("services", "slices", "ips", "relays"), [
    ([_svc("a", ["192.168.1.250"])], [_slice("a", [("192.168.1.11", "node1", True)])],
     {"192.168.1.250"}, {}),
    ([_svc("a", ["192.168.1.250"])], [_slice("a", [("192.168.1.11", "node1", False)])], set(), {}),
    ([_svc("a", ["192.168.1.250"], port=8080)], [_slice("a", [("192.168.1.11", "node1", True)])],
     {"192.168.1.250"}, {("192.168.1.250", 8080): (("127.0.0.1", 80),)}),
    ([_svc("a", ["192.168.1.250"])], [_slice("a", [("192.168.1.12", "node2", True)])],
     {"192.168.1.250"}, {("192.168.1.250", 80): (("192.168.1.12", 80),)}),
    ([_svc("a", ["192.168.1.250"], policy="Local")], [_slice("a", [("192.168.1.12", "node2", True)])],
     set(), {}),
    ([_svc("a", [])], [_slice("a", [("192.168.1.11", "node1", True)])], set(), {}),
    ([_svc("a", ["fd00:4c32:6c62:0::f0"], port=81)],
     [_slice("a", [("fd00:4c32:6c62::11", "node1", True)], family="IPv6")],
     {"fd00:4c32:6c62::f0"}, {("fd00:4c32:6c62::f0", 81): (("::1", 80),)}),
    ([{**_svc("a", ["192.168.1.250"]), "spec": {"type": "ClusterIP", "ports": []}}],
     [_slice("a", [("192.168.1.11", "node1", True)])], set(), {}),
], ids=["local", "local-unready", "port-differs", "cluster-remote", "local-policy-remote", "no-ingress",
        "ipv6-canonical", "not-lb"])
def test_proxy_wanted(services, slices, ips, relays):
    assert proxy.wanted(services, slices, "node1") == (ips, relays)
