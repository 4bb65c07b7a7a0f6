"""Speaker owner-update cost at scale: the incremental index against a full recompute (pure, no lab).

    python -m tests.bench.owner_bench [--services 10000] [--nodes 100] [--trials 30]

Builds the index the speaker keeps (``owner_index.OwnerIndex``) for N Services (one IP each, Cluster
policy, two EndpointSlices each) over M live nodes, then times, per trial, the update after
* one EndpointSlice change (a rolling update's step: the Service loses its ready endpoints, then
  gets them back),
* one node's death (its speaker leaves the candidates), and its return (one score per IP; the
  plain IPs it outscores are taken over in place),
and ``ownership.choose`` over everything (what every change cost before the index), side by side.
Reports p50/p95 in milliseconds and the IPs recomputed per change. ``run()`` returns the rows
for ``tests.bench.scale_bench``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import time
from collections.abc import Callable

from l2lb_agent import ownership as own
from l2lb_agent.owner_index import OwnerIndex


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _setup(services: int, nodes: int) -> tuple[OwnerIndex, list[own.ServiceView], dict, list[str]]:
    names = [f"node{i:03d}" for i in range(nodes)]
    base = ipaddress.ip_address("10.64.0.0")
    views = [own.ServiceView(key=f"ns/s{i}", ips=(str(base + i),), local=False) for i in range(services)]
    endpoints = {v.key: own.Endpoints(ready=True, nodes=frozenset(names[i % nodes: i % nodes + 2]))
                 for i, v in enumerate(views)}
    index = OwnerIndex()
    for v in views:
        index.set_service(v.key, v)
        index.set_endpoints(v.key, endpoints[v.key])
    index.set_candidates(names)
    index.flush()
    return index, views, endpoints, names


def _time(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def run(services: int = 10000, nodes: int = 100, trials: int = 30) -> list[dict]:
    index, views, endpoints, names = _setup(services, nodes)
    slice_ms, death_ms, back_ms, full_ms, moved, rejoined = [], [], [], [], [], []
    for t in range(trials):
        key = views[(t * 7919) % services].key
        gone = own.Endpoints(ready=False, nodes=frozenset())

        def change(k: str = key, eps: own.Endpoints = gone) -> None:
            index.set_endpoints(k, eps)
            index.flush()
        slice_ms.append(_time(change) * 1000)
        change(key, endpoints[key])  # back as it was
        victim = names[(t * 31) % nodes]
        before = index.recomputed

        def death(v: str = victim) -> None:
            index.set_candidates(n for n in names if n != v)
            index.flush()
        death_ms.append(_time(death) * 1000)
        moved.append(index.recomputed - before)
        before = index.recomputed

        def back() -> None:
            index.set_candidates(names)
            index.flush()
        back_ms.append(_time(back) * 1000)
        rejoined.append(index.recomputed - before)
        if t < min(trials, 5):  # the full recompute is slow: a few trials are enough to show it
            full_ms.append(_time(lambda: own.choose(views, endpoints, names)) * 1000)
    shape = f"{services} Services x {nodes} nodes"
    return [
        _row(f"owner update after one EndpointSlice change, {shape}", slice_ms, "ms", ips=1),
        _row(f"owner update after a node death, {shape}", death_ms, "ms", ips=statistics.median(moved)),
        _row(f"owner update after that node's return, {shape}", back_ms, "ms",
             ips=statistics.median(rejoined)),
        _row(f"full recompute (ownership.choose, before the index), {shape}", full_ms, "ms", ips=services),
    ]


def _row(what: str, samples: list[float], unit: str, ips: float) -> dict:
    return {"measurement": what, "p50": round(_pct(samples, 0.5), 3), "p95": round(_pct(samples, 0.95), 3),
            "unit": unit, "trials": len(samples), "ips_recomputed": ips}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    rows = run(a.services, a.nodes, a.trials)
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['measurement']:<80} p50 {r['p50']:>9.3f} {r['unit']}  p95 {r['p95']:>9.3f} {r['unit']}"
              f"  ({r['trials']} trials, {r['ips_recomputed']} IPs recomputed)")


if __name__ == "__main__":
    main()
