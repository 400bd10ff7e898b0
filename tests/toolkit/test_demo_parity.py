"""`hybrid demo` with output parity and a new model version (issue 17): the report says what parity saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from toolkit.cli import run

NEW_MODEL = {
    "name": "short-new-model",
    "description": "60 req/s, quick ramp, a new neuron model at minute 36 while holding.",
    "duration_minutes": 75,
    "seed": 5,
    "canary_start_minute": 2,
    "traffic": {"rps": 60},
    "config": {"canary": {"steps": [50, 100]},
               "parity": {"comparator": "labels", "online": {"mirror_fraction": 0.05, "min_sample": 50}},
               "variants": {"gpu": {"initial_count": 4}, "neuron": {"initial_count": 2, "min_count": 2}}},
    "events": [{"minute": 36, "kind": "new_model", "variant": "neuron"}],  # holding, gpu at its floor
}


def _demo(args: list[str], capsys) -> tuple[int, dict]:
    code = run(["demo", "-c", "examples/hybrid.yaml", "--output", "json", *args])
    out = capsys.readouterr().out
    return code, (json.loads(out) if code == 0 else {})


def test_the_demo_report_shows_parity_and_the_wrong_answers(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    report = tmp_path / "demo.html"
    code, summary = _demo(["--scenario", "wrong-outputs", "--in-memory", "--report", str(report)], capsys)
    assert code == 0
    assert summary["wrong_answers"] > 0 and summary["parity"]["compared"] > 0
    text = report.read_text()
    assert "Output parity:" in text and "mirrored neuron answers agreed" in text
    assert "requests answered wrongly (truth)" in text


@pytest.mark.slow
def test_a_new_neuron_model_on_the_embedded_aws_is_judged_again_from_the_first_step(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    scenario = tmp_path / "new-model.yaml"
    scenario.write_text(yaml.safe_dump(NEW_MODEL))
    report = tmp_path / "demo.html"
    code, summary = _demo(["--scenario", str(scenario), "--report", str(report)], capsys)
    assert code == 0 and summary["mode"] == "embedded-aws"
    assert summary["parity"]["compared"] > 0 and summary["parity"]["agreement"] == 1.0
    text = report.read_text()
    assert "is unjudged: neuron" in text  # the capacity-aware drain to step 1, applied and reported
    assert summary["final_neuron_share"] == 100.0  # judged again and ramped back
