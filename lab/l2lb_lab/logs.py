"""`lab logs`: what `kubectl logs` shows on a cluster, read from the lab kubelets' log files.

The lab kubelet has no kubelet API (no `kubectl logs`), but it writes each container's output to
`<node state>/pods/<ns>_<name>_<uid8>/<container>.log`; this finds the Pods through the API
server and prints those files, prefixed with the Pod name like `kubectl logs --prefix`.
"""

from __future__ import annotations

import json
import subprocess
from collections import deque
from pathlib import Path

from . import controlplane
from . import topology as topo


def _pods(paths: topo.Paths, namespace: str, selector: str | None, name: str | None) -> list[dict]:
    kubectl = str(controlplane.locate_binaries(paths) / "kubectl")
    cmd = [kubectl, f"--kubeconfig={paths.kubeconfig}", "-n", namespace, "get", "pods", "-o", "json"]
    if selector:
        cmd += ["-l", selector]
    items = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["items"]
    return [p for p in items if name is None or p["metadata"]["name"] == name]


def _log_files(paths: topo.Paths, pod: dict) -> list[Path]:
    meta, node = pod["metadata"], pod["spec"].get("nodeName")
    if not node:
        return []
    pod_dir = paths.node_state(node) / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
    return sorted(pod_dir.glob("*.log"))


def show(namespace: str, selector: str | None, name: str | None, tail: int) -> int:
    """Print the last `tail` lines of every matching Pod's containers; 1 when nothing matched."""
    paths = topo.Paths(topo.repo_root())
    pods = _pods(paths, namespace, selector, name)
    if not pods:
        print(f"lab logs: no pod in namespace {namespace} matches")
        return 1
    for pod in pods:
        for path in _log_files(paths, pod):
            with path.open(errors="replace") as f:
                lines = deque(f, maxlen=tail) if tail > 0 else f.readlines()
            prefix = f"[pod/{pod['metadata']['name']}/{path.stem}] " if len(pods) > 1 else ""
            for line in lines:
                print(prefix + line, end="")
    return 0
