"""hybrid compile: Neo request shape, the content-addressed cache, failures, the other backends.

Also holds the pipeline fixtures the other pipeline test modules import (`pipeline_data`,
`make_config`, `aws`): one place to build a config that points at the embedded AWS.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import ANY, Stubber

from tests.conftest import EXAMPLE_CONFIG
from toolkit.cli import run
from toolkit.compile import CompileFailed, compile_model, container_plan, lookup, shapes_text
from toolkit.config import HybridConfig, parse_config
from toolkit.errors import UserError
from toolkit.local.server import patched_mock_aws

BUCKET = "hybrid-artifacts"
SOURCE_KEY = "bert/source/model.tar.gz"
ROLE = "arn:aws:iam::123456789012:role/hybrid-sagemaker"


def pipeline_data(tmp_path: Path, backend: str = "neo", region: str = "us-east-2") -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["region"] = region
    data["execution_role_arn"] = ROLE
    data["state_dir"] = str(tmp_path / ".hybrid")
    data["compile"] = {
        "backend": backend,
        "source_artifact": f"s3://{BUCKET}/{SOURCE_KEY}",
        "output_s3_uri": f"s3://{BUCKET}/compiled",
        "input_shapes": {"input_ids": [1, 128], "attention_mask": [1, 128]},
        "sequence_length": 128,
        "batch_size": 1,
    }
    for name in ("neuron", "gpu"):
        data["variants"][name]["model"]["artifact"] = f"s3://{BUCKET}/bert/{name}/model.tar.gz"
    return data


def make_config(data: dict[str, Any]) -> HybridConfig:
    return parse_config(copy.deepcopy(data))


def write(tmp_path: Path, data: dict[str, Any], name: str = "hybrid.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@contextmanager
def embedded_world() -> Iterator[None]:
    """In-process moto with the project's compatibility patches, plus the source artifact in S3."""
    with patched_mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=b"uncompiled model v1")
        yield


@pytest.fixture
def aws() -> Iterator[None]:
    with embedded_world():
        yield


def _clients(region: str = "us-east-2") -> tuple[Any, Any]:
    return boto3.client("sagemaker", region_name=region), boto3.client("s3", region_name="us-east-1")


def _job_count(sm: Any) -> int:
    return len(sm.list_compilation_jobs()["CompilationJobSummaries"])


def test_cache_miss_compiles_once_and_second_run_reuses_the_artifact(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm, s3 = _clients()
    first = compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)
    assert first.compiled and not first.cache_hit
    assert _job_count(sm) == 1
    second = compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)
    assert second.cache_hit and not second.compiled
    assert _job_count(sm) == 1, "a cache hit must not start a compilation job"
    assert second.artifact == first.artifact
    assert second.cache_key == first.cache_key


def test_manifest_beside_the_artifact_records_key_versions_shapes_and_source(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm, s3 = _clients()
    result = compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)
    assert result.manifest_uri == f"s3://{BUCKET}/compiled/{result.cache_key[:16]}/manifest.json"
    body = s3.get_object(Bucket=BUCKET, Key=f"compiled/{result.cache_key[:16]}/manifest.json")["Body"].read()
    manifest = json.loads(body)
    head = s3.head_object(Bucket=BUCKET, Key=SOURCE_KEY)
    assert manifest["key"] == result.cache_key
    assert manifest["source_digest"] == "etag:" + head["ETag"].strip('"')
    assert manifest["input_shapes"] == {"input_ids": [1, 128], "attention_mask": [1, 128]}
    assert manifest["versions"]["framework_version"] == cfg.compile.framework_version
    assert manifest["artifact"] == result.artifact and manifest["created_at"]
    assert (Path(cfg.state_dir) / "compile-cache" / f"{result.cache_key}.json").is_file()


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["compile"].update(input_shapes={"input_ids": [1, 256], "attention_mask": [1, 256]}),
        lambda d: d["compile"].update(framework_version="2.2"),
        # Neo compiles ml_trn1 only in us-east-1
        lambda d: (d["variants"]["neuron"].update(instance_type="ml.trn1.2xlarge"), d.update(region="us-east-1")),
    ],
    ids=["shapes", "framework-version", "target"],
)
def test_any_input_of_the_key_changing_is_a_miss(aws, tmp_path, change):
    data = pipeline_data(tmp_path)
    sm, s3 = _clients()
    first = compile_model(make_config(data), sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)
    change(data)
    second = compile_model(make_config(data), sagemaker_client=_clients(data["region"])[0], s3_client=s3,
                           sleep=lambda _: None, show_progress=False)
    assert second.compiled and second.cache_key != first.cache_key
    assert _job_count(sm) + _job_count(_clients("us-east-1")[0]) == 2


