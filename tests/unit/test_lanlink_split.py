"""The heartbeat socket split (kernel filter on the flags byte) and receive times from kernel
timestamps: pure parts of lanlink, on the BPF oracle and fake clocks."""

from __future__ import annotations

import socket
import struct

import pytest
from l2lb_agent import announcer, frames, lanlink
from l2lb_agent import membership as mb

from tests.unit import cbpf

KEY = b"k" * 32


def frame(flags: int) -> bytes:
    hb = mb.Heartbeat(node="node1", incarnation=1, seq=7, flags=flags, entries=())
    return mb.GROUP_MAC + b"\x02" * 6 + struct.pack("!H", mb.ETHERTYPE) + mb.encode(hb, [KEY])


def programs() -> tuple[list[frames.Insn], list[frames.Insn]]:
    args = (lanlink.ETH_HEADER + mb.FLAGS_AT, mb.URGENT_IF_SET, mb.URGENT_IF_CLEAR)
    return frames.split_filter(*args, urgent=False), frames.split_filter(*args, urgent=True)


@pytest.mark.parametrize(("flags", "urgent"), [
    (mb.FLAG_CANDIDATE, False),  # the steady state: batched
    (mb.FLAG_CANDIDATE | mb.FLAG_API_FRESH, False),
    (0, True),  # not a candidate (any more): a hand-over, take it at once
    (mb.FLAG_API_FRESH, True),
    (mb.FLAG_LEAVING, True),
    (mb.FLAG_CANDIDATE | mb.FLAG_LEAVING, True),
])
def test_every_heartbeat_reaches_exactly_one_socket(flags: int, urgent: bool) -> None:
    batched, hurry = programs()
    for prog in (batched, hurry):
        cbpf.check(prog)
    got = (cbpf.run(batched, frame(flags)) > 0, cbpf.run(hurry, frame(flags)) > 0)
    assert got == (not urgent, urgent)


@pytest.mark.parametrize("length", [1, 14, 18, 19])
def test_frames_too_short_for_the_flags_go_to_the_batched_socket(length: int) -> None:
    batched, hurry = programs()
    short = frame(0)[:length]
    assert cbpf.run(batched, short) > 0 and cbpf.run(hurry, short) == 0  # read, counted malformed


def stamp(realtime: float) -> list[tuple[int, int, bytes]]:
    sec = int(realtime)
    timespec = struct.pack("@qq", sec, round((realtime - sec) * 1e9))
    return [(socket.SOL_SOCKET, announcer.SO_TIMESTAMPNS, timespec)]


@pytest.mark.parametrize(("ancillary", "offset", "want"), [
    (stamp(1000.95), 900.0, 100.95 + announcer.WALL_STEP),  # arrived 50 ms before it was read
    (stamp(1001.5), 900.0, 101.0),  # a stamp after now (clock skew): never later than now
    (stamp(1000.95), None, 101.0),  # realtime was stepped since the last read: now
    ([], 900.0, 101.0),  # no timestamp
    ([(socket.SOL_SOCKET, announcer.SO_TIMESTAMPNS, b"\0" * 8)], 900.0, 101.0),  # truncated
    ([(socket.SOL_SOCKET, 99, b"\0" * 16)], 900.0, 101.0),  # another kind
])
def test_receive_time(ancillary: list, offset: float | None, want: float) -> None:
    assert lanlink.receive_time(ancillary, 101.0, offset) == pytest.approx(want, abs=1e-6)
