#!/usr/bin/python
# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible requires imports below DOCUMENTATION/EXAMPLES/RETURN)
"""Ansible module: render and apply (or remove) every l2lb object but the pools."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: l2lb_manifests
short_description: Render and server-side apply (or remove) l2lb's namespace, RBAC, controller and speakers
version_added: 0.1.0
description:
  - Renders the Namespace, the ServiceAccounts C(l2lb-controller) and C(l2lb-speaker), least
    privilege RBAC for each (a ClusterRole for cluster-wide calls and a Role inside O(namespace)),
    a ValidatingAdmissionPolicy that keeps each speaker to its own registration Lease, a
    PodDisruptionBudget and the controller Deployment C(l2lb-controller), and the speaker
    DaemonSet C(l2lb-speaker).
  - Validates every value first, timings with the agent's own code, so a value the agent would
    refuse never reaches a Pod. Before any write it also refuses a kube-proxy in IPVS mode
    without strict ARP, and objects of l2lb's names that l2lb did not create.
  - Applies with server-side apply (field manager C(l2lb-ansible), conflicts forced). Check mode is
    a server-side dry run; C(changed) compares the live and the returned objects.
  - O(state=rendered) returns the manifests without contacting the cluster (for GitOps).
  - O(state=absent) deletes only what l2lb created, workloads first; the namespace only when l2lb
    created it and nothing else is left in it.
author:
  - l2lb maintainers (@l2lb)
requirements:
  - kubernetes (the official Python client)
options:
  state:
    description:
      - V(present) applies, V(absent) removes, V(rendered) only returns RV(manifests).
    type: str
    choices: [present, absent, rendered]
    default: present
  namespace:
    description: Namespace for l2lb; created when O(state=present) and it does not exist.
    type: str
    default: l2lb-system
  image:
    description: Agent image for the controller and the speakers.
    type: str
    default: ghcr.io/l2lb/l2lb-agent:0.1.0
  image_pull_policy:
    description: Pull policy of both containers.
    type: str
    choices: [Always, IfNotPresent, Never]
    default: IfNotPresent
  image_pull_secrets:
    description: Names of Secrets (in O(namespace)) the kubelet uses to pull O(image).
    type: list
    elements: str
    default: []
  controller_replicas:
    description: Controller replicas; one leader at a time, the others stand by.
    type: int
    default: 2
  speaker_node_selector:
    description: Extra node selector for the speakers (C(kubernetes.io/os=linux) is always set).
    type: dict
    default: {}
  tolerations:
    description: Extra speaker tolerations, added to those for the control-plane taints.
    type: list
    elements: dict
    default: []
  loadbalancer_class:
    description: C(loadBalancerClass) the agents serve.
    type: str
    default: l2lb.io/layer2
  interfaces:
    description: Interfaces the speakers announce on; empty means every suitable interface.
    type: list
    elements: str
    default: []
  log_level:
    description: Agent log level.
    type: str
    choices: [debug, info, warning, error]
    default: info
  lease_duration:
    description: Controller leader Lease duration in seconds; unset keeps the agent's default.
    type: float
  renew_interval:
    description: Controller leader Lease renew interval in seconds; unset keeps the agent's default.
    type: float
  heartbeat_interval:
    description: Seconds between a speaker's LAN heartbeats; unset keeps the agent's default.
    type: float
  dead_after:
    description: Seconds without a peer's heartbeat before it counts as dead; unset keeps the agent's default.
    type: float
  handover_delay:
    description:
      - Seconds a speaker waits before taking an address from a live peer; unset keeps the agent's default.
    type: float
  controller_metrics_host:
    description:
      - Address the controller serves C(/metrics) and C(/healthz) on; empty means the Pod's IP.
      - A loopback address is refused (the kubelet's probes could not reach it).
    type: str
    default: ""
  speaker_metrics_host:
    description:
      - Address each speaker serves C(/metrics) and C(/healthz) on, on the node's network; empty
        means the node's IP. C(127.0.0.1) keeps them off the LAN (the probes follow).
    type: str
    default: ""
  controller_priority_class:
    description: PriorityClass of the controller Pods.
    type: str
    default: system-cluster-critical
  speaker_priority_class:
    description: PriorityClass of the speaker Pods.
    type: str
    default: system-node-critical
  controller_resources:
    description: The controller container's C(resources) (C(requests), C(limits)).
    type: dict
    default: {"requests": {"cpu": "25m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
  speaker_resources:
    description: The speaker container's C(resources) (C(requests), C(limits)).
    type: dict
    default: {"requests": {"cpu": "25m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
  claim_unclassed:
    description:
      - Also serve C(LoadBalancer) Services that set no C(loadBalancerClass) (controller and speakers
        alike). Set C(false) next to another load balancer, e.g. while moving from MetalLB, so that
        only Services of O(loadbalancer_class) get addresses and answers.
    type: bool
    default: true
  controller_api_qps:
    description:
      - Service status writes per second the controller may send, all its writer threads together,
        with a burst of twice that. One allocation costs one status write; Events have a small
        budget of their own (burst 25, then 5 per second).
    type: float
    default: 200
  speaker_lease_guard:
    description:
      - Install a ValidatingAdmissionPolicy (Kubernetes >= 1.30) so that a speaker can write only
        its own registration Lease and the controller only its election Lease.
    type: bool
    default: true
  skip_kube_proxy_check:
    description: Do not refuse a kube-proxy in IPVS mode without C(strictARP=true).
    type: bool
    default: false
  wait:
    description:
      - With O(state=absent), wait until l2lb's Pods and every deleted object are gone; fail after
        O(wait_timeout) seconds naming what remains. (To wait for readiness after a deploy use
        M(l2lb.layer2.l2lb_info) with O(l2lb.layer2.l2lb_info#module:wait=true).)
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait when O(wait=true).
    type: int
    default: 300
extends_documentation_fragment:
  - l2lb.layer2.connection
attributes:
  check_mode:
    support: full
    description: Every write is sent with C(dryRun=All); nothing is stored.
  diff_mode:
    support: full
    description: Shows each changed object before (live) and after (as the server returns it).
"""

