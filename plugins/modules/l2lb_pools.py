#!/usr/bin/python
# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible requires imports below DOCUMENTATION/EXAMPLES/RETURN)
"""Ansible module: validate l2lb address pools and apply them as the ConfigMap `config`."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: l2lb_pools
short_description: Validate l2lb address pools and apply the pools ConfigMap
version_added: 0.1.0
description:
  - Validates O(pools) with the same config model the l2lb agent uses, so a pool the agent would
    reject is refused here, before anything in the cluster changes. Errors name the pool, the
    field and the value; an overlap names both pools.
  - Refuses a change that would take an address from a live C(LoadBalancer) Service, naming the
    Service and the address, unless O(allow_orphaned_addresses=true).
  - Renders the ConfigMap C(config) (key C(config)) in O(namespace) and server-side applies it
    with field manager C(l2lb-ansible). Check mode is a server-side dry run.
author:
  - l2lb maintainers (@l2lb)
requirements:
  - kubernetes (the official Python client)
  - jsonschema
  - PyYAML
options:
  pools:
    description:
      - Address pools in the seed's shape (C(name), C(protocol), C(addresses), C(auto-assign),
        C(avoid-buggy-ips)). C(addresses) may be one string or a list of CIDRs, ranges (C(a-b)) or
        single addresses.
      - Optional keys, with MetalLB's names, say where a pool is announced and who may use it.
        C(node-selectors) is a list of Kubernetes label selectors (C(matchLabels),
        C(matchExpressions) with C(In), C(NotIn), C(Exists), C(DoesNotExist)), ORed; only matching
        nodes announce the pool's addresses (absent means every node).
      - C(interfaces) is a list of interface names or globs (C(ens*)) the pool is answered on;
        absent means subnet-aware (an address is answered only on an interface whose subnet
        contains it).
      - C(service-allocation) has C(priority) (lower is preferred among auto-assign pools; absent
        means after every numbered pool), C(namespaces) (a list), C(namespace-selectors) and
        C(service-selectors) (label selectors). A Service outside them is refused the pool, by
        annotation or by address, with a Warning Event C(AllocationFailed) naming the rule.
      - Unknown keys are errors. The full reference is docs/pools.md.
      - Empty means no pools (the controller then hands out nothing; live Services keep their
        addresses only with O(allow_orphaned_addresses=true)).
    type: list
    elements: dict
    default: []
  namespace:
    description: Namespace of the l2lb installation.
    type: str
    default: l2lb-system
  state:
    description:
      - V(present) applies the pools; V(absent) deletes the ConfigMap (only if l2lb created it).
      - V(rendered) validates the pools and returns the ConfigMap in RV(manifests) without
        contacting the cluster (for GitOps; no orphan check).
    type: str
    choices: [present, absent, rendered]
    default: present
  validate_only:
    description:
      - Validate and run the orphan check, but write nothing (the deploy role runs this before
        any other change).
    type: bool
    default: false
  allow_orphaned_addresses:
    description:
      - Apply even if live Services hold addresses that the new pools no longer contain.
    type: bool
    default: false
  loadbalancer_class:
    description:
      - Services with this C(loadBalancerClass), or with none, count as l2lb's for the orphan check.
    type: str
    default: l2lb.io/layer2
extends_documentation_fragment:
  - l2lb.layer2.connection
attributes:
  check_mode:
    support: full
    description: Every write is sent with C(dryRun=All); the server validates and nothing is stored.
  diff_mode:
    support: full
    description: Shows the live ConfigMap and the one the server returns.
notes:
  - C(changed) is true only when the ConfigMap the server returns differs from the live one.
"""

EXAMPLES = r"""
- name: Apply the tutorial's pool
  l2lb.layer2.l2lb_pools:
    kubeconfig: ~/.kube/config
    pools:
      - name: my-ip-space
        protocol: layer2
        addresses: 192.168.1.240/28

- name: A pool announced only by rack-a nodes on ens* interfaces, for team-a's web Services first
  l2lb.layer2.l2lb_pools:
    pools:
      - name: team-a
        addresses: [192.168.1.224/28]
        node-selectors:
          - matchLabels: {rack: a}
        interfaces: ["ens*"]
        service-allocation:
          priority: 10
          namespaces: [team-a]
          service-selectors:
            - matchExpressions: [{key: tier, operator: In, values: [web]}]

- name: Only validate (nothing is written)
  l2lb.layer2.l2lb_pools:
    validate_only: true
    pools: "{{ l2lb_address_pools }}"

- name: Shrink a pool even though Services lose their addresses
  l2lb.layer2.l2lb_pools:
    allow_orphaned_addresses: true
    pools:
      - name: my-ip-space
        protocol: layer2
        addresses: [192.168.1.240/29]
"""

