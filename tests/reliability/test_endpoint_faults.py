"""The endpoint busy or broken when the controller wants to act; autoscaling and deploys underneath it.

SageMaker accepts UpdateEndpointWeightsAndCapacities only when the endpoint is InService. While it is
Updating, RollingBack or Failed (with a FailureReason) the controller must hold the split it has,
write its record, and act once (never twice) when the endpoint is back.
"""

from __future__ import annotations

import pytest

from routing.model import VARIANTS
from tests.reliability.conftest import STEPS, Faulty, World, assert_safe, ready_to_progress, set_status
from tests.routing._aws import IMAGE, ROLE

STEP2 = {"neuron": STEPS[1], "gpu": 100.0 - STEPS[1]}


@pytest.mark.fault("endpoint not InService when a step is due")
@pytest.mark.parametrize("status, reason", [
    ("Updating", None),
    ("RollingBack", None),
    ("Failed", "ResourceLimitExceeded: account-level service limit 'ml.inf2.xlarge for endpoint usage' is 0"),
    ("SystemUpdating", None),
])
def test_a_busy_or_failed_endpoint_holds_the_step_then_takes_it_once_when_in_service(world: World, status, reason):
    ready_to_progress(world)
    set_status(world, status, reason)
    sent = len(world.updates)
    record = world.tick()
    assert record["action"] in ("hold", "none"), record["reason"]
    assert len(world.updates) == sent, "an update was sent to an endpoint that is not InService"
    assert status in record["reason"]
    if reason:
        assert reason in record["reason"] or record["before"]["failure_reason"] == reason
    assert_safe(world)
    assert world.share() == STEPS[0]

    set_status(world, "InService")
    world.feed()
    world.tick()
    assert world.share() == STEPS[1]
    assert world.updates[sent:] == [STEP2]
    assert_safe(world)


@pytest.mark.fault("endpoint not InService when a fallback is due")
@pytest.mark.parametrize("status", ["Updating", "RollingBack"])
def test_a_breach_on_a_busy_endpoint_falls_back_as_soon_as_it_is_in_service(world: World, status):
    world.start_and_ramp_to(1)
    world.feed(2, neuron_p99_ms=400.0)
    set_status(world, status)
    sent = len(world.updates)
    record = world.tick()
    assert len(world.updates) == sent  # AWS would reject it: nothing sent
    assert status in record["reason"] or any("busy" in e for e in record["errors"]), record["reason"]
    set_status(world, "InService")
    world.clock.advance(30)
    record = world.tick()
    assert world.updates[sent:] == [{"neuron": 0.0, "gpu": 100.0}], record["reason"]
    assert_safe(world, gpu_only=True)


@pytest.mark.fault("a fallback decided while the endpoint is Updating")
def test_a_fallback_decided_on_a_busy_endpoint_is_stored_and_sent_once_it_is_in_service(world: World):
    world.start_and_ramp_to(1)
    world.feed(2, neuron_p99_ms=400.0)
    set_status(world, "Updating")
    sent = len(world.updates)
    record = world.tick()
    assert len(world.updates) == sent and not record["applied"]
    # The decision stands (a scaling activity can hold the endpoint for minutes): stored, recorded.
    state = world.store().load()
    assert state.phase.value == "falling_back" and state.fallbacks == 1
    assert record["action"] == "fallback" and any("decided while the endpoint updates" in n for n in record["notes"])
    set_status(world, "InService")
    world.clock.advance(30)
    world.tick()
    assert world.updates[sent:] == [{"neuron": 0.0, "gpu": 100.0}]
    assert world.store().load().fallbacks == 1  # decided once, not again when it landed
    assert_safe(world, gpu_only=True)


@pytest.mark.fault("endpoint starts Updating between describe and update")
def test_an_endpoint_that_starts_updating_mid_tick_gets_no_update_and_the_step_waits(world: World):
    ready_to_progress(world)
    router = Faulty(world.router(), hooks={"apply": lambda: set_status(world, "Updating")})
    state_before = world.store().load()
    result = world.controller(router=router).tick()
    assert not result.record["applied"] and any("busy" in e for e in result.record["errors"])
    assert len(world.records()) and world.records()[-1] == result.record
    assert world.share() == STEPS[0]
    state = world.store().load()
    assert state.step == state_before.step, "the state moved a step the endpoint never took"
    set_status(world, "InService")
    world.feed()
    world.tick()
    assert world.share() == STEPS[1] and world.updates.count(STEP2) == 1
    assert_safe(world)


