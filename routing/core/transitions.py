"""THE transition table of the canary: phase x event -> phase. Pure.

Every phase change in the policy goes through `transition()`; a pair missing from the table
is a bug (ValueError), and a human's command that has no entry is refused before it gets here
(`allows`). docs/routing.md shows the same table as a diagram.

Immediate transitions: DRAINED and COOLED are taken inside a tick, and the tick then continues
in the new phase (routing/core/policy.py's dispatcher runs the next phase's handler; handlers
never call each other). So one tick may pass falling_back -> cooling_down -> ramping.

Escalation while draining: the guard also runs in FALLING_BACK (GUARD_PHASES). A latency
fallback drains neuron over a few ticks (gpu takes what its live instances carry); if 5XX or
silence show on neuron meanwhile, (FALLING_BACK, ESCALATE) keeps the phase and sends everything
to gpu at once. It is not a second BREACH: the fallback count and cool-down stay those of the
fallback being drained.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from routing.core.model import ControllerState, Phase


class Event(StrEnum):
    START = "start"  # a human: `canary start`
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    PROMOTE = "promote"
    BREACH = "breach"  # the guard: a safety gate failed, or too many ticks without metrics
    BREACH_LIMIT = "breach_limit"  # ...and that was the max_fallbacks-th fallback
    RAMP_DONE = "ramp_done"  # the last canary step passed
    DRAINED = "drained"  # immediate: neuron carries no weight any more
    COOLED = "cooled"  # immediate: the cool-down is over and metrics are known
    NEW_MODEL = "new_model"  # the neuron variant's model changed under the canary: re-validate (versions.py)
    ESCALATE = "escalate"  # errors or silence while a gradual fallback drains: gpu 100% now


RESUMED = "resumed"  # target of (PAUSED, RESUME): the phase the canary was paused in

_ACTIVE = (Phase.RAMPING, Phase.HOLDING, Phase.FALLING_BACK, Phase.COOLING_DOWN)
# The phases in which the breach guard runs before the phase handler (see the module docstring).
GUARDED = (Phase.RAMPING, Phase.HOLDING, Phase.PAUSED)
# ...and where it runs at all: while falling back it can only escalate the drain (ESCALATE).
GUARD_PHASES = (*GUARDED, Phase.FALLING_BACK)

TRANSITIONS: dict[tuple[Phase, Event], Phase | str] = {
    (Phase.IDLE, Event.START): Phase.RAMPING,
    (Phase.ABORTED, Event.START): Phase.RAMPING,
    **{(phase, Event.PAUSE): Phase.PAUSED for phase in _ACTIVE},
    (Phase.PAUSED, Event.RESUME): RESUMED,
    # Abort is the big red button: accepted in every phase (from idle or aborted it still puts
    # everything on gpu when the live endpoint has neuron weight; see routing/core/commands.py).
    **{(phase, Event.ABORT): Phase.ABORTED for phase in Phase},
    # Promote only where a canary is progressing (a paused one resumes into it); never from idle,
    # a fallback, a cool-down or an abort: those must not put traffic on neuron without judgement.
    **{(phase, Event.PROMOTE): Phase.HOLDING for phase in (Phase.RAMPING, Phase.HOLDING, Phase.PAUSED)},
    **{(phase, Event.BREACH): Phase.FALLING_BACK for phase in GUARDED},
    **{(phase, Event.BREACH_LIMIT): Phase.ABORTED for phase in GUARDED},
    (Phase.RAMPING, Event.RAMP_DONE): Phase.HOLDING,
    (Phase.FALLING_BACK, Event.DRAINED): Phase.COOLING_DOWN,
    (Phase.FALLING_BACK, Event.ESCALATE): Phase.FALLING_BACK,
    (Phase.COOLING_DOWN, Event.COOLED): Phase.RAMPING,
    # issue 17: a new neuron model is judged again from the first step (falling back / cooling down
    # re-ramp from the first step anyway; idle and aborted run no canary to restart).
    **{(phase, Event.NEW_MODEL): Phase.RAMPING for phase in (Phase.RAMPING, Phase.HOLDING, Phase.PAUSED)},
}


def allows(phase: Phase, event: Event) -> bool:
    return (phase, event) in TRANSITIONS


def next_phase(state: ControllerState, event: Event) -> Phase:
    target = TRANSITIONS.get((state.phase, event))
    if target is None:
        raise ValueError(f"no transition from {state.phase.value} on {event.value}")
    if target == RESUMED:
        return state.paused_phase or Phase.RAMPING
    return Phase(target)


def transition(state: ControllerState, event: Event, **changes: Any) -> ControllerState:
    """The state in the phase the table gives for (state.phase, event), with the other changes."""
    return state.evolve(phase=next_phase(state, event), **changes)
