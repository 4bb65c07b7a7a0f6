"""One definition of every default: the roles' defaults/main.yml, their meta/argument_specs.yml
and the modules' argument specs must say the same thing.

The variable -> module option mapping is read from the roles' own task files (each option given
as "{{ l2lb_x }}" or "{{ l2lb_x | default(omit) }}"), not written down a second time here.
- A variable passed plainly must be defined in defaults/main.yml with the module's default, and
  argument_specs.yml must document that same default.
- A variable passed with default(omit) falls back to the module (the agent's or the client's own
  default): it must not be in defaults/main.yml, and the module option must have no default.
- Every variable the tasks use is documented in argument_specs.yml, and nothing more.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

ROLES = ("deploy", "uninstall")
PLAIN = re.compile(r"^\{\{ (l2lb_\w+) \}\}$")
OMITTED = re.compile(r"^\{\{ (l2lb_\w+) \| default\(omit\) \}\}$")


def module_spec(fqcn: str) -> dict:
    name = fqcn.rsplit(".", 1)[-1]
    module = importlib.import_module(f"ansible_collections.l2lb.layer2.plugins.modules.{name}")
    return module.ARGUMENT_SPEC


def task_uses(role: str) -> list[tuple[str, str, str, bool]]:
    """(module, option, variable, omitted when unset) for every l2lb module task of the role."""
    found = []
    for path in sorted((REPO / "roles" / role / "tasks").glob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            for key, args in task.items():
                if not key.startswith("l2lb.layer2.") or not isinstance(args, dict):
                    continue
                for option, value in args.items():
                    text = str(value)
                    match = PLAIN.match(text) or OMITTED.match(text)
                    if match:
                        found.append((key, option, match.group(1), bool(OMITTED.match(text))))
    return found


def role_files(role: str) -> tuple[dict, dict]:
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return defaults, specs["argument_specs"]["main"]["options"]


@pytest.mark.parametrize("role", ROLES)
def test_defaults_equal_module_defaults_and_argument_specs(role):
    defaults, documented = role_files(role)
    uses = task_uses(role)
    assert uses, f"no l2lb module tasks found in roles/{role}/tasks"
    for module, option, var, omitted in uses:
        spec = module_spec(module)
        assert option in spec, f"{module} has no option {option} (roles/{role})"
        wanted = spec[option].get("default")
        assert var in documented, f"{var} is used by roles/{role} but not in its argument_specs.yml"
        if omitted:
            assert var not in defaults, f"{var} is omitted when unset, so it must not be in defaults/main.yml"
            assert wanted is None, f"{var}: {module} {option} has default {wanted!r}: put it in defaults"
            assert "default" not in documented[var], f"{var}: argument_specs gives a default the module lacks"
        else:
            assert var in defaults, f"{var} is passed as is, so defaults/main.yml must define it"
            assert defaults[var] == wanted, f"{var}: defaults/main.yml {defaults[var]!r} != {wanted!r}"
            assert documented[var].get("default") == wanted, f"{var}: argument_specs default differs"


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_is_documented_and_used(role):
    defaults, documented = role_files(role)
    used = {var for _, _, var, _ in task_uses(role)}
    extra = {"deploy": {"l2lb_render_dir"}}.get(role, set())  # render.yml's own, documented under render
    assert set(defaults) <= used, f"defaults nobody uses: {set(defaults) - used}"
    assert set(documented) == used - extra, f"documented vs used: {set(documented) ^ (used - extra)}"


def test_render_entry_point_documents_main_and_its_directory():
    specs = yaml.safe_load((REPO / "roles" / "deploy" / "meta" / "argument_specs.yml").read_text())
    main, render = specs["argument_specs"]["main"]["options"], specs["argument_specs"]["render"]["options"]
    assert set(render) == set(main) | {"l2lb_render_dir"}
    assert render["l2lb_render_dir"]["required"] is True


def test_one_mapping_variable_to_option_across_modules():
    """A variable means one thing: every task passing it passes it to the option of the same name."""
    for role in ROLES:
        for module, option, var, _ in task_uses(role):
            if var == "l2lb_address_pools":
                assert option == "pools"
            elif var.startswith("l2lb_memberlist_"):
                assert option == var.removeprefix("l2lb_memberlist_"), (module, option, var)
            else:
                assert var == f"l2lb_{option}", (module, option, var)
