"""The policies `hybrid bench` runs beside our controller: small, pure, with documented parameters.

Each baseline sees what a real tool would see, through the same adapters the controller uses
(routing.model Router and MetricsSource, in memory here): DescribeEndpoint for the live split,
one GetMetricData-style read per tick for the closed minutes. `BaselineController` (harness)
asks the policy for the endpoint it wants and applies it with one update call when it differs
from the live Desired* values and the endpoint is InService (a busy endpoint is retried next tick).

- `StaticGpu` / `StaticNeuron`: a fixed split chosen at deployment; never touch the endpoint.
- `GuardrailsLinear`: SageMaker deployment guardrails, blue/green LINEAR traffic shifting.
  Provisions the full green (neuron) fleet first, shifts `step_percent` every `wait_minutes`,
  bakes `wait_minutes` after the last step, then terminates the blue fleet (gpu to its warm
  floor). On an alarm SageMaker shifts all traffic back to blue and terminates the green fleet
  (neuron to its floor at once, not left for autoscaling to trim):
  https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green.html
  ("rolls back ... by shifting all traffic back to the blue fleet" / the green fleet is
  terminated). A CloudWatch alarm (threshold on p99 and on 5XX rate, `datapoints_to_alarm` of
  `evaluation_periods` one-minute datapoints, TreatMissingData=missing: a missing datapoint is
  not breaching) rolls 100 % back to gpu during the deployment; the deployment then stays failed.
  Docs: https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green-linear.html
  (LinearStepSize must be 10-50 % of the green fleet; WaitIntervalInSeconds 0-3600, required, no
  default: we take 20 % and 300 s). CloudWatch alarms: Period 60 s is the finest for SageMaker's
  standard-resolution metrics; TreatMissingData defaults to `missing`.
- `FlaggerLike`: Flagger's canary analysis (https://docs.flagger.app/usage/deployment-strategies):
  every `interval_minutes` judge the NEWEST datapoint of the canary (neuron) against the
  request-success-rate and request-duration (p99) thresholds; a pass advances `step_weight` up
  to `max_weight`, then promotes (100 % neuron, the primary sized for all traffic) and stops
  analysing; a failed check (a breach, or NO DATA: Flagger fails a check whose query returns
  nothing) increments a cumulative counter; at `threshold` failed checks it rolls back to 0 %
  and stays failed. Defaults are the docs' example analysis: interval 1m, threshold 5,
  maxWeight 50, stepWeight 10. Capacity: Flagger copies the target's HorizontalPodAutoscaler to
  the canary, so the canary starts at the same minimum the primary's autoscaler keeps (we take
  the count the autoscaling target gives for the current traffic: a minimum sized for the base
  load, as the docs' examples set minReplicas), then scales with it; Flagger waits for the
  canary to be ready before the first step
  (https://docs.flagger.app/usage/how-it-works, `autoscalerRef`;
  https://docs.flagger.app/usage/deployment-strategies, "scale up the canary ... wait for the
  canary to be ready"). At promotion the canary's replicas are copied to the primary (Flagger
  >= 1.18): neuron keeps at least its count, sized for all traffic.
- `Oracle`: a clairvoyant lower bound, not a controller. It knows each minute's drawn traffic,
  jitter, noise burst, faults and capacity (toolkit.sim.fleet.MinuteDraws), provisions
  instantly with no cold start and no autoscaler, and picks each minute the cheapest instance
  counts and split whose p99 and error rate meet the SLO in truth (`Fleet.max_load_per_instance`).
  It runs on the same fleet model (`oracle_rows`), so its requests are drawn like everyone's.

Thresholds come from hybrid.yaml's `slo` (p99_latency_ms, max_error_rate): every policy is held
to the same SLO.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from routing.model import EndpointLive, MinuteMetrics, Observation, Target
from toolkit.config import GPU, NEURON, VARIANT_NAMES

FALLBACK = "fallback"  # the action label the harness (and toolkit.sim.runner) counts as a rollback


@dataclass
class Move:
    """What a baseline wants this tick: the endpoint (None: leave it) and a label for the record."""

    action: str
    reason: str
    target: Target | None = None


def weights(neuron: float) -> dict[str, float]:
    neuron = max(0.0, min(100.0, float(neuron)))
    return {NEURON: neuron, GPU: 100.0 - neuron}


def _bounded(setup: Any, name: str, count: int) -> int:
    hw = setup.hardware[name]
    return max(hw.min_count, min(hw.max_count, int(count)))


def autoscaling_count(setup: Any, name: str, requests_per_minute: float) -> int:
    """What target tracking would settle on for this load (so a policy's count does not fight it)."""
    hw = setup.hardware[name]
    return _bounded(setup, name, math.ceil(requests_per_minute / hw.target_invocations_per_instance))


def total_invocations(observation: Observation | None) -> float | None:
    """Newest closed minute's invocations over both variants (None: no datapoint at all)."""
    if observation is None or not observation.known:
        return None
    newest = [observation.for_variant(v)[-1] for v in VARIANT_NAMES if observation.for_variant(v)]
    values = [m.invocations for m in newest if m.has_data]
    return float(sum(v for v in values if v is not None)) if values else None


class Baseline:
    """A policy for the bench: `prepare` may change the deployment; `decide` runs once per tick."""

    name = "baseline"
    window_minutes = 5  # closed minutes read per tick (one batched call)
    reads_metrics = True

    def prepare(self, setup: Any) -> Any:
        return setup

    def start(self, minute: int) -> None:
        self.started = minute

    def decide(self, minute: int, live: EndpointLive, observation: Observation | None, world: Any) -> Move:
        raise NotImplementedError

    def parameters(self) -> dict[str, Any]:
        """The documented parameter set (the dataclass's init fields); empty for the static policies."""
        if not dataclasses.is_dataclass(self):
            return {}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}


