"""`lab status`: what of the lab runs right now, read from pidfiles, namespaces and the API."""

from __future__ import annotations

from . import apiclient, controlplane, lan, nodeprocs, procs
from . import topology as topo


def _pid(pid: int | None) -> str:
    return f"pid {pid}" if pid else "NOT RUNNING"


def report(paths: topo.Paths) -> tuple[list[str], bool]:
    """Lines describing the lab, and whether everything is healthy."""
    lines, ok = [], True
    for name, pid in controlplane.running(paths).items():
        lines.append(f"{name:26} {_pid(pid)}")
        ok &= pid is not None
    api_ready = apiclient.is_ready(paths)
    lines.append(f"{'API /readyz':26} {'ready' if api_ready else 'NOT READY'}")
    host_fwd = procs.read_pid(paths.pidfile(nodeprocs.forwarder_name(None)), nodeprocs.FORWARDER)
    lines.append(f"{'forwarder (host)':26} {_pid(host_fwd)}")
    ok &= api_ready and host_fwd is not None
    readiness = _readiness(paths) if api_ready else {}
    for host in topo.HOSTS:
        line, host_ok = _host_line(paths, host, readiness)
        lines.append(line)
        ok &= host_ok
    return lines, ok


def _readiness(paths: topo.Paths) -> dict[str, str]:
    try:
        return apiclient.node_readiness(paths)
    except apiclient.ApiError:
        return {}


def _host_line(paths: topo.Paths, host: topo.Host, readiness: dict[str, str]) -> tuple[str, bool]:
    if not lan.netns_exists(host.netns):
        return f"{host.netns:26} netns MISSING", False
    link = "link up" if lan.port_is_up(host) else "LINK CUT"
    fwd = procs.read_pid(paths.pidfile(nodeprocs.forwarder_name(host)), nodeprocs.FORWARDER)
    api = "API CUT" if paths.blackhole_flag(host.name).exists() else "api ok"
    parts = [link, f"forwarder {_pid(fwd)}", api]
    ok = link == "link up" and fwd is not None and api == "api ok"
    if host in topo.NODES:
        kubelet = nodeprocs.kubelet_pid(paths, host)
        ready = readiness.get(host.name, "unregistered")
        parts += [f"kubelet {_pid(kubelet)}", f"Ready={ready}"]
        ok &= kubelet is not None and ready == "True"
    return f"{host.netns:26} " + ", ".join(parts), ok
