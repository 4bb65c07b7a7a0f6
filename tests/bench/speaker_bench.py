"""The speaker's part of `make bench`: failover, freezes, LAN faults, cost, flood, memory.

    .venv/bin/python -m tests.bench --only speaker [--trials 20]     (about 45 minutes at 20 trials)

Every figure comes from the lab as the client sees it: l2lb-client probes every PROBE_INTERVAL
(tests/bench/speaker_probe.py) and records which MACs answered each probe, so takeover times
include detection, the watch, the decision and the first answer, and a probe answered by two
MACs is a double-answer window. Speakers run as processes in l2lb-node1..3 with their own
namespace and loadBalancerClass (tests/bench/speaker_harness.py). API writes are counted
independently of the speaker, by watching the Leases and Events the speakers write; CPU,
heartbeat frames and API reads come from each speaker's own /metrics.
The flood compares, in the same run and on the same kind of link (the node's veth), the
speaker answering for a LoadBalancer IP with the node's kernel answering for its own IP.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from l2lb_agent import kube, ownership, ratelimit

from tests.bench import procfs
from tests.bench import speaker_harness as h

NS = "l2lb-speaker-bench"
PROBE_INTERVAL = 0.01
FLOOD_RATE = 20000  # the goal
FLOOD_HIGH = 60000  # the ceiling check (the kernel manages 50,000+/s here)
MANY = 1000
FREEZE_SECONDS = 30.0
STEADY_SECONDS = 30.0
METRICS_PORT = 17473  # beside a deployed speaker's 7473 in the same node namespace


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def row(name: str, unit: str, values: list[float], goal: str, **extra: Any) -> dict[str, Any]:
    out = {"name": name, "unit": unit, "trials": len(values), "p50": pct(values, 0.5),
           "p95": pct(values, 0.95), "goal": goal, **extra}
    print(f"  {name}: p50 {out['p50']} p95 {out['p95']} {unit} ({len(values)} trials)", file=sys.stderr,
          flush=True)
    return out


def _ip(n: int) -> str:
    return f"192.168.1.{200 + n % 30}"  # .200-.229: inside the lab LAN, away from nodes and pools


def _ensure_all(c: h.Cluster) -> None:
    for node in h.NODES:
        if not c.alive(node):
            c.start(node)
    c.wait_ready(h.NODES)
    time.sleep(0.5)  # every speaker a candidate in every view


# -- create -> first answer -------------------------------------------------------------------


def bench_create(c: h.Cluster, trials: int) -> list[float]:
    """The speakers' part of a new Service: the Service and its endpoints exist, then its address
    is written to status (the controller's one write); seconds from that request to the first
    probe answered. One API write + the watch + the speaker (the harness has no controller;
    scale_bench measures the whole path with the controller)."""
    out = []
    for n in range(trials):
        ip, name = _ip(n), f"create-{n}"
        c.service(name, [])
        with h.probing(ip, 2.0, PROBE_INTERVAL) as res:
            t0 = time.monotonic()
            c.api.patch_status(kube.SERVICES, name, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}},
                               c.ns)
        first = next((t for t, macs in res["probes"] if t >= t0 and macs), None)
        if first is not None:
            out.append(first - t0)
        c.delete_service(name)
        time.sleep(0.3)
    return out


# -- takeovers --------------------------------------------------------------------------------




LAN_FAULTS = ("sigstop", "one-way-rx", "one-way-tx", "carrier")


def _fail(c: h.Cluster, lab: Any, how: str, node: str) -> None:
    if how == "sigstop":
        c.kill(node, signal.SIGSTOP)
    elif how.startswith("one-way-"):
        h.one_way_loss(node, how.removeprefix("one-way-"), True)
    elif how == "carrier":
        h.carrier(node, False)
    else:
        h.fail_owner(c, lab, how, node)


def _heal(c: h.Cluster, lab: Any, how: str, node: str) -> None:
    if how == "node-down":
        lab.node_up(node)
    elif how == "api-down":
        lab.api_up(node)
    elif how == "sigstop":
        c.kill(node, signal.SIGCONT)
    elif how.startswith("one-way-"):
        h.one_way_loss(node, how.removeprefix("one-way-"), False)
    elif how == "carrier":
        h.carrier(node, True)
    if how in ("sigkill", "node-down"):
        c.stop(node)


@contextlib.contextmanager
def _answered_service(c: h.Cluster, name: str, ip: str) -> Iterator[str]:
    """Every speaker up, a Service on ip answered by its owner (yielded); the Service goes after."""
    _ensure_all(c)
    c.service(name, [ip])
    try:
        h.wait_answer(ip)
        yield ownership.owner_of(ip, h.NODES) or ""
    finally:
        c.delete_service(name)


def bench_takeover(c: h.Cluster, lab: Any, how: str, trials: int, window: float) -> tuple[list, list, list]:
    """(takeover seconds, double-answer probes, longest unanswered spell after the fault) per trial."""
    took, doubles, silent = [], [], []
    for n in range(trials):
        ip = _ip(n)
        with _answered_service(c, f"{how}-{n}", ip) as owner:
            try:
                with h.probing(ip, window, PROBE_INTERVAL) as res:
                    time.sleep(0.5)
                    event = time.monotonic()
                    _fail(c, lab, how, owner)
            finally:
                _heal(c, lab, how, owner)
            t = h.takeover(res["probes"], event, h.MAC[owner])
            took.append(t if t is not None else float("inf"))
            doubles.append(h.double_windows(res["probes"]))
            silent.append(h.longest_silence(res["probes"], event))
    return took, doubles, silent


def bench_return(c: h.Cluster, trials: int, window: float = 5.0) -> tuple[list[float], list[float]]:
    """The owner stopped (SIGTERM), started again 1 s later and taking its address back: (longest
    unanswered spell from its start, probes answered by two MACs) per trial. The holder stops once it
    has applied the returner's candidacy; the returner answers on that acknowledgement."""
    gaps, doubles = [], []
    for n in range(trials):
        ip = _ip(n)
        with _answered_service(c, f"return-{n}", ip) as owner:
            c.stop(owner)
            time.sleep(1.0)
            with h.probing(ip, window, PROBE_INTERVAL) as back:
                began = time.monotonic()
                c.start(owner)
                c.wait_ready(h.NODES)
            gap = h.taken_back_gap(back["probes"], began, h.MAC[owner])
            gaps.append(gap if gap is not None else float("inf"))
            doubles.append(h.double_windows(back["probes"]))
    return gaps, doubles


def bench_steady(c: h.Cluster, trials: int, seconds: float) -> tuple[list[float], list[float]]:
    """Nothing happens: (requests unanswered, longest unanswered spell) per trial of `seconds` of
    probing a Service whose owner stays. Every request should get its answer: a host whose ARP
    request goes unanswered waits a second for its retry."""
    unanswered, longest = [], []
    for n in range(trials):
        ip = _ip(n)
        with _answered_service(c, f"steady-{n}", ip), h.probing(ip, seconds, PROBE_INTERVAL) as res:
            started = time.monotonic()
        probes = res["probes"]
        unanswered.append(len(h.unanswered(probes)))
        longest.append(h.longest_silence(probes, started))
    return unanswered, longest


def bench_freeze(c: h.Cluster, lab: Any, trials: int, seconds: float, kill: bool) -> tuple[list, list]:
    """Control plane frozen for `seconds`: (longest unanswered spell, or takeover after SIGKILL of
    the owner 1 s into the freeze; double-answer probes) per trial."""
    out, doubles = [], []
    for n in range(trials):
        ip = _ip(n)
        with _answered_service(c, f"freeze-{n}", ip) as owner:
            try:
                with h.probing(ip, seconds + 1.0, PROBE_INTERVAL) as res:
                    lab.run("api-freeze")
                    frozen = time.monotonic()
                    if kill:
                        time.sleep(1.0)
                        c.kill(owner, signal.SIGKILL)
                        killed = time.monotonic()
                    time.sleep(max(0.0, seconds - (time.monotonic() - frozen)))
                    lab.run("api-thaw")
                    thawed = time.monotonic()
            finally:
                lab.run("api-thaw")
                if kill:
                    c.stop(owner)
            probes = res["probes"]
            if kill:
                t = h.takeover(probes, killed, h.MAC[owner])
                out.append(t if t is not None else float("inf"))
            else:
                out.append(h.longest_silence(probes, frozen, thawed))
            doubles.append(h.double_windows(probes))
    return out, doubles


# -- API writes and memory --------------------------------------------------------------------


class WriteCounter:
    """Counts Lease updates and Events in the namespace through a watch (independent of the speaker)."""

    def __init__(self, ns: str) -> None:
        self.count = 0
        api = h.client()
        self._informers = [kube.Informer(api, res, self._seen, namespace=ns, name=f"bench-{res.plural}")
                           for res in (kube.LEASES, kube.EVENTS)]

    def _seen(self, kind: str, _new: Any, _old: Any) -> None:
        if kind != "DELETED":
            self.count += 1

    def __enter__(self) -> WriteCounter:
        for inf in self._informers:
            inf.start()
            inf.synced.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        for inf in self._informers:
            inf.stop()


def rss_mib(c: h.Cluster) -> list[float]:
    return [mib for proc in c.procs.values() if (mib := procfs.rss_mib(proc.pid)) is not None]


def bench_writes(c: h.Cluster, services: int, window: float, trials: int) -> tuple[list[float], list[float]]:
    """(writes/s per node over `trials` windows of `window` s, speaker RSS MiB) with `services` Services."""
    _ensure_all(c)
    names = [f"many-{i}" for i in range(services)]
    _parallel([lambda n=n, i=i: c.service(n, [f"10.{200 + i // 65000}.{i // 250 % 250}.{i % 250 + 1}"])
               for i, n in enumerate(names)])
    time.sleep(8.0)  # settle: templates, GARP rounds, nodeAssigned Events
    rates = []
    with WriteCounter(c.ns) as wc:
        for _ in range(trials):
            before, t0 = wc.count, time.monotonic()
            time.sleep(window)
            rates.append((wc.count - before) / (time.monotonic() - t0) / len(h.NODES))
    rss = rss_mib(c)
    _parallel([lambda n=n: c.delete_service(n) for n in names])
    return rates, rss


def _parallel(jobs: list[Callable[[], Any]], workers: int = 16) -> None:
    it = iter(jobs)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                return
            job()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def bench_cost(c: h.Cluster, window: float = 10.0) -> list[dict[str, Any]]:
    """Steady-state cost per speaker, from its own /metrics: CPU, heartbeat frames, API reads."""
    c.stop_all()
    for node in h.NODES:
        c.start(node, metrics_port=METRICS_PORT)
    c.wait_ready(h.NODES)
    time.sleep(2.0)
    before = {n: h.scrape(n, METRICS_PORT) for n in h.NODES}
    time.sleep(window)
    after = {n: h.scrape(n, METRICS_PORT) for n in h.NODES}

    def rate(name: str) -> list[float]:
        return [(after[n].get(name, 0.0) - before[n].get(name, 0.0)) / window for n in h.NODES]

    rows = [row(f"speaker: CPU, {len(h.NODES)} nodes idle", "% of a core",
                [100 * r for r in rate("process_cpu_seconds_total")], "<= 2"),
            row("speaker: heartbeat frames sent per second per node", "frames/s",
                rate("l2lb_speaker_heartbeats_sent_total"), "-"),
            row("speaker: API reads/s per node (freshness probe)", "requests/s",
                rate("l2lb_speaker_api_probes_total"), "flat"),
            row("speaker: API writes/s per node, steady state", "writes/s",
                rate("l2lb_speaker_api_writes_total"), "0")]
    c.stop_all()
    c.start_all()
    return rows


# -- flood ------------------------------------------------------------------------------------


def bench_flood(c: h.Cluster, trials: int, rate: int) -> dict[str, list[float]]:
    """One flood of `rate` requests/s for 1 s per trial, at the speaker then at the kernel."""
    _ensure_all(c)
    ip = "192.168.1.230"
    c.service("flood", [ip])
    owner = ownership.owner_of(ip, h.NODES) or ""
    h.wait_answer(ip)
    res: dict[str, list[float]] = {f"{w}_{k}": [] for w in ("spk", "krn") for k in ("rate", "loss", "p99")}
    for _ in range(trials):
        for who, target in (("spk", ip), ("krn", h.NODE_IP[owner])):
            r = h.run_probe("flood", target, rate=rate, count=rate)
            res[f"{who}_rate"].append(r["answered"] / (r["sent"] / r["send_rate"]))
            res[f"{who}_loss"].append(r["sent"] - r["answered"])
            res[f"{who}_p99"].append(r["p99_ms"] if r["p99_ms"] is not None else float("inf"))
    c.delete_service("flood")
    return res


def flood_rows(f: dict[str, list[float]], rate: int) -> list[dict[str, Any]]:
    """Speaker and kernel side by side (same run, same veth, same client). The speaker's answers
    are capped by its per-target limit (ratelimit.Rates); the kernel has no such limit."""
    out = []
    limit = ratelimit.Rates()
    cap = f"<= {limit.target_burst + limit.target_rate:.0f} (target limit)"
    goals = {"spk": (cap, "-", "-"), "krn": ("ref",) * 3}
    for who, key in (("speaker", "spk"), ("kernel", "krn")):
        g = goals[key]
        out += [row(f"{who}: ARP answers/s, {rate}/s flood", "answers/s", f[f"{key}_rate"], g[0]),
                row(f"{who}: ARP requests lost, {rate}/s flood of 1 s", "count", f[f"{key}_loss"], g[1]),
                row(f"{who}: ARP reply latency p99, {rate}/s flood", "ms", f[f"{key}_p99"], g[2])]
    return out


# -- all --------------------------------------------------------------------------------------


def run(trials: int = 20, lab: Any = None) -> list[dict[str, Any]]:
    """Every speaker figure; rows {name, unit, trials, p50, p95, goal}."""
    from l2lb_lab import testing
    from l2lb_lab import topology as topo

    lab = lab or testing.LabHandle(topo.Paths(topo.repo_root()))
    c = h.Cluster(NS)
    c.setup()
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        c.start_all()
        c.wait_ready(h.NODES)
        rows.append(row("speaker: address written to status -> first ARP answer", "s",
                        bench_create(c, trials), "-"))
        unanswered, longest = bench_steady(c, max(3, trials // 4), STEADY_SECONDS)
        rows.append(row(f"speaker: requests unanswered in {STEADY_SECONDS:.0f} s of steady state (probe "
                        f"every {PROBE_INTERVAL * 1000:.0f} ms)", "count", unanswered, "0"))
        rows.append(row("speaker: ... longest unanswered spell", "s", longest, "-"))
        all_doubles: list[float] = []
        for how, goal, window in (("graceful", "<= 0.1", 3.0), ("sigkill", "<= 0.5", 4.0),
                                  ("node-down", "<= 0.5", 4.0), ("api-down", "<= 2", 6.0),
                                  ("sigstop", "<= 0.5", 4.0), ("one-way-rx", "<= 1", 4.0),
                                  ("one-way-tx", "<= 1", 4.0), ("carrier", "<= 1", 4.0)):
            took, doubles, silent = bench_takeover(c, lab, how, trials, window)
            rows.append(row(f"speaker: takeover after {how}", "s", took, goal))
            if how == "api-down":
                rows.append(row("speaker: owner cut from the API, longest unanswered spell", "s", silent,
                                "<= 0.1"))
            all_doubles += doubles
        gaps, doubles = bench_return(c, max(5, trials // 2))
        rows.append(row("speaker: owner restarted, longest unanswered spell while it takes its address back",
                        "s", gaps, "-"))
        all_doubles += doubles
        for kill, seconds in ((False, FREEZE_SECONDS), (True, 6.0)):
            got, doubles = bench_freeze(c, lab, trials, seconds, kill)
            name = ("speaker: takeover after SIGKILL during a control-plane freeze" if kill else
                    f"speaker: longest unanswered spell, {FREEZE_SECONDS:.0f} s control-plane freeze")
            rows.append(row(name, "s", got, "<= 0.5"))
            all_doubles += doubles
        rows.append(row("speaker: probes answered by two MACs (all fault trials)", "count", all_doubles, "0",
                        total=sum(all_doubles)))
        rows += bench_cost(c)
        for services in (1, MANY):
            rates, rss = bench_writes(c, services, 5.0, max(3, trials // 4))
            rows.append(row(f"speaker: API writes/s per node for liveness, {services} Service(s), steady",
                            "writes/s", rates, "0"))
            rows.append(row(f"speaker: RSS with {services} Service(s), one sample per speaker", "MiB", rss,
                            "-"))
        rows += flood_rows(bench_flood(c, trials, FLOOD_RATE), FLOOD_RATE)
        rows += flood_rows(bench_flood(c, max(3, trials // 4), FLOOD_HIGH), FLOOD_HIGH)
    finally:
        c.teardown()
    print(f"speaker bench: {time.monotonic() - started:.0f}s (client probes every "
          f"{PROBE_INTERVAL * 1000:.0f} ms)", file=sys.stderr)
    return rows


if __name__ == "__main__":
    import json

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20), indent=1))