EXAMPLES = r"""
- name: Deploy l2lb with defaults
  l2lb.layer2.l2lb_manifests:
    kubeconfig: ~/.kube/config

- name: Speakers only on edge nodes, announcing on eth1, metrics on the node's loopback
  l2lb.layer2.l2lb_manifests:
    speaker_node_selector:
      node-role.example.com/edge: "true"
    interfaces: [eth1]
    speaker_metrics_host: 127.0.0.1

- name: The manifests for a GitOps repository (no cluster access)
  l2lb.layer2.l2lb_manifests:
    state: rendered
  register: l2lb_rendered

- name: Remove l2lb and wait until it is gone
  l2lb.layer2.l2lb_manifests:
    state: absent
    wait: true
"""

RETURN = r"""
resources:
  description: Each object applied or deleted, in order, and whether it changed.
  returned: always
  type: list
  elements: dict
  sample:
    - {"ref": "Namespace/l2lb-system", "changed": false}
    - {"ref": "DaemonSet/l2lb-system/l2lb-speaker", "changed": true}
manifests:
  description: The objects O(state=present) applies, in order.
  returned: when O(state=rendered)
  type: list
  elements: dict
  sample: [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "l2lb-system"}}]
kept:
  description: Objects O(state=absent) left in place, each with the reason.
  returned: when O(state=absent)
  type: list
  elements: dict
  sample: [{"ref": "Namespace/monitoring", "reason": "existed before l2lb"}]
"""

import dataclasses

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.l2lb.layer2.plugins.module_utils import checks, common, install, k8s_apply, render

