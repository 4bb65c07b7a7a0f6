"""A hostile host on the lab LAN: capture, replay and forge speaker heartbeats (client namespace).

    python -m tests.bench.lan_tool capture --seconds 1 --out FILE   # record heartbeat frames
    python -m tests.bench.lan_tool replay --file FILE --seconds 2    # send them again, 100/s
    python -m tests.bench.lan_tool forge --node node2 --seconds 2    # signed with a wrong key

Prints one JSON object. Sends only on the lab's eth0, only EtherType 0x88B5, bounded in count
and time. The forged heartbeats claim every flag (candidate, leaving, API fresh) and ack every node.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import socket
import time

from l2lb_agent import membership as mb

IFACE = "eth0"
MAX_RATE = 100  # frames per second
MAX_SECONDS = 30.0


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(mb.ETHERTYPE))
    s.bind((IFACE, mb.ETHERTYPE))
    return s


def capture(seconds: float, out: str) -> dict:
    s = _sock()
    s.settimeout(0.1)
    frames, end = [], time.monotonic() + min(seconds, MAX_SECONDS)
    while time.monotonic() < end:
        try:
            frames.append(base64.b64encode(s.recv(2048)).decode())
        except TimeoutError:
            continue
    with open(out, "w") as f:
        json.dump(frames, f)
    return {"captured": len(frames)}


def _send_for(frames: list[bytes], seconds: float) -> int:
    s, sent = _sock(), 0
    end = time.monotonic() + min(seconds, MAX_SECONDS)
    while time.monotonic() < end and frames:
        s.send(frames[sent % len(frames)])
        sent += 1
        time.sleep(1 / MAX_RATE)
    return sent


def replay(path: str, seconds: float) -> dict:
    with open(path) as f:
        frames = [base64.b64decode(x) for x in json.load(f)]
    return {"sent": _send_for(frames, seconds), "distinct": len(frames)}


def forge(node: str, nodes: list[str], seconds: float) -> dict:
    key = secrets.token_bytes(32)  # not the cluster's key: what any host on the LAN can do
    mac = bytes.fromhex("02deadbeef01")
    frames = []
    for seq in range(1, 200):
        entries = tuple(mb.Entry.make(peer=mb.node_id(n), seq=seq, age=0.0, proven=True, candidate=True)
                        for n in nodes)
        flags = mb.FLAG_CANDIDATE | mb.FLAG_API_FRESH | (mb.FLAG_LEAVING if seq % 2 else 0)
        hb = mb.Heartbeat(node=node, incarnation=time.time_ns(), seq=seq, flags=flags, entries=entries)
        frames.append(mb.GROUP_MAC + mac + mb.ETHERTYPE.to_bytes(2, "big") + mb.encode(hb, [key]))
    return {"sent": _send_for(frames, seconds)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["capture", "replay", "forge"])
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--out", "--file", dest="path", default="")
    p.add_argument("--node", default="node1")
    p.add_argument("--nodes", default="node1,node2,node3")
    a = p.parse_args()
    if a.mode == "capture":
        result = capture(a.seconds, a.path)
    elif a.mode == "replay":
        result = replay(a.path, a.seconds)
    else:
        result = forge(a.node, a.nodes.split(","), a.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
