"""The OCI runtime spec (runc's config.json) of one container, rendered from its Pod: pure.

Where it sits: runtime.py reads the image config and the default seccomp profile, then calls
`security()` (the Pod's and the container's securityContext folded together, with the
kubelet's own refusals) and `render()`; it writes the result into the container's bundle.
What a CRI runtime (containerd, CRI-O) would hand runc, reduced to what the lab's Pods use:
user and groups, capabilities, no_new_privs, read-only root, seccomp RuntimeDefault (the
containers-common profile, as CRI-O and podman use), masked and read-only /proc paths, the
memory and CPU limits, the ServiceAccount token and emptyDir volumes, the termination log.
Not covered: privileged containers, AppArmor/SELinux, user namespaces, hostPath/configMap/
secret volumes, ambient capabilities (Kubernetes has none: a non-root process holds what it is
granted only in its bounding set, so it cannot use it). No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import images

JSON = dict[str, Any]
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TERMINATION_LOG = "/dev/termination-log"
CONFIG_ERROR = "CreateContainerConfigError"
# containerd's and CRI-O's default set, granted when the Pod says nothing about capabilities.
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")
ALL_CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
            "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
            "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
            "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
            "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
            "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


class SpecError(ValueError):
    """The container cannot be created as asked: Waiting with `reason`, the message says why."""

    def __init__(self, message: str, reason: str = CONFIG_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Security:
    """What the securityContext resolves to for one container."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    caps: tuple[str, ...]  # without the CAP_ prefix
    no_new_privs: bool
    readonly_root: bool
    seccomp: str  # "RuntimeDefault" or "Unconfined"


def _merged(pod: JSON, container: JSON) -> JSON:
    """Pod-level securityContext overlaid by the container's (the container wins per field)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    return {**pod_sc, **(container.get("securityContext") or {})}


def parse_user(user: str, passwd: str = "", group: str = "") -> tuple[int | None, int | None, str]:
    """The image's USER ("uid[:gid]" or names) as numbers, resolved in the image's /etc files.

    Returns (uid, gid, name); uid None means a name that /etc/passwd of the image lacks.
    """
    name, _, grp = (user or "0").partition(":")
    uid = int(name) if name.isdigit() else _lookup(passwd, name, 2)
    gid: int | None = int(grp) if grp.isdigit() else _lookup(group, grp, 2) if grp else None
    if gid is None and uid is not None:
        by_uid = {int(f[2]): int(f[3]) for f in _rows(passwd)
                  if len(f) > 3 and f[2].isdigit() and f[3].isdigit()}
        gid = by_uid.get(uid, 0)
    return uid, gid, name


def _rows(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _lookup(text: str, name: str, field: int) -> int | None:
    for row in _rows(text):
        if row[0] == name and len(row) > field and row[field].isdigit():
            return int(row[field])
    return None


def security(pod: JSON, container: JSON, image_user: tuple[int | None, int | None, str],
             passwd: str = "") -> Security:
    """Fold the securityContext with the image's user; SpecError where a kubelet refuses."""
    sc = _merged(pod, container)
    label = f'pod: "{pod["metadata"]["name"]}_{pod["metadata"]["namespace"]}({pod["metadata"]["uid"]})", ' \
            f'container: {container["name"]}'
    if sc.get("privileged"):
        raise SpecError(f"privileged containers are not run by the lab kubelet ({label})")
    if sc.get("windowsOptions") or (sc.get("seLinuxOptions") or {}).get("type"):
        raise SpecError(f"securityContext: windowsOptions/seLinuxOptions are not supported ({label})")
    image_uid, image_gid, image_name = image_user
    uid = sc.get("runAsUser", image_uid)
    if uid is None:
        raise SpecError(f"image user {image_name!r} is not in the image's /etc/passwd ({label})")
    if sc.get("runAsNonRoot"):
        if "runAsUser" not in sc and not image_name.isdigit():
            raise SpecError(f"container has runAsNonRoot and image has non-numeric user ({image_name}), "
                            f"cannot verify user is non-root ({label})")
        if uid == 0:
            raise SpecError(f"container has runAsNonRoot and image will run as root ({label})")
    if "runAsGroup" in sc:
        gid = sc["runAsGroup"]
    elif "runAsUser" in sc:  # the primary group of that uid in the image, as the CRI runtimes do
        gid = parse_user(str(uid), passwd)[1]
    else:
        gid = image_gid
    groups = sorted({*(sc.get("supplementalGroups") or []), *([sc["fsGroup"]] if "fsGroup" in sc else [])})
    return Security(uid=int(uid), gid=int(gid or 0), groups=tuple(int(g) for g in groups),
                    caps=capabilities(sc.get("capabilities") or {}),
                    no_new_privs=sc.get("allowPrivilegeEscalation") is False,
                    readonly_root=bool(sc.get("readOnlyRootFilesystem")),
                    seccomp=_seccomp_type(sc, label))


