"""Fixtures for tests against the lab (docs/internals.md "Lab"); every test here is marked `lab`.

- lab:          starts the lab or reuses it (`lab up`), leaves it running; a LabHandle with
                kubectl(), node_down/node_up/api_down/api_up(NODE), paths, kubeconfig.
- kube:         kubernetes clients on .lab/kubeconfig: .api_client, .core, .apps, .discovery,
                .coordination, .rbac, .authn, .events.
- netns_run:    netns_run(ns, *cmd, timeout=30, check=False) -> CompletedProcess (text).
- arp_who_has:  arp_who_has(ip, count=3) -> sorted MACs answering ARP, seen from l2lb-client.
- ndp_who_has:  ndp_who_has(ip6, count=3) -> sorted MACs answering NDP, seen from l2lb-client.
- http_get:     http_get(url, timeout=5) -> HttpResult(status|None, body, error), curl in l2lb-client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import kubernetes.config
import pytest
from l2lb_lab import testing
from l2lb_lab import topology as topo

INTEGRATION_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.lab)


SPEAKER_LOG_LINES = 25  # per speaker, in a failed test's report


STARTED = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[STARTED] = time.time()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test's report ends with what the lab's speakers logged (INFO and above) while it
    ran: a timing fault seen once in CI can then be read, not guessed."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        text = speaker_logs_since(item.stash.get(STARTED, call.start))
        if text:
            report.sections.append(("speaker logs (INFO and above, last lines)", text))


def speaker_logs_since(start: float) -> str:
    out = []
    for path in sorted(topo.Paths(topo.repo_root()).state.glob("nodes/*/pods/*/speaker.log")):
        if path.stat().st_mtime < start:
            continue
        with path.open("rb") as log:  # the tail only: a debug log grows by megabytes
            log.seek(max(0, path.stat().st_size - 4 * 2**20))
            tail = log.read().decode(errors="replace").splitlines()
        lines = [line for line in tail if " DEBUG " not in line]
        out += [f"== {path.parent.parent.parent.name} {path.parent.name}", *lines[-SPEAKER_LOG_LINES:]]
    return "\n".join(out)


@dataclass(frozen=True)
class Kube:
    """Typed API groups sharing one ApiClient (admin credentials)."""

    api_client: k8s.ApiClient
    core: k8s.CoreV1Api
    apps: k8s.AppsV1Api
    discovery: k8s.DiscoveryV1Api
    coordination: k8s.CoordinationV1Api
    rbac: k8s.RbacAuthorizationV1Api
    authn: k8s.AuthenticationV1Api
    events: k8s.EventsV1Api


@pytest.fixture(scope="session")
def lab() -> testing.LabHandle:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces); run them as root")
    handle = testing.LabHandle(topo.Paths(topo.repo_root()))
    try:
        handle.run("up", timeout=600)
    except testing.LabCommandError as exc:
        pytest.fail(f"the lab did not come up:\n{exc}")
    return handle


@pytest.fixture(scope="session")
def kube(lab: testing.LabHandle) -> Kube:
    api = kubernetes.config.new_client_from_config(config_file=lab.kubeconfig)
    return Kube(api_client=api, core=k8s.CoreV1Api(api), apps=k8s.AppsV1Api(api),
                discovery=k8s.DiscoveryV1Api(api), coordination=k8s.CoordinationV1Api(api),
                rbac=k8s.RbacAuthorizationV1Api(api), authn=k8s.AuthenticationV1Api(api),
                events=k8s.EventsV1Api(api))


@pytest.fixture(scope="session")
def netns_run(lab: testing.LabHandle) -> Callable[..., object]:
    return testing.netns_run


@pytest.fixture(scope="session")
def arp_who_has(lab: testing.LabHandle) -> Callable[..., list[str]]:
    def who(ip: str, count: int = 3, wait: float = 0.5) -> list[str]:
        return sorted(testing.who_has("arp", ip, count=count, wait=wait))
    return who


@pytest.fixture(scope="session")
def ndp_who_has(lab: testing.LabHandle) -> Callable[..., list[str]]:
    def who(ip: str, count: int = 3, wait: float = 0.5) -> list[str]:
        return sorted(testing.who_has("ndp", ip, count=count, wait=wait))
    return who


@pytest.fixture(scope="session")
def http_get(lab: testing.LabHandle) -> Callable[..., testing.HttpResult]:
    return testing.http_get


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of the test's own holding one veth pair, va <-> vb, both up (no lab)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    name = f"l2lb-t-{uuid.uuid4().hex[:6]}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        for dev in ("va", "vb", "lo"):
            _run("ip", "-n", name, "link", "set", dev, "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture
def in_netns(netns: str) -> Callable[[str, Any], Any]:
    """run(script, payload): the Python script run in `netns` from the repository root, payload as
    JSON on its standard input; returns what it prints, as JSON."""
    def run(script: str, payload: Any) -> Any:
        out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script],
                             input=json.dumps(payload), capture_output=True, text=True, timeout=60,
                             cwd=INTEGRATION_DIR.parents[1])
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return run
