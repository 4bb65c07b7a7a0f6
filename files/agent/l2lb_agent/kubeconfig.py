"""Where the agent finds its API server: kubeconfig files and the in-cluster ServiceAccount.

Adapter ring, used only by `l2lb_agent.kube`. It turns a kubeconfig (or the Pod's mounted
ServiceAccount) into a `ClusterConfig`: base URL, an `ssl.SSLContext` with the CA and client
certificate loaded, and a token source. It does not talk to the API server.

Resolution order (`resolve`): explicit path (--kubeconfig), L2LB_KUBECONFIG, KUBECONFIG (first
file of a colon list), then in-cluster. Exec/auth-provider plugins are not supported: the agent
runs in-cluster or with a static admin kubeconfig.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_REREAD_SECONDS = 60.0  # projected tokens rotate; kubelet refreshes the file well before expiry


class KubeConfigError(Exception):
    """The kubeconfig or in-cluster environment cannot be used; the message says which field."""


class TokenSource:
    """A bearer token, static or re-read from a file at most every TOKEN_REREAD_SECONDS."""

    def __init__(self, token: str | None = None, path: str | None = None) -> None:
        self._token = token
        self._path = path
        self._read_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str | None:
        if self._path is None:
            return self._token
        with self._lock:
            now = time.monotonic()
            if self._token is None or now - self._read_at >= TOKEN_REREAD_SECONDS:
                try:
                    with open(self._path, encoding="utf-8") as f:
                        self._token = f.read().strip()
                except OSError as exc:
                    if self._token is None:
                        raise KubeConfigError(f"token file {self._path!r}: {exc.strerror}") from exc
                self._read_at = now
            return self._token


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Everything needed to reach one API server."""

    server: str  # https://host:port, no trailing slash
    ssl_context: ssl.SSLContext | None  # None for plain http (tests against a local proxy)
    token: TokenSource
    source: str  # human description for logs: "kubeconfig /path (context x)" or "in-cluster"


def resolve(path: str | None = None, context: str | None = None) -> ClusterConfig:
    """Pick the kubeconfig by the documented order and load it."""
    for candidate in (path, os.environ.get("L2LB_KUBECONFIG"), os.environ.get("KUBECONFIG")):
        if candidate:
            first = candidate.split(os.pathsep)[0]
            return load_kubeconfig(first, context)
    return load_in_cluster()


def load_in_cluster(sa_dir: str = SA_DIR) -> ClusterConfig:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeConfigError(
            "no kubeconfig given (--kubeconfig, L2LB_KUBECONFIG, KUBECONFIG) and not in a cluster "
            "(KUBERNETES_SERVICE_HOST is unset)"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    ctx = ssl.create_default_context(cafile=os.path.join(sa_dir, "ca.crt"))
    token = TokenSource(path=os.path.join(sa_dir, "token"))
    token.get()  # fail now, with the path, rather than at the first request
    return ClusterConfig(server=f"https://{host}:{port}", ssl_context=ctx, token=token, source="in-cluster")


def load_kubeconfig(path: str, context: str | None = None) -> ClusterConfig:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except OSError as exc:
        raise KubeConfigError(f"kubeconfig {path!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise KubeConfigError(f"kubeconfig {path!r}: not YAML: {exc}") from exc
    base = os.path.dirname(os.path.abspath(path))
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeConfigError(f"kubeconfig {path!r}: no current-context and no --context given")
    ctx = _named(doc, "contexts", "context", ctx_name, path)
    cluster = _named(doc, "clusters", "cluster", ctx.get("cluster"), path)
    user = _named(doc, "users", "user", ctx.get("user"), path) if ctx.get("user") else {}
    server = str(cluster.get("server", "")).rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise KubeConfigError(f"kubeconfig {path!r}: cluster server {server!r} is not an http(s) URL")
    ssl_ctx = _ssl_context(cluster, user, base) if server.startswith("https://") else None
    return ClusterConfig(
        server=server,
        ssl_context=ssl_ctx,
        token=_token(user, base),
        source=f"kubeconfig {path} (context {ctx_name})",
    )


def _named(doc: Mapping[str, Any], section: str, field: str, name: Any, path: str) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            return dict(entry.get(field) or {})
    raise KubeConfigError(f"kubeconfig {path!r}: {section} has no entry named {name!r}")


def _abs(base: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(base, p)


def _token(user: Mapping[str, Any], base: str) -> TokenSource:
    if user.get("token"):
        return TokenSource(token=str(user["token"]))
    if user.get("tokenFile"):
        return TokenSource(path=_abs(base, str(user["tokenFile"])))
    return TokenSource()


def _ssl_context(cluster: Mapping[str, Any], user: Mapping[str, Any], base: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cluster.get("certificate-authority-data"):
        field = "certificate-authority-data"
        ctx.load_verify_locations(cadata=_b64(cluster[field], field))
    elif cluster.get("certificate-authority"):
        ctx.load_verify_locations(cafile=_abs(base, str(cluster["certificate-authority"])))
    cert = _pem(user, "client-certificate", base)
    key = _pem(user, "client-key", base)
    if cert and key:
        _load_cert_chain(ctx, cert, key)
    return ctx


def _b64(value: Any, field: str) -> str:
    try:
        return base64.b64decode(str(value)).decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise KubeConfigError(f"kubeconfig field {field}: not base64 PEM") from exc


def _pem(user: Mapping[str, Any], field: str, base: str) -> str | None:
    if user.get(f"{field}-data"):
        return _b64(user[f"{field}-data"], f"{field}-data")
    if user.get(field):
        try:
            with open(_abs(base, str(user[field])), encoding="ascii") as f:
                return f.read()
        except OSError as exc:
            raise KubeConfigError(f"kubeconfig field {field} {user[field]!r}: {exc.strerror}") from exc
    return None


def _load_cert_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    # ssl only loads client certificates from files: write them to a private temp dir, load, remove.
    with tempfile.TemporaryDirectory(prefix="l2lb-") as tmp:
        cert_path, key_path = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        for p, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)
