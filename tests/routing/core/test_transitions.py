"""The one transition table: every phase change goes through it, and it refuses what it does not list."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from routing.core.model import ControllerState, Phase
from routing.core.transitions import GUARDED, TRANSITIONS, Event, allows, next_phase, transition

CORE = Path(__file__).resolve().parents[3] / "routing" / "core"


def _state(phase: Phase, paused: Phase | None = None) -> ControllerState:
    return ControllerState(endpoint="ep", phase=phase, paused_phase=paused)


def test_resume_returns_to_the_phase_the_canary_was_paused_in() -> None:
    assert next_phase(_state(Phase.PAUSED, Phase.HOLDING), Event.RESUME) == Phase.HOLDING
    assert next_phase(_state(Phase.PAUSED, None), Event.RESUME) == Phase.RAMPING


@pytest.mark.parametrize("phase", [Phase.IDLE, Phase.ABORTED, Phase.PAUSED])
def test_pause_is_not_a_transition_of_an_idle_aborted_or_paused_canary(phase: Phase) -> None:
    assert not allows(phase, Event.PAUSE)
    with pytest.raises(ValueError, match="no transition"):
        transition(_state(phase), Event.PAUSE)


def test_a_breach_is_a_transition_only_where_the_guard_runs() -> None:
    breach_phases = {phase for (phase, event) in TRANSITIONS if event == Event.BREACH}
    assert breach_phases == set(GUARDED)
    # While falling back a breach is not a second fallback: it can only escalate the drain.
    assert not allows(Phase.FALLING_BACK, Event.BREACH)
    assert next_phase(_state(Phase.FALLING_BACK), Event.ESCALATE) == Phase.FALLING_BACK


def test_the_immediate_chain_after_a_fallback_leads_back_to_ramping() -> None:
    state = _state(Phase.FALLING_BACK)
    state = transition(state, Event.DRAINED)
    assert state.phase == Phase.COOLING_DOWN
    assert transition(state, Event.COOLED).phase == Phase.RAMPING


def test_no_core_module_but_the_table_sets_a_phase_by_hand() -> None:
    """evolve(phase=...) outside routing/core/transitions.py would bypass the table."""
    offenders = []
    for path in CORE.glob("*.py"):
        if path.name == "transitions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "evolve", "replace") and any(k.arg == "phase" for k in node.keywords):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