class StaticGpu(Baseline):
    """Everything on gpu, forever (the status quo)."""

    name = "static-gpu"
    reads_metrics = False

    def decide(self, minute: int, live: EndpointLive, observation: Observation | None, world: Any) -> Move:
        return Move("none", "static split")


class StaticNeuron(Baseline):
    """Everything on neuron from the first minute, sized for the scenario's peak; gpu at its warm floor."""

    name = "static-neuron"
    reads_metrics = False

    def prepare(self, setup: Any) -> Any:
        traffic = setup.scenario.traffic
        peak = max(traffic.rps_at(m) for m in range(setup.scenario.duration_minutes)) * 60.0
        out = setup.model_copy(deep=True)
        out.config = out.config.model_copy(update={
            "initial_weights": out.config.initial_weights.model_copy(update={"neuron": 100.0, "gpu": 0.0})})
        out.hardware[NEURON] = out.hardware[NEURON].model_copy(
            update={"initial_count": autoscaling_count(setup, NEURON, peak)})
        out.hardware[GPU] = out.hardware[GPU].model_copy(update={"initial_count": out.hardware[GPU].min_count})
        return out

    def decide(self, minute: int, live: EndpointLive, observation: Observation | None, world: Any) -> Move:
        return Move("none", "static split")


# ------------------------------------------------------------------------------------------------
# SageMaker guardrails, linear


def breaching(minute: MinuteMetrics, p99_ms: float, error_rate: float) -> bool | None:
    """One alarm datapoint: True breaching, False ok, None missing (no invocations or no latency)."""
    if not minute.has_data or not minute.invocations:
        return None
    rate = minute.errors_5xx / minute.invocations
    latency = minute.latency_p99_ms
    return bool(rate > error_rate or (latency is not None and latency > p99_ms))


@dataclass
class Alarm:
    """CloudWatch alarm, M of N one-minute datapoints, TreatMissingData=missing (missing is not breaching)."""

    p99_ms: float
    error_rate: float
    evaluation_periods: int = 3
    datapoints_to_alarm: int = 2

    def fires(self, minutes: tuple[MinuteMetrics, ...]) -> bool:
        recent = minutes[-self.evaluation_periods:]
        verdicts = [breaching(m, self.p99_ms, self.error_rate) for m in recent]
        return sum(1 for v in verdicts if v is True) >= self.datapoints_to_alarm


