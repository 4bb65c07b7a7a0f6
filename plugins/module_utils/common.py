# Copyright: l2lb contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options and result shaping shared by every l2lb module.

Place in the flow: each module's main() -> **common (here)** -> k8s_apply. Holds the connection
options (one definition for the three modules) and turns apply results into the module's return
values. No decisions about what to apply live here.
"""

from __future__ import annotations

import json
import time
import typing as t

from ansible_collections.l2lb.layer2.plugins.module_utils import k8s_apply

try:
    import yaml
except ImportError:  # PyYAML comes with ansible-core on the controller; JSON is valid YAML anyway
    yaml = None

CONNECTION_ARGS: dict[str, dict[str, t.Any]] = {
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
}


def connect(params: t.Mapping[str, t.Any], check_mode: bool) -> k8s_apply.Kube:
    return k8s_apply.Kube(params.get("kubeconfig"), params.get("context"), check_mode)


def dump(obj: t.Any) -> str:
    """One YAML document for a diff; multi-line strings (the pools text) as readable blocks."""
    if yaml is None:
        return "---\n" + json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return "---\n" + yaml.dump(obj, Dumper=_BlockDumper, default_flow_style=False, sort_keys=True)


if yaml is not None:

    class _BlockDumper(yaml.SafeDumper):
        """SafeDumper writing strings that contain newlines in literal block style."""

    def _str(dumper: t.Any, value: str) -> t.Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _BlockDumper.add_representer(str, _str)


def summarize(results: t.Sequence[k8s_apply.Result], diff_mode: bool, check_mode: bool) -> dict[str, t.Any]:
    """Module return values: changed, the per-object outcome, and before/after in diff mode only."""
    out: dict[str, t.Any] = {
        "changed": any(r.changed for r in results),
        "resources": [{"ref": r.ref, "changed": r.changed} for r in results],
    }
    if diff_mode:
        out["diff"] = k8s_apply.diff(results, dump, check_mode)
    return out


def wait_for(problems: t.Callable[[], list[str]], timeout: float, interval: float = 2.0) -> list[str]:
    """Call problems() until it returns [] or timeout seconds pass; return the last answer.

    An API error while waiting (API server restarting, connection refused) counts as one more
    problem to wait out, not as a failure: only the deadline ends the wait.
    """
    deadline = time.monotonic() + timeout
    found = _problems_or_error(problems)
    while found and time.monotonic() < deadline:
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        found = _problems_or_error(problems)
    return found


def _problems_or_error(problems: t.Callable[[], list[str]]) -> list[str]:
    try:
        return problems()
    except k8s_apply.KubeError as error:
        return [f"API error: {error}"]


class NotReadyError(Exception):
    """A wait ran out of time; the message lists what is still not in the wanted state."""
