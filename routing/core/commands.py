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

COMMANDS = ("start", "pause", "resume", "abort", "promote", "promote-full")

# Which verb is accepted in which phase (docs/operations.md prints the same table). A refusal is a
# UserError (exit 2) that names the phase and what to do instead; nothing is saved or sent.
ACCEPTED: dict[str, tuple[Phase, ...]] = {
    "start": (Phase.IDLE, Phase.ABORTED),  # + a no-op (exit 0) in ramping/holding started from the same steps
    "pause": (Phase.RAMPING, Phase.HOLDING, Phase.FALLING_BACK, Phase.COOLING_DOWN),
    "resume": (Phase.PAUSED,),
    "abort": tuple(Phase),
    "promote": (Phase.RAMPING, Phase.HOLDING, Phase.PAUSED),
    "promote-full": (Phase.RAMPING, Phase.HOLDING, Phase.PAUSED),
}
PROMOTABLE = (Phase.RAMPING, Phase.HOLDING)  # what a paused canary must have been paused in to promote


def _refuse(command: str, phase: Phase, why: str) -> UserError:
    return UserError(f"cannot {command.replace('-full', ' --full')} while {phase.value}: {why}")


def _start(config: HybridConfig, t: Tick, now: datetime) -> Decision:
    phase = t.state.phase
    steps = tuple(config.canary.resolved_steps())
    if phase in (Phase.RAMPING, Phase.HOLDING):
        if tuple(t.state.steps) == steps:
            # A pipeline's retry: already started from this config. Nothing changes (exit 0).
            return _decision(t, t.state, Action.NONE,
                             f"already {phase.value} from this config (steps {', '.join(_pct(s) for s in steps)}): "
                             f"nothing to do")
        raise _refuse("start", phase, f"the canary was started with steps "
                      f"{', '.join(_pct(s) for s in t.state.steps)}, the config now says "
                      f"{', '.join(_pct(s) for s in steps)}: abort it first, then start")
    if not allows(phase, Event.START):
        hint = {Phase.PAUSED: "resume or abort it", Phase.FALLING_BACK: "wait for the cool-down, or abort it",
                Phase.COOLING_DOWN: "it resumes by itself after the cool-down; abort to stop it"}
        raise _refuse("start", phase, hint.get(phase, "abort it first"))
    # Start from the first step at or above the live share: a canary never begins by moving back.
    first = next((i for i, s in enumerate(steps) if s >= t.live - SHARE_EPSILON), len(steps) - 1)
    new = transition(t.state, Event.START, step=first, steps=steps, step_started_at=None, phase_since=now,
                     fallbacks=0, cooldown_until=None, unknown_ticks=0, good_minutes=0, paused_phase=None,
                     memory=t.state.memory.restarted(now))
    plan = ", ".join(_pct(s) for s in steps)
    return _decision(t, new, Action.HOLD,
                     f"canary started: {len(steps)} steps ({plan}); step {first + 1} moves once neuron has "
                     f"the capacity")


def _abort(t: Tick, now: datetime) -> Decision:
    """The big red button: accepted in every phase; all weight to gpu sized for the traffic."""
    phase = t.state.phase
    target = _fallback_target(t)
    if phase in (Phase.IDLE, Phase.ABORTED) and t.live <= 0:
        # Nothing on neuron: nothing to move. Said plainly, exit 0 (the button did its job).
        return _decision(t, t.state, Action.NONE,
                         f"nothing to abort: the live endpoint already sends 100% to gpu ({phase.value})")
    new = transition(t.state, Event.ABORT, paused_phase=None, phase_since=now, last_change_at=now,
                     step_started_at=None, cooldown_until=None)
    return _decision(t, new, Action.ABORT,
                     f"aborted by a human during {phase.value} (live neuron {_pct(round(t.live, 2))}): gpu takes "
                     f"100% on {target.instance_counts[GPU]} instances", target)


