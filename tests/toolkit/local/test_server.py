"""The embedded AWS server: real boto3 over HTTP, patched, on a free port, stopped cleanly."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from toolkit.local.server import EmbeddedAws

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_server_serves_patched_sagemaker_and_cloudwatch_over_http(aws_server):
    sm = aws_server.client("sagemaker")
    assert aws_server.endpoint_url.startswith("http://127.0.0.1:")
    sm.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                    PrimaryContainer={"Image": "img"})
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "neuron", "ModelName": "m", "InstanceType": "ml.inf2.xlarge", "InitialInstanceCount": 1,
         "InitialVariantWeight": 0}])
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c", RetainAllVariantProperties=True)
    assert sm.describe_endpoint(EndpointName="ep")["ProductionVariants"][0]["CurrentWeight"] == 0.0

    cw = aws_server.client("cloudwatch")
    dims = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "neuron"}]
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "ModelLatency", "Dimensions": dims, "Timestamp": T0, "Values": [10.0, 20.0],
         "Counts": [99, 1]}])
    result = cw.get_metric_data(MetricDataQueries=[{"Id": "p", "MetricStat": {"Metric": {
        "Namespace": "AWS/SageMaker", "MetricName": "ModelLatency", "Dimensions": dims}, "Period": 60,
        "Stat": "p99"}}], StartTime=T0, EndTime=T0 + timedelta(minutes=1))
    assert result["MetricDataResults"][0]["Values"] == [10.0]


def test_each_server_starts_from_an_empty_account():
    with EmbeddedAws() as first:
        first.client("sagemaker").create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                                               PrimaryContainer={"Image": "img"})
    with EmbeddedAws() as second:
        assert second.client("sagemaker").list_models()["Models"] == []


def test_export_env_points_plain_boto3_at_the_server_and_restores_env(monkeypatch):
    import boto3

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with EmbeddedAws(export_env=True) as aws:
        assert os.environ["AWS_ENDPOINT_URL"] == aws.endpoint_url
        assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_server_stops_on_exit():
    import botocore.exceptions

    with EmbeddedAws() as aws:
        client = aws.client("sagemaker")
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        client.list_models()


def test_patched_mock_aws_runs_in_process(patched_moto):
    import boto3

    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                    PrimaryContainer={"Image": "img"})
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "gpu", "ModelName": "m", "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 1}])
