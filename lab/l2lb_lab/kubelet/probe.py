"""Readiness and liveness probes (httpGet, tcpSocket, exec) with Kubernetes' thresholds.

Where it sits: pods.py owns one `Prober` per probe and calls `due()`/`record()` from its
worker loop; `run_probe()` does the I/O (a connect, a GET, or a command) within the
probe's timeoutSeconds.  Containers share the node's network namespace, so probes go to
the Pod IP, which is the node IP.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
from typing import Any


class Prober:
    """Bookkeeping for one probe: when it is due and what its result currently is."""

    def __init__(self, spec: dict[str, Any], started: float, initial: bool) -> None:
        self.spec = spec
        self.period = max(1, int(spec.get("periodSeconds", 10)))
        self.timeout = max(1, int(spec.get("timeoutSeconds", 1)))
        self.success_threshold = max(1, int(spec.get("successThreshold", 1)))
        self.failure_threshold = max(1, int(spec.get("failureThreshold", 3)))
        self.next_at = started + int(spec.get("initialDelaySeconds", 0))
        self.result = initial  # readiness starts False, liveness True
        self._streak = 0  # consecutive results that disagree with self.result

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> bool:
        """Count one result; returns the (possibly flipped) probe result."""
        self.next_at = now + self.period
        if ok == self.result:
            self._streak = 0
            return self.result
        self._streak += 1
        if self._streak >= (self.success_threshold if ok else self.failure_threshold):
            self.result, self._streak = ok, 0
        return self.result


def _port(value: Any, container: dict[str, Any]) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"probe port {value!r} is neither a number nor a named port of container "
                     f"{container['name']!r}")


def run_probe(spec: dict[str, Any], container: dict[str, Any], pod_ip: str,
              env: dict[str, str], cwd: str) -> bool:
    """One probe attempt; any error counts as failure."""
    timeout = max(1, int(spec.get("timeoutSeconds", 1)))
    try:
        if "httpGet" in spec:
            return _http(spec["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in spec:
            tcp = spec["tcpSocket"]
            address = (tcp.get("host") or pod_ip, _port(tcp["port"], container))
            with socket.create_connection(address, timeout):
                return True
        if "exec" in spec:
            done = subprocess.run(spec["exec"].get("command") or ["false"], env=env or None, cwd=cwd,
                                  timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  check=False)
            return done.returncode == 0
        if "grpc" in spec:
            with socket.create_connection((pod_ip, int(spec["grpc"]["port"])), timeout):
                return True  # no gRPC health client in the lab: an open port counts
    except (OSError, ValueError, subprocess.SubprocessError, http.client.HTTPException):
        return False
    return False


def _http(get: dict[str, Any], container: dict[str, Any], pod_ip: str, timeout: int) -> bool:
    host = get.get("host") or pod_ip
    port = _port(get.get("port", 80), container)
    if get.get("scheme", "HTTP").upper() == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # as the kubelet: no verification
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout,
                                                                       context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
        headers.setdefault("User-Agent", "kube-probe/1.37")
        conn.request("GET", get.get("path") or "/", headers=headers)
        return 200 <= conn.getresponse().status < 400
    finally:
        conn.close()
