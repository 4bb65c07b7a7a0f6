"""Per-namespace lab processes: the API forwarders and the lab kubelets.

`lab up` and `lab node-up` call ensure_*; each is idempotent (a live process is reused).
The kubelet itself (l2lb_lab.kubelet) is another module; this file only knows its CLI.
"""

from __future__ import annotations

import importlib.util
import os
import signal

from . import procs
from . import topology as topo

FORWARDER = "l2lb_lab.forwarder"
KUBELET = "l2lb_lab.kubelet"


def forwarder_name(host: topo.Host | None) -> str:
    return f"forwarder-{host.name if host else 'host'}"


def ensure_host_forwarder(paths: topo.Paths) -> bool:
    """Unix socket .lab/run/api.sock -> 127.0.0.1:6443 in the host netns. True if started now."""
    name = forwarder_name(None)
    if procs.read_pid(paths.pidfile(name), FORWARDER):
        return False
    argv = [str(paths.python), "-m", FORWARDER, f"--listen=unix:{paths.api_sock}",
            f"--connect=tcp:{topo.API_HOST}:{topo.API_PORT}"]
    procs.start(argv, log=paths.log(name), pidfile=paths.pidfile(name), cwd=paths.repo)
    return True


def ensure_ns_forwarder(paths: topo.Paths, host: topo.Host) -> bool:
    """127.0.0.1:6443 inside host's netns -> api.sock. True if started now."""
    name = forwarder_name(host)
    if procs.read_pid(paths.pidfile(name), FORWARDER):
        return False
    argv = [str(paths.python), "-m", FORWARDER, f"--listen=tcp:{topo.API_HOST}:{topo.API_PORT}",
            f"--connect=unix:{paths.api_sock}", f"--blackhole-flag={paths.blackhole_flag(host.name)}"]
    procs.start(argv, log=paths.log(name), pidfile=paths.pidfile(name), netns=host.netns, cwd=paths.repo)
    return True


def signal_forwarder(paths: topo.Paths, host: topo.Host) -> bool:
    """Tell host's forwarder to re-read its blackhole flag; False if it is not running."""
    pid = procs.read_pid(paths.pidfile(forwarder_name(host)), FORWARDER)
    if pid is None:
        return False
    os.kill(pid, signal.SIGUSR1)
    return True


def kubelet_available() -> bool:
    return importlib.util.find_spec(KUBELET) is not None


def kubelet_argv(paths: topo.Paths, host: topo.Host) -> list[str]:
    return [str(paths.python), "-m", KUBELET, "--node", host.name, "--kubeconfig", str(paths.kubeconfig),
            "--node-ip", host.ipv4, "--node-ipv6", host.ipv6,
            "--state-dir", str(paths.node_state(host.name)), "--repo-root", str(paths.repo)]


def kubelet_pid(paths: topo.Paths, host: topo.Host) -> int | None:
    return procs.read_pid(paths.pidfile(f"kubelet-{host.name}"), f"{KUBELET} --node {host.name}")


def ensure_kubelet(paths: topo.Paths, host: topo.Host) -> bool:
    """Start host's lab kubelet inside its netns unless it runs. True if started now."""
    if kubelet_pid(paths, host):
        return False
    paths.node_state(host.name).mkdir(parents=True, exist_ok=True)
    name = f"kubelet-{host.name}"
    procs.start(kubelet_argv(paths, host), log=paths.log(name), pidfile=paths.pidfile(name),
                netns=host.netns, cwd=paths.repo)
    return True
