"""One container of one Pod: start it, watch it, probe it, restart it with back-off.

Where it sits: pods.py's PodWorker owns one `ContainerRunner` per container and calls
`step()` on every tick, then `view()` to build the Pod status.  The runner persists its
state (process record, restart count, last termination) to `<pod dir>/<name>.state.json`
so a restarted kubelet adopts running processes instead of starting them twice, and
restarts those that vanished while it was down.  l2lb-agent containers run under runc
(runtime.py) unless main.py chose the process runtime; a container that runc or the
securityContext refuses stays Waiting with the kubelet's reason, one that exits reports its
termination message (terminationMessagePath, or the log's tail with FallbackToLogsOnError).
It does not run init containers, start probes or lifecycle hooks (the lab's Pods have none).
"""

from __future__ import annotations

import calendar
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import images, oci, probe, runtime
from . import process as proc
from . import status as st

log = logging.getLogger("kubelet.container")

STABLE_SECONDS = 600  # a container that ran this long starts its back-off afresh
CONFIG_RETRY = 5.0  # seconds between tries of a container the runtime refused
LOG_TAIL_BYTES = 16384
_runtime: runtime.Runc | None = None  # set once by main.py before any Pod starts; None: processes


def use_runtime(chosen: runtime.Runc | None) -> None:
    """Run l2lb-agent containers with runc (`chosen`) or, with None, as checkout processes."""
    global _runtime
    _runtime = chosen


