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
    half-way. First the new keys plus one live key, then, once every speaker has loaded it, the new
    keys alone.
  - Every speaker publishes the ids of the keys it has loaded (annotation C(l2lb.io/key-ids) on its
    registration Lease). Before each write over a usable live keyring, the module waits up to
    O(rotation_wait) seconds until every speaker on a Ready node holds one of the keys about to be
    written; otherwise it fails, naming those nodes, and writes nothing more, so no speaker ever
    stops trusting its peers (a rotation stopped half-way leaves the bridge in force; run again once
    those speakers are back).
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
    description:
      - The longest wait, in seconds, for every speaker to load the keys in force before the next
        write (the bridge, before the final keys). The wait ends as soon as they all have, usually
        within 1-2 seconds.
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
    description: Every write is a server dry run and a rotation does not wait for the speakers.
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.l2lb.layer2.plugins.module_utils import common, k8s_apply, memberlist, render, status

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
    live_keys, live_problem = memberlist.live_keys(live)
    plan = memberlist.plan(live_keys, live_problem, wanted)
    if params["validate_only"] or not plan.steps:
        keys = plan.steps[-1] if plan.steps else live_keys or ()
        return {"changed": False, "action": plan.action.value, "resources": [],
                "fingerprints": [memberlist.fingerprint(k) for k in keys]}
    results = []
    for keys in plan.steps:
        lagging = _lagging_speakers(kube, params, keys) if live_keys and not module.check_mode else []
        if lagging:
            module.fail_json(msg=_stopped(params, lagging, bool(results)), changed=bool(results),
                             resources=[{"ref": r.ref, "changed": r.changed} for r in results])
        result = kube.apply(memberlist.secret(params["namespace"], keys))
        results.append(k8s_apply.Result(result.ref, result.changed, memberlist.redacted(result.before),
                                        memberlist.redacted(result.after)))
    out = common.summarize(_net(results), module._diff, module.check_mode)
    out["resources"] = [{"ref": r.ref, "changed": r.changed} for r in results]
    return {**out, "action": plan.action.value,
            "fingerprints": [memberlist.fingerprint(k) for k in plan.steps[-1]]}


def _lagging_speakers(kube: k8s_apply.Kube, params: dict, keys: tuple[str, ...]) -> list[str]:
    """Waits up to rotation_wait until no speaker would stop trusting its peers once `keys` are
    written; returns those that still would (empty: write)."""
    def ready(node: str) -> bool:  # read only for a speaker that lags: rarely, and one Node
        return memberlist.node_ready(kube.get("v1", "Node", node))

    def lagging() -> list[str]:
        leases = kube.list("coordination.k8s.io/v1", "Lease", params["namespace"],
                           label_selector=status.HEARTBEAT_SELECTOR)
        return memberlist.lagging_speakers(leases, ready, keys)

    return common.wait_for(lagging, params["rotation_wait"], interval=0.5)


def _stopped(params: dict, lagging: list[str], written: bool) -> str:
    state = ("The bridge keyring stays in force (every speaker still trusts every other): run again once "
             "they have loaded it" if written else "Nothing was written")
    return (f"keys not written: within rotation_wait (l2lb_memberlist_rotation_wait) = "
            f"{params['rotation_wait']} s, these speakers did not load the keys in force: "
            f"{'; '.join(lagging)}. {state}. See those speakers' logs; a speaker on a Node that is not "
            f"Ready does not hold a rotation up")


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
