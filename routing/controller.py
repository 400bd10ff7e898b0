"""The controller tick: read the truth, read metrics, decide (pure policy), apply, verify, record.

The CLI loop, the Lambda handler, the demo and the bench all call `Controller.tick()`; only the
adapters differ (see routing/model.py for the protocols, build_controller for the AWS ones).

One tick, in this order (crash safety: see "Why this order" below):

 1. load state (or the policy's initial state) and remember its version;
 2. DescribeEndpoint: the live weights and counts are the truth;
 3. reconcile an unfinished intent left by a crashed tick (see below);
 4. read the closed minutes of CloudWatch (window length from policy.window_minutes);
 5. decide (pure policy);
 6. if the decision changes the endpoint and this is not a dry run:
      a. save the new state WITH an intent {target, action, previous state} (version-checked:
         a concurrent controller that saved first makes this tick stand aside, before touching
         anything);
      b. UpdateEndpointWeightsAndCapacities (only when InService);
      c. read the endpoint again: verify Desired* == target, report Current* and FailureReason;
      d. save the state again without the intent (version-checked);
    else: save the new state (version-checked). A dry run saves nothing;
 7. append the decision record (append-only, fsynced).

Why this order: the intent is durable before AWS is touched, so a crash at any point leaves
either (i) no intent: nothing was sent, the next tick decides afresh; or (ii) an intent: the
next tick compares it with the live endpoint's Desired* weights and counts. If they match, the
update went through: the step is kept and NOT sent again. If they do not, the update never
reached AWS: a progress step is dropped (the previous state comes back and the step is decided
again on fresh metrics, so it is neither repeated nor skipped), while a fallback or abort is
re-applied at once (the safe direction is never lost to a crash). Records may lose at most the
record of the crashed tick; the recovering tick records what it reconciled.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from routing.adapters.json_store import resolve_state_dir
from routing.adapters.sagemaker import EndpointBusy, stuck_remedy
from routing.core import versions  # issue 17: model versions
from routing.core.commands import COMMANDS
from routing.core.errors import HybridError, StateUnreadable
from routing.core.model import (
    VARIANTS,
    Action,
    ConcurrentModification,
    ControllerState,
    Decision,
    EndpointLive,
    Intent,
    LeasedStore,
    MetricsSource,
    Observation,
    Phase,
    Router,
    StateStore,
    Target,
)
from routing.core.observations import reject_non_finite
from routing.core.records import DecisionRecord, StepText
from routing.core.transitions import Event, transition
from toolkit.errors import EXIT_AWS, EXIT_INTERRUPTED, EXIT_OK, EXIT_ROLLED_BACK, AwsError, UserError

log = logging.getLogger(__name__)

INTENT_KEY = "intent"  # the ControllerState field (and JSON key) of an update decided and saved but not yet confirmed
RECOVERY_LOOKBACK = 50  # records searched for a write-ahead record before appending it again
UNRECORDED_KEY = "unrecorded"  # the ControllerState field of this tick's record, saved before it is appended
# Actions whose target moves traffic toward gpu: re-applied after a crash, never dropped.
SAFE_DIRECTION = (Action.FALLBACK, Action.ABORT, Action.STEP_BACK)
FAILED_ACTIONS = (Action.FALLBACK, Action.ABORT)
WEIGHT_TOLERANCE = 1e-6
DRIFT_TOLERANCE = 0.5  # percentage points of neuron share: more than this off what we applied is someone else's change
DRIFT_PHASES = (Phase.RAMPING, Phase.HOLDING, Phase.FALLING_BACK, Phase.COOLING_DOWN)
STATUS_RECORDS = 500  # status looks this far back for the last applied change
# Notes of a tick that found the endpoint UpdateRollbackFailed/Failed: the first such tick alerts.
STUCK_FIRST_NOTE = "alert: the first tick to find the endpoint"
STUCK_AGAIN_NOTE = "still stuck: already reported by an earlier tick"


@dataclass
class TickResult:
    decision: Decision | None
    record: dict[str, Any]
    exit_code: int
    state: ControllerState | None = None
    live: EndpointLive | None = None
    stood_aside: bool = False
    errors: list[str] = field(default_factory=list)
    typed: DecisionRecord | None = None  # the record as built; `record` is its JSON form (what stores hold)

    def with_exit_code(self, code: int) -> TickResult:
        typed = replace(self.typed, exit_code=code) if self.typed is not None else None
        return replace(self, exit_code=code, record={**self.record, "exit_code": code}, typed=typed)

    @property
    def phase(self) -> Phase | None:
        return self.state.phase if self.state is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def live_summary(live: EndpointLive | None) -> dict[str, Any] | None:
    if live is None:
        return None
    return {
        "status": live.status,
        "failure_reason": live.failure_reason,
        "variants": {
            name: {
                "instance_type": v.instance_type,
                "share_percent": round(live.share(name), 3),
                "current_weight": v.current_weight,
                "desired_weight": v.desired_weight,
                "current_instance_count": v.current_instance_count,
                "desired_instance_count": v.desired_instance_count,
            }
            for name, v in live.variants.items()
        },
    }


def metrics_summary(observation: Observation | None) -> dict[str, Any]:
    """Per variant over the window: invocations, errors, p50 (invocation-weighted), worst p99, samples."""
    if observation is None:
        return {}
    out: dict[str, Any] = {
        "window_start": _iso(observation.window_start),
        "window_end": _iso(observation.window_end),
        "error": observation.error,
        "percentiles_available": observation.percentiles_available,
        "targeted": dict(observation.targeted),
        "variants": {},
    }
    for variant, minutes in observation.minutes.items():
        with_data = [m for m in minutes if m.has_data]
        invocations = sum(m.invocations or 0.0 for m in with_data)
        weighted = [(m.latency_p50_ms, m.invocations or 0.0) for m in with_data if m.latency_p50_ms is not None]
        weight_sum = sum(w for _, w in weighted)
        p50 = (sum(v * w for v, w in weighted) / weight_sum) if weight_sum > 0 else None
        p99s = [m.latency_p99_ms for m in with_data if m.latency_p99_ms is not None]
        out["variants"][variant] = {
            "minutes": len(minutes),
            "minutes_with_data": len(with_data),
            "invocations": invocations,
            "errors_5xx": sum(m.errors_5xx for m in with_data),
            "errors_4xx": sum(m.errors_4xx for m in with_data),
            "model_errors": sum(m.model_errors for m in with_data),
            "p50_ms": round(p50, 3) if p50 is not None else None,
            "p99_ms_worst_minute": round(max(p99s), 3) if p99s else None,
            "p99_ms_last_minute": round(p99s[-1], 3) if p99s else None,
            "latency_samples": sum(m.latency_samples for m in with_data),
        }
    return out


def _matches(live: EndpointLive, target: Target) -> bool:
    """Has this target been requested already (live Desired* equals it)?"""
    live_total = sum(v.desired_weight for v in live.variants.values())
    target_total = sum(float(w) for w in target.weights.values())
    for name, variant in live.variants.items():
        if name in target.weights:
            if live_total <= 0 or target_total <= 0:
                if abs(variant.desired_weight - float(target.weights[name])) > WEIGHT_TOLERANCE:
                    return False
            # Compare shares: SageMaker weights are relative.
            elif abs(variant.desired_weight / live_total - float(target.weights[name]) / target_total) > 1e-4:
                return False
        if name in target.instance_counts and variant.desired_instance_count != int(target.instance_counts[name]):
            return False
    return True


def _share(weights: Mapping[str, float], name: str) -> float:
    total = sum(float(w) for w in weights.values())
    return 100.0 * float(weights.get(name, 0.0)) / total if total > 0 else 0.0


def landed(live: EndpointLive) -> Target:
    """What the endpoint was asked to be (Desired*), as a Target: what this controller expects to
    find next tick after its own update (a staged update included)."""
    return Target(weights={n: v.desired_weight for n, v in live.variants.items()},
                  instance_counts={n: v.desired_instance_count for n, v in live.variants.items()})


def drift_of(state: ControllerState, live: EndpointLive) -> tuple[float, float] | None:
    """(neuron share we applied, neuron share live) when someone else moved the weights, else None.

    Weights only: autoscaling moves instance counts within min/max and that is nobody's drift."""
    if state.applied_target is None or state.intent is not None or state.phase not in DRIFT_PHASES:
        return None
    expected = _share(state.applied_target.weights, "neuron")
    now = _share({n: v.desired_weight for n, v in live.variants.items()}, "neuron")
    if abs(expected - now) <= DRIFT_TOLERANCE:
        return None
    return expected, now


