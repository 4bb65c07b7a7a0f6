#!/usr/bin/python
# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible requires imports below DOCUMENTATION/EXAMPLES/RETURN)
"""Ansible module: read MetalLB's layer-2 configuration from the cluster and convert it to l2lb pools."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: l2lb_metallb_import
short_description: Convert a cluster's MetalLB layer-2 configuration to l2lb address pools
version_added: 0.1.0
description:
  - Reads MetalLB's configuration from the cluster, either the v0.6-v0.12 ConfigMap (key C(config),
    C(address-pools)) or the v0.13+ C(IPAddressPool), C(L2Advertisement) and C(BGPAdvertisement)
    objects (C(metallb.io/v1beta1)), and converts it to l2lb pools for C(l2lb_address_pools).
  - "Mapping: C(spec.addresses) to C(addresses), C(autoAssign) to C(auto-assign), C(avoidBuggyIPs)
    to C(avoid-buggy-ips), C(serviceAllocation) to C(service-allocation); the C(L2Advertisement)s
    covering a pool give its C(node-selectors) and C(interfaces)."
  - Refuses, by name and with the reason, what l2lb cannot express, see RV(refused). Pools that no
    C(L2Advertisement) covers are refused, not converted - MetalLB never announces them.
  - Reports every Service whose C(status.loadBalancer.ingress) holds an address of a MetalLB pool,
    whether l2lb's controller will keep it, and its MetalLB annotations with their l2lb names.
  - Validates the result with l2lb's own config model; a pool the model refuses is listed in
    RV(refused) with the model's message.
  - Reads the cluster only. With O(dest) it writes an inventory vars file.
author:
  - l2lb maintainers (@l2lb)
requirements:
  - kubernetes (the official Python client)
  - jsonschema
  - PyYAML
options:
  metallb_namespace:
    description: Namespace MetalLB runs in (its ConfigMap and custom resources are read there).
    type: str
    default: metallb-system
  source:
    description:
      - V(crds) reads C(IPAddressPool)/C(L2Advertisement)/C(BGPAdvertisement); V(configmap) reads
        the legacy ConfigMap.
      - V(auto) uses the custom resources when at least one C(IPAddressPool) exists in
        O(metallb_namespace), else the ConfigMap; fails when neither holds a configuration.
    type: str
    choices: [auto, crds, configmap]
    default: auto
  configmap_name:
    description: Name of MetalLB's legacy ConfigMap.
    type: str
    default: config
  loadbalancer_class:
    description:
      - The C(loadBalancerClass) l2lb will be installed with (C(l2lb_loadbalancer_class)); decides
        C(keeps_address) in RV(services).
    type: str
    default: l2lb.io/layer2
  claim_unclassed:
    description: Whether l2lb will claim Services without a C(loadBalancerClass) (C(l2lb_claim_unclassed)).
    type: bool
    default: true
  dest:
    description:
      - Write the pools as an inventory vars file (C(l2lb_address_pools), YAML) to this path.
        Nothing is written in check mode; C(changed) says whether the file would change.
    type: path
extends_documentation_fragment:
  - l2lb.layer2.connection
attributes:
  check_mode:
    support: full
    description: The cluster is only read; O(dest) is not written, and C(changed) says whether it would be.
  diff_mode:
    support: full
    description: Shows the vars file at O(dest) before and after.
notes:
  - C(changed) is true only when O(dest) is set and its content differs (or it does not exist).
"""

EXAMPLES = r"""
- name: Convert MetalLB's configuration and write it next to the inventory
  l2lb.layer2.l2lb_metallb_import:
    dest: "{{ inventory_dir }}/group_vars/all/l2lb_pools.yml"
  register: metallb

- name: Stop when something could not be converted
  ansible.builtin.assert:
    that: metallb.refused | length == 0
    fail_msg: "{{ metallb.refused }}"

- name: Preview only (nothing written)
  l2lb.layer2.l2lb_metallb_import:
    metallb_namespace: metallb-system
    source: crds
  check_mode: true
"""

RETURN = r"""
source:
  description: Where the configuration was read, V(crds) or V(configmap).
  returned: always
  type: str
  sample: crds
pools:
  description: The converted pools, ready for C(l2lb_address_pools).
  returned: always
  type: list
  elements: dict
  sample:
    - name: web
      protocol: layer2
      addresses: [192.168.1.200-192.168.1.207]
      auto-assign: true
      avoid-buggy-ips: false
      node-selectors: [{matchLabels: {kubernetes.io/hostname: node1}}]
refused:
  description: What l2lb cannot express, by kind and name, with the reason.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: IPAddressPool
      name: uplink
      reason: announced over BGP (BGPAdvertisement bgp); l2lb is layer 2 only
services:
  description:
    - One entry per Service and address of a MetalLB pool in C(status.loadBalancer.ingress).
    - C(keeps_address) says whether l2lb's controller will keep the address, C(why) explains it;
      C(annotations) lists the Service's MetalLB annotations with the l2lb name each maps to.
  returned: always
  type: list
  elements: dict
  sample:
    - service: shop/web
      ip: 192.168.1.203
      pool: web
      loadbalancer_class: null
      keeps_address: true
      why: l2lb's controller adopts addresses in status that lie in pool web
      annotations:
        - annotation: metallb.universe.tf/allow-shared-ip
          value: web
          l2lb: l2lb.io/allow-shared-ip
          honoured: true
          note: l2lb reads it as is; renaming is optional
notes:
  description: Things worth a look that refuse nothing (the speakers' node selection, missing pools).
  returned: always
  type: list
  elements: str
"""

