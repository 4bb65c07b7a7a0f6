"""LAN membership at 10 and 30 nodes: detection, CPU and frames per speaker (`make bench`, or alone).

    .venv/bin/python -m tests.bench.membership_scale [--nodes 10,30] [--trials 10]

Brings the lab up with N nodes (`lab up --nodes N`: a namespace, a veth and a kubelet each), runs a
speaker in every node (tests/bench/speaker_harness.py), and measures as the client sees it:
takeover after SIGKILL of the owner, requests left unanswered while nothing happens, and each
speaker's CPU (from /proc, over an idle window) and heartbeat frames (from its /metrics). Restores
the 3-node lab at the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from typing import Any

from l2lb_agent import ownership

from tests.bench import procfs
from tests.bench import speaker_harness as h
from tests.bench.speaker_bench import row

NS = "l2lb-scale-bench"
METRICS_PORT = 17473
IDLE_WINDOW = 10.0
STEADY_WINDOW = 20.0


def lab_up(n: int) -> None:
    subprocess.run([str(h.REPO / ".venv/bin/lab"), "up", "--nodes", str(n), "--timeout", "300"], check=True)


def measure(n: int, trials: int) -> list[dict[str, Any]]:
    nodes = tuple(f"node{i}" for i in range(1, n + 1))
    lab_up(n)
    c = h.Cluster(NS)
    c.setup()
    rows: list[dict[str, Any]] = []
    try:
        for node in nodes:
            c.start(node, metrics_port=METRICS_PORT if node == "node1" else 0)
        c.wait_ready(nodes, timeout=180)
        time.sleep(3.0)
        pids = {node: c.procs[node].pid for node in nodes}
        before = {node: procfs.cpu_seconds(pid) or 0.0 for node, pid in pids.items()}
        sent0 = h.scrape("node1", METRICS_PORT).get("l2lb_speaker_heartbeats_sent_total", 0.0)
        time.sleep(IDLE_WINDOW)
        cpu = [100 * ((procfs.cpu_seconds(pid) or float("nan")) - before[node]) / IDLE_WINDOW
               for node, pid in pids.items()]
        sent1 = h.scrape("node1", METRICS_PORT).get("l2lb_speaker_heartbeats_sent_total", 0.0)
        rows.append(row(f"speaker: CPU per speaker, {n} nodes idle", "% of a core", cpu, "<= 2"))
        rows.append(row(f"speaker: heartbeat frames sent/s per node, {n} nodes", "frames/s",
                        [(sent1 - sent0) / IDLE_WINDOW], "10"))
        unanswered = []
        for t in range(max(1, trials // 3)):  # nothing happens: every request should get its answer
            ip = f"192.168.1.{229 - t % 30}"
            c.service(f"steady-{t}", [ip], endpoints=("node1",))
            h.wait_answer(ip)
            with h.probing(ip, STEADY_WINDOW, 0.01) as res:
                pass
            unanswered.append(len(h.unanswered(res["probes"])))
            c.delete_service(f"steady-{t}")
        rows.append(row(f"speaker: requests unanswered in {STEADY_WINDOW:.0f} s of steady state, {n} nodes "
                        "(probe every 10 ms)", "count", unanswered, "0"))
        took, doubles = [], []
        for t in range(trials):
            ip = f"192.168.1.{200 + t % 30}"
            alive = tuple(x for x in nodes if c.alive(x))
            owner = ownership.owner_of(ip, alive) or ""
            c.service(f"scale-{t}", [ip], endpoints=("node1",))
            h.wait_answer(ip)
            with h.probing(ip, 3.0, 0.01) as res:
                time.sleep(0.5)
                killed = time.monotonic()
                c.kill(owner, signal.SIGKILL)
            got = h.takeover(res["probes"], killed, h.MAC[owner])
            took.append(got if got is not None else float("inf"))
            doubles.append(h.double_windows(res["probes"]))
            c.delete_service(f"scale-{t}")
            c.start(owner)
            c.wait_ready(nodes, timeout=60)
        rows.append(row(f"speaker: takeover after SIGKILL, {n} nodes", "s", took, "<= 0.5"))
        rows.append(row(f"speaker: probes answered by two MACs, {n} nodes", "count", doubles, "0",
                        total=sum(doubles)))
    finally:
        c.teardown()
    return rows


def run(sizes: tuple[int, ...] = (10, 30), trials: int = 10) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            rows += measure(n, trials)
    finally:
        lab_up(3)
    return rows


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", default="10,30")
    p.add_argument("--trials", type=int, default=10)
    a = p.parse_args()
    rows = run(tuple(int(x) for x in a.nodes.split(",")), a.trials)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