RETURN = r"""
config:
  description: The ConfigMap's C(config) text as applied (empty when O(state=absent)).
  returned: always
  type: str
  sample: "address-pools:\n- name: my-ip-space\n  protocol: layer2\n  addresses:\n  - 192.168.1.240/28\n"
orphans:
  description:
    - In-use addresses the change takes from Services.
    - Only non-empty with O(allow_orphaned_addresses=true); otherwise the module fails instead.
  returned: always
  type: list
  elements: dict
  sample: [{"service": "default/nginx", "address": "192.168.1.240", "pool": "my-ip-space"}]
manifests:
  description: The ConfigMap O(state=present) applies.
  returned: when O(state=rendered)
  type: list
  elements: dict
  sample: [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config"}}]
resources:
  description: Each object the module applied or deleted, and whether it changed.
  returned: always
  type: list
  elements: dict
  sample: [{"ref": "ConfigMap/l2lb-system/config", "changed": true}]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.l2lb.layer2.plugins.module_utils import common, k8s_apply, render
from ansible_collections.l2lb.layer2.plugins.module_utils import pools as pool_logic

ARGUMENT_SPEC = {
    "pools": {"type": "list", "elements": "dict", "default": []},
    "namespace": {"type": "str", "default": render.DEFAULT_NAMESPACE},
    "state": {"type": "str", "choices": ["present", "absent", "rendered"], "default": "present"},
    "validate_only": {"type": "bool", "default": False},
    "allow_orphaned_addresses": {"type": "bool", "default": False},
    "loadbalancer_class": {"type": "str", "default": render.DEFAULT_LOADBALANCER_CLASS},
    **common.CONNECTION_ARGS,
}


def run(module: AnsibleModule) -> dict:
    params = module.params
    present = params["state"] != "absent"
    new, text = pool_logic.validate(params["pools"]) if present else (None, "")
    if params["state"] == "rendered":
        return {"changed": False, "config": text, "orphans": [], "resources": [],
                "manifests": [render.config_map(params["namespace"], text)]}
    kube = common.connect(params, module.check_mode)
    live_cm = kube.get("v1", "ConfigMap", render.CONFIG_MAP_NAME, params["namespace"])
    if present and live_cm is not None and not render.is_managed(live_cm):
        raise pool_logic.PoolsError(
            f"refusing to overwrite ConfigMap {params['namespace']}/{render.CONFIG_MAP_NAME}: l2lb did not "
            "create it. Remove or rename it, or install l2lb into another namespace (l2lb_namespace)")
    live_text = ((live_cm or {}).get("data") or {}).get(render.CONFIG_MAP_KEY)
    services = kube.list("v1", "Service")
    addresses = pool_logic.service_addresses(services, params["loadbalancer_class"])
    found = pool_logic.orphans(pool_logic.parse_live(live_text), new, addresses)
    if found and not params["allow_orphaned_addresses"]:
        raise pool_logic.PoolsError(pool_logic.orphan_message(found))
    orphaned = [{"service": o.service, "address": o.address, "pool": o.pool} for o in found]
    if params["validate_only"]:
        return {"changed": False, "config": text, "orphans": orphaned, "resources": []}
    if present:
        results = [kube.apply(render.config_map(params["namespace"], text))]
    elif render.is_managed(live_cm):
        results = [kube.delete("v1", "ConfigMap", render.CONFIG_MAP_NAME, params["namespace"])]
    else:
        results = []  # absent, or not l2lb's: nothing to delete
    return {**common.summarize(results, module._diff, module.check_mode), "config": text, "orphans": orphaned}


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    if pool_logic.IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("jsonschema"), exception=pool_logic.IMPORT_ERROR)
    try:
        module.exit_json(**run(module))
    except (pool_logic.PoolsError, k8s_apply.KubeError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
