"""The simulation loop: one simulated minute of traffic, then one controller tick, on a simulated clock.

    sim = Simulator(setup, plane, sink, clock)      # the data plane (fleet + autoscaling)
    result = run(setup, sim, controller)            # the same Controller users run against AWS

Per minute m:
  1. the endpoint's pending update (if any) advances: new instances start (ready after the
     scale-up delay), and once they serve the update settles (Current* := Desired*, InService);
  2. the fleet serves minute m at the live (current) weights; the sink publishes its metrics
     (in memory, or PutMetricData to the embedded CloudWatch), late under a metric_delay fault;
  3. simulated Application Auto Scaling (target tracking on InvocationsPerInstance) may ask for
     more or fewer instances, as AAS does: through UpdateEndpointWeightsAndCapacities;
  4. the clock moves to 5 s after minute m+1 starts and the controller ticks (minute m is the
     newest closed minute). At `canary_start_minute` the tick is `canary start` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from routing.clock import ManualClock
from toolkit.config import GPU, NEURON, VARIANT_NAMES
from toolkit.sim.fleet import Fleet, MinuteOutcome
from toolkit.sim.memory import (
    MemoryControlPlane,
    MemoryStateStore,
    PlaneState,
    SimulatedEndpoint,
    SimulatedMetrics,
)
from toolkit.sim.scenario import Setup

TICK_OFFSET_SECONDS = 5  # the controller ticks a few seconds after each minute closes
# The deployed Lambda judges a minute only this long after it closes (routing.lambda_handler.SETTLE_SECONDS,
# set by the stack): the bench and the demo run the controller as deployed.
DEPLOYED_SETTLE_SECONDS = 60
HARM_KINDS = ("latency", "errors", "outage")  # fault kinds that can harm users (whether they do: Row.harmful)


class SimClock(ManualClock):
    """routing.model.Clock for the simulation: time moves only when the simulator says so."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.origin = self.now()

    def at_minute(self, minute: int, seconds: float = 0.0) -> datetime:
        self.set(self.origin + timedelta(minutes=minute, seconds=seconds))
        return self.now()


class ControlPlane(Protocol):
    def read(self) -> PlaneState: ...

    def scale(self, variant: str, count: int) -> bool: ...

    def settle(self, counts: dict[str, int]) -> None: ...

    def deploy_model(self, variant: str, model: str) -> None: ...


class Sink(Protocol):
    def publish_minute(self, outcome: MinuteOutcome) -> None: ...


class MemorySink:
    def __init__(self, metrics: SimulatedMetrics) -> None:
        self.metrics = metrics

    def publish_minute(self, outcome: MinuteOutcome) -> None:
        for vm in outcome.variants.values():
            self.metrics.publish(vm)


class TargetTracking:
    """Application Auto Scaling target tracking on SageMakerVariantInvocationsPerInstance.

    Scale out after `scale_out_minutes` consecutive minutes above target, in after
    `scale_in_minutes` below (AAS's alarms: 3 and 15 one-minute datapoints); desired =
    ceil(invocations / target) within min..max. No datapoint (outage) means no action; like AAS,
    it cannot act while the endpoint updates (the request is refused and retried next minute).
    Routers that manage the scalable targets (sync_scaling) leave floors and a scale-in switch on
    the plane: never below the floor, no scale-in while suspended (as AAS with MinCapacity and
    DynamicScalingInSuspended).
    """

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.enabled = setup.scenario.autoscaling.enabled
        self.up = dict.fromkeys(VARIANT_NAMES, 0)
        self.down = dict.fromkeys(VARIANT_NAMES, 0)
        self.calls = 0

    def after_minute(self, outcome: MinuteOutcome, plane: ControlPlane) -> list[str]:
        if not self.enabled:
            return []
        events: list[str] = []
        auto = self.setup.scenario.autoscaling
        state = plane.read()
        for name in VARIANT_NAMES:
            vm = outcome.variants[name]
            if not vm.published:
                continue
            hw = self.setup.hardware[name]
            current = int(state.desired_counts.get(name, 0))
            want = math.ceil(vm.requests / hw.target_invocations_per_instance) if vm.requests else 0
            floor = max(hw.min_count, int(getattr(state, "floors", {}).get(name, hw.min_count)))
            want = max(floor, min(hw.max_count, want))
            if want < current and getattr(state, "scale_in_suspended", {}).get(name, False):
                want = current  # the controller suspended dynamic scale-in (as the AWS router does)
            if want > current:
                self.up[name], self.down[name] = self.up[name] + 1, 0
            elif want < current:
                self.up[name], self.down[name] = 0, self.down[name] + 1
            else:
                self.up[name] = self.down[name] = 0
            if self.up[name] >= auto.scale_out_minutes or self.down[name] >= auto.scale_in_minutes:
                self.calls += 1
                if plane.scale(name, want):
                    events.append(f"autoscaling: {name} {current} -> {want} instances")
                    self.up[name] = self.down[name] = 0
                    state = plane.read()
        return events


