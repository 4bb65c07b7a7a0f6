"""Moving over from MetalLB without renumbering (issue 13 item 5), against the lab's API server.

MetalLB itself does not run: its objects are what matters. The test installs stand-in CRDs
(fixtures/metallb/, the real group/version/names, every field kept), creates IPAddressPools,
L2Advertisements, a BGPAdvertisement, or the legacy ConfigMap, and LoadBalancer Services whose
status already holds MetalLB's addresses (written through the status subresource, as MetalLB's
controller does). It runs playbooks/migrate_from_metallb.yml for real (check mode first, then for
real, then again to show it is idempotent), starts l2lb's controller on the converted pools the way
test_controller.py does, and asserts every Service kept its address and a new Service gets a
free one (so the adopted addresses count as taken).

Isolation: MetalLB's objects live in a namespace of the test's own; the Services carry the test
controller's own loadBalancerClass (as with MetalLB run with a class), so the l2lb deployed in
l2lb-system never touches them. The CRDs are removed at the end of the module.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml
from ansible_run import playbook, recap, refused, succeeded
from kubernetes.client.rest import ApiException
from l2lb_lab.testing import wait_until
from test_controller import Env

from tests.bench import speaker_harness as h

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metallb"
GROUP, VERSION = "metallb.io", "v1beta1"
PLURALS = {"IPAddressPool": "ipaddresspools", "L2Advertisement": "l2advertisements",
           "BGPAdvertisement": "bgpadvertisements"}
NODE1 = {"matchLabels": {"kubernetes.io/hostname": "node1"}}
NODE2 = {"matchLabels": {"kubernetes.io/hostname": "node2"}}
NODE3 = {"matchLabels": {"kubernetes.io/hostname": "node3"}}


@pytest.fixture(scope="module")
def crds(kube: Any) -> Iterator[None]:
    ext = k8s.ApiextensionsV1Api(kube.api_client)
    names = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        names.append(body["metadata"]["name"])
        with contextlib.suppress(ApiException):  # already there from an interrupted run
            ext.create_custom_resource_definition(body)
    for name in names:
        wait_until(f"CRD {name} established", lambda n=name: any(
            c.type == "Established" and c.status == "True"
            for c in (ext.read_custom_resource_definition(n).status.conditions or [])), 30)
    yield
    for name in names:
        with contextlib.suppress(ApiException):
            ext.delete_custom_resource_definition(name)


class MetalLB:
    """A MetalLB namespace of the test's own, an apps namespace, and l2lb's test controller (Env)."""

    def __init__(self, kube: Any, tmp: Path) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.kube, self.tmp = kube, tmp
        self.ns, self.apps = f"metallb-{suffix}", f"apps-{suffix}"
        for ns in (self.ns, self.apps):
            kube.core.create_namespace({"metadata": {"name": ns}})
        self.env = Env(kube, tmp)
        self.custom = k8s.CustomObjectsApi(kube.api_client)

    def create(self, kind: str, name: str, spec: dict, labels: dict | None = None) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                "metadata": {"name": name, "namespace": self.ns, "labels": labels or {}}, "spec": spec}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURALS[kind], body)

    def service(self, name: str, ip: str | None, port: int = 80, annotations: dict | None = None) -> None:
        """A LoadBalancer Service as MetalLB left it: the address in status, written via the API
        (ip None: a new Service, no address yet)."""
        body = {"metadata": {"name": name, "annotations": annotations or {}},
                "spec": {"type": "LoadBalancer", "loadBalancerClass": self.env.lb_class,
                         "selector": {"app": name}, "ports": [{"port": port, "protocol": "TCP"}]}}
        self.kube.core.create_namespaced_service(self.apps, body)
        if ip is None:
            return
        status = {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}
        self.kube.core.patch_namespaced_service_status(name, self.apps, status)

    def ingress(self, name: str) -> list[dict]:
        svc = self.kube.core.read_namespaced_service_status(name, self.apps)
        return [{"ip": i.ip, "ipMode": i.ip_mode} for i in (svc.status.load_balancer.ingress or [])]

    def endpoints(self, name: str) -> None:
        """A ready endpoint on every node (the speakers announce only Services that can take traffic)."""
        eps = [{"addresses": [h.NODE_IP[n]], "nodeName": n, "conditions": {"ready": True}} for n in h.NODES]
        labels = {"kubernetes.io/service-name": name,
                  "endpointslice.kubernetes.io/managed-by": "tests.l2lb.io"}
        self.kube.discovery.create_namespaced_endpoint_slice(self.apps, {
            "metadata": {"name": f"{name}-test", "labels": labels},
            "addressType": "IPv4", "endpoints": eps, "ports": [{"port": 80, "protocol": "TCP"}]})

    def wait_ips(self, name: str) -> list[str]:
        return [i["ip"] for i in wait_until(f"an address on {name}", lambda: self.ingress(name), 20)]

    def migrate(self, dest: Path, *args: str) -> Any:
        extra = {"l2lb_metallb_namespace": self.ns, "l2lb_metallb_dest": str(dest),
                 "l2lb_loadbalancer_class": self.env.lb_class, "l2lb_metallb_allow_refused": True}
        return playbook("playbooks/migrate_from_metallb.yml", *args, extra=extra, tmp=self.tmp)

    def close(self) -> None:
        self.env.close()
        for ns in (self.ns, self.apps):
            with contextlib.suppress(ApiException):
                self.kube.core.delete_namespace(ns)


@pytest.fixture
def metallb(kube: Any, tmp_path: Path, crds: None) -> Iterator[MetalLB]:
    m = MetalLB(kube, tmp_path)
    try:
        yield m
    finally:
        m.close()


def run_playbook(m: MetalLB) -> list[dict]:
    """Check mode writes nothing, the real run writes the file, a second run changes nothing."""
    dest = m.tmp / "group_vars" / "l2lb_pools.yml"
    dest.parent.mkdir()
    checked = m.migrate(dest, "--check", "--diff")
    assert succeeded(checked)["changed"] == 1 and not dest.exists(), checked.stdout[-3000:]
    assert "l2lb_address_pools" in checked.stdout  # the diff shows the file to be written
    assert succeeded(m.migrate(dest))["changed"] == 1
    again = m.migrate(dest)
    assert recap(again)["changed"] == 0 and again.returncode == 0
    return yaml.safe_load(dest.read_text())["l2lb_address_pools"]


def adopt(m: MetalLB, pools: list[dict], held: dict[str, str]) -> None:
    """l2lb's controller on the converted pools: every Service keeps its address, and the controller
    has processed each one (it adds ipMode VIP to the same address)."""
    m.env.set_config(yaml.safe_dump({"address-pools": pools}, sort_keys=False))
    controller = m.env.controller()
    wait_until("the controller ready", lambda: controller.metrics().get("l2lb_controller_ready") == 1, 30)
    for name in held:
        wait_until(f"{name} written by l2lb", lambda n=name: m.ingress(n) and m.ingress(n)[0]["ipMode"], 20)
    time.sleep(1.0)  # a late reassignment would show now
    kept = {name: [i["ip"] for i in m.ingress(name)] for name in held}
    assert kept == {n: [ip] for n, ip in held.items()}, controller.logs()[-3000:]


def answered(m: MetalLB, held: dict[str, str], only: dict[str, set[str]] | None = None) -> None:
    """l2lb's speakers (test speakers of the controller's class and namespace, so they read the
    converted pools) answer ARP for every kept address with exactly one node's MAC, seen from the
    lab's client; `only`: ip -> the nodes the pool's converted node-selectors allow."""
    for name in held:
        m.endpoints(name)
    speakers = h.Cluster(m.env.ns, lb_class=m.env.lb_class)
    speakers.setup()
    try:
        speakers.start_all()
        speakers.wait_ready(h.NODES)
        for ip in sorted(set(held.values())):
            _sent, macs = h.wait_answer(ip, timeout=15)
            assert len(macs) == 1 and macs[0] in h.NODE_OF_MAC, f"{ip} answered by {macs}"
            allowed = (only or {}).get(ip)
            assert allowed is None or h.NODE_OF_MAC[macs[0]] in allowed, f"{ip} answered by {macs}"
    finally:
        speakers.stop_all()


def test_crds_convert_and_every_service_keeps_its_address(metallb: MetalLB) -> None:
    m = metallb
    m.create("IPAddressPool", "web", {"addresses": ["192.168.1.200-192.168.1.207"],
                                      "serviceAllocation": {"priority": 10, "namespaces": [m.apps]}},
             labels={"tier": "web"})
    m.create("IPAddressPool", "db", {"addresses": ["192.168.1.208/29"], "autoAssign": False})
    m.create("IPAddressPool", "uplink", {"addresses": ["192.168.1.216/30"]})
    m.create("IPAddressPool", "spare", {"addresses": ["192.168.1.220/30"]})
    m.create("L2Advertisement", "web-rack1", {"ipAddressPoolSelectors": [{"matchLabels": {"tier": "web"}}],
                                              "nodeSelectors": [NODE1]})
    m.create("L2Advertisement", "web-rack2", {"ipAddressPools": ["web"], "nodeSelectors": [NODE2]})
    m.create("L2Advertisement", "db", {"ipAddressPools": ["db"], "interfaces": ["eth0"],
                                       "nodeSelectors": [NODE3]})
    m.create("BGPAdvertisement", "uplink", {"ipAddressPools": ["uplink"]})
    held = {"req": "192.168.1.200", "web-a": "192.168.1.201", "shared-1": "192.168.1.205",
            "shared-2": "192.168.1.205", "db": "192.168.1.210"}
    m.service("req", held["req"], annotations={"metallb.universe.tf/loadBalancerIPs": held["req"]})
    m.service("web-a", held["web-a"])
    m.service("shared-1", held["shared-1"], 80, {"metallb.universe.tf/allow-shared-ip": "k"})
    m.service("shared-2", held["shared-2"], 443, {"metallb.io/allow-shared-ip": "k"})
    m.service("db", held["db"], annotations={"metallb.universe.tf/address-pool": "db"})
    m.service("on-spare", "192.168.1.221")

    pools = run_playbook(m)
    assert pools == [
        {"name": "db", "protocol": "layer2", "addresses": ["192.168.1.208/29"], "auto-assign": False,
         "avoid-buggy-ips": False, "node-selectors": [NODE3], "interfaces": ["eth0"]},
        {"name": "web", "protocol": "layer2", "addresses": ["192.168.1.200-192.168.1.207"],
         "auto-assign": True, "avoid-buggy-ips": False,
         "service-allocation": {"priority": 10, "namespaces": [m.apps]}, "node-selectors": [NODE1, NODE2]}]
    out = m.migrate(m.tmp / "report.yml").stdout
    for named in ("IPAddressPool uplink: announced over BGP", "IPAddressPool spare: no L2Advertisement",
                  f"{m.apps}/on-spare 192.168.1.221 (pool spare): WOULD NOT keep it"):
        assert named in out, out[-4000:]

    adopt(m, pools, held)
    m.service("new", None)
    assert m.wait_ips("new") == ["192.168.1.202"]  # .200, .201 adopted; .202 is the lowest free
    only = {ip: {"node3"} if name == "db" else {"node1", "node2"} for name, ip in held.items()}
    answered(m, held, only)


LEGACY = """\
peers:
- peer-address: 10.0.0.1
  peer-asn: 64501
  my-asn: 64500
