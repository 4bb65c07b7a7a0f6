"""Userspace TCP relays for the lab's kube-proxy: LB IP:port -> backend host:port.

Where it sits: proxy.py computes the wanted relays and calls `RelaySet.apply()`; the
relays run on one asyncio loop in a thread of their own.  Listening sockets use
SO_REUSEPORT (nginx Pods listen with `reuseport` on the wildcard address; the more
specific LB IP binding wins) and IP_FREEBIND (the LB IP may be added a moment later).
Only TCP is relayed; backends are picked round-robin per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import threading

log = logging.getLogger("kubelet.relay")

IP_FREEBIND = 15  # <linux/in.h>; the socket module does not export these two
IPV6_FREEBIND = 78  # <linux/in6.h>
CONNECT_TIMEOUT = 3.0
Listen = tuple[str, int]  # (LB IP, Service port)
Target = tuple[str, int]  # (backend address, target port)


class _Relay:
    def __init__(self, listen: Listen, targets: tuple[Target, ...]) -> None:
        self.listen = listen
        self.targets = targets
        self._next = itertools.count()
        self.server: asyncio.base_events.Server | None = None

    def pick(self) -> Target:
        return self.targets[next(self._next) % len(self.targets)]

    async def start(self) -> None:
        ip, port = self.listen
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        sock.bind((ip, port))
        sock.listen(128)
        sock.setblocking(False)
        self.server = await asyncio.start_server(self._handle, sock=sock)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.pick()
        try:
            connect = asyncio.open_connection(host, port)
            up_reader, up_writer = await asyncio.wait_for(connect, CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.info("relay %s:%d -> %s:%d: connect failed: %s", *self.listen, host, port, exc)
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


class RelaySet:
    """The running relays; apply() replaces them with the wanted set (thread-safe)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._relays: dict[Listen, _Relay] = {}  # listen address -> relay
        self._thread = threading.Thread(target=self._loop.run_forever, name="relays", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def apply(self, wanted: dict[Listen, tuple[Target, ...]]) -> None:
        future = asyncio.run_coroutine_threadsafe(self._apply(wanted), self._loop)
        future.result(timeout=10)

    async def _apply(self, wanted: dict[Listen, tuple[Target, ...]]) -> None:
        for listen in list(self._relays):
            if listen not in wanted:
                self._relays.pop(listen).close()
                log.info("relay %s:%d stopped", *listen)
        for listen, targets in wanted.items():
            relay = self._relays.get(listen)
            if relay is not None:
                relay.targets = targets
                continue
            relay = _Relay(listen, targets)
            try:
                await relay.start()
            except OSError as exc:
                log.warning("relay %s:%d cannot listen: %s", *listen, exc)
                continue
            self._relays[listen] = relay
            log.info("relay %s:%d -> %s", *listen, ", ".join(f"{h}:{p}" for h, p in targets))