def capabilities(spec: JSON) -> tuple[str, ...]:
    """Default set, minus `drop` (ALL drops everything), plus `add` (ALL adds everything)."""
    names = {str(c).upper().removeprefix("CAP_") for c in spec.get("add") or []}
    drop = {str(c).upper().removeprefix("CAP_") for c in spec.get("drop") or []}
    for cap in names | drop - {"ALL"}:
        if cap != "ALL" and cap not in ALL_CAPS:
            raise SpecError(f"securityContext.capabilities: unknown capability {cap!r}")
    base = set() if "ALL" in drop else set(DEFAULT_CAPS) - drop
    caps = set(ALL_CAPS) if "ALL" in names else base | names
    return tuple(c for c in ALL_CAPS if c in caps)


def _seccomp_type(sc: JSON, label: str) -> str:
    kind = (sc.get("seccompProfile") or {}).get("type", "Unconfined")
    if kind not in ("RuntimeDefault", "Unconfined"):
        raise SpecError(f"seccompProfile.type {kind!r} is not supported by the lab kubelet ({label})")
    return kind


_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_FACTORS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
            "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def quantity(text: str | int | float, field: str) -> float:
    """A Kubernetes resource quantity ("256Mi", "0.5", "250m") as a number; SpecError names field."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise SpecError(f"{field}: not a quantity: {text!r}")
    return float(m.group(1)) * _FACTORS[m.group(2)]


def resources(container: JSON) -> JSON:
    """linux.resources from resources.limits/requests (memory in bytes, CPU as CFS quota/shares)."""
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    out: JSON = {"devices": [{"allow": False, "access": "rwm"}]}
    if "memory" in limits:
        mem = int(quantity(limits["memory"], "resources.limits.memory"))
        out["memory"] = {"limit": mem, "swap": mem}  # no swap beyond the limit, as the kubelet sets
    cpu: JSON = {}
    if "cpu" in limits:
        cores = quantity(limits["cpu"], "resources.limits.cpu")
        cpu.update(period=100000, quota=max(1000, int(cores * 100000)))
    cpu_request = requests.get("cpu", limits.get("cpu"))
    if cpu_request is not None:
        cpu["shares"] = max(2, int(quantity(cpu_request, "resources.requests.cpu") * 1024))
    if cpu:
        out["cpu"] = cpu
    return out


def process_args(container: JSON, image_config: JSON, env: dict[str, str]) -> list[str]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD; $(VAR) expanded."""
    cfg = image_config.get("config") or {}
    command = [images.expand(c, env) for c in container.get("command") or []]
    args = [images.expand(a, env) for a in container.get("args") or []]
    if command:
        argv = command + args
    else:
        argv = list(cfg.get("Entrypoint") or []) + (args or list(cfg.get("Cmd") or []))
    if not argv:
        raise SpecError(f"container {container['name']}: no command specified (image has no entrypoint)")
    return argv


def image_env(image_config: JSON, env: dict[str, str]) -> dict[str, str]:
    """The image's ENV first, then the Pod's (the Pod wins)."""
    items = (image_config.get("config") or {}).get("Env") or []
    base = dict(item.split("=", 1) for item in items if "=" in item)
    return {**base, **env}


