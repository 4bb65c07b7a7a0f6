"""Pure tests of what the deploy refuses before any change, and of the keys it writes.

- checks: every role value the agent would refuse is refused by the modules, naming the variable
  and the value; the proof runs each rendered container env through the agent's real cli.
- memberlist: the keys plan (keep / generate / write / rotate through a bridge) and that no key
  ever appears in a message, a fingerprint or a redacted diff.
- preflight: kube-proxy in IPVS mode without strictARP; objects l2lb would take over.
- install.leftovers: what keeps a namespace from being deleted.
No cluster: the lab tests (tests/integration/test_deploy_safety.py) run the same code for real.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.l2lb.layer2.plugins.module_utils import (  # noqa: E402
    checks,
    install,
    memberlist,
    preflight,
    render,
)
from l2lb_agent import cli, keyring, timing  # noqa: E402

KEY_A, KEY_B, KEY_C, KEY_D = (c * 44 for c in "ABCD")


# ---- checks ------------------------------------------------------------------------------------

BAD = [
    ("namespace", "L2LB", "namespace"),
    ("image", "", "image"),
    ("image_pull_secrets", ("Bad_Name",), "Bad_Name"),
    ("speaker_priority_class", "Not Valid", "Not Valid"),
    ("loadbalancer_class", "no-prefix", "no-prefix"),
    ("log_level", "verbose", "verbose"),
    ("interfaces", ("eth0/1",), "eth0/1"),
    ("interfaces", ("averyveryverylongname",), "averyveryverylongname"),
    ("controller_replicas", -1, "-1"),
    ("lease_duration", 0.0, "lease_duration"),
    ("renew_interval", 5.0, "renew_interval"),  # two renewals must fit the controller's 6 s Lease
    ("heartbeat_interval", 0.001, "heartbeat_interval"),
    ("dead_after", 0.1, "dead_after"),  # < 3 heartbeats of 0.1 s
    ("handover_delay", 5.0, "handover_delay"),  # > dead_after
    ("heartbeat_interval", 4000.0, "4000"),
    ("controller_metrics_host", "127.0.0.1", "127.0.0.1"),
    ("speaker_metrics_host", "localhost", "localhost"),
    ("speaker_node_selector", {"bad key!": "x"}, "bad key!"),
    ("tolerations", ({"key": "a", "operator": "Maybe"},), "Maybe"),
    ("tolerations", ({"key": "a", "effect": "NoRun"},), "NoRun"),
    ("speaker_resources", {"limits": {"memory": "lots"}}, "lots"),
    ("controller_resources", {"limitz": {}}, "limitz"),
]


@pytest.mark.parametrize(("field", "value", "named"), BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_values_are_refused_naming_variable_and_value(field, value, named):
    with pytest.raises(checks.SettingsError) as caught:
        checks.validate(dataclasses.replace(render.Settings(), **{field: value}))
    message = str(caught.value)
    assert f"l2lb_{field}" in message and named in message


GOOD = [
    {},
    {"heartbeat_interval": 0.2, "dead_after": 1.0, "handover_delay": 0.3},
    {"lease_duration": 10.0, "renew_interval": 2.5},
    {"renew_interval": 2.0},  # against the controller's own 6 s default, as the agent checks it
    {"speaker_metrics_host": "127.0.0.1", "controller_metrics_host": "0.0.0.0"},
    {"speaker_metrics_host": "fd00:4c32:6c62::11"},
    {"interfaces": ("eth0", "bond0.100"), "image_pull_secrets": ("regcred",)},
    {"tolerations": ({"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"},)},
    {"speaker_resources": {"requests": {"cpu": "0.1", "memory": "1Gi"}, "limits": {"memory": "1e9"}}},
]


@pytest.mark.parametrize("given", GOOD, ids=[str(g) for g in GOOD])
def test_good_values_pass(given):
    checks.validate(dataclasses.replace(render.Settings(), **given))


POD = {"spec.nodeName": "node1", "metadata.name": "l2lb-x", "status.podIP": "192.168.1.11"}


def agent_accepts(container: dict, namespace: str, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, str]:
    """Start the agent's real cli on the container's env and args (as the kubelet would)."""
    with monkeypatch.context() as patch:
        for name in [n for n in list(__import__("os").environ) if n.startswith("L2LB_")]:
            patch.delenv(name)
        for item in container["env"]:
            value = item.get("value")
            if value is None:
                fields = {**POD, "metadata.namespace": namespace}
                value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
            patch.setenv(item["name"], value)
        args = cli.build_parser().parse_args(container["args"])
        try:
            cli.validate(args)
        except cli.FlagError as error:
            return False, str(error)
    return True, ""


def containers(settings: render.Settings) -> list[dict]:
    return [obj["spec"]["template"]["spec"]["containers"][0] for obj in render.manifests(settings)
            if obj["kind"] in ("Deployment", "DaemonSet")]


def agent_flags(component: str) -> set[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {dest for action in sub.choices[component]._actions for dest in [action.dest]}


# Settings field -> the agent's flag (dest) it becomes.
FLAG_OF = {"speaker_metrics_host": "metrics_host", "controller_metrics_host": "metrics_host"}
CASES = [
    {"lease_duration": v} for v in (0.5, 1.0, 2.0, 6.0, 100.0, 3599.0)
] + [
    {"renew_interval": v} for v in (0.1, 0.2, 1.0, 2.25, 2.3, 3.0)
] + [
    {"heartbeat_interval": v} for v in (0.01, 0.02, 0.1, 1.0, 30.0, 61.0)
] + [
    {"dead_after": v} for v in (0.05, 0.3, 0.4, 2.0, 60.0)
] + [
    {"handover_delay": v} for v in (0.01, 0.15, 0.4, 0.5)
] + [
    {"loadbalancer_class": v} for v in ("l2lb.io/layer2", "example.com/x_y.z", "no-prefix", "Up.Case/x",
                                        "a/" + "b" * 64, "a/-b")
] + [
    {"interfaces": v} for v in (("eth0",), ("bond0.100", "eth1"), ("a" * 16,), ("eth0/1",), ("eth:0",))
] + [
    {"namespace": v} for v in ("l2lb-system", "lb", "Bad", "x" * 64, "-lb")
] + [
    {"log_level": v} for v in ("debug", "error", "verbose")
] + [
    {"speaker_metrics_host": v} for v in ("", "127.0.0.1", "::1", "0.0.0.0")
]


@pytest.mark.parametrize("given", CASES, ids=[str(g) for g in CASES])
def test_modules_and_agent_agree_on_every_rendered_flag(given, monkeypatch):
    """One behaviour: the modules accept a value exactly when the agent's cli starts with it
    (the modules may only be stricter where the agent has no such check, e.g. a metrics host)."""
    settings = dataclasses.replace(render.Settings(), **given)
    field = next(iter(given))
    try:
        checks.validate(settings)
        module_ok, why = True, ""
    except checks.SettingsError as error:
        module_ok, why = False, str(error)
    for container in containers(settings):
        component = container["args"][0]
        agent_ok, agent_why = agent_accepts(container, settings.namespace, monkeypatch)
        if module_ok:
            assert agent_ok, f"the modules let through what the {component} refuses: {agent_why}"
        if FLAG_OF.get(field, field) in agent_flags(component) and not agent_ok:
            assert not module_ok, f"{component} refuses {given} but the modules accept it"
    if not module_ok:
        assert f"l2lb_{field}" in why


def test_controller_default_lease_and_log_levels_are_the_agents():
    assert checks.CONTROLLER_LEASE_DURATION == cli.CONTROLLER_LEASE_DURATION
    assert checks.MIN_RENEW_INTERVAL == cli.MIN_RENEW_INTERVAL
    assert tuple(render.LOG_LEVELS) == tuple(cli.LOG_LEVELS)


def test_rendered_defaults_start_the_agent(monkeypatch):
    for container in containers(render.Settings()):
        ok, why = agent_accepts(container, "l2lb-system", monkeypatch)
        assert ok, why


# ---- memberlist ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("live", "wanted", "action", "steps"), [
    ((KEY_A,), None, memberlist.Action.KEEP, ()),
    ((KEY_A,), (KEY_A,), memberlist.Action.KEEP, ()),
    ((KEY_A,), (KEY_B, KEY_A), memberlist.Action.WRITE, ((KEY_B, KEY_A),)),
    ((KEY_B, KEY_A), (KEY_B,), memberlist.Action.WRITE, ((KEY_B,),)),
    ((KEY_A,), (KEY_B,), memberlist.Action.ROTATE, ((KEY_B, KEY_A), (KEY_B,))),
    ((KEY_A, KEY_B), (KEY_C, KEY_D), memberlist.Action.ROTATE, ((KEY_C, KEY_D, KEY_A), (KEY_C, KEY_D))),
    ((KEY_A,), (KEY_B, KEY_C, KEY_D), memberlist.Action.ROTATE,
     ((KEY_B, KEY_C, KEY_A), (KEY_B, KEY_C, KEY_D))),
    (None, (KEY_B,), memberlist.Action.WRITE, ((KEY_B,),)),
], ids=["unset-keeps", "same", "add", "drop-old", "replace", "replace-two", "replace-three", "no-live"])
def test_keys_plan(live, wanted, action, steps):
    problem = None if live is not None else "absent"
    plan = memberlist.plan(live, problem, wanted)
    assert (plan.action, plan.steps) == (action, steps)
    for before, after in zip((live or (), *plan.steps), plan.steps, strict=False):
        # consecutive keyrings always share a key: no two speakers ever stop trusting each other
        assert not before or set(before) & set(after)
        keyring.parse_keyring("\n".join(after))  # every step is a keyring the speakers accept


def test_missing_secret_gets_one_generated_key_each_time_a_new_one():
    first = memberlist.plan(None, "absent", None)
    second = memberlist.plan(None, "absent", None)
    assert first.action == memberlist.Action.GENERATE and len(first.steps) == 1 and len(first.steps[0]) == 1
    assert keyring.parse_keyring(first.steps[0][0]) and first.steps[0] != second.steps[0]


def test_unusable_live_secret_without_keys_is_refused_without_showing_it():
    secret = memberlist.secret("ns", (KEY_A,))
    secret["data"]["keys"] = base64.b64encode(b"short\n").decode()
    keys, problem = memberlist.live_keys(secret)
    assert keys is None
    with pytest.raises(memberlist.MemberlistError) as caught:
        memberlist.plan(keys, problem, None)
    assert "keys[1]" in str(caught.value) and "short" not in str(caught.value)
    assert "l2lb_memberlist_keys" in str(caught.value)


def test_bad_keys_are_refused_by_position_never_by_value():
    with pytest.raises(memberlist.MemberlistError) as caught:
        memberlist.check_keys([KEY_A, "x" * 20 + "!" * 20])
    assert "keys[2]" in str(caught.value) and "xxxx" not in str(caught.value)
    with pytest.raises(memberlist.MemberlistError):
        memberlist.check_keys([KEY_A, KEY_B, KEY_C, KEY_D])


def test_secret_round_trips_and_redaction_hides_every_key():
    secret = memberlist.secret("l2lb-system", (KEY_A, KEY_B))
    assert (secret["metadata"]["name"], secret["type"]) == ("l2lb-memberlist", "Opaque")
    assert memberlist.live_keys(secret) == ((KEY_A, KEY_B), None)
    assert render.is_managed(secret)
    shown = repr(memberlist.redacted(secret))
    for key in (KEY_A, KEY_B):
        assert key not in shown and key[:16] not in shown
    assert secret["data"]["keys"] not in shown
    assert memberlist.fingerprint(KEY_A) in shown
    assert memberlist.fingerprint(KEY_A) != memberlist.fingerprint(KEY_B)


def registration(node: str, key_ids: str | None) -> dict:
    notes = {} if key_ids is None else {keyring.KEY_IDS_ANNOTATION: key_ids}
    return {"metadata": {"name": f"l2lb-speaker-{node}", "labels": {"l2lb.io/node": node},
                         "annotations": notes}}


def ids(*keys: str) -> str:
    return keyring.format_key_ids([keyring.key_id(k.encode()) for k in keys])


@pytest.mark.parametrize(("held", "ready", "keys", "lagging"), [
    ({"n1": ids(KEY_A), "n2": ids(KEY_A)}, {"n1", "n2"}, (KEY_B, KEY_A), []),  # the bridge: all hold A
    ({"n1": ids(KEY_B, KEY_A), "n2": ids(KEY_B, KEY_A)}, {"n1", "n2"}, (KEY_B,), []),  # final: all loaded
    ({"n1": ids(KEY_B, KEY_A), "n2": ids(KEY_A)}, {"n1", "n2"}, (KEY_B,), ["n2"]),  # n2 has not
    ({"n1": ids(KEY_B, KEY_A), "n2": ids(KEY_A)}, {"n1"}, (KEY_B,), []),  # n2's Node is not Ready
    ({"n1": ids(KEY_B), "n2": ""}, {"n1", "n2"}, (KEY_B,), []),  # n2 holds no key: silent anyway
    ({"n1": ids(KEY_B), "n2": None}, {"n1", "n2"}, (KEY_B,), ["n2"]),  # n2 has not said yet
    ({"n1": ids(KEY_B), "n2": "junk"}, {"n1", "n2"}, (KEY_B,), ["n2"]),  # unreadable: not trusted
    ({"n1": ids(KEY_C), "n2": ids(KEY_D)}, {"n1", "n2"}, (KEY_A, KEY_B), ["n1", "n2"]),
], ids=["bridge", "final", "one-lags", "lagging-node-not-ready", "no-keys", "not-published", "unreadable",
        "all-lag"])
def test_lagging_speakers_hold_a_keyring_write_up(held, ready, keys, lagging):
    leases = [registration(node, key_ids) for node, key_ids in held.items()]
    lines = memberlist.lagging_speakers(leases, ready.__contains__, keys)
    assert [line.split(":")[0] for line in lines] == lagging
    for line in lines:
        assert not any(key in line for key in (KEY_A, KEY_B, KEY_C, KEY_D))


def test_a_node_is_ready_only_when_its_ready_condition_is_true():
    def node(name: str, *conditions: tuple[str, str]) -> dict:
        return {"metadata": {"name": name},
                "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}
    nodes = [node("a", ("Ready", "True")), node("b", ("Ready", "Unknown")), node("c", ("Ready", "False")),
             node("d", ("MemoryPressure", "True")), {"metadata": {"name": "e"}}, None]
    assert [memberlist.node_ready(n) for n in nodes] == [True, False, False, False, False, False]


# ---- preflight -----------------------------------------------------------------------------------

def kube_proxy(config: str, key: str = "config.conf") -> dict:
    return {"data": {key: config, "kubeconfig.conf": "apiVersion: v1\nkind: Config\n"}}


@pytest.mark.parametrize(("configmap", "refused"), [
    (None, False),
    (kube_proxy("kind: KubeProxyConfiguration\nmode: iptables\n"), False),
    (kube_proxy("kind: KubeProxyConfiguration\nmode: ''\n"), False),
    (kube_proxy("kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: true\n"), False),
    (kube_proxy("kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n"), True),
    (kube_proxy("kind: KubeProxyConfiguration\nmode: ipvs\n"), True),
    (kube_proxy("kind: KubeProxyConfiguration\nmode: IPVS\nipvs: {scheduler: rr}\n", key="config"), True),
    (kube_proxy("{not yaml"), False),
], ids=["absent", "iptables", "default-mode", "ipvs-strict", "ipvs-not-strict", "ipvs-unset", "other-key",
        "garbage"])
def test_kube_proxy_preflight(configmap, refused):
    problem = preflight.kube_proxy_problem(configmap)
    assert (problem is not None) == refused
    if refused:
        assert "strictARP: true" in problem and "l2lb_skip_kube_proxy_check" in problem


def test_objects_l2lb_did_not_create_are_named_a_foreign_namespace_is_not():
    objects = render.manifests(render.Settings(namespace="monitoring"))
    live = {render.ref(o): None for o in objects}
    live["Namespace/monitoring"] = {"metadata": {"name": "monitoring"}}
    live["ServiceAccount/monitoring/l2lb-speaker"] = {"metadata": {"name": "l2lb-speaker"}}
    live["ClusterRole/l2lb-controller"] = {"metadata": {"labels": render.common_labels()}}
    assert preflight.foreign(objects, live) == ["ServiceAccount/monitoring/l2lb-speaker"]
    assert not preflight.namespace_is_ours(live["Namespace/monitoring"])
    assert preflight.namespace_is_ours(None)
    assert preflight.namespace_is_ours(render.namespace(render.Settings(namespace="monitoring")))


def test_leftovers_ignore_l2lb_kubernetes_defaults_and_records():
    ours = {"labels": {"app.kubernetes.io/name": "l2lb"}}
    contents = [
        {"kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "n"}},
        {"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": "n"}},
        {"kind": "Event", "metadata": {"name": "x.1", "namespace": "n"}},
        {"kind": "Pod", "metadata": {"name": "l2lb-speaker-abc", "namespace": "n", **ours}},
        {"kind": "Lease", "metadata": {"name": "l2lb-speaker-node1", "namespace": "n"}},
        {"kind": "Lease", "metadata": {"name": "l2lb-controller", "namespace": "n"}},
        {"kind": "ConfigMap", "metadata": {"name": "grafana", "namespace": "n"}},
        {"kind": "Secret", "metadata": {"name": "tls", "namespace": "n"}},
    ]
    assert install.leftovers(contents) == ["ConfigMap/n/grafana", "Secret/n/tls"]


def test_timing_is_the_agents_module():
    """The modules' timing code is the agent's file (symlink), not a copy."""
    linked = REPO / "plugins" / "module_utils" / "l2lb_timing.py"
    assert linked.is_symlink() and linked.resolve() == Path(timing.__file__).resolve()
    linked = REPO / "plugins" / "module_utils" / "l2lb_keyring.py"
    assert linked.is_symlink() and linked.resolve() == Path(keyring.__file__).resolve()
