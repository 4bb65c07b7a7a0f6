"""The lab's real control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Binaries come from lab/k8s-build/build.sh (cached per user and version). Each component runs
as a background process of the host namespace, listening on loopback only, with its log in
.lab/logs/<name>.log and pid in .lab/run/<name>.pid. Flags are chosen so that a dead lab node
is noticed within seconds (node-monitor-grace-period 8s) and TokenRequest works.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import procs
from . import topology as topo

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
STORE = COMPONENTS[:2]  # started first
# started once the API is ready: with delegated authentication they exit if RBAC is not bootstrapped
CONTROLLERS = COMPONENTS[2:]
PORTS = {  # port on 127.0.0.1 -> who needs it
    topo.API_PORT: "kube-apiserver",
    topo.ETCD_CLIENT_PORT: "etcd (client)",
    topo.ETCD_PEER_PORT: "etcd (peer)",
    topo.KCM_PORT: "kube-controller-manager",
    topo.SCHEDULER_PORT: "kube-scheduler",
}


class ControlPlaneError(RuntimeError):
    """The control plane cannot be built or started."""


def locate_binaries(paths: topo.Paths) -> Path:
    """Run build.sh (builds on first use, progress on stderr) and return the bin directory."""
    res = subprocess.run([str(paths.build_script)], stdout=subprocess.PIPE, stderr=sys.stderr,
                         text=True, check=False)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        raise ControlPlaneError(f"{paths.build_script} failed (exit {res.returncode})")
    bindir = Path(lines[-1]) / "bin"
    missing = [c for c in (*COMPONENTS, "kubectl") if not (bindir / c).is_file()]
    if missing:
        raise ControlPlaneError(f"{bindir} lacks {', '.join(missing)} after build.sh")
    return bindir


def port_owner(port: int) -> str | None:
    """None if 127.0.0.1:port can be bound, else a description of who holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((topo.API_HOST, port))
            return None
        except OSError:
            pass
    res = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                         check=False)
    return res.stdout.strip().split("users:")[-1] if res.stdout.strip() else "an unknown process"


def check_ports() -> None:
    """Fail, naming the port and its holder, if any port the control plane needs is taken."""
    taken = []
    for port, who in PORTS.items():
        owner = port_owner(port)
        if owner:
            taken.append(f"127.0.0.1:{port} (needed by {who}) is taken by {owner}")
    if taken:
        raise ControlPlaneError("ports in use: " + "; ".join(taken))


@dataclass(frozen=True)
class Flags:
    """Command lines of the four components, given the state paths and binary dir."""

    paths: topo.Paths
    bindir: Path

    def argv(self, name: str) -> list[str]:
        builder = {"etcd": self.etcd, "kube-apiserver": self.apiserver,
                   "kube-controller-manager": self.controller_manager,
                   "kube-scheduler": self.scheduler}[name]
        return [str(self.bindir / name), *builder()]

    def etcd(self) -> list[str]:
        client = f"http://127.0.0.1:{topo.ETCD_CLIENT_PORT}"
        peer = f"http://127.0.0.1:{topo.ETCD_PEER_PORT}"
        return ["--name=lab", f"--data-dir={self.paths.etcd}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=lab={peer}", "--unsafe-no-fsync=true",
                "--log-level=warn"]

    def apiserver(self) -> list[str]:
        pki = self.paths.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{topo.ETCD_CLIENT_PORT}",
            f"--bind-address={topo.API_HOST}", f"--secure-port={topo.API_PORT}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={topo.SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={topo.SERVICE_CIDRS}",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _client_common(self, name: str, port: int) -> list[str]:
        kc = self.paths.pki / f"{name}.kubeconfig"
        return [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}", f"--bind-address={topo.API_HOST}",
                f"--secure-port={port}", "--leader-elect=false", "--profiling=false"]

    def controller_manager(self) -> list[str]:
        pki = self.paths.pki
        return [*self._client_common("controller-manager", topo.KCM_PORT),
                "--controllers=*", "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--allocate-node-cidrs=false",
                "--node-monitor-period=1s", "--node-monitor-grace-period=8s",
                "--cluster-name=l2lb-lab"]

    def scheduler(self) -> list[str]:
        return self._client_common("scheduler", topo.SCHEDULER_PORT)


def running(paths: topo.Paths) -> dict[str, int | None]:
    """component -> live pid (or None)."""
    return {c: procs.read_pid(paths.pidfile(c), c) for c in COMPONENTS}


def start_missing(paths: topo.Paths, bindir: Path, names: tuple[str, ...]) -> list[str]:
    """Start each of names that is not running; return the names started."""
    flags = Flags(paths, bindir)
    paths.etcd.mkdir(parents=True, exist_ok=True)
    paths.etcd.chmod(0o700)
    started = []
    for name, pid in running(paths).items():
        if pid is None and name in names:
            procs.start(flags.argv(name), log=paths.log(name), pidfile=paths.pidfile(name))
            started.append(name)
    return started


def stop(paths: topo.Paths) -> list[int]:
    """Stop the components, scheduler first and etcd last; return pids that survived."""
    left: list[int] = []
    for name in reversed(COMPONENTS):
        pid = procs.read_pid(paths.pidfile(name), name)
        if pid is not None:
            left += procs.stop([pid], grace=5.0)
    return left
