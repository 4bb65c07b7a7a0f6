"""Pool rules benchmark (issue 13): the cost of the pool extensions, no lab needed.

Run: `.venv/bin/python tests/bench/pool_rules_bench.py` from the repo root. Prints: load_config on
2,000 pools carrying every extension (~1 MiB, the ConfigMap limit), a directly handed mapping with
1,000,000 node-selectors (refused by the list caps before jsonschema walks it), and 10,000
auto-assigns over 4 pools with and without service-allocation checks. Not part of `make bench`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files/agent"))

from l2lb_agent import allocator, config


def big_pool(i: int) -> dict[str, Any]:
    exists = {"matchExpressions": [{"key": "app", "operator": "Exists"}]}
    zone = {"key": "zone", "operator": "In", "values": ["a", "b"]}
    return {"name": f"p{i}", "addresses": [f"10.{i // 250}.{i % 250}.0/24"],
            "node-selectors": [{"matchLabels": {"rack": f"r{i % 7}"}, "matchExpressions": [zone]}],
            "interfaces": ["eth0", "ens*"],
            "service-allocation": {"priority": i % 5, "namespaces": [f"team-{i % 50}"],
                                   "namespace-selectors": [{"matchLabels": {"team": f"t{i % 50}"}}],
                                   "service-selectors": [exists]}}


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def hostile() -> None:
    try:
        config.load_config({"address-pools": [{"name": "x", "addresses": ["10.0.0.1"],
                                               "node-selectors": [{}] * 1_000_000}]})
    except config.ConfigError:
        return
    raise AssertionError("a million selectors were accepted")


def assign_all(tenants: bool) -> None:
    small = config.load_config({"address-pools": [
        {"name": "web", "addresses": ["10.1.0.0/16"],
         "service-allocation": {"service-selectors": [{"matchLabels": {"tier": "web"}}]}},
        {"name": "team", "addresses": ["10.2.0.0/16"],
         "service-allocation": {"priority": 1, "namespace-selectors": [{"matchLabels": {"team": "a"}}]}},
        {"name": "ns", "addresses": ["10.3.0.0/16"],
         "service-allocation": {"priority": 2, "namespaces": [f"ns{i}" for i in range(100)]}},
        {"name": "rest", "addresses": ["10.4.0.0/16"]}]})
    al = allocator.Allocator(small)
    for i in range(10_000):
        tenant = allocator.Tenant(namespace=f"ns{i % 200}",
                                  namespace_labels={"team": "a" if i % 3 == 0 else "b"},
                                  service_labels={"tier": "web"} if i % 2 else {})
        assert al.assign(f"ns/s{i}", allocator.Request(tenant=tenant if tenants else None)).ok


def main() -> None:
    text = config.to_yaml({"address-pools": [big_pool(i) for i in range(2000)]})
    print(f"load_config, 2,000 pools with every extension ({len(text) // 1024} KiB): "
          f"{timed(lambda: config.load_config(text)):.0f} ms")
    print(f"load_config, a mapping with 1,000,000 node-selectors refused: {timed(hostile):.1f} ms")
    for tenants in (False, True):
        what = "checked" if tenants else "not checked"
        print(f"10,000 auto-assigns over 4 pools, service-allocation {what}: "
              f"{timed(lambda t=tenants: assign_all(t)):.0f} ms")


if __name__ == "__main__":
    main()
