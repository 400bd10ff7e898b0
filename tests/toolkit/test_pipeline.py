"""The issue's "done when": the whole CI pipeline on the embedded AWS, twice.

compile -> register --approve -> deploy (from the approved pair), through the CLI as a pipeline
runs it; the second run compiles nothing, registers nothing and leaves the endpoint alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