class Simulator:
    """The data plane of one simulated endpoint: a fleet, its control plane, a metrics sink, a clock."""

    def __init__(self, setup: Setup, plane: ControlPlane, sink: Sink, clock: SimClock,
                 seed: int | None = None) -> None:
        self.setup = setup
        self.plane = plane
        self.sink = sink
        self.clock = clock
        self.fleet = Fleet(setup, seed)
        self.autoscaler = TargetTracking(setup)
        self.minute = 0
        self.events: list[str] = []
        clock.at_minute(0, TICK_OFFSET_SECONDS)
        self.model_versions = {name: 1 for name in VARIANT_NAMES}
        self.deployed_events: set[int] = set()  # indexes of the scenario's new_model events already deployed

    def _deploy_models(self, minute: int) -> list[str]:
        """Scenario events: a new model version on a variant (weights and counts retained).

        As a deploy pipeline would, it waits for the endpoint to be InService: SageMaker refuses
        UpdateEndpoint while the endpoint updates (a scale-up holds it for minutes)."""
        out = []
        for index, event in enumerate(self.setup.scenario.events):
            if event.kind != "new_model" or event.minute > minute or index in self.deployed_events:
                continue
            if self.plane.read().status != "InService":
                continue  # tried again next minute
            self.deployed_events.add(index)
            self.model_versions[event.variant] += 1
            version = self.model_versions[event.variant]
            self.plane.deploy_model(event.variant, model_name(self.setup, event.variant, version))
            late = f" (waited {minute - event.minute} min for InService)" if minute > event.minute else ""
            out.append(f"{event.variant}: new model v{version} deployed{late}")
        return out

    def step(self) -> MinuteOutcome:
        minute = self.minute
        deployed = self._deploy_models(minute)
        state = self.plane.read()
        if state.status == "Updating":
            self.fleet.set_counts(minute, state.desired_counts)
            if not self.fleet.scaling():
                self.plane.settle(self.fleet.counts())
                state = self.plane.read()
        else:
            self.fleet.promote(minute)
        outcome = self.fleet.serve(minute, state.current_weights)
        self.sink.publish_minute(outcome)
        self.events = deployed + self.autoscaler.after_minute(outcome, self.plane)
        self.minute += 1
        self.clock.at_minute(self.minute, TICK_OFFSET_SECONDS)
        return outcome


@dataclass
class MemoryWorld:
    """Everything the in-memory path needs: the simulator plus the controller's adapters."""

    simulator: Simulator
    router: SimulatedEndpoint
    metrics: SimulatedMetrics
    store: MemoryStateStore
    clock: SimClock

    def controller(self, policy: Any = None) -> Any:
        from routing.controller import Controller

        config = self.simulator.setup.config
        prices = {hw.instance_type: hw.price_per_hour for hw in self.simulator.setup.hardware.values()}
        return Controller(config, metrics=self.metrics, router=self.router, store=self.store, clock=self.clock,
                          prices=prices, policy=policy)


def initial_plane(setup: Setup) -> MemoryControlPlane:
    config = setup.config
    weights = {NEURON: float(config.initial_weights.neuron), GPU: float(config.initial_weights.gpu)}
    counts = {name: setup.hardware[name].initial_count for name in VARIANT_NAMES}
    types = {name: setup.hardware[name].instance_type for name in VARIANT_NAMES}
    plane = MemoryControlPlane(weights, counts, types)
    for name in VARIANT_NAMES:
        plane.deploy_model(name, model_name(setup, name, 1))
    return plane


def model_name(setup: Setup, variant: str, version: int) -> str:
    """The simulated model of `variant`, version `version` (scenario `events` deploy the next one)."""
    return f"{setup.config.name}-{variant}-v{version}"


