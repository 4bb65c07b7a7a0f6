"""A byte relay that carries the API server into the lab's network namespaces.

Path of every in-namespace API call: client -> tcp 127.0.0.1:6443 (this relay, inside the
node's netns) -> Unix socket .lab/run/api.sock (this relay, host netns) -> tcp 127.0.0.1:6443
(kube-apiserver). Socket files cross namespaces; TCP does not. TLS passes through untouched.

Blackhole mode (`lab api-down NODE`) plays a cut cable: relaying stops on open connections
and new ones are accepted but never connected, so clients see silence, not a reset. Leaving
it (`lab api-up`) closes the held connections so clients reconnect. The mode follows the
flag file given by --blackhole-flag: read at start and on every SIGUSR1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("l2lb_lab.forwarder")
CHUNK = 65536


@dataclass(eq=False)
class Conn:
    """One relayed connection: the accepted side and, once connected, the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    pumps: list[asyncio.Task] = field(default_factory=list)

    def close(self) -> None:
        for task in self.pumps:
            task.cancel()
        for w in (self.client, self.upstream):
            if w is not None:
                w.close()


def parse_endpoint(text: str) -> tuple[str, str]:
    """`tcp:HOST:PORT` or `unix:PATH` -> (kind, address)."""
    kind, _, addr = text.partition(":")
    if kind not in ("tcp", "unix") or not addr:
        raise ValueError(f"endpoint {text!r}: expected tcp:HOST:PORT or unix:PATH")
    return kind, addr


async def open_endpoint(endpoint: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, addr = parse_endpoint(endpoint)
    if kind == "unix":
        return await asyncio.open_unix_connection(addr)
    host, _, port = addr.rpartition(":")
    return await asyncio.open_connection(host, int(port))


class Relay:
    """Accepts connections and relays them to `upstream` unless blackholed."""

    def __init__(self, upstream: str, flag: Path | None) -> None:
        self.upstream = upstream
        self.flag = flag
        self.blackholed = False
        self.conns: set[Conn] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(writer)
        self.conns.add(conn)
        if self.blackholed:
            return  # held: accepted, never connected, closed by resume()
        try:
            up_reader, up_writer = await open_endpoint(self.upstream)
        except OSError as exc:
            log.warning("upstream %s unreachable: %s", self.upstream, exc)
            self._drop(conn)
            return
        conn.upstream = up_writer
        if self.blackholed:  # the cable was cut while we were connecting
            return
        conn.pumps = [asyncio.create_task(self._pump(reader, up_writer)),
                      asyncio.create_task(self._pump(up_reader, writer))]
        done = await asyncio.gather(*conn.pumps, return_exceptions=True)
        if not any(isinstance(d, asyncio.CancelledError) for d in done):
            self._drop(conn)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(CHUNK):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            dst.close()

    def _drop(self, conn: Conn) -> None:
        conn.close()
        self.conns.discard(conn)

    def apply_flag(self) -> None:
        want = self.flag is not None and self.flag.exists()
        if want and not self.blackholed:
            self.blackholed = True
            for conn in self.conns:
                for task in conn.pumps:
                    task.cancel()  # stop relaying; both sockets stay open, silent
            log.info("blackhole on: holding %d connection(s)", len(self.conns))
        elif not want and self.blackholed:
            self.blackholed = False
            held = list(self.conns)
            for conn in held:
                self._drop(conn)
            log.info("blackhole off: closed %d held connection(s)", len(held))


async def serve(listen: str, relay: Relay) -> None:
    kind, addr = parse_endpoint(listen)
    if kind == "unix":
        with contextlib.suppress(FileNotFoundError):
            Path(addr).unlink()
        server = await asyncio.start_unix_server(relay.handle, addr)
    else:
        host, _, port = addr.rpartition(":")
        server = await asyncio.start_server(relay.handle, host, int(port), reuse_address=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, relay.apply_flag)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    relay.apply_flag()
    log.info("relaying %s -> %s", listen, relay.upstream)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m l2lb_lab.forwarder", description=__doc__.split("\n")[0])
    p.add_argument("--listen", required=True, help="tcp:HOST:PORT or unix:PATH")
    p.add_argument("--connect", required=True, help="tcp:HOST:PORT or unix:PATH")
    p.add_argument("--blackhole-flag", type=Path, help="while this file exists, relay nothing")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s forwarder %(message)s")
    for endpoint in (args.listen, args.connect):
        try:
            parse_endpoint(endpoint)
        except ValueError as exc:
            p.error(str(exc))
    asyncio.run(serve(args.listen, Relay(args.connect, args.blackhole_flag)))


if __name__ == "__main__":
    main()
