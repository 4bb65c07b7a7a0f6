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
import atexit
import contextlib
import logging
import logging.handlers
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import keyring, metrics, timing

log = logging.getLogger("l2lb_agent")

LOG_LEVELS = ("debug", "info", "warning", "error")
METRICS_PORTS = {"controller": 7472, "speaker": 7473}
# The controller's Lease only guards writes (a takeover delays new allocations, nothing else), so
# it trades failover speed for tolerance of a slow API server; the speaker keeps timing's defaults.
CONTROLLER_LEASE_DURATION = 6.0
# Every renew_interval a replica reads and writes its Lease: below this it floods the API server.
MIN_RENEW_INTERVAL = 0.2
# RFC 1123: a label (namespaces) and a subdomain (node names, loadBalancerClass prefixes).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
# A node name goes into the speaker's Lease as a label value, which the API caps at 63 characters;
# a longer name would be refused on every renewal and fence that node forever: refuse it at start.
MAX_NODE_NAME = 63


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
    ctl.add_argument("--api-qps", default=_env("L2LB_API_QPS", "200"),
                     help="status writes per second, all writers together [L2LB_API_QPS; default 200]")
    ctl.add_argument("--api-burst", default=_env("L2LB_API_BURST", "400"),
                     help="status writes allowed at once above --api-qps [L2LB_API_BURST; default 400]")
    spk = sub.add_parser("speaker", help="answer ARP/NDP for the addresses this node owns")
    _common(spk, "speaker")
    spk.add_argument("--node-name", default=_env("L2LB_NODE_NAME"),
                     help="this node's Kubernetes name [L2LB_NODE_NAME; required]")
    spk.add_argument("--interfaces", default=_env("L2LB_INTERFACES", ""),
                     help="comma list of LAN interfaces [L2LB_INTERFACES; default: all suitable]")
    _speaker_lan(spk)
    return parser


def _speaker_lan(spk: argparse.ArgumentParser) -> None:
    """The speaker's LAN membership flags; defaults come from timing.LanTimings (one definition)."""
    d = timing.LanTimings()
    spk.add_argument("--heartbeat-interval", default=_env("L2LB_HEARTBEAT_INTERVAL"),
                     help="seconds between LAN heartbeats "
                     f"[L2LB_HEARTBEAT_INTERVAL; default {d.heartbeat_interval:g}]")
    spk.add_argument("--dead-after", default=_env("L2LB_DEAD_AFTER"),
                     help="a peer not heard for this many seconds is dead "
                     f"[L2LB_DEAD_AFTER; default {d.dead_after:g}]")
    spk.add_argument("--handover-delay", default=_env("L2LB_HANDOVER_DELAY"),
                     help="seconds a node waits before taking an IP from a live node "
                     f"[L2LB_HANDOVER_DELAY; default {d.handover_delay:g}]")
    spk.add_argument("--memberlist-secret", default=_env("L2LB_MEMBERLIST_SECRET", keyring.SECRET_NAME),
                     help="Secret holding the heartbeat keys (data key 'keys') "
                     f"[L2LB_MEMBERLIST_SECRET; default {keyring.SECRET_NAME}]")


_ENV_OF = {
    "metrics_port": "L2LB_METRICS_PORT", "lease_duration": "L2LB_LEASE_DURATION",
    "renew_interval": "L2LB_RENEW_INTERVAL", "log_level": "L2LB_LOG_LEVEL", "workers": "L2LB_WORKERS",
    "node_name": "L2LB_NODE_NAME", "namespace": "L2LB_NAMESPACE", "claim_unclassed": "L2LB_CLAIM_UNCLASSED",
    "loadbalancer_class": "L2LB_LOADBALANCER_CLASS", "pod_name": "L2LB_POD_NAME",
    "interfaces": "L2LB_INTERFACES", "metrics_host": "L2LB_METRICS_HOST",
    "heartbeat_interval": "L2LB_HEARTBEAT_INTERVAL", "dead_after": "L2LB_DEAD_AFTER",
    "handover_delay": "L2LB_HANDOVER_DELAY", "memberlist_secret": "L2LB_MEMBERLIST_SECRET",
    "api_qps": "L2LB_API_QPS", "api_burst": "L2LB_API_BURST",
}


