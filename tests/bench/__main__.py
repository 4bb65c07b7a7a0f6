"""`make bench`: run the controller and speaker benchmarks on the lab and print one table.

Each benchmark module exposes `run(...) -> list[dict]`, one row per measurement with the keys
name, unit, trials, p50, p95 and goal. The table is also written as JSON under bench-results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from tests.bench import bounds_bench, controller_bench, membership_scale, speaker_bench

REPO = Path(__file__).resolve().parents[2]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def print_table(rows: list[dict]) -> None:
    cols = ["name", "unit", "trials", "p50", "p95", "goal"]
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--trials", type=int, default=int(os.environ.get("L2LB_BENCH_TRIALS", "20")))
    parser.add_argument("--only", choices=["controller", "speaker", "bounds", "membership"], default=None)
    args = parser.parse_args()
    subprocess.run([str(REPO / ".venv/bin/lab"), "up"], check=True)
    kubeconfig = str(REPO / ".lab/kubeconfig")
    rows: list[dict] = []
    if args.only in (None, "controller"):
        rows += controller_bench.run(kubeconfig, trials=max(3, args.trials // 4))
    if args.only in (None, "speaker"):
        rows += speaker_bench.run(trials=args.trials)
    if args.only in (None, "bounds"):
        rows += bounds_bench.run(trials=max(3, args.trials // 4))
    if args.only in (None, "membership"):  # 10 and 30 lab nodes; the 3-node lab is back after
        rows += membership_scale.run((10, 30), trials=max(3, args.trials // 2))
    print_table(rows)
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    meta = {"date": stamp, "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "kernel": platform.release()}
    (out / f"bench-{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (out / "latest.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwritten: bench-results/bench-{stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
