"""hybrid report without the embedded AWS server: records on disk, CloudWatch in moto, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from moto import mock_aws

from toolkit.cli import run

EXAMPLE = str(Path(__file__).resolve().parents[3] / "examples" / "hybrid.yaml")
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _live(neuron_share: float, neuron: int, gpu: int) -> dict:
    return {"status": "InService", "variants": {
        "neuron": {"share_percent": neuron_share, "current_instance_count": neuron},
        "gpu": {"share_percent": 100.0 - neuron_share, "current_instance_count": gpu}}}


def _records() -> list[dict]:
    out = []
    for m in range(1, 31):
        share = 0.0 if m < 3 else 50.0 if m < 6 else 100.0
        phase, action = ("ramping", "progress") if m in (3, 6) else ("holding" if m >= 6 else "idle", "hold")
        if 15 <= m < 20:
            share, phase, action = 0.0, "falling_back" if m < 17 else "cooling_down", "fallback" if m < 17 else "none"
        out.append({"time": (START + timedelta(minutes=m, seconds=5)).isoformat(), "command": "tick",
                    "phase": phase, "action": action, "reason": f"minute {m}",
                    "step": {"k": 1 if m < 6 else 2, "n": 2, "neuron_percent": 50.0 if m < 6 else 100.0},
                    "after": _live(share, 2, 4 if share < 100 else 1)})
    return out


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records()) + '{"torn": ')
    return path


def _cloudwatch() -> None:
    import boto3

    from toolkit.local import compat

    compat.apply()  # moto's GetMetricData has no percentiles of Values/Counts; the embedded AWS's patch adds them

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    data = []
    for m in range(30):
        for variant, value in (("neuron", 2400.0), ("gpu", 1200.0)):
            dims = [{"Name": "EndpointName", "Value": "bert-classifier"}, {"Name": "VariantName", "Value": variant}]
            ts = START + timedelta(minutes=m)
            data += [{"MetricName": "Invocations", "Dimensions": dims, "Timestamp": ts, "Value": value},
                     {"MetricName": "Invocation5XXErrors", "Dimensions": dims, "Timestamp": ts,
                      "Value": 7.0 if variant == "neuron" and m == 15 else 0.0},
                     {"MetricName": "ModelLatency", "Dimensions": dims, "Timestamp": ts, "Values": [60000.0, 90000.0],
                      "Counts": [99.0, 1.0], "Unit": "Microseconds"}]
    for first in range(0, len(data), 500):
        cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=data[first:first + 500])


def test_report_from_a_records_file_and_cloudwatch_writes_a_png_that_is_not_blank(records_file, tmp_path, capsys):
    out = tmp_path / "r.png"
    with mock_aws():
        _cloudwatch()
        code = run(["report", "-c", EXAMPLE, "--records", str(records_file), "--period", "60", "--out", str(out),
                    "--output", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["decisions"] == 30 and data["start"].startswith("2026-03-01T10:00")
    summary = data["summary"]
    assert summary["errors_5xx"] == 7 and summary["fallbacks"] == 1 and summary["fallback_minutes"] == pytest.approx(5)
    assert summary["requests"] == 30 * 3600
    # all-GPU: 3600 requests/min over the example's 900 target = 4 g5.xlarge each minute (toolkit.plan sizing)
    assert summary["all_gpu_cost"] == pytest.approx(30 * 4 * 1.408 / 60)
    assert summary["cost"] < summary["all_gpu_cost"] and summary["final_neuron_share"] == 100.0
    pixels = np.asarray(__import__("matplotlib.image", fromlist=["imread"]).imread(out))[:, :, :3]
    assert pixels.std() > 0.05


def test_report_in_text_prints_formatted_figures_and_the_verdict(records_file, tmp_path, capsys):
    with mock_aws():
        _cloudwatch()
        code = run(["report", "-c", EXAMPLE, "--records", str(records_file), "--period", "60",
                    "--out", str(tmp_path / "r.html")])
    out = capsys.readouterr().out
    assert code == 0
    assert "savings vs all-GPU" in out and "%" in out and "$" in out and "fallback" in out
    assert "savings_fraction" not in out and (tmp_path / "r.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--records", "a.jsonl", "--table", "t"], "not both"),
    (["--records", "missing.jsonl"], "no decision records at missing.jsonl"),
    (["--period", "120"], "use 60 or 300"),
])
def test_bad_report_options_are_one_line_and_exit_2(args, message, capsys):
    code = run(["report", "-c", EXAMPLE, *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_since_that_is_neither_a_time_nor_a_duration_is_bad_input(records_file, capsys):
    code = run(["report", "-c", EXAMPLE, "--records", str(records_file), "--since", "yesterday"])
    err = capsys.readouterr().err
    assert code == 2 and "--since 'yesterday'" in err
