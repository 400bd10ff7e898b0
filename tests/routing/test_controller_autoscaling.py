"""One owner for instance counts: autoscaled variants are scaled by Application Auto Scaling only.

On the embedded AWS with both variants registered as scalable targets (as the CDK stack does),
the real policy ramps, holds and falls back while "autoscaling" (the test, calling
UpdateEndpointWeightsAndCapacities with a count, as Application Auto Scaling does) changes the
gpu count between ticks. The router never sets an autoscaled variant's DesiredInstanceCount: it
raises the scalable target's MinCapacity to the policy's count, suspends dynamic scale-in while
the canary ramps or falls back and restores it when holding. Each tick sends at most one
SageMaker update.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from routing.adapters.autoscaling import DIMENSION, NAMESPACE, ScalableTargets, VariantScaling, resource_id
from routing.adapters.clock import ManualClock
from routing.adapters.cloudwatch import CloudWatchMetrics
from routing.adapters.json_store import JsonFileStateStore
from routing.adapters.sagemaker import SageMakerRouter
from routing.controller import Controller
from routing.core.model import Phase, Target
from tests.routing._aws import create_endpoint, feed_split
from toolkit.config import load_config
from toolkit.local.server import patched_mock_aws

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TOTAL = 1200


class CountingSageMaker:
    """The SageMaker client, counting UpdateEndpointWeightsAndCapacities calls and what they carried."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.updates: list[list[dict[str, Any]]] = []

    def update_endpoint_weights_and_capacities(self, **kwargs: Any) -> Any:
        self.updates.append(kwargs["DesiredWeightsAndCapacities"])
        return self._client.update_endpoint_weights_and_capacities(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class World:
    def __init__(self, config: Any, tmp_path: Any) -> None:
        self.config = config
        self.name = config.name
        self.sm = boto3.client("sagemaker", region_name="us-east-1")
        self.cw = boto3.client("cloudwatch", region_name="us-east-1")
        self.aas = boto3.client("application-autoscaling", region_name="us-east-1")
        self.counting = CountingSageMaker(self.sm)
        self.minute = T0
        self.clock = ManualClock(T0 + timedelta(seconds=5))
        self.router = SageMakerRouter(self.counting, self.name, ("neuron", "gpu"),
                                      autoscaling=ScalableTargets(self.aas, self.name, ("neuron", "gpu")))
        self.controller = Controller(config, CloudWatchMetrics(self.cw), self.router,
                                     JsonFileStateStore(tmp_path / "state", self.name), self.clock)

    def variant(self, name: str) -> dict[str, Any]:
        described = self.sm.describe_endpoint(EndpointName=self.name)["ProductionVariants"]
        return next(v for v in described if v["VariantName"] == name)

    def share(self) -> float:
        neuron, gpu = self.variant("neuron"), self.variant("gpu")
        return 100.0 * neuron["DesiredWeight"] / (neuron["DesiredWeight"] + gpu["DesiredWeight"])

    def target(self, name: str) -> dict[str, Any]:
        return self.aas.describe_scalable_targets(ServiceNamespace=NAMESPACE, ResourceIds=[resource_id(self.name, name)],
                                                  ScalableDimension=DIMENSION)["ScalableTargets"][0]

    def autoscale(self, variant: str, count: int) -> None:
        """What Application Auto Scaling does between two ticks: set the variant's count."""
        self.sm.update_endpoint_weights_and_capacities(
            EndpointName=self.name, DesiredWeightsAndCapacities=[{"VariantName": variant, "DesiredInstanceCount": count}])

    def tick(self, neuron_p99_ms: float = 60.0) -> Any:
        feed_split(self.cw, self.name, self.minute, total=TOTAL, neuron_share=self.share(), neuron_p99_ms=neuron_p99_ms)
        self.minute += timedelta(minutes=1)
        self.clock.set(self.minute + timedelta(seconds=10))
        before = len(self.counting.updates)
        result = self.controller.tick()
        assert len(self.counting.updates) - before <= 1  # the one-update-per-tick budget holds
        return result

    def sent_counts(self) -> list[dict[str, Any]]:
        return [entry for update in self.counting.updates for entry in update if "DesiredInstanceCount" in entry]


@pytest.fixture
def world(example_data, write_config, tmp_path):
    data = example_data
    data["canary"] = {"steps": [10, 50, 100], "min_bake_minutes": 1, "max_bake_minutes": 10, "min_sample": 50}
    config = load_config(write_config(data))
    with patched_mock_aws():
        w = World(config, tmp_path)
        create_endpoint(w.sm, config.name, neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
        for variant in ("neuron", "gpu"):  # as the CDK stack registers them
            w.aas.register_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=resource_id(config.name, variant),
                                           ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=6)
        yield w


def test_autoscaling_changes_between_ticks_are_not_fought_and_do_not_block_a_fallback(world):
    world.controller.command("start")
    assert world.target("neuron")["SuspendedState"]["DynamicScalingInSuspended"] is True  # ramping: neuron keeps what it asked
    # gpu is the ramp's donor: its scale-in stays on (a fallback re-asks its capacity).
    assert world.target("gpu").get("SuspendedState", {}).get("DynamicScalingInSuspended", False) is False

    for _ in range(20):
        result = world.tick()
        if result.phase is Phase.RAMPING and world.share() == 10.0 and world.variant("gpu")["DesiredInstanceCount"] == 2:
            world.autoscale("gpu", 4)  # target tracking scales gpu out between two ramp ticks
        if result.phase is Phase.HOLDING:
            break
    assert result.phase is Phase.HOLDING and world.share() == 100.0
    # Not fought: the router never set a count on an autoscaled variant, so gpu kept autoscaling's 4...
    assert world.sent_counts() == []
    assert world.variant("gpu")["DesiredInstanceCount"] == 4
    # ...and the policy's counts became floors; holding restores dynamic scale-in on both.
    for variant in ("neuron", "gpu"):
        assert world.target(variant)["SuspendedState"]["DynamicScalingInSuspended"] is False
    assert world.target("neuron")["MinCapacity"] >= 1
    assert not any("differ" in e for e in result.errors)

    # Between two ticks autoscaling moves gpu again; then neuron regresses and the policy falls back.
    world.tick(neuron_p99_ms=400.0)
    world.autoscale("gpu", 5)
    result = world.tick(neuron_p99_ms=400.0)
    assert result.decision.action.value == "fallback" and result.exit_code == 1
    assert world.share() == 0.0  # the weights moved in the fallback tick itself
    assert world.variant("gpu")["DesiredInstanceCount"] == 5  # autoscaling's count stands
    gpu = world.target("gpu")
    assert gpu["SuspendedState"]["DynamicScalingInSuspended"] is True  # a fallback episode: no scale-in
    assert gpu["MinCapacity"] == max(1, result.decision.target.instance_counts["gpu"])  # the fallback's floor
    assert world.sent_counts() == []


def test_without_scalable_targets_the_router_sets_counts_as_before(example_data, write_config, tmp_path):
    config = load_config(write_config(example_data))
    with patched_mock_aws():
        w = World(config, tmp_path)
        create_endpoint(w.sm, config.name, neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
        live = w.router.describe()
        assert w.router.scaling == {} and w.router.autoscaling_calls == 1
        w.router.apply(Target(weights={"neuron": 0.0, "gpu": 100.0}, instance_counts={"neuron": 1, "gpu": 3}))
        assert w.sent_counts() == [{"VariantName": "gpu", "DesiredInstanceCount": 3}]
        assert w.router.sync_scaling(Phase.RAMPING, None) == [] and live.in_service


def test_weights_toward_an_autoscaled_neuron_wait_for_its_capacity(world):
    world.router.describe()
    grow = Target(weights={"neuron": 50.0, "gpu": 50.0}, instance_counts={"neuron": 3, "gpu": 2})
    world.router.apply(grow)
    assert world.counting.updates == [] and world.share() == 0.0  # capacity before traffic
    assert world.router.sync_scaling(Phase.RAMPING, grow) == [
        "autoscaling gpu: MinCapacity 1 -> 2 (ramping)",  # the donor: its scale-in stays on
        "autoscaling neuron: MinCapacity 1 -> 3, scale-in suspended (ramping)",
    ]
    world.autoscale("neuron", 3)  # autoscaling scales out to the raised floor
    world.router.describe()
    world.router.apply(grow)
    assert world.share() == 50.0 and world.sent_counts() == []  # weights only: the count was autoscaling's


def test_register_keeps_the_other_suspend_switches_and_raises_the_ceiling_with_the_floor():
    from botocore.stub import Stubber

    client = boto3.client("application-autoscaling", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response("register_scalable_target", {}, {
            "ServiceNamespace": "sagemaker", "ResourceId": "endpoint/ep/variant/gpu", "ScalableDimension": DIMENSION,
            "MinCapacity": 8, "MaxCapacity": 8,
            "SuspendedState": {"DynamicScalingInSuspended": True, "DynamicScalingOutSuspended": False,
                               "ScheduledScalingSuspended": True}})
        from routing.adapters.autoscaling import wanted_scaling

        current = VariantScaling("gpu", 1, 6, scale_in_suspended=False, scheduled_suspended=True)
        wanted = wanted_scaling(current, Phase.FALLING_BACK, 8)
        ScalableTargets(client, "ep", ("neuron", "gpu")).register(wanted)
        stub.assert_no_pending_responses()
    assert wanted_scaling(current, Phase.HOLDING, None) == current  # holding: scale-in stays on, floor kept


def test_a_count_autoscaling_changed_is_not_sent_back_and_the_target_counts_as_reached(world):
    world.autoscale("gpu", 4)  # autoscaling scaled gpu out; the policy still sizes gpu at 2
    live = world.router.describe()
    target = Target(weights={"neuron": 0.0, "gpu": 100.0}, instance_counts={"neuron": 1, "gpu": 2})
    assert world.controller._reached(live, target)  # nothing for the endpoint update to do: no intent, no retry
    world.router.apply(target)
    assert world.counting.updates == [] and world.variant("gpu")["DesiredInstanceCount"] == 4
    assert world.router.sync_scaling(Phase.HOLDING, target) == ["autoscaling gpu: MinCapacity 1 -> 2 (holding)"]
    assert world.target("gpu")["MinCapacity"] == 2 and world.variant("gpu")["DesiredInstanceCount"] == 4
