"""The hostile-input corpus (tests/corpus/*.json): every entry is refused, naming its field and value.

configmaps.json: ConfigMap `config` texts for `config.load_config`. Each entry has `config` (the
text) or `generate` (head + repeat * times + tail, or `repeat_lines` indented one level more per
line, for inputs too big to keep literally), the expected `field` and words the message must hold.
Messages stay bounded whatever the input. Time and memory bounds are measured by
tests/bench/config_bench.py, not here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from l2lb_agent import config

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
