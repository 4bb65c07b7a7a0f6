"""The lab kubelet: the one emulated part of the lab, one per node, inside the node's netns.

Where it sits: `lab up` starts
    python -m l2lb_lab.kubelet --node nodeN --kubeconfig <repo>/.lab/kubeconfig \\
        --node-ip 192.168.1.1N --node-ipv6 fd00:4c32:6c62::1N \\
        --state-dir <repo>/.lab/nodes/nodeN --repo-root <repo>
inside netns l2lb-nodeN, as root.  It wires three parts that each run on their own threads:
node.NodeAgent (Node registration, status, kube-node-lease heartbeat),
pods.PodManager (the Pods bound to this node, fed by a list+watch with
fieldSelector spec.nodeName=NODE) and proxy.Proxy (kube-proxy's part for LoadBalancer IPs).
l2lb-agent containers run from the image `make image` builds, under runc (runtime.py), unless
--runtime / L2LB_LAB_RUNTIME says `process`; the Node's containerRuntimeVersion says which.

SIGTERM/SIGINT stop the kubelet only: Pods keep running and are adopted by the next
kubelet, like a real kubelet restart (`lab node-down`/`lab down` kill the netns's
processes anyway).  When its own source files change (the lab runs from a live checkout)
it re-executes itself in place once the new code imports (`--no-reload` turns that off).
Logs go to stderr; container output to <state-dir>/pods/<ns>_<name>_<uid8>/<container>.log.
Events (Started, BackOff, Unhealthy, Killing, Failed) come from events.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading

from kubernetes import client

from .. import pods as pods_mod
from .. import proxy as proxy_mod
from . import PACKAGE, api, runtime, tokens
from . import container as container_mod
from . import events as events_mod
from . import node as node_mod

log = logging.getLogger("kubelet")

RELOAD_CHECK = 5.0  # seconds between looks at the kubelet's source files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m l2lb_lab.kubelet", description=__doc__.split("\n\n")[0])
    p.add_argument("--node", required=True, help="Kubernetes Node name, e.g. node1")
    p.add_argument("--kubeconfig", required=True, help="admin kubeconfig (server reachable from this netns)")
    p.add_argument("--node-ip", required=True, help="node's LAN IPv4 address (also every Pod's IP)")
    p.add_argument("--node-ipv6", default="", help="node's LAN IPv6 address")
    p.add_argument("--state-dir", required=True, help="per-node directory for Pod dirs and logs")
    p.add_argument("--repo-root", required=True, help="checkout whose .venv runs the l2lb-agent image")
    p.add_argument("--backoff-base", type=float, default=2.0,
                   help="first CrashLoopBackOff delay in seconds (doubles per crash)")
    p.add_argument("--backoff-max", type=float, default=60.0, help="longest CrashLoopBackOff delay")
    p.add_argument("--no-proxy", action="store_true", help="do not play kube-proxy on this node")
    p.add_argument("--no-reload", dest="reload", action="store_false",
                   help="do not re-execute when the kubelet's source files change")
    p.add_argument("--runtime", choices=(runtime.RUNC, runtime.PROCESS), default=None,
                   help=f"how l2lb-agent containers run (default: env {runtime.RUNTIME_ENV}, else "
                   f"{runtime.DEFAULT})")
    p.add_argument("--log-level", default=os.environ.get("L2LB_LAB_LOG_LEVEL", "info"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s kubelet[{args.node}] %(name)s: %(message)s")
    if not os.path.exists(args.kubeconfig):
        log.error("--kubeconfig %s: no such file", args.kubeconfig)
        return 2
    venv_python = os.path.join(args.repo_root, ".venv", "bin", "python")
    if not os.path.exists(venv_python):
        log.warning("--repo-root %s has no .venv/bin/python: l2lb-agent Pods will fail to start",
                    args.repo_root)
    os.makedirs(os.path.join(args.state_dir, "pods"), exist_ok=True)
    try:
        chosen = args.runtime or runtime.selected()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    runc = runtime.Runc(os.path.abspath(args.repo_root), os.path.abspath(args.state_dir)) \
        if chosen == runtime.RUNC else None
    if runc is not None:
        runc.sweep_cgroups()  # before any Pod starts: nothing of ours is being created
    container_mod.use_runtime(runc)
    log.info("l2lb-agent containers run with %s", chosen)

    identity = node_mod.NodeIdentity(name=args.node, ipv4=args.node_ip, ipv6=args.node_ipv6,
                                     runtime=runtime.version(chosen))
    ctx = pods_mod.NodeContext(node=args.node, ipv4=args.node_ip, ipv6=args.node_ipv6,
                               repo=os.path.abspath(args.repo_root),
                               state_dir=os.path.abspath(args.state_dir),
                               api_client=api.new_client(args.kubeconfig),
                               cluster=tokens.admin_cluster(args.kubeconfig),
                               backoff=(args.backoff_base, args.backoff_max),
                               events=events_mod.Recorder(args.node, api.new_client(args.kubeconfig)))
    node_agent = node_mod.NodeAgent(identity, api.new_client(args.kubeconfig))
    manager = pods_mod.PodManager(ctx)
    informer = _pod_informer(args, manager)
    proxy = None if args.no_proxy else proxy_mod.Proxy(args.node, api.new_client(args.kubeconfig))

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=node_agent.run, name="node", daemon=True).start()
    if ctx.events is not None:
        ctx.events.start()
    informer.start()
    if proxy is not None:
        proxy.start()
    log.info("lab kubelet for %s running (pods dir %s)", args.node, os.path.join(ctx.state_dir, "pods"))
    code_stamp = _code_stamp()
    while not stop.wait(RELOAD_CHECK):
        if args.reload and _code_stamp() != code_stamp:
            code_stamp = _code_stamp()
            _reexec_if_importable()
    log.info("stopping the kubelet; Pods keep running")
    node_agent.stop()
    informer.stop()
    if proxy is not None:
        proxy.stop()
    return 0


def _code_stamp() -> tuple[tuple[str, float], ...]:
    """Modification times of the kubelet's own modules (the lab runs from a live checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    files = [os.path.join(here, n) for n in os.listdir(here) if n.endswith(".py")]
    files += [os.path.join(os.path.dirname(here), n) for n in ("pods.py", "proxy.py")]
    return tuple((f, os.stat(f).st_mtime) for f in sorted(files) if os.path.exists(f))


def _reexec_if_importable() -> None:
    """Restart in place (same pid, Pods adopted) when the checkout's kubelet code changed.

    A developer's edit then reaches a running lab without `lab down`; a half-written file
    that does not import is skipped until the next change.
    """
    check = subprocess.run([sys.executable, "-c", f"import {PACKAGE}.main"], capture_output=True,
                           text=True, timeout=60, check=False)
    if check.returncode != 0:
        log.warning("kubelet code changed but does not import; not reloading: %s", check.stderr[-300:])
        return
    log.info("kubelet code changed: re-executing (Pods keep running and are adopted)")
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", PACKAGE, *sys.argv[1:]])


def _pod_informer(args: argparse.Namespace, manager: pods_mod.PodManager) -> api.Informer:
    core = client.CoreV1Api(api.new_client(args.kubeconfig))
    holder: list[api.Informer] = []

    def changed() -> None:
        manager.sync(holder[0].snapshot())

    informer = api.Informer("pods", core.list_pod_for_all_namespaces, changed,
                            field_selector=f"spec.nodeName={args.node}")
    holder.append(informer)
    return informer


if __name__ == "__main__":
    sys.exit(main())