def _promote(config: HybridConfig, state: ControllerState, t: Tick, now: datetime, full: bool) -> Decision:
    phase = state.phase
    command = "promote-full" if full else "promote"
    if phase == Phase.PAUSED and state.paused_phase not in PROMOTABLE:
        raise _refuse(command, phase, f"paused during {state.paused_phase.value if state.paused_phase else '?'}; "
                      "only a ramping or holding canary can be promoted: resume or abort it")
    working = state.paused_phase if phase == Phase.PAUSED else phase
    steps = state.steps or tuple(config.canary.resolved_steps())
    goal = config.canary.target_neuron_percent
    # A paused canary resumes into what it was paused in, then is promoted from there.
    base = transition(t.state, Event.RESUME, steps=steps, paused_phase=None, phase_since=now) \
        if phase == Phase.PAUSED else t.state.evolve(steps=steps)
    if working == Phase.RAMPING and not full:
        k = min(state.step, len(steps) - 1)
        if k + 1 < len(steps):
            nxt = base.evolve(step=k + 1, step_started_at=None)
            decision = shift(t, nxt, steps[k + 1], Action.PROMOTE,
                             f"promoted by a human past step {k + 1}/{len(steps)}: step {k + 2}/{len(steps)}")
            return replace(decision, action=Action.PROMOTE)
        # Passing the last step is the end of the ramp: same as --full.
    elif working == Phase.HOLDING and not full:
        raise _refuse(command, phase, "the ramp is over; `promote --full` restores the target share "
                      f"{_pct(goal)} if holding stepped back")
    if working == Phase.HOLDING and abs(_holding_goal(state, goal) - goal) <= SHARE_EPSILON \
            and abs(t.live - goal) <= SHARE_EPSILON:
        raise _refuse(command, phase, f"already promoted: holding at neuron {_pct(goal)}")
    new = transition(base, Event.PROMOTE, step=len(steps) - 1, cooldown_until=None).remember(holding_share=goal)
    decision = shift(t, new, goal, Action.PROMOTE, f"promoted by a human to the end from {working.value}")
    # Capacity first even for a human (SCALE/HOLD): the weights follow on the next tick once neuron is InService.
    return replace(decision, action=Action.PROMOTE)


def apply_command(config: HybridConfig, state: ControllerState, command: str, endpoint: EndpointLive,
                  now: datetime) -> Decision:
    """A human's command as a Decision the controller applies and records like any tick.

    Raises UserError (one line, exit 2, nothing changed) for an unknown command or one the
    current phase does not accept (ACCEPTED), with the reason and what to do instead.
    """
    if command not in COMMANDS:
        raise UserError(f"unknown command {command!r}: use one of {', '.join(COMMANDS)}")
    t = _command_tick(config, state, endpoint, now)
    phase = state.phase
    if command == "start":
        return _start(config, t, now)
    if command == "abort":
        return _abort(t, now)
    if phase not in ACCEPTED[command]:
        why = {
            "pause": {Phase.PAUSED: "already paused: resume or abort it",
                      Phase.IDLE: "no canary is running", Phase.ABORTED: "the canary was aborted"},
            "resume": {Phase.IDLE: "no canary is running"},
            "promote": {Phase.IDLE: "no canary is running: start one",
                        Phase.FALLING_BACK: "neuron failed its gates; promoting would send traffic to it without "
                                            "judgement: wait for the cool-down and the ramp, or abort",
                        Phase.COOLING_DOWN: "neuron failed its gates recently; the ramp resumes by itself after "
                                            "the cool-down",
                        Phase.ABORTED: "the canary was aborted: start a new one"},
        }
        key = "promote" if command.startswith("promote") else command
        raise _refuse(command, phase, why.get(key, {}).get(phase, f"accepted only in {', '.join(p.value for p in ACCEPTED[command])}"))
    if command == "pause":
        new = transition(t.state, Event.PAUSE, paused_phase=phase, phase_since=now)
        return _decision(t, new, Action.NONE, f"paused during {phase.value} at neuron {_pct(round(t.live, 2))}; weights stay")
    if command == "resume":
        new = transition(t.state, Event.RESUME, paused_phase=None, phase_since=now)
        return _decision(t, new, Action.NONE, f"resumed {new.phase.value} at neuron {_pct(round(t.live, 2))}")
    return _promote(config, state, t, now, full=command == "promote-full")


def _command_tick(config: HybridConfig, state: ControllerState, endpoint: EndpointLive, now: datetime) -> Tick:
    state = track_live_share(state, endpoint, now)
    empty = Observation(window_start=now, window_end=now)
    m = measure(config, state, endpoint, empty, {})
    return Tick(config, state, endpoint, empty, now, m, Assessment((), ()))