def test_a_new_source_artifact_is_a_miss_even_at_the_same_uri(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm, s3 = _clients()
    first = compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)
    s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=b"uncompiled model v2")
    assert lookup(cfg, s3_client=s3) is None
    second = compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)
    assert second.source_digest != first.source_digest and second.compiled


def test_neo_request_has_the_exact_shape_and_polls_until_completed(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = boto3.client("sagemaker", region_name="us-east-2")
    s3 = boto3.client("s3", region_name="us-east-1")
    with Stubber(sm) as sm_stub, Stubber(s3) as s3_stub:
        s3_stub.add_response("head_object", {"ETag": '"abc123"'}, {"Bucket": BUCKET, "Key": SOURCE_KEY})
        s3_stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
        key_prefix = ANY
        sm_stub.add_response(
            "create_compilation_job",
            {"CompilationJobArn": "arn:aws:sagemaker:us-east-2:123456789012:compilation-job/x"},
            {
                "CompilationJobName": ANY,
                "RoleArn": ROLE,
                "InputConfig": {
                    "S3Uri": f"s3://{BUCKET}/{SOURCE_KEY}",
                    "DataInputConfig": '{"input_ids":[1,128],"attention_mask":[1,128]}',
                    "Framework": "PYTORCH",
                    "FrameworkVersion": cfg.compile.framework_version,
                },
                "OutputConfig": {"S3OutputLocation": key_prefix, "TargetDevice": "ml_inf2"},
                "StoppingCondition": {"MaxRuntimeInSeconds": cfg.compile.max_runtime_seconds},
                "Tags": ANY,
            },
        )
        job = {
            "CompilationJobName": "x", "CompilationJobArn": "arn:aws:sagemaker:us-east-2:123456789012:compilation-job/x",
            "StoppingCondition": {}, "CreationTime": "2026-01-01", "LastModifiedTime": "2026-01-01", "FailureReason": "",
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/compiled/k/model-inf2.tar.gz"},
            "RoleArn": ROLE, "InputConfig": {"S3Uri": "s3://b/k", "Framework": "PYTORCH"},
            "OutputConfig": {"S3OutputLocation": "s3://b/o"},
        }
        sm_stub.add_response("describe_compilation_job", {**job, "CompilationJobStatus": "INPROGRESS"}, {"CompilationJobName": ANY})
        sm_stub.add_response("describe_compilation_job", {**job, "CompilationJobStatus": "INPROGRESS"}, {"CompilationJobName": ANY})
        sm_stub.add_response("describe_compilation_job", {**job, "CompilationJobStatus": "COMPLETED"}, {"CompilationJobName": ANY})
        s3_stub.add_response("put_object", {}, {"Bucket": BUCKET, "Key": ANY, "Body": ANY, "ContentType": "application/json"})
        slept: list[float] = []
        result = compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=slept.append, poll=7.0,
                               show_progress=False)
        sm_stub.assert_no_pending_responses()
    assert slept == [7.0, 7.0]
    assert result.artifact == f"s3://{BUCKET}/compiled/k/model-inf2.tar.gz"
    assert result.source_digest == "etag:abc123"


def _failing_neo_client(reason: str) -> tuple[Any, Any, Stubber, Stubber]:
    sm = boto3.client("sagemaker", region_name="us-east-2")
    s3 = boto3.client("s3", region_name="us-east-1")
    sm_stub, s3_stub = Stubber(sm), Stubber(s3)
    s3_stub.add_response("head_object", {"ETag": '"abc123"'})
    s3_stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
    sm_stub.add_response("create_compilation_job", {"CompilationJobArn": "arn:aws:sagemaker:us-east-2:1:compilation-job/x"})
    sm_stub.add_response("describe_compilation_job", {
        "CompilationJobName": "x", "CompilationJobArn": "arn:aws:sagemaker:us-east-2:1:compilation-job/x",
        "CompilationJobStatus": "FAILED", "FailureReason": reason, "StoppingCondition": {},
        "CreationTime": "2026-01-01", "LastModifiedTime": "2026-01-01", "ModelArtifacts": {"S3ModelArtifacts": ""},
        "RoleArn": ROLE, "InputConfig": {"S3Uri": "s3://b/k", "Framework": "PYTORCH"},
        "OutputConfig": {"S3OutputLocation": "s3://b/o"},
    })
    return sm, s3, sm_stub, s3_stub


