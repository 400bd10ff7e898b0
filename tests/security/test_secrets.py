"""No credentials or request payloads in logs, decision records, state or CLI output.

Ticks run through the real CLI against the embedded AWS with secret-looking credentials in the
environment and a token in the model environment; the client falls back with a marked payload.
Every byte the toolkit wrote or logged is then searched for the markers.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from routing.client import HybridClient
from tests.routing._aws import create_endpoint, feed_split
from toolkit.cli import run
from toolkit.local.server import patched_mock_aws

ACCESS_KEY = "AKIAQSECRETMARKER777"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/SECRETMARKERSECRETKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEBSESSIONMARKERtokenTOKENtoken"
HF_TOKEN = "hf_MODELENVSECRETMARKER0123456789"
PAYLOAD = "PAYLOADMARKER: the patient's private note"
MARKERS = ("SECRETMARKER", "SESSIONMARKER", "MODELENVSECRETMARKER", "PAYLOADMARKER", SECRET_KEY, SESSION_TOKEN)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _leaks(text: str) -> list[str]:
    return [m for m in MARKERS if m in text]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)  # everything the toolkit logs in production
    for name in ("routing", "toolkit", "cdk"):
        caplog.set_level(logging.DEBUG, logger=name)  # and its own debug lines
    return caplog


def test_ticks_with_secret_credentials_leave_no_secret_in_records_state_output_or_logs(
        tmp_path: Path, example_data: dict[str, Any], logs, capsys, monkeypatch):
    data = example_data
    data["canary"] = {"steps": [10, 50, 100], "min_bake_minutes": 1, "max_bake_minutes": 10, "min_sample": 50}
    data["state_dir"] = str(tmp_path / "state")
    data["variants"]["neuron"]["model"]["environment"]["HF_TOKEN"] = HF_TOKEN
    config = tmp_path / "hybrid.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    out: list[str] = []
    # monkeypatch.context(): restore the environment before patched_mock_aws restores its own.
    with patched_mock_aws(), monkeypatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        env.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
        sm = boto3.client("sagemaker", region_name="us-east-1")
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        create_endpoint(sm, data["name"])
        minute = T0

        def cli(*args: str, when: datetime) -> int:
            code = run([*args, "-c", str(config), "--output", "json", "--now", when.isoformat()])
            captured = capsys.readouterr()
            out.append(captured.out + captured.err)
            return code

        assert cli("canary", "start", when=minute + timedelta(seconds=5)) == 0
        for i in range(6):
            share = 10.0 if i else 0.0
            feed_split(cw, data["name"], minute, total=1200, neuron_share=share,
                       neuron_p99_ms=400.0 if i == 5 else 60.0)
            minute += timedelta(minutes=1)
            cli("route", "tick", when=minute + timedelta(seconds=10))
        cli("canary", "status", when=minute + timedelta(seconds=20))
        cli("route", "log", when=minute + timedelta(seconds=30))
        cli("validate", when=minute)
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file())
    records = [json.loads(line) for p in (tmp_path / "state").rglob("records.jsonl") for line in p.read_text().splitlines()]
    assert len(records) >= 7, "the run wrote fewer records than ticks: the search below would prove little"
    assert _leaks(written) == [], "secret in state or records"
    assert _leaks("".join(out)) == [], "secret in CLI output"
    assert _leaks(logs.text) == [], "secret in logs"
    assert ACCESS_KEY not in written + "".join(out) + logs.text


class _Runtime:
    """sagemaker-runtime stand-in: neuron fails with a ModelError, gpu serves."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        if params.get("TargetVariant") != "gpu":
            raise ClientError({"Error": {"Code": "ModelError", "Message": "neuron runtime failed"},
                               "ResponseMetadata": {"HTTPStatusCode": 424}}, "InvokeEndpoint")
        return {"Body": b"{}", "InvokedProductionVariant": "gpu"}


def test_client_fallbacks_never_log_or_count_the_payload(logs):
    runtime = _Runtime()
    client = HybridClient("bert-classifier", runtime_client=runtime, region="us-east-1")
    for _ in range(8):  # enough failures to open the breaker, too
        client.invoke({"inputs": PAYLOAD})
    assert any(PAYLOAD in json.dumps(c["Body"].decode()) for c in runtime.calls)  # the marker was really sent
    assert _leaks(logs.text) == []
    assert _leaks(json.dumps(client.snapshot(), default=str)) == []
