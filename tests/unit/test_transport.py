"""The API client's HTTP/1.1 transport against a scripted local server (real sockets, loopback).

Each test gives the server the bytes it answers with, per accepted connection and per request;
the server records what it received, so framing, keep-alive and the bounds are checked on the
wire. The TLS path and the real API server are covered by tests/integration/test_kube.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from l2lb_agent import transport

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Server:
    """Accepts connections; on each, answers request i with script[conn][i] (bytes), then, when
    the script for that connection ends, closes it."""

    def __init__(self, scripts: list[list[bytes]]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.scripts, self.received, self.connections = scripts, [], 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for script in self.scripts:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            reader = conn.makefile("rb")
            for answer in script:
                self.received.append(_read_request(reader))
                conn.sendall(answer)
            reader.close()  # the socket closes only once its file is closed too
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _read_request(reader) -> bytes:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        if not line:
            return head
        head += line
    length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                   if h.lower().startswith(b"content-length")), 0)
    return head + reader.read(length)


@pytest.fixture
def serve() -> Iterator:
    servers: list[Server] = []

    def make(*scripts: list[bytes]) -> tuple[Server, transport.Transport]:
        server = Server(list(scripts))
        servers.append(server)
        return server, transport.Transport("127.0.0.1", server.port, None, connect_timeout=2, max_idle=4)

    yield make
    for server in servers:
        server.close()


def test_keeps_one_connection_alive_and_writes_the_request_in_one_piece(serve) -> None:
    server, t = serve([OK, OK, OK])
    for _i in range(3):
        resp = t.request("PATCH", "/api/v1/x?a=b", {"Accept": "application/json"}, b'{"k":1}', 2.0)
        assert (resp.status, resp.body) == (200, b"{}")
    assert t.opened == 1 and server.connections == 1
    first = server.received[0]
    assert first.startswith(b"PATCH /api/v1/x?a=b HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"k":1}')


def test_get_without_body_sends_no_length(serve) -> None:
    server, t = serve([OK])
    t.request("GET", "/healthz", {}, None, 2.0)
    assert b"Content-Length" not in server.received[0]


def test_chunked_body_with_extensions_and_trailers(serve) -> None:
    answer = (b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3;ext=1\r\n{\"a\r\n5\r\n\":[1]\r\n1\r\n}\r\n0\r\nX-Trailer: y\r\n\r\n")
    server, t = serve([answer, OK])
    resp = t.request("GET", "/x", {}, None, 2.0)
    assert (resp.status, resp.body) == (404, b'{"a":[1]}')
    t.request("GET", "/y", {}, None, 2.0)  # framing left the connection usable
    assert server.connections == 1


def test_connection_close_and_eof_framed_bodies_are_not_reused(serve) -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    eof = b"HTTP/1.1 200 OK\r\n\r\n{\"till\":\"eof\"}"
    server, t = serve([close], [eof], [OK])
    assert t.request("GET", "/a", {}, None, 2.0).body == b"{}"
    assert t.request("GET", "/b", {}, None, 2.0).body == b'{"till":"eof"}'
    assert t.request("GET", "/c", {}, None, 2.0).status == 200
    assert t.opened == 3 and server.connections == 3


def test_an_idle_connection_the_server_closed_is_replaced_before_use(serve) -> None:
    server, t = serve([OK], [OK])  # the first connection is closed by the server after one answer
    t.request("GET", "/a", {}, None, 2.0)
    deadline = time.monotonic() + 2
    while server.connections < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the server's close has reached us
    assert t.request("GET", "/b", {}, None, 2.0).status == 200
    assert t.opened == 2


@pytest.mark.parametrize(("answer", "why"), [
    (b"SSH-2.0-OpenSSH\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "bytes before the body did"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX\r\n",
     "does not end where its size says"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * (transport.MAX_HEADERS + 1) + b"\r\n", "header lines"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * transport.MAX_LINE + b"\r\n\r\n", "too long"),
    (b"", "closed the connection before answering"),
])
def test_a_malformed_answer_is_a_protocol_error_and_the_connection_is_dropped(serve, answer, why) -> None:
    _server, t = serve([answer], [OK])
    with pytest.raises(transport.ProtocolError, match=why):
        t.request("GET", "/bad", {}, None, 2.0)
    assert t.request("GET", "/next", {}, None, 2.0).status == 200
    assert t.opened == 2


def test_a_silent_server_times_out_within_the_read_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts (the kernel does) and never answers
    t = transport.Transport("127.0.0.1", listener.getsockname()[1], None, connect_timeout=1, max_idle=1)
    started = time.monotonic()
    with pytest.raises(OSError):
        t.request("GET", "/x", {}, None, 0.3)
    assert time.monotonic() - started < 2
    listener.close()


def test_refused_connection_is_an_oserror() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(OSError):
        transport.Transport("127.0.0.1", port, None, connect_timeout=1, max_idle=1).request(
            "GET", "/", {}, None, 1)


def test_idle_pool_is_bounded(serve) -> None:
    server, _t = serve(*[[OK] for _i in range(6)])
    t = transport.Transport("127.0.0.1", server.port, None, connect_timeout=2, max_idle=2)
    barrier = threading.Barrier(6)

    def one() -> None:
        barrier.wait()
        t.request("GET", "/x", {}, None, 2.0)

    threads = [threading.Thread(target=one) for _i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(5)
    assert len(t._idle) <= 2
    t.close()
    assert not t._idle


class Trickle:
    """Answers one GET with the given pieces, one at a time when `release` is set for each."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.pieces, self.release = pieces, threading.Semaphore(0)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        conn, _addr = self.sock.accept()
        reader = conn.makefile("rb")
        _read_request(reader)
        for piece in self.pieces:
            self.release.acquire()
            conn.sendall(piece)
        time.sleep(0.5)
        reader.close()
        conn.close()


def test_a_stream_yields_each_chunk_as_it_arrives_and_ends_at_the_last() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = Trickle([head, b"6\r\n{\"a\":1\r\n", b"2\r\n}\n\r\n", b"0\r\n\r\n"])
    t = transport.Transport("127.0.0.1", server.port, None, connect_timeout=1, max_idle=1)
    server.release.release()
    stream = t.stream("/w?watch=true", {}, 2.0)
    assert stream.status == 200
    chunks = stream.chunks()
    server.release.release()
    assert next(chunks) == b'{"a":1'  # before the rest was even sent
    server.release.release()
    assert next(chunks) == b"}\n"
    server.release.release()
    assert list(chunks) == []
    server.sock.close()


def test_closing_a_stream_from_another_thread_ends_a_blocked_read() -> None:
    server = Trickle([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"never sent"])
    t = transport.Transport("127.0.0.1", server.port, None, connect_timeout=1, max_idle=1)
    server.release.release()
    stream = t.stream("/w", {}, 30.0)
    threading.Timer(0.2, stream.close).start()
    started = time.monotonic()
    with pytest.raises((OSError, ValueError, AttributeError, transport.ProtocolError)):
        list(stream.chunks())
    assert time.monotonic() - started < 5  # not the 30 s read timeout
    server.sock.close()


def test_an_error_answer_to_a_stream_is_read_whole() -> None:
    body = b'{"kind":"Status","code":410}'
    server = Trickle([b"HTTP/1.1 410 Gone\r\nContent-Length: %d\r\n\r\n" % len(body) + body])
    t = transport.Transport("127.0.0.1", server.port, None, connect_timeout=1, max_idle=1)
    server.release.release()
    stream = t.stream("/w", {}, 2.0)
    assert (stream.status, stream.rest()) == (410, body)
    server.sock.close()
