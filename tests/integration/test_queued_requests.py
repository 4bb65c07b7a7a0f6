"""A request that waited in the announcer's socket from before its target was gained is not answered
late (another node answered it then: a late answer is a second MAC for one request); one that
arrived after the gain is, however long the receive thread took to read it. Real frames on a veth
pair in a namespace of the test's own; the receive thread is held up by not reading the socket,
the way a speaker loading 10,000 Services at start-up holds it. The same again with the realtime
clock stepped back while the requests wait (the kernel stamps them in realtime): the step is
simulated in the test's process only (its `time.time` reads 1 s behind from then on), never on
the host. Needs root; no lab.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# Runs inside the namespace: vb answers (announcer), va asks (the lab probe's frames).
SCRIPT = r"""
import ipaddress, json, select, socket, sys, time
from l2lb_agent import announcer, frames
from tests.bench import speaker_probe

targets, senders, step = json.loads(sys.stdin.read())
ann = announcer.Announcer(["vb"])
port = ann.ports[0]
port.open(frames.bpf_program(set(), set()))  # no receive thread: nothing is read until we say so
ann.set_fence(time.monotonic() + 60)
ann.prepare(frozenset(targets))  # the filter passes their requests from now on: they queue unread
ask = speaker_probe._socket("va")
mac = ask.getsockname()[4].hex(":")

def send(when):
    for ip in targets:
        family = str(ipaddress.ip_address(ip).version)
        ask.send(speaker_probe.request(ip, mac, senders[family][when]))

send("before")  # another node answers for the targets now
time.sleep(0.2)
ann.update(targets)
send("after")
time.sleep(0.2)  # both sets of requests wait in the socket, 0.2 and 0.4 s old
if step:
    real_time = time.time
    time.time = lambda: real_time() - step  # realtime stepped back after they were stamped
port._sock.settimeout(0.05)
for _ in range(2 * len(targets) + 2):
    port.receive_one()
answered = {ip: [] for ip in targets}
end = time.monotonic() + 0.5
while select.select([ask], [], [], max(0.0, end - time.monotonic()))[0]:
    frame = ask.recv(2048)
    for ip in targets:
        got = speaker_probe.answer_of(frame, ipaddress.ip_address(ip).packed)
        if got is not None and got[1] != ipaddress.ip_address(ip).packed:  # not the gratuitous one
            answered[ip].append(str(ipaddress.ip_address(got[1])))
print(json.dumps({"answered": answered, "dropped": {v.name: n for v, n in ann.stats.dropped.items()}}))
"""


@pytest.mark.parametrize("step", [0.0, 1.0], ids=["steady clock", "clock stepped back 1 s while they wait"])
def test_requests_queued_before_the_gain_are_not_answered_late(in_netns: Callable[[str, Any], Any],
                                                                step: float) -> None:
    targets = ["192.0.2.10", "2001:db8::10"]
    senders = {"4": {"before": "198.51.100.1", "after": "198.51.100.2"},
               "6": {"before": "2001:db8:ff::1", "after": "2001:db8:ff::2"}}
    result = in_netns(SCRIPT, [targets, senders, step])
    assert result["answered"] == {"192.0.2.10": ["198.51.100.2"], "2001:db8::10": ["2001:db8:ff::2"]}, result
    assert result["dropped"].get("EARLY") == 2, result
