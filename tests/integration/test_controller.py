"""The controller (issue 3) against the lab's real API server; the controller runs as a subprocess.

Isolation: each test gets its own namespace (ConfigMap `config`, leader Lease, Services) and its
own loadBalancerClass, and starts its controller(s) with that class, so the l2lb a playbook may
have deployed in l2lb-system (which answers to no class and l2lb.io/layer2) never touches these
Services, and these controllers never touch anyone else's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from l2lb_lab.testing import wait_until

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = "address-pools:\n- name: my-ip-space\n  protocol: layer2\n  addresses:\n  - 192.168.1.240/28\n"




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControllerProc:
    """One `python -m l2lb_agent controller` subprocess with its own metrics port and log file."""

    def __init__(self, env: Env, name: str) -> None:
        self.env, self.name, self.port = env, name, free_port()
        self.log = env.tmp / f"{name}.log"
        cmd = [sys.executable, "-m", "l2lb_agent", "controller",
               "--kubeconfig", str(REPO / ".lab/kubeconfig"),
               "--namespace", env.ns, "--loadbalancer-class", env.lb_class, "--claim-unclassed", "false",
               "--metrics-host", "127.0.0.1",
               "--metrics-port", str(self.port), "--pod-name", name, "--log-level", "debug"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line.startswith("l2lb_"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


class Env:
    """A test's namespace, class, controllers and helpers (official client = an independent reader)."""

    def __init__(self, kube: Any, tmp: Path) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.kube, self.tmp = kube, tmp
        self.ns = f"l2lb-ctl-{suffix}"
        self.lb_class = f"test.l2lb.io/{suffix}"
        self.controllers: list[ControllerProc] = []
        kube.core.create_namespace({"metadata": {"name": self.ns}})

    def controller(self, name: str = "ctl-a") -> ControllerProc:
        c = ControllerProc(self, name)
        self.controllers.append(c)
        return c

    def set_config(self, text: str) -> None:
        body = {"metadata": {"name": "config", "namespace": self.ns}, "data": {"config": text}}
        try:
            self.kube.core.replace_namespaced_config_map("config", self.ns, body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.kube.core.create_namespaced_config_map(self.ns, body)

    def service(self, name: str, ports: tuple[int, ...] = (80,), annotations: dict[str, str] | None = None,
                lb_class: str | None = "default", **spec: Any) -> None:
        body = {"metadata": {"name": name, "annotations": annotations or {}},
                "spec": {"type": "LoadBalancer", "selector": {"app": name},
                         "ports": [{"name": f"p{p}", "port": p, "protocol": "TCP"} for p in ports], **spec}}
        cls = self.lb_class if lb_class == "default" else lb_class
        if cls:
            body["spec"]["loadBalancerClass"] = cls
        self.kube.core.create_namespaced_service(self.ns, body)

    def ips(self, name: str) -> list[str]:
        try:
            svc = self.kube.core.read_namespaced_service_status(name, self.ns)
        except ApiException:
            return []
        return [i.ip for i in (svc.status.load_balancer.ingress or []) if i.ip]

    def wait_ips(self, name: str, timeout: float = 20.0) -> list[str]:
        return wait_until(f"an address on {self.ns}/{name}", lambda: self.ips(name), timeout)

    def events(self, name: str, reason: str | None = None) -> list[Any]:
        selector = f"involvedObject.name={name}"
        evs = self.kube.core.list_namespaced_event(self.ns, field_selector=selector).items
        return [e for e in evs if reason is None or e.reason == reason]

    def wait_event(self, name: str, reason: str, contains: str = "", timeout: float = 20.0) -> Any:
        def find() -> Any:
            return next((e for e in self.events(name, reason) if contains in (e.message or "")), None)
        return wait_until(f"Event {reason} on {name} containing {contains!r}", find, timeout)

    def close(self) -> None:
        for c in self.controllers:
            c.stop()
        with contextlib.suppress(ApiException):
            self.kube.core.delete_namespace(self.ns)


@pytest.fixture
def env(kube: Any, tmp_path: Path) -> Iterator[Env]:
    e = Env(kube, tmp_path)
    yield e
    e.close()
    for c in e.controllers:  # shown by pytest only when the test failed
        print(f"----- {c.name} log -----\n{c.logs()[-6000:]}")


# ---------------------------------------------------------------------------------------------

def test_tutorial_first_service_gets_240_with_event_and_metrics(env: Env) -> None:
    env.set_config(TUTORIAL)
    ctl = env.controller()
    env.service("nginx")
    assert env.wait_ips("nginx") == ["192.168.1.240"]
    ev = env.wait_event("nginx", "IPAllocated", "192.168.1.240")
    assert "my-ip-space" in ev.message and ev.type == "Normal"
    svc = env.kube.core.read_namespaced_service_status("nginx", env.ns)
    assert svc.status.load_balancer.ingress[0].ip_mode == "VIP"
    env.service("second")
    assert env.wait_ips("second") == ["192.168.1.241"]
    in_use = 'l2lb_addresses_in_use{pool="my-ip-space"}'
    m = wait_until("pool metrics", lambda: (lambda m: m if m.get(in_use) == 2 else None)(ctl.metrics()))
    assert m['l2lb_addresses_total{pool="my-ip-space"}'] == 16
    assert m["l2lb_config_stale"] == 0 and m["l2lb_controller_is_leader"] == 1


def test_other_classes_are_left_alone(env: Env) -> None:
    env.set_config(TUTORIAL)
    env.controller()
    env.service("theirs", lb_class="someone-else.io/lb")
    env.service("mine")
    assert env.wait_ips("mine") == ["192.168.1.240"]
    time.sleep(1)
    assert env.ips("theirs") == [] and env.events("theirs") == []


def test_requested_addresses_and_errors(env: Env) -> None:
    env.set_config(TUTORIAL)
    env.controller()
    env.service("by-annotation", annotations={"l2lb.io/loadBalancerIPs": "192.168.1.250"})
    env.service("by-metallb-name", annotations={"metallb.universe.tf/loadBalancerIPs": "192.168.1.251"})
    env.service("by-spec", loadBalancerIP="192.168.1.252")
    assert env.wait_ips("by-annotation") == ["192.168.1.250"]
    assert env.wait_ips("by-metallb-name") == ["192.168.1.251"]
    assert env.wait_ips("by-spec") == ["192.168.1.252"]
    env.service("both", annotations={"l2lb.io/loadBalancerIPs": "192.168.1.253"},
                loadBalancerIP="192.168.1.254")
    env.wait_event("both", "AllocationFailed", "both")
    env.service("outside", annotations={"l2lb.io/loadBalancerIPs": "192.168.1.100"})
    env.wait_event("outside", "AllocationFailed", "192.168.1.100 is outside every pool")
    env.service("taken", annotations={"l2lb.io/loadBalancerIPs": "192.168.1.250"})
    ev = env.wait_event("taken", "AllocationFailed", f"in use by {env.ns}/by-annotation")
    assert ev.type == "Warning"
    assert env.ips("both") == [] and env.ips("taken") == []


def test_pool_choice_and_auto_assign_order(env: Env) -> None:
    env.set_config("address-pools:\n"
                   "- {name: manual, protocol: layer2, addresses: [192.168.1.200/30], auto-assign: false}\n"
                   "- {name: first, protocol: layer2, addresses: ['192.168.1.210-192.168.1.210']}\n"
                   "- {name: second, protocol: layer2, addresses: [192.168.1.220/30]}\n")
    env.controller()
    env.service("a")
    assert env.wait_ips("a") == ["192.168.1.210"]
    env.service("b")
    assert env.wait_ips("b") == ["192.168.1.220"]
    env.service("c", annotations={"l2lb.io/address-pool": "manual"})
    assert env.wait_ips("c") == ["192.168.1.200"]
    env.service("d", annotations={"metallb.io/address-pool": "nope"})
    env.wait_event("d", "AllocationFailed", "unknown pool 'nope'")


def test_avoid_buggy_ips_skips_dot_0_and_dot_255(env: Env) -> None:
    env.set_config("address-pools:\n- {name: edge, protocol: layer2, avoid-buggy-ips: true,"
                   " addresses: ['192.168.1.254-192.168.2.1']}\n")
    env.controller()
    env.service("a")
    assert env.wait_ips("a") == ["192.168.1.254"]
    env.service("b")
    assert env.wait_ips("b") == ["192.168.2.1"]
    env.service("c")
    env.wait_event("c", "AllocationFailed", "no free IPv4 address")


def test_sharing_with_a_key(env: Env) -> None:
    env.set_config(TUTORIAL)
    env.controller()
    key = {"l2lb.io/allow-shared-ip": "web"}
    env.service("http", ports=(80,), annotations=key)
    shared = env.wait_ips("http")
    env.service("https", ports=(443,), annotations={"metallb.universe.tf/allow-shared-ip": "web"})
    assert env.wait_ips("https") == shared
    env.service("clash", ports=(80,), annotations={**key, "l2lb.io/loadBalancerIPs": shared[0]})
    env.wait_event("clash", "AllocationFailed", "sharing clash on port 80")
    env.service("nokey", ports=(8080,), annotations={"l2lb.io/loadBalancerIPs": shared[0]})
    env.wait_event("nokey", "AllocationFailed", "in use by")
    env.kube.core.delete_namespaced_service("http", env.ns)
    time.sleep(1)
    assert env.ips("https") == shared  # still held by the other sharer


def test_dual_stack_one_address_per_family_from_one_pool(env: Env) -> None:
    env.set_config("address-pools:\n"
                   "- {name: v4, protocol: layer2, addresses: [192.168.1.240/29]}\n"
                   "- {name: dual, protocol: layer2,"
                   " addresses: [192.168.1.248/29, 'fd00:4c32:6c62::f0/124']}\n")
    env.controller()
    env.service("dual", ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"])
    assert env.wait_ips("dual") == ["192.168.1.248", "fd00:4c32:6c62::f0"]
    env.service("v6", ipFamilyPolicy="SingleStack", ipFamilies=["IPv6"])
    assert env.wait_ips("v6") == ["fd00:4c32:6c62::f1"]
    env.service("v4")
    assert env.wait_ips("v4") == ["192.168.1.240"]
    ev = env.wait_event("dual", "IPAllocated")
    assert "pool dual" in ev.message


def test_release_on_delete_and_type_change_and_pending_gets_freed_ip(env: Env) -> None:
    env.set_config("address-pools:\n- {name: one, protocol: layer2, addresses: [192.168.1.245]}\n")
    ctl = env.controller()
    env.service("holder")
    assert env.wait_ips("holder") == ["192.168.1.245"]
    env.service("waiting")
    env.wait_event("waiting", "AllocationFailed", "no free IPv4 address")
    assert wait_until("failure metric", lambda: ctl.metrics().get(
        'l2lb_allocation_failures_total{reason="pool_exhausted"}'))
    env.kube.core.delete_namespaced_service("holder", env.ns)
    assert env.wait_ips("waiting") == ["192.168.1.245"]
    # type change: LoadBalancer -> ClusterIP releases, and the next one gets it
    env.service("next")
    env.wait_event("next", "AllocationFailed")
    env.kube.core.patch_namespaced_service("waiting", env.ns, {"spec": {"type": "ClusterIP",
                                                                        "loadBalancerClass": None}})
    assert env.wait_ips("next") == ["192.168.1.245"]
    wait_until("status cleared on the ClusterIP Service", lambda: env.ips("waiting") == [])


def test_restart_keeps_addresses_and_out_of_pool_address_is_kept_with_warning(env: Env) -> None:
    env.set_config(TUTORIAL)
    ctl = env.controller()
    for name in ("a", "b", "c"):
        env.service(name)
        env.wait_ips(name)
    env.kube.core.delete_namespaced_service("a", env.ns)
    wait_until("a released", lambda: ctl.metrics().get('l2lb_addresses_in_use{pool="my-ip-space"}') == 2)
    before = {n: env.ips(n) for n in ("b", "c")}
    assert before == {"b": ["192.168.1.241"], "c": ["192.168.1.242"]}
    ctl.stop()
    env.service("d")  # created while no controller runs: must not take b's or c's address
    env.set_config("address-pools:\n- {name: moved, protocol: layer2, addresses: "
                   "['192.168.1.240-192.168.1.241', 192.168.1.250/31]}\n")
    env.controller("ctl-b")
    assert env.wait_ips("d") == ["192.168.1.240"]
    assert {n: env.ips(n) for n in ("b", "c")} == before  # nothing moved, c kept though outside
    ev = env.wait_event("c", "IPOutsidePools", "192.168.1.242")
    assert ev.type == "Warning"
    env.service("e")
    assert env.wait_ips("e") == ["192.168.1.250"]


def test_invalid_config_keeps_last_good(env: Env) -> None:
    env.set_config(TUTORIAL)
    ctl = env.controller()
    env.service("a")
    assert env.wait_ips("a") == ["192.168.1.240"]
    env.set_config(TUTORIAL + "- name: bad\n  protocol: layer2\n  addresses: [192.168.1.250]\n")
    ev = env.wait_event("config", "InvalidConfig", "address-pools[1].addresses[0]")
    assert ev.type == "Warning"
    assert "'192.168.1.250'" in ev.message and "my-ip-space" in ev.message and "bad" in ev.message
    wait_until("stale metric", lambda: ctl.metrics().get("l2lb_config_stale") == 1)
    assert "invalid ConfigMap" in ctl.logs()
    env.service("b")
    assert env.wait_ips("b") == ["192.168.1.241"]  # the last good config still allocates
    assert env.ips("a") == ["192.168.1.240"]
    env.set_config("address-pools:\n- {name: other, protocol: layer2, addresses: [192.168.1.100/30]}\n")
    wait_until("stale cleared", lambda: ctl.metrics().get("l2lb_config_stale") == 0)
    env.service("c")
    assert env.wait_ips("c") == ["192.168.1.100"]  # live config change, no restart


def test_no_configmap_assigns_nothing_and_removes_nothing(env: Env) -> None:
    env.service("pre", annotations={})
    env.kube.core.patch_namespaced_service_status("pre", env.ns, {"status": {"loadBalancer": {
        "ingress": [{"ip": "192.168.1.77", "ipMode": "VIP"}]}}})
    env.service("new")
    ctl = env.controller()
    wait_until("controller up", lambda: ctl.metrics().get("l2lb_controller_is_leader") == 1)
    time.sleep(1.5)
    assert env.ips("pre") == ["192.168.1.77"] and env.ips("new") == []
    assert env.events("new") == []
    env.set_config(TUTORIAL)
    assert env.wait_ips("new") == ["192.168.1.240"]
    ev = env.wait_event("pre", "IPOutsidePools", "192.168.1.77")
    assert ev.type == "Warning" and env.ips("pre") == ["192.168.1.77"]


def test_two_replicas_one_leader_and_failover(env: Env) -> None:
    env.set_config(TUTORIAL)
    a, b = env.controller("replica-a"), env.controller("replica-b")

    def leaders() -> list[ControllerProc] | None:
        found = [c for c in (a, b) if c.metrics().get("l2lb_controller_is_leader") == 1]
        return found if len(found) == 1 and all(c.metrics() for c in (a, b)) else None

    (leader,) = wait_until("exactly one leader", leaders)
    follower = b if leader is a else a
    env.service("one")
    assert env.wait_ips("one") == ["192.168.1.240"]
    time.sleep(1)
    assert len(env.events("one", "IPAllocated")) == 1  # only the leader writes
    leader.stop(signal.SIGKILL)  # no release: the follower must wait for the Lease to expire
    killed = time.monotonic()
    env.service("two")
    assert env.wait_ips("two", timeout=30) == ["192.168.1.241"]
    assert time.monotonic() - killed < 15  # Lease 6 s observed + one renew interval + the write
    assert follower.metrics().get("l2lb_controller_is_leader") == 1
    assert env.ips("one") == ["192.168.1.240"]


def test_sigterm_hands_over_at_once(env: Env) -> None:
    env.set_config(TUTORIAL)
    a = env.controller("first")
    wait_until("first leads", lambda: a.metrics().get("l2lb_controller_is_leader") == 1)
    b = env.controller("second")
    wait_until("second up", lambda: b.metrics().get("l2lb_controller_is_leader") == 0)
    a.stop()
    assert "released Lease" in a.logs()
    wait_until("second leads", lambda: b.metrics().get("l2lb_controller_is_leader") == 1, timeout=5)


def test_bad_flag_is_named() -> None:
    out = subprocess.run([sys.executable, "-m", "l2lb_agent", "controller", "--metrics-port", "99999"],
                         capture_output=True, text=True, cwd=REPO, env={**os.environ}, timeout=30)
    assert out.returncode == 2
    assert "--metrics-port (env L2LB_METRICS_PORT) = '99999'" in out.stderr


def _deny_status_writes(kube: Any, ns: str) -> Any:
    """A ValidatingAdmissionPolicy refusing every Service status write in ns: a real, persistent
    write failure from the real API server. Returns a function that lifts it."""
    import kubernetes.client as k8s

    adm = k8s.AdmissionregistrationV1Api(kube.api_client)
    name = f"l2lb-test-deny-status-{ns}"
    adm.create_validating_admission_policy({
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {
                     "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                                        "resources": ["services/status"]}],
                     "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
                 "validations": [{"expression": "false", "message": "l2lb test: status writes refused"}]}})
    adm.create_validating_admission_policy_binding({
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]}})

    def lift() -> None:
        with contextlib.suppress(ApiException):
            adm.delete_validating_admission_policy_binding(name)
        with contextlib.suppress(ApiException):
            adm.delete_validating_admission_policy(name)
    return lift