@dataclass(frozen=True, kw_only=True)
class Launch:
    """What the Pod worker decided this container runs, or why it cannot."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    waiting_reason: str = ""  # non-empty: do not start, stay Waiting with this reason
    waiting_message: str = ""
    pod: dict[str, Any] | None = None  # the Pod, for the container runtime (securityContext, volumes)


class ContainerRunner:
    """State machine Waiting -> Running -> Terminated (-> Waiting CrashLoopBackOff -> Running)."""

    def __init__(self, spec: dict[str, Any], pod_dir: str, restart_policy: str, uid8: str,
                 backoff: tuple[float, float]) -> None:
        self.spec = spec
        self.name = spec["name"]
        self.pod_dir = pod_dir
        self.restart_policy = restart_policy
        self._uid8 = uid8
        self._backoff = backoff  # (base, cap) seconds
        self.log_path = os.path.join(pod_dir, f"{self.name}.log")
        self._state_path = os.path.join(pod_dir, f"{self.name}.state.json")
        self._exit_path = os.path.join(pod_dir, f"{self.name}.exit")
        self.proc: proc.Proc | None = None
        agent = images.image_kind(spec.get("image", "")) is images.ImageKind.AGENT
        self._runc = _runtime is not None and agent
        self.state: st.JSON = st.waiting("ContainerCreating")
        self.last_state: st.JSON = {}
        self.restart_count = 0
        self.crashes = 0
        self.next_start = 0.0  # wall clock; back-off ends here
        self.done = False  # terminated for good (restartPolicy says so)
        self.readiness: probe.Prober | None = None
        self.liveness: probe.Prober | None = None
        self.kill_at = 0.0  # liveness failure: SIGKILL at this time if still running
        self.terminating = False
        self.probe_ip = ""  # set by the Pod worker: where probes connect, what exec probes get
        self.probe_env: dict[str, str] = {}
        self.notify: Callable[[str, str, bool], None] = lambda reason, message, warning: None  # Events
        self._load()

    # -- persistence -------------------------------------------------------------
    def _load(self) -> None:
        data = proc.load_state(self._state_path)
        if not data:
            return
        self.restart_count = int(data.get("restart_count", 0))
        self.crashes = int(data.get("crashes", 0))
        self.last_state = data.get("last_state") or {}
        self.next_start = float(data.get("next_start", 0.0))
        self.done = bool(data.get("done", False))
        if self.done and isinstance(data.get("state"), dict):
            self.state = data["state"]
        record = proc.record_from(data.get("proc"))
        if record is None:
            return
        self.proc = proc.Proc.adopt(record, self._exit_path)
        if self.proc is not None:
            log.info("%s: adopted running process %d", self.name, record.pid)
            self.state = st.running(record.started_at)
            self._arm_probes(time.monotonic())
        else:
            # Vanished while the kubelet was down: account for it like any exit.
            self.proc = proc.Proc(record, self._exit_path, None)

    def _save(self) -> None:
        proc.save_state(self._state_path, {
            "proc": proc.record_dict(self.proc.record) if self.proc else None,
            "restart_count": self.restart_count,
            "crashes": self.crashes,
            "last_state": self.last_state,
            "next_start": self.next_start,
            "done": self.done,
            "state": self.state,
        })

    # -- the loop ------------------------------------------------------------------
    def step(self, launch: Callable[[], Launch] | None, now: float, now_iso: str) -> None:
        """Advance the state machine once; `launch` (called only to start) is None while terminating."""
        self.terminating = launch is None
        if self.proc is not None:
            self._check_running(now_iso)
        elif launch is not None and not self.done and now >= self.next_start:
            self._start(launch(), now_iso)

    def _start(self, launch: Launch, now_iso: str) -> None:
        if launch.waiting_reason:
            new = st.waiting(launch.waiting_reason, launch.waiting_message)
            if new != self.state:
                self.notify("Failed", launch.waiting_message, True)
            self.state = new
            return
        runc = ("", "")
        if self._runc and launch.pod is not None and _runtime is not None:
            run_id = f"{self._uid8}-{self.name}-{self.restart_count}"
            try:
                argv = _runtime.prepare(pod=launch.pod, container=self.spec, env=launch.env,
                                        pod_dir=self.pod_dir, run_id=run_id)
            except oci.SpecError as exc:
                self.next_start = time.time() + CONFIG_RETRY
                self._start(Launch(argv=[], env={}, cwd="", waiting_reason=exc.reason,
                                   waiting_message=str(exc)), now_iso)
                return
            launch = Launch(argv=argv, env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
                            cwd=self.pod_dir)
            runc = (_runtime.root, run_id)
        try:
            self.proc = proc.Proc.spawn(launch.argv, launch.env, launch.cwd, self.log_path, self._exit_path,
                                        now_iso, runc=runc)
        except OSError as exc:
            log.warning("%s: cannot start %s: %s", self.name, launch.argv[0], exc)
            self.state = st.waiting("RunContainerError", f"cannot start {launch.argv[0]}: {exc}")
            self._after_exit(128, now_iso, now_iso)
            return
        self.probe_env = launch.env
        self.notify("Started", f"Started container {self.name}", False)
        log.info("%s: started pid %d: %s", self.name, self.proc.record.pid, " ".join(launch.argv))
        self.state = st.running(now_iso)
        self._arm_probes(time.monotonic())
        self._save()

    def _check_running(self, now_iso: str) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is None:
            self._probe(time.monotonic())
            return
        started = self.proc.record.started_at
        log.info("%s: process %d exited with %d", self.name, self.proc.record.pid, code)
        self.proc = None
        self._after_exit(code, started, now_iso)

    def _after_exit(self, code: int, started: str, finished: str) -> None:
        term = self._terminated(code, started, finished)
        self.readiness = self.liveness = None
        self.kill_at = 0.0
        restart = self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)
        restart = restart and not self.terminating
        if not restart:
            self.state, self.done = term, True
            self._save()
            return
        ran = time.time() - _parse_time(started)
        self.crashes = 1 if ran >= STABLE_SECONDS else self.crashes + 1
        delay = st.backoff_seconds(self.crashes, *self._backoff)
        self.next_start = time.time() + delay
        self.last_state = term
        self.restart_count += 1
        self.state = st.waiting("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container="
                                f"{self.name} ({self.container_id()})")
        self.notify("BackOff", f"Back-off {delay:.0f}s restarting failed container {self.name} "
                    f"(exit code {code})", True)
        self._save()

    def _terminated(self, code: int, started: str, finished: str) -> st.JSON:
        """The terminated state with a kubelet's reason and message."""
        if self._runc:
            failed = runtime.start_error(os.path.join(self.pod_dir, f"{self.name}.runc.log"))
            if failed:  # runc could not start the process: the container never ran
                return st.terminated(128, started, finished, self.container_id(), reason="StartError",
                                     message=failed)
        message = st.termination_message(
            _tail(os.path.join(self.pod_dir, f"{self.name}.termination-log")), _tail(self.log_path),
            self.spec.get("terminationMessagePolicy", "File"), code)
        return st.terminated(code, started, finished, self.container_id(), message=message)

    # -- probes ----------------------------------------------------------------------
    def _arm_probes(self, now: float) -> None:
        r, lv = self.spec.get("readinessProbe"), self.spec.get("livenessProbe")
        self.readiness = probe.Prober(r, now, initial=False) if r else None
        self.liveness = probe.Prober(lv, now, initial=True) if lv else None

    def _probe(self, now: float) -> None:
        if self.kill_at and now >= self.kill_at and self.proc is not None:
            self.proc.signal(signal.SIGKILL)
            return
        for prober, kind in ((self.readiness, "readiness"), (self.liveness, "liveness")):
            if prober is None or not prober.due(now):
                continue
            ok = probe.run_probe(prober.spec, self.spec, self.probe_ip, self.probe_env, self.pod_dir)
            before = prober.result
            after = prober.record(ok, time.monotonic())
            if before != after:
                log.info("%s: %s probe now %s", self.name, kind, "passing" if after else "failing")
                if not after:
                    self.notify("Unhealthy", f"{kind.capitalize()} probe failed", True)
            if kind == "liveness" and not after and not self.kill_at and self.proc is not None:
                self.notify("Killing", f"Container {self.name} failed liveness probe, will restart", False)
                self.proc.signal(signal.SIGTERM)
                self.kill_at = now + 30

    def keep_readiness(self, ready: bool) -> None:
        """An adopted process keeps the readiness the API last saw (no flap on kubelet restart)."""
        if self.proc is not None and self.readiness is not None and "running" in self.state:
            self.readiness.result = ready
            self.readiness.next_at = time.monotonic()

    # -- shutdown and reporting ------------------------------------------------------------
    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            self.proc.signal(sig)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def container_id(self) -> str:
        return f"{'runc' if self._runc else 'lab'}://{self._uid8}-{self.name}-{self.restart_count}"

    def ready(self) -> bool:
        if self.proc is None or "running" not in self.state:
            return False
        return self.readiness.result if self.readiness else True

    def view(self) -> st.ContainerView:
        return st.ContainerView(
            name=self.name,
            image=self.spec.get("image", ""),
            state=self.state,
            last_state=self.last_state,
            restart_count=self.restart_count,
            ready=self.ready(),
            container_id=self.container_id() if self.proc or "terminated" in self.state else "",
            will_restart=not self.done,
        )


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _parse_time(text: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (ValueError, TypeError):
        return time.time()


def unsupported(image: str) -> Launch:
    return Launch(argv=[], env={}, cwd="", waiting_reason=images.UNSUPPORTED_REASON,
                  waiting_message=images.UNSUPPORTED_MESSAGE.format(image=image))
