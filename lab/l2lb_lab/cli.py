"""The `lab` command: entry point of the lab (see l2lb_lab.lifecycle for what each verb does)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from . import controlplane, faults, lan, lifecycle, lock, logs, status
from . import topology as topo

EPILOG = """verbs:
  up [--nodes N]      start the lab or reuse what runs (idempotent; also undoes node-down/api-down);
                      N nodes (default 3, or as last time); a different N starts afresh
  down                stop every lab process, remove the namespaces and .lab
  status              what runs (exit 0 only when the whole lab is healthy)
  kubectl ARGS...     the lab's kubectl with .lab/kubeconfig
  node-down NODE      hard failure: link cut, every process in the node's netns SIGKILLed
  node-up NODE        link back, forwarder and kubelet restarted
  api-down NODE       cut only NODE's path to the API server (LAN stays up)
  api-up NODE         restore it
  api-freeze          stop the whole control plane (SIGSTOP of kube-apiserver and etcd)
  api-thaw            resume it
  exec NS CMD...      run CMD inside client, node1..N (or l2lb-<name>)
  logs [-n NS] [-l SEL] [POD] [--tail N]   container output of Pods (the lab's `kubectl logs`)
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lab", description="l2lb's local lab", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    up = sub.add_parser("up")
    up.add_argument("--nodes", type=int, default=None,
                    help=f"number of nodes (default: as last time, else {topo.DEFAULT_NODE_COUNT})")
    up.add_argument("--timeout", type=float, default=90.0,
                                      help="seconds to wait for the API and Ready nodes")
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("kubectl").add_argument("args", nargs=argparse.REMAINDER)
    for verb in ("node-down", "node-up", "api-down", "api-up"):
        sub.add_parser(verb).add_argument("node", help="node1 .. nodeN")
    sub.add_parser("api-freeze")
    sub.add_parser("api-thaw")
    ex = sub.add_parser("exec")
    ex.add_argument("ns", help="client, node1..N or l2lb-<name>")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    lg = sub.add_parser("logs")
    lg.add_argument("-n", "--namespace", default="default")
    lg.add_argument("-l", "--selector")
    lg.add_argument("--tail", type=int, default=-1, help="last N lines per container (-1: all)")
    lg.add_argument("pod", nargs="?")
    return p


def _exec_kubectl(args: list[str]) -> None:
    paths = topo.Paths(topo.repo_root())
    bindir = controlplane.locate_binaries(paths)
    kubectl = str(bindir / "kubectl")
    os.execv(kubectl, [kubectl, f"--kubeconfig={paths.kubeconfig}", *args])


def _exec_in(ns: str, cmd: list[str]) -> None:
    host = topo.find_host(ns)
    if not cmd:
        raise ValueError("exec needs a command, e.g. `lab exec client ip addr`")
    os.execvp("ip", ["ip", "netns", "exec", host.netns, *cmd])


MUTATING = ("up", "down", "node-down", "node-up", "api-down", "api-up", "api-freeze", "api-thaw")


@contextlib.contextmanager
def _exclusive(verb: str) -> Iterator[None]:
    if verb not in MUTATING:
        yield
        return
    lifecycle.preflight()  # before the lock: a non-root user gets the clear message, not EACCES
    with lock.exclusive():
        yield


def _status() -> int:
    lines, ok = status.report(topo.Paths(topo.repo_root()))
    print("\n".join(lines))
    return 0 if ok else 3


def _split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """kubectl/exec take everything after them verbatim (argparse would eat `-n ns` etc.)."""
    for i, word in enumerate(argv):
        if word == "kubectl":
            return argv[: i + 1], argv[i + 1:]
        if word == "exec":
            return argv[: i + 2], argv[i + 2:]
        if not word.startswith("-"):
            break
    return argv, []


def main(argv: list[str] | None = None) -> int:
    head, rest = _split_passthrough(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(head)
    if args.verb in ("kubectl", "exec"):
        (args.args if args.verb == "kubectl" else args.cmd).extend(rest)
    try:
        with _exclusive(args.verb):
            return _dispatch(args)
    except (lifecycle.LabError, controlplane.ControlPlaneError, lan.LanError, ValueError) as exc:
        print(f"lab {args.verb}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.verb == "up":
        lifecycle.up(timeout=args.timeout, nodes=args.nodes)
    elif args.verb == "down":
        lifecycle.down()
    elif args.verb == "status":
        return _status()
    elif args.verb == "kubectl":
        _exec_kubectl(args.args)
    elif args.verb == "exec":
        _exec_in(args.ns, args.cmd)
    elif args.verb == "logs":
        return logs.show(args.namespace, args.selector, args.pod, args.tail)
    elif args.verb in ("api-freeze", "api-thaw"):
        getattr(faults, args.verb.replace("-", "_"))()
    else:
        getattr(faults, args.verb.replace("-", "_"))(args.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
