"""The hostile-input corpus (tests/corpus/*.json): every entry is refused, naming its field and value.

configmaps.json: ConfigMap `config` texts for `config.load_config`. Each entry has `config` (the
text) or `generate` (head + repeat * times + tail, or `repeat_lines` indented one level more per
line, for inputs too big to keep literally), the expected `field` and words the message must hold.
annotations.json: Services whose annotations / spec.loadBalancerIP the controller must refuse
(an AllocationFailed Event), with the failure reason and words. Messages stay bounded whatever
the input. Time and memory bounds are measured by
tests/bench/config_bench.py, not here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from l2lb_agent import allocator, cli, config, services

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def _cases(name: str) -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in json.loads((CORPUS / name).read_text())]


def config_text(case: dict[str, Any]) -> str:
    if "config" in case:
        return case["config"]
    gen = case["generate"]
    if "repeat_lines" in gen:
        body = "".join("  " * i + gen["repeat_lines"] + "\n" for i in range(gen["times"]))
    else:
        body = gen["repeat"] * gen["times"]
    return gen.get("head", "") + body + gen.get("tail", "")


def test_corpus_is_big_enough() -> None:
    assert len(json.loads((CORPUS / "configmaps.json").read_text())) >= 60


@pytest.mark.parametrize("case", _cases("configmaps.json"))
def test_bad_configmap_is_refused_by_name(case: dict[str, Any]) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load_config(config_text(case))
    message = str(info.value)
    assert info.value.field == case["field"], message
    for word in case["expect"]:
        assert word in message, f"{word!r} not in {message!r}"
    assert len(message) <= config.MAX_MESSAGE + 40


# -- Service annotations: request_for -> allocator; every entry fails with its reason, by value ---

POOLS = """
address-pools:
- name: default
  addresses: [192.168.1.240/28, 'fd00::/120']
- name: buggy
  addresses: [192.168.2.0/24]
  avoid-buggy-ips: true
"""


def service(case: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "web", "annotations": case.get("annotations", {})},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
                     **case.get("spec", {})}}


def test_annotation_corpus_is_big_enough() -> None:
    assert len(json.loads((CORPUS / "annotations.json").read_text())) >= 20


@pytest.mark.parametrize("case", _cases("annotations.json"))
def test_bad_annotation_fails_with_reason_and_value(case: dict[str, Any]) -> None:
    alloc = allocator.Allocator(config.load_config(POOLS))
    result = alloc.assign("default/web", services.request_for(service(case)))
    assert not result.ok and result.failure is not None
    message = result.failure.message
    assert result.failure.reason.value == case["reason"], message
    for word in case["expect"]:
        assert word in message, f"{word!r} not in {message!r}"
    assert len(message) <= 400
    assert len(alloc) == 0


# -- flags: each bad value is reported under its own flag name, with its env var and value -------

def test_flag_corpus_is_big_enough() -> None:
    assert len(json.loads((CORPUS / "flags.json").read_text())) >= 20


@pytest.mark.parametrize("case", _cases("flags.json"))
def test_bad_flag_is_named(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("L2LB_")]:
        monkeypatch.delenv(var)
    for var, value in case.get("env", {}).items():
        monkeypatch.setenv(var, value)
    with pytest.raises(cli.FlagError) as info:
        cli.validate(cli.build_parser().parse_args(case["argv"]))
    message = str(info.value)
    assert message.startswith(case["flag"] + " (env "), message
    for word in case["expect"]:
        assert word in message, f"{word!r} not in {message!r}"
    assert len(message) <= 400
