"""Failures on demand: `lab node-down|node-up|api-down|api-up NODE`, `lab api-freeze|api-thaw`.

node-down is a power cut: the link is unplugged and every process in the node's netns gets
SIGKILL (kubelet, forwarder, pods), so heartbeats simply stop. api-down cuts only the node's
path to the API server (its forwarder holds connections silently) while its LAN stays up.
api-freeze stops the whole control plane at once (SIGSTOP of kube-apiserver and etcd: every
request from every node hangs, as in an upgrade of a single control-plane node); api-thaw resumes it.
"""

from __future__ import annotations

import os
import signal

from . import controlplane, lan, nodeprocs, procs
from . import topology as topo
from .lifecycle import LabError, say


def _paths() -> topo.Paths:
    return topo.Paths(topo.repo_root())


def node_down(name: str) -> None:
    host = topo.find_node(name)
    if not lan.netns_exists(host.netns):
        raise LabError(f"netns {host.netns} does not exist: is the lab up?")
    lan.set_port(host, False)
    pids = procs.netns_pids(host.netns)
    left = procs.kill(pids)
    if left:
        raise LabError(f"{host.name}: processes survived SIGKILL: {left}")
    say(f"{host.name} is down: link cut, {len(pids)} process(es) killed")


def node_up(name: str) -> None:
    host = topo.find_node(name)
    paths = _paths()
    if not lan.netns_exists(host.netns):
        raise LabError(f"netns {host.netns} does not exist: is the lab up?")
    lan.set_port(host, True)
    nodeprocs.ensure_ns_forwarder(paths, host)
    if nodeprocs.kubelet_available():
        nodeprocs.ensure_kubelet(paths, host)
    else:
        say("WARNING: l2lb_lab.kubelet is not installed: no kubelet started")
    say(f"{host.name} is up: link restored, forwarder and kubelet running")


def api_down(name: str) -> None:
    host = topo.find_node(name)
    paths = _paths()
    paths.blackhole_flag(host.name).touch()
    if not nodeprocs.signal_forwarder(paths, host):
        say(f"{host.name}: forwarder not running; the cut applies when it starts")
    say(f"{host.name}: API path cut (LAN stays up)")


def api_up(name: str) -> None:
    host = topo.find_node(name)
    paths = _paths()
    paths.blackhole_flag(host.name).unlink(missing_ok=True)
    if not nodeprocs.signal_forwarder(paths, host):
        say(f"{host.name}: forwarder not running (node down?)")
    say(f"{host.name}: API path restored")


FROZEN = ("kube-apiserver", "etcd")


def _signal_control_plane(sig: signal.Signals) -> list[str]:
    running = controlplane.running(_paths())
    done = []
    for name in FROZEN:
        pid = running.get(name)
        if pid is not None:
            os.kill(pid, sig)
            done.append(name)
    if not done:
        raise LabError("the control plane is not running: is the lab up?")
    return done


def api_freeze() -> None:
    names = _signal_control_plane(signal.SIGSTOP)
    say(f"control plane frozen ({', '.join(names)} stopped): every API request hangs; `lab api-thaw` resumes")


def api_thaw() -> None:
    names = _signal_control_plane(signal.SIGCONT)
    say(f"control plane thawed ({', '.join(names)} resumed)")
