"""ServiceAccount credentials for a Pod: TokenRequest token -> per-Pod kubeconfig.

Where it sits: pods.py calls `PodCredentials.ensure()` before starting an agent container
and on every worker tick; it writes `<pod dir>/kubeconfig` (0600) carrying a token bound
to the Pod, so RBAC applies to the agent exactly as in a cluster.  Like the real kubelet
it asks for 3607 s, which an API server with --service-account-extend-token-expiration
(the default) turns into a long-lived token, and still renews at 80 % of the requested
lifetime.  The file is replaced atomically, so a reader never sees half of it.
It also fills `<pod dir>/serviceaccount/` (token, ca.crt, namespace: what the projected
kube-api-access volume holds in a cluster), which runtime.py bind-mounts read-only at
/var/run/secrets/kubernetes.io/serviceaccount; files are 0644 like the volume's defaultMode.
"""

from __future__ import annotations

import base64
import logging
import os
from typing import Any

import yaml
from kubernetes import client

from . import api

log = logging.getLogger("kubelet.token")

TOKEN_SECONDS = 3607
RENEW_FRACTION = 0.8
RETRY_SECONDS = 5.0


def admin_cluster(kubeconfig: str) -> tuple[str, str]:
    """(server URL, base64 CA data) of the admin kubeconfig's current context."""
    with open(kubeconfig, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    contexts = {c["name"]: c["context"] for c in cfg.get("contexts", [])}
    clusters = {c["name"]: c["cluster"] for c in cfg.get("clusters", [])}
    current = cfg.get("current-context") or next(iter(contexts))
    cluster = clusters[contexts[current]["cluster"]]
    ca = cluster.get("certificate-authority-data", "")
    if not ca and cluster.get("certificate-authority"):
        path = os.path.join(os.path.dirname(kubeconfig), cluster["certificate-authority"])
        with open(path, "rb") as f:
            ca = base64.b64encode(f.read()).decode()
    return cluster["server"], ca


def pod_kubeconfig(server: str, ca_data: str, token: str, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
        "current-context": "lab",
    }


class PodCredentials:
    """The token and kubeconfig of one Pod's ServiceAccount."""

    def __init__(self, core: client.CoreV1Api, cluster: tuple[str, str], pod: dict[str, Any],
                 pod_dir: str) -> None:
        self._core = core
        self._server, self._ca = cluster
        meta = pod["metadata"]
        self._ns, self._pod, self._uid = meta["namespace"], meta["name"], meta["uid"]
        self.service_account = pod["spec"].get("serviceAccountName") or "default"
        self.path = os.path.join(pod_dir, "kubeconfig")
        self.sa_dir = os.path.join(pod_dir, "serviceaccount")
        self._renew_at = 0.0
        self._retry_at = 0.0  # after a failed TokenRequest, do not hammer the API

    def ensure(self, now: float) -> bool:
        """Make sure a fresh kubeconfig exists; False while the API cannot give a token."""
        if now < self._renew_at and os.path.exists(self.path):
            return True
        if now < self._retry_at:
            return os.path.exists(self.path)
        try:
            token = self._request()
        except (api.ApiException, api.ApiUnavailable) as exc:
            self._retry_at = now + RETRY_SECONDS
            log.warning("%s/%s: TokenRequest for ServiceAccount %s failed: %s", self._ns, self._pod,
                        self.service_account, api.describe(exc))
            return os.path.exists(self.path)
        self._write(token)
        self._renew_at = now + TOKEN_SECONDS * RENEW_FRACTION
        return True

    def _request(self) -> str:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": TOKEN_SECONDS,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self._pod, "uid": self._uid},
            },
        }
        resp = api.call(self._core.create_namespaced_service_account_token, self.service_account, self._ns,
                        body=body)
        return resp["status"]["token"]

    def _write(self, token: str) -> None:
        user = f"system:serviceaccount:{self._ns}:{self.service_account}"
        os.makedirs(self.sa_dir, mode=0o755, exist_ok=True)
        _atomic(os.path.join(self.sa_dir, "ca.crt"), base64.b64decode(self._ca).decode(), 0o644)
        _atomic(os.path.join(self.sa_dir, "namespace"), self._ns, 0o644)
        _atomic(os.path.join(self.sa_dir, "token"), token, 0o644)
        _atomic(self.path, yaml.safe_dump(pod_kubeconfig(self._server, self._ca, token, user)), 0o600)
        log.info("%s/%s: wrote kubeconfig for ServiceAccount %s", self._ns, self._pod, self.service_account)


def _atomic(path: str, text: str, mode: int) -> None:
    """Replace path in one rename: a reader (or a bind mount of the directory) never sees half."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