def _bad(field: str, value: Any, why: str) -> FlagError:
    flag = "--" + field.replace("_", "-")
    shown = repr(value)
    if len(shown) > 100:  # an env var may hold anything; the message stays one readable line
        shown = f"{shown[:100]}... ({len(shown)} characters)"
    return FlagError(f"{flag} (env {_ENV_OF.get(field, '-')}) = {shown}: {why}")


def _int(args: argparse.Namespace, field: str, lo: int, hi: int) -> None:
    raw = getattr(args, field)
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise _bad(field, raw, f"not an integer ({lo}-{hi})") from None
    if not lo <= value <= hi:
        raise _bad(field, raw, f"out of range {lo}-{hi}")
    setattr(args, field, value)


def _qps(args: argparse.Namespace) -> None:
    raw = args.api_qps
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise _bad("api_qps", raw, "not a number (requests per second)") from None
    if not 0.1 <= value <= 100000:
        raise _bad("api_qps", raw, "out of range 0.1-100000")
    args.api_qps = value


def _bool(args: argparse.Namespace, field: str) -> None:
    raw = str(getattr(args, field)).strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise _bad(field, getattr(args, field), "expected true or false")
    setattr(args, field, raw in ("true", "1", "yes"))


def _seconds(args: argparse.Namespace, field: str, floor: float = 0.0) -> None:
    raw = getattr(args, field)
    if raw is None:
        return
    try:
        value = float(str(raw).strip().removesuffix("s"))
    except ValueError:
        raise _bad(field, raw, "not a number of seconds") from None
    if not 0 < value < 3600:
        raise _bad(field, raw, "must be more than 0 and less than 3600 seconds")
    if value < floor:
        raise _bad(field, raw, f"must be at least {floor:g} s: a shorter interval floods the API server")
    setattr(args, field, value)


def _name(args: argparse.Namespace, field: str, pattern: re.Pattern[str], limit: int, what: str) -> None:
    raw = getattr(args, field)
    value = str(raw or "")
    if not value:
        raise _bad(field, raw, "must not be empty")
    if len(value) > limit:
        raise _bad(field, raw, f"longer than {limit} characters ({what})")
    if not pattern.fullmatch(value):
        raise _bad(field, raw, f"not {what}")


def _lb_class(args: argparse.Namespace) -> None:
    """A label-style name with a prefix, as the API requires of spec.loadBalancerClass."""
    raw = str(args.loadbalancer_class or "")
    prefix, _sep, name = raw.rpartition("/")
    if not (prefix and len(prefix) <= 253 and DNS_SUBDOMAIN.fullmatch(prefix)
            and len(name) <= 63 and LABEL_NAME.fullmatch(name)):
        raise _bad("loadbalancer_class", args.loadbalancer_class,
                   "expected a prefixed label-style name like l2lb.io/layer2")


def _interfaces(args: argparse.Namespace) -> None:
    names = [i.strip() for i in str(args.interfaces or "").split(",") if i.strip()]
    for name in names:  # the kernel's rules for a network interface name
        if len(name) > 15 or name in (".", "..") or any(c in name for c in "/:") or not name.isprintable():
            raise _bad("interfaces", args.interfaces, f"{name!r} is not a network interface name "
                       "(at most 15 characters, no '/', ':' or spaces)")
    args.interfaces = names