def test_failed_job_raises_with_sagemaker_failure_reason_verbatim_exit_1_and_caches_nothing(tmp_path):
    reason = "ClientError: InputConfiguration: Unable to trace model: aten::_unique2 is not supported (line 42)"
    cfg = make_config(pipeline_data(tmp_path))
    sm, s3, sm_stub, s3_stub = _failing_neo_client(reason)
    with sm_stub, s3_stub, pytest.raises(CompileFailed) as caught:
        compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)
    assert reason in str(caught.value)
    assert caught.value.exit_code == 1
    assert not (Path(cfg.state_dir) / "compile-cache").exists()


def test_neo_inf2_outside_ohio_is_refused_before_any_call_naming_the_fixes(tmp_path):
    # botocore OutputConfig.TargetDevice: ml_inf2 only in us-east-2; ModelDataUrl must be in the endpoint's region
    cfg = make_config(pipeline_data(tmp_path, region="us-east-1"))
    sm, s3 = boto3.client("sagemaker", region_name="us-east-1"), boto3.client("s3", region_name="us-east-1")
    with Stubber(sm) as sm_stub, Stubber(s3) as s3_stub, pytest.raises(UserError) as caught:
        compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)
    sm_stub.assert_no_pending_responses()
    s3_stub.assert_no_pending_responses()
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 2
    assert "us-east-2" in message and "compile.backend: container" in message


def test_neo_trn1_compiles_in_virginia_only(aws, tmp_path):
    data = pipeline_data(tmp_path, region="us-east-2")
    data["variants"]["neuron"]["instance_type"] = "ml.trn1.2xlarge"
    sm, s3 = _clients("us-east-2")
    with pytest.raises(UserError, match="ml_trn1 only in us-east-1"):
        compile_model(make_config(data), sagemaker_client=sm, s3_client=s3, show_progress=False)
    data["region"] = "us-east-1"
    result = compile_model(make_config(data), sagemaker_client=_clients("us-east-1")[0], s3_client=s3,
                           sleep=lambda _: None, show_progress=False)
    assert result.compiled and result.target == "ml_trn1"


def test_cli_compile_in_the_wrong_region_is_one_line_exit_2(aws, tmp_path, capsys):
    path = write(tmp_path, pipeline_data(tmp_path, region="eu-west-1"))
    code = run(["compile", "-c", path])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "only in us-east-2" in err


def test_ohio_does_not_warn(aws, tmp_path):
    warnings: list[str] = []
    cfg = make_config(pipeline_data(tmp_path, region="us-east-2"))
    sm, s3 = _clients("us-east-2")
    compile_model(cfg, sagemaker_client=sm, s3_client=s3, warn=warnings.append, sleep=lambda _: None,
                  show_progress=False)
    assert warnings == []


def test_container_backend_compiles_nothing_and_returns_the_startup_environment(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path, backend="container"))
    sm, s3 = _clients()
    result = compile_model(cfg, sagemaker_client=sm, s3_client=s3, show_progress=False)
    assert _job_count(sm) == 0 and not result.compiled
    assert result.artifact == cfg.compile.source_artifact
    assert result.environment["HF_OPTIMUM_BATCH_SIZE"] == "1"
    assert result.environment["HF_OPTIMUM_SEQUENCE_LENGTH"] == "128"
    assert result.environment["HF_NUM_CORES"] == "2"  # ml.inf2.xlarge: one Inferentia2 chip, 2 cores
    assert container_plan(cfg).startup_timeout_seconds >= 1800


def test_local_backend_without_torch_neuronx_names_the_alternatives(tmp_path):
    data = pipeline_data(tmp_path, backend="local")
    cfg = make_config(data)
    with pytest.raises(UserError) as caught:
        compile_model(cfg, sagemaker_client=None, s3_client=None)
    message = str(caught.value)
    assert "torch-neuronx" in message
    assert "compile.backend: neo" in message and "compile.backend: container" in message


def test_cli_local_backend_error_is_one_line_exit_2(tmp_path, capsys):
    path = write(tmp_path, pipeline_data(tmp_path, backend="local"))
    code = run(["compile", "-c", path])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_shapes_text_is_valid_registry_metadata():
    text = shapes_text({"input_ids": [1, 128], "attention_mask": [4, 512]})
    assert text == "input_ids=1x128 attention_mask=4x512"


def test_cli_failed_job_prints_the_failure_reason_verbatim_and_exits_1(tmp_path, capsys, monkeypatch):
    from toolkit.commands import pipeline_cmds

    reason = "ClientError: InputConfiguration: Exactly one .pt or .pth file is allowed for PyTorch models."
    sm, s3, sm_stub, s3_stub = _failing_neo_client(reason)
    monkeypatch.setattr(pipeline_cmds, "_clients", lambda *_args: [sm, s3])
    path = write(tmp_path, pipeline_data(tmp_path))
    with sm_stub, s3_stub:
        code = run(["compile", "-c", path, "-o", "json"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().endswith(reason) and err.count("\n") == 1
