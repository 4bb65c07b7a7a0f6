# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each l2lb component may do in the cluster: RBAC rules and the Lease admission policy.

Place in the flow: render.manifests -> **rbac (here)** -> k8s_apply. Pure: names in, dicts out.
The rules are exactly the API calls each component issues (controller: controller.py, leader.py,
writers.py; speaker: speaker*.py), proven by tests/integration/test_deploy_safety.py with a
`kubectl auth can-i` matrix. RBAC cannot name per-node objects, so a ValidatingAdmissionPolicy
keyed on the ServiceAccount token's node-name claim keeps each speaker to its own registration
Lease and the controller to its election Lease. It does not guard anything a cluster admin does.
"""

from __future__ import annotations

import typing as t

CONTROLLER = "controller"
SPEAKER = "speaker"
CONTROLLER_LEASE = "l2lb-controller"
SPEAKER_LEASE_PREFIX = "l2lb-speaker-"
CONFIG_MAP_NAME = "config"
# Set on ServiceAccount tokens bound to a Pod (Kubernetes >= 1.30): the node the Pod runs on.
NODE_NAME_CLAIM = "authentication.kubernetes.io/node-name"
RBAC_GROUP = "rbac.authorization.k8s.io"

Rule = dict[str, list[str]]


def _rule(groups: list[str], resources: list[str], verbs: list[str],
          names: list[str] | None = None) -> Rule:
    rule = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


WATCH = ["list", "watch"]  # informers list then watch; neither component GETs these one by one
EVENTS = _rule([""], ["events"], ["create"])
LEASES = "coordination.k8s.io"
ANNOUNCEMENTS = "ipannouncements"  # l2lb.io, cluster-scoped, one per announced IP
L2LB_GROUP = "l2lb.io"


def rules(component: str, secret_name: str) -> tuple[list[Rule], list[Rule]]:
    """(cluster-wide rules, rules inside the l2lb namespace) for one component."""
    if component == CONTROLLER:
        return (
            # nodes: the InternalIPs a pool must not cover (a ConfigWarning), and the labels a pool's
            # node-selectors match (NoEligibleNode); namespaces: the labels of service-allocation rules
            [_rule([""], ["services", "nodes", "namespaces"], WATCH),
             _rule([""], ["services/status"], ["patch"]), EVENTS,
             # an IP's IPAnnouncement goes when the IP is released; a periodic sweep finds orphans
             _rule([L2LB_GROUP], [ANNOUNCEMENTS], ["list", "delete"])],
            [
                # The Informer lists/watches with fieldSelector metadata.name=config: resourceNames hold.
                _rule([""], ["configmaps"], WATCH, [CONFIG_MAP_NAME]),
                # create cannot be limited by name in RBAC; the admission policy limits it.
                _rule([LEASES], ["leases"], ["create"]),
                _rule([LEASES], ["leases"], ["get", "update"], [CONTROLLER_LEASE]),
                # the speakers' registrations: the subnets they announce on (NoMatchingSubnet)
                _rule([LEASES], ["leases"], WATCH),
            ],
        )
    return (
        [
            _rule([""], ["services", "nodes"], WATCH),
            _rule(["discovery.k8s.io"], ["endpointslices"], WATCH),
            EVENTS,
            # who announces each IP: one LIST at start, a GET before a write, create, status patch
            _rule([L2LB_GROUP], [ANNOUNCEMENTS], ["get", "list", "create"]),
            _rule([L2LB_GROUP], [f"{ANNOUNCEMENTS}/status"], ["patch"]),
        ],
        [
            # Registrations: all read, own written (which one is "own" is the admission policy's job).
            _rule([LEASES], ["leases"], ["list", "watch", "get", "create", "update", "delete"]),
            _rule([""], ["secrets"], ["get", "list", "watch"], [secret_name]),
            # the pools: where each may be announced (listed/watched by name, like the controller)
            _rule([""], ["configmaps"], WATCH, [CONFIG_MAP_NAME]),
        ],
    )


def service_account_user(namespace: str, component: str) -> str:
    return f"system:serviceaccount:{namespace}:l2lb-{component}"


def objects(meta: t.Callable[[str, str | None, str | None], dict[str, t.Any]], namespace: str,
            component: str, secret_name: str) -> list[dict[str, t.Any]]:
    """ClusterRole/Binding for cluster-wide calls, Role/Binding for the l2lb namespace only."""
    name = f"l2lb-{component}"
    cluster_rules, ns_rules = rules(component, secret_name)
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    version = f"{RBAC_GROUP}/v1"
    return [
        {"apiVersion": version, "kind": "ClusterRole", "metadata": meta(name, None, component),
         "rules": cluster_rules},
        {"apiVersion": version, "kind": "ClusterRoleBinding", "metadata": meta(name, None, component),
         "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name}, "subjects": [subject]},
        {"apiVersion": version, "kind": "Role", "metadata": meta(name, namespace, component),
         "rules": ns_rules},
        {"apiVersion": version, "kind": "RoleBinding", "metadata": meta(name, namespace, component),
         "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": name}, "subjects": [subject]},
    ]


def lease_guard_name(namespace: str) -> str:
    """Cluster-scoped, so it carries the namespace: two installations never share one."""
    return f"l2lb-leases.{namespace}"


def lease_guard(meta: t.Callable[[str, str | None, str | None], dict[str, t.Any]],
                namespace: str) -> list[dict[str, t.Any]]:
    """ValidatingAdmissionPolicy + Binding: a speaker writes only `l2lb-speaker-<its node>`, the
    controller only `l2lb-controller` (dry runs included: admission runs on them too)."""
    speaker = service_account_user(namespace, SPEAKER)
    controller = service_account_user(namespace, CONTROLLER)
    name = lease_guard_name(namespace)
    group = "admissionregistration.k8s.io"
    claim = f"request.userInfo.extra[{_cel(NODE_NAME_CLAIM)}]"
    policy = {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceRules": [{"apiGroups": [LEASES], "apiVersions": ["*"],
                               "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["leases"]}],
        },
        "matchConditions": [{
            "name": "l2lb-agents",
            "expression": f"request.userInfo.username in [{_cel(speaker)}, {_cel(controller)}]",
        }],
        "variables": [
            {"name": "node", "expression": f"{_cel(NODE_NAME_CLAIM)} in request.userInfo.extra && "
                                           f"size({claim}) == 1 ? {claim}[0] : ''"},
            {"name": "isSpeaker", "expression": f"request.userInfo.username == {_cel(speaker)}"},
        ],
        "validations": [
            {"expression": f"!variables.isSpeaker || (variables.node != '' && "
                           f"request.name == {_cel(SPEAKER_LEASE_PREFIX)} + variables.node)",
             "messageExpression": f"'l2lb: the speaker on node ' + (variables.node == '' ? '(unknown: no "
                                  f"node-name claim in its token)' : variables.node) + ' may write only "
                                  f"Lease {SPEAKER_LEASE_PREFIX}' + variables.node + ', not ' + request.name",
             "reason": "Forbidden"},
            {"expression": f"variables.isSpeaker || request.name == {_cel(CONTROLLER_LEASE)}",
             "messageExpression": f"'l2lb: the controller may write only Lease {CONTROLLER_LEASE}, not ' "
                                  "+ request.name",
             "reason": "Forbidden"},
        ],
    }
    return [
        {"apiVersion": f"{group}/v1", "kind": "ValidatingAdmissionPolicy", "metadata": meta(name, None, None),
         "spec": policy},
        {"apiVersion": f"{group}/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": meta(name, None, None),
         "spec": {"policyName": name, "validationActions": ["Deny"]}},
    ]


def _cel(text: str) -> str:
    """A CEL string literal (names here are DNS names and ServiceAccount users: no quotes inside)."""
    if "'" in text or "\\" in text:
        raise ValueError(f"cannot quote {text!r} for CEL")
    return f"'{text}'"
