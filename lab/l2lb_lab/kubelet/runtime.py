"""The container runtime of the lab kubelet: l2lb-agent containers run from the image under runc.

Where it sits: main.py picks the runtime once at start (env L2LB_LAB_RUNTIME: `runc`, the
default, or `process`, the agent from the checkout's .venv as a plain process) and hands it
to container.py.  For each start of an agent container, `Runc.prepare()`:
  1. makes sure the image is current: `scripts/build-image.sh --quiet` (a no-op in well under
     a second when files/agent did not change; the base is cached per user), then unpacks the
     OCI layout once per manifest digest with umoci into build/image/rootfs/<digest>/;
  2. renders config.json (oci.py) from the Pod, the image config and the default seccomp
     profile, into <pod dir>/<container>.bundle/;
  3. returns the argv that process.py runs: `runc run` in the foreground, so runc forwards
     signals, its exit status is the container's, and the container's stdout/stderr go to the
     container's log file (where `lab logs` reads it).
The container joins the node's network namespace (the kubelet's own, found in /run/netns);
its processes are ordinary host pids (in a pid namespace of their own, as in a cluster).
nginx Pods stay host processes.  Not guaranteed: image pulls (only the locally built
l2lb-agent image exists), OOMKilled as a reason (an OOM kill reports exit code 137).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from . import oci

RUNTIME_ENV = "L2LB_LAB_RUNTIME"
RUNC, PROCESS = "runc", "process"
DEFAULT = RUNC
SECCOMP_PROFILE = "/usr/share/containers/seccomp.json"  # containers-common's default (CRI-O, podman)
BUILD_TIMEOUT = 900  # a cold base build downloads Debian and PyPI packages
KEEP_ROOTFS = 4  # unpacked image versions kept (running containers may still use older ones)
CGROUP_PARENT = "l2lb-lab"  # containers' cgroups: <the kubelet's cgroup>/l2lb-lab/<node>/<run id>


def selected(environ: dict[str, str] | None = None) -> str:
    """The runtime named by L2LB_LAB_RUNTIME; ValueError names the variable and value."""
    value = (environ if environ is not None else os.environ).get(RUNTIME_ENV, DEFAULT) or DEFAULT
    if value not in (RUNC, PROCESS):
        raise ValueError(f"{RUNTIME_ENV}: must be {RUNC!r} or {PROCESS!r}, got {value!r}")
    return value


def version(chosen: str) -> str:
    """containerRuntimeVersion for the Node: runc://<runc's version>, or lab://0.1 for processes."""
    if chosen != RUNC:
        return "lab://0.1"
    try:
        out = subprocess.run(["runc", "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except OSError:
        return "runc://unknown"
    first = out.split("\n", 1)[0].split()
    return f"runc://{first[2] if len(first) > 2 else 'unknown'}"


@dataclass(frozen=True, kw_only=True)
class Image:
    digest: str  # manifest digest
    config: dict[str, Any]  # the image config blob
    rootfs: str
    passwd: str
    group: str


class ImageStore:
    """The locally built l2lb-agent image, rebuilt when files/agent changed, unpacked per digest."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self.dir = os.path.join(repo, "build", "image")
        self._images: dict[str, Image] = {}  # manifest digest -> unpacked image

    def current(self) -> Image:
        build = subprocess.run([os.path.join(self.repo, "scripts", "build-image.sh"), "--quiet"],
                               capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
        if build.returncode != 0:
            raise oci.SpecError(f"building the l2lb-agent image failed: {build.stderr.strip()[-500:]}",
                                reason="ErrImagePull")
        layout = os.path.join(self.dir, "oci")
        index = _read_json(os.path.join(layout, "index.json"))
        manifest = index["manifests"][0]
        digest = manifest["digest"]
        if digest not in self._images:
            tag = manifest.get("annotations", {}).get("org.opencontainers.image.ref.name", "latest")
            config = _read_json(_blob(layout, _read_json(_blob(layout, digest))["config"]["digest"]))
            rootfs = self._unpack(layout, tag, digest)
            self._images[digest] = Image(digest=digest, config=config, rootfs=rootfs,
                                         passwd=_read(os.path.join(rootfs, "etc/passwd")),
                                         group=_read(os.path.join(rootfs, "etc/group")))
        return self._images[digest]

    def _unpack(self, layout: str, tag: str, digest: str) -> str:
        root = os.path.join(self.dir, "rootfs")
        bundle = os.path.join(root, digest.split(":")[-1][:16])
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # three kubelets may unpack at once
            if not os.path.isdir(os.path.join(bundle, "rootfs")):
                tmp = f"{bundle}.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", tmp], check=True,
                               capture_output=True, timeout=300)
                os.rename(tmp, bundle)
                _prune(root, keep=bundle)
            os.utime(bundle)
        return os.path.join(bundle, "rootfs")


def _prune(root: str, keep: str) -> None:
    bundles = sorted((os.path.join(root, n) for n in os.listdir(root) if not n.startswith(".")),
                     key=os.path.getmtime, reverse=True)
    for old in bundles[KEEP_ROOTFS:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _blob(layout: str, digest: str) -> str:
    algo, hexdigest = digest.split(":", 1)
    return os.path.join(layout, "blobs", algo, hexdigest)


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def own_netns() -> str | None:
    """/run/netns/<name> of the network namespace this process is in, if it has a name."""
    mine = os.stat("/proc/self/ns/net").st_ino
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir("/run/netns")):
            path = os.path.join("/run/netns", name)
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == mine:
                    return path
    return None


def cgroup_mounts(proc_self_cgroup: str) -> list[tuple[str, str, str]]:
    """(fstype, options, mountpoint) for each hierarchy this process is in (pure).

    `ip netns exec` mounts a fresh sysfs on /sys in the kubelet's own mount namespace, which
    hides /sys/fs/cgroup; runc needs the hierarchies back, mounted as the host has them.
    """
    v1 = []
    unified = False
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and not parts[1]:
            unified = True
        elif parts[1]:
            point = parts[1].removeprefix("name=")
            v1.append(("cgroup", parts[1], f"/sys/fs/cgroup/{point}"))
    if v1:
        return [("tmpfs", "mode=755", "/sys/fs/cgroup"), *v1]
    return [("cgroup2", "", "/sys/fs/cgroup")] if unified else []


def cgroup_parents(proc_self_cgroup: str) -> list[str]:
    """The l2lb-lab cgroup directory under this process's cgroup, in every hierarchy (pure)."""
    own = {}
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            own[parts[1]] = parts[2]
    return [os.path.join(point, own[options if fstype == "cgroup" else ""].lstrip("/"), CGROUP_PARENT)
            for fstype, options, point in cgroup_mounts(proc_self_cgroup) if fstype != "tmpfs"]


def ensure_cgroups() -> None:
    """Mount the cgroup hierarchies in this mount namespace unless some are there already."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        if any(" - cgroup" in line for line in f):
            return
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        wanted = cgroup_mounts(f.read())
    for fstype, options, point in wanted:
        os.makedirs(point, exist_ok=True)
        argv = ["mount", "-t", fstype, *(["-o", options] if options else []), fstype, point]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)


def _kernel() -> tuple[int, int]:
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


class Runc:
    """Prepares runc bundles for one node's containers (state under <state-dir>/runc)."""

    def __init__(self, repo: str, state_dir: str) -> None:
        self.node = os.path.basename(os.path.normpath(state_dir))  # <repo>/.lab/nodes/<node>
        self.root = os.path.join(state_dir, "runc")
        self.images = ImageStore(repo)
        self.netns = own_netns()
        self._seccomp: dict[str, Any] | None = None
        self._cgroups = False

    def prepare(self, *, pod: dict[str, Any], container: dict[str, Any], env: dict[str, str],
                pod_dir: str, run_id: str) -> list[str]:
        """The bundle for this start of the container and the argv that runs it; SpecError if refused."""
        if not self._cgroups:
            try:
                ensure_cgroups()
            except (OSError, subprocess.CalledProcessError) as exc:
                raise oci.SpecError(f"cannot mount the cgroup hierarchies for runc: {exc}",
                                    reason="RunContainerError") from exc
            self._cgroups = True
        image = self.images.current()
        user = oci.parse_user((image.config.get("config") or {}).get("User", ""), image.passwd, image.group)
        sec = oci.security(pod, container, user, image.passwd)
        env = oci.image_env(image.config, {k: v for k, v in env.items() if k != "KUBECONFIG"})
        name = container["name"]
        bundle = os.path.join(pod_dir, f"{name}.bundle")
        os.makedirs(bundle, exist_ok=True)
        mounts = oci.volume_mounts(pod, container, sa_dir=os.path.join(pod_dir, "serviceaccount"),
                                   pod_dir=pod_dir)
        for m in mounts:
            os.makedirs(m.source, exist_ok=True)
        term_log = os.path.join(pod_dir, f"{name}.termination-log")
        with open(term_log, "w", encoding="utf-8"):
            pass
        os.chmod(term_log, 0o666)  # the container's user writes it, whatever its uid
        spec = oci.render(
            sec=sec, args=oci.process_args(container, image.config, env), env=env,
            cwd=container.get("workingDir") or (image.config.get("config") or {}).get("WorkingDir") or "/",
            rootfs=image.rootfs if sec.readonly_root else self._writable_root(image.rootfs, bundle),
            mounts=mounts, netns=self.netns,
            hostname=None if (pod.get("spec") or {}).get("hostNetwork") else pod["metadata"]["name"],
            cgroups_path=f"{CGROUP_PARENT}/{self.node}/{run_id}",
            linux_resources=oci.resources(container),
            seccomp=self._seccomp_for(sec) if sec.seccomp == "RuntimeDefault" else None,
            termination_log=term_log)
        with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=1)
        self._delete_stale(run_id.rsplit("-", 1)[0])
        runc_log = os.path.join(pod_dir, f"{name}.runc.log")
        with open(runc_log, "w", encoding="utf-8"):
            pass  # start_error() reads this run's errors only
        return ["runc", "--root", self.root, "--log", runc_log,
                "--log-format", "json", "run", "--bundle", bundle, run_id]

    def _seccomp_for(self, sec: oci.Security) -> dict[str, Any]:
        if self._seccomp is None:
            try:
                self._seccomp = _read_json(SECCOMP_PROFILE)
            except (OSError, ValueError) as exc:
                raise oci.SpecError(f"seccompProfile RuntimeDefault: cannot read {SECCOMP_PROFILE}: {exc} "
                                    "(Debian package golang-github-containers-common)") from exc
        return oci.seccomp_profile(self._seccomp, sec.caps, kernel=_kernel())

    def _writable_root(self, lower: str, bundle: str) -> str:
        """readOnlyRootFilesystem false: an overlay whose upper layer lives in the bundle."""
        merged, upper, work = (os.path.join(bundle, n) for n in ("rootfs", "upper", "work"))
        if os.path.ismount(merged):
            subprocess.run(["umount", merged], check=False, capture_output=True)
        for d in (merged, upper, work):
            os.makedirs(d, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={upper},workdir={work}", merged],
                       check=True, capture_output=True, timeout=30)
        return merged

    def _delete_stale(self, prefix: str) -> None:
        """Earlier runs of this container that runc still records, or their cgroups (runc was killed)."""
        with contextlib.suppress(OSError):
            for cid in os.listdir(self.root):
                if cid.startswith(f"{prefix}-"):
                    subprocess.run(["runc", "--root", self.root, "delete", "--force", cid],
                                   check=False, capture_output=True, timeout=30)
        self.sweep_cgroups(f"{prefix}-")

    def sweep_cgroups(self, prefix: str = "") -> None:
        """Remove this node's container cgroups left by killed runs (busy ones stay).

        main.py calls it with no prefix before any Pod starts, which cleans up after `lab
        node-down`/`lab down`; prepare() with the container's prefix before each start.
        """
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            parents = [os.path.join(p, self.node) for p in cgroup_parents(f.read())]
        for parent in parents:
            with contextlib.suppress(OSError):
                for name in os.listdir(parent):
                    path = os.path.join(parent, name)
                    if name.startswith(prefix) and os.path.isdir(path):
                        with contextlib.suppress(OSError):  # busy (still running): keep
                            os.rmdir(path)


def start_error(runc_log: str) -> str:
    """The last error runc itself logged (the container never ran), or ""."""
    message = ""
    with contextlib.suppress(OSError), open(runc_log, encoding="utf-8", errors="replace") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    message = str(entry.get("msg", ""))
    return message