def memory_world(setup: Setup, seed: int | None = None, settle_seconds: int = DEPLOYED_SETTLE_SECONDS) -> MemoryWorld:
    """The in-memory path: no AWS emulation, fast enough for many seeds."""
    clock = SimClock(setup.scenario.start)
    plane = initial_plane(setup)
    metrics = SimulatedMetrics(setup.scenario.start, settle_seconds, setup.scenario.metrics.percentiles)
    simulator = Simulator(setup, plane, MemorySink(metrics), clock, seed)
    floors = {v: setup.hardware[v].min_count for v in VARIANT_NAMES}
    return MemoryWorld(simulator, SimulatedEndpoint(setup.config.name, plane, floors), metrics, MemoryStateStore(), clock)


# ------------------------------------------------------------------------------------------------
# Running a controller against a simulator, and what it produced


@dataclass
class Row:
    """One simulated minute and the tick that followed it."""

    minute: int
    offered: int
    share: dict[str, float]  # live traffic share (percent) the minute was served at
    instances: dict[str, int]
    requests: dict[str, int]
    p99_ms: dict[str, float | None]
    true_p99_ms: float | None
    cost: float
    cost_per_1k: dict[str, float | None]
    over_slo: int
    errors: int
    faults: list[str]
    bad_requests: int = 0  # over the SLO + failed (5XX, dropped at capacity, outage) + answered wrongly: the users' view
    wrong_answers: int = 0  # answered with an output that differs from gpu's (wrong_outputs fault, truth)
    parity_compared: int = 0  # neuron answers the client mirrored and compared (what online parity saw)...
    parity_agreed: int = 0  # ...of which agreed
    harmful: bool = False  # truth: a fault on neuron made it breach the SLO at the share it carried
    neuron_fault_bad: float = 0.0  # expected bad requests the neuron faults caused this minute
    phase: str = ""
    action: str = ""
    reason: str = ""
    step: int = 0
    events: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def row_from(outcome: MinuteOutcome, events: list[str]) -> Row:
    from toolkit.pricing import cost_per_1k

    total = sum(max(0.0, w) for w in outcome.weights.values())
    share = {n: (100.0 * max(0.0, outcome.weights[n]) / total if total else 0.0) for n in VARIANT_NAMES}
    per_1k: dict[str, float | None] = {}
    for name, vm in outcome.variants.items():
        per_1k[name] = (cost_per_1k(vm.billed_instances, vm.cost * 60.0 / vm.billed_instances, vm.requests)
                        if vm.billed_instances and vm.requests else None)
    return Row(
        minute=outcome.minute, offered=outcome.offered, share=share,
        instances={n: vm.instances for n, vm in outcome.variants.items()},
        requests={n: vm.requests for n, vm in outcome.variants.items()},
        p99_ms={n: vm.p(99) for n, vm in outcome.variants.items()},
        true_p99_ms=outcome.true_p99_ms, cost=outcome.cost, cost_per_1k=per_1k,
        over_slo=outcome.over_slo, errors=outcome.errors, faults=outcome.faults, events=list(events),
        bad_requests=outcome.bad_requests, harmful=outcome.variants[NEURON].harmful,
        wrong_answers=outcome.wrong_answers, parity_compared=outcome.variants[NEURON].parity_compared,
        parity_agreed=outcome.variants[NEURON].parity_agreed,
        neuron_fault_bad=outcome.variants[NEURON].fault_bad,
    )


@dataclass
class RunResult:
    setup: Setup
    rows: list[Row]
    api_calls: dict[str, int] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None  # all-GPU counterfactual (same traffic, same seed)

    def summary(self) -> dict[str, Any]:
        return summarize(self)


Tick = Callable[[int], Any]  # called with the minute the clock is at; returns a routing TickResult or None


def run(setup: Setup, simulator: Simulator, controller: Any = None, *, minutes: int | None = None,
        on_minute: Callable[[Row, Any], None] | None = None) -> RunResult:
    """Run the scenario: each simulated minute, then the controller's tick (`canary start` at its minute)."""
    duration = minutes or setup.scenario.duration_minutes
    rows: list[Row] = []
    if controller is not None and setup.scenario.canary_start_minute == 0:
        controller.command("start")
    for _ in range(duration):
        outcome = simulator.step()
        row = row_from(outcome, simulator.events)
        result = None
        if controller is not None:
            if simulator.minute == setup.scenario.canary_start_minute:
                result = controller.command("start")
            else:
                result = controller.tick()
            _annotate(row, result)
        rows.append(row)
        if on_minute is not None:
            on_minute(row, result)
    return RunResult(setup, rows)


