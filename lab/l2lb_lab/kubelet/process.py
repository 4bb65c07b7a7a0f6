"""Container processes: start, find again after a kubelet restart, signal, reap.

Where it sits: pods.py owns one `Proc` per running container.  Each container runs in a
session (and process group) of its own, so signals reach the whole container and the
kubelet can exit without taking its Pods down (like a real kubelet restart).  A tiny
/bin/sh wrapper records the exit code in a file: a restarted kubelet that adopted the
process (it is no longer its child, so it cannot wait() for it) still reports the exit
code truthfully.  The wrapper traps TERM/INT only to defer them; its child gets defaults.
A runc container is the same wrapper around `runc run` (runtime.py): runc forwards signals to
the container, but SIGKILL of runc would orphan the container, so `signal()` also asks runc
to kill it (the record keeps runc's root and the container id for an adopting kubelet).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import asdict, dataclass

from . import status as st

# $0 is the exit-code file, "$@" the container's argv.
_WRAPPER = 'trap : TERM INT; "$@"; rc=$?; echo "$rc" > "$0"; exit "$rc"'
UNKNOWN_EXIT = 137  # exit file missing: the wrapper itself was SIGKILLed


@dataclass(frozen=True, kw_only=True)
class ProcRecord:
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22, guards against pid reuse
    started_at: str
    runc_root: str = ""  # set for runc containers: `runc --root <runc_root> kill <runc_id>`
    runc_id: str = ""


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in ticks) of a process, None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return fields[0], int(fields[19])


class Proc:
    """One container process (our child, or adopted from a previous kubelet run)."""

    def __init__(self, record: ProcRecord, exit_path: str, popen: subprocess.Popen[bytes] | None) -> None:
        self.record = record
        self.exit_path = exit_path
        self._popen = popen

    @classmethod
    def spawn(cls, argv: list[str], env: dict[str, str], cwd: str, log_path: str,
              exit_path: str, started_at: str, runc: tuple[str, str] = ("", "")) -> Proc:
        """Start argv; OSError (e.g. missing binary) propagates to the caller."""
        if os.path.exists(exit_path):
            os.unlink(exit_path)
        with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
            popen = subprocess.Popen(["/bin/sh", "-c", _WRAPPER, exit_path, *argv], env=env, cwd=cwd,
                                     stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True)
        info = _stat(popen.pid)
        record = ProcRecord(pid=popen.pid, start_ticks=info[1] if info else 0, started_at=started_at,
                            runc_root=runc[0], runc_id=runc[1])
        return cls(record, exit_path, popen)

    @classmethod
    def adopt(cls, record: ProcRecord, exit_path: str) -> Proc | None:
        """The process from a previous kubelet run, if it still runs (same pid, same start)."""
        info = _stat(record.pid)
        if info is None or info[0] in ("Z", "X") or info[1] != record.start_ticks:
            return None
        return cls(record, exit_path, None)

    def poll(self) -> int | None:
        """None while running, else the container's exit code (128+N for signal N)."""
        if self._popen is not None:
            rc = self._popen.poll()
            if rc is None:
                return None
            return self._exit_file() if self._exit_file() is not None else st.exit_code_of(rc)
        reaped = self._reap()
        if reaped is not None:
            return reaped
        info = _stat(self.record.pid)
        if info is not None and info[0] not in ("Z", "X") and info[1] == self.record.start_ticks:
            return None
        code = self._exit_file()
        return UNKNOWN_EXIT if code is None else code

    def _reap(self) -> int | None:
        """After the kubelet re-executed itself its old children are still ours to wait() for."""
        try:
            pid, status = os.waitpid(self.record.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == 0:
            return None
        code = self._exit_file()
        return code if code is not None else st.exit_code_of(os.waitstatus_to_exitcode(status))

    def _exit_file(self) -> int | None:
        try:
            with open(self.exit_path, encoding="ascii") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def signal(self, sig: signal.Signals) -> None:
        """Signal the container's whole process group (its session leader is the wrapper)."""
        if sig == signal.SIGKILL and self.record.runc_id:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["runc", "--root", self.record.runc_root, "kill", self.record.runc_id, "KILL"],
                               capture_output=True, timeout=10, check=False)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.record.pid, sig)


def save_state(path: str, state: dict[str, object]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def load_state(path: str) -> dict[str, object]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_dict(record: ProcRecord) -> dict[str, object]:
    return asdict(record)


def record_from(data: object) -> ProcRecord | None:
    if not isinstance(data, dict):
        return None
    try:
        return ProcRecord(pid=int(data["pid"]), start_ticks=int(data["start_ticks"]),
                          started_at=str(data["started_at"]), runc_root=str(data.get("runc_root", "")),
                          runc_id=str(data.get("runc_id", "")))
    except (KeyError, TypeError, ValueError):
        return None
