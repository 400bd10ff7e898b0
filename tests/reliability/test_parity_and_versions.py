"""Issue 17 on the embedded AWS: online parity gates the canary; a new neuron model is proven again.

Parity: the real HybridClient serves neuron's share of each minute through a fake runtime (neuron
answers a label, gpu the reference label), mirrors half of neuron's answers to gpu, and publishes
ParityCompared/ParityAgreed to (moto's) CloudWatch; the real controller reads them in its one
GetMetricData and gates the step on them.

Versions: `UpdateEndpoint` with a new endpoint config whose neuron variant runs a new model
(RetainAllVariantProperties, as `hybrid deploy` and CDK do) while the canary holds or falls back.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from routing.client import HybridClient
from tests.reliability.conftest import STEPS, TOTAL_PER_MINUTE, World, assert_safe
from tests.routing._aws import IMAGE, ROLE

# -- online parity ---------------------------------------------------------------------------------


class LabelRuntime:
    """Neuron disagrees with gpu on every `every`-th request (None: never); gpu answers POSITIVE."""

    def __init__(self, every: int | None) -> None:
        self.every = every
        self.neuron_calls = 0

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        if params.get("TargetVariant") == "gpu":
            return {"Body": b'{"label": "POSITIVE"}', "InvokedProductionVariant": "gpu"}
        self.neuron_calls += 1
        wrong = self.every is not None and self.neuron_calls % self.every == 0
        return {"Body": json.dumps({"label": "NEGATIVE" if wrong else "POSITIVE"}).encode(),
                "InvokedProductionVariant": "neuron"}


def with_online_parity(world: World) -> None:
    parity = world.config.parity.model_copy(update={
        "comparator": "labels", "min_agreement": 0.99,
        "online": world.config.parity.online.model_copy(update={"mirror_fraction": 0.5, "min_sample": 100})})
    world.config = world.config.model_copy(update={"parity": parity})


def parity_client(world: World, runtime: LabelRuntime, minute: list[datetime]) -> HybridClient:
    return HybridClient.from_config(world.config, runtime_client=runtime, cloudwatch_client=world.cw,
                                    metrics_flush_seconds=3600, parity_max_per_second=1e6,
                                    rng=random.Random(17).random,  # about half of neuron's answers are mirrored
                                    metrics_time=lambda: minute[0] + timedelta(seconds=30))


def serve_minute(world: World, client: HybridClient, minute: list[datetime]) -> None:
    """neuron's share of the minute's requests through the client (its mirrors published), then the minute's metrics."""
    minute[0] = world.minute
    for _ in range(round(TOTAL_PER_MINUTE * world.share() / 100.0)):
        client.invoke({"inputs": "a short sentence"})
        # One at a time: the test's loop outruns the pool, and a full pool drops mirrors (by design).
        assert client.wait_for_mirrors(30)
    client.flush()
    world.feed()


def run_canary(world: World, runtime: LabelRuntime, ticks: int = 30) -> list[dict[str, Any]]:
    with_online_parity(world)
    minute = [world.minute]
    client = parity_client(world, runtime, minute)
    world.tick(command="start")
    out = []
    for _ in range(ticks):
        serve_minute(world, client, minute)
        record = world.tick()
        out.append(record)
        if record["phase"] in ("holding", "falling_back", "cooling_down", "aborted"):
            break
    client.close()
    return out


@pytest.mark.fault("neuron answers differ from gpu's on 5% of requests")
def test_a_canary_with_online_parity_falls_back_when_neuron_disagrees_on_5_percent(world: World):
    records = run_canary(world, LabelRuntime(every=20))
    last = records[-1]
    assert last["action"] == "fallback", last["reason"]
    assert "parity failed" in last["reason"] and "disagreed with gpu on" in last["reason"]
    parity = next(g for g in last["gates"] if g["name"] == "parity")
    assert parity["passed"] is False and parity["value"] == pytest.approx(0.95, abs=0.02)  # a sample of the 95%
    assert last["statistics"]["parity"]["recent_disagreed"] >= 5
    assert_safe(world, gpu_only=True)


def test_a_canary_with_online_parity_completes_when_neuron_agrees(world: World):
    records = run_canary(world, LabelRuntime(every=None))
    assert records[-1]["phase"] == "holding", records[-1]["reason"]
    assert world.share() == STEPS[-1]
    passed = [g for r in records for g in r["gates"] if g["name"] == "parity" and g["passed"]]
    assert passed and all(g["value"] == 1.0 for g in passed)
    # each step waited for its parity sample: no step passed with fewer than min_sample comparisons
    progress = [r for r in records if r["action"] == "progress" and "passed" in r["reason"]]
    assert progress and all(r["statistics"]["parity"]["compared"] >= 100 for r in progress)


# -- model versions --------------------------------------------------------------------------------


