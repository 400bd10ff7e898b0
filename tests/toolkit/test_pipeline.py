"""The issue's "done when": the whole CI pipeline on the embedded AWS, twice.

compile -> register --approve -> deploy (from the approved pair), through the CLI as a pipeline
runs it; the second run compiles nothing, registers nothing and leaves the endpoint alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.toolkit.test_compile import embedded_world, pipeline_data, write
from toolkit.cli import run


@pytest.fixture
def aws() -> Iterator[None]:
    with embedded_world():
        yield


def _step(capsys: Any, *argv: str) -> dict[str, Any]:
    code = run([*argv, "-o", "json"])
    captured = capsys.readouterr()
    assert code == 0, f"{argv[0]} exited {code}: {captured.err}"
    return json.loads(captured.out)


def _counts(sm: Any, group: str) -> dict[str, int]:
    packages = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    return {
        "compilation_jobs": len(sm.list_compilation_jobs()["CompilationJobSummaries"]),
        "packages": len(packages),
        "endpoint_configs": len(sm.list_endpoint_configs()["EndpointConfigs"]),
        "models": len(sm.list_models()["Models"]),
    }


def test_pipeline_compiles_registers_deploys_the_approved_pair_and_a_rerun_changes_nothing(aws, tmp_path, capsys):
    data = pipeline_data(tmp_path, backend="neo", region="us-east-2")
    path = write(tmp_path, data)
    sm = boto3.client("sagemaker", region_name="us-east-2")

    compiled = _step(capsys, "compile", "-c", path)
    assert compiled["compiled"] and not compiled["cache_hit"]
    registered = _step(capsys, "register", "-c", path, "--approve")
    assert sorted(registered["created"]) == ["gpu", "neuron"]
    assert registered["status"] == {"neuron": "Approved", "gpu": "Approved"}
    deployed = _step(capsys, "deploy", "-c", path)
    assert deployed["action"] == "created" and deployed["source"] == "registry"
    assert deployed["status"] == "InService"

    # the endpoint runs the approved packages; the neuron one carries the compiled artifact
    for variant in ("neuron", "gpu"):
        container = sm.describe_model(ModelName=deployed["models"][variant])["Containers"][0]
        assert container["ModelPackageName"] == registered["packages"][variant]
    neuron_package = sm.describe_model_package(ModelPackageName=registered["packages"]["neuron"])
    assert neuron_package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == compiled["artifact"]
    after_first = _counts(sm, data["name"])
    assert after_first == {"compilation_jobs": 1, "packages": 2, "endpoint_configs": 1, "models": 2}

    # second run of the same pipeline: cache hit, nothing registered, endpoint unchanged
    again = _step(capsys, "compile", "-c", path)
    assert again["cache_hit"] and not again["compiled"] and again["artifact"] == compiled["artifact"]
    reregistered = _step(capsys, "register", "-c", path, "--approve")
    assert reregistered["created"] == [] and reregistered["approved"] == []
    assert reregistered["packages"] == registered["packages"]
    redeployed = _step(capsys, "deploy", "-c", path)
    assert redeployed["action"] == "unchanged"
    assert _counts(sm, data["name"]) == after_first


def test_register_writes_a_config_that_deploys_the_registered_packages(aws, tmp_path, capsys):
    from toolkit.config import load_config

    path = write(tmp_path, pipeline_data(tmp_path, backend="container"))
    out = tmp_path / "hybrid.packages.yaml"
    _step(capsys, "compile", "-c", path)
    registered = _step(capsys, "register", "-c", path, "--approve", "--write-config", str(out))
    cfg = load_config(out)
    assert {n: cfg.variant(n).model.model_package_arn for n in ("neuron", "gpu")} == registered["packages"]
    deployed = _step(capsys, "deploy", "-c", str(out), "--source", "config")
    sm = boto3.client("sagemaker", region_name="us-east-2")
    container = sm.describe_model(ModelName=deployed["models"]["neuron"])["Containers"][0]
    assert container["ModelPackageName"] == registered["packages"]["neuron"]


@pytest.mark.parametrize("where", ["folder", "missing-folder"])
def test_register_write_config_to_a_folder_is_refused_before_anything_is_registered(aws, tmp_path, capsys, where):
    path = write(tmp_path, pipeline_data(tmp_path, backend="container"))
    _step(capsys, "compile", "-c", path)
    target = tmp_path if where == "folder" else tmp_path / "nowhere" / "hybrid.packages.yaml"
    assert run(["register", "-c", path, "--approve", "--write-config", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--write-config" in err[0] and "Traceback" not in err[0]
    sm = boto3.client("sagemaker", region_name="us-east-2")
    assert sm.list_model_package_groups()["ModelPackageGroupSummaryList"] == []  # nothing registered


# --- docs/ci.md's pipeline, as an IAM user holding exactly the documented policy ---------------

DOCS_CI = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def documented_policy() -> dict[str, Any]:
    """The JSON block under "## Pipeline policy" in docs/ci.md."""
    text = DOCS_CI.read_text().split("## Pipeline policy", 1)[1]
    return json.loads(text.split("```json", 1)[1].split("```", 1)[0])


def actions_only(policy: dict[str, Any], drop: str | None = None) -> str:
    """The same actions on Resource "*" without conditions: moto checks actions only, and would
    never match a scoped ARN against its own "*" resource (moto/iam/access_control.py)."""
    statements = []
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        actions = [a for a in actions if a != drop]
        if actions:
            statements.append({"Effect": statement["Effect"], "Action": actions, "Resource": "*"})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _iam_user(iam: Any, name: str, policy: str) -> dict[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="pipeline", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def _as(monkeypatch: Any, env: dict[str, str]) -> None:
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_the_documented_pipeline_runs_against_local_serve_enforce_iam_with_the_documented_policy(
    tmp_path, capsys, monkeypatch
):
    from tests.toolkit.local.serving import serving
    from tests.toolkit.test_compile import BUCKET, SOURCE_KEY

    data = pipeline_data(tmp_path, backend="neo", region="us-east-2")
    data["account"] = "123456789012"  # the pipeline also checks the account (sts:GetCallerIdentity)
    path = write(tmp_path, data)
    policy = documented_policy()
    with serving("--enforce-iam", "--region", "us-east-2") as served:
        admin = boto3.session.Session(
            aws_access_key_id=served.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=served.env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
        s3 = admin.client("s3", endpoint_url=served.url)
        s3.create_bucket(Bucket=BUCKET)
        for key in (SOURCE_KEY, "bert/neuron/model.tar.gz", "bert/gpu/model.tar.gz"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"model")
        iam = admin.client("iam", endpoint_url=served.url)
        pipeline = _iam_user(iam, "pipeline", actions_only(policy))
        short = _iam_user(iam, "short", actions_only(policy, drop="sagemaker:DescribeEndpoint"))

        _as(monkeypatch, {**served.env, **pipeline})
        # the commands of docs/ci.md's GitHub Actions jobs: build, then release
        assert _step(capsys, "compile", "-c", path)["compiled"]
        assert _step(capsys, "register", "-c", path)["status"] == {"neuron": "PendingManualApproval",
                                                                   "gpu": "PendingManualApproval"}
        assert run(["register", "-c", path, "--approve"]) == 0
        capsys.readouterr()
        deployed = _step(capsys, "deploy", "-c", path, "--source", "registry")
        assert deployed["action"] == "created" and deployed["status"] == "InService"
        assert _step(capsys, "deploy", "-c", path, "--source", "registry")["action"] == "unchanged"

        # the same pipeline without one documented action fails: exit 3, one line naming it
        _as(monkeypatch, {**served.env, **short})
        code = run(["deploy", "-c", path, "--source", "registry"])
        err = capsys.readouterr().err
        assert code == 3 and err.count("\n") == 1
        assert "AccessDeniedException" in err and "not authorized to perform: sagemaker:DescribeEndpoint" in err