@dataclass
class GuardrailsLinear(Baseline):
    step_percent: float = 20.0  # LinearStepSize, CAPACITY_PERCENT (10-50 % allowed)
    wait_minutes: int = 5  # WaitIntervalInSeconds / 60: each step's baking period (also after the last step)
    evaluation_periods: int = 3
    datapoints_to_alarm: int = 2
    name: str = field(default="guardrails-linear", init=False)
    phase: str = field(default="idle", init=False)  # idle provisioning shifting baking done failed
    share: float = field(default=0.0, init=False)
    since: int = field(default=0, init=False)
    fleet_size: int = field(default=0, init=False)
    blue_size: int = field(default=0, init=False)

    def start(self, minute: int) -> None:
        self.started = minute
        self.phase, self.since = "provisioning", minute

    def decide(self, minute: int, live: EndpointLive, observation: Observation | None, world: Any) -> Move:
        setup = world.setup
        slo = setup.config.slo
        alarm = Alarm(slo.p99_latency_ms, slo.max_error_rate, self.evaluation_periods, self.datapoints_to_alarm)
        current = live.counts()
        if self.phase in ("shifting", "baking") and observation is not None and observation.known \
                and alarm.fires(observation.for_variant(NEURON)):
            self.phase, self.share = "failed", 0.0
            return Move(FALLBACK, "alarm in ALARM: 100% back to the blue (gpu) fleet, green (neuron) terminated",
                        Target(weights(0.0), {GPU: max(self.blue_size, current[GPU]),
                                              NEURON: setup.hardware[NEURON].min_count}))
        # Both fleets keep their size during a blue/green deployment: if the (simulated) autoscaler
        # shrank one, put it back (one update, like any other step).
        desired = {v: live.variants[v].desired_instance_count for v in VARIANT_NAMES}
        if self.phase in ("shifting", "baking") and live.in_service and \
                (desired[NEURON] < self.fleet_size or desired[GPU] < self.blue_size):
            return Move("scale", "blue/green fleets keep their size during the deployment",
                        Target(weights(self.share), {NEURON: max(self.fleet_size, desired[NEURON]),
                                                     GPU: max(self.blue_size, desired[GPU])}))
        if self.phase == "provisioning":
            total = total_invocations(observation)
            if not self.fleet_size:
                self.fleet_size = autoscaling_count(setup, NEURON, total or 0.0)
                self.blue_size = live.variants[GPU].desired_instance_count
                return Move("scale", f"provision the green fleet: {self.fleet_size} neuron instances",
                            Target(weights(0.0), {NEURON: max(self.fleet_size, current[NEURON])}))
            if live.in_service and current[NEURON] >= self.fleet_size:
                self.phase, self.share, self.since = "shifting", self.step_percent, minute
                return Move("progress", f"green fleet InService: step to {self.share:.0f}%",
                            Target(weights(self.share), {}))
            return Move("hold", "waiting for the green fleet")
        if self.phase == "shifting" and minute - self.since >= self.wait_minutes:
            self.share = min(100.0, self.share + self.step_percent)
            self.since = minute
            if self.share >= 100.0:
                self.phase = "baking"
            return Move("progress", f"step to {self.share:.0f}%", Target(weights(self.share), {}))
        if self.phase == "baking" and minute - self.since >= self.wait_minutes:
            self.phase = "done"
            return Move("promote", "baking passed: blue fleet terminated (gpu to its warm floor)",
                        Target(weights(100.0), {GPU: setup.hardware[GPU].min_count}))
        return Move("hold" if self.phase in ("shifting", "baking") else "none", self.phase)


# ------------------------------------------------------------------------------------------------
# Flagger


@dataclass
class FlaggerLike(Baseline):
    interval_minutes: int = 1
    threshold: int = 5
    max_weight: float = 50.0
    step_weight: float = 10.0
    name: str = field(default="flagger-like", init=False)
    phase: str = field(default="idle", init=False)  # idle progressing succeeded failed
    weight: float = field(default=0.0, init=False)
    failed_checks: int = field(default=0, init=False)
    last: int = field(default=0, init=False)
    window_minutes: int = field(default=1, init=False)  # Flagger queries the newest point only

    def start(self, minute: int) -> None:
        self.started = minute
        self.phase, self.weight, self.last = "initializing", self.step_weight, minute
        self.canary_size = 0

    def check(self, observation: Observation | None, setup: Any) -> tuple[bool, str]:
        """One analysis run on the newest datapoint: (passed, why)."""
        if observation is None or not observation.known or not observation.for_variant(NEURON):
            return False, "no data"
        newest = observation.for_variant(NEURON)[-1]
        if not newest.has_data or not newest.invocations or newest.latency_p99_ms is None:
            return False, "no data"
        slo = setup.config.slo
        success = 1.0 - newest.errors_5xx / newest.invocations
        if success < 1.0 - slo.max_error_rate:
            return False, f"request-success-rate {100 * success:.2f}% < {100 * (1 - slo.max_error_rate):.2f}%"
        if newest.latency_p99_ms > slo.p99_latency_ms:
            return False, f"request-duration {newest.latency_p99_ms:.0f} ms > {slo.p99_latency_ms:.0f} ms"
        return True, "checks passed"

    def decide(self, minute: int, live: EndpointLive, observation: Observation | None, world: Any) -> Move:
        setup = world.setup
        current = live.counts()
        if self.phase == "initializing":
            # The canary's HPA is a copy of the primary's: the canary starts at the primary's minimum.
            if not self.canary_size:
                total = total_invocations(observation) or 0.0
                self.canary_size = autoscaling_count(setup, NEURON, total)
                if current[NEURON] < self.canary_size:
                    return Move("scale", f"canary scaled to the primary's autoscaler minimum: {self.canary_size}",
                                Target(weights(0.0), {NEURON: self.canary_size}))
            if not live.in_service or current[NEURON] < self.canary_size:
                return Move("hold", "waiting for the canary to be ready")
            self.phase, self.last = "progressing", minute  # analysis starts at the next interval
            return Move("progress", f"canary weight {self.weight:.0f}%", Target(weights(self.weight), {}))
        if self.phase != "progressing":
            return Move("none", self.phase)
        if minute - self.last < self.interval_minutes:
            return Move("hold", "waiting for the interval")
        self.last = minute
        passed, why = self.check(observation, setup)
        if not passed:
            self.failed_checks += 1
            if self.failed_checks >= self.threshold:
                self.phase, self.weight = "failed", 0.0
                return Move(FALLBACK, f"{why}: failed checks {self.failed_checks}/{self.threshold}, rolled back",
                            Target(weights(0.0), {}))
            return Move("hold", f"{why}: failed checks {self.failed_checks}/{self.threshold}")
        if self.weight >= self.max_weight:
            self.phase = "succeeded"
            total = total_invocations(observation) or 0.0
            size = max(current[NEURON], autoscaling_count(setup, NEURON, total))
            return Move("promote", "promotion: the primary (neuron) takes all traffic",
                        Target(weights(100.0), {NEURON: size}))
        self.weight = min(self.max_weight, self.weight + self.step_weight)
        return Move("progress", f"canary weight {self.weight:.0f}%", Target(weights(self.weight), {}))