def _silent_everywhere(observation: Observation, state: ControllerState) -> Observation:
    """No datapoint for any variant in the whole window although traffic was seen before: that is
    CloudWatch (or the endpoint) saying nothing, not an idle service. Unknown: the tick holds, and
    `fallback.max_unknown_ticks` such ticks fall back (docs/reliability.md: "holds, then fails safe")."""
    if not observation.known or not (state.memory.total_rps or 0) > 0:
        return observation
    since = state.last_window_end
    newest = state.memory.newest_minute
    # New = newer than the newest minute seen before. Not "started after the last tick": minutes that
    # arrive steadily late (CloudWatch L minutes behind) are all older than the last tick, and were
    # read as nothing new on L-1 ticks of every L (measured on late-metrics: 2 ticks of 3 unknown).
    fresh = [m for minutes in observation.minutes.values() for m in minutes
             if (m.start > newest if newest is not None else since is None or m.start >= since)]
    # Only the minutes this tick judges for the first time (a clock that ran backwards judges none).
    new_minutes = since is None or observation.window_end > since
    if not new_minutes or any(m.has_data for m in fresh):
        return observation
    return replace(observation, error=f"no datapoints for any variant in the new minutes although "
                                      f"{state.memory.total_rps:g} req/s were seen before")


def mismatch_of(state: ControllerState, live: EndpointLive) -> str | None:
    """A sentence when the stored state and the live endpoint disagree, else None."""
    share = live.share("neuron")
    if state.phase in (Phase.IDLE, Phase.ABORTED) and share > DRIFT_TOLERANCE:
        return (f"the state says {state.phase.value} but neuron carries {share:.1f}% of the live traffic "
                f"(another state folder, or a change by hand): `hybrid canary abort` puts all on gpu")
    drift = drift_of(state, live)
    if drift is not None:
        return (f"the live weights (neuron {drift[1]:.1f}%) differ from what the controller last applied "
                f"({drift[0]:.1f}%): changed outside the controller")
    return None


