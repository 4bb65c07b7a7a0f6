"""Announcer pieces that need no socket: which interfaces count as LAN interfaces."""

from __future__ import annotations

from pathlib import Path

import pytest
from l2lb_agent import announcer


def make_iface(root: Path, name: str, *, type_: str = "1", flags: str = "0x1003", devtype: str = "",
               bridge: bool = False) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "type").write_text(type_ + "\n")
    (d / "flags").write_text(flags + "\n")
    (d / "uevent").write_text(f"INTERFACE={name}\n" + (f"DEVTYPE={devtype}\n" if devtype else ""))
    (d / "address").write_text("02:00:00:00:00:01\n")
    if bridge:
        (d / "bridge").mkdir()


IFACES = [
    # name, kwargs, suitable
    ("eth0", {}, True),  # the lab's node uplink is a veth named eth0: it counts
    ("enp3s0", {}, True),
    ("bond0", {"devtype": "bond"}, True),
    ("lo", {"type_": "772"}, False),
    ("veth1a2b", {}, False),
    ("cali123", {}, False),
    ("cni0", {}, False),
    ("flannel.1", {}, False),
    ("docker0", {}, False),
    ("kube-lb0", {}, False),
    ("lxc42", {}, False),
    ("cilium_host", {}, False),
    ("br-lan", {"bridge": True}, False),
    ("vx0", {"devtype": "vxlan"}, False),
    ("wg0", {"type_": "65534"}, False),
    ("eth1", {"flags": "0x1002"}, False),  # down
]


@pytest.mark.parametrize(("name", "kwargs", "suitable"), [pytest.param(*r, id=r[0]) for r in IFACES])
def test_unsuitable(tmp_path: Path, name: str, kwargs: dict, suitable: bool) -> None:
    make_iface(tmp_path, name, **kwargs)
    why = announcer.unsuitable(name, tmp_path)
    assert (why is None) is suitable, why


def test_choose_interfaces_default_and_configured(tmp_path: Path) -> None:
    for name, kwargs, _ in IFACES:
        make_iface(tmp_path, name, **kwargs)
    assert announcer.choose_interfaces((), tmp_path) == ["bond0", "enp3s0", "eth0"]
    assert announcer.choose_interfaces(["veth1a2b"], tmp_path) == ["veth1a2b"]  # the operator decides
    with pytest.raises(ValueError, match="interfaces: nope not found"):
        announcer.choose_interfaces(["nope"], tmp_path)


def test_speaker_metrics_exposed_from_plain_counters() -> None:
    from l2lb_agent import frames, membership, speaker, speaker_metrics, timing
    from prometheus_client import CollectorRegistry, generate_latest

    sp = speaker.Speaker(None, None, namespace="ns", node="node1", identity="pod",  # type: ignore[arg-type]
                         lb_class="l2lb.io/layer2", t=timing.LanTimings(), interfaces=[])
    sp.announcer.stats.answered["arp"] += 3
    sp.announcer.stats.dropped[frames.Verdict.NOT_OWNED] += 2
    sp.members.rejected[membership.Reject.BAD_MAC] += 4
    reg = CollectorRegistry()
    reg.register(speaker_metrics.Collector(sp))
    text = generate_latest(reg).decode()
    assert 'l2lb_speaker_requests_answered_total{kind="arp"} 3.0' in text
    assert 'l2lb_speaker_frames_dropped_total{reason="not_owned"} 2.0' in text
    assert 'l2lb_speaker_heartbeats_rejected_total{reason="bad_mac"} 4.0' in text
    assert "l2lb_speaker_owned_ips 0.0" in text
    assert "l2lb_speaker_fenced 1.0" in text  # no keys, never started: silent
    assert "l2lb_speaker_keys_loaded 0.0" in text
    assert "l2lb_speaker_garps_sent_total 0.0" in text
