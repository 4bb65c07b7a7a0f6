"""The controller's write budget as a setting: role variable l2lb_controller_api_qps -> rendered env
L2LB_API_QPS / L2LB_API_BURST -> the agent's --api-qps / --api-burst (one behaviour end to end)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.l2lb.layer2.plugins.module_utils import checks, render  # noqa: E402
from l2lb_agent import cli, controller  # noqa: E402


def env_of(settings: render.Settings, kind: str) -> dict[str, str]:
    obj = next(o for o in render.manifests(settings) if o["kind"] == kind)
    return {e["name"]: e.get("value") for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize(("qps", "want_qps", "want_burst"), [
    (None, "200", "400"), (50.0, "50", "100"), (2.5, "2.5", "5"), (0.1, "0.1", "1"),
], ids=["default", "50", "fraction", "floor"])
def test_rendered_controller_gets_qps_and_twice_as_burst(qps: float | None, want_qps: str, want_burst: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settings = render.Settings()
    if qps is not None:
        settings = dataclasses.replace(settings, controller_api_qps=qps)
    checks.validate(settings)
    env = env_of(settings, "Deployment")
    assert (env["L2LB_API_QPS"], env["L2LB_API_BURST"]) == (want_qps, want_burst)
    assert "L2LB_API_QPS" not in env_of(settings, "DaemonSet")
    monkeypatch.setenv("L2LB_API_QPS", env["L2LB_API_QPS"])
    monkeypatch.setenv("L2LB_API_BURST", env["L2LB_API_BURST"])
    args = cli.validate(cli.build_parser().parse_args(["controller"]))
    assert (args.api_qps, args.api_burst) == (float(want_qps), int(want_burst))


def test_agent_and_render_defaults_agree() -> None:
    assert render.Settings().controller_api_qps == controller.API_QPS
    assert 2 * controller.API_QPS == controller.API_BURST
    args = cli.validate(cli.build_parser().parse_args(["controller"]))
    assert (args.api_qps, args.api_burst) == (controller.API_QPS, controller.API_BURST)


@pytest.mark.parametrize("qps", [0.0, -1.0, 0.05, 1e6])
def test_bad_qps_is_refused_by_the_role_and_the_agent_naming_it(qps: float) -> None:
    with pytest.raises(checks.SettingsError, match="l2lb_controller_api_qps"):
        checks.validate(dataclasses.replace(render.Settings(), controller_api_qps=qps))
    with pytest.raises(cli.FlagError, match=r"--api-qps \(env L2LB_API_QPS\)"):
        cli.validate(cli.build_parser().parse_args(["controller", "--api-qps", str(qps)]))


@pytest.mark.parametrize("burst", ["0", "x", "100001"])
def test_bad_burst_is_refused_naming_flag_and_env(burst: str) -> None:
    with pytest.raises(cli.FlagError, match=r"--api-burst \(env L2LB_API_BURST\)"):
        cli.validate(cli.build_parser().parse_args(["controller", "--api-burst", burst]))
