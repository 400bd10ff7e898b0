"""Each moto gap closed by toolkit.local.compat: the gap still exists unpatched, and the patch is right.

The `*_gap_still_exists` tests call moto's original code. When one fails, moto fixed that gap:
delete the patch and its tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from toolkit.local import compat

compat.apply()

ACCOUNT = "123456789012"
REGION = "us-east-1"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DIMS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "gpu"}]


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION), boto3.client("cloudwatch", region_name=REGION)


def _endpoint(sm: Any, name: str = "ep", neuron_weight: float = 0.0, config: str = "cfg1") -> None:
    if not sm.list_models()["Models"]:
        sm.create_model(ModelName="m", ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/r",
                        PrimaryContainer={"Image": "img"})
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[
        {"VariantName": "neuron", "ModelName": "m", "InstanceType": "ml.inf2.xlarge", "InitialInstanceCount": 1,
         "InitialVariantWeight": neuron_weight},
        {"VariantName": "gpu", "ModelName": "m", "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 2,
         "InitialVariantWeight": 100 - neuron_weight},
    ])
    if name not in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]:
        sm.create_endpoint(EndpointName=name, EndpointConfigName=config)


def _variants(sm: Any, name: str = "ep") -> dict[str, dict[str, Any]]:
    return {v["VariantName"]: v for v in sm.describe_endpoint(EndpointName=name)["ProductionVariants"]}


def test_apply_is_idempotent():
    from moto.cloudwatch.models import CloudWatchBackend

    patched = CloudWatchBackend.put_metric_data
    compat.apply()
    compat.apply()
    assert CloudWatchBackend.put_metric_data is patched
    assert compat.applied()


# --- instance_types -------------------------------------------------------------------------------


def test_instance_types_gap_still_exists():
    from moto.sagemaker.exceptions import ValidationError

    with pytest.raises(ValidationError):
        compat.ORIGINALS["instance_types"](None, "ml.inf2.xlarge")


def test_endpoint_config_accepts_inf2_and_g5_but_still_rejects_unknown_types(aws):
    sm, _ = aws
    _endpoint(sm)
    described = sm.describe_endpoint_config(EndpointConfigName="cfg1")["ProductionVariants"]
    assert [v["InstanceType"] for v in described] == ["ml.inf2.xlarge", "ml.g5.xlarge"]
    with pytest.raises(sm.exceptions.ClientError, match="instanceType"):
        sm.create_endpoint_config(EndpointConfigName="bad", ProductionVariants=[
            {"VariantName": "x", "ModelName": "m", "InstanceType": "ml.zz9.xlarge", "InitialInstanceCount": 1}])


# --- zero_weight ----------------------------------------------------------------------------------


def test_zero_weight_gap_still_exists():
    summaries = compat.ORIGINALS["zero_weight"](None, [
        {"VariantName": "neuron", "InitialVariantWeight": 0.0, "InitialInstanceCount": 1}])
    assert "CurrentWeight" not in summaries[0]


def test_create_endpoint_keeps_weight_zero_and_defaults_missing_weight_to_one(aws):
    sm, _ = aws
    _endpoint(sm)
    variants = _variants(sm)
    assert variants["neuron"]["CurrentWeight"] == 0.0
    assert variants["gpu"]["CurrentWeight"] == 100.0
    sm.create_endpoint_config(EndpointConfigName="noweight", ProductionVariants=[
        {"VariantName": "gpu", "ModelName": "m", "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="ep2", EndpointConfigName="noweight")
    assert _variants(sm, "ep2")["gpu"]["DesiredWeight"] == 1.0


# --- partial_update -------------------------------------------------------------------------------


def test_partial_update_gap_still_exists(aws, monkeypatch):
    from moto.sagemaker.models import SageMakerModelBackend

    sm, _ = aws
    _endpoint(sm)
    monkeypatch.setattr(SageMakerModelBackend, "update_endpoint_weights_and_capacities",
                        compat.ORIGINALS["partial_update"])
    sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": 10}])
    assert _variants(sm)["neuron"].get("CurrentInstanceCount") is None


def test_weight_only_update_keeps_instance_count(aws):
    sm, _ = aws
    _endpoint(sm)
    sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": 10}, {"VariantName": "gpu", "DesiredInstanceCount": 3}])
    variants = _variants(sm)
    assert (variants["neuron"]["CurrentWeight"], variants["neuron"]["CurrentInstanceCount"]) == (10.0, 1)
    assert (variants["gpu"]["CurrentWeight"], variants["gpu"]["CurrentInstanceCount"]) == (100.0, 3)


def test_weight_update_rejects_unknown_variant(aws):
    sm, _ = aws
    _endpoint(sm)
    with pytest.raises(sm.exceptions.ClientError, match="not present"):
        sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
            {"VariantName": "tpu", "DesiredWeight": 10}])


def test_async_updates_stay_updating_until_settled_and_refuse_a_second_update(aws):
    sm, _ = aws
    _endpoint(sm)
    compat.set_async_updates(True)
    try:
        sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
            {"VariantName": "neuron", "DesiredWeight": 10}])
        described = sm.describe_endpoint(EndpointName="ep")
        neuron = _variants(sm)["neuron"]
        assert described["EndpointStatus"] == "Updating"
        assert (neuron["CurrentWeight"], neuron["DesiredWeight"]) == (0.0, 10.0)
        with pytest.raises(sm.exceptions.ClientError, match="in-progress"):
            sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
                {"VariantName": "neuron", "DesiredWeight": 20}])
        assert compat.settle_endpoints() == 1
        assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
        assert _variants(sm)["neuron"]["CurrentWeight"] == 10.0
    finally:
        compat.set_async_updates(False)


# --- update_endpoint ------------------------------------------------------------------------------


def test_update_endpoint_gap_still_exists():
    assert compat.ORIGINALS["update_endpoint"] is None


def test_update_endpoint_with_retain_keeps_live_weights_and_counts(aws):
    sm, _ = aws
    _endpoint(sm)
    sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": 30, "DesiredInstanceCount": 4}])
    _endpoint(sm, config="cfg2")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="cfg2", RetainAllVariantProperties=True)
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointConfigName"] == "cfg2"
    assert (_variants(sm)["neuron"]["CurrentWeight"], _variants(sm)["neuron"]["CurrentInstanceCount"]) == (30.0, 4)


def test_update_endpoint_without_retain_resets_to_the_config_and_excluded_properties_reset(aws):
    sm, _ = aws
    _endpoint(sm)
    sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": 30, "DesiredInstanceCount": 4}])
    _endpoint(sm, config="cfg2")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="cfg2", RetainAllVariantProperties=True,
                       ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredWeight"}])
    assert (_variants(sm)["neuron"]["CurrentWeight"], _variants(sm)["neuron"]["CurrentInstanceCount"]) == (0.0, 4)
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="cfg1")
    assert _variants(sm)["neuron"]["CurrentInstanceCount"] == 1


def test_update_endpoint_with_unknown_config_fails(aws):
    sm, _ = aws
    _endpoint(sm)
    with pytest.raises(sm.exceptions.ClientError, match="endpoint configuration"):
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="nope")


# --- cfn_endpoint ---------------------------------------------------------------------------------


def _template(config_suffix: str, retain: bool) -> str:
    variants = [
        {"VariantName": "neuron", "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
         "InstanceType": "ml.inf2.xlarge", "InitialInstanceCount": 1, "InitialVariantWeight": 0},
        {"VariantName": "gpu", "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
         "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 1, "InitialVariantWeight": 100},
    ]
    return json.dumps({"Resources": {
        "Model": {"Type": "AWS::SageMaker::Model", "Properties": {
            "ExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/r", "PrimaryContainer": {"Image": "img"}}},
        f"Config{config_suffix}": {"Type": "AWS::SageMaker::EndpointConfig",
                                   "Properties": {"ProductionVariants": variants}},
        "Endpoint": {"Type": "AWS::SageMaker::Endpoint", "Properties": {
            "EndpointName": "fixed-name",
            "EndpointConfigName": {"Fn::GetAtt": [f"Config{config_suffix}", "EndpointConfigName"]},
            "RetainAllVariantProperties": retain}},
    }})


def test_cfn_endpoint_gap_still_exists(aws, monkeypatch):
    from moto.sagemaker.models import FakeEndpoint

    sm, _ = aws
    monkeypatch.setattr(FakeEndpoint, "create_from_cloudformation_json", compat.ORIGINALS["cfn_endpoint"])
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName="s", TemplateBody=_template("A", True))
    assert "fixed-name" not in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]


def test_cfn_endpoint_honours_name_and_retains_live_weights_on_update(aws):
    sm, _ = aws
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.create_stack(StackName="s", TemplateBody=_template("A", True))
    assert _variants(sm, "fixed-name")["gpu"]["CurrentWeight"] == 100.0
    first_config = sm.describe_endpoint(EndpointName="fixed-name")["EndpointConfigName"]
    sm.update_endpoint_weights_and_capacities(EndpointName="fixed-name", DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": 40}, {"VariantName": "gpu", "DesiredWeight": 60}])
    cfn.update_stack(StackName="s", TemplateBody=_template("B", True))
    described = sm.describe_endpoint(EndpointName="fixed-name")
    assert described["EndpointConfigName"] != first_config
    assert _variants(sm, "fixed-name")["neuron"]["CurrentWeight"] == 40.0


# --- histograms / percentiles ---------------------------------------------------------------------


def _fresh_backend() -> Any:
    from moto.cloudwatch.models import CloudWatchBackend

    return CloudWatchBackend(REGION, ACCOUNT)


def _latency_datum(values: list[float], counts: list[float], at: datetime = T0) -> dict[str, Any]:
    return {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": at, "Values": values, "Counts": counts,
            "Unit": "Microseconds"}


def _query(stat: str, qid: str = "q") -> dict[str, Any]:
    return {"Id": qid, "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency",
                                                 "Dimensions": DIMS}, "Period": 60, "Stat": stat}}


def test_histograms_gap_still_exists():
    backend = _fresh_backend()
    compat.ORIGINALS["histograms"](backend, "AWS/SageMaker", [_latency_datum([1000.0], [500])])
    assert len(backend.metric_data) == 500


def test_percentiles_gap_still_exists():
    backend = _fresh_backend()
    compat.ORIGINALS["histograms"](backend, "AWS/SageMaker", [_latency_datum([1000.0, 2000.0], [5, 5])])
    try:
        results = compat.ORIGINALS["percentiles"](backend, [_query("p99")], T0 - timedelta(minutes=1),
                                                  T0 + timedelta(minutes=1))
    except TypeError:
        return  # moto fails outright: still a gap
    assert None in results[0]["values"]


def test_put_metric_data_stores_one_histogram_per_datum():
    backend = _fresh_backend()
    backend.put_metric_data("AWS/SageMaker", [_latency_datum([1000.0, 2000.0], [5000, 3000])])
    assert len(backend.metric_data) == 1


def test_get_metric_data_statistics_and_percentiles_from_histograms(aws):
    _, cw = aws
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        _latency_datum([1000.0, 2000.0, 50000.0], [50, 49, 1]),
        _latency_datum([3000.0], [100], at=T0 + timedelta(minutes=1)),
    ])
    stats = ["Sum", "SampleCount", "Average", "Minimum", "Maximum", "p50", "p99", "p100"]
    results = cw.get_metric_data(MetricDataQueries=[_query(s, f"q{i}") for i, s in enumerate(stats)],
                                 StartTime=T0, EndTime=T0 + timedelta(minutes=2), ScanBy="TimestampAscending")
    first = {stats[int(r["Id"][1:])]: r["Values"][0] for r in results["MetricDataResults"]}
    assert first == {"Sum": 50000 + 98000 + 50000, "SampleCount": 100, "Average": 1980.0, "Minimum": 1000.0,
                     "Maximum": 50000.0, "p50": 1000.0, "p99": 2000.0, "p100": 50000.0}
    p99 = next(r for r in results["MetricDataResults"] if r["Id"] == "q6")
    assert p99["Values"] == [2000.0, 3000.0]
    assert [t.astimezone(UTC) for t in p99["Timestamps"]] == [T0, T0 + timedelta(minutes=1)]


def test_get_metric_data_matches_dimensions_exactly_and_omits_empty_minutes(aws):
    _, cw = aws
    other = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "neuron"}]
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        _latency_datum([1000.0], [10]),
        {"MetricName": "ModelLatency", "Dimensions": other, "Timestamp": T0, "Values": [9e6], "Counts": [10]},
        _latency_datum([1000.0], [10], at=T0 + timedelta(minutes=2)),
    ])
    result = cw.get_metric_data(MetricDataQueries=[_query("Maximum")], StartTime=T0,
                                EndTime=T0 + timedelta(minutes=3), ScanBy="TimestampAscending")
    values = result["MetricDataResults"][0]
    assert values["Values"] == [1000.0, 1000.0]
    assert len(values["Timestamps"]) == 2


def test_get_metric_data_keeps_moto_expression_references_and_single_values(aws):
    _, cw = aws
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": T0, "Value": 10.0},
        {"MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": T0, "Value": 30.0},
    ])
    # moto resolves only plain query references in expressions; that is kept, not extended.
    result = cw.get_metric_data(MetricDataQueries=[
        {**_query("Sum", "s"), "ReturnData": False}, {"Id": "e", "Expression": "s"}, _query("p50", "p")],
        StartTime=T0, EndTime=T0 + timedelta(minutes=1))
    by_id = {r["Id"]: r["Values"] for r in result["MetricDataResults"]}
    assert by_id == {"e": [40.0], "p": [10.0]}


def test_percentile_is_nearest_rank_over_counts():
    assert compat.percentile([(5.0, 1), (1.0, 98), (3.0, 1)], 99) == 3.0
    assert compat.percentile([(5.0, 1), (1.0, 98), (3.0, 1)], 50) == 1.0
    assert compat.percentile([(7.0, 1)], 0.1) == 7.0
    assert compat.percentile([], 99) is None


def test_statistic_sets_give_no_percentiles(aws):
    _, cw = aws
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "ModelLatency", "Dimensions": DIMS, "Timestamp": T0,
        "StatisticValues": {"SampleCount": 2, "Sum": 4, "Minimum": 1, "Maximum": 3}}])
    result = cw.get_metric_data(MetricDataQueries=[_query("p99", "p"), _query("Average", "a")],
                                StartTime=T0, EndTime=T0 + timedelta(minutes=1))
    assert {r["Id"]: r["Values"] for r in result["MetricDataResults"]} == {"p": [], "a": [2.0]}


# --- extended_statistics --------------------------------------------------------------------------


def test_extended_statistics_gap_still_exists(aws, monkeypatch):
    from moto.cloudwatch.responses import CloudWatchResponse

    _, cw = aws
    monkeypatch.setattr(CloudWatchResponse, "get_metric_statistics", compat.ORIGINALS["extended_statistics"])
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[_latency_datum([1000.0], [3])])
    points = cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=DIMS,
                                      StartTime=T0, EndTime=T0 + timedelta(minutes=1), Period=60,
                                      ExtendedStatistics=["p99"])["Datapoints"]
    assert all("ExtendedStatistics" not in p for p in points)


def test_get_metric_statistics_returns_extended_statistics(aws):
    _, cw = aws
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[_latency_datum([1000.0, 4000.0], [99, 1])])
    points = cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=DIMS,
                                      StartTime=T0, EndTime=T0 + timedelta(minutes=1), Period=60,
                                      Statistics=["SampleCount"], ExtendedStatistics=["p99", "p99.9"])["Datapoints"]
    assert len(points) == 1
    assert points[0]["SampleCount"] == 100
    assert points[0]["ExtendedStatistics"] == {"p99": 1000.0, "p99.9": 4000.0}


def test_json_auth_errors_gap_still_exists():
    from moto.core.exceptions import AccessDeniedError, JsonRESTError

    assert compat.ORIGINALS["json_auth_errors"] is not None
    denied = AccessDeniedError("arn:aws:iam::123456789012:user/u", "sagemaker:ListModels")
    assert not isinstance(denied, JsonRESTError) and denied.description.startswith("<?xml")
