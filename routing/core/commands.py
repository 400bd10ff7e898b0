"""A human's command (start, pause, resume, abort, promote) as a Decision. Pure.

The controller applies and records it like any tick. Moved out of routing/core/policy.py so the
judgement (policy) and the manual verbs can change independently; `routing.core.policy.apply_command`
still resolves here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from routing.core.errors import UserError
from routing.core.gates import Assessment
from routing.core.model import Action, ControllerState, Decision, EndpointLive, Observation, Phase
from routing.core.policy import (
    SHARE_EPSILON,
    Tick,
    _decision,
    _fallback_target,
    _holding_goal,
    _pct,
    measure,
    shift,
    track_live_share,
)
from routing.core.transitions import Event, allows, transition
from routing.core.variants import GPU

if TYPE_CHECKING:
    from toolkit.config import HybridConfig

COMMANDS = ("start", "pause", "resume", "abort", "promote")



def _command_tick(config: HybridConfig, state: ControllerState, endpoint: EndpointLive, now: datetime) -> Tick:
    state = track_live_share(state, endpoint, now)
    empty = Observation(window_start=now, window_end=now)
    m = measure(config, state, endpoint, empty, {})
    return Tick(config, state, endpoint, empty, now, m, Assessment((), ()))


def apply_command(config: HybridConfig, state: ControllerState, command: str, endpoint: EndpointLive,
                  now: datetime) -> Decision:
    """A human's command as a Decision the controller applies and records like any tick.

    Raises UserError (one line) for an unknown command or a transition that makes no sense.
    """
    if command not in COMMANDS:
        raise UserError(f"unknown command {command!r}: use one of {', '.join(COMMANDS)}")
    t = _command_tick(config, state, endpoint, now)
    phase = state.phase
    if command == "start":
        if not allows(phase, Event.START):
            raise UserError(f"canary already {phase.value}: pause, promote or abort it first")
        steps = tuple(config.canary.resolved_steps())
        # Start from the first step at or above the live share: a canary never begins by moving back.
        first = next((i for i, s in enumerate(steps) if s >= t.live - SHARE_EPSILON), len(steps) - 1)
        new = transition(t.state, Event.START, step=first, steps=steps, step_started_at=None, phase_since=now,
                             fallbacks=0, cooldown_until=None, unknown_ticks=0, good_minutes=0, paused_phase=None,
                             memory=t.state.memory.restarted(now))
        plan = ", ".join(_pct(s) for s in steps)
        return _decision(t, new, Action.HOLD,
                         f"canary started: {len(steps)} steps ({plan}); step {first + 1} moves once neuron has "
                         f"the capacity")
    if command == "pause":
        if not allows(phase, Event.PAUSE):
            raise UserError(f"cannot pause: the canary is {phase.value}")
        new = transition(t.state, Event.PAUSE, paused_phase=phase, phase_since=now)
        return _decision(t, new, Action.NONE, f"paused during {phase.value} at neuron {_pct(round(t.live, 2))}; weights stay")
    if command == "resume":
        if not allows(phase, Event.RESUME):
            raise UserError(f"cannot resume: the canary is {phase.value}, not paused")
        new = transition(t.state, Event.RESUME, paused_phase=None, phase_since=now)
        back = new.phase
        return _decision(t, new, Action.NONE, f"resumed {back.value} at neuron {_pct(round(t.live, 2))}")
    if command == "abort":
        if not allows(phase, Event.ABORT):
            raise UserError(f"nothing to abort: the canary is {phase.value}")
        new = transition(t.state, Event.ABORT, paused_phase=None, phase_since=now, last_change_at=now,
                             step_started_at=None, cooldown_until=None)
        target = _fallback_target(t)
        return _decision(t, new, Action.ABORT,
                         f"aborted by a human during {phase.value}: gpu takes 100% on {target.instance_counts[GPU]} instances",
                         target)
    # promote
    goal = config.canary.target_neuron_percent
    if phase == Phase.HOLDING and abs(_holding_goal(state, goal) - goal) <= SHARE_EPSILON \
            and abs(t.live - goal) <= SHARE_EPSILON:
        raise UserError(f"already promoted: holding at neuron {_pct(goal)}")
    steps = state.steps or tuple(config.canary.resolved_steps())
    new = transition(t.state, Event.PROMOTE, steps=steps, step=len(steps) - 1, paused_phase=None, phase_since=now,
                         cooldown_until=None).remember(holding_share=goal)
    decision = shift(t, new, goal, Action.PROMOTE, f"promoted by a human from {phase.value}")
    if decision.action == Action.SCALE:
        # Capacity first even for a human: the weights follow on the next tick once neuron is InService.
        decision = replace(decision, action=Action.PROMOTE, state=new)
    elif decision.action == Action.HOLD:
        decision = replace(decision, action=Action.PROMOTE, state=new)
    return decision
