"""Command line of the agent: `python -m l2lb_agent controller|speaker [flags]`.

Component ring. Parses flags (each mirrored by an L2LB_* environment variable, which is the
flag's default, so manifests, the lab and a shell start the agent the same way), sets up
logging and the metrics/health HTTP server, installs SIGTERM/SIGINT handlers that set
`args.stop` (a threading.Event), then calls `l2lb_agent.controller.run(args)` or
`l2lb_agent.speaker.run(args)` (imported lazily, so one does not load the other's modules).

`args` fields the components read: kubeconfig, context, namespace, log_level, metrics_port,
metrics_host, loadbalancer_class, claim_unclassed (bool: also Services with no class),
lease_duration, renew_interval (float seconds or None = the `l2lb_agent.timing` default),
pod_name, workers (controller), node_name and interfaces (speaker; interfaces is a list, empty =
all suitable), timings (`timing.LeaseTimings` built from lease_duration/renew_interval), stop,
and `health` (settable callable for /healthz).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import metrics, timing

log = logging.getLogger("l2lb_agent")

LOG_LEVELS = ("debug", "info", "warning", "error")
METRICS_PORTS = {"controller": 7472, "speaker": 7473}
# The controller's Lease only guards writes (a takeover delays new allocations, nothing else), so
# it trades failover speed for tolerance of a slow API server; the speaker keeps timing's defaults.
CONTROLLER_LEASE_DURATION = 6.0


class FlagError(Exception):
    """A flag (or its env var) has a bad value; the message names both and the value."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _common(p: argparse.ArgumentParser, component: str) -> None:
    kubeconfig = _env("L2LB_KUBECONFIG") or _env("KUBECONFIG")
    p.add_argument("--kubeconfig", default=kubeconfig,
                   help="kubeconfig path [L2LB_KUBECONFIG, then KUBECONFIG; default: in-cluster]")
    p.add_argument("--context", default=_env("L2LB_CONTEXT"),
                   help="kubeconfig context [L2LB_CONTEXT; default: current-context]")
    p.add_argument("--namespace", default=_env("L2LB_NAMESPACE", "l2lb-system"),
                   help="l2lb's namespace (ConfigMap, Leases) [L2LB_NAMESPACE; default l2lb-system]")
    p.add_argument("--log-level", default=_env("L2LB_LOG_LEVEL", "info"),
                   help=f"one of {', '.join(LOG_LEVELS)} [L2LB_LOG_LEVEL; default info]")
    port = str(METRICS_PORTS[component])
    p.add_argument("--metrics-port", default=_env("L2LB_METRICS_PORT", port),
                   help=f"Prometheus /metrics and /healthz port, 0 = off [L2LB_METRICS_PORT; default {port}]")
    p.add_argument("--metrics-host", default=_env("L2LB_METRICS_HOST", "0.0.0.0"),
                   help="address the metrics server binds [L2LB_METRICS_HOST; default 0.0.0.0]")
    p.add_argument("--loadbalancer-class", default=_env("L2LB_LOADBALANCER_CLASS", "l2lb.io/layer2"),
                   help="loadBalancerClass l2lb answers to (and to none) [L2LB_LOADBALANCER_CLASS]")
    p.add_argument("--claim-unclassed", default=_env("L2LB_CLAIM_UNCLASSED", "true"),
                   help="also answer for LoadBalancer Services with no loadBalancerClass, true|false "
                   "[L2LB_CLAIM_UNCLASSED; default true]")
    p.add_argument("--lease-duration", default=_env("L2LB_LEASE_DURATION"),
                   help="Lease duration in seconds [L2LB_LEASE_DURATION; default: controller 6, "
                   "speaker l2lb_agent.timing's]")
    p.add_argument("--renew-interval", default=_env("L2LB_RENEW_INTERVAL"),
                   help="Lease renew interval in seconds [L2LB_RENEW_INTERVAL; default: l2lb_agent.timing]")
    p.add_argument("--pod-name", default=_env("L2LB_POD_NAME", socket.gethostname()),
                   help="identity in Leases and Events [L2LB_POD_NAME; default: hostname]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2lb_agent", description="l2lb agent")
    sub = parser.add_subparsers(dest="component", required=True, metavar="controller|speaker")
    ctl = sub.add_parser("controller", help="hand out LoadBalancer IPs from the pools")
    _common(ctl, "controller")
    ctl.add_argument("--workers", default=_env("L2LB_WORKERS", "16"),
                     help="parallel status writers [L2LB_WORKERS; default 16]")
    spk = sub.add_parser("speaker", help="answer ARP/NDP for the addresses this node owns")
    _common(spk, "speaker")
    spk.add_argument("--node-name", default=_env("L2LB_NODE_NAME"),
                     help="this node's Kubernetes name [L2LB_NODE_NAME; required]")
    spk.add_argument("--interfaces", default=_env("L2LB_INTERFACES", ""),
                     help="comma list of LAN interfaces [L2LB_INTERFACES; default: all suitable]")
    return parser


