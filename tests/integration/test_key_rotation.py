"""Rotating the speakers' heartbeat keys with site.yml, as the LAN sees it: the tutorial's nginx
address is probed every 20 ms from the client through two rotations (generated key -> KEY_1 ->
KEY_2, each sharing no key with the one before, so each goes through the two-step bridge); no
probe may be answered by two MACs (speakers that stopped trusting each other would both answer)
and no gap may exceed 0.2 s. Every speaker publishes the ids of the keys it holds, and a rotation
goes on to the final keys only once all of them hold the bridge: with one speaker paused, the
rotation stops with the bridge in force and that node named, and finishes on the next run.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import signal
import time

import pytest
from ansible_run import NS, playbook, succeeded
from l2lb_agent import keyring
from l2lb_agent import speaker_registry as registry
from test_ansible import TUTORIAL_IP, apply_tutorial, delete_tutorial, lb_ip, wait_for
from test_deploy_safety import agent_pids

from tests.bench import speaker_harness as h

pytestmark = pytest.mark.timeout(600)
KEY_1, KEY_2, KEY_3 = "r1" + "Q" * 42, "r2" + "Z" * 42, "r3" + "K" * 42


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


def registrations(kube) -> dict[str, dict[str, str]]:
    """node -> the annotations of its speaker's registration Lease."""
    selector = f"{registry.ROLE_LABEL}={registry.ROLE}"
    leases = kube.coordination.list_namespaced_lease(NS, label_selector=selector)
    return {lease.metadata.labels[registry.NODE_LABEL]: lease.metadata.annotations or {}
            for lease in leases.items}


def held_key_ids(kube) -> dict[str, str]:
    return {node: notes.get(registry.KEY_IDS) for node, notes in registrations(kube).items()}


def key_ids(*keys: str) -> str:
    """What a speaker holding exactly these keys publishes (the heartbeat's key ids, in order)."""
    return keyring.format_key_ids([keyring.key_id(k.encode()) for k in keys])


def all_hold_only(kube, key: str) -> dict[str, str] | None:
    """Every registration's key ids, once each says its speaker holds exactly `key`."""
    held = held_key_ids(kube)
    return held if held and set(held.values()) == {key_ids(key)} else None


def assert_clean(probes: list, started: float, done: float, what: str) -> None:
    probes = [p for p in probes if started <= p[0] <= done]
    assert probes, f"no probe during {what}"
    assert h.double_windows(probes) == 0, f"two MACs answered during {what}"
    gap = h.longest_silence(probes, started, done)
    answered = [(t, macs) for t, macs in probes if macs]
    spells = [(b[0] - a[0], a, b) for a, b in itertools.pairwise(answered)] or [(0.0, None, None)]
    _, before, after = max(spells, key=lambda spell: spell[0])
    stall = max((b - a for a, b in itertools.pairwise(p[0] for p in probes)), default=0.0)
    where = (f"from {before[0] - started:.2f}s ({before[1]}) to {after[0] - started:.2f}s ({after[1]})"
             if before else "none answered")
    print(f"{what}: {done - started:.1f}s, longest unanswered spell {gap:.3f}s {where}; longest pause "
          f"between probes sent {stall:.3f}s")
    assert gap <= 0.2, (f"the address went unanswered for {gap:.2f}s during {what}, {where} after it began "
                        f"(the probe itself paused at most {stall:.3f}s between requests)")


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
        assert done - started < 85, "the rotations outlasted the probe"
        held = wait_for(lambda: all_hold_only(kube, KEY_2), 20, "every speaker to say it holds the final key")
        assert len(held) == 3
    assert_clean(res["probes"], started, done, "two key rotations")


def standby_speaker(kube) -> tuple[str, list[int]]:
    """A node whose speaker does not answer for the tutorial's address, and its agent's PIDs."""
    owners = [node for node, notes in registrations(kube).items()
              if TUTORIAL_IP in (notes.get(registry.ANNOUNCING) or "").split(",")]
    assert len(owners) == 1, f"expected one owner of {TUTORIAL_IP}, registrations say {owners}"
    pods = kube.core.list_namespaced_pod(NS, label_selector="component=speaker").items
    pod = next(p for p in pods if p.spec.node_name != owners[0])
    pids = agent_pids(pod.metadata.name)
    assert pids, f"no agent process found for {pod.metadata.name}"
    return pod.spec.node_name, pids


def test_a_rotation_waits_for_every_speaker_to_hold_the_bridge(deployed, kube, tmp_path) -> None:
    assert live_keys(kube) == [KEY_2], "runs after the two rotations above"
    node, pids = standby_speaker(kube)
    extra = {"l2lb_memberlist_keys": [KEY_3], "l2lb_memberlist_rotation_wait": 3}
    with h.probing(TUTORIAL_IP, 80.0) as res:
        started = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # it cannot load the bridge (its liveness probe allows 60 s)
        try:
            stopped = playbook("site.yml", extra=extra, tmp=tmp_path)
            assert stopped.returncode != 0, "the rotation went on past a speaker that lacks the bridge"
            assert live_keys(kube) == [KEY_3, KEY_2], "the bridge must stay in force"
            assert held_key_ids(kube)[node] == key_ids(KEY_2)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        message = stopped.stdout + stopped.stderr
        assert f"{node}: its speaker holds only key ids {key_ids(KEY_2)}" in message, message[-3000:]
        assert "l2lb_memberlist_rotation_wait" in message and "bridge keyring stays in force" in message
        assert KEY_3 not in message and KEY_2 not in message
        succeeded(playbook("site.yml", extra=extra, tmp=tmp_path))
        assert live_keys(kube) == [KEY_3]
        wait_for(lambda: all_hold_only(kube, KEY_3), 20, "every speaker, the paused one too, to hold KEY_3")
        done = time.monotonic()
        assert done - started < 75, "the rotation outlasted the probe"
    assert_clean(res["probes"], started, done, "a rotation held up by a paused speaker, then finished")
