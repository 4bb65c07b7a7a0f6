"""The Pods bound to this node: one worker thread per Pod, status written back truthfully.

Where it sits: kubelet.py feeds `PodManager.sync()` with the Pod informer's snapshot
(fieldSelector spec.nodeName=NODE).  Each `PodWorker` prepares the Pod's directory
`<state-dir>/pods/<ns>_<name>_<uid8>/` (container logs `<container>.log`, state, nginx
config, the ServiceAccount kubeconfig), steps its `ContainerRunner`s every TICK seconds
and patches the Pod's status subresource when it changed.  On deletionTimestamp it sends
SIGTERM, waits the grace period (capped at GRACE_CAP), sends SIGKILL, then deletes the Pod
object with gracePeriodSeconds=0, as a real kubelet does.  All containers share the node's
network namespace, so podIP = hostIP = node IP.  Not supported: init containers, volumes
(the processes see the host filesystem), resource limits, `kubectl logs/exec`.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from .kubelet import api, images, tokens
from .kubelet import container as kc
from .kubelet import events as events_mod
from .kubelet import process as proc
from .kubelet import status as st

log = logging.getLogger("kubelet.pods")

TICK = 1.0
GRACE_CAP = 30
NGINX_PAGES = ("/usr/share/nginx/html/index.html", "/var/www/html/index.nginx-debian.html")
FALLBACK_PAGE = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n" \
                "<body><h1>Welcome to nginx!</h1></body></html>\n"


@dataclass(frozen=True, kw_only=True)
class NodeContext:
    """What every Pod worker of this node shares."""

    node: str
    ipv4: str
    ipv6: str
    repo: str
    state_dir: str
    api_client: client.ApiClient
    cluster: tuple[str, str]  # (server, CA data) for Pod kubeconfigs
    backoff: tuple[float, float]  # (base, cap) seconds of CrashLoopBackOff
    events: events_mod.Recorder | None = None

    def pod_dir(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        return os.path.join(self.state_dir, "pods", f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}")


class PodWorker:
    """Runs one Pod until it is deleted; all its API writes carry a timeout."""

    def __init__(self, ctx: NodeContext, pod: dict[str, Any]) -> None:
        self.ctx = ctx
        self.uid = pod["metadata"]["uid"]
        self.label = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        self._pod = pod
        self._lock = threading.Lock()
        self._gone = False  # the API object vanished (force deletion): just stop
        self.finished = threading.Event()
        self.dir = ctx.pod_dir(pod)
        os.makedirs(self.dir, exist_ok=True)
        self._core = client.CoreV1Api(ctx.api_client)
        self._creds = self._credentials(pod)
        self._runners = [kc.ContainerRunner(c, self.dir, pod["spec"].get("restartPolicy", "Always"),
                                            self.uid[:8], ctx.backoff) for c in pod["spec"]["containers"]]
        was_ready = {c["name"]: c.get("ready", False)
                     for c in (pod.get("status") or {}).get("containerStatuses") or []}
        for runner in self._runners:
            runner.keep_readiness(was_ready.get(runner.name, False))
            if ctx.events is not None:
                runner.notify = functools.partial(self._event, runner.name)
        self._start_time = (pod.get("status") or {}).get("startTime") or api.now_rfc3339()
        self._sent: st.JSON | None = None
        self._conditions = (pod.get("status") or {}).get("conditions")
        self._kill_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.label}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _event(self, container: str, reason: str, message: str, warning: bool) -> None:
        if self.ctx.events is not None:
            self.ctx.events.pod_event(self._pod, reason, message, warning, container)

    def update(self, pod: dict[str, Any]) -> None:
        with self._lock:
            self._pod = pod

    def gone(self) -> None:
        with self._lock:
            self._gone = True

    def _credentials(self, pod: dict[str, Any]) -> tokens.PodCredentials | None:
        if pod["spec"].get("automountServiceAccountToken") is False:
            return None
        return tokens.PodCredentials(self._core, self.ctx.cluster, pod, self.dir)

    def _run(self) -> None:
        log.info("%s: worker started (dir %s)", self.label, self.dir)
        while not self.finished.is_set():
            try:
                self._tick()
            except (api.ApiException, api.ApiUnavailable) as exc:
                log.warning("%s: %s", self.label, api.describe(exc))
            except Exception:  # a worker must never die silently and orphan its Pod
                log.exception("%s: unexpected error in pod worker", self.label)
            self.finished.wait(TICK)
        log.info("%s: worker finished", self.label)

    def _tick(self) -> None:
        with self._lock:
            pod, gone = self._pod, self._gone
        now, now_iso = time.time(), api.now_rfc3339()
        if gone:
            self._kill_all(signal.SIGKILL)
            self.finished.set()
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._terminate(pod, now, now_iso)
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and self._sent is None:
            return  # finished before this kubelet started: nothing to run, nothing to report
        if self._creds is not None and os.path.exists(self._creds.path):
            self._creds.ensure(now)  # renews the token before it expires
        for runner in self._runners:
            runner.probe_ip = self.ctx.ipv4
            runner.step(lambda r=runner: self._launch(pod, r.spec), now, now_iso)
        self._report(pod, now_iso)

    # -- starting ---------------------------------------------------------------------
    def _launch(self, pod: dict[str, Any], container: dict[str, Any]) -> kc.Launch:
        kind = images.image_kind(container.get("image", ""))
        if kind is images.ImageKind.UNSUPPORTED:
            return kc.unsupported(container.get("image", ""))
        try:
            env = images.default_env(pod, kind)
            if kind is images.ImageKind.AGENT and self._creds is not None:
                if not self._creds.ensure(time.time()):
                    return kc.Launch(argv=[], env={}, cwd="", waiting_reason="CreateContainerConfigError",
                                     waiting_message="no ServiceAccount token yet (TokenRequest failed)")
                env["KUBECONFIG"] = self._creds.path
            env.update(images.resolve_env(container, self._with_ips(pod), self._lookup))
        except (ValueError, api.ApiException, api.ApiUnavailable) as exc:
            return kc.Launch(argv=[], env={}, cwd="", waiting_reason="CreateContainerConfigError",
                             waiting_message=str(exc))
        if kind is images.ImageKind.AGENT:
            argv = images.agent_argv(container, self.ctx.repo, env)
        else:
            argv = self._prepare_nginx(container)
        cwd = container.get("workingDir") or self.dir
        return kc.Launch(argv=argv, env=env, cwd=cwd if os.path.isdir(cwd) else self.dir, pod=pod)

    def _with_ips(self, pod: dict[str, Any]) -> dict[str, Any]:
        ips = [{"ip": ip} for ip in (self.ctx.ipv4, self.ctx.ipv6)]
        status = {**(pod.get("status") or {}), "podIP": self.ctx.ipv4, "hostIP": self.ctx.ipv4,
                  "podIPs": ips, "hostIPs": ips}
        return {**pod, "status": status}

    def _lookup(self, kind: str, ns: str, name: str, key: str | None) -> Any:
        """ConfigMap/Secret data for env; a key's value, or the whole map when key is None."""
        read = self._core.read_namespaced_config_map if kind == "configMapKeyRef" else \
            self._core.read_namespaced_secret
        try:
            obj = api.call(read, name, ns)
        except api.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = dict(obj.get("data") or {})
        if kind == "secretKeyRef":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        return data if key is None else data.get(key)

    def _prepare_nginx(self, container: dict[str, Any]) -> list[str]:
        html = os.path.join(self.dir, "html")
        os.makedirs(html, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "nginx-tmp"), exist_ok=True)
        index = os.path.join(html, "index.html")
        if not os.path.exists(index):
            page = next((p for p in NGINX_PAGES if os.path.exists(p)), None)
            if page:
                shutil.copyfile(page, index)
            else:
                with open(index, "w", encoding="utf-8") as f:
                    f.write(FALLBACK_PAGE)
        conf = os.path.join(self.dir, f"{container['name']}.nginx.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(images.nginx_config(self.dir, images.container_ports(container)))
        return images.nginx_argv(self.dir, conf)

    # -- reporting ----------------------------------------------------------------------
    def _report(self, pod: dict[str, Any], now_iso: str) -> None:
        status = st.pod_status(views=[r.view() for r in self._runners], ipv4=self.ctx.ipv4,
                               ipv6=self.ctx.ipv6, start_time=self._start_time, now=now_iso,
                               previous_conditions=self._conditions)
        if self._sent is not None and st.comparable(status) == st.comparable(self._sent):
            return
        body = {"metadata": {"uid": self.uid}, "status": status}
        api.merge_patch(self._core.patch_namespaced_pod_status, pod["metadata"]["name"],
                        pod["metadata"]["namespace"], body=body)
        if self._sent is None or status["phase"] != self._sent["phase"]:
            log.info("%s: phase %s", self.label, status["phase"])
        self._sent, self._conditions = status, status["conditions"]

    # -- stopping -------------------------------------------------------------------------
    def _terminate(self, pod: dict[str, Any], now: float, now_iso: str) -> None:
        for runner in self._runners:
            runner.step(None, now, now_iso)
        if not self._kill_at:
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            self._kill_at = now + min(int(grace), GRACE_CAP)
            log.info("%s: deleting: SIGTERM, SIGKILL in %ds", self.label, int(self._kill_at - now))
            for runner in self._runners:
                if runner.running():
                    self._event(runner.name, "Killing", f"Stopping container {runner.name}", False)
            self._kill_all(signal.SIGTERM)
        elif now >= self._kill_at:
            self._kill_all(signal.SIGKILL)
        if any(r.running() for r in self._runners):
            return
        self._delete(pod)

    def _delete(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        try:
            api.call(self._core.delete_namespaced_pod, meta["name"], meta["namespace"], body=body)
        except api.ApiException as exc:
            if exc.status not in (404, 409):
                raise
        log.info("%s: containers stopped, Pod object deleted", self.label)
        self.finished.set()

    def _kill_all(self, sig: signal.Signals) -> None:
        for runner in self._runners:
            runner.signal(sig)


class PodManager:
    """Keeps one worker per Pod bound to this node; reaps what the API no longer has."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._workers: dict[str, PodWorker] = {}  # pod uid -> worker
        self._finished: set[str] = set()  # uids whose worker is done but the watch still lists
        self._lock = threading.Lock()
        self._cleaned = False

    def sync(self, pods: list[dict[str, Any]]) -> None:
        """Reconcile workers with the informer's snapshot (called from the informer thread)."""
        mine = {p["metadata"]["uid"]: p for p in pods if p.get("spec", {}).get("nodeName") == self.ctx.node}
        with self._lock:
            for uid, worker in list(self._workers.items()):
                if worker.finished.is_set():
                    del self._workers[uid]
                    self._finished.add(uid)
                elif uid not in mine:
                    worker.gone()
            self._finished &= set(mine)
            for uid, pod in mine.items():
                if uid in self._workers:
                    self._workers[uid].update(pod)
                elif uid not in self._finished:
                    worker = PodWorker(self.ctx, pod)
                    self._workers[uid] = worker
                    worker.start()
            if not self._cleaned:
                self._cleaned = True
                self._kill_orphans(set(mine))

    def _kill_orphans(self, uids: set[str]) -> None:
        """Processes of Pods deleted while the kubelet was down must not live on."""
        root = os.path.join(self.ctx.state_dir, "pods")
        if not os.path.isdir(root):
            return
        prefixes = {u[:8] for u in uids}
        for entry in os.listdir(root):
            if entry.rsplit("_", 1)[-1] in prefixes:
                continue
            for name in os.listdir(os.path.join(root, entry)):
                if not name.endswith(".state.json"):
                    continue
                data = proc.load_state(os.path.join(root, entry, name))
                record = proc.record_from(data.get("proc"))
                running = proc.Proc.adopt(record, "") if record else None
                if running is not None:
                    log.info("killing orphan process %d of deleted pod dir %s", record.pid, entry)
                    running.signal(signal.SIGKILL)
