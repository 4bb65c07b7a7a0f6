"""Controller benchmark (issue 3), on the lab's real API server: `run(kubeconfig, trials)`.

Each trial, in its own namespace and with its own loadBalancerClass (so nothing else in the lab
reacts): start a controller subprocess, create 1,000 LoadBalancer Services at once (16 client
threads), and measure
  - the time from the first create until every Service has an address (watched, not polled);
  - API requests the controller sent per allocation (its l2lb_controller_api_requests metric);
  - the controller's RSS with 1,000 Services (VmRSS from /proc);
  - a restart (SIGTERM, then a new process): time from exec until l2lb_controller_ready is 1,
    and how many Services' addresses changed (must be 0).
Rows: {"name", "unit", "trials", "p50", "p95", "goal"}.
"""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from l2lb_agent import kube
from l2lb_lab.testing import wait_until

from tests.bench import procfs

REPO = Path(__file__).resolve().parents[2]
N = 1000
POOL = "10.200.0.0/20"  # 4,096 addresses; the bench class is announced by no speaker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            lines = r.read().decode().splitlines()
    except OSError:
        return {}
    return {ln.rpartition(" ")[0]: float(ln.rpartition(" ")[2]) for ln in lines if ln.startswith("l2lb_")}






class _Controller:
    def __init__(self, kubeconfig: str, ns: str, lb_class: str, log: Path) -> None:
        self.port = _free_port()
        cmd = [
            sys.executable,
            "-m",
            "l2lb_agent",
            "controller",
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            ns,
            "--loadbalancer-class",
            lb_class,
            "--claim-unclassed",
            "false",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
            "--pod-name",
            "bench",
            "--log-level",
            "info",
        ]
        self.started = time.monotonic()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def metric(self, name: str) -> float | None:
        return _metrics(self.port).get(name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _service(i: int, lb_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i:04d}"},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": lb_class,
            "selector": {"app": f"a{i}"},
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    }


def _addresses(client: kube.KubeClient, ns: str) -> dict[str, tuple[str, ...]]:
    items, _ = client.list(kube.SERVICES, ns)
    return {
        s["metadata"]["name"]: tuple(
            i.get("ip", "") for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        )
        for s in items
    }


def _allocate_all(client: kube.KubeClient, ns: str, lb_class: str) -> tuple[float, float]:
    """Create N Services at once; seconds from the first create until all have an address, and
    from the last create's answer until all have one (the part the controller alone adds)."""
    done: set[str] = set()
    all_done = threading.Event()

    def seen(_kind: str, new: dict[str, Any] | None, _old: Any) -> None:
        if new and ((new.get("status") or {}).get("loadBalancer") or {}).get("ingress"):
            done.add(new["metadata"]["name"])
            if len(done) >= N:
                all_done.set()

    informer = kube.Informer(client, kube.SERVICES, seen, namespace=ns, name="bench-watch")
    informer.start()
    informer.synced.wait(10)
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.create(kube.SERVICES, _service(i, lb_class), ns), range(N)))
    created = time.monotonic()
    ok = all_done.wait(120)
    finished = time.monotonic()
    informer.stop()
    if not ok:
        raise TimeoutError(f"controller bench: only {len(done)}/{N} Services got an address in 120 s")
    return finished - started, finished - created


def _baseline(client: kube.KubeClient) -> float:
    """Seconds the API server alone takes to create N Services (a class nobody answers to)."""
    ns = f"l2lb-bench-base-{uuid.uuid4().hex[:6]}"
    client.create(kube.NAMESPACES, {"metadata": {"name": ns}})
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: client.create(kube.SERVICES, _service(i, "nobody.io/lb"), ns), range(N)))
        return time.monotonic() - started
    finally:
        client.delete(kube.NAMESPACES, ns)
        wait_until(f"namespace {ns} to go", lambda: _gone(client, ns), 300, every=1.0)


