"""`hybrid report` on a rollout recorded on the embedded AWS: records + CloudWatch into an HTML and a PNG."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from toolkit.cli import run
from toolkit.local.server import EmbeddedAws

pytestmark = pytest.mark.slow

# A short rollout (55 min: the controller judges a minute 60 s after it closes): ramp to 100 % neuron, a neuron latency fault at minute 18 (the fallback), recovery.
SCENARIO = {
    "duration_minutes": 55, "canary_start_minute": 2, "traffic": {"rps": 60},
    "config": {"canary": {"steps": [50, 100]}, "fallback": {"cooldown_minutes": 5},
               "execution_role_arn": "arn:aws:iam::123456789012:role/demo",
               "variants": {"gpu": {"initial_count": 4}, "neuron": {"initial_count": 2, "min_count": 2}}},
    "faults": [{"minute": 18, "variant": "neuron", "kind": "latency", "magnitude": 3.0, "duration_minutes": 6}],
}
FALLBACK_TINT = np.array([252, 235, 236])  # FALLBACK_SHADE at alpha 0.10 over white


@pytest.fixture(scope="module")
def rollout(tmp_path_factory):
    """Deploy, run the real controller against the embedded AWS for 55 minutes (the controller judges minutes 60 s after they close, as deployed); yield while the AWS is up."""
    from toolkit.config import load_config
    from toolkit.sim.demo import deploy_and_control
    from toolkit.sim.runner import run as run_sim
    from toolkit.sim.scenario import parse_scenario, resolve

    root = tmp_path_factory.mktemp("rollout")
    example = load_config(Path(__file__).resolve().parents[3] / "examples" / "hybrid.yaml")
    setup = resolve(parse_scenario({"name": "rollout", "seed": 3, **SCENARIO}), example)
    config_path = root / "hybrid.yaml"
    config_path.write_text(yaml.safe_dump(setup.config.model_dump(mode="json", exclude_none=True)))
    state_dir = root / "state"
    with EmbeddedAws(setup.config.region) as aws:
        simulator, controller = deploy_and_control(setup, aws, state_dir, settle_seconds=0)
        result = run_sim(setup, simulator, controller)
        yield {"aws": aws, "config": config_path, "state_dir": state_dir, "result": result, "root": root}


def _report(rollout, capsys, *args: str) -> dict:
    code = run(["report", "-c", str(rollout["config"]), "--endpoint-url", rollout["aws"].endpoint_url,
                "--period", "60", "--output", "json", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    return (matplotlib.image.imread(path)[:, :, :3] * 255).round().astype(int)


def test_report_of_a_recorded_rollout_shows_the_migration_the_fallback_and_the_costs(rollout, capsys):
    out = rollout["root"] / "out" / "rollout.html"
    data = _report(rollout, capsys, "--state-dir", str(rollout["state_dir"]), "--out", str(out))
    summary = data["summary"]
    assert summary["minutes"] >= 38
    assert summary["final_neuron_share"] == pytest.approx(100.0)  # migrated again after the fallback
    assert summary["fallbacks"] == 1 and summary["fallback_minutes"] >= 5  # one episode, with its duration
    assert summary["requests"] > 60 * 60 * 30  # CloudWatch traffic was read
    assert summary["all_gpu_cost"] > 0 and summary["cost"] > 0 and summary["savings_fraction"] is not None
    assert summary["cost_per_1k"]["neuron"] is not None and summary["cost_per_1k"]["gpu"] is not None
    assert summary["worst_p99_ms"]["neuron"] > 150  # the fault shows in the CloudWatch p99
    html = out.read_text()
    assert "data:image/png;base64," in html
    assert "savings_vs_all_gpu" not in html and "savings vs all-GPU" in html
    assert html.count("<tr class='fallback'>") == 1  # many fallback ticks, one row
    assert "p99 SLO</th><td>150 ms" in html and "price source" in html
    png = _pixels(out.with_suffix(".png"))
    assert png.std() > 20  # not blank
    tinted = np.all(np.abs(png - FALLBACK_TINT) <= 3, axis=2).sum()
    assert tinted > 2000  # the fallback episode is shaded across the panels
    neuron = np.all(np.abs(png - np.array([42, 157, 143])) <= 8, axis=2).sum()
    assert neuron > 500  # the neuron share / traffic / cost lines are drawn


def test_report_reads_the_controller_table_like_the_records_file(rollout, capsys):
    from routing.dynamo_state import DynamoStateStore, create_table

    aws = rollout["aws"]
    client = aws.client("dynamodb")
    create_table(client, "rollout-routing")
    records = (rollout["state_dir"] / "bert-classifier" / "records.jsonl").read_text().splitlines()
    store = DynamoStateStore("rollout-routing", "bert-classifier", client=client, release_after_record=False)
    for line in records:
        store.append_record(json.loads(line))
    from_file = _report(rollout, capsys, "--state-dir", str(rollout["state_dir"]),
                        "--out", str(rollout["root"] / "file.png"))
    from_table = _report(rollout, capsys, "--table", "rollout-routing", "--out", str(rollout["root"] / "table.png"))
    assert from_table["decisions"] == from_file["decisions"] == len(records)
    assert from_table["summary"] == from_file["summary"]
    assert from_table["records"] == "DynamoDB table rollout-routing"


def test_report_since_a_time_after_every_record_is_bad_input(rollout, capsys):
    code = run(["report", "-c", str(rollout["config"]), "--state-dir", str(rollout["state_dir"]),
                "--since", "2030-01-01T00:00:00Z", "--endpoint-url", rollout["aws"].endpoint_url])
    err = capsys.readouterr().err
    assert code == 2 and "no decision records" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no chromium binary on PATH (apt-get install chromium): the PNG test above covers the plot")
def test_report_html_renders_in_a_headless_browser_and_is_not_blank(rollout, capsys, tmp_path):
    out = tmp_path / "rollout.html"
    _report(rollout, capsys, "--state-dir", str(rollout["state_dir"]), "--out", str(out))
    shot = tmp_path / "shot.png"
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,4000", out.as_uri()], check=True, capture_output=True, timeout=120)
    pixels = _pixels(shot)
    assert pixels.shape[0] >= 4000 and pixels.std() > 20  # the page drew text, tables and the embedded plot
    row = np.all(pixels == np.array([253, 236, 234]), axis=2).sum()
    assert row > 1000  # the fallback episode's row (background #fdecea) is on screen, below the plot
