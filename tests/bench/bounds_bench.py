"""Bounds benchmark (issue 11): hostile input is refused in bounded time and memory.

No lab needed. Each case runs `trials` times, each in a fresh Python process (so one case's
memory never hides in another's), which reports the case's wall time and its peak RSS growth
(VmHWM after the case minus VmHWM after building the input). Cases: the config model on
20,000 pools, pool lookups among them, YAML alias bombs, a document over 1 MiB, deep nesting, a
1 MB address (message length); the frame path: `decide` per frame, the answer limiter under a
20,000-request spoofed-source flood, and kernel-filter sizes for large owned sets.
Rows: {"name", "unit", "trials", "p50", "p95", "goal"}. Each case asserts its bound on the median
of its trials (LIMITS: figure, peak RSS growth in MiB): `run` raises BoundExceeded, naming every
case over its bound, after all cases ran.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_PRELUDE = """
import json, time, ipaddress
from pathlib import Path
from l2lb_agent import config, frames, ratelimit
def hwm():
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
def refused(text):
    try:
        config.load_config(text)
    except config.ConfigError as exc:
        return len(str(exc))
    raise SystemExit('accepted: ' + text[:80])
def bomb(levels, width):
    lines = ['a0: &a0 [' + ', '.join(['"lol"'] * width) + ']']
    for i in range(1, levels):
        lines.append(f'a{i}: &a{i} [' + ', '.join([f'*a{i-1}'] * width) + ']')
    return '\\n'.join(lines) + '\\n'
