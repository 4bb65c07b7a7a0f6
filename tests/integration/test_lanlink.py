"""lanlink on a veth pair in a namespace of its own: batches, own frames, carrier, a dead thread.

Needs root (raw sockets, a network namespace); touches nothing outside the namespace it makes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

NETNS = "l2lb-lanlink-it"
CODE = r"""
import json, sys, time
from l2lb_agent import lanlink
got = []
a = lanlink.LanLink(["lla0"], lambda payloads, ifname: got.append(len(payloads)))
b = lanlink.LanLink(["llb0"], lambda payloads, ifname: got.append(-len(payloads)))
a.start(); b.start()
time.sleep(0.2)
for i in range(50):
    b.send(bytes([i]) * 60)
deadline = time.monotonic() + 3
while a.received < b.sent and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.1)
out = {"batches": list(got), "received": a.received, "b_received": b.received, "sent": b.sent,
       "alive": a.alive(), "up": a.up()}
a.stop(); b.stop()
print(json.dumps(out))
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def veth() -> Iterator[None]:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    sh("ip", "netns", "add", NETNS)
    try:
        sh("ip", "-n", NETNS, "link", "add", "lla0", "type", "veth", "peer", "name", "llb0")
        for dev in ("lla0", "llb0"):
            sh("ip", "-n", NETNS, "link", "set", dev, "up")
        time.sleep(0.2)
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def run() -> dict:
    out = subprocess.run(["ip", "netns", "exec", NETNS, ".venv/bin/python", "-c", CODE], capture_output=True,
                         text=True, check=True, timeout=30)
    return json.loads(out.stdout)


def test_every_frame_arrives_own_frames_skipped_thread_survives(veth: None) -> None:
    got = run()
    assert got["sent"] == got["received"] == 50, got  # a burst arrives whole, in few batches
    assert sum(n for n in got["batches"] if n > 0) == 50
    assert got["b_received"] == 0, "a sender must not receive its own frames"
    assert got["alive"] and got["up"] == ["lla0"]


def test_no_carrier_means_not_up(veth: None) -> None:
    sh("ip", "-n", NETNS, "link", "set", "llb0", "down")  # the peer end down: lla0 loses carrier
    got = run()
    assert got["up"] == [] and got["received"] == 0


BEATS = r"""
import json, time
from l2lb_agent import lanlink
got, carrier_changes = [], []
a = lanlink.LanLink(["lla0"], lambda payloads, ifname: None, on_carrier=lambda: carrier_changes.append(1))
b = lanlink.LanLink(["llb0"], lambda payloads, ifname: got.extend(payloads))
a.start(); b.start()
a.start_beats(lambda now: b"beat" * 15, 0.1)
time.sleep(1.0)
steady = len(got)
for _ in range(5):
    a.beat_soon()  # each asks for a beat now, not at the end of the interval
    time.sleep(0.02)
soon = len(got) - steady
a.stop_beats()
time.sleep(0.3)
stopped = len(got)
time.sleep(0.3)
out = {"steady": steady, "soon": soon, "after_stop": len(got) - stopped, "a_received": a.received,
       "alive": a.alive(), "carrier_changes": len(carrier_changes)}
a.stop(); b.stop()
print(json.dumps(out))
"""


def test_beats_every_interval_at_once_when_asked_and_stop(veth: None) -> None:
    out = subprocess.run(["ip", "netns", "exec", NETNS, ".venv/bin/python", "-c", BEATS], capture_output=True,
                         text=True, check=True, timeout=30)
    got = json.loads(out.stdout)
    assert 9 <= got["steady"] <= 12, got  # 0.1 s interval over 1 s, the first at once
    assert got["soon"] >= 4, got  # five beat_soon() 20 ms apart: not one per interval
    assert got["after_stop"] == 0 and got["a_received"] == 0, got  # no own frames looped back
    assert got["alive"] and got["carrier_changes"] == 0, got


