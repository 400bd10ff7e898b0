"""The decision record: one typed record, one JSON form with a schema number, read back unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from routing.core.model import Action, ControllerState, Decision, Gate, GateResult, Phase, Target
from routing.core.records import RECORD_SCHEMA, DecisionRecord, StepText

T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)


def _record(**changes: object) -> DecisionRecord:
    before = ControllerState(endpoint="ep", phase=Phase.RAMPING, step=0, steps=(10.0, 50.0, 100.0))
    after = before.evolve(step=1, version=4)
    decision = Decision(state=after, action=Action.PROGRESS, reason="step 2/3 -> 50%",
                        target=Target({"neuron": 50.0, "gpu": 50.0}, {"neuron": 2, "gpu": 2}),
                        gates=(GateResult(Gate.ERRORS, False, 0.2, 0.01, "too many"), GateResult(Gate.SAMPLE, True)))
    return DecisionRecord.of_decision(time=T0, tick_id="t1", endpoint="ep", command=None, state_before=before,
                                      state_after=after, decision=decision, target=decision.target, **changes)


def test_a_record_of_a_decision_carries_its_schema_gates_and_step_as_plain_json() -> None:
    data = json.loads(json.dumps(_record().to_dict()))
    assert data["schema"] == RECORD_SCHEMA
    assert data["command"] == "tick" and data["phase_before"] == "ramping" and data["action"] == "progress"
    assert data["step"] == {"k": 2, "n": 3, "neuron_percent": 50.0}
    assert data["failed_gates"] == ["errors"] and data["gates"][0]["name"] == "errors"
    assert data["target"] == {"weights": {"neuron": 50.0, "gpu": 50.0}, "instance_counts": {"neuron": 2, "gpu": 2}}
    assert data["state_version"] == 4 and "source" not in data


def test_a_record_reads_back_from_its_json_form_unchanged() -> None:
    record = _record(notes=("recovered",), errors=("x",), dry_run=False)
    data = json.loads(json.dumps(record.to_dict()))
    assert DecisionRecord.from_dict(data).to_dict() == data


def test_a_dry_run_record_shows_the_decided_phase_not_the_stored_one() -> None:
    record = _record(dry_run=True)
    assert record.step == StepText(2, 3, 50.0) and record.dry_run
