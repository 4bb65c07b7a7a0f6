"""`lab up`, `lab down` and `lab status`: the whole lab's life, in the order things depend on.

up: preflight -> (clean remains of a crashed lab) -> PKI -> control plane -> LAN -> forwarders
-> wait for the API -> kubelets -> wait for Ready nodes. Every step reuses what already runs,
so a second `up` is cheap; it also undoes node-down / api-down (up means "make the lab whole").
down: every process in the lab's namespaces, the control plane, the host forwarder, then the
namespaces and .lab itself. It reports, and fails on, anything it could not stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from . import apiclient, controlplane, lan, nodeprocs, pki, procs
from . import topology as topo

SA_PATH = "/api/v1/namespaces/default/serviceaccounts/default"  # pods are refused until it exists


class LabError(RuntimeError):
    """The lab cannot be brought up or torn down; the message says why."""


def say(msg: str) -> None:
    print(f">> lab: {msg}", file=sys.stderr, flush=True)


def preflight() -> None:
    """Root and working `ip netns`, or a clear error before anything is made."""
    if os.geteuid() != 0:
        raise LabError("must run as root: the lab creates network namespaces and raw links")
    if shutil.which("ip") is None:
        raise LabError("`ip` (iproute2) not found: install iproute2 (scripts/ensure-debs.sh)")
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if res.returncode != 0 or not os.path.exists("/proc/self/ns/net"):
        raise LabError(f"network namespaces unavailable (`ip netns list`: {res.stderr.strip()})")


def wait_for(what: str, check: Callable[[], str | None], timeout: float) -> None:
    """Poll check() (None = done, else what is missing) until done or timeout."""
    deadline = time.monotonic() + timeout
    while (missing := check()) is not None:
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}: {missing}")
        time.sleep(0.2)


def _core_running(paths: topo.Paths) -> bool:
    rt = controlplane.running(paths)
    return bool(rt["etcd"] and rt["kube-apiserver"] and paths.kubeconfig.exists())


def _has_remains(paths: topo.Paths) -> bool:
    return paths.state.exists() or any(lan.netns_exists(n) for n in lan.all_netns())


def up(timeout: float = 90.0, nodes: int | None = None) -> None:
    preflight()
    t0 = time.monotonic()
    paths = topo.Paths(topo.repo_root())
    if nodes is not None and nodes != len(topo.NODES):
        if _has_remains(paths):
            say(f"changing the lab from {len(topo.NODES)} to {nodes} nodes: starting afresh")
            down(quiet=True)
        topo.set_node_count(nodes)
    bindir = controlplane.locate_binaries(paths)
    if _core_running(paths):
        say("control plane already running: reusing it")
        for pid in controlplane.running(paths).values():  # undo `lab api-freeze`
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
    else:
        if _has_remains(paths):
            say("cleaning the remains of a previous lab")
            down(quiet=True)
        controlplane.check_ports()
        say("creating PKI and kubeconfigs in .lab/")
        pki.create(paths)
    for name in controlplane.start_missing(paths, bindir, controlplane.STORE):
        say(f"started {name}")
    nodeprocs.ensure_host_forwarder(paths)
    _ensure_lan(paths)
    topo.node_count_file(paths.repo).write_text(f"{len(topo.NODES)}\n")
    wait_for("kube-apiserver /readyz", lambda: _api_missing(paths, controlplane.STORE, "/readyz"), timeout)
    for name in controlplane.start_missing(paths, bindir, controlplane.CONTROLLERS):
        say(f"started {name}")
    wait_for("the default ServiceAccount", lambda: _api_missing(paths, controlplane.COMPONENTS, SA_PATH),
             timeout)
    say(f"control plane ready ({time.monotonic() - t0:.1f}s)")
    _ensure_nodes(paths, timeout)
    say(f"lab is up in {time.monotonic() - t0:.1f}s: KUBECONFIG={paths.kubeconfig}")


def _api_missing(paths: topo.Paths, needed: tuple[str, ...], probe: str) -> str | None:
    """None once GET probe answers 200; fails at once if one of needed has exited."""
    dead = [c for c, pid in controlplane.running(paths).items() if pid is None and c in needed]
    if dead:
        raise LabError(f"{', '.join(dead)} exited: see "
                       + ", ".join(str(paths.log(name)) for name in dead))
    try:
        status, body = apiclient.get(paths, probe, timeout=1.0)
    except apiclient.ApiError as exc:
        return str(exc)
    return None if status == 200 else f"GET {probe}: HTTP {status} {body[:100]}"


def _ensure_lan(paths: topo.Paths) -> None:
    if not lan.is_complete():
        leftovers = [p for n in lan.all_netns() for p in procs.netns_pids(n)]
        procs.stop(leftovers)
        lan.delete()
        lan.create()
        say(f"LAN created: br0 in l2lb-lan; l2lb-client, l2lb-node1..{len(topo.NODES)}")
    for host in topo.HOSTS:
        if not lan.port_is_up(host):
            lan.set_port(host, True)
            say(f"{host.name}: LAN link plugged back in")
        if paths.blackhole_flag(host.name).exists():
            paths.blackhole_flag(host.name).unlink()
            nodeprocs.signal_forwarder(paths, host)
            say(f"{host.name}: API path restored")
        nodeprocs.ensure_ns_forwarder(paths, host)


def _ensure_nodes(paths: topo.Paths, timeout: float) -> None:
    if not nodeprocs.kubelet_available():
        say("WARNING: l2lb_lab.kubelet is not installed yet: control plane and LAN only, no nodes")
        return
    started = [h.name for h in topo.NODES if nodeprocs.ensure_kubelet(paths, h)]
    if started:
        say(f"started kubelets: {', '.join(started)}")
    wait_for(f"{len(topo.NODES)} Ready nodes", lambda: _nodes_missing(paths), timeout)


def _nodes_missing(paths: topo.Paths) -> str | None:
    ready = apiclient.node_readiness(paths)
    missing = []
    for host in topo.NODES:
        state = ready.get(host.name, "not registered")
        if state != "True":
            kubelet = "running" if nodeprocs.kubelet_pid(paths, host) else "NOT running"
            missing.append(f"{host.name} Ready={state} (kubelet {kubelet}, "
                           f"log {paths.log('kubelet-' + host.name)})")
    return "; ".join(missing) or None


def _sweep(paths: topo.Paths, rounds: int = 3) -> list[int]:
    """Stop what is still in the lab's namespaces or names .lab/ on its command line, until none is
    found (a process may be starting as we look); return pids that survived SIGKILL."""
    for _ in range(rounds):
        found = [p for n in lan.all_netns() for p in procs.netns_pids(n)]
        found += procs.pids_mentioning(str(paths.state))
        if not found:
            return []
        left = procs.stop(found)
        if left:
            return left
    return []


def down(quiet: bool = False) -> None:
    preflight()
    paths = topo.Paths(topo.repo_root())
    left = procs.stop([p for n in lan.all_netns() for p in procs.netns_pids(n)])
    left += controlplane.stop(paths)
    host_fwd = procs.read_pid(paths.pidfile(nodeprocs.forwarder_name(None)), nodeprocs.FORWARDER)
    left += procs.stop([host_fwd] if host_fwd else [])
    left += _sweep(paths)
    removed = lan.delete()
    left += _sweep(paths)  # anything that slipped into a namespace while it was being emptied
    if left:
        raise LabError(f"processes survived SIGKILL: {sorted(set(left))}")
    shutil.rmtree(paths.state, ignore_errors=True)
    if paths.state.exists():
        raise LabError(f"could not remove {paths.state}")
    if not quiet:
        say(f"lab is down (namespaces removed: {', '.join(removed) or 'none'}; .lab removed)")
