"""Helpers for the routing adapter tests: a two-variant endpoint in (patched) moto, fed metrics.

Not a conftest: imported explicitly by the tests that use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:latest"


def create_endpoint(sm: Any, name: str, *, neuron_weight: float = 0.0, gpu_weight: float = 100.0,
                    neuron_count: int = 1, gpu_count: int = 2, neuron_type: str = "ml.inf2.xlarge",
                    gpu_type: str = "ml.g5.xlarge", variants: tuple[str, ...] = ("neuron", "gpu")) -> None:
    """An InService endpoint with production variants neuron (inf2) and gpu (g5)."""
    spec = {"neuron": (neuron_type, neuron_count, neuron_weight), "gpu": (gpu_type, gpu_count, gpu_weight)}
    production = []
    for variant in variants:
        instance_type, count, weight = spec.get(variant, (gpu_type, 1, 1.0))
        model = f"{name}-{variant}"
        sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
        production.append({"VariantName": variant, "ModelName": model, "InstanceType": instance_type,
                           "InitialInstanceCount": count, "InitialVariantWeight": weight})
    sm.create_endpoint_config(EndpointConfigName=f"{name}-config", ProductionVariants=production)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")


def feed_minute(cw: Any, endpoint: str, variant: str, minute: datetime, *, invocations: int,
                latency_ms: float = 50.0, p99_ms: float | None = None, errors_5xx: int = 0,
                instances: int = 1) -> None:
    """Publish one minute of a variant's SageMaker metrics as SageMaker would (latency in microseconds).

    The latency distribution is a histogram: 98% of requests at latency_ms, 2% at p99_ms (so p99
    lands on p99_ms), sent with Values/Counts.
    """
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    ts = minute + timedelta(seconds=30)
    data: list[dict[str, Any]] = [
        {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": ts, "Value": float(invocations), "Unit": "None"},
        {"MetricName": "Invocation5XXErrors", "Dimensions": dims, "Timestamp": ts, "Value": float(errors_5xx),
         "Unit": "None"},
        {"MetricName": "Invocation4XXErrors", "Dimensions": dims, "Timestamp": ts, "Value": 0.0, "Unit": "None"},
        {"MetricName": "InvocationsPerInstance", "Dimensions": dims, "Timestamp": ts,
         "Value": float(invocations) / max(1, instances), "Unit": "None"},
    ]
    if invocations > 0:
        tail = max(1, round(invocations * 0.02))
        body = max(0, invocations - tail)
        values = [latency_ms * 1000.0, (p99_ms if p99_ms is not None else latency_ms) * 1000.0]
        counts = [float(body), float(tail)]
        data.append({"MetricName": "ModelLatency", "Dimensions": dims, "Timestamp": ts, "Values": values,
                     "Counts": counts, "Unit": "Microseconds"})
    cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=data)


def feed_split(cw: Any, endpoint: str, minute: datetime, *, total: int, neuron_share: float,
               neuron_p99_ms: float = 60.0, gpu_p99_ms: float = 60.0, neuron_5xx: int = 0) -> None:
    """One minute of traffic split by share across both variants."""
    neuron = round(total * neuron_share / 100.0)
    feed_minute(cw, endpoint, "neuron", minute, invocations=neuron, latency_ms=40.0, p99_ms=neuron_p99_ms,
                errors_5xx=neuron_5xx)
    feed_minute(cw, endpoint, "gpu", minute, invocations=total - neuron, latency_ms=45.0, p99_ms=gpu_p99_ms)


@contextlib.contextmanager
def cli_endpoint(tmp_path: Path, example_data: dict[str, Any], write_config: Callable[[dict[str, Any]], Path],
                 **endpoint: Any) -> Iterator[dict[str, Any]]:
    """A CLI test's world: a 3-step canary config with its state under tmp_path, an endpoint in moto
    (create_endpoint's keyword arguments). Yields config path, name, SageMaker client, tmp_path."""
    import boto3

    from toolkit.local.server import patched_mock_aws

    data = example_data
    data["canary"] = {"steps": [10, 50, 100], "min_bake_minutes": 1, "max_bake_minutes": 10, "min_sample": 50}
    data["state_dir"] = str(tmp_path / "state")
    path = write_config(data)
    with patched_mock_aws():
        sm = boto3.client("sagemaker", region_name="us-east-1")
        create_endpoint(sm, data["name"], **endpoint)
        yield {"config": str(path), "name": data["name"], "sm": sm, "tmp": tmp_path}