def _trial(client: kube.KubeClient, kubeconfig: str, log: Path) -> dict[str, float]:
    base_s = _baseline(client)
    suffix = uuid.uuid4().hex[:6]
    ns, lb_class = f"l2lb-bench-{suffix}", f"bench.l2lb.io/{suffix}"
    client.create(kube.NAMESPACES, {"metadata": {"name": ns}})
    client.create(
        kube.CONFIGMAPS,
        {
            "metadata": {"name": "config"},
            "data": {
                "config": (f"address-pools:\n- name: bench\n  protocol: layer2\n  addresses: [{POOL}]\n")
            },
        },
        ns,
    )
    ctl = _Controller(kubeconfig, ns, lb_class, log)
    try:
        wait_until("the controller to lead", lambda: ctl.metric("l2lb_controller_ready") == 1, 30,
                   every=0.05)
        requests_before = ctl.metric("l2lb_controller_api_requests") or 0.0
        alloc_s, tail_s = _allocate_all(client, ns, lb_class)
        time.sleep(1.0)  # let trailing writes (Events) finish before counting
        per_alloc = ((ctl.metric("l2lb_controller_api_requests") or 0.0) - requests_before) / N
        rss = procfs.rss_mib(ctl.proc.pid) or float("nan")
        before = _addresses(client, ns)
        ctl.stop()
        ctl = _Controller(kubeconfig, ns, lb_class, log)
        wait_until("the restarted controller to be ready",
                   lambda: ctl.metric("l2lb_controller_ready") == 1, 60, every=0.05)
        ready_s = time.monotonic() - ctl.started
        time.sleep(1.0)
        after = _addresses(client, ns)
        changed = sum(1 for k, v in before.items() if after.get(k) != v)
        print(
            f"controller bench trial: {N} created alone in {base_s:.2f}s; "
            f"{N} allocated in {alloc_s:.2f}s ({tail_s:.2f}s after the last create), "
            f"{per_alloc:.2f} requests each, RSS {rss:.1f} MB, restart ready in {ready_s:.2f}s, "
            f"{changed} changed",
            file=sys.stderr,
        )
        return {
            "base": base_s,
            "alloc": alloc_s,
            "tail": tail_s,
            "per_alloc": per_alloc,
            "rss": rss,
            "ready": ready_s,
            "changed": changed,
        }
    finally:
        ctl.stop()
        client.delete(kube.NAMESPACES, ns)
        wait_until(f"namespace {ns} to go", lambda: _gone(client, ns), 300, every=1.0)


def _gone(client: kube.KubeClient, ns: str) -> bool:
    try:
        client.get(kube.NAMESPACES, ns)
    except kube.NotFound:
        return True
    return False


def _row(name: str, unit: str, values: list[float], goal: str) -> dict[str, Any]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "name": name,
        "unit": unit,
        "trials": len(values),
        "p50": statistics.median(ordered),
        "p95": p95,
        "goal": goal,
    }


def run(kubeconfig: str, trials: int = 3) -> list[dict[str, Any]]:
    client = kube.KubeClient.from_config(kubeconfig, pool_size=20)
    log = REPO / "bench-results" / "controller-bench.log"
    log.parent.mkdir(exist_ok=True)
    results = [_trial(client, kubeconfig, log) for _ in range(trials)]
    col = {k: [r[k] for r in results] for k in results[0]}
    return [
        _row("controller: 1,000 Services created at once -> all have addresses", "s", col["alloc"], "<= 10"),
        _row("baseline: 1,000 Services created, no controller (same API server)", "s", col["base"], "-"),
        _row("controller: ... of which after the last create returned", "s", col["tail"], "-"),
        _row("controller: restart with 1,000 assigned -> ready", "s", col["ready"], "<= 5"),
        _row("controller: addresses changed by the restart", "count", col["changed"], "0"),
        _row("controller: API requests per allocation", "requests", col["per_alloc"], "status + Event = 2"),
        _row("controller: RSS with 1,000 Services", "MB", col["rss"], "<= 80"),
    ]


if __name__ == "__main__":
    import json

    print(
        json.dumps(run(str(REPO / ".lab/kubeconfig"), int(sys.argv[1]) if len(sys.argv) > 1 else 1), indent=2)
    )
