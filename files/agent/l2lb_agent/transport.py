"""HTTP/1.1 to the API server: kept-alive connections for requests, a connection each for watches.

Adapter ring, used only by `l2lb_agent.kube`. Why not urllib3 (what kube.py used before): against
the lab's API server one status PATCH cost the client 1.42 ms of CPU and 7.8 ms of wall time
through urllib3 (its pool, URL, header and response objects, http.client's email-based header
parser), and 0.54 ms and 4.8 ms here, the request written in one piece and the response read with
`readline` (p50 of 5 x 300 writes, `python -m tests.bench.http_bench`). The controller sends one
such write per allocation, on the same cores as the API server it waits for, and the write is on
the path from a Service's creation to its first ARP answer. Watch events paid urllib3's chunk
reader the same way; now the agent needs no HTTP library.

Requests (`Transport.request`): up to `max_idle` idle connections (TLS with the kubeconfig's
context, or plain TCP); the request is written in one piece with a Content-Length body; the
response is framed by Content-Length, chunked encoding, or the connection's end. A connection
goes back to the pool only after its whole response was read and the server did not ask to
close; one found readable while idle (the server closed it) is thrown away before use, the check
urllib3 does too. Watches (`Transport.stream`): a connection of their own, read chunk by chunk,
closed at the end; `Stream.close()` from another thread ends a blocked read.
Errors: `OSError` (timeouts and TLS errors included) or `ProtocolError`; the connection is closed
and never reused. Not done: retries (the caller decides), redirects, compression (no
Accept-Encoding is sent), 1xx responses (no Expect is sent).
Bounded: a status, header or chunk-size line is at most MAX_LINE bytes, at most MAX_HEADERS
headers, a body at most MAX_BODY bytes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

MAX_LINE = 65536
T = TypeVar("T")
MAX_HEADERS = 200
MAX_BODY = 1 << 30  # a 500-item LIST page of large objects stays far below this


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 as this client reads it."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class _Conn:
    """One socket and its buffered reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def close(self) -> None:
        for part in (self.reader, self.sock):
            with contextlib.suppress(OSError):
                part.close()

    def dropped(self) -> bool:
        """True when the idle socket is readable: the server closed it (or sent what nobody asked)."""
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True


class Transport:
    """Thread-safe: each request takes an idle connection (or opens one) for itself."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, *,
                 connect_timeout: float, max_idle: int) -> None:
        self.host, self.port, self._ssl = host, port, ssl_context
        self._connect_timeout, self._max_idle = connect_timeout, max_idle
        self._host_header = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self.opened = 0  # connections opened so far (a reused pool keeps this low)

    def request(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None,
                read_timeout: float) -> Response:
        """Send one request and read its whole response. Raises OSError or ProtocolError."""
        conn = self._take()
        response, keep = _exchange(conn, self._head(method, target, headers, body) + (body or b""),
                                   read_timeout, lambda reader: _read_response(reader, method))
        self._give_back(conn, keep)
        return response

    def stream(self, target: str, headers: Mapping[str, str], read_timeout: float) -> Stream:
        """Send a GET whose answer is read as it arrives (a watch), on a connection of its own that
        is closed, never pooled, when the stream ends. An error status is answered whole: read it
        with `Stream.rest()`. Raises OSError or ProtocolError."""
        conn = self._open()
        status, framing = _exchange(conn, self._head("GET", target, headers, None), read_timeout, _read_head)
        return Stream(conn, status, framing)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _head(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _take(self) -> _Conn:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._open()
            if not conn.dropped():
                return conn
            conn.close()

    def _open(self) -> _Conn:
        sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.opened += 1
        return _Conn(sock)

    def _give_back(self, conn: _Conn, keep: bool) -> None:
        if keep:
            with self._lock:
                if len(self._idle) < self._max_idle:
                    self._idle.append(conn)
                    return
        conn.close()


def _exchange(conn: _Conn, request: bytes, read_timeout: float, read: Callable[[Any], T]) -> T:
    """Send request on conn and read (part of) the answer; conn is closed if either fails."""
    try:
        conn.sock.settimeout(read_timeout)
        conn.sock.sendall(request)
        return read(conn.reader)
    except BaseException:
        conn.close()
        raise


def _line(reader: object) -> bytes:
    line = reader.readline(MAX_LINE + 1)  # type: ignore[attr-defined]
    if not line:
        raise ProtocolError("the server closed the connection before answering")
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise ProtocolError("a status or header line is too long or cut off")
    return line


@dataclass(frozen=True)
class _Framing:
    length: int | None  # Content-Length, when given
    chunked: bool
    keep: bool  # the server lets the connection be used again


def _read_head(reader: object) -> tuple[int, _Framing]:
    """The status and how the body is framed."""
    status_line = _line(reader).split(None, 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {bytes(status_line[0])[:40]!r}")
    keep = status_line[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for _i in range(MAX_HEADERS + 1):
        line = _line(reader)
        if line in (b"\r\n", b"\n"):
            break
        name, _sep, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if not value.isdigit() or int(value) > MAX_BODY:
                raise ProtocolError(f"bad Content-Length {value[:20]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            keep = keep and b"close" not in value
    else:
        raise ProtocolError(f"more than {MAX_HEADERS} header lines")
    return int(status_line[1]), _Framing(length, chunked, keep)


def _read_response(reader: object, method: str) -> tuple[Response, bool]:
    """(the response, whether the connection may be used again)."""
    status, framing = _read_head(reader)
    if method == "HEAD" or status in (204, 304):
        return Response(status, b""), framing.keep
    if framing.chunked:
        return Response(status, b"".join(_chunks(reader))), framing.keep
    if framing.length is not None:
        return Response(status, _read_exactly(reader, framing.length)), framing.keep
    body = reader.read(MAX_BODY + 1)  # type: ignore[attr-defined]  # framed by the connection's end
    if len(body) > MAX_BODY:
        raise ProtocolError("the response body is too large")
    return Response(status, body), False


class Stream:
    """A response read as it arrives; `close()` from any thread ends a blocked read."""

    def __init__(self, conn: _Conn, status: int, framing: _Framing) -> None:
        self.status = status
        self._conn, self._framing = conn, framing
        self._closed = False

    def chunks(self) -> Iterator[bytes]:
        """The body's pieces as they come (chunks, or reads of the unframed rest)."""
        try:
            if self._framing.chunked:
                yield from _chunks(self._conn.reader)
            elif self._framing.length is not None:
                yield _read_exactly(self._conn.reader, self._framing.length)
            else:
                while piece := self._conn.reader.read1(65536):
                    yield piece
        finally:
            self.close()

    def rest(self) -> bytes:
        """The whole body (an error answer): bounded by MAX_BODY."""
        return b"".join(self.chunks())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in another thread
        self._conn.close()


def _read_exactly(reader: object, n: int) -> bytes:
    data = reader.read(n)  # type: ignore[attr-defined]
    if len(data) != n:
        raise ProtocolError(f"the connection ended {n - len(data)} bytes before the body did")
    return data


def _chunks(reader: object) -> Iterator[bytes]:
    """A chunked body's chunks, as each one arrives; the trailers are read and dropped."""
    total = 0
    while True:
        size_text = _line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise ProtocolError("the response body is too large")
        chunk = _read_exactly(reader, size)
        if _line(reader) not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk does not end where its size says")
        yield chunk
    for _i in range(MAX_HEADERS + 1):  # trailers, up to the empty line
        if _line(reader) in (b"\r\n", b"\n"):
            return
    raise ProtocolError(f"more than {MAX_HEADERS} trailer lines")
