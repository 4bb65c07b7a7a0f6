# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster facts that make an l2lb deploy unsafe, judged before any change.

Place in the flow: l2lb_manifests (state=present) reads kube-system/kube-proxy and the live
objects -> **preflight (here)** -> refuse or go on to apply. Pure: plain dicts in, problems
(strings naming the object and the fix) out. It judges kube-proxy only from its ConfigMap (the
kubeadm layout, data key `config.conf`, or any key holding a KubeProxyConfiguration); a
kube-proxy configured by flags alone is not seen.
"""

from __future__ import annotations

import typing as t

try:
    import yaml
except ImportError:  # PyYAML comes with ansible-core; without it the check cannot read the config
    yaml = None

from ansible_collections.l2lb.layer2.plugins.module_utils import render

KUBE_PROXY = ("kube-system", "kube-proxy")
IPVS_FIX = (
    "kube-proxy runs in IPVS mode without strictARP: true (ConfigMap kube-system/kube-proxy, key "
    "{key}), so every node's kernel answers ARP for every LoadBalancer IP and l2lb's single owner is "
    "defeated. Fix: `kubectl -n kube-system edit configmap kube-proxy`, set `ipvs: {{strictARP: true}}`, "
    "then `kubectl -n kube-system rollout restart daemonset kube-proxy`; or set "
    "l2lb_skip_kube_proxy_check: true if kube-proxy is configured elsewhere."
)


def kube_proxy_problem(configmap: t.Mapping[str, t.Any] | None) -> str | None:
    """Why kube-proxy's config breaks layer-2 announcements, or None (also when there is none)."""
    for key, text in sorted(((configmap or {}).get("data") or {}).items()):
        config = _load(text)
        if not isinstance(config, dict) or config.get("kind") != "KubeProxyConfiguration":
            continue
        strict = (config.get("ipvs") or {}).get("strictARP") is True
        if str(config.get("mode") or "").lower() == "ipvs" and not strict:
            return IPVS_FIX.format(key=key)
    return None


def _load(text: t.Any) -> t.Any:
    if yaml is None or not isinstance(text, str):
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def foreign(objects: t.Iterable[t.Mapping[str, t.Any]],
            live: t.Mapping[str, t.Mapping[str, t.Any] | None]) -> list[str]:
    """Objects l2lb would overwrite although it did not create them (live: ref -> object or None).

    A foreign Namespace is not a problem (l2lb then lives in it without touching it)."""
    return [render.ref(obj) for obj in objects
            if obj["kind"] != "Namespace" and live.get(render.ref(obj)) is not None
            and not render.is_managed(live[render.ref(obj)])]


def namespace_is_ours(live_namespace: t.Mapping[str, t.Any] | None) -> bool:
    """l2lb created it (annotation), or it is absent and l2lb is about to create it."""
    if live_namespace is None:
        return True
    annotations = (live_namespace.get("metadata") or {}).get("annotations") or {}
    return annotations.get(render.CREATED_BY_ANNOTATION) == render.MANAGED_BY