BURST = r"""
import json, statistics, time
from l2lb_agent import lanlink, membership as mb
got = []
a = lanlink.LanLink(["lla0"], lambda frames, ifname: got.append((time.monotonic(), frames)))
b = lanlink.LanLink(["llb0"], lambda frames, ifname: None)
a.start(); b.start()
a.start_beats(lambda now: None, 0.1)  # beats that send nothing: a speaker's link reads before each
time.sleep(0.2)
seq = 0
def beat(flags):
    global seq
    seq += 1
    hb = mb.Heartbeat(node="b", incarnation=1, seq=seq, flags=flags, entries=())
    b.send(mb.encode(hb, [b"k" * 32]))
urgent_sent = {}
for i in range(300):  # 3 s at ~100 frames/s: the receiver reads them in batches
    if i % 50 == 25:
        urgent_sent[seq + 1] = time.monotonic()
        beat(mb.FLAG_LEAVING)
    else:
        beat(mb.FLAG_CANDIDATE)
    time.sleep(0.01)
time.sleep(0.2)
a.stop(); b.stop()
lag, urgent_lag, batches = [], [], 0
for handled, frames in got:
    batches += 1
    for arrived, payload in frames:
        n = int.from_bytes(payload[16:20], "big")  # seq: after head (7), name "b" (1), incarnation (8)
        lag.append(handled - arrived)
        if n in urgent_sent:
            urgent_lag.append(handled - urgent_sent[n])
print(json.dumps({"frames": len(lag), "batches": batches, "min_lag": min(lag), "max_lag": max(lag),
                  "late": sum(1 for x in lag if x > 0.004) / len(lag), "urgent": a.urgent,
                  "urgent_lag": statistics.median(urgent_lag) if urgent_lag else None}))
"""


def test_fast_frames_come_in_batches_with_their_arrival_times_urgent_ones_at_once(veth: None) -> None:
    out = subprocess.run(["ip", "netns", "exec", NETNS, ".venv/bin/python", "-c", BURST], capture_output=True,
                         text=True, check=True, timeout=30)
    got = json.loads(out.stdout)
    assert got["frames"] == 300 and got["urgent"] == 6, got
    assert got["batches"] < 80, got  # ~100 frames/s for 3 s: read before each of ~30 beats (+ urgent reads)
    assert got["min_lag"] >= 0 and got["max_lag"] < 0.1 + 0.1, got  # never before arrival; by the next beat
    assert got["late"] > 0.3, got  # batched: many frames read well after they arrived, stamped when they did
    assert got["urgent_lag"] < 0.012, got  # a LEAVING frame is taken at once, not with the next batch


RING_CODE = r"""
import json, socket, struct, time
from l2lb_agent import lanlink, membership
rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
ring = lanlink.Ring(rx, slots=64)
rx.bind(("lla0", membership.ETHERTYPE))
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
tx.bind(("llb0", 0))
head = membership.GROUP_MAC + bytes(6) + struct.pack("!H", membership.ETHERTYPE)
def send(first, n):
    for i in range(first, first + n):
        tx.send(head + i.to_bytes(4, "big") + bytes(60 + i % 500))
def seen(batch):
    return [int.from_bytes(f[14:18], "big") for f, _stamp, _out in batch]
rounds, stamps_ok = [], True
sent = 0
for n in (10, 40, 50, 63):  # 163 frames through a 64-slot ring: it wraps twice
    t0 = time.time()
    send(sent, n)
    time.sleep(0.05)
    batch = ring.take()
    stamps_ok &= all(t0 - 0.01 <= stamp <= time.time() for _f, stamp, _o in batch)
    stamps_ok &= all(len(f) == 14 + 4 + 60 + i % 500 for (f, _s, _o), i in zip(batch, seen(batch)))
    rounds.append(seen(batch))
    sent += n
send(sent, 100)  # more than the ring holds, unread: the kernel keeps the first 64, drops the rest
time.sleep(0.05)
full = seen(ring.take())
send(sent + 100, 5)  # the ring takes frames again once handed back
time.sleep(0.05)
after = seen(ring.take())
print(json.dumps({"rounds": rounds, "first": sent, "full": full, "after": after, "stamps_ok": stamps_ok,
                  "empty": ring.take()}))
ring.close()
"""


def test_receive_ring_keeps_order_and_times_wraps_and_drops_only_when_full(veth: None) -> None:
    """The batched socket's TPACKET_V2 ring: every frame in send order with its content and a
    kernel receive time, across wrap-arounds; when full, later frames are dropped (not earlier
    ones overwritten) and the ring receives again once read."""
    out = subprocess.run(["ip", "netns", "exec", NETNS, ".venv/bin/python", "-c", RING_CODE],
                         capture_output=True, text=True, check=True, timeout=30)
    got = json.loads(out.stdout)
    sizes = (10, 40, 50, 63)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    assert got["rounds"] == [list(range(s, s + n)) for s, n in zip(starts, sizes, strict=True)]
    assert got["stamps_ok"]
    first = got["first"]
    assert got["full"] == list(range(first, first + 64))
    assert got["after"] == list(range(first + 100, first + 105))
    assert got["empty"] == []
