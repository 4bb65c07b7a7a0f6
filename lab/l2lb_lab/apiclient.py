"""Minimal HTTPS GET against the lab's API server with the admin credentials in .lab/pki.

Used by `lab up` / `lab status` to poll /readyz and Nodes without loading the kubernetes client
(it costs a second of import time on every command). Tests use the real client instead.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

from . import topology as topo


class ApiError(RuntimeError):
    """The API server could not be reached or answered an error."""


def _context(paths: topo.Paths) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(paths.pki / "ca.crt"))
    ctx.load_cert_chain(str(paths.pki / "admin.crt"), str(paths.pki / "admin.key"))
    return ctx


def get(paths: topo.Paths, path: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET path as admin; (status, body). Raises ApiError when there is no answer at all."""
    conn = http.client.HTTPSConnection(topo.API_HOST, topo.API_PORT, context=_context(paths),
                                       timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        raise ApiError(f"GET {path}: {exc}") from exc
    finally:
        conn.close()


def get_json(paths: topo.Paths, path: str) -> dict[str, Any]:
    status, body = get(paths, path)
    if status != 200:
        raise ApiError(f"GET {path}: HTTP {status}: {body[:200]}")
    return json.loads(body)


def is_ready(paths: topo.Paths) -> bool:
    try:
        return get(paths, "/readyz", timeout=1.0)[0] == 200
    except (ApiError, FileNotFoundError, ssl.SSLError):
        return False


def node_readiness(paths: topo.Paths) -> dict[str, str]:
    """node name -> status of its Ready condition ("True", "False", "Unknown"); absent if unregistered."""
    nodes = get_json(paths, "/api/v1/nodes").get("items", [])
    out = {}
    for node in nodes:
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        out[node["metadata"]["name"]] = conds.get("Ready", "Unknown")
    return out
