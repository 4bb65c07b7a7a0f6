"""The controller's Services cache keeps a projection (issue 12, slim caches): whatever it drops,
the allocation request and the status it reads stay the same as from the whole object."""

from __future__ import annotations

import copy

import pytest
from l2lb_agent import controller, services

FULL = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                 "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"team": "a"},
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x" * 4000,
                                 "l2lb.io/address-pool": "blue", "l2lb.io/allow-shared-ip": "k"},
                 "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
    "spec": {"type": "LoadBalancer", "loadBalancerClass": "l2lb.io/layer2", "clusterIP": "10.96.0.10",
             "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4", "IPv6"],
             "ipFamilyPolicy": "PreferDualStack",
             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080,
                        "nodePort": 31000}],
             "selector": {"app": "web"}, "externalTrafficPolicy": "Local", "sessionAffinity": "None",
             "internalTrafficPolicy": "Cluster", "healthCheckNodePort": 32000},
    "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.240", "ipMode": "VIP"}]},
               "conditions": [{"type": "x", "status": "True"}]},
}


def variants() -> list[dict]:
    out = [FULL]
    for edit in ({"loadBalancerIP": "192.168.1.241"}, {"externalTrafficPolicy": "Cluster"},
                 {"ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack"}, {"type": "ClusterIP"}):
        svc = copy.deepcopy(FULL)
        svc["spec"].update(edit)
        out.append(svc)
    bare = copy.deepcopy(FULL)
    del bare["status"], bare["metadata"]["annotations"]
    bare["metadata"]["annotations"] = {"l2lb.io/loadBalancerIPs": "192.168.1.242"}
    out.append(bare)
    return out


@pytest.mark.parametrize("svc", variants(), ids=["full", "spec-ip", "cluster", "v6", "clusterip", "bare"])
def test_projection_keeps_what_the_allocator_and_status_read(svc: dict) -> None:
    slim = controller.project_service(svc)
    assert services.request_for(slim) == services.request_for(svc)
    assert services.status_ips(slim) == services.status_ips(svc)
    assert controller._ingress(slim) == controller._ingress(svc)
    assert services.is_managed(slim, "l2lb.io/layer2") == services.is_managed(svc, "l2lb.io/layer2")
    assert slim["metadata"]["uid"] == "u-1" and slim["metadata"]["labels"] == {"team": "a"}


def test_projection_is_small() -> None:
    slim = controller.project_service(FULL)
    assert "managedFields" not in slim["metadata"] and "clusterIPs" not in slim["spec"]
    assert len(repr(slim)) < len(repr(FULL)) // 4