def _annotate(row: Row, result: Any) -> None:
    decision = getattr(result, "decision", None)
    state = getattr(result, "state", None)
    if state is not None:
        row.phase = str(getattr(state.phase, "value", state.phase))
        row.step = int(state.step)
    if decision is not None:
        row.action = str(getattr(decision.action, "value", decision.action))
        row.reason = decision.reason
    errors = getattr(result, "errors", None)
    if errors:
        row.events.extend(str(e) for e in errors)


def all_gpu_baseline(setup: Setup, minutes: int | None = None) -> dict[str, Any]:
    """The counterfactual: the same traffic on gpu alone (neuron has no instances), same seed."""
    data = setup.config.model_dump(mode="json", exclude_none=True)
    data["initial_weights"] = {"neuron": 0.0, "gpu": 100.0}
    gpu_only = setup.model_copy(deep=True)
    gpu_only.hardware[NEURON] = gpu_only.hardware[NEURON].model_copy(update={"initial_count": 0, "min_count": 0,
                                                                              "max_count": 0})
    world = memory_world(gpu_only)
    result = run(gpu_only, world.simulator, None, minutes=minutes)
    requests = sum(r.offered for r in result.rows)
    cost = sum(r.cost for r in result.rows)
    return {"cost": cost, "requests": float(requests), "over_slo": float(sum(r.over_slo for r in result.rows)),
            "errors": float(sum(r.errors for r in result.rows)),
            "cost_per_1k": cost / requests * 1000.0 if requests else 0.0,
            "cost_by_minute": [r.cost for r in result.rows]}


FAULT_GRACE_MINUTES = 5  # a rollback this soon before/after a harmful minute answers it
SHARE_EPSILON = 0.05  # percent: "neuron carries nothing" tolerance
SHED_ACTIONS = ("step_back",)  # a decision that moves share off neuron without a rollback (hybrid's holding)
SELF_ENDED_MINUTES = 2  # harm this short with no rollback ended before a decision could govern a minute


@dataclass(frozen=True)
class HarmEpisode:
    """A stretch of harmful minutes (truth: a neuron fault made it breach the SLO at the share it carried).

    A new episode starts after FAULT_GRACE_MINUTES clean minutes, or once neuron carried nothing
    (a re-ramp into a fault still active is harmed again). A fault neuron carried no traffic for
    makes no harmful minute: it is not scored at all.
    """

    onset: int  # first harmful minute
    end: int  # last harmful minute
    decided: int | None  # onset -> the minute the first decision shedding neuron governs (0: already shedding)
    effective: int | None  # onset -> first minute after the decision where neuron's share caused no bad request

    @property
    def scored(self) -> bool:
        """False for harm that stopped by itself before any decision could govern a minute.

        A minute closes, is judged a minute later (the settle delay) and the decision governs the
        minute after: harm that lasted at most SELF_ENDED_MINUTES minutes with no rollback (a fault
        ending as neuron re-ramps into its last minute) cannot be answered; it is not scored as a miss.
        """
        return self.decided is not None or self.end - self.onset + 1 > SELF_ENDED_MINUTES


def harm_episodes(rows: list[Row], events: list[int] | None = None) -> list[HarmEpisode]:
    events = fallback_events(rows) if events is None else events
    spans: list[list[int]] = []
    for row in rows:
        if not row.harmful:
            continue
        if spans:
            last = spans[-1][1]
            gap = rows[last + 1:row.minute]
            if row.minute - last <= FAULT_GRACE_MINUTES and not any(r.share[NEURON] <= SHARE_EPSILON for r in gap):
                spans[-1][1] = row.minute
                continue
        spans.append([row.minute, row.minute])
    out = []
    # Any decision that moves share off neuron answers harm (a rollback, or a step back while holding);
    # only rollbacks count as rollbacks (and can be false).
    decisions = sorted(set(events) | {r.minute for r in rows if r.action in SHED_ACTIONS})
    for onset, end in spans:
        # A decision at the tick after minute e governs minute e + 1.
        # The window matches the false-rollback rule: a decision up to FAULT_GRACE_MINUTES after the last
        # harmful minute still answers it (the data arrives a minute late and is judged a minute later).
        governs = next((e + 1 for e in decisions
                        if onset - FAULT_GRACE_MINUTES <= e + 1 <= end + 1 + FAULT_GRACE_MINUTES), None)
        decided = None if governs is None else max(0, governs - onset)
        effective = None
        if governs is not None:
            effective = next((r.minute - onset for r in rows[max(onset, governs - 1):]
                              if r.neuron_fault_bad < 1.0 or r.share[NEURON] <= SHARE_EPSILON), None)
        out.append(HarmEpisode(onset, end, decided, effective))
    return [e for e in out if e.scored]


