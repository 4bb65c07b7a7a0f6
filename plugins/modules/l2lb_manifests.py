#!/usr/bin/python
# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible requires imports below DOCUMENTATION/EXAMPLES/RETURN)
"""Ansible module: render and apply (or remove) every l2lb object but the pools."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: l2lb_manifests
short_description: Render and server-side apply the l2lb namespace, RBAC, controller and speakers
version_added: 0.1.0
description:
  - Renders the Namespace, the ServiceAccounts C(l2lb-controller) and C(l2lb-speaker), least
    privilege RBAC for each (a ClusterRole for cluster-wide reads and a Role inside O(namespace)),
    the controller Deployment C(l2lb-controller) and the speaker DaemonSet C(l2lb-speaker).
  - Applies them with server-side apply (field manager C(l2lb-ansible), conflicts forced).
    Check mode is a server-side dry run; C(changed) compares the live and the returned objects.
  - O(state=absent) deletes them all, namespace last (which also removes the pools ConfigMap,
    the Leases and the Events inside it).
author:
  - l2lb maintainers (@l2lb)
requirements:
  - kubernetes (the official Python client)
options:
  state:
    description: V(present) applies, V(absent) deletes.
    type: str
    choices: [present, absent]
    default: present
  namespace:
    description: Namespace for l2lb; created when O(state=present).
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
    description: Lease duration in seconds; unset keeps the agent's default.
    type: float
  renew_interval:
    description: Lease renew interval in seconds; unset keeps the agent's default.
    type: float
  wait:
    description:
      - With O(state=absent), wait until the namespace and everything in it is gone; fail after
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

- name: Speakers only on edge nodes, announcing on eth1
  l2lb.layer2.l2lb_manifests:
    speaker_node_selector:
      node-role.example.com/edge: "true"
    interfaces: [eth1]
    log_level: debug

- name: Remove l2lb and wait until its namespace is gone
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
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.l2lb.layer2.plugins.module_utils import common, k8s_apply, render

ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "namespace": {"type": "str", "default": render.DEFAULT_NAMESPACE},
    "image": {"type": "str", "default": render.DEFAULT_IMAGE},
    "image_pull_policy": {"type": "str", "choices": list(render.PULL_POLICIES), "default": "IfNotPresent"},
    "controller_replicas": {"type": "int", "default": 2},
    "speaker_node_selector": {"type": "dict", "default": {}},
    "tolerations": {"type": "list", "elements": "dict", "default": []},
    "loadbalancer_class": {"type": "str", "default": render.DEFAULT_LOADBALANCER_CLASS},
    "interfaces": {"type": "list", "elements": "str", "default": []},
    "log_level": {"type": "str", "choices": list(render.LOG_LEVELS), "default": "info"},
    "lease_duration": {"type": "float"},
    "renew_interval": {"type": "float"},
    "wait": {"type": "bool", "default": False},
    "wait_timeout": {"type": "int", "default": 300},
    **common.CONNECTION_ARGS,
}


def settings_from(params: dict) -> render.Settings:
    return render.Settings(
        namespace=params["namespace"],
        image=params["image"],
        image_pull_policy=params["image_pull_policy"],
        controller_replicas=params["controller_replicas"],
        speaker_node_selector={str(k): str(v) for k, v in params["speaker_node_selector"].items()},
        tolerations=tuple(params["tolerations"]),
        loadbalancer_class=params["loadbalancer_class"],
        interfaces=tuple(params["interfaces"]),
        log_level=params["log_level"],
        lease_duration=params["lease_duration"],
        renew_interval=params["renew_interval"],
    )


def run(module: AnsibleModule) -> dict:
    if module.params["controller_replicas"] < 0:
        raise ValueError(f"controller_replicas must be >= 0, got {module.params['controller_replicas']}")
    objects = render.manifests(settings_from(module.params))
    kube = common.connect(module.params, module.check_mode)
    if module.params["state"] == "present":
        results = [kube.apply(obj) for obj in objects]
    else:
        results = [kube.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"],
                               obj["metadata"].get("namespace")) for obj in reversed(objects)]
        if module.params["wait"] and not module.check_mode:
            wait_gone(kube, objects, module.params["wait_timeout"])
    return common.summarize(results, module._diff, module.check_mode)


def wait_gone(kube: k8s_apply.Kube, objects: list, timeout: int) -> None:
    def remaining() -> list[str]:
        return [render.ref(obj) for obj in objects if kube.get(
            obj["apiVersion"], obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))]

    left = common.wait_for(remaining, timeout)
    if left:
        raise common.NotReadyError(f"still present after {timeout}s: {', '.join(left)}")


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        module.exit_json(**run(module))
    except (k8s_apply.KubeError, common.NotReadyError, ValueError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
