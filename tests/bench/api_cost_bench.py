"""What the lab's API server itself can do: the ceiling under the controller's scale figures.

    .venv/bin/python -m tests.bench.api_cost_bench [--objects 300] [--trials 3]

On the running lab (takes the lab lock unless L2LB_LAB_LOCKED=1), in a namespace of its own, with
l2lb's own client and no l2lb component running:
  1. Services created per second with 1, 4 and 16 clients at once: how fast the API server alone
     takes new Services, whoever sends them;
  2. the API server's and etcd's CPU (from /proc) per request of each kind a controller sends: a
     Service create, a status write (merge patch, what l2lb sends), a core/v1 Event create, a GET.
Per kind p50/p95 over the trials. The controller's goal "1,000 Services assigned within 1.2x of the
API server alone" needs one status write per Service to cost the API server under a fifth of a
create; item 2 says what it costs here. Bounded: --objects <= 2,000 per kind and trial; the
namespace (and all in it) is deleted at the end, also after a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from l2lb_agent import kube

from tests.bench import procfs
from tests.bench import speaker_harness as h
from tests.bench.__main__ import print_table
from tests.bench.scale_bench import lab_lock, pct

SERVER = ("kube-apiserver", "etcd")


def _server_cpu() -> float:
    total = 0.0
    for name in SERVER:
        for pid in subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split():
            total += procfs.cpu_seconds(int(pid)) or 0.0
    return total


def _service(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "type": "LoadBalancer", "loadBalancerClass": "nobody.l2lb.io/x",
        "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]}}


def _run(fn: Callable[[int], object], items: range, threads: int) -> tuple[float, float]:
    """(requests per second, API server + etcd CPU ms per request)."""
    cpu, wall = _server_cpu(), time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items))
    took = time.monotonic() - wall
    return len(items) / took, (_server_cpu() - cpu) * 1000 / len(items)



def run(objects: int, trials: int) -> list[dict]:
    api = kube.KubeClient.from_config(h.KUBECONFIG, pool_size=32)
    ns = f"l2lb-apicost-{uuid.uuid4().hex[:6]}"
    api.create(kube.NAMESPACES, {"metadata": {"name": ns}})
    seen: dict[str, list[float]] = {}
    nxt = 0
    body = {"status": {"loadBalancer": {"ingress": [{"ip": "10.255.0.1"}]}}}
    involved = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c-0", "namespace": ns}}
    try:
        for _t in range(trials):
            for threads in (1, 4, 16):
                n = max(1, objects // 2) if threads == 1 else objects
                rate, _cpu = _run(lambda i: api.create(kube.SERVICES, _service(f"c-{i}"), ns),
                                  range(nxt, nxt + n), threads)
                seen.setdefault(f"Services created per second, {threads} client(s) at once", []).append(rate)
                nxt += n
            first = nxt
            _rate, cpu = _run(lambda i: api.create(kube.SERVICES, _service(f"c-{i}"), ns),
                              range(first, first + objects), 8)
            seen.setdefault("API server + etcd CPU per Service create", []).append(cpu)
            nxt += objects
            _rate, cpu = _run(lambda i: api.patch_status(kube.SERVICES, f"c-{i}", body, ns),
                              range(first, first + objects), 8)
            seen.setdefault("API server + etcd CPU per status write (merge patch)", []).append(cpu)
            _rate, cpu = _run(lambda i: api.create_event(ns, involved, "Normal", "Bench", f"event {i}",
                                                         "l2lb-bench"), range(objects), 8)
            seen.setdefault("API server + etcd CPU per Event create", []).append(cpu)
            _rate, cpu = _run(lambda i: api.get(kube.SERVICES, f"c-{i}", ns),
                              range(first, first + objects), 8)
            seen.setdefault("API server + etcd CPU per GET", []).append(cpu)
    finally:
        with contextlib.suppress(kube.ApiError):
            api.delete(kube.NAMESPACES, ns)
    return [{"name": name, "unit": "ms" if "CPU" in name else "per s", "trials": len(v),
             "p50": statistics.median(v), "p95": pct(v, 0.95)} for name, v in seen.items()]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.api_cost_bench")
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    if not 10 <= args.objects <= 2000 or not 1 <= args.trials <= 20:
        parser.error("--objects must be 10..2000 and --trials 1..20")
    with lab_lock():
        rows = run(args.objects, args.trials)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