def test_persistent_status_write_failure_backs_off_with_one_warning(env: Env) -> None:
    env.set_config(TUTORIAL)
    lift = _deny_status_writes(env.kube, env.ns)
    try:
        env.service("probe", lb_class="nobody.l2lb.io/none")

        def refused() -> bool:
            try:
                env.kube.core.patch_namespaced_service_status("probe", env.ns, {"status": {"loadBalancer": {
                    "ingress": [{"ip": "192.168.1.99", "ipMode": "VIP"}]}}})
            except ApiException as exc:
                return exc.status in (400, 403, 422)
            return False

        wait_until("the policy refuses status writes", refused, timeout=20)
        ctl = env.controller()
        env.service("a")
        ev = env.wait_event("a", "StatusWriteFailed", "status writes refused")
        assert ev.type == "Warning"
        time.sleep(8)  # the old code: one PATCH and one IPAllocated Event per second, forever
        m = ctl.metrics()
        failures = m.get("l2lb_status_write_failures_total", 0)
        assert 2 <= failures <= 6, failures  # retries at about 1, 2, 4 s: 1+2+4 = 7 s
        assert m.get("l2lb_services_write_backoff") == 1
        assert len(env.events("a", "StatusWriteFailed")) == 1
        assert len(env.events("a", "IPAllocated")) <= 1
        assert "Timer" not in ctl.logs()
    finally:
        lift()
    assert env.wait_ips("a", timeout=40) == ["192.168.1.240"]  # next retry at most ~16 s away
    wait_until("backoff cleared", lambda: ctl.metrics().get("l2lb_services_write_backoff") == 0)
    assert len(env.events("a", "StatusWriteFailed")) == 1