def false_rollback_count(rows: list[Row], events: list[int] | None = None) -> int:
    """Rollbacks with no harmful minute in the FAULT_GRACE_MINUTES before them nor in the minute they govern."""
    events = fallback_events(rows) if events is None else events
    harmful = {r.minute for r in rows if r.harmful}
    return sum(1 for e in events if not any(m in harmful for m in range(e - FAULT_GRACE_MINUTES, e + 2)))


def fallback_events(rows: list[Row]) -> list[int]:
    """Minutes (of the row before the tick) where a fallback or abort took hold; repeats while it lands count once.

    With a controller state, an event is the phase entering falling_back/aborted (a fallback the
    endpoint refused while busy is decided again and counted once); without one (scripted or
    baseline controllers), an action fallback/abort after a different action.
    """
    fallen = ("falling_back", "aborted")
    out = []
    if any(r.phase for r in rows):
        previous_phase = ""
        for r in rows:
            if r.phase in fallen and previous_phase not in fallen:
                out.append(r.minute)
            previous_phase = r.phase or previous_phase
        return out
    previous = ""
    for r in rows:
        if r.action in ("fallback", "abort") and previous not in ("fallback", "abort"):
            out.append(r.minute)
        if r.action:
            previous = r.action
    return out


def summarize(result: RunResult) -> dict[str, Any]:
    """The figures a person (demo) and the bench look at."""
    rows = result.rows
    setup = result.setup
    requests = sum(r.offered for r in rows)
    cost = sum(r.cost for r in rows)
    over_slo = sum(r.over_slo for r in rows)
    errors = sum(r.errors for r in rows)
    wrong = sum(r.wrong_answers for r in rows)
    compared = sum(r.parity_compared for r in rows)
    agreed = sum(r.parity_agreed for r in rows)
    target = setup.config.canary.target_neuron_percent
    full = next((r.minute for r in rows if r.share[NEURON] >= target - 0.05), None)
    events = fallback_events(rows)
    episodes = harm_episodes(rows, events)
    first = episodes[0] if episodes else None
    onset = first.onset if first else None
    fallback_minute = onset + first.decided if first and first.decided is not None else None
    effective_minute = onset + first.effective if first and first.effective is not None else None
    recovered_minute = None
    if fallback_minute is not None:
        after = [r for r in rows if r.minute > max(fallback_minute, first.end if first else 0)]
        recovered_minute = next((r.minute for r in after if r.share[NEURON] > SHARE_EPSILON), None)
    false_rollbacks = false_rollback_count(rows, events)
    p99s = sorted(r.true_p99_ms for r in rows if r.true_p99_ms is not None)
    out: dict[str, Any] = {
        "scenario": setup.scenario.name,
        "seed": setup.seed,
        "minutes": len(rows),
        "requests": requests,
        "total_cost": round(cost, 4),
        "cost_per_1k": round(cost / requests * 1000.0, 6) if requests else None,
        "requests_over_slo": over_slo,
        "errors_served": errors,
        "bad_requests": over_slo + errors + wrong,
        "wrong_answers": wrong,
        "parity": {"compared": compared, "agreed": agreed,
                   "agreement": round(agreed / compared, 4) if compared else None},
        "worst_minute_true_p99_ms": round(p99s[-1], 2) if p99s else None,
        "final_neuron_share": round(rows[-1].share[NEURON], 2) if rows else None,
        "minutes_to_full_migration": max(0, full - setup.scenario.canary_start_minute) if full is not None else None,
        "fault_onset_minute": onset,  # the first harmful minute (truth), not the fault's label
        "fallback_minute": fallback_minute,
        "minutes_to_fallback": (fallback_minute - onset) if fallback_minute is not None and onset is not None else None,
        "fallback_effective_minute": effective_minute,
        "minutes_to_effective_fallback": (effective_minute - onset) if effective_minute is not None and onset is not None
        else None,
        "recovered_minute": recovered_minute,
        "false_rollbacks": false_rollbacks,
        "fallbacks": len(events),
        "api_calls": dict(result.api_calls),
    }
    if result.baseline:
        base = result.baseline
        out["all_gpu_cost"] = round(base["cost"], 4)
        out["all_gpu_cost_per_1k"] = round(base["cost_per_1k"], 6)
        out["savings_vs_all_gpu"] = round(1.0 - cost / base["cost"], 4) if base["cost"] else None
    return out
