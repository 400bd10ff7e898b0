"""SageMakerRouter: DescribeEndpoint as the truth, updates only when InService, quota errors."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from routing.model import Target
from routing.router import EndpointBusy, SageMakerRouter
from tests.routing._aws import create_endpoint
from toolkit.errors import AwsError, UserError
from toolkit.local import compat
from toolkit.local.server import patched_mock_aws

EP = "bert"


@pytest.fixture
def sm():
    with patched_mock_aws():
        client = boto3.client("sagemaker", region_name="us-east-1")
        create_endpoint(client, EP, neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
        yield client


def test_describe_reads_weights_counts_types_and_status(sm):
    live = SageMakerRouter(sm, EP).describe()
    assert live.status == "InService" and live.failure_reason is None
    assert live.variants["neuron"].instance_type == "ml.inf2.xlarge"
    assert live.variants["gpu"].instance_type == "ml.g5.xlarge"
    assert (live.share("neuron"), live.share("gpu")) == (0.0, 100.0)
    assert live.counts() == {"neuron": 1, "gpu": 2}


def test_apply_reaches_a_target_in_stages_capacity_before_traffic_toward_neuron(sm):
    router = SageMakerRouter(sm, EP)
    target = Target(weights={"neuron": 30.0, "gpu": 70.0}, instance_counts={"neuron": 2, "gpu": 2})
    first = router.apply(target)  # neuron needs a second instance before it takes 30%
    assert first.variants["neuron"].desired_instance_count == 2
    assert first.share("neuron") == 0.0
    second = router.apply(target)
    assert second.variants["neuron"].desired_weight == 30.0
    assert second.variants["gpu"].desired_weight == 70.0
    assert second.share("neuron") == pytest.approx(30.0)
    assert router.apply(target) == router.describe()  # reached: nothing more is sent
    assert router.describe().variants["neuron"].current_weight == 30.0


def test_fallback_moves_weights_before_adding_gpu_capacity(sm):
    router = SageMakerRouter(sm, EP)
    router.apply(Target(weights={"neuron": 50.0, "gpu": 50.0}, instance_counts={"neuron": 1, "gpu": 2}))
    fallback = Target(weights={"neuron": 0.0, "gpu": 100.0}, instance_counts={"neuron": 1, "gpu": 4})
    first = router.apply(fallback)
    assert first.share("gpu") == 100.0 and first.variants["gpu"].desired_instance_count == 2
    second = router.apply(fallback)
    assert second.variants["gpu"].desired_instance_count == 4


def test_weight_zero_is_allowed(sm):
    router = SageMakerRouter(sm, EP)
    router.apply(Target(weights={"neuron": 100.0, "gpu": 0.0}, instance_counts={"neuron": 1, "gpu": 1}))
    assert router.describe().share("gpu") == 0.0


def test_apply_refuses_while_the_endpoint_is_updating(sm):
    router = SageMakerRouter(sm, EP)
    compat.set_async_updates(True)
    try:
        router.apply(Target(weights={"neuron": 5.0, "gpu": 95.0}, instance_counts={"neuron": 1, "gpu": 2}))
        assert router.describe().status == "Updating"
        with pytest.raises(EndpointBusy, match="endpoint busy"):
            router.apply(Target(weights={"neuron": 10.0, "gpu": 90.0}, instance_counts={"neuron": 1, "gpu": 2}))
        live = router.describe()
        assert live.variants["neuron"].desired_weight == 5.0  # the second update was never sent
        assert live.variants["neuron"].current_weight == 0.0
    finally:
        compat.set_async_updates(False)


def test_missing_endpoint_is_bad_input_naming_it(sm):
    with pytest.raises(UserError, match="'nope' does not exist"):
        SageMakerRouter(sm, "nope").describe()


def test_missing_variant_is_bad_input_naming_it():
    with patched_mock_aws():
        client = boto3.client("sagemaker", region_name="us-east-1")
        create_endpoint(client, "single", variants=("gpu",))
        with pytest.raises(UserError, match="no production variant named neuron"):
            SageMakerRouter(client, "single").describe()


DESCRIBE = {
    "EndpointName": EP, "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{EP}",
    "EndpointConfigName": "cfg", "EndpointStatus": "InService",
    "CreationTime": "2026-01-01T00:00:00Z", "LastModifiedTime": "2026-01-01T00:00:00Z",
    "ProductionVariants": [
        {"VariantName": "neuron", "CurrentWeight": 0.0, "DesiredWeight": 0.0, "CurrentInstanceCount": 1,
         "DesiredInstanceCount": 1},
        {"VariantName": "gpu", "CurrentWeight": 100.0, "DesiredWeight": 100.0, "CurrentInstanceCount": 2,
         "DesiredInstanceCount": 2},
    ],
}
CONFIG = {
    "EndpointConfigName": "cfg", "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/cfg",
    "CreationTime": "2026-01-01T00:00:00Z",
    "ProductionVariants": [{"VariantName": "neuron", "ModelName": "m1", "InstanceType": "ml.inf2.xlarge"},
                           {"VariantName": "gpu", "ModelName": "m2", "InstanceType": "ml.g5.xlarge"}],
}


def test_update_request_shape_is_exact():
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("describe_endpoint", DESCRIBE, {"EndpointName": EP})
        stubber.add_response("describe_endpoint_config", CONFIG, {"EndpointConfigName": "cfg"})
        for name in ("m1", "m2"):  # which model each variant serves (issue 17), read once per endpoint config
            stubber.add_response("describe_model", {
                "ModelName": name, "ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{name}",
                "CreationTime": "2026-01-01T00:00:00Z", "ExecutionRoleArn": "arn:aws:iam::123456789012:role/r",
                "PrimaryContainer": {"Image": "img", "ModelDataUrl": f"s3://b/{name}.tar.gz"}}, {"ModelName": name})
        stubber.add_response(
            "update_endpoint_weights_and_capacities",
            {"EndpointArn": DESCRIBE["EndpointArn"]},
            {"EndpointName": EP, "DesiredWeightsAndCapacities": [
                {"VariantName": "neuron", "DesiredWeight": 9.1},
                {"VariantName": "gpu", "DesiredWeight": 90.9},
            ]},
        )
        stubber.add_response("describe_endpoint", {**DESCRIBE, "EndpointStatus": "Updating"}, {"EndpointName": EP})
        router = SageMakerRouter(client, EP)
        after = router.apply(Target(weights={"neuron": 9.1, "gpu": 90.9}, instance_counts={"neuron": 1, "gpu": 2}))
        stubber.assert_no_pending_responses()
    assert after.status == "Updating"
    # the endpoint config and its two models were read once (cached: configs are immutable)
    assert router.api_calls == 6
    assert after.models["neuron"].artifact == "s3://b/m1.tar.gz"


def test_instance_quota_error_names_the_quota():
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("describe_endpoint", DESCRIBE)
        stubber.add_response("describe_endpoint_config", CONFIG)
        stubber.add_client_error("update_endpoint_weights_and_capacities", service_error_code="ResourceLimitExceeded",
                                 service_message="The account-level service limit 'ml.inf2.xlarge for endpoint usage' "
                                                 "is 0 Instances", http_status_code=400)
        with pytest.raises(AwsError, match="instance quota") as raised:
            SageMakerRouter(client, EP).apply(
                Target(weights={"neuron": 5.0, "gpu": 95.0}, instance_counts={"neuron": 2, "gpu": 2}))  # capacity first
    assert "neuron=2" in str(raised.value)


def test_failure_reason_is_surfaced():
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("describe_endpoint", {**DESCRIBE, "EndpointStatus": "Failed",
                                                   "FailureReason": "capacity error for ml.inf2.xlarge"})
        stubber.add_response("describe_endpoint_config", CONFIG)
        live = SageMakerRouter(client, EP).describe()
    assert live.failure_reason == "capacity error for ml.inf2.xlarge"
    assert not live.in_service
