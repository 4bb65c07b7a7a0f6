"""Who may use a pool, and where it can be announced (issue 13 items 1-3, controller side), against
the lab's real API server: the controller runs as a subprocess (test_controller's Env), Services
live in namespaces of their own, Namespace labels and speakers' registration Leases are real
objects. Checked: a namespace refusal and its AllocationFailed Event, a namespace-selector admit
(also after a relabel), a Service-selector refusal, priority over config order, NoEligibleNode,
NoMatchingSubnet with the gauge l2lb_pool_without_subnet.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from l2lb_lab.testing import wait_until
from test_controller import Env

pytestmark = pytest.mark.lab


class Tenants:
    """Three namespaces a, b, c (c labelled for the namespace selector) around an Env."""

    def __init__(self, env: Env) -> None:
        self.env, self.suffix = env, uuid.uuid4().hex[:6]
        self.ns = {n: f"l2lb-tenant-{n}-{self.suffix}" for n in ("a", "b", "c")}
        for n, name in self.ns.items():
            labels = {"l2lb-test-team": self.suffix} if n == "c" else {}
            env.kube.core.create_namespace({"metadata": {"name": name, "labels": labels}})

    def service(self, tenant: str, name: str, labels: dict[str, str] | None = None,
                **annotations: str) -> None:
        body = {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations},
                "spec": {"type": "LoadBalancer", "loadBalancerClass": self.env.lb_class,
                         "selector": {"app": name},
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
        self.env.kube.core.create_namespaced_service(self.ns[tenant], body)

    def ips(self, tenant: str, name: str) -> list[str]:
        svc = self.env.kube.core.read_namespaced_service_status(name, self.ns[tenant])
        return [i.ip for i in (svc.status.load_balancer.ingress or []) if i.ip]

    def wait_ips(self, tenant: str, name: str) -> list[str]:
        return wait_until(f"an address on {tenant}/{name}", lambda: self.ips(tenant, name), 20)

    def wait_event(self, tenant: str, name: str, reason: str, contains: str) -> Any:
        def find() -> Any:
            evs = self.env.kube.core.list_namespaced_event(
                self.ns[tenant], field_selector=f"involvedObject.name={name}").items
            return next((e for e in evs if e.reason == reason and contains in (e.message or "")), None)
        return wait_until(f"Event {reason} on {tenant}/{name} containing {contains!r}", find, 20)

    def close(self) -> None:
        for name in self.ns.values():
            with contextlib.suppress(ApiException):
                self.env.kube.core.delete_namespace(name)


@pytest.fixture
def env(kube: Any, tmp_path: Path) -> Iterator[Env]:
    e = Env(kube, tmp_path)
    yield e
    e.close()
    for c in e.controllers:  # shown by pytest only when the test failed
        print(f"----- {c.name} log -----\n{c.logs()[-6000:]}")


@pytest.fixture
def tenants(env: Env) -> Iterator[Tenants]:
    t = Tenants(env)
    yield t
    t.close()


def pools(t: Tenants) -> str:
    # config order: rest, web, labelled, team-a; priorities put team-a (1) and labelled (2) first
    return f"""address-pools:
- name: rest
  addresses: [192.168.1.230/31]
- name: web
  addresses: [192.168.1.220/31]
  auto-assign: false
  service-allocation:
    service-selectors: [{{matchLabels: {{tier: web}}}}]
- name: labelled
  addresses: [192.168.1.210/31]
  service-allocation:
    priority: 2
    namespace-selectors: [{{matchLabels: {{l2lb-test-team: "{t.suffix}"}}}}]
- name: team-a
  addresses: [192.168.1.200/31]
  service-allocation:
    priority: 1
    namespaces: [{t.ns['a']}]
