#!/usr/bin/python
# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible requires imports below DOCUMENTATION/EXAMPLES/RETURN)
"""Ansible module: report l2lb's readiness, the assigned IPs and which node announces them."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: l2lb_info
short_description: Show which IPs l2lb assigned to which Service, who announces them, and readiness
version_added: 0.1.0
description:
  - Reads the C(LoadBalancer) Services' status, who announces each IP, and the readiness of the
    controller Deployment, the speaker DaemonSet and their Pods.
  - Who announces each IP comes from the cluster-scoped C(IPAnnouncement) objects
    (C(ipannouncements.l2lb.io), one per IP, written by the speaker that takes the IP over; the
    same as C(kubectl get ipannouncements)). On a cluster without that CRD (an installation
    older than it) it comes from the speakers' registration Leases instead (annotation
    C(l2lb.io/announcing)), and RV(announcements) is empty.
  - Read-only; never reports C(changed).
author:
  - l2lb maintainers (@l2lb)
requirements:
  - kubernetes (the official Python client)
options:
  namespace:
    description: Namespace of the l2lb installation.
    type: str
    default: l2lb-system
  wait:
    description:
      - Wait until the controller Deployment and every speaker are Ready; fail after
        O(wait_timeout) seconds with a message listing what is not Ready.
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
    description: Reads only, so it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
"""

EXAMPLES = r"""
- name: Wait up to 5 minutes for the controller and every speaker
  l2lb.layer2.l2lb_info:
    wait: true
    wait_timeout: 300

- name: Where is each LoadBalancer IP announced?
  l2lb.layer2.l2lb_info:
  register: l2lb

- name: Show them
  ansible.builtin.debug:
    msg: "{{ item.service }} {{ item.ips }} via {{ item.announced_by }}"
  loop: "{{ l2lb.assignments }}"
"""

RETURN = r"""
assignments:
  description: One entry per C(LoadBalancer) Service in the cluster.
  returned: always
  type: list
  elements: dict
  sample:
    - service: default/nginx
      ips: [192.168.1.240]
      pools: {"192.168.1.240": my-ip-space}
      announced_by: node2
      announcers: {"192.168.1.240": node2}
      loadbalancer_class: null
announcements:
  description:
    - One entry per C(IPAnnouncement) object, sorted by IP; empty when the CRD is not installed.
    - C(node) is the node that answers ARP/NDP for C(ip), or empty when no node does (then
      C(reason) says why); C(since) is when that node took the IP over.
  returned: always
  type: list
  elements: dict
  sample:
    - ip: 192.168.1.240
      node: node2
      services: [default/nginx]
      since: "2026-01-01T00:00:00Z"
      reason: ""
announcements_source:
  description:
    - Where RV(assignments) took the announcing nodes from, C(ipannouncements) or C(leases)
      (a cluster without the IPAnnouncement CRD).
  returned: always
  type: str
  sample: ipannouncements
ready:
  description: True when the controller Deployment and every speaker are Ready.
  returned: always
  type: bool
not_ready:
  description: What is not Ready yet, one line each, naming the Pod and node where known.
  returned: always
  type: list
  elements: str
  sample:
    - "speaker DaemonSet: 2/3 ready, 3/3 updated"
    - "pod l2lb-speaker-x2x9k on node3: not ready (ContainerCreating)"
speakers:
  description: Speaker registrations (node, holder Pod, last write and the IPs the node announces).
  returned: always
  type: list
  elements: dict
  sample: [{"node": "node1", "holder": "l2lb-speaker-abcde", "renew_time": "2026-01-01T00:00:00.000000Z",
            "announcing": ["192.168.1.241"]}]
"""

from collections.abc import Callable

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.l2lb.layer2.plugins.module_utils import common, k8s_apply, render, status

try:
    from ansible_collections.l2lb.layer2.plugins.module_utils import l2lb_config
except ImportError:  # pool names are a nicety here; everything else works without the model
    l2lb_config = None

ANNOUNCEMENTS = ("l2lb.io/v1alpha1", "IPAnnouncement")
ARGUMENT_SPEC = {
    "namespace": {"type": "str", "default": render.DEFAULT_NAMESPACE},
    "wait": {"type": "bool", "default": False},
    "wait_timeout": {"type": "int", "default": 300},
    **common.CONNECTION_ARGS,
}


def pool_lookup(kube: k8s_apply.Kube, namespace: str) -> Callable[[str], str | None]:
    """ip -> pool name, from the pools ConfigMap in force (None when unknown)."""
    live = kube.get("v1", "ConfigMap", render.CONFIG_MAP_NAME, namespace)
    text = ((live or {}).get("data") or {}).get(render.CONFIG_MAP_KEY)
    config = None
    if l2lb_config is not None and text:
        try:
            config = l2lb_config.load_config(text)
        except l2lb_config.ConfigError:
            config = None

    def lookup(ip: str) -> str | None:
        pool = l2lb_config.pool_of(config, ip) if config is not None else None
        return pool.name if pool is not None else None

    return lookup


def readiness(kube: k8s_apply.Kube, namespace: str) -> list[str]:
    deployment = kube.get("apps/v1", "Deployment", render.name_of(render.CONTROLLER), namespace)
    daemonset = kube.get("apps/v1", "DaemonSet", render.name_of(render.SPEAKER), namespace)
    problems = status.controller_problems(deployment) + status.speaker_problems(daemonset)
    if problems:
        pods = kube.list("v1", "Pod", namespace, label_selector="app.kubernetes.io/name=l2lb")
        problems += status.pod_problems(pods)
    return problems


def heartbeats(kube: k8s_apply.Kube, namespace: str) -> list[dict]:
    leases = kube.list("coordination.k8s.io/v1", "Lease", namespace, label_selector=status.HEARTBEAT_SELECTOR)
    out = []
    for lease in leases:
        name, spec = lease["metadata"]["name"], lease.get("spec") or {}
        announced = ((lease["metadata"].get("annotations") or {}).get(status.ANNOUNCING) or "").split(",")
        out.append({"node": name.removeprefix("l2lb-speaker-"), "holder": spec.get("holderIdentity"),
                    "renew_time": spec.get("renewTime"), "announcing": [ip for ip in announced if ip]})
    return sorted(out, key=lambda item: item["node"])


def run(module: AnsibleModule) -> dict:
    namespace = module.params["namespace"]
    kube = common.connect(module.params, module.check_mode)
    if module.params["wait"]:
        problems = common.wait_for(lambda: readiness(kube, namespace), module.params["wait_timeout"])
        if problems:
            raise common.NotReadyError(
                f"l2lb is not Ready after {module.params['wait_timeout']}s: " + "; ".join(problems))
    else:
        problems = readiness(kube, namespace)
    leases = kube.list("coordination.k8s.io/v1", "Lease", namespace, label_selector=status.HEARTBEAT_SELECTOR)
    services = kube.list("v1", "Service")
    served = kube.serves(*ANNOUNCEMENTS)
    announced = status.announcements(kube.list(*ANNOUNCEMENTS)) if served else []
    return {
        "changed": False,
        "assignments": status.assignments(services, leases, pool_lookup(kube, namespace),
                                          announced if served else None),
        "announcements": announced,
        "announcements_source": "ipannouncements" if served else "leases",
        "ready": not problems,
        "not_ready": problems,
        "speakers": heartbeats(kube, namespace),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    try:
        module.exit_json(**run(module))
    except (k8s_apply.KubeError, common.NotReadyError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