# ------------------------------------------------------------------------------------------------
# Autoscaling and deploys underneath the controller


def _autoscale(world: World, variant: str, count: int) -> None:
    """What Application Auto Scaling does: a new DesiredInstanceCount for one variant, weight untouched."""
    world.sm.update_endpoint_weights_and_capacities(
        EndpointName=world.name, DesiredWeightsAndCapacities=[{"VariantName": variant, "DesiredInstanceCount": count}])


@pytest.mark.fault("autoscaling changes instance counts between ticks")
def test_a_step_keeps_counts_that_autoscaling_raised_on_the_variant_gaining_traffic(world: World):
    ready_to_progress(world)
    _autoscale(world, "neuron", 3)
    world.tick()
    live = assert_safe(world)
    assert world.share() == STEPS[1]
    assert live.variants["neuron"].desired_instance_count >= 3, "the step undid autoscaling's scale-out"


@pytest.mark.fault("autoscaling changes instance counts before a fallback")
def test_a_fallback_never_shrinks_gpu_below_what_autoscaling_set(world: World):
    world.start_and_ramp_to(1)
    _autoscale(world, "gpu", 5)
    world.feed(2, neuron_p99_ms=400.0)
    world.tick()
    live = assert_safe(world, gpu_only=True)
    assert live.variants["gpu"].desired_instance_count >= 5


def _new_config(world: World, suffix: str, keep: tuple[str, ...] = ()) -> str:
    """A new endpoint config as `cdk deploy` creates it: new model names (but the variants in `keep`), the
    stack's initial weights."""
    name = f"{world.name}-config-{suffix}"
    production = []
    initial = {"neuron": 0.0, "gpu": 100.0}
    for variant in VARIANTS:
        model = f"{world.name}-{variant}" if variant in keep else f"{world.name}-{variant}-{suffix}"
        if variant not in keep:
            world.sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
        cfg = world.config.variant(variant)
        production.append({"VariantName": variant, "ModelName": model, "InstanceType": cfg.instance_type,
                           "InitialInstanceCount": cfg.initial_count, "InitialVariantWeight": initial[variant]})
    world.sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=production)
    return name


@pytest.mark.fault("cdk deploy swaps the endpoint config mid-canary")
def test_a_deploy_mid_canary_with_retained_variant_properties_keeps_the_weights(world: World):
    world.start_and_ramp_to(1)
    # The same neuron model: a new one is judged again from step 1 (issue 17, test_parity_and_versions.py).
    world.sm.update_endpoint(EndpointName=world.name, EndpointConfigName=_new_config(world, "v2", keep=("neuron",)),
                             RetainAllVariantProperties=True)
    assert world.share() == STEPS[1], "the deploy reset the canary's weights"
    sent = len(world.updates)
    world.feed()
    record = world.tick()
    assert world.share() == STEPS[1] and len(world.updates) == sent, record["reason"]
    assert record["phase"] == "ramping"
    assert_safe(world)


@pytest.mark.fault("deploy without retained properties resets weights mid-canary")
def test_a_deploy_that_resets_weights_is_taken_as_the_truth_and_never_double_steps(world: World):
    world.start_and_ramp_to(1)
    world.sm.update_endpoint(EndpointName=world.name, EndpointConfigName=_new_config(world, "v3"),
                             RetainAllVariantProperties=False)
    assert world.share() == 0.0  # the reset the stack's retain flag exists to prevent
    sent = len(world.updates)
    world.feed()
    world.tick()
    assert_safe(world)
    assert world.share() in (0.0, STEPS[0], STEPS[1])
    assert len(world.updates) - sent <= 1
    assert all(u["neuron"] in (0.0, *STEPS[:2]) for u in world.updates[sent:])