def exit_code_for(decision: Decision | None, state: ControllerState | None, command: str | None = None) -> int:
    """1 when a tick fell back or the canary is aborted (a pipeline reads "rolled back"). A human's
    command that did what it was asked exits 0, `abort` included (set -e scripts, retries)."""
    if command is not None:
        return EXIT_OK
    if decision is not None and decision.action in FAILED_ACTIONS:
        return EXIT_ROLLED_BACK
    if state is not None and state.phase in (Phase.ABORTED, Phase.FALLING_BACK):
        return EXIT_ROLLED_BACK
    return EXIT_OK


class Controller:
    """One endpoint's controller: `tick()` for the loop, `command()` for humans."""

    def __init__(
        self,
        config: Any,
        metrics: MetricsSource,
        router: Router,
        store: StateStore,
        clock: Any,
        prices: Mapping[str, float] | None = None,
        policy: ModuleType | Any | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.router = router
        self.store = store
        self.clock = clock
        self._prices = dict(prices) if prices is not None else None
        self.policy = policy if policy is not None else importlib.import_module("routing.policy")
        self.endpoint = config.name
        self.recovered: list[dict[str, Any]] = []  # records this controller appended for an earlier tick

    # -- inputs ----------------------------------------------------------------------------------

    def prices_for(self, live: EndpointLive) -> dict[str, float]:
        """$/hour per instance type of the live variants (config `prices:` first, then the built-in table)."""
        from toolkit.pricing import price_per_hour

        overrides = {**self.config.prices, **(self._prices or {})}
        out: dict[str, float] = dict(self._prices or {})
        for name, variant in live.variants.items():
            instance_type = variant.instance_type or self.config.variant(name).instance_type
            out[instance_type] = price_per_hour(instance_type, overrides)
        return out

    def _load(self, command: str | None = None) -> tuple[ControllerState, int | None]:
        try:
            state = self.store.load()
        except StateUnreadable:
            if command != "abort":
                raise
            # The big red button works with a corrupt state: decide from the live endpoint alone
            # (_run sends the update and leaves a record, and leaves the unreadable state as it is).
            return self.policy.initial_state(self.config, self.endpoint), -1
        if state is None:
            return self.policy.initial_state(self.config, self.endpoint), None
        return state, state.version

    # -- public API ------------------------------------------------------------------------------

    def tick(self, dry_run: bool = False) -> TickResult:
        return self._run(None, dry_run)

    def tick_leased(self, command: str | None = None, *, dry_run: bool = False, source: str = "cli") -> TickResult:
        """A tick (command None) or a human's command under the store's lease, if the store has one.

        The CLI and the Lambda both call this. When another controller holds the lease, a tick
        leaves a stand-aside record and returns it (stood_aside, no decision, exit 0); a command
        raises AwsError instead (a human's command must not silently do nothing).
        """
        store = self.store
        leased = isinstance(store, LeasedStore)
        if leased and not store.acquire():
            holder = store.holder_text()
            if command is not None:
                raise AwsError(f"cannot {command} now: {holder}; another controller is ticking, try again shortly")
            record = store.record_standing_aside(self.clock.now(), source=source)
            return TickResult(None, record, EXIT_OK, stood_aside=True)
        try:
            return self.tick(dry_run=dry_run) if command is None else self.command(command, dry_run=dry_run)
        except (Exception, KeyboardInterrupt):
            # An error, or Ctrl-C in the CLI, ends our hold at once, so the next tick need not wait for
            # the lease to expire. A killed process never gets here: its lease expires; its intent stays
            # for repair.
            if leased:
                store.release()
            raise

    def command(self, name: str, dry_run: bool = False) -> TickResult:
        if name not in COMMANDS:
            raise UserError(f"unknown command {name!r}: use one of {', '.join(COMMANDS)}")
        result = self._run(name, dry_run)
        if result.stood_aside:
            # A human's command must not vanish because a tick saved first: decide it again on the
            # new state once; if it loses again, say so (exit 3) instead of reporting success.
            result = self._run(name, dry_run)
            if result.stood_aside:
                result = result.with_exit_code(EXIT_AWS)
        return result

    def status(self) -> dict[str, Any]:
        """Endpoint + controller summary without deciding anything (no metrics read, nothing saved).

        The live split is always shown, whatever the state says (even an unreadable one), and a
        state that disagrees with the live endpoint is flagged (`mismatch`)."""
        live = self.router.describe()
        unreadable: str | None = None
        try:
            state = self.store.load() or self.policy.initial_state(self.config, self.endpoint)
        except StateUnreadable as error:
            unreadable = str(error)
            state = self.policy.initial_state(self.config, self.endpoint)
        records = self.store.records(limit=STATUS_RECORDS)
        last_change = next((r for r in reversed(records) if r.get("applied")), None)
        view = status_view(self.config, state, live, records[-1] if records else None, last_change)
        view["state_error"] = unreadable
        view["mismatch"] = unreadable or mismatch_of(state, live)
        return view

    def record_interruption(self, ticks: int) -> None:
        """A record saying `route run` was stopped by Ctrl-C (best effort: the stop must not fail)."""
        try:
            state = self.store.load() or self.policy.initial_state(self.config, self.endpoint)
        except HybridError:
            state = self.policy.initial_state(self.config, self.endpoint)
        record = DecisionRecord(time=self.clock.now(), tick_id=uuid.uuid4().hex, endpoint=self.endpoint,
                                command="run", phase_before=state.phase, phase=state.phase, action=Action.NONE,
                                reason=f"route run interrupted (Ctrl-C) after {ticks} tick(s); the endpoint keeps "
                                       f"its split", state_version=state.version, exit_code=EXIT_INTERRUPTED)
        try:
            self.store.append_record(record.to_dict())
        except (HybridError, OSError) as error:
            log.warning("could not record the interruption: %s", error)

    def reset(self) -> TickResult:
        """`hybrid canary reset`: replace an unreadable (or any) state with one rebuilt from the live
        endpoint and the records: paused if neuron carries weight (a human decides: resume or abort),
        else idle. Leaves a record; the old state file is kept beside it."""
        now = self.clock.now()
        live = self.router.describe()
        self._check_hardware(live)
        records = self.store.records(limit=STATUS_RECORDS)
        last = next((r for r in reversed(records) if r.get("phase") and not r.get("stood_aside")), None)
        steps = tuple((last or {}).get("steps") or ()) or tuple(self.config.canary.resolved_steps())
        share = live.share("neuron")
        fresh = self.policy.initial_state(self.config, self.endpoint)
        if share > 0:
            was = Phase((last or {}).get("phase") or Phase.HOLDING.value)
            paused_in = was if was in DRIFT_PHASES else Phase.HOLDING
            step = max(0, min(int(((last or {}).get("step") or {}).get("k", 1)) - 1, len(steps) - 1))
            state = fresh.evolve(phase=Phase.PAUSED, paused_phase=paused_in, steps=steps, step=step, phase_since=now,
                                 last_tick_at=now)
            reason = (f"state rebuilt from the live endpoint (neuron {share:.1f}%) and the records: paused during "
                      f"{paused_in.value}; resume to continue or abort to put all on gpu")
        else:
            state = fresh.evolve(last_tick_at=now)
            reason = "state rebuilt from the live endpoint (neuron 0%): idle"
        reset = getattr(self.store, "reset", None)
        if reset is None:
            raise UserError("this state store cannot be reset")
        saved = reset(state)
        record = DecisionRecord(time=now, tick_id=uuid.uuid4().hex, endpoint=self.endpoint, command="reset",
                                phase_before=Phase.IDLE, phase=saved.phase, action=Action.NONE, reason=reason,
                                before=live_summary(live), after=live_summary(live), state_version=saved.version,
                                step=StepText.of(saved, steps))
        self.store.append_record(record.to_dict())
        return TickResult(None, record.to_dict(), EXIT_OK, saved, live, typed=record)

    # -- the tick --------------------------------------------------------------------------------

    def _run(self, command: str | None, dry_run: bool) -> TickResult:
        now = self.clock.now()
        self.recovered = []  # per tick (a warm Lambda reuses this controller)
        errors: list[str] = []
        warnings: list[str] = []
        notes: list[str] = []
        state, version = self._load(command)
        stateless = version == -1  # abort over an unreadable state: send and record, save nothing
        try:
            live = self.router.describe()
        except AwsError as error:
            # The tick knows nothing and changes nothing, but it leaves a trace (exit 3).
            self.store.append_record(self._failed_record(now, command, state, str(error)))
            raise
        self._check_hardware(live)
        state = self._append_unrecorded(state)
        remedy = stuck_remedy(live)
        if remedy is not None:
            # No update is possible until a human repairs the endpoint: decide nothing, keep the
            # state, and say so loudly on every tick (exit 3) instead of waiting forever.
            return self._stuck(now, command, state, live, remedy)
        live_before = live

        state, version, redo = self._reconcile(state, version, live, now, dry_run, notes)
        if stateless:
            notes.append("the stored state is unreadable: aborted from the live endpoint alone; the state file is "
                         "left as it is (run `hybrid canary reset` to rebuild it)")

        observation: Observation | None = None
        drift = drift_of(state, live) if command is None and redo is None else None
        if drift is not None:
            decision = self._drift_decision(state, live, now, drift)
        elif redo is not None:
            decision = redo  # re-apply a fallback/abort whose update never reached AWS
        elif command is not None:
            decision = self.policy.apply_command(self.config, state, command, live, now)
        else:
            # issue 17: a changed neuron model goes back to the first step (routing/core/versions.py)
            versioned = versions.check(state, live, now)
            state = versioned.state
            notes.extend(versioned.notes)
            minutes = int(self.policy.window_minutes(self.config, state))
            observation = reject_non_finite(self.metrics.observe(self.endpoint, VARIANTS, now, minutes))
            observation = _silent_everywhere(observation, state)
            if observation.error:
                errors.append(observation.error)
            if not observation.percentiles_available:
                warnings.append("ModelLatency percentiles were empty: Average/Maximum stand in for p50/p99")
            decision = self.policy.decide(self.config, state, live, observation, now, self.prices_for(live))
            decision = versions.guard_unjudged(self.config, decision, live, now, versioned)  # issue 17

        new_state = decision.state.evolve(last_tick_at=now)
        target = decision.target
        # Already requested (e.g. reconciled after a crash): never send the same step twice.
        target_needed = target is not None and not self._reached(live, target)
        applied = False
        stood_aside = False
        exit_override: int | None = None
        live_after = live

        if dry_run:
            notes.append("dry run: nothing saved, endpoint unchanged")
        elif stateless:
            if target_needed:
                assert target is not None
                try:
                    live_after = self.router.apply(target)
                    applied = True
                    errors.extend(self._verify(live_after, target, notes))
                except HybridError as error:
                    errors.append(str(error))
                    exit_override = EXIT_AWS
            new_state = decision.state
        else:
            try:
                if target_needed:
                    assert target is not None
                    intent = Intent(target=target, action=decision.action, decided_at=now,
                                    previous_state=state.evolve(intent=None, unrecorded=None))
                    with_intent = new_state.evolve(intent=intent, unrecorded=None)
                    saved = self.store.save(with_intent, version)
                    version = saved.version
                    try:
                        # Fencing at the endpoint: the store re-checks, right before the update, that
                        # no other controller decided since our save (and that our lease still runs).
                        with self._fenced(version):
                            live_after = self.router.apply(target)
                        applied = True
                    except EndpointBusy as busy:
                        errors.append(str(busy))
                        if decision.action in FAILED_ACTIONS and new_state.phase != state.phase:
                            # A fallback or abort stands although SageMaker refuses updates while it
                            # updates (an autoscaling activity can take minutes): the new phase re-asks
                            # every tick until neuron is drained, and the record says when it was decided.
                            notes.append("decided while the endpoint updates; sent as soon as it is InService")
                        else:
                            new_state = state  # nothing changed on the endpoint: keep the previous state
                    except (AwsError, HybridError) as error:
                        # AWS trouble, or the endpoint/variant vanished between describe and update:
                        # nothing landed; the intent is cleared, the record says why (exit 3).
                        errors.append(str(error))
                        new_state = state
                        exit_override = EXIT_AWS
                    if applied:
                        errors.extend(self._verify(live_after, target, notes))
                        new_state = new_state.evolve(applied_target=landed(live_after))
                    new_state = new_state.evolve(intent=None, last_tick_at=now)
                elif command is not None:
                    # A command that sent nothing leaves no expectation of the weights (resume, start...).
                    new_state = new_state.evolve(applied_target=landed(live) if new_state.phase in DRIFT_PHASES
                                                 else None)
                exit_override = self._sync_scaling(new_state.phase, target, errors, notes, exit_override)
                ahead = self._record(
                    now=now, command=command, state_before=state, state_after=new_state.evolve(version=(version or 0) + 1),
                    decision=decision, observation=observation, live_before=live_before, live_after=live_after,
                    target=target, dry_run=dry_run, applied=applied, errors=errors, warnings=warnings, notes=notes,
                    stood_aside=False,
                )
                ahead = replace(ahead, exit_code=exit_override if exit_override is not None
                                else exit_code_for(decision, new_state, command))
                # Saved with the state, appended right after: a crash in between is repaired by the next tick.
                new_state = self.store.save(new_state.evolve(unrecorded=ahead.to_dict()), version)
                ahead = replace(ahead, state_version=new_state.version)
                self.store.append_record(ahead.to_dict())
                return TickResult(decision, ahead.to_dict(), ahead.exit_code, new_state, live_after, False, errors,
                                  typed=ahead)
            except ConcurrentModification as conflict:
                stood_aside = True
                new_state = state  # what this tick decided was not stored: record the state it found
                errors.append(f"stood aside: {conflict}")
                if applied:
                    # Said as it is: the update landed, only the state save lost (the next tick
                    # reads the live endpoint and keeps it). Exit 3, not a quiet 0.
                    notes.append("the endpoint update reached AWS but the state could not be saved after it; "
                                 "the next tick reconciles with the live endpoint")
                    exit_override = EXIT_AWS
                else:
                    notes.append("another controller saved first; this tick changed nothing further")

        record = self._record(
            now=now, command=command, state_before=state, state_after=new_state, decision=decision,
            observation=observation, live_before=live_before, live_after=live_after, target=target,
            dry_run=dry_run, applied=applied, errors=errors, warnings=warnings, notes=notes,
            stood_aside=stood_aside,
        )
        code = exit_override if exit_override is not None else exit_code_for(decision, new_state, command)
        if stood_aside and exit_override is None:
            code = EXIT_OK
        record = replace(record, exit_code=code)
        self.store.append_record(record.to_dict())  # also when standing aside: that is worth a record
        return TickResult(decision, record.to_dict(), code, new_state, live_after, stood_aside, errors, typed=record)

    def _reached(self, live: EndpointLive, target: Target) -> bool:
        """Has the endpoint's part of `target` been requested? (Autoscaled variants' counts are not
        the endpoint's: the router turns them into scalable-target floors, routing/adapters/autoscaling.py.)"""
        part = getattr(self.router, "endpoint_part", None)
        return _matches(live, part(target) if part is not None else target)

    def _sync_scaling(self, phase: Phase, target: Target | None, errors: list[str], notes: list[str],
                      exit_override: int | None) -> int | None:
        """Every tick: the autoscaled variants' floors and scale-in switch for this phase (routers that have them)."""
        sync = getattr(self.router, "sync_scaling", None)
        if sync is None:
            return exit_override
        try:
            notes.extend(sync(phase, target))
        except AwsError as error:
            # The endpoint update (a fallback included) is already done; the floor follows next tick.
            errors.append(str(error))
            return exit_override if exit_override is not None else EXIT_AWS
        return exit_override

    def _fenced(self, version: int | None) -> Any:
        fence = getattr(self.store, "fenced", None)
        return fence(version) if fence is not None else contextlib.nullcontext()

    def _drift_decision(self, state: ControllerState, live: EndpointLive, now: datetime,
                        drift: tuple[float, float]) -> Decision:
        """Someone else moved the weights: pause (never revert), say what changed and when."""
        expected, found = drift
        phase = state.phase
        paused = transition(state, Event.PAUSE, paused_phase=phase, phase_since=now, applied_target=None)
        since = state.last_tick_at.isoformat() if state.last_tick_at else "the last tick"
        reason = (f"drift: the live weights were changed outside this controller between {since} and "
                  f"{now.isoformat()}: neuron {expected:.1f}% -> {found:.1f}%; paused during {phase.value}, "
                  f"not reverted: `hybrid canary resume` continues from the live split, `abort` puts all on gpu")
        return Decision(state=paused, action=Action.NONE, reason=reason,
                        statistics={"drift": {"before_neuron_percent": round(expected, 3),
                                              "after_neuron_percent": round(found, 3),
                                              "detected_at": now.isoformat(),
                                              "last_tick_at": state.last_tick_at.isoformat()
                                              if state.last_tick_at else None}})

    def _check_hardware(self, live: EndpointLive) -> None:
        """Refuse to drive an endpoint whose hardware is not what hybrid.yaml says (prices and sizing would lie)."""
        for name in VARIANTS:
            variant = live.variants.get(name)
            wanted = self.config.variant(name).instance_type
            if variant is not None and variant.instance_type and variant.instance_type != wanted:
                raise UserError(
                    f"endpoint {self.endpoint!r} variant {name} runs {variant.instance_type}, but hybrid.yaml says "
                    f"{wanted}: fix variants.{name}.instance_type or redeploy the endpoint"
                )

    def _append_unrecorded(self, state: ControllerState) -> ControllerState:
        """A tick that died after saving its state and before appending its record: append that record now.

        Returns the state without it: the record is in the log now, and this tick's save clears it.
        """
        pending = state.unrecorded
        if not pending:
            return state
        # Stood-aside records of other ticks may follow it: look a little further back than the newest.
        tick_id = str(pending.get("tick_id"))
        has = getattr(self.store, "has_record", None)
        present = has(tick_id) if has is not None else \
            any(r.get("tick_id") == tick_id for r in self.store.records(limit=RECOVERY_LOOKBACK))
        if not present:
            record = {**pending, "notes": [*pending.get("notes", []),
                                           "appended by the next tick: its own write did not land (the process "
                                           "stopped, or the store refused it)"]}
            self.store.append_record(record)
            self.recovered.append(record)
        return state.evolve(unrecorded=None)

    def _stuck(self, now: datetime, command: str | None, state: ControllerState, live: EndpointLive,
               remedy: str) -> TickResult:
        previous = self.store.records(limit=1)
        before = (previous[-1].get("before") or {}) if previous else {}
        again = bool(previous) and previous[-1].get("exit_code") == EXIT_AWS and before.get("status") == live.status
        record = DecisionRecord(
            time=now, tick_id=uuid.uuid4().hex, endpoint=self.endpoint, command=command or "tick",
            phase_before=state.phase, phase=state.phase, action=Action.NONE, reason=remedy,
            step=StepText.of(state, state.steps or tuple(self.config.canary.resolved_steps())),
            before=live_summary(live), after=live_summary(live), state_version=state.version, errors=(remedy,),
            notes=(STUCK_AGAIN_NOTE if again else f"{STUCK_FIRST_NOTE} {live.status}",
                   "nothing decided or sent; the controller's state is kept for when the endpoint is repaired"),
            exit_code=EXIT_AWS,
        )
        self.store.append_record(record.to_dict())
        return TickResult(None, record.to_dict(), EXIT_AWS, state, live, errors=[remedy], typed=record)

    def _failed_record(self, now: datetime, command: str | None, state: ControllerState, error: str) -> dict[str, Any]:
        return DecisionRecord(
            time=now, tick_id=uuid.uuid4().hex, endpoint=self.endpoint, command=command or "tick",
            phase_before=state.phase, phase=state.phase, action=Action.NONE,
            reason=f"the endpoint could not be read: {error}", state_version=state.version, errors=(error,),
            exit_code=EXIT_AWS,
        ).to_dict()

    def _reconcile(
        self,
        state: ControllerState,
        version: int | None,
        live: EndpointLive,
        now: datetime,
        dry_run: bool,
        notes: list[str],
    ) -> tuple[ControllerState, int | None, Decision | None]:
        """Finish or undo the intent of a tick that crashed between saving it and confirming it."""
        intent = state.intent
        if intent is None:
            return state, version, None
        target, action, decided_at = intent.target, intent.action, intent.decided_at.isoformat()
        # Whatever the endpoint shows now may be our own update in flight: never drift.
        clean = state.evolve(intent=None, applied_target=landed(live))
        if self._reached(live, target):
            notes.append(f"recovered: the {action.value} decided at {decided_at} reached the "
                         f"endpoint before the crash; kept, not sent again")
            return clean, version, None
        if action in SAFE_DIRECTION:
            notes.append(f"recovered: the {action.value} decided at {decided_at} never reached the "
                         f"endpoint; re-applying it now")
            redo = Decision(state=clean, action=action, reason=f"re-applying the interrupted {action.value}",
                            target=target)
            return clean, version, redo
        previous = intent.previous_state or clean
        notes.append(f"recovered: the {action.value} decided at {decided_at} never reached the "
                     f"endpoint; dropped, deciding again on fresh metrics")
        return previous.evolve(version=state.version, applied_target=landed(live)), version, None

    def _verify(self, live: EndpointLive, target: Target, notes: list[str]) -> list[str]:
        problems: list[str] = []
        if live.failure_reason:
            problems.append(f"endpoint FailureReason: {live.failure_reason}")
        if not self._reached(live, target):
            # One stage of a larger move (routing/core/staging.py): not an error, the next tick sends the next.
            notes.append("staged update: this request is one stage toward the target; the next tick sends the next")
        if live.status not in ("InService", "Updating"):
            problems.append(f"endpoint status {live.status} after the update")
        return problems

    def _record(
        self,
        *,
        now: datetime,
        command: str | None,
        state_before: ControllerState,
        state_after: ControllerState,
        decision: Decision,
        observation: Observation | None,
        live_before: EndpointLive,
        live_after: EndpointLive,
        target: Target | None,
        dry_run: bool,
        applied: bool,
        errors: list[str],
        warnings: list[str],
        notes: list[str],
        stood_aside: bool,
    ) -> DecisionRecord:
        settled = all(v.current_weight == v.desired_weight and v.current_instance_count == v.desired_instance_count
                      for v in live_after.variants.values())
        metrics = {**metrics_summary(observation),
                   **({"client_fallbacks": dict(getattr(self.metrics, "last_fallbacks", {}) or {})}
                      if observation is not None and observation.known else {})}
        return DecisionRecord.of_decision(
            time=now, tick_id=uuid.uuid4().hex, endpoint=self.endpoint, command=command, state_before=state_before,
            state_after=state_after, decision=decision, target=target, metrics=metrics,
            before=live_summary(live_before), after=live_summary(live_after), settled=settled, dry_run=dry_run,
            applied=applied, stood_aside=stood_aside, errors=tuple(errors), warnings=tuple(warnings), notes=tuple(notes),
        )


def _step_text(state: ControllerState, steps: tuple[float, ...]) -> dict[str, Any]:
    return StepText.of(state, steps).to_dict()


def _judgement(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    out = {
        key: record.get(key)
        for key in ("time", "command", "phase", "action", "reason", "gates", "failed_gates", "cost_per_1k",
                    "statistics", "target", "errors", "dry_run", "applied")
    }
    out["metrics"] = (record.get("metrics") or {}).get("variants")
    return out


def status_view(config: Any, state: ControllerState, live: EndpointLive, last: Mapping[str, Any] | None,
                last_change: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What `hybrid canary status` / `hybrid status` show: phase, step k/n, live split, last judgement.

    last_judgement is the newest record; last_change the newest record that changed the endpoint
    (after a fallback, the ticks that follow only cool down: the fallback's numbers stay visible).
    """
    steps = state.steps or tuple(config.canary.resolved_steps())
    return {
        "endpoint": config.name,
        "region": config.region,
        "phase": state.phase.value,
        "step": _step_text(state, steps),
        "steps": list(steps),
        "phase_since": _iso(state.phase_since),
        "fallbacks": state.fallbacks,
        "cooldown_until": _iso(state.cooldown_until),
        "last_tick_at": _iso(state.last_tick_at),
        "pending_intent": state.intent is not None,
        "endpoint_status": live.status,
        "failure_reason": live.failure_reason,
        "weights": {name: round(live.share(name), 3) for name in live.variants},
        "live": live_summary(live),
        "counts": live.counts(),
        "last_judgement": _judgement(last),
        "last_change": _judgement(last_change),
    }


def build_controller(
    config: Any,
    *,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    state_dir: str | Path | None = None,
    clock: Any = None,
    settle_seconds: int = 0,
    policy: Any = None,
    store: StateStore | None = None,
) -> Controller:
    """The AWS controller: CloudWatch metrics, SageMaker router, local JSON state, system clock.

    endpoint_url (or env AWS_ENDPOINT_URL) targets the embedded AWS; without it, real AWS.
    store: another StateStore (the Lambda's DynamoDB store); default the local JSON files.
    settle_seconds: extra delay before a minute counts as closed (see routing/metrics.py).
    Refuses (exit 2) a --region that differs from the config's, and an account other than
    `account` in the config (checked with STS only when `account` is set).
    """
    from routing.adapters.autoscaling import ScalableTargets
    from routing.adapters.aws import AwsClients
    from routing.adapters.clock import SystemClock
    from routing.adapters.cloudwatch import CloudWatchMetrics
    from routing.adapters.json_store import JsonFileStateStore
    from routing.adapters.sagemaker import SageMakerRouter

    clients = AwsClients.for_config(config, profile=profile, endpoint_url=endpoint_url, region=region)
    # Variants with a scalable target are scaled by Application Auto Scaling; the router owns their floor.
    autoscaling = ScalableTargets(clients.get("application-autoscaling"), config.name, VARIANTS)
    return Controller(
        config,
        metrics=CloudWatchMetrics(clients.cloudwatch, settle_seconds=settle_seconds),
        router=SageMakerRouter(clients.sagemaker, config.name, VARIANTS, autoscaling=autoscaling,
                               base_floors={v: config.variant(v).min_count for v in VARIANTS}),
        store=store if store is not None else JsonFileStateStore(resolve_state_dir(config, state_dir), config.name),
        clock=clock or SystemClock(),
        policy=policy,
    )


def run_loop(
    controller: Controller,
    *,
    wait: Callable[[], None],
    on_result: Callable[[TickResult], None],
    on_warning: Callable[[str], None],
    dry_run: bool = False,
    max_ticks: int | None = None,
    forever: bool = False,
) -> int:
    """`hybrid route run`: tick (under the lease) until holding (exit 0), a fallback/abort (exit 1),
    max_ticks, or Ctrl-C. A transient AWS error is survived; fallback.max_unknown_ticks of them in a
    row end the loop by raising (exit 3). wait() sleeps one interval (or advances a pinned clock)."""
    ticks = 0
    code = EXIT_OK
    failures = 0  # consecutive ticks that could not reach SageMaker
    limit = controller.config.fallback.max_unknown_ticks
    try:
        while True:
            try:
                result = controller.tick_leased(dry_run=dry_run)
            except AwsError as error:
                # Retries already ran inside boto3; a persistent error ends the loop after `limit` ticks.
                failures += 1
                if failures >= limit:
                    raise
                on_warning(f"tick failed ({failures}/{limit}): {error}")
                wait()
                continue
            failures = 0
            ticks += 1
            on_result(result)
            if not result.stood_aside or result.decision is not None:
                code = result.exit_code
                if code != EXIT_OK or (result.phase == Phase.HOLDING and not forever):
                    break
            if max_ticks is not None and ticks >= max_ticks:
                break
            wait()
    except KeyboardInterrupt:
        # State and records are saved at the end of each tick: stopping between ticks loses nothing.
        # The stop itself is recorded (who reads the log sees why the ticks ended) and exits 130.
        controller.record_interruption(ticks)
        return EXIT_INTERRUPTED
    return code