address-pools:
- name: default
  protocol: layer2
  addresses: [192.168.1.224/29]
- name: routed
  protocol: bgp
  addresses: [10.9.0.0/24]
"""


def test_legacy_configmap_converts_and_every_service_keeps_its_address(metallb: MetalLB) -> None:
    m = metallb
    m.kube.core.create_namespaced_config_map(m.ns, {"metadata": {"name": "config"},
                                                    "data": {"config": LEGACY}})
    held = {"one": "192.168.1.225", "two": "192.168.1.224"}  # the oldest would get .224 if not adopted
    for name, ip in held.items():
        m.service(name, ip)

    pools = run_playbook(m)
    assert pools == [{"name": "default", "protocol": "layer2", "addresses": ["192.168.1.224/29"],
                      "auto-assign": True, "avoid-buggy-ips": False}]
    adopt(m, pools, held)
    m.service("three", None)
    assert m.wait_ips("three") == ["192.168.1.226"]
    answered(m, held)


def test_refusals_stop_the_playbook_before_anything_is_written(metallb: MetalLB) -> None:
    m = metallb
    m.create("IPAddressPool", "split", {"addresses": ["192.168.1.200/30"]})
    m.create("L2Advertisement", "rack1", {"nodeSelectors": [NODE1], "interfaces": ["eth0"]})
    m.create("L2Advertisement", "rack2", {"nodeSelectors": [NODE2], "interfaces": ["eth1"]})
    dest = m.tmp / "pools.yml"
    extra = {"l2lb_metallb_namespace": m.ns, "l2lb_metallb_dest": str(dest)}
    result = playbook("playbooks/migrate_from_metallb.yml", extra=extra, tmp=m.tmp)
    refused(result, "Refused: split", "L2Advertisements rack1 (nodes", "differ in both node selectors")
    assert not dest.exists()


def test_no_metallb_configuration_is_one_clear_failure(metallb: MetalLB) -> None:
    extra = {"l2lb_metallb_namespace": metallb.ns}
    result = playbook("playbooks/migrate_from_metallb.yml", extra=extra, tmp=metallb.tmp)
    refused(result, f"no MetalLB configuration in namespace {metallb.ns}")