SETTINGS = render.Settings()
ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["present", "absent", "rendered"], "default": "present"},
    "namespace": {"type": "str", "default": SETTINGS.namespace},
    "image": {"type": "str", "default": SETTINGS.image},
    "image_pull_policy": {"type": "str", "choices": list(render.PULL_POLICIES),
                          "default": SETTINGS.image_pull_policy},
    "image_pull_secrets": {"type": "list", "elements": "str", "default": [], "no_log": False},  # names only
    "controller_replicas": {"type": "int", "default": SETTINGS.controller_replicas},
    "speaker_node_selector": {"type": "dict", "default": {}},
    "tolerations": {"type": "list", "elements": "dict", "default": []},
    "loadbalancer_class": {"type": "str", "default": SETTINGS.loadbalancer_class},
    "interfaces": {"type": "list", "elements": "str", "default": []},
    "log_level": {"type": "str", "choices": list(render.LOG_LEVELS), "default": SETTINGS.log_level},
    "lease_duration": {"type": "float"},
    "renew_interval": {"type": "float"},
    "heartbeat_interval": {"type": "float"},
    "dead_after": {"type": "float"},
    "handover_delay": {"type": "float"},
    "controller_metrics_host": {"type": "str", "default": SETTINGS.controller_metrics_host},
    "speaker_metrics_host": {"type": "str", "default": SETTINGS.speaker_metrics_host},
    "controller_priority_class": {"type": "str", "default": SETTINGS.controller_priority_class},
    "speaker_priority_class": {"type": "str", "default": SETTINGS.speaker_priority_class},
    "controller_resources": {"type": "dict", "default": dict(SETTINGS.controller_resources)},
    "speaker_resources": {"type": "dict", "default": dict(SETTINGS.speaker_resources)},
    "speaker_lease_guard": {"type": "bool", "default": SETTINGS.speaker_lease_guard},
    "controller_api_qps": {"type": "float", "default": SETTINGS.controller_api_qps},
    "claim_unclassed": {"type": "bool", "default": SETTINGS.claim_unclassed},
    "skip_kube_proxy_check": {"type": "bool", "default": False},
    "wait": {"type": "bool", "default": False},
    "wait_timeout": {"type": "int", "default": 300},
    **common.CONNECTION_ARGS,
}


def settings_from(params: dict) -> render.Settings:
    """Settings fields are named like the options; lists become tuples, mappings plain dicts."""
    values = {}
    for field in dataclasses.fields(render.Settings):
        value = params[field.name]
        values[field.name] = tuple(value) if isinstance(value, list) else value
    values["speaker_node_selector"] = {str(k): str(v) for k, v in params["speaker_node_selector"].items()}
    return render.Settings(**values)


def run(module: AnsibleModule) -> dict:
    settings = settings_from(module.params)
    checks.validate(settings)
    objects = render.manifests(settings)
    if module.params["state"] == "rendered":
        return {"changed": False, "manifests": objects, "resources": []}
    kube = common.connect(module.params, module.check_mode)
    if module.params["state"] == "present":
        results = install.apply(kube, objects, module.params["skip_kube_proxy_check"], module.warn)
        return common.summarize(results, module._diff, module.check_mode)
    waiting = module.params["wait"] and not module.check_mode
    results, kept = install.remove(kube, objects, module.params["wait_timeout"] if waiting else None)
    if waiting:
        wait_gone(kube, [r.key for r in results if r.changed and r.key], module.params["wait_timeout"])
    return {**common.summarize(results, module._diff, module.check_mode), "kept": kept}


def wait_gone(kube: k8s_apply.Kube, keys: list[tuple], timeout: int) -> None:
    def remaining() -> list[str]:
        return ["/".join(part for part in (key[1], key[3], key[2]) if part)
                for key in keys if kube.get(*key) is not None]

    left = common.wait_for(remaining, timeout)
    if left:
        raise common.NotReadyError(f"still present after {timeout}s: {', '.join(left)}")


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        module.exit_json(**run(module))
    except (k8s_apply.KubeError, common.NotReadyError, checks.SettingsError, install.InstallError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
