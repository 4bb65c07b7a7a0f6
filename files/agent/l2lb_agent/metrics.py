"""Prometheus metrics and the /metrics + /healthz HTTP server.

Adapter ring. `serve()` runs the HTTP server on a daemon thread (port 0 = off; a port already
taken is logged and skipped, because in the lab two agents may share one node's network). It is
unauthenticated, so the manifests bind it to the Pod's IP (the node's IP for the speaker), not
0.0.0.0; an IPv6 host gets an IPv6 socket. A slow or idle client is cut off after
REQUEST_TIMEOUT seconds and at most MAX_CONNECTIONS are served at once (the rest are closed at
once), so a scraper cannot tie up threads. `ControllerMetrics` groups the controller's series; it
registers them in the registry it is given, so tests can use a private registry. Process metrics
(RSS, CPU) come from prometheus_client's default collectors in the default registry.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0  # seconds a client may take to send its request or read the answer
MAX_CONNECTIONS = 8  # concurrent connections served; more are closed without an answer


def serve(host: str, port: int, health: Callable[[], bool],
          registry: CollectorRegistry = prometheus_client.REGISTRY) -> ThreadingHTTPServer | None:
    """Start the server on a daemon thread; returns it (call shutdown()) or None when off/unavailable."""
    if port == 0:
        return None

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT  # applied to the connection's socket by StreamRequestHandler

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._send(200, prometheus_client.generate_latest(registry),
                           prometheus_client.CONTENT_TYPE_LATEST)
            elif self.path.split("?")[0] == "/healthz":
                ok = _safe(health)
                self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the prober gave up (e.g. we were paused)
                log.debug("metrics http: %s left before the answer", self.client_address[0])

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics http: " + format, *args)

    try:
        server = _Server(host, port, Handler)
    except OSError as exc:
        log.warning("metrics server not started on %s:%d: %s (continuing without it)", host, port,
                    exc.strerror)
        return None
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("serving /metrics and /healthz on %s:%d", host, port)
    return server


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer on the host's address family, with a bound on concurrent connections."""

    daemon_threads = True

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__((host, port), handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: refuse rather than queue threads
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _safe(health: Callable[[], bool]) -> bool:
    try:
        return bool(health())
    except Exception:
        log.exception("health check failed")
        return False


class ControllerMetrics:
    """The controller's series (names prefixed l2lb_)."""

    def __init__(self, registry: CollectorRegistry = prometheus_client.REGISTRY) -> None:
        self.in_use = Gauge("l2lb_addresses_in_use", "Addresses assigned to Services, per pool",
                            ["pool"], registry=registry)
        self.total = Gauge("l2lb_addresses_total", "Addresses a pool can hand out", ["pool"],
                           registry=registry)
        self.failures = Counter("l2lb_allocation_failures", "Allocation attempts that failed, by reason",
                                ["reason"], registry=registry)
        self.config_stale = Gauge("l2lb_config_stale",
                                  "1 when the ConfigMap is invalid and the last good config is in force",
                                  registry=registry)
        self.config_loaded = Gauge("l2lb_config_loaded", "1 once a valid config has been loaded",
                                   registry=registry)
        self.is_leader = Gauge("l2lb_controller_is_leader", "1 while this replica holds the leader Lease",
                               registry=registry)
        self.outside_pools = Gauge("l2lb_addresses_outside_pools",
                                   "Service addresses kept although no pool contains them any more",
                                   registry=registry)
        self.api_requests = Gauge("l2lb_controller_api_requests",
                                  "HTTP requests this controller sent to the API server since start",
                                  registry=registry)
        self.allocated = Gauge("l2lb_services_allocated", "Services holding addresses", registry=registry)
        self.ready = Gauge("l2lb_controller_ready",
                           "1 once this leader has rebuilt its state and processed every Service",
                           registry=registry)
        self.status_writes = Counter("l2lb_controller_status_writes",
                                     "Service status writes sent (one per allocation or release)",
                                     registry=registry)
        self.throttled = Gauge("l2lb_controller_throttled_seconds",
                               "Seconds status writers waited for the --api-qps budget, in total",
                               registry=registry)
        self.events_written = Counter("l2lb_controller_events_written", "Events written, by reason",
                                      ["reason"], registry=registry)
        self.events_aggregated = Counter("l2lb_controller_events_aggregated",
                                         "Events not written: an identical one went out within 10 minutes",
                                         ["reason"], registry=registry)
        self.events_dropped = Counter("l2lb_controller_events_dropped",
                                      "Events not written: the backlog was full during a burst "
                                      "(summed up in one EventsDropped Event)", ["reason"], registry=registry)
        self.events_queued = Gauge("l2lb_controller_events_queued",
                                   "Events not yet written: waiting for the Event budget, or being sent",
                                   registry=registry)
        self._pools: set[str] = set()

    def set_pools(self, stats: Iterable[tuple[str, int, int]]) -> None:
        """stats: (pool, in use, total); pools that disappeared are removed from the series."""
        seen = set()
        for pool, used, total in stats:
            seen.add(pool)
            self.in_use.labels(pool).set(used)
            self.total.labels(pool).set(total)
        for gone in self._pools - seen:
            self.in_use.remove(gone)
            self.total.remove(gone)
        self._pools = seen
