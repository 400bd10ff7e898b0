"""`hybrid demo` end to end on a short scenario: embedded AWS, real deploy, real controller, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from toolkit.cli import run

SHORT = {
    "name": "short-demo",
    "description": "60 req/s, quick ramp, neuron 3x slower from minute 18.",
    "duration_minutes": 32,
    "seed": 5,
    "canary_start_minute": 2,
    "traffic": {"rps": 60},
    "config": {"canary": {"steps": [50, 100]},
               # neuron starts with what its autoscaling target keeps for 60 req/s (1,800/min each):
               # the ramp needs no scale-up and reaches 100% before the fault
               "variants": {"gpu": {"initial_count": 4}, "neuron": {"initial_count": 3, "min_count": 2}}},
    "faults": [{"minute": 18, "variant": "neuron", "kind": "latency", "magnitude": 3.0, "duration_minutes": 10}],
}


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(SHORT))
    return path


def _demo(args: list[str], capsys) -> tuple[int, dict]:
    code = run(["demo", "-c", "examples/hybrid.yaml", "--output", "json", *args])
    out = capsys.readouterr().out
    return code, (json.loads(out) if code == 0 else {})


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_embedded_aws(scenario_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    report = tmp_path / "out" / "demo.html"
    code, summary = _demo(["--scenario", str(scenario_file), "--report", str(report)], capsys)
    assert code == 0
    assert summary["mode"] == "embedded-aws"
    assert summary["scenario"] == "short-demo" and summary["minutes"] == 32
    assert summary["minutes_to_full_migration"] is not None  # the ramp reached 100 % before the fault
    assert summary["fault_onset_minute"] == 18
    assert summary["fallback_minute"] is not None and summary["fallback_minute"] > 18
    assert summary["minutes_to_fallback"] == summary["fallback_minute"] - 18
    assert summary["all_gpu_cost"] > 0 and "savings_vs_all_gpu" in summary
    assert summary["api_calls"]["metrics_reads"] >= 29  # one batched GetMetricData per tick
    assert report.exists() and report.with_suffix(".png").exists()
    text = report.read_text()
    assert "data:image/png;base64," in text and "fallback" in text


def test_demo_in_memory_with_seed_and_minutes(scenario_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    report = tmp_path / "plot.png"
    code, summary = _demo(["--scenario", str(scenario_file), "--in-memory", "--seed", "9", "--minutes", "12",
                           "--report", str(report)], capsys)
    assert code == 0
    assert (summary["seed"], summary["minutes"], summary["mode"]) == (9, 12, "in-memory")
    assert summary["fault_onset_minute"] is None and summary["fallback_minute"] is None  # stopped before the fault
    assert report.read_bytes().startswith(b"\x89PNG")


def test_demo_with_a_missing_scenario_is_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    code = run(["demo", "-c", "examples/hybrid.yaml", "--scenario", str(tmp_path / "nope.yaml")])
    captured = capsys.readouterr()
    assert code == 2
    assert "no such file and no built-in scenario" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
