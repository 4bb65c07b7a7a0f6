# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pool decisions for the l2lb_pools module: validate, and find addresses a change would orphan.

Place in the flow: inventory l2lb_address_pools -> **pools (here)** -> render.config_map ->
k8s_apply. Pure: validation is the agent's own config model (l2lb_config, one definition of the
schema and the parsing); the orphan check takes the live Services as plain dicts. It does not
read the cluster and does not know about Ansible.
"""

from __future__ import annotations

import dataclasses
import traceback
import typing as t

from ansible_collections.l2lb.layer2.plugins.module_utils import render

try:
    # The agent's config model needs jsonschema; modules report it with missing_required_lib.
    from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_config

    IMPORT_ERROR = None
except ImportError:
    l2lb_config = None
    IMPORT_ERROR = traceback.format_exc()


class PoolsError(Exception):
    """Pools rejected before any change; the message names the offenders."""


@dataclasses.dataclass(frozen=True)
class Orphan:
    """An address in use by a Service that the new pools would no longer contain."""

    service: str  # namespace/name
    address: str
    pool: str | None  # the live pool it came from

    def describe(self) -> str:
        source = f" (pool {self.pool})" if self.pool else ""
        return f"{self.address} used by Service {self.service}{source}"


def validate(pools: t.Sequence[t.Mapping[str, t.Any]]) -> tuple[t.Any, str]:
    """Validate with the shared model; return (Config, canonical ConfigMap text). Raises PoolsError."""
    try:
        config = l2lb_config.load_config(render.pools_document(pools))
    except l2lb_config.ConfigError as error:
        raise PoolsError(f"invalid address pools: {error}") from error
    # The model's canonical text: the same inventory always renders byte-identical (idempotence).
    return config, l2lb_config.to_yaml(config)


def parse_live(text: str | None) -> t.Any | None:
    """The config in force in the cluster, or None if absent or invalid (nothing to protect)."""
    if not text:
        return None
    try:
        return l2lb_config.load_config(text)
    except l2lb_config.ConfigError:
        return None


def service_addresses(services: t.Iterable[t.Mapping[str, t.Any]], lb_class: str) -> list[tuple[str, str]]:
    """(namespace/name, ip) for every address l2lb may have given a LoadBalancer Service."""
    found = []
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        svc_class = spec.get("loadBalancerClass") or spec.get("load_balancer_class")
        if svc_class not in (None, lb_class):
            continue
        meta = svc.get("metadata") or {}
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        found.extend((name, entry["ip"]) for entry in ingress if entry.get("ip"))
    return found


def orphans(live: t.Any | None, new: t.Any | None, addresses: t.Iterable[tuple[str, str]]) -> list[Orphan]:
    """Addresses inside the live pools that the new pools (None: no pools at all) would drop."""
    if live is None:
        return []
    taken = []
    for service, address in addresses:
        if not l2lb_config.contains(live, address):
            continue  # not ours to protect (another provider, or already outside the pools)
        if new is not None and l2lb_config.contains(new, address):
            continue
        pool = l2lb_config.pool_of(live, address)
        taken.append(Orphan(service, address, pool.name if pool is not None else None))
    return taken


def orphan_message(found: t.Sequence[Orphan]) -> str:
    listed = "; ".join(item.describe() for item in found)
    return (
        f"refusing pool change: it would take {len(found)} in-use address(es) from live Services: "
        f"{listed}. Keep these addresses in a pool, or set allow_orphaned_addresses: true "
        "(l2lb_allow_orphaned_addresses) to accept that these Services lose them."
    )