"""

# name -> (setup, measured statement leaving `value` (the row's figure), unit, goal)
CASES: dict[str, tuple[str, str, str, str]] = {
    "config: load 20,000 pools": (
        "doc = 'address-pools:\\n' + ''.join(f'- name: p{i}\\n  addresses: [10.{i >> 8}.{i & 255}.0/28]\\n'"
        " for i in range(20000))",
        "t = time.perf_counter(); config.load_config(doc); value = time.perf_counter() - t", "s", "<= 1"),
    "config: pool_of among 20,000 pools": (
        "doc = 'address-pools:\\n' + ''.join(f'- name: p{i}\\n  addresses: [10.{i >> 8}.{i & 255}.0/28]\\n'"
        " for i in range(20000)); cfg = config.load_config(doc)"
        "; ips = [ipaddress.ip_address(f'10.{i % 78}.{i % 256}.{i % 16}') for i in range(10000)]",
        "t = time.perf_counter()\nfor ip in ips: config.pool_of(cfg, ip)\n"
        "value = (time.perf_counter() - t) / len(ips) * 1e6", "us/lookup", "O(log n), <= 20"),
    "config: alias bomb, 9 levels x 9 (~450 B)": (
        "doc = bomb(9, 9)", "t = time.perf_counter(); refused(doc); value = (time.perf_counter() - t) * 1e3",
        "ms", "<= 10, < 5 MiB"),
    "config: alias bomb, 10 levels x 10 (~550 B)": (
        "doc = bomb(10, 10)",
        "t = time.perf_counter(); refused(doc); value = (time.perf_counter() - t) * 1e3",
        "ms", "<= 10, < 5 MiB"),
    "config: document of 1 MiB + 1 byte": (
        "doc = 'address-pools: []\\n#' + 'x' * (1 << 20)",
        "t = time.perf_counter(); refused(doc); value = (time.perf_counter() - t) * 1e3", "ms", "<= 10"),
    "config: 500,000 nested flow sequences (1 MiB)": (
        "doc = '[' * 500000 + ']' * 500000",
        "t = time.perf_counter(); refused(doc); value = (time.perf_counter() - t) * 1e3", "ms", "<= 100"),
    "config: message for a 1 MB address": (
        "doc = \"address-pools:\\n- name: a\\n  addresses: ['\" + '1' * 1000000 + \"']\\n\"",
        "value = refused(doc)", "characters", "<= 640"),
    "frames: decide, ARP request for an owned IP": (
        "owned4 = {ipaddress.ip_address(0x0A000000 + i).packed for i in range(10000)}; my = bytes(6)"
        "; f = bytes.fromhex('ffffffffffff024c32000001080600010800060400010'"
        " '24c32000001c0a801010000000000000a000005')"
        "; assert frames.decide(f, my, owned4, ()).verdict is frames.Verdict.ANSWER_ARP",
        "t = time.perf_counter()\nfor _ in range(100000): frames.decide(f, my, owned4, ())\n"
        "value = (time.perf_counter() - t) / 100000 * 1e6", "us/frame", "<= 50"),
    "ratelimit: answers to 20,000 spoofed requests in 0.4 s": (
        "lim = ratelimit.AnswerLimiter()",
        "value = sum(lim.allow(i.to_bytes(10, 'big'), b'vip', 0.4 * i / 20000) is ratelimit.Limit.OK"
        " for i in range(20000))", "answers", "<= 481 (was 20,000)"),
    "bpf: instructions for 100,000 consecutive IPv4": (
        "owned = {(0x0A000000 + i).to_bytes(4, 'big') for i in range(100000)}",
        "value = len(frames.bpf_program(owned, set()))", "insns", "<= 4096, exact"),
    "bpf: instructions for 20,000 scattered IPv4 + 5,000 IPv6": (
        "owned = {(0x0A000000 + 3 * i).to_bytes(4, 'big') for i in range(20000)}"
        "; six = {bytes(10) + b'\\xfd\\x00' + i.to_bytes(4, 'big') for i in range(0, 50000, 10)}",
        "value = len(frames.bpf_program(owned, six))", "insns", "<= 4096, superset"),
}


# name -> (largest median figure, largest median peak RSS growth in MiB)
LIMITS: dict[str, tuple[float, float]] = {
    "config: load 20,000 pools": (1.0, 64),
    "config: pool_of among 20,000 pools": (20, 1),
    "config: alias bomb, 9 levels x 9 (~450 B)": (10, 5),
    "config: alias bomb, 10 levels x 10 (~550 B)": (10, 5),
    "config: document of 1 MiB + 1 byte": (10, 5),
    "config: 500,000 nested flow sequences (1 MiB)": (100, 5),
    "config: message for a 1 MB address": (640, 5),
    "frames: decide, ARP request for an owned IP": (50, 1),
    "ratelimit: answers to 20,000 spoofed requests in 0.4 s": (481, 8),
    "bpf: instructions for 100,000 consecutive IPv4": (4096, 16),
    "bpf: instructions for 20,000 scattered IPv4 + 5,000 IPv6": (4096, 32),
}


class BoundExceeded(AssertionError):
    """A hostile-input case took more time or memory than its bound."""


def _one(name: str) -> tuple[float, float]:
    setup, stmt, _unit, _goal = CASES[name]
    code = f"{_PRELUDE}\n{setup}\nbase = hwm()\n{stmt}\nprint(json.dumps([value, hwm() - base]))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"{name}: {out.stderr.strip()[-500:]}")
    value, mem = json.loads(out.stdout.strip().splitlines()[-1])
    return float(value), float(mem)


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def run(trials: int = 5) -> list[dict]:
    rows, over = [], []
    for name, (_setup, _stmt, unit, goal) in CASES.items():
        results = [_one(name) for _ in range(trials)]
        values, mems = [r[0] for r in results], [r[1] for r in results]
        limit, mem_limit = LIMITS[name]
        if statistics.median(values) > limit or statistics.median(mems) > mem_limit:
            over.append(f"{name}: {statistics.median(values):g} {unit} (bound {limit:g}), "
                        f"{statistics.median(mems):.1f} MiB (bound {mem_limit:g})")
        rows.append({"name": name, "unit": unit, "trials": trials, "p50": statistics.median(values),
                     "p95": _p95(values), "goal": goal})
        rows.append({"name": f"{name}: peak RSS growth", "unit": "MiB", "trials": trials,
                     "p50": statistics.median(mems), "p95": _p95(mems), "goal": f"<= {mem_limit:g}"})
    if over:
        from tests.bench.__main__ import print_table

        print_table(rows)
        raise BoundExceeded("; ".join(over))
    return rows


if __name__ == "__main__":
    from tests.bench.__main__ import print_table

    print_table(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
