"""Service dict -> allocation request (l2lb_agent.services): selection, annotations, families."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from l2lb_agent import allocator, services

CLASS = "l2lb.io/layer2"


def svc(spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None,
        status_ips: list[str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "default", "name": "web", "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], **(spec or {})},
    }
    if status_ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in status_ips]}}
    return obj


def ips(*texts: str) -> tuple[allocator.IP, ...]:
    return tuple(ipaddress.ip_address(t) for t in texts)


@pytest.mark.parametrize(
    ("spec", "managed"),
    [
        pytest.param({}, True, id="lb-no-class"),
        pytest.param({"loadBalancerClass": CLASS}, True, id="lb-our-class"),
        pytest.param({"loadBalancerClass": "other.io/lb"}, False, id="lb-other-class"),
        pytest.param({"type": "ClusterIP"}, False, id="clusterip"),
        pytest.param({"type": "NodePort"}, False, id="nodeport"),
    ],
)
def test_which_services(spec: dict[str, Any], managed: bool) -> None:
    assert services.is_managed(svc(spec), CLASS) is managed


@pytest.mark.parametrize(
    ("annotations", "spec", "expected"),
    [
        pytest.param({"l2lb.io/loadBalancerIPs": "192.168.1.245"}, {}, ips("192.168.1.245"),
                     id="l2lb-annotation"),
        pytest.param({"metallb.universe.tf/loadBalancerIPs": "10.0.0.1"}, {}, ips("10.0.0.1"),
                     id="metallb-old"),
        pytest.param({"metallb.io/loadBalancerIPs": "10.0.0.1"}, {}, ips("10.0.0.1"), id="metallb-new"),
        pytest.param({"l2lb.io/loadBalancerIPs": "10.0.0.1", "metallb.io/loadBalancerIPs": "10.0.0.2"}, {},
                     ips("10.0.0.1"), id="l2lb-wins"),
        pytest.param({}, {"loadBalancerIP": "10.0.0.3"}, ips("10.0.0.3"), id="spec-field"),
        pytest.param({"l2lb.io/loadBalancerIPs": " 10.0.0.1 , fd00::1 "},
                     {"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"},
                     ips("10.0.0.1", "fd00::1"), id="dual-list-spaces"),
        pytest.param({}, {}, (), id="none"),
    ],
)
def test_requested_addresses(annotations: dict[str, str], spec: dict[str, Any],
                             expected: tuple[allocator.IP, ...]) -> None:
    req = services.request_for(svc(spec, annotations))
    assert req.error is None
    assert req.ips == expected


@pytest.mark.parametrize(
    ("annotations", "spec", "reason", "words"),
    [
        pytest.param({"l2lb.io/loadBalancerIPs": "10.0.0.1"}, {"loadBalancerIP": "10.0.0.2"},
                     allocator.Reason.BOTH_SET, ["10.0.0.1", "10.0.0.2", "both"], id="both-set"),
        pytest.param({"metallb.universe.tf/loadBalancerIPs": "10.0.0.1"}, {"loadBalancerIP": "10.0.0.1"},
                     allocator.Reason.BOTH_SET, ["both"], id="both-set-alias"),
        pytest.param({"l2lb.io/loadBalancerIPs": "10.0.0.x"}, {}, allocator.Reason.INVALID_REQUEST,
                     ["10.0.0.x"], id="not-an-ip"),
        pytest.param({"l2lb.io/loadBalancerIPs": "10.0.0.1,10.0.0.2"}, {}, allocator.Reason.INVALID_REQUEST,
                     ["one per family"], id="two-of-one-family"),
    ],
)
def test_malformed_requests(annotations: dict[str, str], spec: dict[str, Any],
                            reason: allocator.Reason, words: list[str]) -> None:
    req = services.request_for(svc(spec, annotations))
    assert req.error is not None and req.error.reason is reason
    for word in words:
        assert word in req.error.message


@pytest.mark.parametrize(
    ("spec", "families", "require_all"),
    [
        pytest.param({"ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}, (4,), True, id="v4"),
        pytest.param({"ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack"}, (6,), True, id="v6"),
        pytest.param({"ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "PreferDualStack"}, (6, 4), False,
                     id="prefer-dual"),
        pytest.param({"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}, (4, 6), True,
                     id="require-dual"),
        pytest.param({"ipFamilies": ["IPv4"], "ipFamilyPolicy": "PreferDualStack"}, (4,), False,
                     id="prefer-in-single-stack-cluster"),
        pytest.param({}, (4,), True, id="undefaulted"),
    ],
)
def test_families(spec: dict[str, Any], families: tuple[int, ...], require_all: bool) -> None:
    req = services.request_for(svc(spec))
    assert (req.families, req.require_all) == (families, require_all)


def test_pool_sharing_ports_backend_and_status() -> None:
    s = svc({"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}], "externalTrafficPolicy": "Local",
             "selector": {"app": "dns", "tier": "a"}},
            {"metallb.universe.tf/address-pool": "blue", "metallb.io/allow-shared-ip": "dns"},
            status_ips=["10.0.0.7"])
    req = services.request_for(s)
    assert (req.pool, req.sharing_key) == ("blue", "dns")
    assert req.ports == frozenset({(53, "UDP"), (53, "TCP")})
    assert req.backend_key == '{"app": "dns", "tier": "a"}'
    assert req.current == ips("10.0.0.7")


def test_cluster_policy_has_empty_backend_key_and_blank_annotations_ignored() -> None:
    req = services.request_for(svc({"selector": {"app": "x"}}, {"l2lb.io/address-pool": "  "}))
    assert (req.backend_key, req.pool) == ("", None)


def test_status_junk_ignored_and_ingress_rendering() -> None:
    s = svc(status_ips=["10.0.0.1"])
    s["status"]["loadBalancer"]["ingress"].append({"hostname": "lb.example"})
    assert services.status_ips(s) == ips("10.0.0.1")
    assert services.ingress_of(ips("10.0.0.1", "fd00::1")) == [
        {"ip": "10.0.0.1", "ipMode": "VIP"}, {"ip": "fd00::1", "ipMode": "VIP"}]
    assert services.key_of(s) == "default/web"


LB = {"type": "LoadBalancer"}


@pytest.mark.parametrize(
    ("spec", "claim_unclassed", "ours"),
    [
        pytest.param(LB, True, True, id="no-class-claimed"),
        pytest.param(LB, False, False, id="no-class-not-claimed"),
        pytest.param({**LB, "loadBalancerClass": ""}, True, True, id="empty-class-claimed"),
        pytest.param({**LB, "loadBalancerClass": ""}, False, False, id="empty-class-not-claimed"),
        pytest.param({**LB, "loadBalancerClass": CLASS}, False, True, id="our-class"),
        pytest.param({**LB, "loadBalancerClass": "other.io/lb"}, True, False, id="other-class"),
        pytest.param({"type": "NodePort", "loadBalancerClass": CLASS}, True, False, id="not-lb"),
        pytest.param({}, True, False, id="no-type"),
    ],
)
def test_is_ours(spec: dict[str, Any], claim_unclassed: bool, ours: bool) -> None:
    assert services.is_ours(spec, CLASS, claim_unclassed) is ours


def test_scoped_address_is_never_entered_twice() -> None:
    from l2lb_agent import config

    pools = {"address-pools": [{"name": "v6", "addresses": ["fd00::/64"]}]}
    alloc = allocator.Allocator(config.load_config(pools))
    six = {"ipFamilies": ["IPv6"]}
    first = alloc.assign("default/a", services.request_for(svc(six, {"l2lb.io/loadBalancerIPs": "fd00::5"})))
    assert first.ok and first.ips == ips("fd00::5")
    for raw in ("fd00::5%eth0", "fd00::5%1"):
        second = alloc.assign("default/b", services.request_for(svc(six, {"l2lb.io/loadBalancerIPs": raw})))
        assert second.failure is not None and "scoped" in second.failure.message
    assert len(alloc) == 1 and alloc.ips_of("default/b") == ()


def test_scoped_address_in_status_is_ignored() -> None:
    assert services.status_ips(svc(status_ips=["fd00::5%eth0", "fd00::6"])) == ips("fd00::6")
