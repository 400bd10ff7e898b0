"""The issue's "Done when", end to end through the CLI against the embedded AWS (patched moto).

`hybrid canary start`, then `hybrid route tick` once per simulated minute while the test feeds
CloudWatch what SageMaker would publish for the live split: neuron ramps through its steps; a
fed latency regression returns 100% of weighted traffic to gpu within one tick with exit 1 and
a record naming the failed gate and its numbers; `hybrid canary status --output json` shows the
phase, the weights and the last judgement. The clock is pinned with --now (env HYBRID_NOW).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from tests.routing._aws import cli_endpoint, create_endpoint, feed_split
from toolkit.cli import run
from toolkit.local.server import patched_mock_aws

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TOTAL_PER_MINUTE = 1200  # 20 req/s


@pytest.fixture
def setup(tmp_path, example_data, write_config):
    with cli_endpoint(tmp_path, example_data, write_config, neuron_weight=0.0, gpu_weight=100.0,
                      neuron_count=1, gpu_count=2) as world:
        yield {**world, "cw": boto3.client("cloudwatch", region_name="us-east-1")}


def _cli(capsys, *args: str, now: datetime | None = None) -> tuple[int, object]:
    capsys.readouterr()
    code = run([*args, "--output", "json", *(["--now", now.isoformat()] if now else [])])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else None)


def _neuron_share(sm, name: str) -> float:
    variants = {v["VariantName"]: v for v in sm.describe_endpoint(EndpointName=name)["ProductionVariants"]}
    total = sum(v["CurrentWeight"] for v in variants.values())
    return 100.0 * variants["neuron"]["CurrentWeight"] / total


def test_canary_ramps_then_a_regression_falls_back_in_one_tick_and_status_shows_it(setup, capsys):
    cfg, name, sm, cw = setup["config"], setup["name"], setup["sm"], setup["cw"]
    minute = T0
    code, record = _cli(capsys, "canary", "start", "-c", cfg, now=minute + timedelta(seconds=5))
    assert code == 0 and record["phase"] == "ramping"

    shares: list[float] = []
    for _ in range(30):
        feed_split(cw, name, minute, total=TOTAL_PER_MINUTE, neuron_share=_neuron_share(sm, name))
        minute += timedelta(minutes=1)
        code, record = _cli(capsys, "route", "tick", "-c", cfg, "--settle-seconds", "0", now=minute + timedelta(seconds=10))
        assert code == 0, record["reason"]
        share = _neuron_share(sm, name)
        if not shares or shares[-1] != share:
            shares.append(share)
        if record["phase"] == "holding":
            break
    assert shares == [10.0, 50.0, 100.0]  # every step, in order, none skipped (the first tick takes step 1)
    assert record["phase"] == "holding"

    # A latency regression on neuron: p99 400 ms against the 150 ms SLO, two minutes (the noise rule).
    for _ in range(2):
        feed_split(cw, name, minute, total=TOTAL_PER_MINUTE, neuron_share=100.0, neuron_p99_ms=400.0)
        minute += timedelta(minutes=1)
    code, record = _cli(capsys, "route", "tick", "-c", cfg, "--settle-seconds", "0", now=minute + timedelta(seconds=10))
    assert code == 1
    assert record["action"] == "fallback"
    assert _neuron_share(sm, name) == 0.0  # 100% of weighted traffic on gpu, in this one tick
    assert "latency_slo" in record["failed_gates"]
    slo = next(g for g in record["gates"] if g["name"] == "latency_slo")
    assert slo["passed"] is False and slo["threshold"] == 150.0 and slo["value"] > 150.0
    assert record["after"]["variants"]["gpu"]["desired_weight"] == 100.0

    code, status = _cli(capsys, "canary", "status", "-c", cfg, now=minute + timedelta(seconds=20))
    assert code == 0
    assert status["phase"] == "falling_back"
    assert status["weights"] == {"neuron": 0.0, "gpu": 100.0}
    assert status["last_judgement"]["action"] == "fallback"
    assert "latency_slo" in status["last_judgement"]["failed_gates"]
    assert status["counts"]["gpu"] >= 1

    # The next tick only cools down; the fallback's numbers stay visible as the last change.
    feed_split(cw, name, minute, total=TOTAL_PER_MINUTE, neuron_share=0.0)
    minute += timedelta(minutes=1)
    code, record = _cli(capsys, "route", "tick", "-c", cfg, "--settle-seconds", "0", now=minute + timedelta(seconds=10))
    assert record["phase"] == "cooling_down" and _neuron_share(sm, name) == 0.0
    code, status = _cli(capsys, "canary", "status", "-c", cfg, now=minute + timedelta(seconds=20))
    assert status["last_judgement"]["phase"] == "cooling_down"
    assert status["last_change"]["action"] == "fallback"
    assert "latency_slo" in status["last_change"]["failed_gates"]

    code, log = _cli(capsys, "route", "log", "-c", cfg)
    assert code == 0 and log[0]["command"] == "start"
    assert [r["action"] for r in log[-2:]] == ["fallback", "none"]


def test_route_run_loops_until_holding_and_dry_run_changes_nothing(setup, capsys):
    cfg, name, sm, cw = setup["config"], setup["name"], setup["sm"], setup["cw"]
    assert _cli(capsys, "canary", "start", "-c", cfg, now=T0)[0] == 0
    # Traffic for the whole simulated hour up front: each tick judges the minutes that closed before it.
    for i in range(60):
        feed_split(cw, name, T0 + timedelta(minutes=i), total=TOTAL_PER_MINUTE, neuron_share=10.0)
    code, record = _cli(capsys, "route", "tick", "-c", cfg, "--dry-run", now=T0 + timedelta(minutes=1))
    assert code == 0 and record["dry_run"] is True and record["applied"] is False
    assert record["target"]["weights"]["neuron"] == 10.0
    assert _neuron_share(sm, name) == 0.0  # the dry run decided step 1 but never sent it
    capsys.readouterr()
    code = run(["route", "run", "-c", cfg, "--interval", "60", "--max-ticks", "3", "--output", "json",
                "--now", (T0 + timedelta(minutes=1)).isoformat()])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["command"] == "tick" for line in lines)
    assert _neuron_share(sm, name) > 0.0


def test_missing_endpoint_is_exit_2_with_one_line_naming_it(tmp_path, example_data, write_config, capsys):
    example_data["state_dir"] = str(tmp_path / "state")
    path = write_config(example_data)
    with patched_mock_aws():
        code = run(["route", "tick", "-c", str(path), "--output", "json"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "bert-classifier" in err and "does not exist" in err


def test_missing_variant_is_exit_2_naming_it(tmp_path, example_data, write_config, capsys):
    example_data["state_dir"] = str(tmp_path / "state")
    path = write_config(example_data)
    with patched_mock_aws():
        create_endpoint(boto3.client("sagemaker", region_name="us-east-1"), example_data["name"], variants=("gpu",))
        code = run(["canary", "start", "-c", str(path)])
    assert code == 2 and "no production variant named neuron" in capsys.readouterr().err


def test_region_other_than_the_configs_is_exit_2(setup, capsys):
    code = run(["route", "tick", "-c", setup["config"], "--region", "eu-west-1"])
    assert code == 2 and "us-east-1" in capsys.readouterr().err


def test_invalid_transition_is_exit_2_and_changes_nothing(setup, capsys):
    code = run(["canary", "resume", "-c", setup["config"]])
    assert code == 2 and "cannot resume" in capsys.readouterr().err
    assert _neuron_share(setup["sm"], setup["name"]) == 0.0


def test_cli_reaches_the_embedded_aws_server_through_endpoint_url_and_renders_for_people(
        tmp_path, example_data, write_config, capsys, monkeypatch):
    from toolkit.local.server import embedded_aws

    # A new user has no AWS credentials at all: the embedded AWS must still work.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    example_data["state_dir"] = str(tmp_path / "state")
    path = str(write_config(example_data))
    with embedded_aws() as aws:
        create_endpoint(aws.client("sagemaker"), example_data["name"])
        url = ["--endpoint-url", aws.endpoint_url]
        assert run(["canary", "start", "-c", path, *url]) == 0
        assert run(["route", "tick", "-c", path, *url]) == 0
        assert run(["status", "-c", path, *url]) == 0
        assert run(["route", "log", "-c", path]) == 0
    out = capsys.readouterr().out
    assert "canary started" in out and "neuron" in out and "ramping" in out


def test_config_for_another_account_is_exit_2(tmp_path, example_data, write_config, capsys):
    example_data["state_dir"] = str(tmp_path / "state")
    example_data["account"] = "111111111111"
    path = write_config(example_data)
    with patched_mock_aws():
        create_endpoint(boto3.client("sagemaker", region_name="us-east-1"), example_data["name"])
        code = run(["canary", "start", "-c", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "111111111111" in err and "123456789012" in err


def test_route_run_outlives_a_transient_aws_error_but_not_a_persistent_one(setup, capsys, monkeypatch):
    from routing.router import SageMakerRouter
    from toolkit.errors import AwsError

    real = SageMakerRouter.describe
    failing = {"left": 1}

    def flaky(self):
        if failing["left"] > 0:
            failing["left"] -= 1
            raise AwsError("DescribeEndpoint: ThrottlingException: Rate exceeded")
        return real(self)

    monkeypatch.setattr(SageMakerRouter, "describe", flaky)
    args = ["route", "run", "-c", setup["config"], "--max-ticks", "2", "--output", "json", "--now", T0.isoformat()]
    assert run(args) == 0
    assert "tick failed (1/3)" in capsys.readouterr().err

    failing["left"] = 99
    assert run(args) == 3
    assert "Rate exceeded" in capsys.readouterr().err


def test_canary_start_dry_run_records_but_leaves_the_canary_idle(setup, capsys):
    code, record = _cli(capsys, "canary", "start", "-c", setup["config"], "--dry-run", now=T0)
    assert code == 0 and record["dry_run"] is True and record["phase"] == "ramping"
    code, status = _cli(capsys, "canary", "status", "-c", setup["config"], now=T0)
    assert status["phase"] == "idle" and status["last_judgement"]["dry_run"] is True


def test_cli_drives_the_in_account_controllers_table_under_its_lease(setup, capsys, monkeypatch, tmp_path):
    from routing.dynamo_state import DynamoStateStore, create_table

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    create_table(ddb, "routing-table")
    monkeypatch.setenv("HYBRID_TABLE", "routing-table")
    cfg, name, sm = setup["config"], setup["name"], setup["sm"]

    assert _cli(capsys, "canary", "start", "-c", cfg, now=T0)[0] == 0
    code, record = _cli(capsys, "route", "tick", "-c", cfg, now=T0 + timedelta(minutes=1, seconds=10))
    assert code == 0 and record["applied"] is True and _neuron_share(sm, name) == 10.0
    assert not (tmp_path / "state").exists()  # nothing went to the local files
    code, status = _cli(capsys, "canary", "status", "-c", cfg, now=T0 + timedelta(minutes=2))
    assert status["phase"] == "ramping" and status["last_judgement"]["applied"] is True
    code, log = _cli(capsys, "route", "log", "-c", cfg)
    assert [r["command"] for r in log] == ["start", "tick"]

    # Another controller (the Lambda) holds the lease: a tick stands aside, a command refuses.
    other = DynamoStateStore("routing-table", name, client=ddb, owner="lambda-request-1")
    assert other.acquire()
    code, record = _cli(capsys, "route", "tick", "-c", cfg)
    assert code == 0 and record["stood_aside"] is True and "lambda-request-1" in record["reason"]
    capsys.readouterr()
    assert run(["canary", "pause", "-c", cfg]) == 3
    assert "lambda-request-1" in capsys.readouterr().err
    other.release()
    assert run(["canary", "pause", "-c", cfg]) == 0


def test_route_tick_waits_60_seconds_for_a_minute_to_settle_by_default_like_the_lambda(setup, capsys, monkeypatch):
    monkeypatch.delenv("HYBRID_SETTLE_SECONDS", raising=False)
    cfg = setup["config"]
    now = T0 + timedelta(minutes=5, seconds=10)
    code, record = _cli(capsys, "route", "tick", "-c", cfg, "--dry-run", now=now)
    assert code == 0
    # 10:05:10 - 60 s = 10:04:10: the minute 10:04 may still be aggregating, so the window ends at 10:04.
    assert record["metrics"]["window_end"] == (T0 + timedelta(minutes=4)).isoformat()
    code, record = _cli(capsys, "route", "tick", "-c", cfg, "--dry-run", "--settle-seconds", "0", now=now)
    assert record["metrics"]["window_end"] == (T0 + timedelta(minutes=5)).isoformat()
