#!/usr/bin/python
# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402  (Ansible requires imports below DOCUMENTATION/EXAMPLES/RETURN)
"""Ansible module: the speakers' heartbeat keys (Secret l2lb-memberlist), created and rotated safely."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: l2lb_memberlist
short_description: Create, keep or rotate the l2lb speakers' heartbeat keys
version_added: 0.1.0
description:
  - Manages the Secret C(l2lb-memberlist) (type C(Opaque), data key C(keys), one key per line) in
    O(namespace). The speakers sign every LAN heartbeat with every key in it and accept a heartbeat
    signed by any of them.
  - With O(keys) unset, an existing Secret is kept as it is; a missing one is created with one
    random key (32 bytes, base64).
  - With O(keys) set, the Secret is made to hold exactly those keys. When none of them is in the
    live Secret, the change is made in two steps so that no speaker stops trusting its peers
    half-way. First the new keys plus one live key, then, after O(rotation_wait) seconds (time
    for every speaker to load it), the new keys alone.
  - Keys are validated with the speaker's own keyring parser before anything is written, and never
    shown; results and diffs carry SHA-256 fingerprints instead.
author:
  - l2lb maintainers (@l2lb)
requirements:
  - kubernetes (the official Python client)
options:
  namespace:
    description: Namespace of the l2lb installation (it must exist).
    type: str
    default: l2lb-system
  keys:
    description:
      - 1 to 3 keys, each 32-256 characters from C(A-Za-z0-9+/=_-) (for example the output of
        C(openssl rand -base64 32)). Unset keeps the live keys, or generates one if there are none.
    type: list
    elements: str
  rotation_wait:
    description: Seconds between the two writes of a rotation.
    type: int
    default: 10
  validate_only:
    description: Validate the keys and the live Secret, and report the plan, but write nothing.
    type: bool
    default: false
extends_documentation_fragment:
  - l2lb.layer2.connection
attributes:
  check_mode:
    support: full
    description: Every write is a server dry run and a rotation does not wait.
  diff_mode:
    support: full
    description: Shows the Secret before and after, with key fingerprints in place of the keys.
"""

EXAMPLES = r"""
- name: Make sure the speakers have a key (generated once)
  l2lb.layer2.l2lb_memberlist:
    kubeconfig: ~/.kube/config

- name: Rotate to a new key without an outage
  l2lb.layer2.l2lb_memberlist:
    keys:
      - "{{ lookup('ansible.builtin.env', 'L2LB_NEW_KEY') }}"
    rotation_wait: 15
"""

RETURN = r"""
action:
  description:
    - V(keep) nothing written, V(generate) a new random key, V(write) one write,
      V(rotate) a bridge keyring then the final one.
  returned: always
  type: str
  sample: rotate
fingerprints:
  description: SHA-256 fingerprints of the keys in force after the run (never the keys).
  returned: always
  type: list
  elements: str
  sample: ["sha256:0f3c5b1d9a7e2c44"]
resources:
  description: Each write, in order, and whether it changed the Secret.
  returned: always
  type: list
  elements: dict
  sample: [{"ref": "Secret/l2lb-system/l2lb-memberlist", "changed": true}]
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.l2lb.layer2.plugins.module_utils import common, k8s_apply, memberlist, render

ARGUMENT_SPEC = {
    "namespace": {"type": "str", "default": render.DEFAULT_NAMESPACE},
    "keys": {"type": "list", "elements": "str", "no_log": True},
    "rotation_wait": {"type": "int", "default": 10},
    "validate_only": {"type": "bool", "default": False},
    **common.CONNECTION_ARGS,
}


def run(module: AnsibleModule) -> dict:
    params = module.params
    if params["rotation_wait"] < 0:
        raise memberlist.MemberlistError(f"rotation_wait (l2lb_memberlist_rotation_wait) = "
                                         f"{params['rotation_wait']}: must be >= 0 seconds")
    wanted = memberlist.check_keys(params["keys"]) if params["keys"] is not None else None
    kube = common.connect(params, module.check_mode)
    live = kube.get("v1", "Secret", memberlist.SECRET_NAME, params["namespace"])
    plan = memberlist.plan(*memberlist.live_keys(live), wanted)
    if params["validate_only"] or not plan.steps:
        keys = plan.steps[-1] if plan.steps else memberlist.live_keys(live)[0] or ()
        return {"changed": False, "action": plan.action.value, "resources": [],
                "fingerprints": [memberlist.fingerprint(k) for k in keys]}
    results = []
    for number, keys in enumerate(plan.steps):
        if number and not module.check_mode:
            time.sleep(params["rotation_wait"])  # every speaker loads the bridge before the final write
        result = kube.apply(memberlist.secret(params["namespace"], keys))
        results.append(k8s_apply.Result(result.ref, result.changed, memberlist.redacted(result.before),
                                        memberlist.redacted(result.after)))
    out = common.summarize(_net(results), module._diff, module.check_mode)
    out["resources"] = [{"ref": r.ref, "changed": r.changed} for r in results]
    return {**out, "action": plan.action.value,
            "fingerprints": [memberlist.fingerprint(k) for k in plan.steps[-1]]}


def _net(results: list[k8s_apply.Result]) -> list[k8s_apply.Result]:
    """One before/after for the diff: first live state, last written state."""
    first, last = results[0], results[-1]
    return [k8s_apply.Result(first.ref, any(r.changed for r in results), first.before, last.after)]


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        module.exit_json(**run(module))
    except (k8s_apply.KubeError, memberlist.MemberlistError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
