"""Rotating the speakers' heartbeat keys with site.yml, as the LAN sees it: the tutorial's nginx
address is probed every 20 ms from the client through two rotations (generated key -> KEY_1 ->
KEY_2, each sharing no key with the one before, so each goes through the two-step bridge); no
probe may be answered by two MACs (speakers that stopped trusting each other would both answer)
and no gap may exceed 0.2 s.
"""

from __future__ import annotations

import base64
import time

import pytest
from ansible_run import NS, playbook, succeeded
from test_ansible import TUTORIAL_IP, apply_tutorial, delete_tutorial, lb_ip, wait_for

from tests.bench import speaker_harness as h

pytestmark = pytest.mark.timeout(600)
KEY_1, KEY_2 = "r1" + "Q" * 42, "r2" + "Z" * 42


@pytest.fixture(scope="module")
def deployed(lab, kube):
    succeeded(playbook("site.yml"))
    apply_tutorial(kube)
    assert wait_for(lambda: lb_ip(kube), 60, "nginx's external IP") == TUTORIAL_IP
    h.wait_answer(TUTORIAL_IP, timeout=60)
    yield
    delete_tutorial(kube)
    playbook("playbooks/uninstall.yml")


def live_keys(kube) -> list[str]:
    secret = kube.core.read_namespaced_secret("l2lb-memberlist", NS)
    return base64.b64decode(secret.data["keys"]).decode().split()


def test_two_rotations_keep_one_answer_without_gaps(deployed, kube, tmp_path) -> None:
    before = live_keys(kube)
    assert KEY_1 not in before and KEY_2 not in before
    with h.probing(TUTORIAL_IP, 90.0) as res:
        started = time.monotonic()
        for key in (KEY_1, KEY_2):
            extra = {"l2lb_memberlist_keys": [key], "l2lb_memberlist_rotation_wait": 3}
            result = playbook("site.yml", extra=extra, tmp=tmp_path)
            succeeded(result)
            assert key not in result.stdout + result.stderr
            assert live_keys(kube) == [key]
        done = time.monotonic()
    probes = [p for p in res["probes"] if started <= p[0] <= done]
    assert probes and done - started < 85, "the rotations outlasted the probe"
    assert h.double_windows(probes) == 0, "two MACs answered during a key rotation"
    gap = h.longest_silence(probes, started, done)
    print(f"two key rotations: {done - started:.1f}s, longest unanswered spell {gap:.3f}s")
    assert gap <= 0.2, f"the address went unanswered for {gap:.2f}s during a key rotation"
