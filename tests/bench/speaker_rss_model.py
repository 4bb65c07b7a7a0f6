"""Speaker memory model at 10,000 Services + 20,000 EndpointSlices (no lab, one process).

    .venv/bin/python -m tests.bench.speaker_rss_model [--services 10000] [--nodes 100]

Builds what a speaker keeps (its projected caches and the owner index) from Kubernetes-shaped
objects as the API server sends them (a kubectl last-applied annotation, two slices per Service
with five Pods each on five nodes), and prints the process RSS before and after. A model, not a
lab run: the lab's API server cannot create 10,000 Services fast enough for every bench run.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
from pathlib import Path
from typing import Any

from l2lb_agent import ownership as own
from l2lb_agent import speaker  # noqa: F401  (everything a speaker imports counts in the base)
from l2lb_agent.owner_index import OwnerIndex

CLASS = "l2lb.io/layer2"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def service(i: int) -> dict[str, Any]:
    meta = {"name": f"s{i}", "namespace": f"ns{i % 50}", "uid": f"{i:08d}-aaaa-bbbb-cccc-1234567890ab",
            "resourceVersion": str(100000 + i), "creationTimestamp": "2026-12-02T00:00:00Z",
            "labels": {"app": f"app{i}"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x" * 600}}
    spec = {"type": "LoadBalancer", "loadBalancerClass": CLASS, "externalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "selector": {"app": f"app{i}"}, "clusterIP": f"10.96.{i // 250}.{i % 250}",
            "ipFamilies": ["IPv4"], "allocateLoadBalancerNodePorts": False}
    ingress = [{"ip": str(ipaddress.ip_address("10.64.0.0") + i), "ipMode": "VIP"}]
    return {"metadata": meta, "spec": spec, "status": {"loadBalancer": {"ingress": ingress}}}


def endpoint_slice(i: int, k: int, nodes: list[str]) -> dict[str, Any]:
    meta = {"name": f"s{i}-{k}abcd", "namespace": f"ns{i % 50}", "uid": "x" * 36,
            "resourceVersion": str(200000 + i),
            "labels": {own.SERVICE_NAME_LABEL: f"s{i}", "endpointslice.kubernetes.io/managed-by": "ctl"}}
    eps = [{"addresses": [f"10.244.{j}.{i % 250}"], "nodeName": nodes[(i + j) % len(nodes)],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {"kind": "Pod", "name": f"p{i}-{j}", "namespace": f"ns{i % 50}", "uid": "z" * 36}}
           for j in range(5)]
    return {"metadata": meta, "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def as_received(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(obj))  # fresh strings, as decoding a watch event makes them


def run(n: int, node_count: int) -> tuple[float, float]:
    gc.collect()
    base = rss_mib()
    nodes = [f"node{i:03d}" for i in range(node_count)]
    services, slices = {}, {}
    for i in range(n):
        key = f"ns{i % 50}/s{i}"
        services[key] = own.project_service(as_received(service(i)), CLASS)
        slices[key] = [own.project_slice(as_received(endpoint_slice(i, k, nodes))) for k in range(2)]
    index = OwnerIndex()
    for key, obj in services.items():
        index.set_service(key, own.service_view(obj, CLASS))
        index.set_endpoints(key, own.endpoints_of(slices[key]))
    index.set_candidates(nodes)
    index.flush()
    gc.collect()
    return base, rss_mib()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--nodes", type=int, default=100)
    a = p.parse_args()
    base, after = run(a.services, a.nodes)
    print(f"speaker RSS, {a.services} Services + {2 * a.services} EndpointSlices, owner index over {a.nodes} "
          f"nodes: {after:.0f} MiB (imports alone {base:.0f} MiB)")


if __name__ == "__main__":
    main()
