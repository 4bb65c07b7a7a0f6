"""Client CPU and latency of one Service status write, urllib3 against l2lb's own transport.

    .venv/bin/python -m tests.bench.http_bench [--writes 300] [--trials 5]

On the running lab (`make lab-up`; takes the lab lock unless L2LB_LAB_LOCKED=1): creates --writes
Services in a namespace of its own, then per trial writes each one's status once with urllib3
(a PoolManager, as kube.py did before) and once with `l2lb_agent.transport` (what kube.py does
now), alternating so both see the same load. Reports, per way p50/p95 over the trials of the
client's CPU per write (process CPU time) and of the wall time per write, and the API server's
own CPU is not part of either figure. Why it matters: the controller makes one such write
per allocation on the same cores as the API server. Cleanup deletes the namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable

import urllib3
from l2lb_agent import kube

from tests.bench import speaker_harness as h
from tests.bench.__main__ import print_table
from tests.bench.scale_bench import lab_lock, pct


def _urllib3_writer(api: kube.KubeClient) -> Callable[[str, str, bytes], None]:
    kw = {"ssl_context": api.config.ssl_context} if api.config.ssl_context else {}
    pool = urllib3.PoolManager(maxsize=2, retries=False, **kw)
    headers = {"Accept": kube.JSON, "Content-Type": kube.PATCH_TYPES["merge"]}
    if token := api.config.token.get():
        headers["Authorization"] = f"Bearer {token}"

    def write(ns: str, name: str, body: bytes) -> None:
        resp = pool.request("PATCH", api.config.server + kube.SERVICES.path(ns, name, "status"), body=body,
                            headers=headers, timeout=urllib3.Timeout(connect=5, read=30), redirect=False)
        if resp.status != 200:
            raise RuntimeError(f"urllib3 write: HTTP {resp.status}")
        json.loads(resp.data)

    return write


def _transport_writer(api: kube.KubeClient) -> Callable[[str, str, bytes], None]:
    def write(ns: str, name: str, body: bytes) -> None:
        api.patch_status(kube.SERVICES, name, json.loads(body), ns)

    return write


def _trial(write: Callable[[str, str, bytes], None], ns: str, n: int, ip: str) -> tuple[float, float]:
    body = json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}).encode()
    cpu, wall = time.process_time(), time.monotonic()
    for i in range(n):
        write(ns, f"w-{i:04d}", body)
    return (time.process_time() - cpu) * 1000 / n, (time.monotonic() - wall) * 1000 / n



def run(writes: int, trials: int) -> list[dict]:
    api = h.client()
    ns = f"l2lb-http-{uuid.uuid4().hex[:6]}"
    api.create(kube.NAMESPACES, {"metadata": {"name": ns}})
    try:
        for i in range(writes):
            api.create(kube.SERVICES, {"metadata": {"name": f"w-{i:04d}"}, "spec": {
                "type": "LoadBalancer", "loadBalancerClass": "nobody.l2lb.io/x",
                "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]}}, ns)
        ways = {"urllib3 PoolManager": _urllib3_writer(api), "l2lb transport": _transport_writer(api)}
        seen: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for t in range(trials):
            for name, write in ways.items():  # alternate: both see the same host load
                seen[name].append(_trial(write, ns, writes, f"10.255.{t % 250}.{1 + len(seen[name]) % 2}"))
    finally:
        with contextlib.suppress(kube.ApiError):
            api.delete(kube.NAMESPACES, ns)
    rows = []
    for name, samples in seen.items():
        for what, values in (("client CPU", [s[0] for s in samples]), ("wall", [s[1] for s in samples])):
            rows.append({"name": f"status write, {name}: {what} per write", "unit": "ms", "trials": trials,
                         "p50": statistics.median(values), "p95": pct(values, 0.95)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.http_bench")
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.writes <= 2000 or not 1 <= args.trials <= 50:
        parser.error("--writes must be 1..2000 and --trials 1..50")
    with lab_lock():
        rows = run(args.writes, args.trials)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
