"""Model versions: a changed neuron model is judged again from the first step; gpu changes are recorded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.core.model import Action, ControllerState, Decision, EndpointLive, ModelVersion, Phase, Target, VariantLive
from routing.core.versions import check, drain_target, guard_unjudged
from tests.routing.core.policy_world import make_config

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
V1 = ModelVersion("bert-neuron-1", "s3://m/v1.tar.gz", "img")
V2 = ModelVersion("bert-neuron-2", "s3://m/v2.tar.gz", "img")
G1 = ModelVersion("bert-gpu-1", "s3://m/g1.tar.gz", "img")
STEPS = (10.0, 25.0, 50.0, 100.0)


def live(neuron_share: float = 100.0, gpu_count: int = 1, neuron: ModelVersion = V2, gpu: ModelVersion = G1,
         status: str = "InService") -> EndpointLive:
    return EndpointLive("bert", status, {
        "neuron": VariantLive("neuron", "ml.inf2.xlarge", neuron_share, neuron_share, 3, 3),
        "gpu": VariantLive("gpu", "ml.g5.xlarge", 100.0 - neuron_share, 100.0 - neuron_share, gpu_count, gpu_count),
    }, models={"neuron": neuron, "gpu": gpu})


def state(phase: Phase = Phase.HOLDING, **changes) -> ControllerState:
    base = ControllerState(endpoint="bert", phase=phase, step=3, steps=STEPS, neuron_model=V1, gpu_model=G1)
    return base.evolve(**changes)


def test_a_new_neuron_model_while_holding_restarts_the_canary_at_the_first_step():
    result = check(state(fallbacks=2), live(), T0)
    assert result.revalidate and result.state.phase == Phase.RAMPING and result.state.step == 0
    assert result.state.neuron_model == V2 and result.state.neuron_model_unjudged
    assert result.state.fallbacks == 0 and result.state.memory.breach_since == T0
    assert result.state.memory.live_since == T0  # the new model's minutes are judged from now
    assert "bert-neuron-1 (s3://m/v1.tar.gz) -> bert-neuron-2 (s3://m/v2.tar.gz)" in result.reason


@pytest.mark.parametrize("phase", [Phase.RAMPING, Phase.PAUSED])
def test_a_new_neuron_model_while_ramping_or_paused_restarts_too(phase):
    assert check(state(phase, step=2), live(), T0).state.phase == Phase.RAMPING


@pytest.mark.parametrize("phase", [Phase.FALLING_BACK, Phase.COOLING_DOWN, Phase.ABORTED, Phase.IDLE])
def test_elsewhere_a_new_neuron_model_is_marked_unjudged_without_a_phase_change(phase):
    result = check(state(phase), live(), T0)
    assert not result.revalidate and result.state.phase == phase
    assert result.state.neuron_model == V2 and result.state.neuron_model_unjudged
    assert any("neuron model changed" in n for n in result.notes)


def test_a_new_model_name_is_a_new_version_even_with_the_same_artifact():
    # deploy names models by content: a new name may be a new environment on the same artifact
    renamed = ModelVersion("bert-neuron-recreated", V1.artifact, V1.image)
    assert check(state(), live(neuron=renamed), T0).revalidate


def test_the_same_name_with_an_artifact_read_only_now_is_the_same_version():
    unread = ModelVersion(V1.name)
    result = check(state(neuron_model=unread), live(neuron=V1), T0)
    assert not result.revalidate and result.state.neuron_model == V1 and not result.state.neuron_model_unjudged


def test_a_new_gpu_model_alone_is_recorded_and_restarts_nothing():
    g2 = ModelVersion("bert-gpu-2", "s3://m/g2.tar.gz", "img")
    result = check(state(), live(neuron=V1, gpu=g2), T0)
    assert not result.revalidate and result.state.phase == Phase.HOLDING and result.state.gpu_model == g2
    assert any("gpu model changed" in n for n in result.notes)


def test_the_first_sight_of_a_model_records_it_without_restarting():
    result = check(state(neuron_model=None, gpu_model=None), live(), T0)
    assert not result.revalidate and result.state.neuron_model == V2 and not result.state.neuron_model_unjudged


def test_an_endpoint_whose_models_were_not_read_changes_nothing():
    bare = EndpointLive("bert", "InService", live().variants)
    assert check(state(), bare, T0).state == state()


def test_drain_is_capacity_aware_like_a_gradual_fallback():
    cfg = make_config()  # gpu carries 20 req/s per instance
    # 100 req/s, neuron 100%, one gpu instance in service: gpu takes what it carries below saturation now
    # (20 req/s / 1.2 headroom = 16.6%), sized for 90%.
    target = drain_target(cfg, live(100.0, gpu_count=1), 10.0, 100.0)
    assert target.weights == {"neuron": 83.4, "gpu": 16.6}
    assert target.instance_counts["gpu"] == 6  # 90 req/s x 1.2 headroom / 20, capped at max_count 8
    # once gpu has the instances in service, neuron goes to the first step
    assert drain_target(cfg, live(80.0, gpu_count=6), 10.0, 100.0).weights == {"neuron": 10.0, "gpu": 90.0}


@given(st.floats(0, 100), st.integers(1, 8), st.floats(0, 500))
def test_a_drain_never_moves_share_toward_neuron_nor_below_the_first_step(share, gpu_count, rps):
    target = drain_target(make_config(), live(share, gpu_count=gpu_count), 10.0, rps)
    assert target.weights["neuron"] <= share + 1e-4  # weights are rounded to 4 decimals
    assert target.weights["neuron"] >= min(share, 10.0) - 1e-4
    assert target.instance_counts["gpu"] >= 1


def decision(s: ControllerState, neuron: float | None, action: Action = Action.PROGRESS) -> Decision:
    target = None if neuron is None else Target({"neuron": neuron, "gpu": 100.0 - neuron}, {"neuron": 3, "gpu": 6})
    return Decision(state=s, action=action, reason="policy", target=target, statistics={"sizing_rps": 100.0})


def test_an_unjudged_model_is_never_sent_above_the_first_step():
    s = state(Phase.RAMPING, step=0, neuron_model=V2, neuron_model_unjudged=True)
    out = guard_unjudged(make_config(), decision(s, 25.0), live(10.0, gpu_count=6), T0)
    assert out.target.weights["neuron"] == 10.0 and out.action == Action.STEP_BACK


def test_once_the_first_step_passes_the_model_is_judged():
    s = state(Phase.RAMPING, step=1, neuron_model=V2, neuron_model_unjudged=True)
    out = guard_unjudged(make_config(), decision(s, 25.0), live(10.0, gpu_count=6), T0)
    assert out.target.weights["neuron"] == 25.0 and not out.state.neuron_model_unjudged
    assert out.statistics["models"]["neuron"].startswith("bert-neuron-2")


def test_a_fallback_of_an_unjudged_model_is_left_alone():
    s = state(Phase.FALLING_BACK, step=0, neuron_model=V2, neuron_model_unjudged=True)
    d = decision(s, 0.0, Action.FALLBACK)
    assert guard_unjudged(make_config(), d, live(10.0), T0).target == d.target


def test_the_versions_round_trip_through_the_stored_state():
    s = state(neuron_model=V2, neuron_model_unjudged=True)
    assert ControllerState.from_dict(s.to_dict()) == s
    assert ControllerState.from_dict({"endpoint": "bert"}).neuron_model is None  # files written before this
