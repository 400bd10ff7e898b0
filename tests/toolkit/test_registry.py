"""hybrid register: two linked packages per release, idempotent, approval, the approved pair."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.toolkit.test_compile import embedded_world, make_config, pipeline_data
from toolkit.compile import compile_model
from toolkit.config import HybridConfig
from toolkit.errors import UserError
from toolkit.registry import APPROVED, PENDING, approved_pair, package_count, register_models


@pytest.fixture
def aws() -> Iterator[None]:
    with embedded_world():
        yield

def _compiled(cfg: HybridConfig) -> tuple[Any, Any]:
    sm = boto3.client("sagemaker", region_name=cfg.region)
    s3 = boto3.client("s3", region_name="us-east-1")
    return sm, compile_model(cfg, sagemaker_client=sm, s3_client=s3, sleep=lambda _: None, show_progress=False)


def test_same_inputs_register_nothing_new(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm, compiled = _compiled(cfg)
    first = register_models(cfg, sagemaker_client=sm, compiled=compiled)
    assert sorted(first.created) == ["gpu", "neuron"]
    assert package_count(sm, cfg.name) == 2
    second = register_models(cfg, sagemaker_client=sm, compiled=compiled)
    assert second.created == [] and second.packages == first.packages
    assert package_count(sm, cfg.name) == 2


def test_packages_are_linked_by_metadata(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm, compiled = _compiled(cfg)
    result = register_models(cfg, sagemaker_client=sm, compiled=compiled)
    meta = {
        name: sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
        for name, arn in result.packages.items()
    }
    assert meta["neuron"]["hybrid:variant"] == "neuron" and meta["gpu"]["hybrid:variant"] == "gpu"
    for key in ("hybrid:pair", "hybrid:cache-key", "hybrid:source-digest", "hybrid:shapes", "hybrid:compiler"):
        assert meta["neuron"][key] == meta["gpu"][key]
    assert meta["neuron"]["hybrid:cache-key"] == compiled.cache_key
    assert meta["neuron"]["hybrid:shapes"] == "input_ids=1x128 attention_mask=1x128"
    neuron = sm.describe_model_package(ModelPackageName=result.packages["neuron"])
    container = neuron["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == compiled.artifact, "the neuron package must carry the COMPILED artifact"
    assert neuron["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"] == ["ml.inf2.xlarge"]


def test_approve_later_updates_status_without_a_new_package(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm, compiled = _compiled(cfg)
    pending = register_models(cfg, sagemaker_client=sm, compiled=compiled)
    assert set(pending.status.values()) == {PENDING}
    assert approved_pair(cfg, sagemaker_client=sm) is None
    approved = register_models(cfg, sagemaker_client=sm, compiled=compiled, approve=True)
    assert approved.created == [] and sorted(approved.approved) == ["gpu", "neuron"]
    assert package_count(sm, cfg.name) == 2
    pair = approved_pair(cfg, sagemaker_client=sm)
    assert pair is not None and pair.packages == pending.packages
    # the link survives the status update
    assert pair.metadata["neuron"]["hybrid:pair"] == pending.pair


def test_changed_inputs_register_a_new_pair_and_the_newest_approved_pair_wins(aws, tmp_path):
    data = pipeline_data(tmp_path)
    cfg = make_config(data)
    sm, compiled = _compiled(cfg)
    old = register_models(cfg, sagemaker_client=sm, compiled=compiled, approve=True)
    data["variants"]["gpu"]["model"]["environment"]["HF_TASK"] = "token-classification"
    cfg2 = make_config(data)
    new = register_models(cfg2, sagemaker_client=sm, compiled=compiled, approve=True)
    assert new.pair != old.pair and sorted(new.created) == ["gpu", "neuron"]
    assert package_count(sm, cfg.name) == 4
    pair = approved_pair(cfg2, sagemaker_client=sm)
    assert pair is not None and pair.packages == new.packages


def test_a_half_approved_pair_is_not_deployable(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm, compiled = _compiled(cfg)
    result = register_models(cfg, sagemaker_client=sm, compiled=compiled, approve=True)
    sm.update_model_package(ModelPackageArn=result.packages["neuron"], ModelApprovalStatus="Rejected")
    assert approved_pair(cfg, sagemaker_client=sm) is None


def test_dry_run_registers_nothing(aws, tmp_path):
    cfg = make_config(pipeline_data(tmp_path))
    sm, compiled = _compiled(cfg)
    result = register_models(cfg, sagemaker_client=sm, compiled=compiled, approve=True, dry_run=True)
    assert result.packages == {"neuron": "(new)", "gpu": "(new)"}
    assert result.status == {"neuron": APPROVED, "gpu": APPROVED}
    assert package_count(sm, cfg.name) == 0


def test_variant_given_as_a_package_is_refused(aws, tmp_path):
    data = pipeline_data(tmp_path)
    cfg0 = make_config(data)
    sm, compiled = _compiled(cfg0)
    data["variants"]["gpu"]["model"] = {
        "model_package_arn": "arn:aws:sagemaker:us-east-2:123456789012:model-package/bert/1"
    }
    with pytest.raises(UserError, match=r"variants\.gpu\.model uses model_package_arn"):
        register_models(make_config(data), sagemaker_client=sm, compiled=compiled)


def test_the_neuron_package_runs_on_the_neo_jobs_inference_image(aws, tmp_path):
    from toolkit.registry import plan_packages

    cfg = make_config(pipeline_data(tmp_path))
    _, compiled = _compiled(cfg)
    neo_image = "763104351884.dkr.ecr.us-east-2.amazonaws.com/neo-inf2:from-the-job"
    compiled.versions = {**compiled.versions, "inference_image": neo_image}
    _, plans = plan_packages(cfg, compiled)
    neuron = plans["neuron"].request["InferenceSpecification"]["Containers"][0]
    gpu = plans["gpu"].request["InferenceSpecification"]["Containers"][0]
    assert neuron["Image"] == neo_image and neuron["ModelDataUrl"] == compiled.artifact
    assert gpu["Image"] != neo_image


def test_a_pending_pair_is_found_and_an_approved_or_rejected_one_is_not(aws, tmp_path):
    from toolkit.registry import newest_pending_pair

    cfg = make_config(pipeline_data(tmp_path))
    sm, compiled = _compiled(cfg)
    assert newest_pending_pair(cfg, sagemaker_client=sm) is None
    registered = register_models(cfg, sagemaker_client=sm, compiled=compiled)
    pending = newest_pending_pair(cfg, sagemaker_client=sm)
    assert pending is not None and pending.pair == registered.pair
    sm.update_model_package(ModelPackageArn=registered.packages["neuron"], ModelApprovalStatus="Rejected")
    assert newest_pending_pair(cfg, sagemaker_client=sm) is None
