"""Drive test speakers in the lab: Services, EndpointSlices, speaker processes, client probes.

Shared by tests/integration/test_speaker.py and tests/bench/speaker_bench.py. Speakers run as
`python -m l2lb_agent speaker` subprocesses inside l2lb-nodeN with the admin kubeconfig, their
Leases in their own namespace, a loadBalancerClass of their own (CLASS) and no claim on class-less
Services, so they never touch what a deployed l2lb announces, and a deployed l2lb never announces
these Services. The
Services' status is written here (no controller needed); EndpointSlices are written by hand
(Services without selector), which is how the tests choose ready endpoints per node.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2lb_agent import kube
from l2lb_agent.speaker_watch import SECRETS

from tests.bench import PROBE_STARTED

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))
from ansible_collections.l2lb.layer2.plugins.module_utils import render

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv/bin/python")
KUBECONFIG = str(REPO / ".lab/kubeconfig")
CLASS = "test.l2lb.io/speaker"
NODES = ("node1", "node2", "node3")  # what the tests use; a larger lab (`lab up --nodes N`) has more
NODE_IP = {f"node{i}": f"192.168.1.{10 + i}" for i in range(1, 61)}  # the lab's topology, up to 60 nodes
MAC = {f"node{i}": f"02:4c:32:00:00:{10 + i:02d}" for i in range(1, 61)}
NODE_OF_MAC = {v: k for k, v in MAC.items()}


def client() -> kube.KubeClient:
    return kube.KubeClient.from_config(KUBECONFIG)


CRDS = kube.Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition")


def ensure_crd(api: kube.KubeClient) -> None:
    """The IPAnnouncement CRD as the role installs it, Established (a deploy may have installed it
    already): speakers then write their IPAnnouncements as they do when deployed."""
    crd = render.announcements_crd()
    with contextlib.suppress(kube.AlreadyExists):
        api.create(CRDS, crd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conditions = (api.get(CRDS, crd["metadata"]["name"]).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise TimeoutError("the IPAnnouncement CRD is not Established after 30 s")


@dataclass
class Cluster:
    """A namespace of test Services and the speakers announcing them."""

    ns: str
    api: kube.KubeClient = field(default_factory=client)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)  # node -> speaker process
    logdir: Path = field(default_factory=lambda: REPO / ".lab/logs")
    extra_args: tuple[str, ...] = ()
    lb_class: str = CLASS  # speakers of two Clusters with different classes never see each other's Services

    # -- Kubernetes objects ----------------------------------------------------------------

    def setup(self) -> None:
        # Speakers left by an interrupted run of this namespace would answer with other keys.
        subprocess.run(["pkill", "-f", f"l2lb_agent speaker .*--namespace {self.ns} "], check=False)
        with contextlib.suppress(kube.AlreadyExists):
            self.api.create(kube.NAMESPACES, {"metadata": {"name": self.ns}})
        self.set_keys([secrets.token_urlsafe(32)])

    def set_keys(self, keys: list[str]) -> None:
        """The heartbeat keyring of this cluster's speakers (Secret l2lb-memberlist)."""
        data = {"keys": base64.b64encode(("\n".join(keys) + "\n").encode()).decode()}
        body = {"metadata": {"name": "l2lb-memberlist", "namespace": self.ns}, "type": "Opaque", "data": data}
        try:
            self.api.create(SECRETS, body, self.ns)
        except kube.AlreadyExists:
            self.api.patch(SECRETS, "l2lb-memberlist", {"data": data}, self.ns)

    def teardown(self) -> None:
        self.stop_all()
        with contextlib.suppress(kube.NotFound):
            self.api.delete(kube.NAMESPACES, self.ns)

    def service(self, name: str, ips: Iterable[str], endpoints: Iterable[str] = NODES, *,
                local: bool = False, ready: bool = True) -> None:
        """Create/update a LoadBalancer Service with status ips and ready endpoints on nodes."""
        spec: dict[str, Any] = {"type": "LoadBalancer", "loadBalancerClass": self.lb_class,
                                "externalTrafficPolicy": "Local" if local else "Cluster",
                                "ports": [{"port": 80, "protocol": "TCP"}]}
        body = {"metadata": {"name": name, "namespace": self.ns}, "spec": spec}
        with contextlib.suppress(kube.AlreadyExists):
            self.api.create(kube.SERVICES, body, self.ns)
        self.endpoints(name, endpoints, ready=ready)
        status = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}
        self.api.patch_status(kube.SERVICES, name, {"status": status}, self.ns)

    def endpoints(self, name: str, nodes: Iterable[str], *, ready: bool = True) -> None:
        eps = [{"addresses": [NODE_IP[n]], "nodeName": n, "conditions": {"ready": ready}} for n in nodes]
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-test", "namespace": self.ns,
                             "labels": {"kubernetes.io/service-name": name,
                                        "endpointslice.kubernetes.io/managed-by": "tests.l2lb.io"}},
                "addressType": "IPv4", "endpoints": eps, "ports": [{"port": 80, "protocol": "TCP"}]}
        try:
            self.api.create(kube.ENDPOINTSLICES, body, self.ns)
        except kube.AlreadyExists:
            self.api.patch(kube.ENDPOINTSLICES, f"{name}-test", {"endpoints": eps}, self.ns)

    def delete_service(self, name: str) -> None:
        with contextlib.suppress(kube.NotFound):
            self.api.delete(kube.SERVICES, name, self.ns)
        with contextlib.suppress(kube.NotFound):
            self.api.delete(kube.ENDPOINTSLICES, f"{name}-test", self.ns)

    # -- speaker processes -------------------------------------------------------------------

    def start(self, node: str, *, log_level: str = "info", metrics_port: int = 0) -> subprocess.Popen:
        self.stop(node)
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_of(node), "ab")  # noqa: SIM115
        cmd = ["ip", "netns", "exec", f"l2lb-{node}", PY, "-m", "l2lb_agent", "speaker",
               "--kubeconfig", KUBECONFIG, "--namespace", self.ns, "--node-name", node,
               "--loadbalancer-class", self.lb_class, "--metrics-port", str(metrics_port),
               "--metrics-host", NODE_IP.get(node, "127.0.0.1"), "--log-level", log_level,
               "--interfaces", "eth0", "--claim-unclassed", "false", *self.extra_args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("L2LB_")}
        self.procs[node] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        log.close()
        return self.procs[node]

    def start_all(self, nodes: Iterable[str] = NODES) -> None:
        for node in nodes:
            self.start(node)

    def kill(self, node: str, sig: int) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, sig)  # the session: `ip netns exec` execs python, so pid is python

    def stop(self, node: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        proc = self.procs.pop(node, None)
        if proc is None:
            return None
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def stop_all(self) -> None:
        for node in list(self.procs):
            self.stop(node)

    def alive(self, node: str) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def log_of(self, node: str) -> Path:
        return self.logdir / f"test-speaker-{self.ns}-{node}.log"

    def live_view(self, node: str) -> set[str]:
        """The live speakers node's speaker last logged (its "live speakers:" line)."""
        try:
            lines = self.log_of(node).read_text(errors="replace").splitlines()
        except OSError:
            return set()
        for line in reversed(lines):
            if "live speakers: " in line:
                names = line.split("live speakers: ", 1)[1].split(",")
                return {n.strip() for n in names if n.strip()} - {"none"}
            if "speaker " in line and "heartbeat" in line:
                return set()  # this run has not logged a view yet
        return set()

    def takeover_phases(self, node: str, since: float) -> tuple[float, float] | None:
        """From node's log after `since` (time.time()): (seconds until it logged a new live set,
        seconds its "live set applied" line says the answers took after that); None if missing."""
        seen = applied = None
        try:
            lines = self.log_of(node).read_text(errors="replace").splitlines()
        except OSError:
            return None
        for line in lines:
            at = log_time(line)
            if at is None or at < since:
                continue
            if seen is None and "live speakers: " in line:
                seen = at - since
            elif seen is not None and (m := _IN_PLACE.search(line)):
                applied = float(m.group(1)) / 1000
                break
        return (seen, applied) if seen is not None and applied is not None else None

    def ensure_up(self, nodes: Iterable[str] = NODES) -> Cluster:
        """Restart any of nodes' speakers a test left dead, then wait_ready; returns self."""
        nodes = tuple(nodes)
        for node in nodes:
            if not self.alive(node):
                self.start(node)
        self.wait_ready(nodes)
        return self

    def wait_ready(self, nodes: Iterable[str], timeout: float = 60.0) -> None:
        """Until every node's speaker runs and sees every one of nodes live (LAN membership)."""
        want = set(nodes)
        deadline = time.monotonic() + timeout
        while True:
            views = {n: self.live_view(n) for n in want}
            if all(self.alive(n) and views[n] >= want for n in want):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"speakers {sorted(want)} do not all see each other: {views}")
            time.sleep(0.1)