def deploy_new_neuron_model(world: World, version: str) -> None:
    """What `hybrid deploy` / `cdk deploy` do: a new model, a new endpoint config, UpdateEndpoint retaining weights."""
    name = f"{world.name}-neuron-{version}"
    world.sm.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                          PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://models/{version}/model.tar.gz"})
    live = world.sm.describe_endpoint_config(
        EndpointConfigName=world.sm.describe_endpoint(EndpointName=world.name)["EndpointConfigName"])
    variants = [{**{k: v[k] for k in ("VariantName", "ModelName", "InstanceType", "InitialInstanceCount",
                                        "InitialVariantWeight")},
                 **({"ModelName": name} if v["VariantName"] == "neuron" else {})}
                for v in live["ProductionVariants"]]
    world.sm.create_endpoint_config(EndpointConfigName=f"{world.name}-config-{version}", ProductionVariants=variants)
    world.sm.update_endpoint(EndpointName=world.name, EndpointConfigName=f"{world.name}-config-{version}",
                             RetainAllVariantProperties=True)


def ramp_to_holding(world: World) -> None:
    world.tick(command="start")
    for _ in range(30):
        world.feed()
        if world.tick()["phase"] == "holding" and world.share() == STEPS[-1]:
            return
    raise AssertionError("the first ramp never completed")


def ramp_until_holding(world: World, first: float) -> list[dict[str, Any]]:
    """Healthy minutes until holding; asserts an unjudged neuron model never serves above the first step."""
    records = []
    for _ in range(40):
        world.feed()
        record = world.tick()
        records.append(record)
        if world.store().load().neuron_model_unjudged:
            assert world.share() <= first, f"unjudged model at {world.share()}%: {record['reason']}"
        if record["phase"] == "holding" and world.share() == STEPS[-1]:
            return records
    raise AssertionError(f"the re-ramp never completed: {records[-1]['reason']}")


def test_a_new_neuron_model_during_holding_goes_back_to_the_first_step_and_ramps_again(world: World):
    ramp_to_holding(world)
    first_model = world.store().load().neuron_model
    assert first_model is not None and first_model.name == f"{world.name}-neuron"
    deploy_new_neuron_model(world, "v2")
    world.feed()
    record = world.tick()
    assert "neuron model changed" in record["reason"] and "re-validating from step 1" in record["reason"]
    assert record["phase"] == "ramping" and record["action"] == "step_back"
    assert world.share() == STEPS[0], record["reason"]
    assert record["statistics"]["models"]["neuron"].startswith(f"{world.name}-neuron-v2")
    state = world.store().load()
    assert state.neuron_model.artifact == "s3://models/v2/model.tar.gz" and state.neuron_model_unjudged
    records = ramp_until_holding(world, STEPS[0])
    assert any("step 1/3 passed" in r["reason"] for r in records), [r["reason"] for r in records]
    assert not world.store().load().neuron_model_unjudged
    assert_safe(world)


@pytest.mark.fault("a new neuron model deployed while the canary falls back")
def test_a_new_neuron_model_during_a_fallback_is_judged_from_the_first_step_of_the_re_ramp(world: World):
    ramp_to_holding(world)
    world.feed(2, neuron_p99_ms=400.0)
    record = world.tick()
    assert record["action"] == "fallback", record["reason"]
    deploy_new_neuron_model(world, "v3")
    world.feed()
    record = world.tick()
    assert any("neuron model changed" in n and "unjudged" in n for n in record["notes"]), record["notes"]
    assert world.store().load().neuron_model_unjudged
    world.clock.advance(60 * 60)  # past the cool-down
    world.minute = world.clock.now().replace(second=0, microsecond=0)
    records = ramp_until_holding(world, STEPS[0])
    assert any("step 1/3 passed" in r["reason"] for r in records), [r["reason"] for r in records]
    state = world.store().load()
    assert state.neuron_model.name == f"{world.name}-neuron-v3" and not state.neuron_model_unjudged
    assert_safe(world)


def test_a_new_gpu_model_alone_is_recorded_and_does_not_restart_the_canary(world: World):
    ramp_to_holding(world)
    name = f"{world.name}-gpu-v2"
    world.sm.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                          PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://models/gpu-v2/model.tar.gz"})
    live = world.sm.describe_endpoint_config(
        EndpointConfigName=world.sm.describe_endpoint(EndpointName=world.name)["EndpointConfigName"])
    variants = [{**{k: v[k] for k in ("VariantName", "ModelName", "InstanceType", "InitialInstanceCount",
                                        "InitialVariantWeight")},
                 **({"ModelName": name} if v["VariantName"] == "gpu" else {})} for v in live["ProductionVariants"]]
    world.sm.create_endpoint_config(EndpointConfigName="gpu-v2", ProductionVariants=variants)
    world.sm.update_endpoint(EndpointName=world.name, EndpointConfigName="gpu-v2", RetainAllVariantProperties=True)
    world.feed()
    record = world.tick()
    assert record["phase"] == "holding" and world.share() == STEPS[-1]
    assert any("gpu model changed" in n for n in record["notes"]), record["notes"]
    assert world.store().load().gpu_model.name == name
