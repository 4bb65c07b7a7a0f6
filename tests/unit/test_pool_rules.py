"""The pools format's extensions (l2lb_agent.config): node-selectors, interfaces, service-allocation.

Tables: selector semantics (Kubernetes'), who a pool admits and the refusing rule's words, every
refusal of bad input with its field path, caps on hostile list lengths, and the canonical round trip.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from l2lb_agent import config

FULL = """
address-pools:
- name: lan
  addresses: [192.168.1.240/28]
  node-selectors:
  - matchLabels: {rack: a}
    matchExpressions: [{key: zone, operator: In, values: [x, y]}]
  - matchLabels: {kubernetes.io/hostname: node3}
  interfaces: [eth0, "ens*"]
  service-allocation:
    priority: 10
    namespaces: [team-a]
    namespace-selectors: [{matchLabels: {team: a}}]
    service-selectors: [{matchExpressions: [{key: app, operator: Exists}]}]
"""


def one_pool(**extra: Any) -> dict[str, Any]:
    return {"address-pools": [{"name": "p", "addresses": ["10.0.0.0/29"], **extra}]}


def sel(labels: dict[str, str] | None = None,
        *exprs: tuple[str, str, tuple[str, ...]]) -> config.LabelSelector:
    return config.LabelSelector(match_labels=tuple(sorted((labels or {}).items())),
                                match_expressions=tuple(config.Requirement(k, op, v) for k, op, v in exprs))


SELECTORS = [
    pytest.param(sel(), {}, True, id="empty-matches-everything"),
    pytest.param(sel({"a": "1"}), {"a": "1", "b": "2"}, True, id="label-equal"),
    pytest.param(sel({"a": "1"}), {"a": "2"}, False, id="label-differs"),
    pytest.param(sel({"a": "1"}), {}, False, id="label-missing"),
    pytest.param(sel({"a": ""}), {"a": ""}, True, id="label-empty-value"),
    pytest.param(sel(None, ("z", "In", ("x", "y"))), {"z": "y"}, True, id="in"),
    pytest.param(sel(None, ("z", "In", ("x",))), {}, False, id="in-missing"),
    pytest.param(sel(None, ("z", "NotIn", ("x",))), {}, True, id="notin-missing-matches"),
    pytest.param(sel(None, ("z", "NotIn", ("x",))), {"z": "x"}, False, id="notin-excluded"),
    pytest.param(sel(None, ("z", "Exists", ())), {"z": ""}, True, id="exists"),
    pytest.param(sel(None, ("z", "Exists", ())), {}, False, id="exists-missing"),
    pytest.param(sel(None, ("z", "DoesNotExist", ())), {}, True, id="doesnotexist"),
    pytest.param(sel(None, ("z", "DoesNotExist", ())), {"z": "1"}, False, id="doesnotexist-present"),
    pytest.param(sel({"a": "1"}, ("z", "Exists", ())), {"a": "1"}, False, id="labels-and-expressions-ANDed"),
]


@pytest.mark.parametrize(("selector", "labels", "expected"), SELECTORS)
def test_selector_semantics(selector: config.LabelSelector, labels: dict[str, str], expected: bool) -> None:
    assert selector.matches(labels) is expected


def test_selector_text_is_kubectls_syntax() -> None:
    s = sel({"rack": "a"}, ("zone", "In", ("x", "y")), ("gpu", "Exists", ()), ("old", "DoesNotExist", ()),
            ("tier", "NotIn", ("db",)))
    assert str(s) == "rack=a,zone in (x,y),gpu,!old,tier notin (db)"
    assert str(sel()) == "(everything)"


def test_full_example_loads_and_round_trips() -> None:
    cfg = config.load_config(FULL)
    (p,) = cfg.pools
    assert p.node_selectors[0] == sel({"rack": "a"}, ("zone", "In", ("x", "y")))
    assert p.interfaces == ("eth0", "ens*")
    assert p.service_allocation == config.ServiceAllocation(
        priority=10, namespaces=("team-a",), namespace_selectors=(sel({"team": "a"}),),
        service_selectors=(sel(None, ("app", "Exists", ())),))
    assert p.priority == 10
    text = config.to_yaml(cfg)
    assert config.load_config(text) == cfg
    assert "node-selectors" in text and "service-selectors" in text


def test_seed_pools_render_without_the_extensions() -> None:
    text = config.to_yaml(one_pool())
    assert "node-selectors" not in text and "interfaces" not in text and "service-allocation" not in text
    p = config.load_config(one_pool()).pools[0]
    assert (p.node_selectors, p.interfaces, p.service_allocation, p.priority) == ((), (), None, None)


NODES = [
    pytest.param({"rack": "a", "zone": "x"}, True, id="first-selector"),
    pytest.param({"kubernetes.io/hostname": "node3"}, True, id="second-selector-ORed"),
    pytest.param({"rack": "a", "zone": "z"}, False, id="expression-fails"),
    pytest.param({}, False, id="no-labels"),
]


@pytest.mark.parametrize(("labels", "expected"), NODES)
def test_node_matches(labels: dict[str, str], expected: bool) -> None:
    assert config.load_config(FULL).pools[0].node_matches(labels) is expected


def test_no_node_selectors_means_every_node_and_no_interfaces_every_interface() -> None:
    p = config.load_config(one_pool()).pools[0]
    assert p.node_matches({}) and p.interface_matches("anything0")


@pytest.mark.parametrize(("name", "expected"), [("eth0", True), ("eth1", False), ("ens3", True),
                                                ("ENS3", False), ("xens3", False)])
def test_interface_globs(name: str, expected: bool) -> None:
    assert config.load_config(FULL).pools[0].interface_matches(name) is expected


# (service-allocation, namespace, namespace labels, Service labels, None or words of the refusal)
ADMITS = [
    pytest.param({}, "x", {}, {}, None, id="empty-allocation-admits-all"),
    pytest.param({"namespaces": ["team-a"]}, "team-a", {}, {}, None, id="listed-namespace"),
    pytest.param({"namespaces": ["team-a"]}, "team-b", {}, {},
                 "namespace team-b is not in service-allocation.namespaces [team-a]",
                 id="unlisted-namespace"),
    pytest.param({"namespace-selectors": [{"matchLabels": {"team": "a"}}]}, "n", {"team": "a"}, {}, None,
                 id="namespace-selector-admits"),
    pytest.param({"namespace-selectors": [{"matchLabels": {"team": "a"}}]}, "n", {"team": "b"}, {},
                 "namespace n has labels {team=b} matching no"
                 " service-allocation.namespace-selectors [team=a]",
                 id="namespace-selector-refuses"),
    pytest.param({"namespaces": ["team-a"], "namespace-selectors": [{"matchLabels": {"team": "a"}}]},
                 "other", {"team": "a"}, {}, None, id="namespace-rules-ORed"),
    pytest.param({"namespaces": ["team-a"], "namespace-selectors": [{"matchLabels": {"team": "a"}}]},
                 "other", {}, {}, "is not in service-allocation.namespaces [team-a] and has labels {}",
                 id="both-namespace-rules-refuse"),
    pytest.param({"service-selectors": [{"matchLabels": {"app": "web"}}]}, "n", {}, {"app": "web"}, None,
                 id="service-selector-admits"),
    pytest.param({"service-selectors": [{"matchLabels": {"app": "web"}}, {"matchLabels": {"app": "db"}}]},
                 "n", {}, {"app": "cache"},
                 "Service labels {app=cache} match no service-allocation.service-selectors [app=web; app=db]",
                 id="service-selector-refuses"),
    pytest.param({"namespaces": ["team-a"], "service-selectors": [{"matchLabels": {"app": "web"}}]},
                 "team-a", {}, {}, "service-selectors", id="namespace-and-service-rules-ANDed"),
    pytest.param({"priority": 3}, "n", {}, {}, None, id="priority-only-admits-all"),
]


@pytest.mark.parametrize(("alloc", "ns", "ns_labels", "svc_labels", "refusal"), ADMITS)
def test_admits(alloc: dict[str, Any], ns: str, ns_labels: dict[str, str], svc_labels: dict[str, str],
                refusal: str | None) -> None:
    p = config.load_config(one_pool(**{"service-allocation": alloc})).pools[0]
    got = p.admits(ns, ns_labels, svc_labels)
    if refusal is None:
        assert got is None
    else:
        assert got is not None and refusal in got


def test_a_pool_without_service_allocation_admits_everyone() -> None:
    assert config.load_config(one_pool()).pools[0].admits("any", {}, {}) is None


def _expr(**kw: Any) -> dict[str, Any]:
    return {"node-selectors": [{"matchExpressions": [kw]}]}


# Each refusal: (extra pool keys, field path, words the message must contain)
INVALID = [
    pytest.param({"node-selector": []}, "address-pools[0].node-selector", ["unknown key"], id="misspelt-key"),
    pytest.param({"node-selectors": {"rack": "a"}}, "address-pools[0].node-selectors", ["expected array"],
                 id="selectors-not-a-list"),
    pytest.param({"node-selectors": [{"matchLabel": {}}]}, "address-pools[0].node-selectors[0].matchLabel",
                 ["unknown key", "matchLabels"], id="selector-unknown-key"),
    pytest.param({"node-selectors": [{"matchLabels": {"rack": 1}}]},
                 "address-pools[0].node-selectors[0].matchLabels.rack", ["must be text", 'quote it: "1"'],
                 id="label-value-int"),
    pytest.param({"node-selectors": [{"matchLabels": {"rack": True}}]},
                 "address-pools[0].node-selectors[0].matchLabels.rack", ['quote it: "true"'],
                 id="label-value-bool"),
    pytest.param({"node-selectors": [{"matchLabels": {"rack": "a b"}}]},
                 "address-pools[0].node-selectors[0].matchLabels.rack", ["label value"],
                 id="label-value-space"),
    pytest.param({"node-selectors": [{"matchLabels": {"rack": "x" * 64}}]},
                 "address-pools[0].node-selectors[0].matchLabels.rack", ["1-63"], id="label-value-too-long"),
    pytest.param({"node-selectors": [{"matchLabels": {"Bad_Prefix/x": "a"}}]},
                 "address-pools[0].node-selectors[0].matchLabels", ["prefix", "DNS subdomain"],
                 id="key-prefix"),
    pytest.param({"node-selectors": [{"matchLabels": {"-x": "a"}}]},
                 "address-pools[0].node-selectors[0].matchLabels", ["label key"], id="key-name"),
    pytest.param({"node-selectors": [{"matchLabels": {"": "a"}}]},
                 "address-pools[0].node-selectors[0].matchLabels", ["label key"], id="key-empty"),
    pytest.param(_expr(key="z", operator="in", values=["x"]),
                 "address-pools[0].node-selectors[0].matchExpressions[0].operator",
                 ["unknown operator", "In, NotIn, Exists, DoesNotExist"], id="operator-case"),
    pytest.param(_expr(key="z", operator="Gt", values=["1"]),
                 "address-pools[0].node-selectors[0].matchExpressions[0].operator", ["unknown operator"],
                 id="operator-gt"),
    pytest.param(_expr(key="z", operator="In"),
                 "address-pools[0].node-selectors[0].matchExpressions[0].values",
                 ["In needs at least one value"], id="in-without-values"),
    pytest.param(_expr(key="z", operator="Exists", values=["x"]),
                 "address-pools[0].node-selectors[0].matchExpressions[0].values", ["Exists takes no values"],
                 id="exists-with-values"),
    pytest.param(_expr(operator="Exists"), "address-pools[0].node-selectors[0].matchExpressions[0]",
                 ["'key' is a required key"], id="expression-without-key"),
    pytest.param(_expr(key="z", operator="In", values=[1]),
                 "address-pools[0].node-selectors[0].matchExpressions[0].values[0]", ["expected string"],
                 id="expression-value-int"),
    pytest.param({"interfaces": "eth0"}, "address-pools[0].interfaces", ["expected array"],
                 id="interfaces-str"),
    pytest.param({"interfaces": ["eth 0"]}, "address-pools[0].interfaces[0]", ["no spaces"],
                 id="iface-space"),
    pytest.param({"interfaces": ["a/b"]}, "address-pools[0].interfaces[0]", ["'/'"], id="iface-slash"),
    pytest.param({"interfaces": [""]}, "address-pools[0].interfaces[0]", ["must not be empty"],
                 id="iface-empty"),
    pytest.param({"interfaces": ["enp0s31f6abcdefg"]}, "address-pools[0].interfaces[0]", ["15 characters"],
                 id="iface-too-long"),
    pytest.param({"service-allocation": {"priority": "1"}}, "address-pools[0].service-allocation.priority",
                 ["expected integer"], id="priority-str"),
    pytest.param({"service-allocation": {"priority": True}}, "address-pools[0].service-allocation.priority",
                 ["expected integer"], id="priority-bool"),
    pytest.param({"service-allocation": {"priority": 2**31}}, "address-pools[0].service-allocation.priority",
                 ["out of range"], id="priority-too-big"),
    pytest.param({"service-allocation": {"namespace": ["a"]}},
                 "address-pools[0].service-allocation.namespace", ["unknown key", "namespaces"],
                 id="allocation-misspelt"),
    pytest.param({"service-allocation": {"namespaces": ["Team_A"]}},
                 "address-pools[0].service-allocation.namespaces[0]", ["not a namespace name"], id="ns-name"),
    pytest.param({"service-allocation": {"namespaces": ["x" * 64]}},
                 "address-pools[0].service-allocation.namespaces[0]", ["longer than 63"], id="ns-too-long"),
    pytest.param({"service-allocation": {"service-selectors": [{"matchExpressions": [
        {"key": "app", "operator": "NotIn", "values": []}]}]}},
                 "address-pools[0].service-allocation.service-selectors[0].matchExpressions[0].values",
                 ["NotIn needs at least one value"], id="service-selector-notin-empty"),
    pytest.param({"service-allocation": {"namespace-selectors": [{"matchLabels": {"team": None}}]}},
                 "address-pools[0].service-allocation.namespace-selectors[0].matchLabels.team",
                 ["must be text"], id="namespace-selector-null-value"),
    pytest.param({"service-allocation": None}, "address-pools[0].service-allocation", ["expected object"],
                 id="allocation-null"),
]


@pytest.mark.parametrize(("extra", "field", "words"), INVALID)
def test_invalid(extra: dict[str, Any], field: str, words: list[str]) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load_config(one_pool(**extra))
    assert info.value.field == field
    assert info.value.pool == "p"
    for w in words:
        assert w in str(info.value)


def test_yaml_text_error_names_the_nested_path() -> None:
    bad = FULL.replace("operator: Exists", "operator: exists")
    with pytest.raises(config.ConfigError) as info:
        config.load_config(bad)
    assert info.value.field == ("address-pools[0].service-allocation.service-selectors[0]"
                                ".matchExpressions[0].operator")


CAPS = [
    pytest.param({"node-selectors": [{}] * (config.MAX_SELECTORS + 1)}, "address-pools[0].node-selectors",
                 id="selectors"),
    pytest.param({"node-selectors": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]
                                      * (config.MAX_EXPRESSIONS + 1)}]},
                 "address-pools[0].node-selectors[0].matchExpressions", id="expressions"),
    pytest.param(_expr(key="a", operator="In", values=["v"] * (config.MAX_VALUES + 1)),
                 "address-pools[0].node-selectors[0].matchExpressions[0].values", id="values"),
    pytest.param({"node-selectors": [{"matchLabels": {f"k{i}": "v" for i in range(config.MAX_LABELS + 1)}}]},
                 "address-pools[0].node-selectors[0].matchLabels", id="labels"),
    pytest.param({"interfaces": ["e*"] * (config.MAX_INTERFACES + 1)}, "address-pools[0].interfaces",
                 id="interfaces"),
    pytest.param({"service-allocation": {"namespaces": ["a"] * (config.MAX_NAMESPACES + 1)}},
                 "address-pools[0].service-allocation.namespaces", id="namespaces"),
]


@pytest.mark.parametrize(("extra", "field"), CAPS)
def test_list_caps(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load_config(one_pool(**extra))
    assert info.value.field == field
    assert "more than" in str(info.value)


def test_hostile_huge_lists_are_refused_fast() -> None:
    """A mapping handed over directly (not size-capped like text) with a million selectors."""
    start = time.perf_counter()
    with pytest.raises(config.ConfigError):
        config.load_config(one_pool(**{"node-selectors": [{}] * 1_000_000}))
    assert time.perf_counter() - start < 1.0


def test_admits_message_is_bounded() -> None:
    ns = [f"ns{i}" for i in range(config.MAX_NAMESPACES)]
    p = config.load_config(one_pool(**{"service-allocation": {"namespaces": ns}})).pools[0]
    refusal = p.admits("other", {}, {})
    assert refusal is not None and len(refusal) <= config.MAX_MESSAGE + 40