@contextlib.contextmanager
def running(ns: str, nodes: Iterable[str] = NODES) -> Iterator[Cluster]:
    """A Cluster with a speaker on each of nodes, every one seeing the others; torn down after."""
    c = Cluster(ns)
    c.setup()
    try:
        c.start_all(nodes)
        c.wait_ready(nodes)
        yield c
    finally:
        c.teardown()


# -- client-side probing -------------------------------------------------------------------------


def probe_cmd(mode: str, ip: str, netns: str = "l2lb-client", **kw: Any) -> list[str]:
    """The probe tool run in netns (the lab's client by default) with --key=value options."""
    args = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    return ["ip", "netns", "exec", netns, PY, "-m", "tests.bench.speaker_probe", mode,
            "--ip", ip, *args]


def run_probe(mode: str, ip: str, timeout: float = 150.0, **kw: Any) -> Any:
    out = subprocess.run(probe_cmd(mode, ip, **kw), capture_output=True, text=True, timeout=timeout,
                         cwd=REPO, check=True)
    return json.loads(out.stdout)


@contextlib.contextmanager
def probing(ip: str, duration: float, interval: float = 0.02,
            netns: str = "l2lb-client") -> Iterator[dict[str, Any]]:
    """Probe ip from netns in the background for duration; the dict gets "probes" when the block
    ends. The block starts once the first request is on the wire (the probe's start-up, 0.3-0.7 s,
    must not count in what the block measures)."""
    proc = subprocess.Popen(probe_cmd("probe", ip, netns, interval=interval, duration=duration), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result: dict[str, Any] = {}
    try:
        _wait_started(proc, timeout=15.0)
        time.sleep(3 * interval)  # a few probes before whatever the block does
        yield result
    finally:
        out, err = proc.communicate(timeout=duration + 30)
        if proc.returncode != 0:
            raise RuntimeError(f"probe failed ({proc.returncode}): {err[-2000:]}")
        result["probes"] = json.loads(out)


def _wait_started(proc: subprocess.Popen, timeout: float) -> None:
    """Read the probe's stderr until it says it sends (other lines are kept for the error)."""
    assert proc.stderr is not None
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        if not select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        line = proc.stderr.readline()
        if not line:  # it exited
            break
        if line.strip() == PROBE_STARTED:
            return
        seen.append(line)
    proc.kill()
    raise RuntimeError(f"probe did not start within {timeout:g} s: {''.join(seen)[-2000:]}")


def wait_answer(ip: str, timeout: float = 10.0, interval: float = 0.02) -> tuple[float, list[str]]:
    """Probe until someone answers: (monotonic send time of the first answered probe, MACs)."""
    for t, macs in run_probe("probe", ip, interval=interval, duration=timeout, until_answer=1):
        if macs:
            return t, macs
    raise TimeoutError(f"nobody answered ARP/NDP for {ip} within {timeout}s")


def unanswered(probes: list[list[Any]]) -> list[float]:
    """Send times of the probes nobody answered."""
    return [t for t, macs in probes if not macs]


def taken_back_gap(probes: list[list[Any]], start: float, mac: str) -> float | None:
    """The longest unanswered spell from start, if mac answers the last answered probe (the owner
    took its address back within the probing); None if it did not."""
    answered = [macs for _, macs in probes if macs]
    return longest_silence(probes, start) if answered and answered[-1] == [mac] else None


def double_windows(probes: list[list[Any]]) -> int:
    """Probes that two or more MACs answered."""
    return sum(1 for _, macs in probes if len(macs) > 1)


_LOG_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z ")
_IN_PLACE = re.compile(r"live set applied: .*answers in place (\d+) ms")


def log_time(line: str) -> float | None:
    """time.time() of an agent log line (its UTC stamp, to the millisecond); None: no stamp."""
    m = _LOG_TIME.match(line)
    if m is None:
        return None
    *fields, ms = map(int, m.groups())
    return calendar.timegm((*fields, 0, 0, 0)) + ms / 1000


def _first_other_answer(probes: list[list[Any]], event: float, old_mac: str) -> tuple[float, str] | None:
    """(send time, MAC) of the first probe after event answered without old_mac (None: never)."""
    for t, macs in probes:
        if t >= event and macs and old_mac not in macs:
            return t, macs[0]
    return None


def first_heir(probes: list[list[Any]], event: float, old_mac: str) -> str | None:
    """The node whose MAC first answered after event, other than old_mac's (None: nobody)."""
    found = _first_other_answer(probes, event, old_mac)
    return NODE_OF_MAC.get(found[1]) if found is not None else None


def takeover(probes: list[list[Any]], event: float, old_mac: str) -> float | None:
    """Seconds from event to the first probe answered by a MAC other than old_mac (None: never)."""
    found = _first_other_answer(probes, event, old_mac)
    return found[0] - event if found is not None else None


def owner_now(ip: str, tries: int = 3, netns: str = "l2lb-client") -> list[str]:
    """MACs answering ip now (a short probe from netns)."""
    macs: set[str] = set()
    for _, m in run_probe("probe", ip, interval=0.05, duration=0.05 * tries, netns=netns):
        macs.update(m)
    return sorted(macs)


FAILURES = ("graceful", "sigkill", "node-down", "api-down")


def fail_owner(cluster: Cluster, lab: Any, how: str, node: str) -> None:
    """Make node's speaker fail in one of FAILURES: SIGTERM, SIGKILL, `lab node-down`, `lab api-down`."""
    if how == "graceful":
        cluster.stop(node, signal.SIGTERM)
    elif how == "sigkill":
        cluster.kill(node, signal.SIGKILL)
    elif how == "node-down":
        unplug(node)  # the cable first, in a few ms; `lab node-down` (a Python CLI) then kills the rest
        lab.node_down(node)
    elif how == "api-down":
        lab.api_down(node)
    else:
        raise ValueError(f"fail_owner: how must be one of {FAILURES}, got {how!r}")


# -- LAN faults on one node (lab namespaces only) ---------------------------------------------


def unplug(node: str) -> None:
    """Pull node's cable: its switch port goes down, as `lab node-down` does first."""
    subprocess.run(["ip", "-n", "l2lb-lan", "link", "set", f"v{node}", "down"], check=True)


def one_way_loss(node: str, direction: str, on: bool) -> None:
    """Drop every frame node receives ("rx": on the switch port towards it) or sends ("tx": on its
    eth0), with a zero-length FIFO: the kernel here lacks tc actions, this needs none."""
    ns, dev = ("l2lb-lan", f"v{node}") if direction == "rx" else (f"l2lb-{node}", "eth0")
    verb = ["add", "dev", dev, "root", "pfifo", "limit", "0"] if on else ["del", "dev", dev, "root"]
    subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", *verb], check=on, capture_output=True)


def carrier(node: str, up: bool) -> None:
    """Unplug (or plug back) node's cable at the switch: its eth0 loses carrier, processes run on."""
    subprocess.run(["ip", "-n", "l2lb-lan", "link", "set", f"v{node}", "up" if up else "down"], check=True)


def longest_silence(probes: list[list[Any]], start: float, end: float = float("inf")) -> float:
    """Longest time between start and end during which no probe got an answer."""
    worst, last = 0.0, start
    for t, macs in probes:
        if t < start or t > end:
            continue
        if macs:
            worst, last = max(worst, t - last), t
    return max(worst, min(end, probes[-1][0]) - last) if probes else float("inf")


def lan_tool(*args: str, timeout: float = 60.0) -> Any:
    """Run tests/bench/lan_tool.py in l2lb-client (capture, replay, forge heartbeats)."""
    cmd = ["ip", "netns", "exec", "l2lb-client", PY, "-m", "tests.bench.lan_tool", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=True)
    return json.loads(out.stdout)


def wait_until_registered(cluster: Cluster, nodes: Iterable[str], timeout: float = 10.0) -> set[str]:
    """The nodes whose registration Lease exists, once all of nodes have one (or at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        items, _ = cluster.api.list(kube.LEASES, cluster.ns, label_selector="l2lb.io/role=speaker-heartbeat")
        have = {(i["metadata"].get("labels") or {}).get("l2lb.io/node") for i in items} - {None}
        if have >= set(nodes) or time.monotonic() > deadline:
            return have
        time.sleep(0.2)


def scrape(node: str, port: int) -> dict[str, float]:
    """A speaker's /metrics (unlabelled samples, and labelled ones as name{labels}) from its node."""
    url = f"http://{NODE_IP[node]}:{port}/metrics"
    out = subprocess.run(["ip", "netns", "exec", f"l2lb-{node}", "curl", "-s", "--max-time", "3", url],
                         capture_output=True, text=True, check=True)
    samples = {}
    for line in out.stdout.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
