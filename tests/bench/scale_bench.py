"""`make bench-scale` (issue 12): l2lb at 10,000 LoadBalancer Services on the lab's real API server.

    .venv/bin/python -m tests.bench.scale_bench [--services 10000] [--trials 3] [--arp-trials 20]

What is real and what is simulated:
  - real: the lab's kube-apiserver (Go) and etcd; the controller process (`python -m l2lb_agent
    controller`, its own namespace and loadBalancerClass, so the deployed l2lb never sees these
    Services); the speakers are real processes in the lab's node namespaces l2lb-node1..3
    (tests/bench/speaker_harness.py), answering real ARP on the lab LAN, probed from l2lb-client;
  - simulated: the workloads. Services have no selector and their EndpointSlices are written by
    this bench (one per Service, endpoints on the 3 nodes), as the lab runs no kube-proxy or
    endpoint controller; nodes beyond the lab's 3 are not run here (the speaker rows for 100
    nodes are the lead's hooks below, on the pure ownership code).
Services set `allocateLoadBalancerNodePorts: false`: past ~2,700 LoadBalancer Services the API
server refuses new ones otherwise ("range is full"), and layer 2 needs no NodePort.

Measured (rows: name, unit, trials, p50, p95, goal; p50/p95 over the trials):
  1. 1,000 Services created at once -> all assigned, the API server alone for the same creates
     (no controller, a class nobody serves), and their ratio (goal <= 1.2x); also the "floor":
     the same creates with one status write each sent by the bench itself, since an allocation
     is one write that the API server must do on the same 2 cores;
  2. --services (10,000; goal <= 60 s) created at once -> all assigned, in the speakers' phase (3);
     the same against the API server alone, with the controller's API requests/s and RSS, is
     phase `big`, left out of the default run to keep it within 20 minutes;
  3. speakers started with --services Services + EndpointSlices: RSS each, API requests/s each;
  4. Service created -> first ARP answer for 1 Service (controller + speakers in the loop);
  5. the speaker rows of the lead's hooks: recompute per change at 10k Services x 100 nodes on the
     pure `owner_index` (simulated nodes: names only; no lab), and takeover after SIGKILL while
     10 % of the EndpointSlices churn (real speakers, real ARP), beside the same takeover with
     1 Service in the same run (its reference: "same as with 1 Service").
Bounded: at most MAX_SERVICES Services, a deadline per phase; cleanup deletes Services and
EndpointSlices by collection (one request each) and then the namespaces, also after a failure.
Takes the lab lock (/tmp/l2lb-shared-lab.lock) unless L2LB_LAB_LOCKED=1 says the caller holds it
(`--only recompute` needs no lab and takes no lock).
Output: a table on stdout and JSON in build/bench/scale-<stamp>.json (+ scale-latest.json).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import platform
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from l2lb_agent import announce_status, kube, ownership

from tests.bench import procfs
from tests.bench import speaker_harness as h
from tests.bench.__main__ import print_table
from tests.bench.controller_bench import _Controller

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "bench"
LOCK = "/tmp/l2lb-shared-lab.lock"
MAX_SERVICES = 20_000
CREATE_THREADS = 16
DELETE_TIMEOUT = 600.0  # seconds a collection delete may take
BATCH, BATCH_LABEL = 200, "bench.l2lb.io/batch"  # objects per collection delete, and their label
BULK_POOL = "10.210.0.0/17"  # 32,768 addresses: room for MAX_SERVICES; announced only on the lab LAN
ARP_POOL = "192.168.1.224/29"  # inside the lab LAN (probed from l2lb-client), away from nodes
POOLS = ("address-pools:\n"
         f"- name: bulk\n  protocol: layer2\n  addresses: [{BULK_POOL}]\n"
         f"- name: lan\n  protocol: layer2\n  auto-assign: false\n  addresses: [{ARP_POOL}]\n")
SPEAKER_METRICS = 17474  # beside a deployed speaker's 7473 and speaker_bench's 17473
SPEAKER_API = ("l2lb_speaker_api_requests_total",)  # every request: watches, Leases, Events, IPAnnouncements


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else None


def row(name: str, unit: str, values: list[float], goal: str) -> dict[str, Any]:
    out = {"name": name, "unit": unit, "trials": len(values), "p50": statistics.median(values) if values
           else None, "p95": pct(values, 0.95), "goal": goal}
    print(f"  {name}: p50 {out['p50']} p95 {out['p95']} {unit}", file=sys.stderr, flush=True)
    return out


# -- objects ------------------------------------------------------------------------------------


def _batch(name: str) -> str:
    """The delete batch of an object named like s-00042 (others: batch 0)."""
    digits = name.rpartition("-")[2]
    return str(int(digits) // BATCH) if digits.isdigit() else "0"


def service(name: str, lb_class: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "annotations": annotations or {},
                         "labels": {BATCH_LABEL: _batch(name)}},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": lb_class,
                     "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80, "protocol": "TCP"}]}}


def endpoint_slice(name: str, nodes: tuple[str, ...] = h.NODES) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-bench",
                         "labels": {"kubernetes.io/service-name": name, BATCH_LABEL: _batch(name),
                                    "endpointslice.kubernetes.io/managed-by": "bench.l2lb.io"}},
            "addressType": "IPv4", "ports": [{"port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": [h.NODE_IP[n]], "nodeName": n, "conditions": {"ready": True}}
                          for n in nodes]}


def create_all(api: kube.KubeClient, res: kube.Resource, ns: str, bodies: list[dict[str, Any]]) -> float:
    """Create bodies with CREATE_THREADS clients at once; seconds taken."""
    started = time.monotonic()
    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(lambda b: api.create(res, b, ns), bodies))
    return time.monotonic() - started


def delete_all(api: kube.KubeClient, ns: str) -> None:
    """Services and EndpointSlices by collection, one request per BATCH objects (their label; the
    API server gives up on a collection after 60 s, and 1,000 took longer on the loaded 2-core
    lab), then the namespace. A failed delete is reported and the rest still runs; the namespace
    delete catches what is left."""
    slow = kube.KubeClient(api.config, pool_size=2, read_timeout=DELETE_TIMEOUT)
    for res in (kube.SERVICES, kube.ENDPOINTSLICES):
        for batch in [*range(MAX_SERVICES // BATCH), None]:
            query = {"labelSelector": f"{BATCH_LABEL}={batch}"} if batch is not None else None
            try:
                slow.request("DELETE", res.path(ns), query=query)
            except kube.NotFound:
                pass
            except kube.ApiError as exc:
                print(f"  cleanup of {ns} {res.plural} batch {batch}: {exc}", file=sys.stderr, flush=True)
    with contextlib.suppress(kube.NotFound):
        api.delete(kube.NAMESPACES, ns)


@contextlib.contextmanager
def namespace(api: kube.KubeClient, prefix: str) -> Iterator[str]:
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    api.create(kube.NAMESPACES, {"metadata": {"name": ns}})
    try:
        yield ns
    finally:
        delete_all(api, ns)


class Assigned:
    """Watches a namespace's Services and fires when `want` of them hold an address."""

    def __init__(self, api: kube.KubeClient, ns: str, want: int) -> None:
        self.want, self.done = want, threading.Event()
        self.done_at = float("nan")  # monotonic time the want-th address was seen
        self._names: set[str] = set()
        self._informer = kube.Informer(api, kube.SERVICES, self._seen, namespace=ns, name="bench-assigned",
                                       project=_names_with_address)

    def _seen(self, _kind: str, new: dict[str, Any] | None, _old: Any) -> None:
        if new is not None and new.get("ip"):
            self._names.add(new["metadata"]["name"])
            if len(self._names) >= self.want and not self.done.is_set():
                self.done_at = time.monotonic()
                self.done.set()

    def __enter__(self) -> Assigned:
        self._informer.start()
        if not self._informer.synced.wait(30):
            raise TimeoutError("bench watch did not sync in 30 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._informer.stop()

    def count(self) -> int:
        return len(self._names)


def _names_with_address(svc: dict[str, Any]) -> dict[str, Any]:
    """The bench watch keeps only name and whether an address is set (10,000 objects, cheap)."""
    meta = svc.get("metadata") or {}
    ing = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return {"metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                         "resourceVersion": meta.get("resourceVersion")}, "ip": bool(ing)}


# -- controller rows ----------------------------------------------------------------------------


def baseline(api: kube.KubeClient, n: int) -> float:
    """Seconds the API server alone takes to create n Services (a class nobody serves), watched by
    the same bench watch as the controller's trial (its events cost the API server there too)."""
    with namespace(api, "l2lb-scale-base") as ns, Assigned(api, ns, n):
        return create_all(api, kube.SERVICES, ns, [service(f"s-{i:05d}", "nobody.l2lb.io/x")
                                                   for i in range(n)])


def floor(api: kube.KubeClient, n: int) -> float:
    """Seconds the API server alone takes to create n Services and write each one's status once
    (by this client, as soon as its create returns): the least any controller that writes one
    status per allocation can take, on this machine, under the same load and the same bench watch."""
    body = {"status": {"loadBalancer": {"ingress": [{"ip": "10.255.0.1"}]}}}
    with namespace(api, "l2lb-scale-floor") as ns, Assigned(api, ns, n):
        def one(i: int) -> None:
            api.create(kube.SERVICES, service(f"s-{i:05d}", "nobody.l2lb.io/x"), ns)
            api.patch_status(kube.SERVICES, f"s-{i:05d}", body, ns)
        started = time.monotonic()
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(one, range(n)))
        return time.monotonic() - started


def start_controller(api: kube.KubeClient, ns: str, lb_class: str) -> _Controller:
    api.create(kube.CONFIGMAPS, {"metadata": {"name": "config"}, "data": {"config": POOLS}}, ns)
    OUT.mkdir(parents=True, exist_ok=True)
    ctl = _Controller(h.KUBECONFIG, ns, lb_class, OUT / "scale-controller.log")
    deadline = time.monotonic() + 60
    while ctl.metric("l2lb_controller_ready") != 1:
        if time.monotonic() > deadline or ctl.proc.poll() is not None:
            raise TimeoutError("the bench controller did not become ready in 60 s")
        time.sleep(0.05)
    return ctl


def assign_trial(api: kube.KubeClient, n: int, timeout: float) -> dict[str, float]:
    """Create n Services at once under a fresh controller: seconds until all hold an address, the
    controller's API requests per second and per allocation, its status writes, its RSS."""
    steal0, wall0 = procfs.host_steal_seconds(), time.monotonic()
    base = baseline(api, n)
    least = floor(api, n) if n <= 1000 else float("nan")  # 10,000 more writes: too long for the run
    suffix = uuid.uuid4().hex[:6]
    lb_class = f"scale.l2lb.io/{suffix}"
    with namespace(api, "l2lb-scale") as ns:
        ctl = start_controller(api, ns, lb_class)
        try:
            req0, writes0 = (ctl.metric("l2lb_controller_api_requests") or 0,
                             ctl.metric("l2lb_controller_status_writes_total") or 0)
            cpu0 = procfs.cpu_seconds(ctl.proc.pid) or 0.0
            with Assigned(api, ns, n) as seen:
                started = time.monotonic()
                create_all(api, kube.SERVICES, ns, [service(f"s-{i:05d}", lb_class) for i in range(n)])
                if not seen.done.wait(timeout):
                    raise TimeoutError(f"only {seen.count()}/{n} Services assigned in {timeout:.0f} s")
                took = time.monotonic() - started
            requests = (ctl.metric("l2lb_controller_api_requests") or 0) - req0
            out = {"base": base, "floor": least, "assign": took, "ratio": took / base,
                   "ratio_floor": took / least, "rps": requests / took,
                   "per_alloc": requests / n,
                   "status_writes": ((ctl.metric("l2lb_controller_status_writes_total") or 0) - writes0) / n,
                   "rss": procfs.rss_mib(ctl.proc.pid) or float("nan"),
                   "cpu": ((procfs.cpu_seconds(ctl.proc.pid) or float("nan")) - cpu0) * 1000 / n,
                   "steal": 100 * (procfs.host_steal_seconds() - steal0) / (time.monotonic() - wall0)
                   / (os.cpu_count() or 1)}
        finally:
            ctl.stop()
    print(f"  {n} Services: API alone {base:.2f}s, assigned in {out['assign']:.2f}s ({out['ratio']:.2f}x), "
          f"{out['per_alloc']:.2f} requests/allocation, {out['status_writes']:.2f} status writes/allocation, "
          f"RSS {out['rss']:.0f} MiB; {out['steal']:.0f} % of the host's CPU time stolen by the hypervisor",
          file=sys.stderr, flush=True)
    return out


def controller_rows(api: kube.KubeClient, n: int, trials: int, timeout: float, goal: str) -> list[dict]:
    results = [assign_trial(api, n, timeout) for _ in range(trials)]
    col = {k: [r[k] for r in results] for k in results[0]}
    label = f"{n:,}"
    return [row(f"controller: {label} Services created at once -> all assigned", "s", col["assign"], goal),
            row(f"API server alone: {label} Services created (same client, no controller)", "s",
                col["base"], "-"),
            row(f"controller: {label} assigned / API server alone", "x", col["ratio"],
                "<= 1.2" if n <= 1000 else "-"),
            *([row(f"API server alone: {label} Services created + one status write each (the floor)",
                   "s", col["floor"], "-"),
               row(f"controller: {label} assigned / the floor", "x", col["ratio_floor"], "<= 1.2")]
              if n <= 1000 else []),
            row(f"controller: status writes per allocation ({label})", "writes", col["status_writes"],
                "<= 1"),
            row(f"controller: API requests per allocation incl. Events ({label})", "requests",
                col["per_alloc"], "-"),
            row(f"controller: API requests/s during the {label} burst", "requests/s", col["rps"],
                "<= --api-qps + Events"),
            row(f"controller: CPU per 1,000 allocations ({label} burst; 2 cores shared with the API "
                "server)", "s", col["cpu"], "-"),
            row(f"controller: RSS with {label} Services", "MiB", col["rss"], "-"),
            row(f"host: CPU time stolen by the hypervisor during the {label} trials (noise)", "%",
                col["steal"], "-")]


# -- speakers at scale, and the end-to-end ARP row ---------------------------------------------


def speakers_rows(api: kube.KubeClient, n: int, arp_trials: int, timeout: float,
                  takeover_count: int) -> list[dict]:
    """Controller + 3 speakers in one namespace: the ARP row with 1 Service, then n Services with
    EndpointSlices, speakers restarted on them: their RSS and API requests/s; then the takeover
    under EndpointSlice churn, beside the same takeover with 1 Service (takeover_count trials each,
    0 = skip)."""
    suffix = uuid.uuid4().hex[:6]
    cluster = h.Cluster(f"l2lb-scale-spk-{suffix}", lb_class=f"scale.l2lb.io/{suffix}")
    cluster.setup()
    h.ensure_crd(api)  # as deployed: the speakers write their IPAnnouncements
    ctl = None
    try:
        ctl = start_controller(api, cluster.ns, cluster.lb_class)
        start_speakers(cluster)
        rows = [row("Service created -> first ARP answer (1 Service; controller + speakers)", "s",
                    arp_first_answer(cluster, arp_trials), "<= 0.03 p95")]
        if takeover_count:
            rows += takeover_one_rows(cluster, takeover_count)
        cluster.stop_all()  # the speakers list everything again at start: the cold case at n
        with Assigned(api, cluster.ns, n) as seen:
            began = time.monotonic()
            created = create_all(api, kube.SERVICES, cluster.ns, [service(f"s-{i:05d}", cluster.lb_class)
                                                                  for i in range(n)])
            create_all(api, kube.ENDPOINTSLICES, cluster.ns, [endpoint_slice(f"s-{i:05d}") for i in range(n)])
            if not seen.done.wait(timeout):
                raise TimeoutError(f"only {seen.count()}/{n} Services assigned in {timeout:.0f} s")
        rows.append(row(f"controller: {n:,} Services created at once -> all assigned (the bench's "
                        f"{n:,} EndpointSlice creates follow the Services')", "s", [seen.done_at - began],
                        "<= 60"))
        rows.append(row(f"controller: ... of which after the last of the {n:,} Service creates returned "
                        "(the API server's pace, when small)", "s", [seen.done_at - began - created], "-"))
        started = time.monotonic()
        start_speakers(cluster, timeout=timeout)
        rows.append(row(f"speakers: start -> Ready with {n:,} Services + EndpointSlices", "s",
                        [time.monotonic() - started], "-"))
        time.sleep(5.0)
        rows += speaker_cost(cluster, n, window=20.0,
                             when="5-25 s after start (IPAnnouncements being written)")
        drained = wait_statuses_written(timeout)
        rows.append(row(f"speakers: start -> every IPAnnouncement written, {n:,} Services (at most "
                        f"{announce_status.WRITE_QPS:.0f} IPs/s each)", "s",
                        [time.monotonic() - started], "-"))
        if not drained:
            raise TimeoutError(f"IPAnnouncements still pending {timeout:.0f} s after start")
        rows += speaker_cost(cluster, n, window=20.0, when="steady", rss=False)
        rows.append(row(f"controller: RSS with {n:,} Services + EndpointSlices (speakers running)", "MiB",
                        [procfs.rss_mib(ctl.proc.pid) or float("nan")], "-"))
        if takeover_count:
            rows += takeover_churn_rows(cluster, n, takeover_count)
        return rows
    finally:
        if ctl is not None:
            ctl.stop()
        cluster.stop_all()
        delete_all(api, cluster.ns)


def start_speakers(cluster: h.Cluster, timeout: float = 60.0) -> None:
    for node in h.NODES:
        cluster.start(node, metrics_port=SPEAKER_METRICS)
    cluster.wait_ready(h.NODES, timeout=timeout)
    time.sleep(0.5)  # every speaker a candidate in every view


def arp_first_answer(cluster: h.Cluster, trials: int) -> list[float]:
    """Create a Service asking for a LAN address (EndpointSlice first), probe it every 10 ms from
    l2lb-client: seconds from the create request to the first probe answered."""
    out = []
    for i in range(trials):
        name, ip = f"arp-{i}", f"192.168.1.{225 + i % 6}"
        cluster.api.create(kube.ENDPOINTSLICES, endpoint_slice(name), cluster.ns)
        with h.probing(ip, 2.0, 0.01) as res:
            t0 = time.monotonic()
            cluster.api.create(kube.SERVICES, service(name, cluster.lb_class,
                                                      {"l2lb.io/loadBalancerIPs": ip}), cluster.ns)
        first = next((t for t, macs in res["probes"] if t >= t0 and macs), None)
        if first is not None:
            out.append(first - t0)
        cluster.delete_service(name)
        with contextlib.suppress(kube.NotFound):
            cluster.api.delete(kube.ENDPOINTSLICES, f"{name}-bench", cluster.ns)
        time.sleep(0.5)  # the address is free again before the next trial asks for it
    return out


def wait_statuses_written(timeout: float) -> bool:
    """Until no speaker has an IPAnnouncement write pending (False: still some at the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [h.scrape(node, SPEAKER_METRICS).get("l2lb_speaker_ipannouncements_pending")
                   for node in h.NODES]
        if all(p == 0 for p in pending):
            return True
        time.sleep(1.0)
    return False


def speaker_cost(cluster: h.Cluster, n: int, window: float, when: str, rss: bool = True) -> list[dict]:
    """RSS, API requests/s and CPU of each speaker over `window` seconds from now (`when` says
    which part of their life that is)."""
    before = {node: h.scrape(node, SPEAKER_METRICS) for node in h.NODES}
    time.sleep(window)
    after = {node: h.scrape(node, SPEAKER_METRICS) for node in h.NODES}
    rps = [sum(after[nd].get(m, 0.0) - before[nd].get(m, 0.0) for m in SPEAKER_API) / window
           for nd in h.NODES]
    cpu = [100 * (after[nd].get("process_cpu_seconds_total", 0.0)
                  - before[nd].get("process_cpu_seconds_total", 0.0)) / window for nd in h.NODES]
    rss_row = [row(f"speaker: RSS with {n:,} Services + {n:,} EndpointSlices (each of 3)", "MiB",
                   [mib for p in cluster.procs.values() if (mib := procfs.rss_mib(p.pid)) is not None],
                   "<= 120")] if rss else []
    return [*rss_row,
            row(f"speaker: API requests/s each, {when}, {n:,} Services", "requests/s", rps, "flat"),
            row(f"speaker: CPU each, {when}, {n:,} Services", "% of a core", cpu, "-")]


# -- hooks for the lead's speaker rows (issue 12 items 1 and 2) ----------------------------------


def speaker_recompute_rows(services: int = 10_000, nodes: int = 100, trials: int = 30) -> list[dict]:
    """HOOK (lead): "speaker recompute per change p50/p95 at 10k Services x 100 nodes (EndpointSlice
    change, node death)", measured on the pure ownership code (no lab needed): the speaker's
    incremental `owner_index.OwnerIndex` when it exists, against one full `ownership.choose`."""
    try:
        from l2lb_agent import owner_index
    except ImportError:  # the incremental index is the lead's (issue 12 item 1)
        return []
    names = [f"node{i}" for i in range(nodes)]
    views = [ownership.ServiceView(key=f"ns/s-{i:05d}", local=False,
                                   ips=(f"10.{210 + i // 65536}.{i // 256 % 256}.{i % 256}",))
             for i in range(services)]
    eps = {v.key: ownership.Endpoints(ready=True, nodes=frozenset(names[:3])) for v in views}
    started = time.perf_counter()
    ownership.choose(views, eps, frozenset(names))
    full = time.perf_counter() - started
    index = owner_index.OwnerIndex()
    index.set_candidates(names)
    for v in views:
        index.set_service(v.key, v)
        index.set_endpoints(v.key, eps[v.key])
    index.flush()
    rng = random.Random(12)
    slice_change, death, back = [], [], []
    for t in range(trials):
        key = views[rng.randrange(services)].key
        started = time.perf_counter()
        index.set_endpoints(key, ownership.Endpoints(ready=True, nodes=frozenset(rng.sample(names, 3))))
        index.flush()
        slice_change.append(time.perf_counter() - started)
        dead = names[t % nodes]
        started = time.perf_counter()
        index.set_candidates(set(names) - {dead})
        index.flush()
        death.append(time.perf_counter() - started)
        started = time.perf_counter()
        index.set_candidates(names)  # it comes back: one score per IP, the plain IPs it wins in place
        index.flush()
        back.append(time.perf_counter() - started)
    where = f"{services:,} Services x {nodes} nodes"
    return [row(f"speaker: full recompute (ownership.choose), {where}", "s", [full], "-"),
            row(f"speaker: recompute after one EndpointSlice change, {where}", "s", slice_change, "<= 0.005"),
            row(f"speaker: recompute after a node death, {where}", "s", death, "<= 0.05"),
            row(f"speaker: recompute after that node's return, {where}", "s", back, "-"),
            row(f"speaker: recompute after a speaker registers or leaves (placement), {where}", "s",
                placement_changes(index, names, trials), "-")]


def placement_changes(index: Any, names: list[str], trials: int) -> list[float]:
    """A speaker restarts: it leaves the candidates (LAN), its registration goes and comes back
    (who may announce every IP changes, timed: set_allowed + flush), then it is a candidate again."""
    everyone = frozenset(names)
    index.set_allowed(lambda _ip: everyone)
    index.flush()
    out = []
    for t in range(trials):
        away = names[t % len(names)]
        index.set_candidates(everyone - {away})
        index.flush()
        for allowed in (everyone - {away}, everyone):
            started = time.perf_counter()
            index.set_allowed(lambda _ip, a=allowed: a)
            index.flush()
            out.append(time.perf_counter() - started)
        index.set_candidates(everyone)
        index.flush()
    index.set_allowed(None)
    index.flush()
    return out


def takeover_churn_rows(cluster: h.Cluster, n: int, trials: int, window: float = 6.0) -> list[dict]:
    """HOOK (lead): "takeover after SIGKILL with 10k Services while 10% of EndpointSlices churn", on
    the lab's speakers with n Services in place: a LAN Service answered by its owner, a tenth of the
    EndpointSlices rewritten in a loop (8 threads), the owner SIGKILLed; seconds from the kill to
    the first answer by another MAC, probed every 10 ms from l2lb-client."""
    t = takeover_trials(cluster, trials, [f"s-{j:05d}" for j in range(0, n, 10)], window, return_window=30.0)
    return [row(f"speaker: takeover after SIGKILL, {n:,} Services, 10% of EndpointSlices churning", "s",
                t.took, "same as with 1 Service"),
            row("... EndpointSlice writes/s during those takeovers", "writes/s", t.churned, "-"),
            *_takeover_detail_rows(t, "same as with 1 Service")]


def takeover_one_rows(cluster: h.Cluster, trials: int) -> list[dict]:
    """The same takeover with only the probed Service: the side-by-side reference of the row above."""
    t = takeover_trials(cluster, trials, [], return_window=8.0)
    return [row("speaker: takeover after SIGKILL, 1 Service (the same run's reference)", "s", t.took, "-"),
            *_takeover_detail_rows(t, "-")]


def _takeover_detail_rows(t: Takeovers, goal: str) -> list[dict]:
    return [row("... of which: the kill -> the heir logs the new live set (LAN liveness)", "s", t.seen, goal),
            row("... then: the heir's answers in place (its `live set applied` line)", "s", t.in_place, "-"),
            row("... the owner's return: longest unanswered spell while it takes the address back "
                f"(handed back within the window in {len(t.back_gap)} of {len(t.took)})", "s", t.back_gap,
                "-"),
            row("... probes answered by two MACs (the kill and the return, all trials)", "probes",
                [float(t.doubles)], "0")]


@dataclasses.dataclass
class Takeovers:
    took: list[float] = dataclasses.field(default_factory=list)  # kill -> first answer by another MAC
    churned: list[float] = dataclasses.field(default_factory=list)  # EndpointSlice writes/s meanwhile
    seen: list[float] = dataclasses.field(default_factory=list)  # kill -> the heir logs the new live set
    in_place: list[float] = dataclasses.field(default_factory=list)  # then its answers in place (its log)
    back_gap: list[float] = dataclasses.field(default_factory=list)  # longest silence as the owner returns
    doubles: int = 0  # probes two MACs answered


def takeover_trials(cluster: h.Cluster, trials: int, churning: list[str], window: float = 6.0,
                    return_window: float = 8.0) -> Takeovers:
    """Per trial: the owner SIGKILLed while churning's EndpointSlices are rewritten, probed for
    window; then restarted, probed for return_window (it must be Ready and take the address back
    within it: the trials where it did give the hand-back's longest unanswered spell)."""
    out = Takeovers()
    for i in range(trials):
        name, ip = f"tk-{i}", f"192.168.1.{225 + i % 6}"
        cluster.api.create(kube.ENDPOINTSLICES, endpoint_slice(name), cluster.ns)
        cluster.api.create(kube.SERVICES, service(name, cluster.lb_class, {"l2lb.io/loadBalancerIPs": ip}),
                           cluster.ns)
        try:
            h.wait_answer(ip)
            owner = h.NODE_OF_MAC[h.owner_now(ip)[0]]
            with churn(cluster, churning) as count:
                with h.probing(ip, window, 0.01) as res:
                    time.sleep(1.0)
                    event, killed_at = time.monotonic(), time.time()
                    cluster.kill(owner, signal.SIGKILL)
                out.churned.append(count() / (window + 0.3))
            t = h.takeover(res["probes"], event, h.MAC[owner])
            out.took.append(t if t is not None else float("inf"))
            heir = h.first_heir(res["probes"], event, h.MAC[owner])
            phases = cluster.takeover_phases(heir, killed_at) if heir else None
            if phases is not None:
                out.seen.append(phases[0])
                out.in_place.append(phases[1])
            cluster.stop(owner)
            with h.probing(ip, return_window, 0.01) as back:
                began = time.monotonic()
                cluster.start(owner, metrics_port=SPEAKER_METRICS)
                cluster.wait_ready(h.NODES, timeout=120)
            gap = h.taken_back_gap(back["probes"], began, h.MAC[owner])
            if gap is not None:  # taken back before the window ended
                out.back_gap.append(gap)
            out.doubles += h.double_windows(res["probes"]) + h.double_windows(back["probes"])
        finally:
            cluster.delete_service(name)
            with contextlib.suppress(kube.NotFound):
                cluster.api.delete(kube.ENDPOINTSLICES, f"{name}-bench", cluster.ns)
        time.sleep(0.5)
    return out


@contextlib.contextmanager
def churn(cluster: h.Cluster, names: list[str], threads: int = 8) -> Iterator[Callable[[], int]]:
    """Rewrite the EndpointSlices of names (their ready nodes alternate) until the block ends."""
    stop, done, lock = threading.Event(), [0], threading.Lock()

    def worker(part: list[str]) -> None:
        flip = 0
        while not stop.is_set():
            for name in part:
                if stop.is_set():
                    return
                nodes = h.NODES[:2] if flip % 2 else h.NODES[1:]
                body = {"endpoints": endpoint_slice(name, nodes)["endpoints"]}
                with contextlib.suppress(kube.ApiError):
                    cluster.api.patch(kube.ENDPOINTSLICES, f"{name}-bench", body, cluster.ns)
                    with lock:
                        done[0] += 1
            flip += 1

    pool = [threading.Thread(target=worker, args=(names[k::threads],), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    try:
        yield lambda: done[0]
    finally:
        stop.set()
        for t in pool:
            t.join(10)


# -- main ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def lab_lock() -> Iterator[None]:
    if os.environ.get("L2LB_LAB_LOCKED") == "1":
        yield
        return
    with open(LOCK, "a") as fd:
        print(f"waiting for the lab lock {LOCK} ...", file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def run(services: int, trials: int, arp_trials: int, phases: set[str]) -> list[dict]:
    if not 1 <= services <= MAX_SERVICES:
        raise SystemExit(f"--services {services}: expected 1-{MAX_SERVICES}")
    api = kube.KubeClient.from_config(h.KUBECONFIG, pool_size=CREATE_THREADS + 4)
    steps: list[tuple[str, Callable[[], list[dict]]]] = [
        ("1k", lambda: controller_rows(api, 1000, trials, 120, "-")),
        ("big", lambda: controller_rows(api, services, max(1, trials // 3), 900, "<= 60")),
        ("speakers", lambda: speakers_rows(api, services, arp_trials, 300,
                                           max(3, trials) if "takeover" in phases else 0)),
        ("recompute", lambda: speaker_recompute_rows(services) + speaker_recompute_rows(services, nodes=3)),
    ]
    rows: list[dict] = []
    for name, step in steps:
        if name in phases:
            print(f"== {name}", file=sys.stderr, flush=True)
            rows += step()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench-scale")
    parser.add_argument("--services", type=int, default=int(os.environ.get("L2LB_SCALE_SERVICES", "10000")))
    parser.add_argument("--trials", type=int, default=int(os.environ.get("L2LB_SCALE_TRIALS", "3")))
    parser.add_argument("--arp-trials", type=int, default=20)
    parser.add_argument("--only", default="1k,speakers,recompute,takeover",
                        help="comma list of phases: 1k, big, speakers, recompute, takeover (with "
                        "speakers); big (--services against the API server alone, ~15 minutes more) "
                        "is not in the default")
    args = parser.parse_args()
    started = time.monotonic()
    phases = set(args.only.split(","))
    with lab_lock() if phases - {"recompute"} else contextlib.nullcontext():
        rows = run(args.services, args.trials, args.arp_trials, phases)
    print_table(rows)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    meta = {"date": stamp, "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "kernel": platform.release(), "services": args.services, "seconds": time.monotonic() - started}
    OUT.mkdir(parents=True, exist_ok=True)
    doc = json.dumps({"meta": meta, "rows": rows}, indent=2)
    (OUT / f"scale-{stamp}.json").write_text(doc)
    (OUT / "scale-latest.json").write_text(doc)
    print(f"\nwritten: build/bench/scale-{stamp}.json ({meta['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
