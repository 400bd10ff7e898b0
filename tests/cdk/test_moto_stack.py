"""The synthesized template deployed into moto's CloudFormation (through toolkit.local.compat).

moto 5.2.5 has gaps here (no ml.inf2/ml.g5 in its instance-type enum, EndpointName ignored,
updates recreate the endpoint): toolkit.local.compat closes them; nothing here patches moto.
The endpoint is found by listing, not by its configured name, so these tests hold with or
without the EndpointName patch. Autoscaling targets and alarms are not modelled by moto's
CloudFormation (it skips them), so they are covered by the template assertions instead.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.cdk.conftest import synth
from tests.conftest import EXAMPLE_CONFIG
from toolkit.config import load_config

compat = pytest.importorskip("toolkit.local.compat", reason="toolkit/local/compat.py (moto gap patches) missing")
moto = pytest.importorskip("moto")

pytestmark = [
    pytest.mark.slow,
    # moto's CloudFormation skips what it does not model (scalable targets, alarms) with a warning.
    pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"),
]

CONFIG = load_config(EXAMPLE_CONFIG)
REGION = CONFIG.region
STACK = "hybrid-test"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return synth(EXAMPLE_CONFIG).json()


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    compat.apply()
    with moto.mock_aws():
        # The CDK template's BootstrapVersion parameter resolves this SSM parameter at deploy time.
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String"
        )
        yield {
            "cfn": boto3.client("cloudformation", region_name=REGION),
            "sm": boto3.client("sagemaker", region_name=REGION),
        }


def deploy(cfn: Any, body: dict[str, Any], update: bool = False) -> dict[str, Any]:
    call = cfn.update_stack if update else cfn.create_stack
    call(StackName=STACK, TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_IAM"])
    return cfn.describe_stacks(StackName=STACK)["Stacks"][0]


def the_endpoint(sm: Any) -> dict[str, Any]:
    endpoints = sm.list_endpoints()["Endpoints"]
    assert len(endpoints) == 1, endpoints
    return sm.describe_endpoint(EndpointName=endpoints[0]["EndpointName"])


def split(endpoint: dict[str, Any]) -> dict[str, tuple[float, int]]:
    return {v["VariantName"]: (v["CurrentWeight"], v["CurrentInstanceCount"]) for v in endpoint["ProductionVariants"]}


def redeployed(template: dict[str, Any], retain: bool = True, timeout: int = 2400) -> dict[str, Any]:
    """A later `cdk deploy` that changes the endpoint config (here the neuron start-up timeout).

    On AWS the changed config is replaced under a new generated name and the endpoint's
    `EndpointConfigName` (a GetAtt) changes with it. moto's CloudFormation diffs templates
    textually and does not cascade replacements, so the replacement is spelled out as a new
    logical id, which makes the endpoint itself change as it would on AWS.
    """
    body = copy.deepcopy(template)
    resources = body["Resources"]
    old_id = next(k for k, v in resources.items() if v["Type"] == "AWS::SageMaker::EndpointConfig")
    config = resources.pop(old_id)
    config["Properties"]["ProductionVariants"][0]["ContainerStartupHealthCheckTimeoutInSeconds"] = timeout
    new_id = f"{old_id}T{timeout}"
    resources[new_id] = config
    endpoint = next(v for v in resources.values() if v["Type"] == "AWS::SageMaker::Endpoint")
    endpoint["Properties"]["EndpointConfigName"] = {"Fn::GetAtt": [new_id, "EndpointConfigName"]}
    if not retain:
        endpoint["Properties"]["RetainAllVariantProperties"] = False
    return body


def test_stack_creates_the_endpoint_with_both_variants_and_initial_weights(
    aws: dict[str, Any], template: dict[str, Any]
) -> None:
    stack = deploy(aws["cfn"], template)
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    endpoint = the_endpoint(aws["sm"])
    assert endpoint["EndpointStatus"] == "InService"
    assert split(endpoint) == {
        "neuron": (CONFIG.initial_weights.neuron, CONFIG.variants.neuron.initial_count),
        "gpu": (CONFIG.initial_weights.gpu, CONFIG.variants.gpu.initial_count),
    }
    config = aws["sm"].describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    types = {v["VariantName"]: v["InstanceType"] for v in config["ProductionVariants"]}
    assert types == {"neuron": "ml.inf2.xlarge", "gpu": "ml.g5.xlarge"}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["VariantNames"] == "neuron,gpu"


def test_stack_update_mid_canary_keeps_router_weights_and_autoscaled_counts(
    aws: dict[str, Any], template: dict[str, Any]
) -> None:
    deploy(aws["cfn"], template)
    name = the_endpoint(aws["sm"])["EndpointName"]
    before = the_endpoint(aws["sm"])["EndpointConfigName"]
    # Mid-canary: the router moved 30% to neuron, autoscaling grew neuron to 3 instances.
    aws["sm"].update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "neuron", "DesiredWeight": 30, "DesiredInstanceCount": 3},
            {"VariantName": "gpu", "DesiredWeight": 70},
        ],
    )
    assert deploy(aws["cfn"], redeployed(template), update=True)["StackStatus"] == "UPDATE_COMPLETE"
    endpoint = the_endpoint(aws["sm"])
    assert endpoint["EndpointConfigName"] != before  # the update really swapped the config
    assert split(endpoint) == {"neuron": (30.0, 3), "gpu": (70.0, CONFIG.variants.gpu.initial_count)}


def test_without_retain_the_same_update_would_reset_the_canary(aws: dict[str, Any], template: dict[str, Any]) -> None:
    # The control for the test above: it is RetainAllVariantProperties that keeps the split.
    deploy(aws["cfn"], redeployed(template, retain=False, timeout=1800))
    name = the_endpoint(aws["sm"])["EndpointName"]
    aws["sm"].update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[{"VariantName": "neuron", "DesiredWeight": 30, "DesiredInstanceCount": 3}],
    )
    deploy(aws["cfn"], redeployed(template, retain=False, timeout=2400), update=True)
    reset = (CONFIG.initial_weights.neuron, CONFIG.variants.neuron.initial_count)
    assert split(the_endpoint(aws["sm"]))["neuron"] == reset
