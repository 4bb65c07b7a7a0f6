"""The agent's /metrics + /healthz server on loopback: the address it is given (IPv4 or IPv6),
idle clients cut off, and a bound on connections served at once.

Behaviour, not timing figures: the timeout is shrunk so a test waits fractions of a second, and
every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.request

import pytest
from l2lb_agent import metrics
from prometheus_client import CollectorRegistry, Gauge


def free_port(family: int, host: str) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(host: str, healthy: bool = True):
    registry = CollectorRegistry()
    Gauge("l2lb_test_gauge", "a test series", registry=registry).set(7)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    port = free_port(family, host)
    srv = metrics.serve(host, port, lambda: healthy, registry)
    assert srv is not None
    try:
        yield port
    finally:
        srv.shutdown()
        srv.server_close()


def get(host: str, port: int, path: str) -> tuple[int, str]:
    url = f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_serves_metrics_and_health_on_the_given_address(host):
    if ":" in host and not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    with server(host) as port:
        status, body = get(host, port, "/metrics")
        assert status == 200 and "l2lb_test_gauge 7.0" in body
        assert get(host, port, "/healthz") == (200, "ok\n")
        assert get(host, port, "/nope")[0] == 404


def test_unhealthy_is_503():
    with server("127.0.0.1", healthy=False) as port:
        assert get("127.0.0.1", port, "/healthz") == (503, "not ready\n")


def test_idle_client_is_cut_off(monkeypatch):
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT", 0.3)
    with server("127.0.0.1") as port, socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        idle.sendall(b"GET /metr")  # never finishes the request line
        assert idle.recv(1024) == b""  # the server closed it (well before our own 5 s timeout)


def test_connections_beyond_the_bound_are_refused_not_queued(monkeypatch):
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT", 3.0)
    monkeypatch.setattr(metrics, "MAX_CONNECTIONS", 2)
    with server("127.0.0.1") as port:
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
                extra.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                assert extra.recv(1024) == b""  # closed without an answer while two are held
        finally:
            for sock in held:
                sock.close()
        # once the held connections are gone, the server answers again
        for _ in range(50):
            with contextlib.suppress(OSError):
                if get("127.0.0.1", port, "/healthz")[0] == 200:
                    break
        else:
            pytest.fail("the server did not answer after the held connections closed")