import dataclasses
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.l2lb.layer2.plugins.module_utils import common, k8s_apply
from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_metallb as metallb

try:
    from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_config

    IMPORT_ERROR = None
except ImportError:
    l2lb_config = None
    IMPORT_ERROR = traceback.format_exc()

GROUP = "metallb.io/v1beta1"
ARGUMENT_SPEC = {
    "metallb_namespace": {"type": "str", "default": "metallb-system"},
    "source": {"type": "str", "choices": ["auto", "crds", "configmap"], "default": "auto"},
    "configmap_name": {"type": "str", "default": "config"},
    "loadbalancer_class": {"type": "str", "default": "l2lb.io/layer2"},
    "claim_unclassed": {"type": "bool", "default": True},
    "dest": {"type": "path"},
    **common.CONNECTION_ARGS,
}


def _listed(kube: k8s_apply.Kube, kind: str, namespace: str) -> list[dict]:
    return kube.list(GROUP, kind, namespace) if kube.serves(GROUP, kind) else []


def read(kube: k8s_apply.Kube, params: dict) -> metallb.Conversion:
    """The configuration in force: the custom resources or the legacy ConfigMap."""
    ns, source = params["metallb_namespace"], params["source"]
    pools = _listed(kube, "IPAddressPool", ns) if source != "configmap" else []
    if source == "crds" and not pools:
        raise metallb.MetalLBError(f"no IPAddressPool ({GROUP}) in namespace {ns}")
    if pools:
        conv = metallb.from_crds(pools, _listed(kube, "L2Advertisement", ns),
                                 _listed(kube, "BGPAdvertisement", ns))
        if kube.get("v1", "ConfigMap", params["configmap_name"], ns) is not None:
            ignored = (f"ConfigMap {ns}/{params['configmap_name']} ignored: MetalLB v0.13+ reads only the "
                       "custom resources")
            conv = dataclasses.replace(conv, notes=(*conv.notes, ignored))
        return conv
    cm = kube.get("v1", "ConfigMap", params["configmap_name"], ns)
    text = ((cm or {}).get("data") or {}).get("config")
    if not text:
        raise metallb.MetalLBError(f"no MetalLB configuration in namespace {ns}: no IPAddressPool and no "
                                   f"ConfigMap {params['configmap_name']} with key config")
    return metallb.from_configmap(text)


def speaker_note(kube: k8s_apply.Kube, namespace: str) -> list[str]:
    """MetalLB's speakers run only where their DaemonSet lets them; l2lb's do the same by its own vars."""
    notes = []
    for ds in kube.list("apps/v1", "DaemonSet", namespace):
        pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        selector = pod_spec.get("nodeSelector") or {}
        extra = {k: v for k, v in selector.items() if k != "kubernetes.io/os"}
        if extra:
            notes.append(f"DaemonSet {namespace}/{ds['metadata']['name']} runs only on nodes with {extra}: "
                         "set l2lb_speaker_node_selector to the same to announce from the same nodes")
    return notes


def write(module: AnsibleModule, text: str) -> dict:
    """changed/diff for the vars file at dest; written unless in check mode."""
    dest = module.params["dest"]
    folder = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(folder):
        raise metallb.MetalLBError(f"dest {dest}: directory {folder} does not exist")
    before = None
    if os.path.exists(dest):
        with open(dest, encoding="utf-8") as handle:
            before = handle.read()
    out: dict = {"changed": before != text}
    if module._diff:
        out["diff"] = {"before": before or "", "after": text, "before_header": dest, "after_header": dest}
    if out["changed"] and not module.check_mode:
        tmp = os.path.join(module.tmpdir, "l2lb_pools.yml")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        module.atomic_move(tmp, dest)
    return out


def run(module: AnsibleModule) -> dict:
    params = module.params
    kube = common.connect(params, module.check_mode)
    conv = metallb.validated(read(kube, params), l2lb_config.load_config, l2lb_config.ConfigError)
    conv = dataclasses.replace(conv, notes=(*conv.notes, *speaker_note(kube, params["metallb_namespace"])))
    services = metallb.services_report(kube.list("v1", "Service"), conv, params["loadbalancer_class"],
                                       params["claim_unclassed"])
    result = {"changed": False, "source": conv.source, "pools": list(conv.pools),
              "refused": [r.to_dict() for r in conv.refused], "services": services, "notes": list(conv.notes)}
    if params["dest"]:
        origin = (f"custom resources in {params['metallb_namespace']}" if conv.source == "crds"
                  else f"ConfigMap {params['metallb_namespace']}/{params['configmap_name']}")
        result.update(write(module, metallb.vars_file(conv, origin)))
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("jsonschema"), exception=IMPORT_ERROR)
    try:
        module.exit_json(**run(module))
    except (metallb.MetalLBError, k8s_apply.KubeError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
