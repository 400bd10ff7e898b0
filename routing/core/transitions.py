"""THE transition table of the canary: phase x event -> phase. Pure.

Every phase change in the policy goes through `transition()`; a pair missing from the table
is a bug (ValueError), and a human's command that has no entry is refused before it gets here
(`allows`). docs/routing.md shows the same table as a diagram.

Immediate transitions: DRAINED and COOLED are taken inside a tick, and the tick then continues
in the new phase (routing/core/policy.py's dispatcher runs the next phase's handler; handlers
never call each other). So one tick may pass falling_back -> cooling_down -> ramping.

A gap made visible: (FALLING_BACK, BREACH) is NOT in the table. The breach guard runs only in
GUARDED phases, so a breach found while falling back is never escalated from there (the guard
has a branch for it that cannot run). Whether that is a missing escalation is for the judgement
issue to decide; adding the pair here (and the phase to GUARDED) would be that change.
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


RESUMED = "resumed"  # target of (PAUSED, RESUME): the phase the canary was paused in

_ACTIVE = (Phase.RAMPING, Phase.HOLDING, Phase.FALLING_BACK, Phase.COOLING_DOWN)
# The phases in which the breach guard runs before the phase handler (see the module docstring).
GUARDED = (Phase.RAMPING, Phase.HOLDING, Phase.PAUSED)

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
    (Phase.COOLING_DOWN, Event.COOLED): Phase.RAMPING,
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
