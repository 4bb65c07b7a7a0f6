"""What the benchmarks read from /proc about the processes they measure."""

from __future__ import annotations

import os
from pathlib import Path


def rss_mib(pid: int) -> float | None:
    """Resident set size of pid in MiB (VmRSS), None once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time pid has used so far (user + system, all threads), None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_steal_seconds() -> float:
    """CPU time the hypervisor gave to others while this VM wanted it (all CPUs, /proc/stat "steal"):
    a bench reports its share so that a slow run on a noisy host reads as such."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0