def seccomp_profile(profile: JSON, caps: tuple[str, ...], arch: str = "amd64",
                    kernel: tuple[int, int] = (6, 0)) -> JSON:
    """containers-common's seccomp.json (Docker format) -> OCI linux.seccomp for these capabilities."""
    have = {f"CAP_{c}" for c in caps}
    native = next((a for a in profile.get("archMap") or [] if a["architecture"] == _SCMP_ARCH[arch]), None)
    arches = [native["architecture"], *native.get("subArchitectures", [])] if native else []
    rules = []
    for rule in profile.get("syscalls") or []:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if not _applies(inc, exc, have, arch, kernel):
            continue
        out = {"names": rule["names"], "action": rule["action"]}
        if rule.get("args"):
            out["args"] = rule["args"]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        rules.append(out)
    spec: JSON = {"defaultAction": profile["defaultAction"], "architectures": arches, "syscalls": rules}
    if profile.get("defaultErrnoRet") is not None:
        spec["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return spec


_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}


def _applies(inc: JSON, exc: JSON, have: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("caps") and not set(inc["caps"]) <= have:
        return False
    if inc.get("minKernel"):
        major, minor = (int(x) for x in inc["minKernel"].split(".")[:2])
        if kernel < (major, minor):
            return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    return not (exc.get("caps") and set(exc["caps"]) & have)


@dataclass(frozen=True, kw_only=True)
class Mount:
    """A bind mount from the node into the container."""

    source: str
    destination: str
    readonly: bool


def volume_mounts(pod: JSON, container: JSON, *, sa_dir: str, pod_dir: str) -> list[Mount]:
    """The container's volumeMounts as bind mounts; SpecError for volume types the lab lacks."""
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    mounts = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            raise SpecError(f"volumeMounts: volume {vm['name']!r} is not in the Pod's volumes")
        sources = [s for s in (vol.get("projected") or {}).get("sources") or []]
        if any("serviceAccountToken" in s for s in sources):
            source = sa_dir
        elif "emptyDir" in vol:
            source = f"{pod_dir}/volumes/{vm['name']}"
        else:
            kind = next((k for k in vol if k != "name"), "?")
            raise SpecError(f"volume {vm['name']!r}: type {kind} is not supported by the lab kubelet")
        mounts.append(Mount(source=source, destination=vm["mountPath"], readonly=bool(vm.get("readOnly"))))
    return mounts


def _linux_mounts() -> list[JSON]:
    dev_opts = ["nosuid", "strictatime", "mode=755", "size=65536k"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": dev_opts},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def render(*, sec: Security, args: list[str], env: dict[str, str], cwd: str, rootfs: str,
           mounts: list[Mount], netns: str | None, hostname: str | None, cgroups_path: str,
           linux_resources: JSON, seccomp: JSON | None, termination_log: str | None) -> JSON:
    """config.json for runc (OCI runtime spec 1.0.2)."""
    caps = [f"CAP_{c}" for c in sec.caps]
    effective = caps if sec.uid == 0 else []
    namespaces: list[JSON] = [{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]
    namespaces.append({"type": "network", "path": netns} if netns else {"type": "network"})
    if hostname is not None:
        namespaces.append({"type": "uts"})
    binds = [{"destination": m.destination, "type": "bind", "source": m.source,
              "options": ["rbind", "ro" if m.readonly else "rw", "nosuid", "nodev"]} for m in mounts]
    if termination_log:
        binds.append({"destination": TERMINATION_LOG, "type": "bind", "source": termination_log,
                      "options": ["bind", "rw", "nosuid", "nodev", "noexec"]})
    linux: JSON = {"namespaces": namespaces, "cgroupsPath": cgroups_path, "resources": linux_resources,
                   "maskedPaths": list(MASKED_PATHS), "readonlyPaths": list(READONLY_PATHS)}
    if seccomp is not None:
        linux["seccomp"] = seccomp
    spec: JSON = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": sec.uid, "gid": sec.gid, "additionalGids": list(sec.groups)},
            "args": args,
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": cwd or "/",
            "capabilities": {"bounding": caps, "effective": effective, "permitted": effective},
            "noNewPrivileges": sec.no_new_privs,
        },
        "root": {"path": rootfs, "readonly": sec.readonly_root},
        "mounts": _linux_mounts() + binds,
        "linux": linux,
    }
    if hostname is not None:
        spec["hostname"] = hostname
    return spec