"""


def test_who_may_use_a_pool(env: Env, tenants: Tenants) -> None:
    t = tenants
    env.set_config(pools(t))
    env.controller()
    # priority beats config order: team-a (priority 1) for a, labelled (2) for c; b gets neither
    t.service("a", "first")
    assert t.wait_ips("a", "first") == ["192.168.1.200"]
    t.service("c", "selected")
    assert t.wait_ips("c", "selected") == ["192.168.1.210"]
    t.service("b", "plain")
    assert t.wait_ips("b", "plain") == ["192.168.1.230"]
    # a namespace refusal, by pool and by address, each with the rule in its Event
    t.service("b", "asks-pool", **{"l2lb.io/address-pool": "team-a"})
    ev = t.wait_event("b", "asks-pool", "AllocationFailed", "pool 'team-a' refuses the Service")
    assert f"namespace {t.ns['b']} is not in service-allocation.namespaces [{t.ns['a']}]" in ev.message
    assert ev.type == "Warning"
    t.service("b", "asks-ip", **{"l2lb.io/loadBalancerIPs": "192.168.1.201"})
    t.wait_event("b", "asks-ip", "AllocationFailed",
                 "requested 192.168.1.201 is in pool 'team-a', which refuses")
    # a Service-selector refusal, and its admit
    t.service("b", "not-web", **{"l2lb.io/address-pool": "web"})
    t.wait_event("b", "not-web", "AllocationFailed",
                 "match no service-allocation.service-selectors [tier=web]")
    t.service("b", "web", labels={"tier": "web"}, **{"l2lb.io/address-pool": "web"})
    assert t.wait_ips("b", "web") == ["192.168.1.220"]
    assert t.ips("b", "asks-pool") == [] and t.ips("b", "asks-ip") == [] and t.ips("b", "not-web") == []


def test_a_relabelled_namespace_is_admitted_without_touching_its_service(env: Env, tenants: Tenants) -> None:
    t = tenants
    env.set_config(pools(t))
    env.controller()
    t.service("b", "waits", **{"l2lb.io/address-pool": "labelled"})
    t.wait_event("b", "waits", "AllocationFailed", "matching no service-allocation.namespace-selectors")
    env.kube.core.patch_namespace(t.ns["b"], {"metadata": {"labels": {"l2lb-test-team": t.suffix}}})
    assert t.wait_ips("b", "waits") == ["192.168.1.210"]


def test_no_eligible_node_and_no_matching_subnet_are_said_once(env: Env) -> None:
    env.set_config("address-pools:\n"
                   "- name: nowhere\n  addresses: [192.168.1.240/31]\n  auto-assign: false\n"
                   "  node-selectors: [{matchLabels: {l2lb-test-rack: none}}]\n"
                   "- name: lan\n  addresses: [192.168.1.250/31]\n  auto-assign: false\n"
                   "- name: far\n  addresses: [10.123.0.0/31]\n"
                   "  service-allocation: {namespaces: [" + env.ns + "]}\n")
    # a speaker's registration as the speakers publish it: node1 answers on 192.168.1.0/24 only
    env.kube.coordination.create_namespaced_lease(env.ns, {
        "metadata": {"name": "l2lb-speaker-node1", "labels": {"l2lb.io/role": "speaker-heartbeat",
                                                             "l2lb.io/node": "node1"},
                     "annotations": {"l2lb.io/subnets": "192.168.1.0/24,fd00:4c32:6c62::/64"}},
        "spec": {"holderIdentity": "node1"}})
    ctl = env.controller()
    env.service("pinned", annotations={"l2lb.io/address-pool": "nowhere"})
    assert env.wait_ips("pinned") == ["192.168.1.240"]
    ev = env.wait_event("pinned", "NoEligibleNode", "node-selectors of pool 'nowhere'")
    assert "l2lb-test-rack=none" in ev.message and ev.type == "Warning"
    env.service("far")
    assert env.wait_ips("far") == ["10.123.0.0"]
    ev = env.wait_event("far", "NoMatchingSubnet", "10.123.0.0 of pool 'far'")
    assert "seen: 192.168.1.0/24, fd00:4c32:6c62::/64" in ev.message
    far = 'l2lb_pool_without_subnet{pool="far"}'
    gauge = wait_until("the gauge", lambda: (lambda m: m if far in m else None)(ctl.metrics()))
    assert gauge['l2lb_pool_without_subnet{pool="far"}'] == 1
    assert gauge['l2lb_pool_without_subnet{pool="lan"}'] == 0
    assert gauge['l2lb_pool_without_subnet{pool="nowhere"}'] == 1  # no speaker may announce it at all
    # once per Service: a change of the Service (a label) or of the Lease sends no second Event
    env.kube.core.patch_namespaced_service("far", env.ns, {"metadata": {"labels": {"touched": "yes"}}})
    env.kube.coordination.patch_namespaced_lease("l2lb-speaker-node1", env.ns, {
        "metadata": {"annotations": {"l2lb.io/subnets": "192.168.1.0/24"}}})
    time.sleep(2)  # the controller handles both changes within milliseconds
    assert ctl.metrics()['l2lb_pool_without_subnet{pool="far"}'] == 1
    assert len(env.events("far", "NoMatchingSubnet")) == 1
    assert len(env.events("pinned", "NoEligibleNode")) == 1
