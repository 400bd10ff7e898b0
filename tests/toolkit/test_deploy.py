"""hybrid deploy: create, update keeping live weights, content-named configs, failures surfaced."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from hypothesis import given
from hypothesis import strategies as st

from tests.toolkit.test_compile import BUCKET, embedded_world, make_config, pipeline_data, write
from toolkit.cli import run
from toolkit.config import ENDPOINT_NAME_RE
from toolkit.deploy import content_name, deploy_endpoint, endpoint_config_request
from toolkit.errors import AwsError, UserError

ARTIFACT_KEYS = {v: f"bert/{v}/model.tar.gz" for v in ("neuron", "gpu")}  # pipeline_data's model.artifact


@pytest.fixture
def aws() -> Iterator[None]:
    """The embedded world plus both variants' artifacts, which deploy checks exist."""
    with embedded_world():
        for key in ARTIFACT_KEYS.values():
            _s3().put_object(Bucket=BUCKET, Key=key, Body=b"model")
        yield


def _sm(region: str = "us-east-2") -> Any:
    return boto3.client("sagemaker", region_name=region)


def _s3() -> Any:
    return boto3.client("s3", region_name="us-east-1")


class PresentS3:
    """Every HeadObject succeeds, no compile manifest exists (Stubber tests pin SageMaker's calls only)."""

    def __init__(self) -> None:
        self.heads: list[tuple[str, str]] = []

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self.heads.append((Bucket, Key))
        return {"ContentLength": 5, "ETag": '"abc"'}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "no such key"}}, "GetObject")


def _live(sm: Any, name: str) -> dict[str, tuple[float, int]]:
    described = sm.describe_endpoint(EndpointName=name)
    return {v["VariantName"]: (v["CurrentWeight"], v["CurrentInstanceCount"]) for v in described["ProductionVariants"]}


def _config_count(sm: Any) -> int:
    return len(sm.list_endpoint_configs()["EndpointConfigs"])


