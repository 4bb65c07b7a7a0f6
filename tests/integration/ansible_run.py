"""Run the operator's own commands from the checkout: ansible-playbook with inventory/lab.

Shared by test_ansible.py and test_deploy_safety.py (not a test module itself).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NS = "l2lb-system"


def playbook(*args: str, extra: dict | None = None, tmp: Path | None = None,
             timeout: float = 540) -> subprocess.CompletedProcess:
    """ansible-playbook from the checkout, as an operator runs it (ansible.cfg, inventory/lab)."""
    cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "inventory/lab", *args]
    if extra is not None:
        assert tmp is not None
        path = tmp / f"extra-{len(list(tmp.glob('extra-*.json')))}.json"
        path.write_text(json.dumps(extra))
        cmd += ["-e", f"@{path}"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    match = re.search(r"localhost\s*:\s*(.*)$", result.stdout, re.MULTILINE)
    assert match, f"no PLAY RECAP in output:\n{result.stdout}\n{result.stderr}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def succeeded(result: subprocess.CompletedProcess) -> dict[str, int]:
    assert result.returncode == 0, f"playbook failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return recap(result)


def refused(result: subprocess.CompletedProcess, *named: str) -> str:
    """The run failed, changed nothing, and its failure names every part of `named`."""
    assert result.returncode != 0, f"expected a refusal:\n{result.stdout[-4000:]}"
    failure = result.stdout + result.stderr
    for part in named:
        assert part in failure, f"{part!r} not named in:\n{failure[-3000:]}"
    assert recap(result)["changed"] == 0
    return failure