_ENV_OF = {
    "metrics_port": "L2LB_METRICS_PORT", "lease_duration": "L2LB_LEASE_DURATION",
    "renew_interval": "L2LB_RENEW_INTERVAL", "log_level": "L2LB_LOG_LEVEL", "workers": "L2LB_WORKERS",
    "node_name": "L2LB_NODE_NAME", "namespace": "L2LB_NAMESPACE", "claim_unclassed": "L2LB_CLAIM_UNCLASSED",
}


def _bad(field: str, value: Any, why: str) -> FlagError:
    flag = "--" + field.replace("_", "-")
    return FlagError(f"{flag} (env {_ENV_OF.get(field, '-')}) = {value!r}: {why}")


def _int(args: argparse.Namespace, field: str, lo: int, hi: int) -> None:
    raw = getattr(args, field)
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise _bad(field, raw, f"not an integer ({lo}-{hi})") from None
    if not lo <= value <= hi:
        raise _bad(field, raw, f"out of range {lo}-{hi}")
    setattr(args, field, value)


def _bool(args: argparse.Namespace, field: str) -> None:
    raw = str(getattr(args, field)).strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise _bad(field, getattr(args, field), "expected true or false")
    setattr(args, field, raw in ("true", "1", "yes"))


def _seconds(args: argparse.Namespace, field: str) -> None:
    raw = getattr(args, field)
    if raw is None:
        return
    try:
        value = float(str(raw).strip().removesuffix("s"))
    except ValueError:
        raise _bad(field, raw, "not a number of seconds") from None
    if not 0 < value < 3600:
        raise _bad(field, raw, "must be more than 0 and less than 3600 seconds")
    setattr(args, field, value)


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Convert and check flag values in place; raises FlagError naming flag, env var and value."""
    if str(args.log_level).lower() not in LOG_LEVELS:
        raise _bad("log_level", args.log_level, f"expected one of {', '.join(LOG_LEVELS)}")
    args.log_level = args.log_level.lower()
    if not args.namespace:
        raise _bad("namespace", args.namespace, "must not be empty")
    _int(args, "metrics_port", 0, 65535)
    _bool(args, "claim_unclassed")
    _seconds(args, "lease_duration")
    _seconds(args, "renew_interval")
    lease = args.lease_duration
    if lease is None and args.component == "controller":
        lease = CONTROLLER_LEASE_DURATION
    try:
        args.timings = timing.from_options(lease, args.renew_interval)
    except timing.TimingError as exc:
        raise _bad("lease_duration", (args.lease_duration, args.renew_interval), str(exc)) from None
    if args.component == "controller":
        _int(args, "workers", 1, 256)
    else:
        if not args.node_name:
            raise _bad("node_name", args.node_name, "the speaker needs its node's name")
        args.interfaces = [i.strip() for i in str(args.interfaces or "").split(",") if i.strip()]
    return args


def setup_logging(level: str) -> None:
    logging.Formatter.converter = time.gmtime
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _install_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        validate(args)
    except FlagError as exc:
        parser.error(str(exc))  # exits 2 with usage
    setup_logging(args.log_level)
    args.stop = threading.Event()
    args.health = lambda: True
    _install_signals(args.stop)
    server = metrics.serve(args.metrics_host, args.metrics_port, lambda: bool(args.health()))
    try:
        if args.component == "controller":
            from . import controller

            return int(controller.run(args) or 0)
        from . import speaker

        return int(speaker.run(args) or 0)
    finally:
        if server is not None:
            server.shutdown()
