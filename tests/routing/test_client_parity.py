"""HybridClient online parity: mirrors some neuron answers to gpu in the background, compares, publishes counts."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from routing.client import HybridClient
from routing.core.model import CLIENT_METRICS_NAMESPACE, PARITY_AGREED_METRIC, PARITY_COMPARED_METRIC, TARGETED_METRIC
from toolkit.parity import comparator

ENDPOINT = "bert-classifier"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Runtime:
    """Neuron answers `neuron_label` to untargeted calls; gpu (TargetVariant=gpu) answers POSITIVE."""

    def __init__(self, neuron_label: str = "POSITIVE", gpu_hook: Any = None) -> None:
        self.neuron_label = neuron_label
        self.gpu_hook = gpu_hook
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        with self.lock:
            self.calls.append(params)
        if params.get("TargetVariant") == "gpu":
            if self.gpu_hook is not None:
                self.gpu_hook()
            return {"Body": json.dumps({"label": "POSITIVE"}).encode(), "InvokedProductionVariant": "gpu"}
        return {"Body": json.dumps({"label": self.neuron_label}).encode(), "InvokedProductionVariant": "neuron"}

    def gpu_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c.get("TargetVariant") == "gpu"]


def labels(example_config: Any) -> Any:
    return comparator(example_config.parity.model_copy(update={"comparator": "labels"}))


def make(runtime: Any, compare: Any, **settings: Any) -> HybridClient:
    settings.setdefault("publish_metrics", False)
    settings.setdefault("parity_fraction", 1.0)
    settings.setdefault("parity_max_per_second", 1000.0)
    return HybridClient(ENDPOINT, runtime_client=runtime, clock=settings.pop("clock", Clock()),
                        parity_compare=compare, **settings)


def test_a_mirrored_request_goes_to_gpu_targeted_and_the_caller_gets_neurons_answer(example_config):
    runtime = Runtime(neuron_label="NEGATIVE")
    client = make(runtime, labels(example_config))
    result = client.invoke({"inputs": "fine"}, CustomAttributes="trace=1")
    assert client.wait_for_mirrors(5)
    assert result.json() == {"label": "NEGATIVE"} and result.served_by == "neuron"
    [mirror] = runtime.gpu_calls()
    assert mirror["TargetVariant"] == "gpu" and mirror["Body"] == runtime.calls[0]["Body"]
    assert mirror["CustomAttributes"] == "trace=1"
    parity = client.snapshot()["parity"]
    assert parity == {"compared": 1, "agreed": 0, "dropped": 0, "errors": 0}
    assert client.snapshot()["targeted"] == {"gpu": 1}  # the controller sees the mirror as targeted gpu traffic


def test_agreement_is_counted_per_comparison(example_config):
    client = make(Runtime(), labels(example_config))
    for _ in range(5):
        client.invoke({"inputs": "x"})
    assert client.wait_for_mirrors(5)
    assert client.snapshot()["parity"]["compared"] == 5 and client.snapshot()["parity"]["agreed"] == 5


def test_the_caller_returns_before_its_mirror_is_answered(example_config):
    caller_back = threading.Event()
    seen: list[bool] = []
    # The gpu mirror waits for the caller to be back: a mirror on the caller's path would never see it.
    runtime = Runtime(gpu_hook=lambda: seen.append(caller_back.wait(timeout=10)))
    client = make(runtime, labels(example_config))
    client.invoke({"inputs": "x"})
    caller_back.set()
    assert client.wait_for_mirrors(15)
    assert seen == [True]


def test_a_failing_mirror_never_reaches_the_caller_and_is_not_a_disagreement(example_config):
    def fail() -> None:
        raise ClientError({"Error": {"Code": "InternalFailure"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                          "InvokeEndpoint")

    client = make(Runtime(gpu_hook=fail), labels(example_config))
    result = client.invoke({"inputs": "x"})
    assert client.wait_for_mirrors(5)
    assert result.served_by == "neuron"
    assert client.snapshot()["parity"] == {"compared": 0, "agreed": 0, "dropped": 0, "errors": 1}
    assert client.snapshot()["failures"] == {}  # the caller's request did not fail


def test_mirrors_over_the_in_flight_cap_are_dropped_not_queued(example_config):
    release = threading.Event()
    client = make(Runtime(gpu_hook=lambda: release.wait(timeout=10)), labels(example_config), parity_max_in_flight=2)
    for _ in range(5):
        client.invoke({"inputs": "x"})
    release.set()
    assert client.wait_for_mirrors(15)
    parity = client.snapshot()["parity"]
    assert (parity["compared"], parity["dropped"]) == (2, 3)


def test_mirrors_stay_within_the_per_second_budget(example_config):
    clock = Clock()
    client = make(Runtime(), labels(example_config), parity_max_per_second=2.0, clock=clock)
    for _ in range(6):
        client.invoke({"inputs": "x"})
        assert client.wait_for_mirrors(5)
    assert client.snapshot()["parity"]["compared"] == 2  # a full bucket of 2, no time passed
    clock.t += 1.0
    client.invoke({"inputs": "x"})
    assert client.wait_for_mirrors(5)
    assert client.snapshot()["parity"]["compared"] == 3


def test_only_the_configured_fraction_is_mirrored(example_config):
    draws = iter([0.01, 0.5, 0.04, 0.9])
    client = make(Runtime(), labels(example_config), parity_fraction=0.05, rng=lambda: next(draws))
    for _ in range(4):
        client.invoke({"inputs": "x"})
    assert client.wait_for_mirrors(5)
    assert client.snapshot()["parity"]["compared"] == 2


def test_gpu_served_answers_and_an_off_switch_are_never_mirrored(example_config):
    runtime = Runtime()
    client = make(runtime, labels(example_config))
    client.invoke({"inputs": "x"}, TargetVariant="gpu")  # gpu answered: nothing to compare with
    off = make(runtime, labels(example_config), parity_fraction=0.0)
    off.invoke({"inputs": "x"})
    assert client.wait_for_mirrors(5) and off.wait_for_mirrors(5)
    assert len(runtime.gpu_calls()) == 1
    assert client.snapshot()["parity"]["compared"] == 0 and off.snapshot()["parity"]["compared"] == 0


def test_from_config_mirrors_with_the_configured_comparator(example_config):
    cfg = example_config.model_copy(update={"parity": example_config.parity.model_copy(update={
        "comparator": "labels", "online": example_config.parity.online.model_copy(update={"mirror_fraction": 0.2})})})
    client = HybridClient.from_config(cfg, runtime_client=Runtime(neuron_label="NEGATIVE"), publish_metrics=False,
                                      rng=lambda: 0.1)
    assert client.settings.parity_fraction == 0.2
    client.invoke({"inputs": "x"})
    assert client.wait_for_mirrors(5)
    assert client.snapshot()["parity"] == {"compared": 1, "agreed": 0, "dropped": 0, "errors": 0}


def test_parity_counts_are_published_with_the_controllers_names_on_the_neuron_dimension(example_config):
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    clock = Clock()

    def datum(metric: str, variant: str, value: float) -> dict[str, Any]:
        return {"MetricName": metric, "Value": value, "Unit": "Count", "Dimensions": [
            {"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]}

    with Stubber(cloudwatch) as stub:
        stub.add_response("put_metric_data", {}, {"Namespace": CLIENT_METRICS_NAMESPACE, "MetricData": [
            datum(PARITY_AGREED_METRIC, "neuron", 1.0), datum(PARITY_COMPARED_METRIC, "neuron", 2.0),
            datum(TARGETED_METRIC, "gpu", 2.0)]})
        labels_of = iter(["POSITIVE", "NEGATIVE"])
        runtime = Runtime()
        client = make(runtime, labels(example_config), cloudwatch_client=cloudwatch, publish_metrics=True,
                      metrics_flush_seconds=60, clock=clock)
        for _ in range(2):
            runtime.neuron_label = next(labels_of)
            client.invoke({"inputs": "x"})
            assert client.wait_for_mirrors(5)
        client.close()
        stub.assert_no_pending_responses()
    assert (PARITY_COMPARED_METRIC, PARITY_AGREED_METRIC) == ("ParityCompared", "ParityAgreed")


@pytest.mark.parametrize("bad", [{"parity_fraction": 1.5}, {"parity_max_in_flight": 0}, {"parity_max_per_second": 0}])
def test_bad_parity_settings_are_one_line_errors(bad):
    from toolkit.errors import UserError

    with pytest.raises(UserError, match=r"parity_fraction must lie in 0\.\.1"):
        HybridClient(ENDPOINT, runtime_client=Runtime(), **bad)
