"""What the benchmarks read from /proc about the processes they measure."""

from __future__ import annotations

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