def _timings(args: argparse.Namespace) -> None:
    """Lease timings; a cross-field refusal is reported under the flag whose value it names."""
    lease = args.lease_duration
    if lease is None and args.component == "controller":
        lease = CONTROLLER_LEASE_DURATION
    try:
        args.timings = timing.from_options(lease, args.renew_interval)
    except timing.TimingError as exc:
        field = "renew_interval" if str(exc).startswith("renew_interval") else "lease_duration"
        raise _bad(field, getattr(args, field), str(exc)) from None


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Convert and check flag values in place; raises FlagError naming flag, env var and value."""
    if str(args.log_level).lower() not in LOG_LEVELS:
        raise _bad("log_level", args.log_level, f"expected one of {', '.join(LOG_LEVELS)}")
    args.log_level = args.log_level.lower()
    _name(args, "namespace", DNS_LABEL, 63, "an RFC 1123 label: lower-case letters, digits and '-'")
    _int(args, "metrics_port", 0, 65535)
    _bool(args, "claim_unclassed")
    _lb_class(args)
    if not str(args.pod_name or "").isprintable() or not 0 < len(str(args.pod_name or "")) <= 253:
        raise _bad("pod_name", args.pod_name, "expected 1-253 printable characters")
    _seconds(args, "lease_duration")
    _seconds(args, "renew_interval", MIN_RENEW_INTERVAL)
    _timings(args)
    if args.component == "controller":
        _int(args, "workers", 1, 256)
        _qps(args)
        _int(args, "api_burst", 1, 100000)
    else:
        if not args.node_name:
            raise _bad("node_name", args.node_name, "the speaker needs its node's name")
        _name(args, "node_name", DNS_SUBDOMAIN, MAX_NODE_NAME, "an RFC 1123 subdomain that fits a Lease "
              "label value: lower-case letters, digits, '-' and '.'")
        _interfaces(args)
        _lan_timings(args)
        _name(args, "memberlist_secret", DNS_SUBDOMAIN, 253, "an RFC 1123 subdomain (a Secret name)")
    return args


def _lan_timings(args: argparse.Namespace) -> None:
    """The speaker's heartbeat timings; a refusal is reported under the flag it names."""
    fields = ("heartbeat_interval", "dead_after", "handover_delay")
    for field in fields:
        raw = getattr(args, field)
        if raw is None:
            continue
        try:
            setattr(args, field, float(str(raw).strip().removesuffix("s")))
        except ValueError:
            raise _bad(field, raw, "not a number of seconds") from None
    given = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
    try:
        args.lan_timings = timing.LanTimings(**given)
    except timing.TimingError as exc:
        field = next((f for f in fields if str(exc).startswith(f)), "heartbeat_interval")
        raise _bad(field, getattr(args, field), str(exc)) from None


LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s"  # UTC, to the millisecond
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%S"


LOG_QUEUE_LIMIT = 10_000  # records waiting for a slow sink; past it they are dropped, and counted


class NonBlockingLogHandler(logging.handlers.QueueHandler):
    """Hands records to a writer thread and never waits for it: a thread that logs (the answering
    thread does, per request at debug level) must not stall on a full pipe to the container runtime
    or a disk that holds writes back. When the queue is full, records are dropped and the next one
    that fits is preceded by a warning that says how many."""

    def __init__(self, sink: queue.Queue) -> None:
        super().__init__(sink)
        self.dropped = 0  # since the last warning; guarded by the handler's lock (held in emit)

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped:
                self.queue.put_nowait(self._dropped_warning())
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _dropped_warning(self) -> logging.LogRecord:
        return logging.LogRecord("l2lb_agent", logging.WARNING, __file__, 0,
                                 "%d log records dropped: the log sink was too slow", (self.dropped,), None)


class LogWriter(logging.handlers.QueueListener):
    """The thread that writes the queued records. Its stop (at exit) waits at most EXIT_FLUSH_WAIT
    for the sink, twice: a stuck sink must not keep the process from exiting."""

    EXIT_FLUSH_WAIT = 5.0

    def enqueue_sentinel(self) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put(self._sentinel, timeout=self.EXIT_FLUSH_WAIT)

    def stop(self) -> None:
        if self._thread is not None:
            self.enqueue_sentinel()
            self._thread.join(self.EXIT_FLUSH_WAIT)
            self._thread = None


def setup_logging(level: str, stream: Any = None) -> LogWriter:
    """Log to stream (stderr) through a writer thread; stopped (flushed) at exit."""
    logging.Formatter.converter = time.gmtime
    writer = logging.StreamHandler(stream if stream is not None else sys.stderr)
    writer.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    sink: queue.Queue = queue.Queue(LOG_QUEUE_LIMIT)
    listener = LogWriter(sink, writer)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, NonBlockingLogHandler)]:
        root.removeHandler(old)
    root.addHandler(NonBlockingLogHandler(sink))
    root.setLevel(getattr(logging, level.upper()))
    listener.start()
    atexit.register(listener.stop)
    return listener


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
