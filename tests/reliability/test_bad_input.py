"""Bad input: one line naming what to fix, exit 2, no traceback, nothing changed.

Every case runs the real CLI (toolkit.cli.run) the way a user or a pipeline would. "Nothing
changed" is checked on disk (every file under the test's directory, byte for byte) and, where an
endpoint exists, on the endpoint (its weights and counts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.reliability.conftest import REGION, reliability_data
from tests.routing._aws import create_endpoint
from toolkit.cli import run
from toolkit.local.server import patched_mock_aws


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_clear_line(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr()
    text = (out.err + out.out).strip()
    assert "Traceback" not in text, text
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    return lines[0]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value

    return mutate


_DELETE = object()

# (id, change to the example config or raw file text, what the message must name)
CONFIG_CASES: list[tuple[str, Any, str]] = [
    ("malformed-yaml", "name: bert\nvariants: [neuron: {\n", "yaml"),
    ("not-a-mapping", "- just\n- a list\n", "mapping"),
    ("empty-file", "", "mapping"),
    ("unknown-top-level-key", _set("nmae", "x"), "nmae"),
    ("unknown-nested-key", _set("slo.p99_latency", 100), "p99_latency"),
    ("wrong-type-int", _set("canary.min_sample", "lots"), "min_sample"),
    ("wrong-type-count", _set("variants.gpu.initial_count", 1.5), "initial_count"),
    ("weight-above-100", _set("initial_weights", {"neuron": 150, "gpu": 0}), "initial_weights"),
    ("weight-negative", _set("initial_weights", {"neuron": -5, "gpu": 100}), "initial_weights"),
    ("weights-all-zero", _set("initial_weights", {"neuron": 0, "gpu": 0}), "initial_weights"),
    ("unknown-instance-type", _set("variants.gpu.instance_type", "ml.zz9.xlarge"), "instance_type"),
    ("not-an-instance-type", _set("variants.gpu.instance_type", "g5.xlarge"), "instance_type"),
    ("gpu-variant-on-inferentia", _set("variants.gpu.instance_type", "ml.inf2.xlarge"), "gpu"),
    ("neuron-variant-on-gpu-hardware", _set("variants.neuron.instance_type", "ml.g5.xlarge"), "neuron"),
    ("min-count-above-max", _set("variants.gpu.min_count", 9), "gpu"),
    ("p99-zero", _set("slo.p99_latency_ms", 0), "p99_latency_ms"),
    ("p99-negative", _set("slo.p99_latency_ms", -1), "p99_latency_ms"),
    ("error-rate-one", _set("slo.max_error_rate", 1.0), "max_error_rate"),
    ("error-rate-above-one", _set("slo.max_error_rate", 5), "max_error_rate"),
    ("canary-step-above-100", _set("canary", {"steps": [10, 200]}), "steps"),
    ("canary-steps-decreasing", _set("canary", {"steps": [50, 10, 100]}), "steps"),
    ("missing-artifact", _set("variants.neuron.model.artifact", _DELETE), "artifact"),
    ("artifact-not-s3", _set("variants.gpu.model.artifact", "/tmp/model.tar.gz"), "artifact"),
    ("unknown-region", _set("region", "moon-north-1"), "region"),
    ("bad-account-id", _set("account", "12345"), "account"),
]


@pytest.mark.bad_input("config")
@pytest.mark.parametrize("change, names", [pytest.param(c, n, id=i) for i, c, n in CONFIG_CASES])
@pytest.mark.parametrize("command", [["validate"], ["route", "tick"]], ids=["validate", "route-tick"])
def test_a_bad_config_gets_one_line_naming_the_field_exit_2_and_nothing_changes(
        tmp_path, example_data, change, names, command, capsys):
    data = reliability_data(example_data, tmp_path / "state")
    path = tmp_path / "hybrid.yaml"
    if isinstance(change, str):
        path.write_text(change)
    else:
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = run([*command, "-c", str(path)])
    line = _one_clear_line(capsys)
    assert code == 2, line
    assert names.lower() in line.lower(), f"message does not name {names!r}: {line}"
    assert _snapshot(tmp_path) == before


@pytest.mark.bad_input("missing config file")
def test_a_missing_config_file_is_named(tmp_path, capsys):
    code = run(["validate", "-c", str(tmp_path / "nope.yaml")])
    line = _one_clear_line(capsys)
    assert code == 2 and "nope.yaml" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.bad_input("CLI usage")
@pytest.mark.parametrize("argv, names", [
    (["route", "tick", "--bogus"], "--bogus"),
    (["rout", "tick"], "rout"),
    (["route", "tick", "--output", "yaml"], "output"),
    (["route", "tick", "--now", "yesterday"], "now"),
    (["canary", "sideways"], "sideways"),
], ids=["unknown-flag", "unknown-command", "bad-output-choice", "bad-now", "unknown-subcommand"])
def test_cli_usage_mistakes_get_one_line_and_exit_2(tmp_path, example_data, argv, names, capsys):
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(reliability_data(example_data, tmp_path / "state")))
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = run([*argv, "-c", str(path)])
    line = _one_clear_line(capsys)
    assert code == 2, line
    assert names in line, line
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# Mistakes only the live account can reveal (the embedded AWS stands in for it)


@pytest.fixture
def aws(tmp_path, example_data):
    data = reliability_data(example_data, tmp_path / "state")
    with patched_mock_aws():
        yield data, boto3.client("sagemaker", region_name=REGION)


def _endpoint_view(sm: Any, name: str) -> Any:
    try:
        return sm.describe_endpoint(EndpointName=name)["ProductionVariants"]
    except sm.exceptions.ClientError:
        return None


def _refused(tmp_path: Path, data: dict[str, Any], capsys, command: list[str], *extra: str) -> tuple[int, str]:
    """Write the config, run `command`, and return (exit code, its one clear line); nothing written."""
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = run([*command, "-c", str(path), *extra])
    line = _one_clear_line(capsys)
    assert _snapshot(tmp_path) == before, f"a refused {' '.join(command)} wrote files"
    return code, line


def _route(tmp_path: Path, data: dict[str, Any], capsys, *extra: str) -> tuple[int, str]:
    return _refused(tmp_path, data, capsys, ["route", "tick"], *extra)


@pytest.mark.bad_input("endpoint does not exist")
@pytest.mark.parametrize("command", [["route", "tick"], ["canary", "start"], ["canary", "status"]],
                         ids=["tick", "start", "status"])
def test_an_endpoint_that_does_not_exist_is_named(tmp_path, aws, capsys, command):
    data, _ = aws
    code, line = _refused(tmp_path, data, capsys, command)
    assert code == 2 and data["name"] in line and "does not exist" in line, line


@pytest.mark.bad_input("variant does not exist")
def test_an_endpoint_without_the_gpu_variant_is_named_and_untouched(tmp_path, aws, capsys):
    data, sm = aws
    create_endpoint(sm, data["name"], variants=("neuron", "blue"))
    live = _endpoint_view(sm, data["name"])
    code, line = _route(tmp_path, data, capsys)
    assert code == 2 and "gpu" in line, line
    assert _endpoint_view(sm, data["name"]) == live


@pytest.mark.bad_input("config for another region")
def test_a_config_for_another_region_is_refused(tmp_path, aws, capsys):
    data, sm = aws
    create_endpoint(sm, data["name"])
    live = _endpoint_view(sm, data["name"])
    code, line = _route(tmp_path, data, capsys, "--region", "eu-west-1")
    assert code == 2 and "region" in line and "us-east-1" in line, line
    assert _endpoint_view(sm, data["name"]) == live


@pytest.mark.bad_input("config for another account")
def test_a_config_for_another_account_is_refused(tmp_path, aws, capsys):
    data, sm = aws
    create_endpoint(sm, data["name"])
    live = _endpoint_view(sm, data["name"])
    data["account"] = "111122223333"  # moto's credentials belong to 123456789012
    code, line = _route(tmp_path, data, capsys)
    assert code == 2 and "111122223333" in line and "account" in line, line
    assert _endpoint_view(sm, data["name"]) == live




@pytest.mark.bad_input("endpoint hardware differs from the config")
@pytest.mark.parametrize("types, names", [
    ({"gpu_type": "ml.g5.2xlarge"}, "ml.g5.2xlarge"),  # config says ml.g5.xlarge
    ({"neuron_type": "ml.g5.xlarge"}, "neuron"),  # the neuron variant runs on GPU hardware
], ids=["gpu-type-differs", "neuron-on-gpu-hardware"])
def test_an_endpoint_whose_instance_types_differ_from_the_config_is_refused(tmp_path, aws, capsys, types, names):
    data, sm = aws
    create_endpoint(sm, data["name"], **types)
    live = _endpoint_view(sm, data["name"])
    code, line = _route(tmp_path, data, capsys)
    assert code == 2 and names in line, line
    assert _endpoint_view(sm, data["name"]) == live


def _bucket_keys(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket="my-models-bucket").get("Contents", [])]


@pytest.mark.bad_input("missing model artifact in S3")
@pytest.mark.parametrize("command", [["compile"], ["register"]])
def test_a_model_artifact_missing_from_s3_is_named(tmp_path, aws, capsys, command):
    data, sm = aws
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="my-models-bucket")  # the bucket exists; the artifact does not
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = run([*command, "-c", str(path)])
    line = _one_clear_line(capsys)
    assert code == 2 and "model.tar.gz" in line and "does not exist" in line, line
    assert _snapshot(tmp_path) == before and _bucket_keys(s3) == []
    assert sm.list_models()["Models"] == []


@pytest.mark.bad_input("deploy with a missing model artifact")
def test_deploy_refuses_model_artifacts_that_do_not_exist(tmp_path, aws, capsys):
    data, sm = aws
    data["execution_role_arn"] = "arn:aws:iam::123456789012:role/sagemaker-execution"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="my-models-bucket")
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    capsys.readouterr()
    code = run(["deploy", "-c", str(path)])
    out = capsys.readouterr()
    assert code == 2 and "model.tar.gz" in out.err + out.out
    assert _endpoint_view(sm, data["name"]) is None, "an endpoint was created from artifacts that do not exist"


# ------------------------------------------------------------------------------------------------
# The controller's own state and the phase (issue 16)

CORRUPT_STATES = {"truncated": b'{"endpoint": "x", "phase": "ramp', "empty": b"", "wrong-shape": b"[1, 2]",
                  "not-utf8": b"\xff\xfe", "another-endpoint": b'{"endpoint": "someone-else", "phase": "idle"}'}


@pytest.mark.bad_input("corrupt or foreign state file")
@pytest.mark.parametrize("kind", list(CORRUPT_STATES))
@pytest.mark.parametrize("command", [["route", "tick"], ["canary", "start"], ["canary", "pause"]],
                         ids=["tick", "start", "pause"])
def test_a_corrupt_state_is_one_line_naming_the_file_and_reset(tmp_path, aws, capsys, kind, command):
    data, sm = aws
    create_endpoint(sm, data["name"], neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
    state = tmp_path / "state" / data["name"] / "state.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(CORRUPT_STATES[kind])
    code, line = _refused(tmp_path, data, capsys, command)
    assert code == 2 and str(state) in line and "hybrid canary reset" in line, line


@pytest.mark.bad_input("a command the phase refuses")
@pytest.mark.parametrize("command", [["canary", "promote"], ["canary", "promote", "--full"], ["canary", "resume"],
                                     ["canary", "pause"]], ids=["promote", "promote-full", "resume", "pause"])
def test_a_command_refused_in_idle_says_why_and_changes_nothing(tmp_path, aws, capsys, command):
    data, sm = aws
    create_endpoint(sm, data["name"], neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
    live = _endpoint_view(sm, data["name"])
    code, line = _refused(tmp_path, data, capsys, command)
    assert code == 2 and "while idle" in line, line
    assert _endpoint_view(sm, data["name"]) == live
