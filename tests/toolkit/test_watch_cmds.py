"""hybrid canary wait / canary status --watch, with the in-account controller (the Lambda handler) ticking.

The embedded AWS holds the endpoint, CloudWatch and the controller's DynamoDB table; the config
enables the in-account controller, so the CLI reads the table the Lambda writes. `canary wait`
sleeps through `watch_cmds._sleep`, which the tests replace by "one minute of traffic, then one
scheduled Lambda tick": the pipeline gate is exercised against the real handler, without real time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from routing import lambda_handler
from routing.clock import ManualClock
from routing.dynamo_state import create_table
from tests.routing._aws import create_endpoint, feed_split
from toolkit.cli import run
from toolkit.commands import watch_cmds
from toolkit.commands.watch_cmds import parse_duration
from toolkit.config import load_config
from toolkit.errors import UserError
from toolkit.local.server import patched_mock_aws

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TABLE = "bert-routing"
TOTAL = 1200


class Pipeline:
    """The endpoint, the table and the scheduled Lambda; `sleep` is one minute of the world."""

    def __init__(self, path: Any, sm: Any, cw: Any, ddb: Any) -> None:
        self.path = str(path)
        self.config = load_config(path)
        self.sm, self.cw, self.ddb = sm, cw, ddb
        self.name = self.config.name
        self.minute = T0
        self.clock = ManualClock(T0 + timedelta(seconds=5))
        self.elapsed = 0.0  # what the waiting command's monotonic clock reads
        self.neuron_p99_ms = 60.0
        self.lambda_ticks = 0
        self.ticking = True

    def share(self) -> float:
        variants = {v["VariantName"]: v for v in self.sm.describe_endpoint(EndpointName=self.name)["ProductionVariants"]}
        return 100.0 * variants["neuron"]["DesiredWeight"] / sum(v["DesiredWeight"] for v in variants.values())

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds
        feed_split(self.cw, self.name, self.minute, total=TOTAL, neuron_share=self.share(),
                   neuron_p99_ms=self.neuron_p99_ms)
        self.minute += timedelta(minutes=1)
        self.clock.set(self.minute + timedelta(seconds=10))
        if self.ticking:  # the EventBridge schedule: one Lambda tick per minute
            lambda_handler.handle({"endpoint": self.name}, config=self.config, table=TABLE, clock=self.clock,
                                  owner="lambda")
            self.lambda_ticks += 1

    def hybrid(self, *args: str, capsys: Any) -> tuple[int, Any, str]:
        capsys.readouterr()
        code = run([*args, "-c", self.path, "--output", "json"])
        captured = capsys.readouterr()
        out = captured.out.strip()
        if out.startswith("{") and "\n{" not in out:
            return code, json.loads(out), captured.err
        return code, [json.loads(line) for line in out.splitlines() if line.strip()], captured.err


@pytest.fixture
def pipeline(example_data, write_config, monkeypatch):
    data = example_data
    data["canary"] = {"steps": [10, 50, 100], "min_bake_minutes": 1, "max_bake_minutes": 10, "min_sample": 50}
    data["controller"] = {"enabled": True, "table_name": TABLE}
    path = write_config(data)
    lambda_handler.reset_warm()
    with patched_mock_aws():
        sm = boto3.client("sagemaker", region_name="us-east-1")
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_endpoint(sm, load_config(path).name, neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
        create_table(ddb, TABLE)
        world = Pipeline(path, sm, cw, ddb)
        monkeypatch.setattr(watch_cmds, "_sleep", world.sleep)
        monkeypatch.setattr(watch_cmds, "_monotonic", lambda: world.elapsed)
        monkeypatch.setenv("HYBRID_NOW", world.clock.now().isoformat())  # the CLI's commands at the world's time
        yield world
    lambda_handler.reset_warm()


def test_a_pipeline_gates_on_canary_wait_while_the_lambda_ramps_to_holding(pipeline, capsys):
    code, record, _ = pipeline.hybrid("canary", "start", capsys=capsys)
    assert code == 0 and record["phase"] == "ramping"

    code, outcome, err = pipeline.hybrid("canary", "wait", "--timeout", "30m", "--interval", "60", capsys=capsys)

    assert code == 0, err
    assert outcome["outcome"] == "holding" and outcome["phase"] == "holding" and outcome["exit_code"] == 0
    assert pipeline.share() == 100.0 and pipeline.lambda_ticks >= 3  # the Lambda did the ramp, not the CLI
    progress = err.splitlines()
    assert any("progress" in line and "neuron 10.0%" in line for line in progress)
    assert any("neuron 100.0%" in line for line in progress)  # each step reported on stderr as it happened


def test_canary_wait_exits_1_when_the_controller_falls_back(pipeline, capsys):
    assert pipeline.hybrid("canary", "start", capsys=capsys)[0] == 0
    pipeline.neuron_p99_ms = 400.0  # a regression against the 150 ms SLO from the first minute on neuron

    code, outcome, err = pipeline.hybrid("canary", "wait", "--timeout", "1h", "--interval", "60", capsys=capsys)

    assert code == 1 and outcome["outcome"] == "fell_back"
    assert "latency" in outcome["reason"] or "p99" in outcome["reason"]
    assert pipeline.share() == 0.0 and "fallback" in err


def test_canary_wait_exits_4_when_nothing_decides_before_the_timeout(pipeline, capsys):
    assert pipeline.hybrid("canary", "start", capsys=capsys)[0] == 0
    pipeline.ticking = False  # the schedule is disabled: the state never moves

    code, outcome, _ = pipeline.hybrid("canary", "wait", "--timeout", "5m", "--interval", "60", capsys=capsys)

    assert code == 4 and outcome["outcome"] == "timed_out" and outcome["phase"] == "ramping"
    assert outcome["waited_seconds"] >= 300


def test_canary_wait_exits_1_after_an_abort_and_2_when_no_canary_was_started(pipeline, capsys):
    code, outcome, err = pipeline.hybrid("canary", "wait", "--timeout", "5m", capsys=capsys)
    assert code == 2 and "canary start" in err
    assert pipeline.lambda_ticks == 0  # refused before waiting

    assert pipeline.hybrid("canary", "start", capsys=capsys)[0] == 0
    pipeline.hybrid("canary", "abort", capsys=capsys)
    code, outcome, _ = pipeline.hybrid("canary", "wait", "--timeout", "5m", capsys=capsys)
    assert code == 1 and outcome["outcome"] == "aborted"


def test_canary_wait_refuses_a_timeout_that_is_not_a_duration(pipeline, capsys):
    code, _, err = pipeline.hybrid("canary", "wait", "--timeout", "soon", capsys=capsys)
    assert code == 2 and "30m" in err


def test_status_watch_shows_phase_weights_each_gate_with_numbers_and_recent_reasons(pipeline, capsys):
    assert pipeline.hybrid("canary", "start", capsys=capsys)[0] == 0
    pipeline.sleep(60)  # one Lambda tick: step 1

    code, frames, _ = pipeline.hybrid("canary", "status", "--watch", "--count", "2", "--interval", "60",
                                      capsys=capsys)

    assert code == 0 and len(frames) == 2  # one JSON object per refresh
    first, second = frames
    assert first["phase"] == "ramping" and first["weights"]["neuron"] == 10.0
    assert second["step"]["k"] >= first["step"]["k"]  # the Lambda ticked between the two refreshes
    gates = {g["name"]: g for g in second["last_judgement"]["gates"]}
    assert {"latency_slo", "errors", "cost"} <= set(gates)
    assert all("threshold" in g and "value" in g for g in gates.values())
    assert [r["command"] for r in first["recent"]][:1] == ["start"] and first["recent"][-1]["reason"]

    capsys.readouterr()
    assert run(["canary", "status", "-c", pipeline.path, "--watch", "--count", "1"]) == 0
    text = capsys.readouterr().out
    for part in ("ramping", "gates (last judgement)", "latency_slo", "recent decisions", "neuron"):
        assert part in text


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200),
                                               ("1h30m", 5400), ("1h30m15s", 5415), ("0.5m", 30)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30 minutes", "-5", "m"])
def test_bad_durations_are_bad_input(text):
    with pytest.raises(UserError):
        parse_duration(text)


def test_canary_wait_exits_3_when_the_controller_reports_the_endpoint_stuck(pipeline, capsys):
    from moto.sagemaker.models import sagemaker_backends

    assert pipeline.hybrid("canary", "start", capsys=capsys)[0] == 0
    pipeline.sleep(60)  # step 1 applied
    for account in sagemaker_backends.values():
        for backend in account.values():
            if pipeline.name in backend.endpoints:
                backend.endpoints[pipeline.name].endpoint_status = "UpdateRollbackFailed"

    code, outcome, err = pipeline.hybrid("canary", "wait", "--timeout", "1h", "--interval", "60", capsys=capsys)

    assert code == 3 and outcome["outcome"] == "stuck" and "UpdateRollbackFailed" in outcome["reason"]
    assert pipeline.lambda_ticks == 2  # it stopped at the first stuck record, not at the timeout
    assert "hybrid deploy" in err
