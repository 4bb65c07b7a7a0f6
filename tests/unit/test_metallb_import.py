"""Pure tests of the MetalLB -> l2lb conversion (plugins/module_utils/l2lb_metallb.py).

No cluster: MetalLB's objects are plain dicts, as the module reads them. Every converted result
is also checked by l2lb's own config model (load_config), as the module does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_config  # noqa: E402
from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_metallb as m  # noqa: E402

NODE1 = {"matchLabels": {"kubernetes.io/hostname": "node1"}}
NODE2 = {"matchLabels": {"kubernetes.io/hostname": "node2"}}


def pool(name: str, *addresses: str, labels: dict | None = None, **spec: Any) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"addresses": list(addresses), **spec}}


def l2(name: str, **spec: Any) -> dict:
    return {"metadata": {"name": name}, "spec": spec}


def convert(pools: list[dict], l2ads: list[dict], bgpads: list[dict] = ()) -> m.Conversion:
    return m.validated(m.from_crds(pools, l2ads, bgpads), l2lb_config.load_config, l2lb_config.ConfigError)


def refused(conv: m.Conversion) -> dict[str, str]:
    return {f"{r.kind}/{r.name}": r.reason for r in conv.refused}


def test_one_pool_everything_carried_over_and_the_model_accepts_it() -> None:
    conv = convert([pool("web", "192.168.1.200-192.168.1.207", autoAssign=False, avoidBuggyIPs=True,
                         serviceAllocation={"priority": 10, "namespaces": ["shop"],
                                            "namespaceSelectors": [{"matchLabels": {"team": "a"}}],
                                            "serviceSelectors": [{"matchExpressions": [
                                                {"key": "app", "operator": "Exists"}]}]})],
                   [l2("all")])
    assert conv.refused == ()
    assert conv.pools == ({"name": "web", "protocol": "layer2", "addresses": ["192.168.1.200-192.168.1.207"],
                           "auto-assign": False, "avoid-buggy-ips": True,
                           "service-allocation": {"priority": 10, "namespaces": ["shop"],
                                                  "namespace-selectors": [{"matchLabels": {"team": "a"}}],
                                                  "service-selectors": [{"matchExpressions": [
                                                      {"key": "app", "operator": "Exists"}]}]}},)
    loaded = l2lb_config.load_config({"address-pools": list(conv.pools)})
    assert loaded.pools[0].auto_assign is False and loaded.pools[0].avoid_buggy_ips is True


@pytest.mark.parametrize(("ads", "nodes", "interfaces"), [
    pytest.param([l2("a")], None, None, id="no-selectors-everywhere"),
    pytest.param([l2("a", nodeSelectors=[NODE1])], [NODE1], None, id="one-node-selector"),
    pytest.param([l2("a", nodeSelectors=[NODE1]), l2("b", nodeSelectors=[NODE2])], [NODE1, NODE2], None,
                 id="two-ads-same-interfaces-union-of-nodes"),
    pytest.param([l2("a", nodeSelectors=[NODE1], interfaces=["eth0"]),
                  l2("b", nodeSelectors=[NODE1], interfaces=["eth1"])], [NODE1], ["eth0", "eth1"],
                 id="same-nodes-union-of-interfaces"),
    pytest.param([l2("a", nodeSelectors=[NODE1], interfaces=["eth0"]), l2("b")], None, None,
                 id="one-within-an-everywhere-ad"),
    pytest.param([l2("a", nodeSelectors=[NODE1]), l2("b")], None, None, id="a-selector-and-all-nodes"),
    pytest.param([l2("a", interfaces=["eth0"]), l2("b", interfaces=["eth0"], nodeSelectors=[NODE2])],
                 None, ["eth0"], id="all-nodes-absorbs-one-node"),
])
def test_l2advertisements_give_node_selectors_and_interfaces(ads: list[dict], nodes: list | None,
                                                             interfaces: list | None) -> None:
    conv = convert([pool("p", "192.168.1.200/29")], ads)
    assert conv.refused == ()
    (got,) = conv.pools
    assert got.get("node-selectors") == (sorted(nodes, key=m._canonical) if nodes else None)
    assert got.get("interfaces") == interfaces


def test_nodes_and_interfaces_both_differ_is_refused_naming_the_pool_and_ads() -> None:
    conv = convert([pool("p", "192.168.1.200/29")],
                   [l2("rack1", nodeSelectors=[NODE1], interfaces=["eth0"]),
                    l2("rack2", nodeSelectors=[NODE2], interfaces=["eth1"])])
    assert conv.pools == ()
    reason = refused(conv)["IPAddressPool/p"]
    assert "rack1" in reason and "rack2" in reason and "both node selectors and interfaces" in reason


@pytest.mark.parametrize(("ad", "covered_names"), [
    pytest.param(l2("x"), ["a", "b", "c"], id="neither-list-covers-all"),
    pytest.param(l2("x", ipAddressPools=["b"]), ["b"], id="by-name"),
    pytest.param(l2("x", ipAddressPoolSelectors=[{"matchLabels": {"tier": "web"}}]), ["a", "c"],
                 id="by-label"),
    pytest.param(l2("x", ipAddressPoolSelectors=[{"matchExpressions": [
        {"key": "tier", "operator": "NotIn", "values": ["web"]}]}]), ["b"], id="by-expression"),
    pytest.param(l2("x", ipAddressPools=["b"], ipAddressPoolSelectors=[{"matchLabels": {"tier": "web"}}]),
                 ["a", "b", "c"], id="name-or-label"),
])
def test_which_pools_an_advertisement_covers(ad: dict, covered_names: list[str]) -> None:
    pools = [pool("a", "10.0.0.0/30", labels={"tier": "web"}), pool("b", "10.0.1.0/30"),
             pool("c", "10.0.2.0/30", labels={"tier": "web"})]
    assert m.covered(ad, pools) == covered_names


def test_refusals_by_name_bgp_uncovered_unknown_fields_and_the_model() -> None:
    pools = [pool("ok", "192.168.1.200/30"), pool("bgp", "192.168.1.204/30"),
             pool("lonely", "192.168.1.208/30"), pool("newer", "192.168.1.212/30", futureKnob=True),
             pool("overlap", "192.168.1.201"), pool("odd", "192.168.1.216/30")]
    ads = [l2("main", ipAddressPools=["ok", "bgp", "newer", "overlap", "ghost"]),
           l2("weird", ipAddressPools=["odd"], sendGARPEvery="5s")]
    conv = convert(pools, ads, [l2("uplink", ipAddressPools=["bgp"])])
    assert [p["name"] for p in conv.pools] == ["ok"]
    why = refused(conv)
    assert "BGPAdvertisement uplink" in why["IPAddressPool/bgp"]
    assert "no L2Advertisement covers it" in why["IPAddressPool/lonely"]
    assert "spec.futureKnob" in why["IPAddressPool/newer"]
    assert "spec.sendGARPEvery" in why["L2Advertisement/weird"]
    assert "L2Advertisement weird" in why["IPAddressPool/odd"]
    assert why["IPAddressPool/overlap"].startswith("l2lb refuses it:")
    assert "overlaps" in why["IPAddressPool/overlap"]
    assert any("ghost" in note for note in conv.notes)


def test_the_model_refuses_the_later_of_two_same_named_pools() -> None:
    legacy = ("address-pools:\n- {name: a, protocol: layer2, addresses: [10.0.0.0/30]}\n"
              "- {name: a, protocol: layer2, addresses: [10.0.1.0/30]}\n")
    conv = m.validated(m.from_configmap(legacy), l2lb_config.load_config, l2lb_config.ConfigError)
    assert [p["addresses"] for p in conv.pools] == [["10.0.0.0/30"]]
    assert "duplicate pool name" in refused(conv)["address-pool/a"]


def test_bad_selector_refuses_the_advertisement_and_its_pools() -> None:
    conv = convert([pool("p", "192.168.1.200/30")],
                   [l2("bad", nodeSelectors=[{"matchExpressions": [{"key": "x", "operator": "Near"}]}])])
    assert conv.pools == ()
    assert "operator must be one of" in refused(conv)["L2Advertisement/bad"]


@pytest.mark.parametrize("refs", [
    pytest.param({"ipAddressPools": "p"}, id="names-not-a-list"),
    pytest.param({"ipAddressPools": [{"name": "p"}]}, id="names-not-strings"),
    pytest.param({"ipAddressPoolSelectors": [{"matchExpressions": [{"operator": "In"}]}]},
                 id="selector-no-key"),
])
def test_unreadable_pool_references_refuse_on_the_safe_side(refs: dict) -> None:
    pools = [pool("p", "192.168.1.200/30"), pool("q", "192.168.1.204/30")]
    l2_bad = convert(pools, [l2("bad", **refs)])
    assert l2_bad.pools == () and "L2Advertisement/bad" in refused(l2_bad)
    bgp_bad = convert(pools, [l2("all")], [l2("bgp", **refs)])
    assert bgp_bad.pools == ()
    assert "counted as covering every pool" in refused(bgp_bad)["BGPAdvertisement/bgp"]
    assert "BGPAdvertisement bgp" in refused(bgp_bad)["IPAddressPool/q"]


LEGACY = """
peers:
- peer-address: 10.0.0.1
  peer-asn: 64501
  my-asn: 64500
