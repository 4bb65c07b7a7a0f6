"""Helpers behind the pytest fixtures (tests/integration/conftest.py): drive the lab from outside.

Everything goes through the same doors an operator uses: the `lab` command, `ip netns exec`,
the probe module (ARP/NDP from the client) and curl from the client. Nothing here imports the
kubernetes client; the `kube` fixture builds that from .lab/kubeconfig.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from . import lock
from . import topology as topo

T = TypeVar("T")


class LabCommandError(RuntimeError):
    """A `lab` verb failed; the message carries its output."""


@dataclass(frozen=True)
class HttpResult:
    """What curl got from the client namespace: status None when nothing answered."""

    status: int | None
    body: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class LabHandle:
    """The running lab, as tests see it (the `lab` fixture's value)."""

    paths: topo.Paths

    @property
    def kubeconfig(self) -> str:
        return str(self.paths.kubeconfig)

    def run(self, *args: str, timeout: float = 180.0, check: bool = True,
            lock_held: bool = False) -> subprocess.CompletedProcess:
        """Run `.venv/bin/lab ARGS...`; raise LabCommandError if it fails and check is set.

        lock_held: the caller holds lock.exclusive() (the command must not wait for it)."""
        exe = self.paths.repo / ".venv" / "bin" / "lab"
        env = {**os.environ, lock.HELD_ENV: "1"} if lock_held else None
        res = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                             check=False, env=env)
        if check and res.returncode != 0:
            raise LabCommandError(f"lab {' '.join(args)} exited {res.returncode}:\n{res.stdout}{res.stderr}")
        return res

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return self.run("kubectl", *args, check=check, timeout=timeout)

    def node_down(self, node: str) -> None:
        self.run("node-down", node)

    def node_up(self, node: str) -> None:
        self.run("node-up", node)

    def api_down(self, node: str) -> None:
        self.run("api-down", node)

    def api_up(self, node: str) -> None:
        self.run("api-up", node)


def netns_run(ns: str, *cmd: str, timeout: float = 30.0, check: bool = False) -> subprocess.CompletedProcess:
    """Run cmd inside a lab namespace (`client`, `node1`, or `l2lb-node1`); text output captured."""
    host = topo.find_host(ns)
    return subprocess.run(["ip", "netns", "exec", host.netns, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=check)


def who_has(kind: str, ip: str, *, count: int = 3, wait: float = 0.5) -> dict[str, int]:
    """MAC -> number of answers to `count` ARP (kind="arp") or NDP ("ndp") requests from the client."""
    python = str(topo.Paths(topo.repo_root()).python)
    res = netns_run("client", python, "-m", "l2lb_lab.probe", kind, ip, f"--count={count}",
                    f"--wait={wait}", timeout=30 + count)
    if res.returncode != 0:
        raise RuntimeError(f"probe {kind} {ip} failed: {res.stderr.strip()}")
    return json.loads(res.stdout)


def http_get(url: str, *, timeout: float = 5.0, ns: str = "client") -> HttpResult:
    """GET url with curl from inside ns (default the client); never raises for network errors."""
    res = netns_run(ns, "curl", "-sS", "-g", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}", url,
                    timeout=timeout + 10)
    body, _, code = res.stdout.rpartition("\n")
    if res.returncode != 0 or not code.isdigit() or code == "000":
        return HttpResult(None, body, res.stderr.strip() or f"curl exit {res.returncode}")
    return HttpResult(int(code), body, "")


def wait_until(what: str, check: Callable[[], T], timeout: float = 60.0, every: float = 0.2) -> T:
    """Poll check() until it returns something truthy and return that; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