def test_link_local_pool_loads_with_a_warning_event(env: Env) -> None:
    env.set_config(TUTORIAL + "- name: ll\n  addresses: [169.254.10.0/30]\n  auto-assign: false\n")
    env.controller()
    ev = env.wait_event("config", "ConfigWarning", "169.254.10.0/30")
    assert ev.type == "Warning" and "link-local" in ev.message and "'ll'" in ev.message
    env.service("a", annotations={"l2lb.io/address-pool": "ll"})
    assert env.wait_ips("a") == ["169.254.10.0"]


def test_hostile_config_is_refused_by_name_and_the_last_good_one_kept(env: Env) -> None:
    env.set_config(TUTORIAL)
    ctl = env.controller()
    env.service("a")
    assert env.wait_ips("a") == ["192.168.1.240"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    env.set_config(bomb)
    ev = env.wait_event("config", "InvalidConfig", "anchors (&a)")
    assert ev.type == "Warning"
    wait_until("stale metric", lambda: ctl.metrics().get("l2lb_config_stale") == 1)
    env.set_config("address-pools:\n" + "".join("  " * i + "- k:\n" for i in range(40)))
    env.wait_event("config", "InvalidConfig", "nested deeper than 16")
    env.set_config(TUTORIAL + "address-pools: []\n")  # a duplicate key must not empty the config
    env.wait_event("config", "InvalidConfig", "duplicate key")
    env.service("b")
    assert env.wait_ips("b") == ["192.168.1.241"]  # the last good config still allocates
    assert ctl.proc.poll() is None and "Traceback" not in ctl.logs()


def test_burst_of_200_costs_one_status_write_each_and_events_trail_at_their_budget(env: Env) -> None:
    """Issue 12: one API write per allocation on the hot path; Events aggregated behind a budget
    (burst 25, then 5/s) yet all of them arrive, none dropped without being counted."""
    n = 200
    env.set_config("address-pools:\n- name: big\n  protocol: layer2\n  addresses: [10.220.0.0/24]\n")
    ctl = env.controller()
    wait_until("the controller ready", lambda: ctl.metrics().get("l2lb_controller_ready") == 1, 30)
    before = ctl.metrics()
    body = {"spec": {"type": "LoadBalancer", "loadBalancerClass": env.lb_class,
                     "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80, "protocol": "TCP"}]}}
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: env.kube.core.create_namespaced_service(
            env.ns, {**body, "metadata": {"name": f"b-{i:03d}"}}), range(n)))

    def assigned() -> bool:
        items = env.kube.core.list_namespaced_service(env.ns).items
        return sum(1 for s in items if s.status.load_balancer.ingress) == n
    wait_until(f"all {n} Services assigned", assigned, 60, every=0.2)
    elapsed = time.monotonic() - started
    during = ctl.metrics()

    def delta(name: str, m: dict[str, float]) -> float:
        return m.get(name, 0.0) - before.get(name, 0.0)
    assert delta("l2lb_controller_status_writes_total", during) == n  # exactly one write per allocation
    written = delta('l2lb_controller_events_written_total{reason="IPAllocated"}', during)
    assert written <= 25 + 5 * elapsed + 2, f"{written} Events in {elapsed:.1f}s: over the budget"
    requests = delta("l2lb_controller_api_requests", during)
    assert requests <= n + written + 4 * elapsed + 5, f"{requests} requests for {n} allocations"
    # all Events arrive, trailing at 5/s: nothing dropped (the backlog holds 1,000), nothing lost
    wait_until("the Event backlog drained", lambda: ctl.metrics().get("l2lb_controller_events_queued") == 0,
               n / 5 + 20)
    after = ctl.metrics()
    assert delta('l2lb_controller_events_written_total{reason="IPAllocated"}', after) == n
    assert delta('l2lb_controller_events_dropped_total{reason="IPAllocated"}', after) == 0
    evs = env.kube.core.list_namespaced_event(env.ns, field_selector="reason=IPAllocated").items
    assert len({e.involved_object.name for e in evs}) == n
