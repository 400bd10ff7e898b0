"""Manual commands (routing/core/commands.py): each verb in each phase, accepted or refused with a reason."""

from __future__ import annotations

import math

import pytest

from routing.core.commands import ACCEPTED, COMMANDS
from routing.model import Action, Phase
from tests.routing.core.policy_world import Behaviour, World, make_config
from toolkit.config import GPU, NEURON
from toolkit.errors import UserError


def shares(world: World) -> list[float]:
    return [d.target.weights[NEURON] for d in world.decisions if d.target is not None]



def test_start_begins_at_the_first_step_at_or_above_the_live_share():
    world = World(make_config(), weights={NEURON: 25.0, GPU: 75.0})
    started = world.command("start")
    assert started.state.step == 1 and "step 2 moves" in started.reason
    assert shares(world)[:1] == [] and world.tick().action == Action.HOLD  # already at 25%: bake it
    world.run_until(lambda d: d.action == Action.PROGRESS)
    assert shares(world)[0] == 50.0


def test_start_twice_from_the_same_config_is_a_no_op():
    world = World(make_config()).started()
    world.run(3)
    before = world.state
    again = world.command("start")
    assert again.action == Action.NONE and again.target is None and "already ramping" in again.reason
    assert again.state.step == before.step and again.state.phase == Phase.RAMPING


def test_start_on_a_canary_started_with_other_steps_is_refused():
    world = World(make_config()).started()
    world.state = world.state.evolve(steps=(5.0, 100.0))
    with pytest.raises(UserError, match="cannot start while ramping: the canary was started with steps"):
        world.command("start")


def test_unknown_command_is_a_user_error():
    world = World(make_config())
    with pytest.raises(UserError, match="unknown command"):
        world.command("rollback")


def test_pause_keeps_the_weights_and_resume_returns_to_the_phase():
    world = World(make_config()).started()
    world.run(3)
    before = dict(world.weights)
    paused = world.command("pause")
    assert paused.target is None and paused.state.paused_phase == Phase.RAMPING
    ticks = world.run(10)
    assert all(d.action == Action.NONE and d.target is None for d in ticks)
    assert world.weights == before
    resumed = world.command("resume")
    assert resumed.state.phase == Phase.RAMPING
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)


def test_resume_when_not_paused_is_a_user_error():
    world = World(make_config()).started()
    with pytest.raises(UserError, match="cannot resume while ramping"):
        world.command("resume")


def test_a_breach_while_paused_still_falls_back():
    world = World(make_config()).started()
    world.run(3)
    world.command("pause")
    world.neuron = Behaviour(p99_ms=400.0)
    decision = world.run_until(lambda d: d.action != Action.NONE, limit=5)
    assert decision.action == Action.FALLBACK


def test_abort_sends_everything_to_gpu_and_stops():
    world = World(make_config()).started()
    world.run(6)
    decision = world.command("abort")
    assert decision.action == Action.ABORT and decision.state.phase == Phase.ABORTED
    assert decision.target.weights == {NEURON: 0.0, GPU: 100.0}
    assert decision.target.instance_counts[GPU] >= 1
    again = world.command("abort")  # idempotent: nothing left on neuron, nothing sent
    assert again.action == Action.NONE and again.target is None and "nothing to abort" in again.reason


def test_promote_full_goes_straight_to_the_target_share_and_holds():
    world = World(make_config(), counts={NEURON: 2, GPU: 2}).started()
    world.run(3)
    decision = world.command("promote-full")
    assert decision.action == Action.PROMOTE and decision.state.phase == Phase.HOLDING
    assert decision.target.weights == {NEURON: 100.0, GPU: 0.0}


def test_promote_scales_neuron_first_when_it_lacks_capacity():
    world = World(make_config(), rps=100, counts={NEURON: 1, GPU: 6}).started()
    world.run(3)
    before = world.weights[NEURON]
    decision = world.command("promote-full")
    assert decision.action == Action.PROMOTE and decision.state.phase == Phase.HOLDING
    assert decision.target.weights[NEURON] == before  # unchanged until neuron has the capacity
    assert decision.target.instance_counts[NEURON] == math.ceil(100 / 40)
    nxt = world.run_until(lambda d: d.target is not None)
    assert nxt.target.weights[NEURON] == 100.0




# ------------------------------------------------------------------------------------------------
# Every verb in every phase


def _world_in(phase: Phase, neuron: float = 30.0) -> World:
    """A world whose canary is in `phase` with neuron carrying `neuron` percent of the live traffic."""
    world = World(make_config(), weights={NEURON: neuron, GPU: 100.0 - neuron}, counts={NEURON: 2, GPU: 2})
    if phase != Phase.IDLE:
        world.command("start")
    paused_in = Phase.RAMPING if phase == Phase.PAUSED else None
    world.state = world.state.evolve(phase=phase, paused_phase=paused_in)
    return world


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("command", COMMANDS)
def test_a_refused_command_says_why_in_one_line_and_changes_nothing(phase: Phase, command: str) -> None:
    world = _world_in(phase)
    before, weights = world.state, dict(world.weights)
    try:
        world.command(command)
    except UserError as refusal:
        assert "\n" not in str(refusal) and f"while {phase.value}" in str(refusal)
        assert world.state == before and world.weights == weights
        assert phase not in ACCEPTED[command] or command in ("promote", "promote-full")
    else:
        assert phase in ACCEPTED[command] or (command == "start" and phase in (Phase.RAMPING, Phase.HOLDING))


@pytest.mark.parametrize("phase", [Phase.IDLE, Phase.FALLING_BACK, Phase.COOLING_DOWN, Phase.ABORTED])
@pytest.mark.parametrize("command", ["promote", "promote-full"])
def test_promote_is_refused_from_idle_a_fallback_a_cool_down_or_an_abort(phase: Phase, command: str) -> None:
    world = _world_in(phase, neuron=0.0)
    with pytest.raises(UserError, match=f"cannot promote.* while {phase.value}"):
        world.command(command)
    assert world.weights[NEURON] == 0.0


def test_promote_from_a_pause_taken_during_a_fallback_is_refused() -> None:
    world = _world_in(Phase.PAUSED, neuron=0.0)
    world.state = world.state.evolve(paused_phase=Phase.FALLING_BACK)
    with pytest.raises(UserError, match="paused during falling_back"):
        world.command("promote")


@pytest.mark.parametrize("phase", list(Phase))
def test_abort_in_every_phase_puts_all_traffic_on_gpu(phase: Phase) -> None:
    world = _world_in(phase, neuron=30.0)
    decision = world.command("abort")
    assert decision.action == Action.ABORT and decision.state.phase == Phase.ABORTED
    assert world.weights == {NEURON: 0.0, GPU: 100.0}
    assert decision.target.instance_counts[GPU] >= 1


def test_promote_passes_the_current_step_only() -> None:
    world = World(make_config(), counts={NEURON: 4, GPU: 4}).started()
    world.run_until(lambda d: d.action == Action.PROGRESS)
    steps = world.state.steps
    k = world.state.step
    decision = world.command("promote")
    assert decision.action == Action.PROMOTE and decision.state.phase == Phase.RAMPING
    assert decision.state.step == k + 1 and decision.target.weights[NEURON] == steps[k + 1]


def test_promote_of_a_paused_ramp_resumes_it_one_step_further() -> None:
    world = World(make_config(), counts={NEURON: 4, GPU: 4}).started()
    world.run_until(lambda d: d.action == Action.PROGRESS)
    k = world.state.step
    world.command("pause")
    decision = world.command("promote")
    assert decision.state.phase == Phase.RAMPING and decision.state.step == k + 1
