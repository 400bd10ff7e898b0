"""The synthesized stack for examples/hybrid.yaml: variants, retain settings, autoscaling, alarms, role."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.cdk.conftest import Synth, synth
from tests.conftest import EXAMPLE_CONFIG
from toolkit.config import load_config

pytestmark = pytest.mark.slow

CONFIG = load_config(EXAMPLE_CONFIG)


@pytest.fixture(scope="module")
def stack() -> Synth:
    return synth(EXAMPLE_CONFIG)


def variants(stack: Synth) -> dict[str, dict[str, Any]]:
    config = stack.only("AWS::SageMaker::EndpointConfig")
    return {v["VariantName"]: v for v in config["Properties"]["ProductionVariants"]}


def test_endpoint_config_has_exactly_the_neuron_and_gpu_variants(stack: Synth) -> None:
    assert list(variants(stack)) == ["neuron", "gpu"]
    for name, variant in variants(stack).items():
        assert variant["InstanceType"] == CONFIG.variant(name).instance_type
        assert variant["InitialInstanceCount"] == CONFIG.variant(name).initial_count


def test_initial_weights_come_from_the_config_percentages(stack: Synth) -> None:
    weights = {name: v["InitialVariantWeight"] for name, v in variants(stack).items()}
    assert weights == {"neuron": CONFIG.initial_weights.neuron, "gpu": CONFIG.initial_weights.gpu}


def test_endpoint_retains_weights_and_counts_across_stack_updates(stack: Synth) -> None:
    endpoint = stack.only("AWS::SageMaker::Endpoint")["Properties"]
    assert endpoint["RetainAllVariantProperties"] is True
    # Nothing excluded: the router keeps DesiredWeight, autoscaling keeps DesiredInstanceCount.
    assert endpoint["ExcludeRetainedVariantProperties"] == []
    assert endpoint["EndpointName"] == CONFIG.name


def test_model_and_endpoint_config_names_are_left_to_cloudformation(stack: Synth) -> None:
    for model in stack.resources("AWS::SageMaker::Model").values():
        assert "ModelName" not in model["Properties"]
    assert "EndpointConfigName" not in stack.only("AWS::SageMaker::EndpointConfig")["Properties"]


def test_neuron_variant_gets_raised_timeouts_and_volume_gpu_gets_neither(stack: Synth) -> None:
    neuron, gpu = variants(stack)["neuron"], variants(stack)["gpu"]
    assert neuron["ContainerStartupHealthCheckTimeoutInSeconds"] == CONFIG.variants.neuron.startup_timeout_seconds
    assert neuron["ModelDataDownloadTimeoutInSeconds"] == CONFIG.variants.neuron.download_timeout_seconds
    assert neuron["VolumeSizeInGB"] == CONFIG.variants.neuron.volume_size_gb
    assert "VolumeSizeInGB" not in gpu


def test_models_use_the_artifacts_and_per_hardware_images(stack: Synth) -> None:
    containers = [m["Properties"]["PrimaryContainer"] for m in stack.resources("AWS::SageMaker::Model").values()]
    by_artifact = {c["ModelDataUrl"]: c for c in containers}
    neuron = by_artifact[CONFIG.variants.neuron.model.artifact]
    gpu = by_artifact[CONFIG.variants.gpu.model.artifact]
    assert "neuronx" in neuron["Image"] and "-gpu-" in gpu["Image"]
    assert neuron["Environment"] == CONFIG.variants.neuron.model.environment


def test_one_scalable_target_per_variant_on_the_sagemaker_service_linked_role(stack: Synth) -> None:
    targets = {
        t["Properties"]["ResourceId"]: t
        for t in stack.resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
    }
    assert set(targets) == {f"endpoint/{CONFIG.name}/variant/neuron", f"endpoint/{CONFIG.name}/variant/gpu"}
    endpoint_id = next(iter(stack.resources("AWS::SageMaker::Endpoint")))
    for name in ("neuron", "gpu"):
        target = targets[f"endpoint/{CONFIG.name}/variant/{name}"]
        props = target["Properties"]
        assert props["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
        assert props["ServiceNamespace"] == "sagemaker"
        assert props["MinCapacity"] == max(1, CONFIG.variant(name).min_count)
        assert props["MaxCapacity"] == CONFIG.variant(name).max_count
        role = stack.stack.resolve(props["RoleARN"])
        assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in str(role)
        assert endpoint_id in target["DependsOn"]
    # The service-linked role is referenced, never created: the only role is the execution role.
    assert len(stack.resources("AWS::IAM::Role")) == 1


def test_target_tracking_uses_each_variants_own_invocation_target(stack: Synth) -> None:
    targets = stack.resources("AWS::ApplicationAutoScaling::ScalableTarget")
    variant_of = {logical: t["Properties"]["ResourceId"].rsplit("/", 1)[1] for logical, t in targets.items()}
    seen = {}
    for policy in stack.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values():
        props = policy["Properties"]
        tracking = props["TargetTrackingScalingPolicyConfiguration"]
        assert (
            tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
            == "SageMakerVariantInvocationsPerInstance"
        )
        seen[variant_of[props["ScalingTargetId"]["Ref"]]] = tracking["TargetValue"]
    assert seen == {
        "neuron": CONFIG.variants.neuron.target_invocations_per_instance,
        "gpu": CONFIG.variants.gpu.target_invocations_per_instance,
    }
    assert seen["neuron"] != seen["gpu"]  # the example pins different rates per hardware


def test_latency_alarms_compare_p99_model_latency_in_microseconds(stack: Synth) -> None:
    alarms = [
        a["Properties"]
        for a in stack.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ModelLatency"
    ]
    assert sorted(d["Value"] for a in alarms for d in a["Dimensions"] if d["Name"] == "VariantName") == [
        "gpu",
        "neuron",
    ]
    for alarm in alarms:
        assert alarm["Namespace"] == "AWS/SageMaker"
        assert alarm["ExtendedStatistic"] == "p99"
        assert alarm["Threshold"] == CONFIG.slo.p99_latency_ms * 1000  # 150 ms -> 150000 µs
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"


def test_error_rate_alarms_divide_5xx_by_invocations_per_variant(stack: Synth) -> None:
    alarms = [
        a["Properties"] for a in stack.resources("AWS::CloudWatch::Alarm").values() if "Metrics" in a["Properties"]
    ]
    assert len(alarms) == 2
    seen = set()
    for alarm in alarms:
        assert alarm["Threshold"] == CONFIG.slo.max_error_rate
        assert alarm["TreatMissingData"] == "notBreaching"
        expression = next(m for m in alarm["Metrics"] if "Expression" in m)
        inputs = {m["Id"]: m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m}
        names = {m["MetricName"] for m in inputs.values()}
        assert names == {"Invocation5XXErrors", "Invocations"}
        err = next(i for i, m in inputs.items() if m["MetricName"] == "Invocation5XXErrors")
        inv = next(i for i, m in inputs.items() if m["MetricName"] == "Invocations")
        assert expression["Expression"] == f"FILL({err}, 0) / {inv}"
        variant = {d["Value"] for m in inputs.values() for d in m["Dimensions"] if d["Name"] == "VariantName"}
        seen |= variant
    assert seen == {"neuron", "gpu"}


def test_execution_role_has_no_wildcard_actions_and_no_managed_policies(stack: Synth) -> None:
    role = stack.only("AWS::IAM::Role")["Properties"]
    assert "ManagedPolicyArns" not in role
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    actions: list[str] = []
    for policy in stack.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            found = statement["Action"]
            actions += [found] if isinstance(found, str) else found
    assert actions and not [a for a in actions if "*" in a]
    assert "ecr:GetAuthorizationToken" in actions and "s3:GetObject" in actions


def test_artifact_reads_are_limited_to_the_artifact_prefixes(stack: Synth) -> None:
    statements = [
        s for p in stack.resources("AWS::IAM::Policy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    reads = next(s for s in statements if s.get("Sid") == "ReadModelArtifacts")
    assert sorted(reads["Resource"]) == [
        "arn:aws:s3:::my-models-bucket/bert-classifier/gpu/*",
        "arn:aws:s3:::my-models-bucket/bert-classifier/neuron/*",
    ]
    pulls = next(s for s in statements if s.get("Sid") == "PullModelImages")
    assert all(":repository/huggingface-pytorch-inference" in r for r in pulls["Resource"])
    logs = next(s for s in statements if s.get("Sid") == "WriteEndpointLogs")
    assert all(f"/aws/sagemaker/Endpoints/{CONFIG.name}" in str(r) for r in logs["Resource"])


def test_dashboard_blends_cost_per_1k_from_both_variants_prices(stack: Synth) -> None:
    dashboard = stack.only("AWS::CloudWatch::Dashboard")["Properties"]
    assert dashboard["DashboardName"] == f"{CONFIG.name}-hybrid-{CONFIG.region}"  # dashboards are account-global
    body = str(stack.stack.resolve(dashboard["DashboardBody"]))
    # $/instance-minute of ml.inf2.xlarge (0.99/60) and ml.g5.xlarge (1.408/60) from toolkit.pricing.
    assert f"{0.99 / 60:.6f}" in body and f"{1.408 / 60:.6f}" in body
    for needle in ("InvocationsPerInstance", "ModelLatency", "Invocation5XXErrors", "p50", "p99"):
        assert needle in body


def test_stack_outputs_name_the_endpoint_variants_and_dashboard(stack: Synth) -> None:
    stack.template.has_output("EndpointName", {"Value": CONFIG.name})
    stack.template.has_output("VariantNames", {"Value": "neuron,gpu"})
    stack.template.has_output("DashboardName", {"Value": f"{CONFIG.name}-hybrid-{CONFIG.region}"})
    stack.template.has_output("ExecutionRoleArn", {"Value": Match.any_value()})


def test_stack_targets_the_config_region_without_lookups(stack: Synth) -> None:
    assert stack.stack.region == CONFIG.region
    assert stack.stack.resolve(stack.stack.account) == {"Ref": "AWS::AccountId"}  # account-agnostic
