"""The stored state: typed policy memory, intent and unrecorded record; old state files still load."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from routing.core.model import Action, ControllerState, Intent, Phase, PolicyMemory, Target
from routing.core.stats import StepTotals

T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_a_state_file_written_with_extra_loads_into_typed_fields_nothing_lost() -> None:
    old = {
        "endpoint": "ep", "phase": "cooling_down", "step": 1, "steps": [10.0, 50.0, 100.0], "fallbacks": 1,
        "version": 7,
        "extra": {
            "live_share": 0.0, "live_since": "2026-01-01T10:00:00+00:00", "breach_since": "2026-01-01T10:05:00+00:00",
            "total_rps": 12.5, "step_totals": {"neuron_invocations": 300.0}, "totals_since": "2026-01-01T10:00:00+00:00",
            "share": 50.0, "fallback_gradual": True, "last_fallback": "errors failed: 12 5XX; latency_slo failed: x",
            "last_fallback_at": "2026-01-01T10:05:00+00:00",
            "intent": {"target": {"weights": {"neuron": 0.0, "gpu": 100.0}, "instance_counts": {"gpu": 3}},
                       "action": "fallback", "decided_at": "2026-01-01T10:05:00+00:00",
                       "previous_state": {"endpoint": "ep", "phase": "ramping", "step": 1, "extra": {"share": 50.0}}},
            "unrecorded": {"tick_id": "abc", "action": "fallback"},
        },
    }
    state = ControllerState.from_dict(old)
    assert state.memory == PolicyMemory(
        live_share=0.0, live_since=T0, breach_since=datetime(2026, 1, 1, 10, 5, tzinfo=UTC), total_rps=12.5,
        step_totals=StepTotals.from_dict({"neuron_invocations": 300.0}), totals_since=T0, holding_share=50.0,
        fallback_gradual=True, last_fallback_cause="errors failed: 12 5XX")
    assert state.intent is not None and state.intent.action == Action.FALLBACK
    assert state.intent.target.instance_counts == {"gpu": 3}
    assert state.intent.previous_state is not None and state.intent.previous_state.memory.holding_share == 50.0
    assert state.unrecorded == {"tick_id": "abc", "action": "fallback"}
    assert state.phase == Phase.COOLING_DOWN and state.version == 7


def test_the_new_format_round_trips_through_json_and_has_no_extra() -> None:
    state = ControllerState(
        endpoint="ep", phase=Phase.HOLDING, memory=PolicyMemory(live_share=50.0, live_since=T0, holding_share=50.0,
                                                                step_totals=StepTotals()),
        intent=Intent(Target({"neuron": 40.0, "gpu": 60.0}, {"neuron": 2, "gpu": 2}), Action.STEP_BACK, T0,
                      ControllerState(endpoint="ep", phase=Phase.HOLDING)))
    data = json.loads(json.dumps(state.to_dict()))
    assert "extra" not in data
    assert ControllerState.from_dict(data) == state


def test_a_new_canary_keeps_only_what_is_known_about_the_live_endpoint() -> None:
    memory = PolicyMemory(live_share=10.0, live_since=T0, total_rps=5.0, holding_share=30.0, fallback_gradual=True,
                          last_fallback_cause="errors failed")
    later = datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert memory.restarted(later) == PolicyMemory(live_share=10.0, live_since=T0, total_rps=5.0, breach_since=later)
