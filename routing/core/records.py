"""The decision record: what one tick (or command) found, decided and did. Typed, built in one place.

`DecisionRecord.to_dict()` is the JSON form every store appends (one line of records.jsonl, one
DynamoDB item) and every reader gets back: `hybrid route log`, the Lambda's log line and SNS
notice, the demo and bench reports. Its fields are documented in docs/routing.md ("Decision
records"); `schema` is RECORD_SCHEMA and goes up when a field changes meaning or goes away
(adding a field keeps it). Records written before the field existed have no `schema`: read as 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from routing.core.model import Action, ControllerState, Decision, Phase, Target

RECORD_SCHEMA = 1


@dataclass(frozen=True)
class StepText:
    """Step k of n (1-based; 0 of n before the first) and the neuron share it moves to."""

    k: int
    n: int
    neuron_percent: float | None

    @classmethod
    def of(cls, state: ControllerState, steps: Sequence[float]) -> StepText:
        n = len(steps)
        k = min(state.step + 1, n) if n else 0
        share = steps[state.step] if n and 0 <= state.step < n else None
        return cls(k, n, share)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "n": self.n, "neuron_percent": self.neuron_percent}


@dataclass(frozen=True)
class DecisionRecord:
    time: datetime
    tick_id: str
    endpoint: str
    command: str  # "tick" or the human's command
    phase_before: Phase
    phase: Phase
    action: Action
    reason: str
    step: StepText | None = None
    gates: tuple[Mapping[str, Any], ...] = ()
    failed_gates: tuple[str, ...] = ()
    statistics: Mapping[str, Any] = field(default_factory=dict)
    cost_per_1k: Mapping[str, float | None] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)  # per-variant window summary (+ client fallbacks)
    before: Mapping[str, Any] | None = None  # the live endpoint as read before the tick
    after: Mapping[str, Any] | None = None  # ...and after it
    settled: bool | None = None  # after: every variant's current weight/count equals the desired
    target: Mapping[str, Any] | None = None
    dry_run: bool = False
    applied: bool = False
    stood_aside: bool = False
    state_version: int | None = None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    exit_code: int = 0
    source: str | None = None  # stand-aside records: who stood aside ("cli", "lambda")
    lease_holder: Mapping[str, Any] | None = None  # stand-aside records: who held the lease

    @classmethod
    def of_decision(cls, *, time: datetime, tick_id: str, endpoint: str, command: str | None,
                    state_before: ControllerState, state_after: ControllerState, decision: Decision,
                    target: Target | None, **rest: Any) -> DecisionRecord:
        """The record of a tick that decided (the controller's only way to build one)."""
        steps = state_after.steps or state_before.steps
        shown = decision.state if rest.get("dry_run") else state_after  # a dry run saves nothing: show the decision
        return cls(
            time=time, tick_id=tick_id, endpoint=endpoint, command=command or "tick",
            phase_before=state_before.phase, phase=shown.phase, step=StepText.of(shown, steps),
            action=decision.action, reason=decision.reason, gates=tuple(g.to_dict() for g in decision.gates),
            failed_gates=tuple(str(g.name) for g in decision.failed_gates), statistics=dict(decision.statistics),
            cost_per_1k=dict(decision.cost_per_1k), target=target.to_dict() if target is not None else None,
            state_version=state_after.version, **rest,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema RECORD_SCHEMA): the keys of docs/routing.md, in this order."""
        out: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "time": self.time.isoformat(), "tick_id": self.tick_id, "endpoint": self.endpoint,
            "command": self.command, "phase_before": self.phase_before.value, "phase": self.phase.value,
            "step": self.step.to_dict() if self.step is not None else None,
            "action": self.action.value, "reason": self.reason, "gates": [dict(g) for g in self.gates],
            "failed_gates": list(self.failed_gates), "statistics": dict(self.statistics),
            "cost_per_1k": dict(self.cost_per_1k), "metrics": dict(self.metrics),
            "before": self.before, "after": self.after, "settled": self.settled, "target": self.target,
            "dry_run": self.dry_run, "applied": self.applied, "stood_aside": self.stood_aside,
            "state_version": self.state_version, "errors": list(self.errors), "warnings": list(self.warnings),
            "notes": list(self.notes), "exit_code": self.exit_code,
        }
        if self.source is not None:
            out["source"] = self.source
        if self.lease_holder is not None:
            out["lease_holder"] = dict(self.lease_holder)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionRecord:
        """Read a stored record back (any schema-1 record, with or without the `schema` key)."""
        step = data.get("step")
        return cls(
            time=datetime.fromisoformat(data["time"]), tick_id=str(data.get("tick_id", "")),
            endpoint=str(data.get("endpoint", "")), command=str(data.get("command", "tick")),
            phase_before=Phase(data.get("phase_before", Phase.IDLE.value)), phase=Phase(data.get("phase", "idle")),
            action=Action(data.get("action", Action.NONE.value)), reason=str(data.get("reason", "")),
            step=StepText(step.get("k", 0), step.get("n", 0), step.get("neuron_percent")) if step else None,
            gates=tuple(data.get("gates") or ()), failed_gates=tuple(data.get("failed_gates") or ()),
            statistics=data.get("statistics") or {}, cost_per_1k=data.get("cost_per_1k") or {},
            metrics=data.get("metrics") or {}, before=data.get("before"), after=data.get("after"),
            settled=data.get("settled"), target=data.get("target"), dry_run=bool(data.get("dry_run", False)),
            applied=bool(data.get("applied", False)), stood_aside=bool(data.get("stood_aside", False)),
            state_version=data.get("state_version"), errors=tuple(data.get("errors") or ()),
            warnings=tuple(data.get("warnings") or ()), notes=tuple(data.get("notes") or ()),
            exit_code=int(data.get("exit_code", 0)), source=data.get("source"), lease_holder=data.get("lease_holder"),
        )
