"""What the lab's API server itself can do: the ceiling under the controller's scale figures.

    .venv/bin/python -m tests.bench.api_cost_bench [--objects 300] [--trials 3] [--growth 10000]

On the running lab (takes the lab lock unless L2LB_LAB_LOCKED=1), in a namespace of its own, with
l2lb's own client and no l2lb component running:
  1. Services created per second with 1, 4 and 16 clients at once: how fast the API server alone
     takes new Services, whoever sends them;
  2. the API server's and etcd's CPU (from /proc) per request of each kind a controller sends: a
     Service create, a status write (merge patch, what l2lb sends; and the same as a PUT of the
     object as read), a core/v1 Event create, a GET;
  3. with --growth N: N more Services created 1,000 at a time (16 clients), and per thousand the
     creates per second and the API server's CPU per create: how a create's cost grows with the
     Services (ClusterIPs) that exist. Kubernetes 1.33+ allocates each ClusterIP as an IPAddress
     object and, on every allocation, counts the allocated ones by listing all of them twice
     (k8s.io/kubernetes pkg/registry/core/service/ipallocator, `createIPAddress` -> `Used`,
     `Free`): a create costs more the more Services exist, whoever creates them.
Per kind p50/p95 over the trials. The controller's goal "1,000 Services assigned within 1.2x of the
API server alone" needs one status write per Service to cost the API server under a fifth of a
create; item 2 says what it costs here. Bounded: --objects <= 2,000 per kind and trial, --growth
<= 10,000; the namespaces (and all in them) are deleted at the end, also after a failure, one
collection of 200 at a time, so no bench after this one runs on an API server still deleting.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from l2lb_agent import kube

from tests.bench import procfs
from tests.bench import speaker_harness as h
from tests.bench.__main__ import print_table
from tests.bench.scale_bench import lab_lock, namespace, pct, service

SERVER = ("kube-apiserver", "etcd")
GROWTH_STEP = 1000


def _server_cpu() -> float:
    total = 0.0
    for name in SERVER:
        for pid in subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split():
            total += procfs.cpu_seconds(int(pid)) or 0.0
    return total


def _service(name: str) -> dict:
    return service(name, "nobody.l2lb.io/x")  # labelled for the bench's batched cleanup


def _run(fn: Callable[[int], object], items: range, threads: int) -> tuple[float, float]:
    """(requests per second, API server + etcd CPU ms per request)."""
    cpu, wall = _server_cpu(), time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items))
    took = time.monotonic() - wall
    return len(items) / took, (_server_cpu() - cpu) * 1000 / len(items)



def run(objects: int, trials: int, growth: int = 0) -> list[dict]:
    api = kube.KubeClient.from_config(h.KUBECONFIG, pool_size=32)
    seen: dict[str, list[float]] = {}
    if growth:  # first, on an empty namespace, so the trials below run where they always did
        with namespace(api, "l2lb-apicost") as ns:
            for existing, rate, cpu in _growth(api, ns, growth):
                seen[f"Services created per second, {existing:,} Services in the cluster before"] = [rate]
                seen[f"API server + etcd CPU per Service create, {existing:,} in the cluster before"] = [cpu]
    with namespace(api, "l2lb-apicost") as ns:
        nxt = 0
        for _t in range(trials):
            nxt = _trial(api, ns, objects, seen, nxt)
    return [{"name": name, "unit": "ms" if "CPU" in name else "per s", "trials": len(v),
             "p50": statistics.median(v), "p95": pct(v, 0.95)} for name, v in seen.items()]


def _trial(api: kube.KubeClient, ns: str, objects: int, seen: dict[str, list[float]], nxt: int) -> int:
    """One trial of items 1 and 2, its Services named from c-<nxt>; returns the next free number."""
    body = {"status": {"loadBalancer": {"ingress": [{"ip": "10.255.0.1"}]}}}
    involved = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c-0", "namespace": ns}}
    for threads in (1, 4, 16):
        n = max(1, objects // 2) if threads == 1 else objects
        rate, _cpu = _run(lambda i: api.create(kube.SERVICES, _service(f"c-{i}"), ns),
                          range(nxt, nxt + n), threads)
        seen.setdefault(f"Services created per second, {threads} client(s) at once", []).append(rate)
        nxt += n
    batch = range(nxt, nxt + objects)
    _rate, cpu = _run(lambda i: api.create(kube.SERVICES, _service(f"c-{i}"), ns), batch, 8)
    seen.setdefault("API server + etcd CPU per Service create", []).append(cpu)
    read: dict[int, dict] = {}  # each as the merge patch returned it: the PUT's resourceVersion

    def merge_patch(i: int) -> None:
        read[i] = api.patch_status(kube.SERVICES, f"c-{i}", body, ns)

    _rate, cpu = _run(merge_patch, batch, 8)
    seen.setdefault("API server + etcd CPU per status write (merge patch)", []).append(cpu)
    _rate, cpu = _run(lambda i: api.replace(kube.SERVICES, f"c-{i}", _restatus(read[i]), ns,
                                            subresource="status"), batch, 8)
    seen.setdefault("API server + etcd CPU per status write (PUT of the object)", []).append(cpu)
    _rate, cpu = _run(lambda i: api.create_event(ns, involved, "Normal", "Bench", f"event {i}",
                                                 "l2lb-bench"), range(objects), 8)
    seen.setdefault("API server + etcd CPU per Event create", []).append(cpu)
    _rate, cpu = _run(lambda i: api.get(kube.SERVICES, f"c-{i}", ns), batch, 8)
    seen.setdefault("API server + etcd CPU per GET", []).append(cpu)
    return nxt + objects


def _restatus(svc: dict) -> dict:
    """svc (as last written, with its resourceVersion) with another load-balancer address in its status."""
    return {**svc, "status": {"loadBalancer": {"ingress": [{"ip": "10.255.0.2"}]}}}


def _growth(api: kube.KubeClient, ns: str, total: int) -> list[tuple[int, float, float]]:
    """Create total Services GROWTH_STEP at a time; per step (Services in the cluster before it,
    creates per second, API server + etcd CPU ms per create). Counts every Service in the cluster,
    not just this namespace's."""
    existing = len(api.list(kube.SERVICES, each=lambda _svc: {})[0])
    steps = []
    for start in range(0, total, GROWTH_STEP):
        rate, cpu = _run(lambda i: api.create(kube.SERVICES, _service(f"c-{i}"), ns),
                         range(start, start + GROWTH_STEP), 16)
        print(f"  {existing:,} -> {existing + GROWTH_STEP:,} Services: {rate:.0f} creates/s, {cpu:.1f} ms "
              "of API server + etcd CPU each", file=sys.stderr, flush=True)
        steps.append((existing, rate, cpu))
        existing += GROWTH_STEP
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.api_cost_bench")
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--growth", type=int, default=0, help="Services more, 1,000 at a time (0..10,000)")
    args = parser.parse_args()
    if not 10 <= args.objects <= 2000 or not 1 <= args.trials <= 20:
        parser.error("--objects must be 10..2000 and --trials 1..20")
    if args.growth % GROWTH_STEP or not 0 <= args.growth <= 10_000:
        parser.error(f"--growth must be a multiple of {GROWTH_STEP:,} in 0..10,000")
    with lab_lock():
        rows = run(args.objects, args.trials, args.growth)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
