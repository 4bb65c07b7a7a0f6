"""Background processes of the lab: start with a pidfile and a log, find, stop (SIGTERM, then SIGKILL).

Used by controlplane, lan and cli. A pidfile alone is never trusted: a pid counts as ours
only while its /proc cmdline still contains the expected marker (pids get reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the field after the parenthesised command name, which may contain spaces
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def read_pid(pidfile: Path, marker: str) -> int | None:
    """The live pid recorded in pidfile whose cmdline contains marker, else None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) and marker in cmdline(pid) else None


def start(argv: Sequence[str], *, log: Path, pidfile: Path, netns: str | None = None,
          env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start argv detached (own session, stdin closed), output appended to log; return its pid.

    With netns, `ip netns exec` runs it inside that namespace (ip execs it, so the pid is the same).
    """
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=cwd)
    _wait_exec(proc, Path(argv[0]).name)
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_exec(proc: subprocess.Popen, name: str, timeout: float = 15.0) -> None:
    """Until the child has exec'd (before that its cmdline is still ours, so read_pid would take
    a healthy start for a dead one), or has exited, or timeout passed (generous: a loaded 2-core
    machine has taken over 2 s to exec the 80 MB control-plane binaries)."""
    deadline = time.monotonic() + timeout
    while name not in cmdline(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


def netns_pids(netns: str) -> list[int]:
    """Every process whose network namespace is netns (`ip netns pids`), [] if it does not exist."""
    res = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains text (e.g. the lab's state dir): a safety net for
    processes whose namespace was already deleted."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me and text in cmdline(int(entry.name)):
            found.append(int(entry.name))
    return [p for p in found if alive(p)]


def stop(pids: Iterable[int], grace: float = 3.0) -> list[int]:
    """SIGTERM pids, SIGKILL whatever is left after grace seconds; return the pids still alive."""
    todo = {p for p in pids if alive(p)}
    _signal_all(todo, signal.SIGTERM)
    todo = _wait_gone(todo, grace)
    _signal_all(todo, signal.SIGKILL)
    return sorted(_wait_gone(todo, 2.0))


def kill(pids: Iterable[int]) -> list[int]:
    """SIGKILL at once (a hard node failure); return the pids still alive afterwards."""
    todo = {p for p in pids if alive(p)}
    _signal_all(todo, signal.SIGKILL)
    return sorted(_wait_gone(todo, 2.0))


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        _reap()
        pids = {p for p in pids if alive(p)}
        if pids:
            time.sleep(0.05)
    return pids


def _reap() -> None:
    """Collect our own exited children so they do not linger as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
