"""A rolling update of the deployed speakers (site.yml re-run with a changed setting) as the LAN
sees it: the tutorial's nginx address is probed every 20 ms from the client through the whole
rollout; no probe may be answered by two MACs and no gap may exceed 0.2 s.
"""

from __future__ import annotations

import time

import pytest
from ansible_run import NS, playbook, succeeded
from test_ansible import TUTORIAL_IP, wait_for
from test_key_rotation import deployed  # noqa: F401  (the fixture: l2lb deployed, nginx answering)

from tests.bench import speaker_harness as h

pytestmark = pytest.mark.timeout(600)


def rolled_out(kube, generation: int) -> bool:
    ds = kube.apps.read_namespaced_daemon_set_status("l2lb-speaker", NS)
    st = ds.status
    return (ds.metadata.generation > generation and st.observed_generation == ds.metadata.generation
            and st.updated_number_scheduled == st.desired_number_scheduled == st.number_available)


@pytest.mark.usefixtures("deployed")
def test_speaker_rollout_hands_over_without_double_answers_or_gaps(kube, tmp_path) -> None:
    generation = kube.apps.read_namespaced_daemon_set("l2lb-speaker", NS).metadata.generation
    with h.probing(TUTORIAL_IP, 115.0) as res:  # the whole rollout, one pod at a time, is probed
        started = time.monotonic()
        # the lab inventory runs at debug (the demo shows the who-has lines): any change rolls the pods
        succeeded(playbook("site.yml", extra={"l2lb_log_level": "info"}, tmp=tmp_path))
        wait_for(lambda: rolled_out(kube, generation), 100, "the speaker DaemonSet to roll out")
        done = time.monotonic()
    probes = [p for p in res["probes"] if started <= p[0] <= done + 1.0]
    assert probes and probes[-1][0] >= done, "the probe ended before the rollout did"
    assert h.double_windows(probes) == 0, "two MACs answered during the rollout"
    gap = h.longest_silence(probes, started, done)
    print(f"speaker rollout: {done - started:.1f}s, longest unanswered spell {gap:.3f}s")
    assert gap <= 0.2, f"the address went unanswered for {gap:.2f}s during the rollout"
    succeeded(playbook("site.yml"))  # back to the lab's settings
