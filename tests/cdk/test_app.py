"""`python -m cdk.app` as the CDK CLI runs it: context from CDK_CONTEXT_JSON, no credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml

from cdk.app import build, main
from cdk.endpoint import HybridEndpoint, ecr_repository_arn, s3_prefix_arn
from tests.cdk.conftest import ROOT, cdk_context
from tests.conftest import EXAMPLE_CONFIG
from toolkit.config import load_config
from toolkit.errors import UserError

pytestmark = pytest.mark.slow


def run_app(tmp_path: Path, config: Path | str) -> subprocess.CompletedProcess[str]:
    """Run the app the way `cdk synth -c config=...` does, with every AWS credential removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        CDK_CONTEXT_JSON=json.dumps(cdk_context(config=str(config))),
        CDK_OUTDIR=str(tmp_path / "cdk.out"),
        AWS_EC2_METADATA_DISABLED="true",  # a credential lookup would hang here, not fail
        # No ~/.aws either (HOME stays: jsii keeps its package cache there).
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
    )
    return subprocess.run(
        [sys.executable, "-m", "cdk.app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_synth_needs_no_credentials_and_writes_the_template(tmp_path: Path) -> None:
    result = run_app(tmp_path, EXAMPLE_CONFIG)
    assert result.returncode == 0, result.stderr
    name = load_config(EXAMPLE_CONFIG).name
    template = json.loads((tmp_path / "cdk.out" / f"hybrid-{name}.template.json").read_text())
    types_ = {r["Type"] for r in template["Resources"].values()}
    assert {
        "AWS::SageMaker::Endpoint",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::CloudWatch::Dashboard",
    } <= types_


def test_bad_config_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["initial_weights"] = {"neuron": 120, "gpu": 100}
    data["variants"]["gpu"]["instance_typ"] = data["variants"]["gpu"].pop("instance_type")
    bad.write_text(yaml.safe_dump(data))
    result = run_app(tmp_path, bad)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(f"{bad}: ") for line in lines), lines
    assert any("initial_weights.neuron" in line for line in lines)
    assert any("instance_typ: unknown key; did you mean 'instance_type'?" in line for line in lines)
    assert not (tmp_path / "cdk.out").exists() or not list((tmp_path / "cdk.out").glob("*.template.json"))


def run_main(config: Path) -> int:
    """cdk.app.main() in-process, with the context the CLI would pass (faster than a subprocess)."""
    return main(cdk_context(config=str(config)))


def test_missing_config_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(tmp_path / "nowhere.yaml") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{tmp_path / 'nowhere.yaml'}: file not found (pass --config/-c with the path to your hybrid.yaml)"
    ]


def test_unresolvable_image_is_a_one_line_error_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["variants"]["neuron"]["model"]["image_settings"]["framework_version"] = "9.9.9"
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(data))
    assert run_main(path) == 2
    err = capsys.readouterr().err
    assert "variants.neuron.model.image" in err and len(err.strip().splitlines()) == 1


def test_a_config_error_in_synth_names_the_file_and_line_like_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = EXAMPLE_CONFIG.read_text()
    path = tmp_path / "hybrid.yaml"
    path.write_text(text.replace("p99_latency_ms:", "p99_latency_ms: -1 #", 1))
    line = next(i for i, row in enumerate(path.read_text().splitlines(), 1) if "p99_latency_ms:" in row)
    assert run_main(path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(row.startswith(f"{path}:") for row in err)
    assert any(row.startswith(f"{path}:{line}: slo.p99_latency_ms") for row in err)


def controller_config(tmp_path: Path) -> Any:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["controller"] = {"enabled": True}
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_enabled_controller_receives_the_config_and_the_endpoint_construct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    class RoutingController:
        def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
            calls.append({"id": construct_id, **kwargs})

    monkeypatch.setitem(sys.modules, "cdk.controller", types.SimpleNamespace(RoutingController=RoutingController))
    config = controller_config(tmp_path)
    stack = build(cdk.App(context=cdk_context()), config)
    assert len(calls) == 1 and calls[0]["id"] == "RoutingController"
    assert calls[0]["config"] is config
    assert isinstance(calls[0]["endpoint"], HybridEndpoint) and calls[0]["endpoint"] is stack.endpoint


def test_enabled_controller_without_its_module_is_a_clear_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cdk.controller", None)  # import fails as if the file were absent
    with pytest.raises(UserError, match=r"controller\.enabled is true but cdk/controller\.py"):
        build(cdk.App(context=cdk_context()), controller_config(tmp_path))


@pytest.mark.parametrize(
    ("uri", "arn"),
    [
        (
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.1.0-gpu",
            "arn:aws:ecr:us-east-1:763104351884:repository/huggingface-pytorch-inference",
        ),
        (
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/model@sha256:abc",
            "arn:aws:ecr:eu-west-1:111122223333:repository/team/model",
        ),
        ("ghcr.io/org/model:1", None),
    ],
)
def test_ecr_pull_permissions_name_the_image_repository(uri: str, arn: str | None) -> None:
    assert ecr_repository_arn(uri) == arn


@pytest.mark.parametrize(
    ("uri", "is_prefix", "arn"),
    [
        ("s3://models/bert/neuron/model.tar.gz", False, "arn:aws:s3:::models/bert/neuron/*"),
        ("s3://models/model.tar.gz", False, "arn:aws:s3:::models/*"),
        ("s3://models/compiled/", True, "arn:aws:s3:::models/compiled/*"),
        ("s3://models/compiled", True, "arn:aws:s3:::models/compiled/*"),
    ],
)
def test_artifact_read_scope_is_the_artifact_folder_or_the_given_prefix(uri: str, is_prefix: bool, arn: str) -> None:
    assert s3_prefix_arn("aws", uri, is_prefix=is_prefix) == arn