address-pools:
- name: default
  protocol: layer2
  addresses: [192.168.1.224/29]
- name: quiet
  protocol: layer2
  addresses: [192.168.1.232-192.168.1.235]
  auto-assign: false
  avoid-buggy-ips: true
- name: routed
  protocol: bgp
  addresses: [10.9.0.0/24]
- name: tagged
  protocol: layer2
  addresses: [192.168.1.236/30]
  bgp-advertisements: [{aggregation-length: 32}]
"""


def test_legacy_configmap() -> None:
    conv = m.validated(m.from_configmap(LEGACY), l2lb_config.load_config, l2lb_config.ConfigError)
    assert conv.source == "configmap"
    assert conv.pools == (
        {"name": "default", "protocol": "layer2", "addresses": ["192.168.1.224/29"], "auto-assign": True,
         "avoid-buggy-ips": False},
        {"name": "quiet", "protocol": "layer2", "addresses": ["192.168.1.232-192.168.1.235"],
         "auto-assign": False, "avoid-buggy-ips": True})
    why = refused(conv)
    assert "bgp" in why["address-pool/routed"]
    assert "bgp-advertisements" in why["address-pool/tagged"]
    assert "BGP" in why["ConfigMap key/peers"]


@pytest.mark.parametrize("text", ["", "[1, 2]", "address-pools: {a: 1}", "a: [", "x" * (m.MAX_TEXT + 1)])
def test_unreadable_configmap_is_one_clear_error(text: str) -> None:
    with pytest.raises(m.MetalLBError, match="ConfigMap"):
        m.from_configmap(text)


def svc(name: str, ip: str, cls: str | None = None, annotations: dict | None = None) -> dict:
    return {"metadata": {"namespace": "shop", "name": name, "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer", **({"loadBalancerClass": cls} if cls else {})},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}


def test_services_holding_metallb_addresses_and_their_annotations() -> None:
    conv = convert([pool("web", "192.168.1.200-192.168.1.207"), pool("lonely", "192.168.1.208/30")],
                   [l2("main", ipAddressPools=["web"])])
    report = m.services_report([
        svc("a", "192.168.1.203", annotations={"metallb.universe.tf/allow-shared-ip": "k",
                                               "metallb.io/ip-allocated-from-pool": "web", "other/x": "y"}),
        svc("b", "192.168.1.209"),
        svc("c", "192.168.1.204", cls="metallb.io/metallb"),
        svc("d", "10.0.0.1"),  # another provider's address: not listed
        {"metadata": {"namespace": "shop", "name": "e"}, "spec": {"type": "ClusterIP"}},
    ], conv, "l2lb.io/layer2", True)
    by = {e["service"]: e for e in report}
    assert sorted(by) == ["shop/a", "shop/b", "shop/c"]
    assert by["shop/a"]["keeps_address"] and by["shop/a"]["pool"] == "web"
    assert [(a["annotation"], a["l2lb"], a["honoured"]) for a in by["shop/a"]["annotations"]] == [
        ("metallb.io/ip-allocated-from-pool", None, False),
        ("metallb.universe.tf/allow-shared-ip", "l2lb.io/allow-shared-ip", True)]
    assert not by["shop/b"]["keeps_address"] and "lonely was refused" in by["shop/b"]["why"]
    assert not by["shop/c"]["keeps_address"] and "metallb.io/metallb" in by["shop/c"]["why"]


def test_vars_file_is_deterministic_and_loads_as_the_inventory_variable() -> None:
    conv = convert([pool("web", "192.168.1.200/29")], [l2("a", nodeSelectors=[NODE1], interfaces=["eth0"])])
    text = m.vars_file(conv, "custom resources in metallb-system")
    assert text == m.vars_file(conv, "custom resources in metallb-system")
    pools = yaml.safe_load(text)["l2lb_address_pools"]
    assert pools == list(conv.pools)
    assert l2lb_config.load_config({"address-pools": pools}).pools[0].node_selectors


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
FIELDS = st.sampled_from([*m.POOL_SPEC_KEYS, *m.L2_SPEC_KEYS, "matchLabels", "other"])


@given(pool_specs=st.lists(st.dictionaries(FIELDS, JSON, max_size=4), max_size=3),
       ad_specs=st.lists(st.dictionaries(FIELDS, JSON, max_size=4), max_size=3))
def test_any_shape_of_objects_is_converted_or_refused_never_a_crash(pool_specs: list, ad_specs: list) -> None:
    pools = [{"metadata": {"name": f"p{i}"}, "spec": spec} for i, spec in enumerate(pool_specs)]
    ads = [l2(f"a{i}", **spec) for i, spec in enumerate(ad_specs)]
    conv = convert(pools, ads, ads[:1])
    accounted = {p["name"] for p in conv.pools} | {r.name for r in conv.refused}
    assert accounted >= {f"p{i}" for i in range(len(pools))}  # every pool converted or refused by name
    l2lb_config.load_config({"address-pools": list(conv.pools)})


LEGACY_KEYS = st.sampled_from([*m.LEGACY_POOL_KEYS, "bgp-advertisements", "other"])


@given(doc=st.dictionaries(st.sampled_from(["address-pools", "peers", "other"]),
                           st.lists(st.dictionaries(LEGACY_KEYS, JSON, max_size=4), max_size=3) | JSON,
                           max_size=3))
def test_any_legacy_configmap_is_converted_refused_or_one_error(doc: dict) -> None:
    try:
        conv = m.validated(m.from_configmap(yaml.safe_dump(doc)), l2lb_config.load_config,
                           l2lb_config.ConfigError)
    except m.MetalLBError:
        return
    l2lb_config.load_config({"address-pools": list(conv.pools)})