def test_create_uses_initial_weights_and_a_content_named_config(aws, tmp_path):
    data = pipeline_data(tmp_path)
    data["initial_weights"] = {"neuron": 10, "gpu": 90}
    data["canary"]["target_neuron_percent"] = 100
    cfg = make_config(data)
    sm = _sm()
    result = deploy_endpoint(cfg, sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    assert result.action == "created" and result.status == "InService" and result.source == "config"
    assert result.endpoint_config_name.startswith(f"{cfg.name}-")
    assert result.endpoint_config_name == endpoint_config_request(cfg, result.models)["EndpointConfigName"]
    assert _live(sm, cfg.name) == {"neuron": (10.0, 1), "gpu": (90.0, 2)}


def test_update_keeps_the_weights_and_counts_set_on_the_live_endpoint(aws, tmp_path):
    data = pipeline_data(tmp_path)
    sm = _sm()
    first = deploy_endpoint(make_config(data), sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    sm.update_endpoint_weights_and_capacities(
        EndpointName=first.endpoint_name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "neuron", "DesiredWeight": 30.0, "DesiredInstanceCount": 3},
            {"VariantName": "gpu", "DesiredWeight": 70.0, "DesiredInstanceCount": 1},
        ],
    )
    data["variants"]["neuron"]["model"]["environment"]["LOG_LEVEL"] = "debug"
    second = deploy_endpoint(make_config(data), sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    assert second.action == "updated"
    assert second.endpoint_config_name != first.endpoint_config_name
    assert second.models["neuron"] != first.models["neuron"] and second.models["gpu"] == first.models["gpu"]
    assert _live(sm, first.endpoint_name) == {"neuron": (30.0, 3), "gpu": (70.0, 1)}
    described = sm.describe_endpoint(EndpointName=first.endpoint_name)
    assert described["EndpointConfigName"] == second.endpoint_config_name
    env = sm.describe_model(ModelName=second.models["neuron"])["Containers"][0]["Environment"]
    assert env["LOG_LEVEL"] == "debug"


def test_redeploying_the_same_content_changes_nothing(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    deploy_endpoint(cfg, sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    again = deploy_endpoint(cfg, sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    assert again.action == "unchanged"
    assert _config_count(sm) == 1
    assert len(sm.list_models()["Models"]) == 2


def test_container_backend_sets_the_neuronx_environment_and_raises_startup_timeout(aws, tmp_path):
    data = pipeline_data(tmp_path, backend="container")
    data["variants"]["neuron"].pop("startup_timeout_seconds", None)
    cfg = make_config(data)
    sm = _sm()
    result = deploy_endpoint(cfg, sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    env = sm.describe_model(ModelName=result.models["neuron"])["Containers"][0]["Environment"]
    assert env["HF_OPTIMUM_SEQUENCE_LENGTH"] == "128" and env["HF_OPTIMUM_BATCH_SIZE"] == "1"
    assert env["HF_TASK"] == "text-classification"  # the config's own environment is kept
    ec = sm.describe_endpoint_config(EndpointConfigName=result.endpoint_config_name)
    neuron = next(v for v in ec["ProductionVariants"] if v["VariantName"] == "neuron")
    gpu = next(v for v in ec["ProductionVariants"] if v["VariantName"] == "gpu")
    assert neuron["ContainerStartupHealthCheckTimeoutInSeconds"] >= 1800
    assert "ContainerStartupHealthCheckTimeoutInSeconds" not in gpu
    gpu_env = sm.describe_model(ModelName=result.models["gpu"])["Containers"][0]["Environment"]
    assert "HF_OPTIMUM_SEQUENCE_LENGTH" not in gpu_env


def test_missing_execution_role_is_a_one_line_error_exit_2(tmp_path, capsys):
    data = pipeline_data(tmp_path)
    data.pop("execution_role_arn")
    with pytest.raises(UserError, match="execution_role_arn"):
        deploy_endpoint(make_config(data), sagemaker_client=object())
    code = run(["deploy", "-c", write(tmp_path, data)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "execution_role_arn" in err


def _endpoint(status: str, config_name: str, reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "EndpointName": "bert-classifier",
        "EndpointArn": "arn:aws:sagemaker:us-east-2:123456789012:endpoint/bert-classifier",
        "EndpointConfigName": config_name,
        "EndpointStatus": status,
        "CreationTime": "2026-01-01",
        "LastModifiedTime": "2026-01-01",
    }
    if reason:
        body["FailureReason"] = reason
    return body


def _described_config(name: str, types: tuple[str, str] = ("ml.inf2.xlarge", "ml.g5.xlarge")) -> dict[str, Any]:
    return {
        "EndpointConfigName": name, "EndpointConfigArn": f"arn:aws:sagemaker:us-east-2:1:endpoint-config/{name}",
        "CreationTime": "2026-01-01",
        "ProductionVariants": [{"VariantName": v, "ModelName": f"m-{v}", "InstanceType": t, "InitialInstanceCount": 1}
                               for v, t in zip(("neuron", "gpu"), types, strict=True)],
    }


def _stub_update(stub: Stubber, cfg: Any, live_types: tuple[str, str] | None = None,
                 status: str = "InService") -> str:
    """Queue the calls of an update whose models exist and whose config is new; return its name."""
    from toolkit.deploy import config_models, model_request

    models = config_models(cfg)
    names = {v: model_request(cfg, models[v])["ModelName"] for v in ("neuron", "gpu")}
    ec_name = endpoint_config_request(cfg, names)["EndpointConfigName"]
    stub.add_response("describe_endpoint", _endpoint(status, "bert-classifier-old"))
    if live_types is not None:  # deploy compares instance types (autoscaling client given)
        stub.add_response("describe_endpoint_config", _described_config("bert-classifier-old", live_types))
    for name in ("neuron", "gpu"):
        stub.add_response("describe_model", {
            "ModelName": names[name], "CreationTime": "2026-01-01",
            "ModelArn": f"arn:aws:sagemaker:us-east-2:123456789012:model/{names[name]}",
        }, {"ModelName": names[name]})
    stub.add_client_error("describe_endpoint_config", "ValidationException", "Could not find endpoint configuration")
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-2:1:endpoint-config/x"},
                      {"EndpointConfigName": ec_name, "ProductionVariants": ANY, "Tags": ANY})
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-2:1:endpoint/bert-classifier"},
                      {"EndpointName": "bert-classifier", "EndpointConfigName": ec_name,
                       "RetainAllVariantProperties": True})
    return ec_name


def test_update_request_retains_variant_properties_and_waits_with_injected_sleep(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    slept: list[float] = []
    with Stubber(sm) as stub:
        ec_name = _stub_update(stub, cfg)
        stub.add_response("describe_endpoint", _endpoint("Updating", ec_name))
        stub.add_response("describe_endpoint", _endpoint("Updating", ec_name))
        stub.add_response("describe_endpoint", _endpoint("InService", ec_name))
        result = deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config", poll=5.0, sleep=slept.append,
                                 show_progress=False)
        stub.assert_no_pending_responses()
    assert result.action == "updated" and slept == [5.0, 5.0]


def test_an_update_that_rolled_back_surfaces_the_failure_reason(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    reason = "The primary container for production variant neuron did not pass the ping health check."
    with Stubber(sm) as stub:
        ec_name = _stub_update(stub, cfg)
        stub.add_response("describe_endpoint", _endpoint("Updating", ec_name))
        stub.add_response("describe_endpoint", _endpoint("InService", "bert-classifier-old", reason))
        with pytest.raises(AwsError) as caught:
            deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config", sleep=lambda _: None, show_progress=False)
    assert reason in str(caught.value) and "rolled back" in str(caught.value)
    assert caught.value.exit_code == 3


def test_a_failed_creation_surfaces_the_failure_reason(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    reason = "ResourceLimitExceeded: account-level service limit 'ml.inf2.xlarge for endpoint usage' is 0"
    with Stubber(sm) as stub:
        stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint \"bert-classifier\".")
        for _ in range(2):
            stub.add_client_error("describe_model", "ValidationException", "Could not find model")
            stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-2:1:model/x"})
        stub.add_client_error("describe_endpoint_config", "ValidationException", "Could not find endpoint configuration")
        stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-2:1:endpoint-config/x"})
        stub.add_response("describe_endpoint_config", _described_config("x"))
        stub.add_response("create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-2:1:endpoint/bert-classifier"})
        stub.add_response("describe_endpoint", _endpoint("Failed", "x", reason))
        with pytest.raises(AwsError, match="ResourceLimitExceeded"):
            deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config", sleep=lambda _: None, show_progress=False)


def test_cli_deploy_json_reports_the_action(aws, tmp_path, capsys):
    import json

    path = write(tmp_path, pipeline_data(tmp_path))
    assert run(["deploy", "-c", path, "--source", "config", "-o", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["action"] == "created" and first["live"]["gpu"]["weight"] == 100.0
    assert run(["deploy", "-c", path, "--source", "config", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "unchanged"


@given(prefix=st.from_regex(r"[a-zA-Z0-9](-?[a-zA-Z0-9]){0,62}", fullmatch=True),
       content=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_content_names_are_valid_sagemaker_names_and_follow_the_content(prefix, content):
    name = content_name(prefix, content)
    assert ENDPOINT_NAME_RE.match(name) and len(name) <= 63
    assert name == content_name(prefix, dict(content))
    assert name != content_name(prefix, {**content, "changed": True})


def test_deploy_waits_for_a_running_update_before_its_own(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    from toolkit.deploy import config_models, model_request

    models = config_models(cfg)
    names = {v: model_request(cfg, models[v])["ModelName"] for v in ("neuron", "gpu")}
    ec_name = endpoint_config_request(cfg, names)["EndpointConfigName"]
    slept: list[float] = []
    with Stubber(sm) as stub:
        # the router is changing weights on the already-deployed config: wait, then nothing to do
        stub.add_response("describe_endpoint", _endpoint("Updating", ec_name))
        stub.add_response("describe_endpoint", _endpoint("Updating", ec_name))
        stub.add_response("describe_endpoint", _endpoint("InService", ec_name))
        result = deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config", sleep=slept.append, show_progress=False)
        stub.assert_no_pending_responses()
    assert result.action == "unchanged" and len(slept) == 1


def test_cli_refuses_credentials_of_another_account(aws, tmp_path, capsys):
    data = pipeline_data(tmp_path)
    data["account"] = "210987654321"  # moto's credentials are for 123456789012
    code = run(["deploy", "-c", write(tmp_path, data)])
    err = capsys.readouterr().err
    assert code == 2 and "123456789012" in err and "210987654321" in err
    assert _sm().list_endpoints()["Endpoints"] == []


def test_a_missing_artifact_is_a_user_error_naming_variant_and_uri_and_nothing_is_created(aws, tmp_path):
    _s3().delete_object(Bucket=BUCKET, Key=ARTIFACT_KEYS["gpu"])
    sm = _sm()
    with pytest.raises(UserError) as caught:
        deploy_endpoint(make_config(pipeline_data(tmp_path)), sagemaker_client=sm, s3_client=_s3(),
                        show_progress=False)
    message = str(caught.value)
    assert f"variants.gpu.model.artifact s3://{BUCKET}/{ARTIFACT_KEYS['gpu']} does not exist" in message
    assert "\n" not in message and caught.value.exit_code == 2
    assert sm.list_models()["Models"] == [] and sm.list_endpoints()["Endpoints"] == []


def test_a_missing_bucket_is_named_too(aws, tmp_path):
    data = pipeline_data(tmp_path)
    data["variants"]["neuron"]["model"]["artifact"] = "s3://no-such-bucket/model.tar.gz"
    with pytest.raises(UserError, match=re.escape("variants.neuron.model.artifact s3://no-such-bucket/model.tar.gz does not")):
        deploy_endpoint(make_config(data), sagemaker_client=_sm(), s3_client=_s3(), show_progress=False)


def test_access_denied_on_an_artifact_is_a_one_line_aws_error_naming_the_uri(tmp_path):
    cfg = make_config(pipeline_data(tmp_path, backend="container"))  # neo would also read its compile cache
    s3 = _s3()
    with Stubber(s3) as stub:
        stub.add_client_error("head_object", "403", "Forbidden", http_status_code=403,
                              expected_params={"Bucket": BUCKET, "Key": ARTIFACT_KEYS["neuron"]})
        with pytest.raises(AwsError) as caught:
            deploy_endpoint(cfg, sagemaker_client=object(), s3_client=s3, source="config", show_progress=False)
    message = str(caught.value)
    assert f"s3://{BUCKET}/{ARTIFACT_KEYS['neuron']}" in message and "access denied" in message
    assert "\n" not in message and caught.value.exit_code == 3


def test_model_package_variants_are_not_checked_in_s3(tmp_path):
    from toolkit.deploy import check_artifacts, config_models

    data = pipeline_data(tmp_path)
    data["variants"]["neuron"]["model"].pop("artifact")
    data["variants"]["neuron"]["model"]["model_package_arn"] = (
        "arn:aws:sagemaker:us-east-2:123456789012:model-package/bert-classifier/1")
    models = config_models(make_config(data))
    s3 = PresentS3()
    check_artifacts(models, s3)
    assert s3.heads == [(BUCKET, ARTIFACT_KEYS["gpu"])]
    with pytest.raises(UserError, match=r"^variants\.gpu\.model\.artifact"):  # the first checked is gpu
        check_artifacts(models, _MissingS3())


class _MissingS3:
    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")


def test_without_an_s3_client_deploy_refuses_unless_the_caller_opts_out(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    with pytest.raises(TypeError, match="s3_client"):
        deploy_endpoint(cfg, sagemaker_client=object(), source="config", show_progress=False)


def test_cli_deploy_with_a_missing_artifact_exits_2_with_one_line(aws, tmp_path, capsys):
    _s3().delete_object(Bucket=BUCKET, Key=ARTIFACT_KEYS["neuron"])
    code = run(["deploy", "-c", write(tmp_path, pipeline_data(tmp_path)), "--source", "config"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "variants.neuron.model.artifact" in err
    assert _sm().list_endpoints()["Endpoints"] == []


# --- UpdateRollbackFailed, CreateEndpoint eventual consistency --------------------------------


def test_update_rollback_failed_stops_the_wait_with_a_clear_exit_3(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    slept: list[float] = []
    with Stubber(sm) as stub:
        ec_name = _stub_update(stub, cfg)
        stub.add_response("describe_endpoint", _endpoint("Updating", ec_name))
        stub.add_response("describe_endpoint", _endpoint("UpdateRollbackFailed", ec_name, "rollback failed"))
        # no further describe_endpoint queued: one more poll would fail the Stubber
        with pytest.raises(AwsError) as caught:
            deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config", poll=5.0,
                            sleep=slept.append, show_progress=False)
        stub.assert_no_pending_responses()
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message
    assert "UpdateRollbackFailed" in message and "hybrid deploy" in message and "rollback failed" in message
    assert slept == [5.0]


def test_deploying_over_an_update_rollback_failed_endpoint_updates_it_to_the_new_config(tmp_path):
    # the remedy the error names: UpdateEndpoint to a known-good config, no waiting on the stuck state
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    with Stubber(sm) as stub:
        ec_name = _stub_update(stub, cfg, status="UpdateRollbackFailed")
        stub.add_response("describe_endpoint", _endpoint("InService", ec_name))
        result = deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config",
                                 sleep=lambda _: None, show_progress=False)
        stub.assert_no_pending_responses()
    assert result.action == "updated" and result.status == "InService"


def _stub_create_until_endpoint(stub: Stubber, ec_name: str) -> None:
    stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint \"bert-classifier\".")
    for _ in range(2):
        stub.add_client_error("describe_model", "ValidationException", "Could not find model")
        stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-2:1:model/x"})
    stub.add_client_error("describe_endpoint_config", "ValidationException", "Could not find endpoint configuration")
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-2:1:endpoint-config/x"})


def test_create_endpoint_describes_the_new_config_first_and_retries_its_validation_exception(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    slept: list[float] = []
    with Stubber(sm) as stub:
        _stub_create_until_endpoint(stub, "x")
        # not visible yet, then visible but CreateEndpoint still refuses it once, then it works
        stub.add_client_error("describe_endpoint_config", "ValidationException", "Could not find endpoint configuration")
        stub.add_response("describe_endpoint_config", _described_config("x"))
        stub.add_client_error("create_endpoint", "ValidationException", "Could not find endpoint configuration x")
        stub.add_response("describe_endpoint_config", _described_config("x"))
        stub.add_response("create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-2:1:endpoint/bert-classifier"})
        result = deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config", wait=False,
                                 sleep=slept.append, show_progress=False)
        stub.assert_no_pending_responses()
    assert result.action == "created" and slept == [2.0, 4.0]


def test_create_endpoint_gives_up_after_a_bounded_number_of_attempts(tmp_path):
    from toolkit.deploy import CREATE_ATTEMPTS

    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    slept: list[float] = []
    with Stubber(sm) as stub:
        _stub_create_until_endpoint(stub, "x")
        for _ in range(CREATE_ATTEMPTS):
            stub.add_response("describe_endpoint_config", _described_config("x"))
            stub.add_client_error("create_endpoint", "ValidationException", "Could not find endpoint configuration x")
        with pytest.raises(AwsError, match=f"failed {CREATE_ATTEMPTS} times"):
            deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config", wait=False,
                            sleep=slept.append, show_progress=False)
        stub.assert_no_pending_responses()
    assert len(slept) == CREATE_ATTEMPTS - 1


# --- kms_key_arn -----------------------------------------------------------------------------

KEY = "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_kms_key_goes_on_the_endpoint_config_when_no_variant_has_nvme_storage(tmp_path):
    data = pipeline_data(tmp_path)
    data["kms_key_arn"] = KEY
    data["variants"]["gpu"]["instance_type"] = "ml.p3.2xlarge"  # EBS-backed, as inf2
    request = endpoint_config_request(make_config(data), {"neuron": "n", "gpu": "g"})
    assert request["KmsKeyId"] == KEY


def test_kms_key_with_an_nvme_variant_and_no_data_capture_is_refused_with_the_reason(tmp_path):
    data = pipeline_data(tmp_path)
    data["kms_key_arn"] = KEY  # gpu is ml.g5.*: local NVMe
    with pytest.raises(UserError) as caught:
        endpoint_config_request(make_config(data), {"neuron": "n", "gpu": "g"})
    assert "NVMe" in str(caught.value) and "gpu (ml.g5" in str(caught.value) and caught.value.exit_code == 2


@pytest.mark.parametrize("neuron_type", ["ml.trn1.2xlarge", "ml.inf2.xlarge"])
def test_kms_key_encrypts_data_capture_but_never_sits_beside_nvme_types(tmp_path, neuron_type):
    data = pipeline_data(tmp_path)
    data["kms_key_arn"] = KEY
    data["variants"]["neuron"]["instance_type"] = neuron_type
    data["data_capture"] = {"enabled": True, "s3_uri": f"s3://{BUCKET}/capture"}
    request = endpoint_config_request(make_config(data), {"neuron": "n", "gpu": "g"})
    assert "KmsKeyId" not in request
    assert request["DataCaptureConfig"]["KmsKeyId"] == KEY


# --- model packages and approval ---------------------------------------------------------------


def test_a_model_package_arn_that_does_not_exist_is_refused_before_anything_is_created(aws, tmp_path):
    data = pipeline_data(tmp_path)
    arn = "arn:aws:sagemaker:us-east-2:123456789012:model-package/bert-classifier/7"
    data["variants"]["gpu"]["model"] = {"model_package_arn": arn}
    sm = _sm()
    with pytest.raises(UserError) as caught:
        deploy_endpoint(make_config(data), sagemaker_client=sm, s3_client=_s3(), source="config", show_progress=False)
    assert arn in str(caught.value) and "variants.gpu" in str(caught.value)
    assert sm.list_models()["Models"] == [] and _config_count(sm) == 0


def _register(cfg: Any, approve: bool) -> Any:
    from toolkit.compile import compile_model
    from toolkit.registry import register_models

    compiled = compile_model(cfg, sagemaker_client=_sm(), s3_client=_s3(), sleep=lambda _: None, show_progress=False)
    return register_models(cfg, sagemaker_client=_sm(), compiled=compiled, approve=approve)


def test_auto_source_refuses_a_pending_pair_instead_of_deploying_the_config(aws, tmp_path, capsys):
    data = pipeline_data(tmp_path)
    _register(make_config(data), approve=False)
    code = run(["deploy", "-c", write(tmp_path, data)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "hybrid register --approve" in err
    assert _sm().list_models()["Models"] == []


def test_auto_source_refuses_a_pending_pair_newer_than_the_approved_one(aws, tmp_path):
    data = pipeline_data(tmp_path)
    _register(make_config(data), approve=True)
    data["compile"]["input_shapes"] = {"input_ids": [1, 256], "attention_mask": [1, 256]}
    _register(make_config(data), approve=False)
    with pytest.raises(UserError, match="not approved"):
        deploy_endpoint(make_config(data), sagemaker_client=_sm(), s3_client=_s3(), show_progress=False)
    # asked explicitly for the approved pair: it deploys
    result = deploy_endpoint(make_config(data), sagemaker_client=_sm(), s3_client=_s3(), source="registry",
                             show_progress=False)
    assert result.source == "registry" and result.action == "created"


# --- Neo InferenceImage ----------------------------------------------------------------------


def test_config_deploy_of_a_neo_build_uses_the_compiled_artifact_and_the_jobs_inference_image(aws, tmp_path):
    from toolkit.compile import lookup, write_manifest

    cfg = make_config(pipeline_data(tmp_path))
    neo_image = "763104351884.dkr.ecr.us-east-2.amazonaws.com/neo-inf2:from-the-job"
    compiled = lookup(cfg, s3_client=_s3()) or _register_compile(cfg)
    compiled.versions = {**compiled.versions, "inference_image": neo_image}
    write_manifest(cfg, compiled, _s3())  # as _compile_neo records DescribeCompilationJob's InferenceImage
    _s3().put_object(Bucket=BUCKET, Key=compiled.artifact.split(f"{BUCKET}/", 1)[1], Body=b"compiled")
    result = deploy_endpoint(cfg, sagemaker_client=_sm(), s3_client=_s3(), source="config", show_progress=False)
    container = _sm().describe_model(ModelName=result.models["neuron"])["Containers"][0]
    assert container["Image"] == neo_image and container["ModelDataUrl"] == compiled.artifact
    gpu = _sm().describe_model(ModelName=result.models["gpu"])["Containers"][0]
    assert gpu["Image"] != neo_image


def _register_compile(cfg: Any) -> Any:
    from toolkit.compile import compile_model

    return compile_model(cfg, sagemaker_client=_sm(), s3_client=_s3(), sleep=lambda _: None, show_progress=False)


# --- an autoscaled variant changes instance type ---------------------------------------------

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TRACKING = {"TargetValue": 70.0, "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}


class Recorder:
    """Wraps a boto3 client and records the order of the calls that change something."""

    def __init__(self, client: Any, calls: list[str]) -> None:
        self._client, self._calls = client, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not name.startswith(("describe", "list")):
            def call(*args: Any, **kwargs: Any) -> Any:
                self._calls.append(name)
                return attr(*args, **kwargs)
            return call
        return attr


def _autoscale(aas: Any, variant: str, minimum: int, maximum: int) -> None:
    resource = f"endpoint/bert-classifier/variant/{variant}"
    aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=DIMENSION,
                                 MinCapacity=minimum, MaxCapacity=maximum)
    aas.put_scaling_policy(PolicyName=f"{variant}-tracking", ServiceNamespace="sagemaker", ResourceId=resource,
                           ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
                           TargetTrackingScalingPolicyConfiguration=TRACKING)


def test_changing_an_autoscaled_variants_instance_type_deregisters_updates_waits_and_reregisters(aws, tmp_path):
    data = pipeline_data(tmp_path, backend="container")
    aas = boto3.client("application-autoscaling", region_name="us-east-2")
    deploy_endpoint(make_config(data), sagemaker_client=_sm(), s3_client=_s3(), source="config", show_progress=False)
    _autoscale(aas, "gpu", 1, 6)
    _autoscale(aas, "neuron", 1, 3)
    data["variants"]["gpu"]["instance_type"] = "ml.g5.2xlarge"
    calls: list[str] = []
    result = deploy_endpoint(make_config(data), sagemaker_client=Recorder(_sm(), calls), s3_client=_s3(),
                             source="config", show_progress=False, autoscaling_client=Recorder(aas, calls),
                             sleep=lambda _: None)
    assert result.action == "updated"
    # only the variant whose type changes loses its scalable target, and only around the update
    assert [c for c in calls if c not in ("create_model", "create_endpoint_config")] == [
        "deregister_scalable_target", "update_endpoint", "register_scalable_target", "put_scaling_policy"]
    gpu = aas.describe_scalable_targets(ServiceNamespace="sagemaker",
                                        ResourceIds=["endpoint/bert-classifier/variant/gpu"])["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in gpu] == [(1, 6)]
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker",
                                             ResourceId="endpoint/bert-classifier/variant/gpu")["ScalingPolicies"]
    assert [(p["PolicyName"], p["TargetTrackingScalingPolicyConfiguration"]) for p in policies] == [
        ("gpu-tracking", TRACKING)]
    live = _sm().describe_endpoint_config(EndpointConfigName=result.endpoint_config_name)
    assert {pv["VariantName"]: pv["InstanceType"] for pv in live["ProductionVariants"]}["gpu"] == "ml.g5.2xlarge"


def test_autoscaling_is_restored_even_when_the_update_rolls_back(tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm = _sm()
    aas = boto3.client("application-autoscaling", region_name="us-east-2")
    resource = "endpoint/bert-classifier/variant/gpu"
    target = {"ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": DIMENSION,
              "MinCapacity": 2, "MaxCapacity": 5, "CreationTime": "2026-01-01",
              "RoleARN": "arn:aws:iam::123456789012:role/aws-service-role/x"}
    with Stubber(sm) as stub, Stubber(aas) as aas_stub:
        # the live config runs gpu on g5.2xlarge; the new one on g5.xlarge
        _stub_update(stub, cfg, live_types=("ml.inf2.xlarge", "ml.g5.2xlarge"))
        stub.add_response("describe_endpoint", _endpoint("InService", "bert-classifier-old", "health check failed"))
        aas_stub.add_response("describe_scalable_targets", {"ScalableTargets": [target]})
        aas_stub.add_response("describe_scalable_targets", {"ScalableTargets": [target]})
        aas_stub.add_response("describe_scaling_policies", {"ScalingPolicies": []})
        aas_stub.add_response("deregister_scalable_target", {})
        aas_stub.add_response("register_scalable_target", {}, {
            "ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": DIMENSION,
            "MinCapacity": 2, "MaxCapacity": 5})
        with pytest.raises(AwsError, match="rolled back"):
            deploy_endpoint(cfg, sagemaker_client=sm, s3_client=PresentS3(), source="config", sleep=lambda _: None,
                            show_progress=False, autoscaling_client=aas)
        aas_stub.assert_no_pending_responses()


# --- pointed at a plain moto server ----------------------------------------------------------

PLAIN_MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("http://%s:%d" % server.get_host_and_port(), flush=True)
sys.stdin.read()  # until the test closes stdin
server.stop()
"""


@pytest.fixture
def plain_moto() -> Iterator[str]:
    """An unpatched moto server in its own process (this process's moto carries the compat patches)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", PLAIN_MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_against_plain_moto_deploy_says_in_one_line_to_use_local_serve(plain_moto, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", plain_moto)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for key in ARTIFACT_KEYS.values():
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"model")
    code = run(["deploy", "-c", write(tmp_path, pipeline_data(tmp_path, backend="container"))])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and len(err) < 400
    assert "plain moto lacks ml.inf2/ml.g5" in err and "hybrid local serve" in err