# ------------------------------------------------------------------------------------------------
# Oracle


@dataclass
class Oracle(Baseline):
    """The clairvoyant lower bound (see the module docstring); `plan` is one minute's choice."""

    name: str = field(default="oracle", init=False)
    reads_metrics: bool = field(default=False, init=False)

    def decide(self, minute: int, live: EndpointLive, observation: Observation | None, world: Any) -> Move:
        raise NotImplementedError("the oracle does not tick: toolkit.bench.baselines.oracle_rows runs it")

    def plan(self, fleet: Any, minute: int) -> tuple[float, dict[str, int]]:
        """(neuron share in percent, instance counts): the cheapest that meets the SLO this minute, in truth.

        Capacity per instance is linear in the count (`Fleet.max_load_per_instance`), so for each
        neuron count the gpu count follows; the cheapest pair wins (ties: more neuron). When no
        pair meets the SLO (an outage under a surge), both variants at their maximum.
        """
        setup = fleet.setup
        hw = setup.hardware
        draws = fleet.draws(minute)
        weighted = draws.offered - draws.targeted
        per = {v: fleet.max_load_per_instance(v, minute) for v in VARIANT_NAMES}
        best: tuple[float, float, dict[str, int]] | None = None
        for n in range(hw[NEURON].min_count, hw[NEURON].max_count + 1):
            carried = min(float(weighted), n * per[NEURON])
            rest = weighted - carried + draws.targeted
            if rest > 0 and per[GPU] <= 0:
                continue
            g = max(hw[GPU].min_count, math.ceil(rest / per[GPU] - 1e-9) if rest > 0 else 0)
            if g > hw[GPU].max_count:
                continue
            cost = n * hw[NEURON].price_per_hour + g * hw[GPU].price_per_hour
            share = 100.0 * carried / weighted if weighted > 0 else (100.0 if n * per[NEURON] > 0 else 0.0)
            if best is None or cost < best[0] - 1e-9:
                best = (cost, share, {NEURON: n, GPU: g})
            if carried >= weighted:
                break  # more neuron only costs more
        if best is not None:
            return best[1], best[2]
        total = sum(hw[v].max_count * per[v] for v in VARIANT_NAMES)
        share = 100.0 * hw[NEURON].max_count * per[NEURON] / total if total > 0 else 0.0
        return share, {v: hw[v].max_count for v in VARIANT_NAMES}


def oracle_rows(setup: Any, seed: int | None = None) -> list[Any]:
    """The oracle's run: each minute its plan is live at once (warm instances, no autoscaler), served by the fleet."""
    from toolkit.sim.fleet import Fleet
    from toolkit.sim.runner import row_from

    fleet = Fleet(setup, seed)
    oracle = Oracle()
    rows = []
    for minute in range(setup.scenario.duration_minutes):
        share, counts = oracle.plan(fleet, minute)
        fleet.force_counts(counts)
        outcome = fleet.serve(minute, weights(share))
        row = row_from(outcome, [])
        row.action, row.reason = "plan", f"{share:.1f}% neuron on {counts}"
        rows.append(row)
    return rows


BASELINES: dict[str, type[Baseline]] = {
    "static-gpu": StaticGpu,
    "static-neuron": StaticNeuron,
    "guardrails-linear": GuardrailsLinear,
    "flagger-like": FlaggerLike,
    "oracle": Oracle,
}
POLICIES = ("hybrid", *BASELINES)


def make(name: str) -> Baseline:
    return BASELINES[name]()
