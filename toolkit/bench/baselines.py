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
  floor). A CloudWatch alarm (threshold on p99 and on 5XX rate, `datapoints_to_alarm` of
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
  maxWeight 50, stepWeight 10. Capacity comes from the autoscaler only (Flagger checks readiness,
  it does not pre-scale the canary).
- `Oracle`: knows the true traffic, capacity, latency and faults (toolkit.sim.fleet's
  deterministic expectations) and picks, each minute, the cheapest split and instance counts
  that meet the SLO, with no detection delay: the lower bound of what any controller can cost.

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
            return Move(FALLBACK, "alarm in ALARM: 100% back to the blue (gpu) fleet",
                        Target(weights(0.0), {GPU: max(self.blue_size, current[GPU])}))
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
        self.phase, self.weight, self.last = "progressing", self.step_weight, minute
        self._first = True

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
        if self.phase != "progressing":
            return Move("none", self.phase)
        if getattr(self, "_first", False):  # Initializing: route the first step, analysis starts next interval
            self._first = False
            return Move("progress", f"canary weight {self.weight:.0f}%", Target(weights(self.weight), {}))
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


HARM = ("latency", "errors", "outage")


@dataclass
class Oracle(Baseline):
    grid_percent: float = 5.0  # split candidates: 0, 5, ..., 100 % on neuron
    name: str = field(default="oracle", init=False)
    reads_metrics: bool = field(default=False, init=False)
    active: bool = field(default=False, init=False)
    _plans: dict[tuple[int, float], tuple[float, dict[str, int]]] = field(default_factory=dict, init=False,
                                                                          repr=False)

    def start(self, minute: int) -> None:
        self.started = minute
        self.active = True

    def _need(self, world: Any, name: str, minute: int, load: float, autoscaled: bool) -> int | None:
        """Fewest instances of `name` serving `load` req/min within the SLO at `minute` (None: impossible)."""
        setup, fleet = world.setup, world.fleet
        hw = setup.hardware[name]
        slo = setup.config.slo
        floor = hw.min_count
        if autoscaled and setup.scenario.autoscaling.enabled:  # target tracking would add these anyway
            floor = max(floor, autoscaling_count(setup, name, load))
        if load <= 0:
            return floor
        for count in range(max(floor, 1), hw.max_count + 1):
            p99 = fleet.expected_p_ms(name, minute, load, count)
            if p99 is not None and p99 <= slo.p99_latency_ms and \
                    fleet.expected_error_rate(name, minute, load, count) <= slo.max_error_rate:
                return count
        return None

    def plan(self, world: Any, minute: int, load: float) -> tuple[float, dict[str, int]]:
        """Cheapest (neuron share, counts) for `load` req/min at `minute`; over capacity: the most capacity."""
        key = (minute, load)
        if key not in self._plans:  # deterministic: each minute is planned once, not once per tick in view
            self._plans[key] = self._plan(world, minute, load)
        share, counts = self._plans[key]
        return share, dict(counts)

    def _plan(self, world: Any, minute: int, load: float) -> tuple[float, dict[str, int]]:
        setup = world.setup
        best: tuple[float, float, dict[str, int]] | None = None
        steps = round(100.0 / self.grid_percent)
        for i in range(steps + 1):
            share = 100.0 * i / steps
            n = self._need(world, NEURON, minute, load * share / 100.0, True)
            g = self._need(world, GPU, minute, load * (100.0 - share) / 100.0, True)
            if n is None or g is None:
                continue
            cost = n * setup.hardware[NEURON].price_per_hour + g * setup.hardware[GPU].price_per_hour
            if best is None or cost < best[0] - 1e-9:
                best = (cost, share, {NEURON: n, GPU: g})
        if best is not None:
            return best[1], best[2]
        hw = setup.hardware
        cap = {v: hw[v].max_count * hw[v].capacity_rps_per_instance for v in VARIANT_NAMES}
        healthy = not any(f.active(minute) for f in _harm(setup))
        share = 100.0 * cap[NEURON] / (cap[NEURON] + cap[GPU]) if healthy else 0.0
        return share, {v: hw[v].max_count for v in VARIANT_NAMES}

    def feasible(self, world: Any, minute: int, load: float, share: float, counts: dict[str, int]) -> bool:
        slo = world.setup.config.slo
        for name, part in ((NEURON, share), (GPU, 100.0 - share)):
            part_load = load * part / 100.0
            if part_load <= 0:
                continue
            p99 = world.fleet.expected_p_ms(name, minute, part_load, counts[name])
            if p99 is None or p99 > slo.p99_latency_ms or \
                    world.fleet.expected_error_rate(name, minute, part_load, counts[name]) > slo.max_error_rate:
                return False
        return True

    def decide(self, minute: int, live: EndpointLive, observation: Observation | None, world: Any) -> Move:
        if not self.active:
            return Move("none", "before the canary starts")
        setup = world.setup
        traffic = setup.scenario.traffic
        delay = max(setup.hardware[v].scale_up_delay_minutes for v in VARIANT_NAMES)
        # Look ahead twice the scale-up delay: a pre-scale can wait behind an autoscaling update.
        horizon = range(minute, minute + 2 * delay + 2)
        plans = {m: self.plan(world, m, traffic.rps_at(m) * 60.0) for m in horizon}
        share, _ = plans[minute]
        counts = {v: max(p[1][v] for p in plans.values()) for v in VARIANT_NAMES}
        active = {v: live.variants[v].current_instance_count for v in VARIANT_NAMES}
        load = traffic.rps_at(minute) * 60.0
        if not self.feasible(world, minute, load, share, active):  # capacity still starting: what serves now
            ok = [s for s in [share] + [100.0 * i / 20 for i in range(21)]
                  if self.feasible(world, minute, load, s, active)]
            if any(f.active(minute) for f in _harm(setup)):
                ok = [0.0]
            share = min(ok, key=lambda s: abs(s - share)) if ok else share
        # Scale-ins are immediate but a weight change waits for the scale-ups it comes with: keep the
        # instances serving now until the new split is live (the next tick scales in).
        total = sum(live.variants[v].current_weight for v in VARIANT_NAMES) or 1.0
        serving = 100.0 * live.variants[NEURON].current_weight / total
        if abs(serving - share) > 1e-6:
            counts = {v: max(counts[v], active[v]) for v in VARIANT_NAMES}
        desired_total = sum(live.variants[v].desired_weight for v in VARIANT_NAMES) or 1.0
        live_share = 100.0 * live.variants[NEURON].desired_weight / desired_total
        # A scale-up holds the endpoint in Updating for minutes: never start one just before a fault
        # onset, when the weights must be free to move (the first tick that sees it coming pre-scales).
        onsets = [f.minute - minute for f in _harm(setup)]
        desired = {v: live.variants[v].desired_instance_count for v in VARIANT_NAMES}
        if any(0 <= d <= delay for d in onsets):
            counts = {v: min(counts[v], desired[v]) if counts[v] > desired[v] else counts[v] for v in VARIANT_NAMES}
        if abs(live_share - share) < 1e-6 and counts == desired:
            return Move("hold", "the cheapest safe split is live")
        harmed = any(f.active(minute) for f in _harm(setup))
        action = FALLBACK if share == 0.0 and live_share > 0.0 and harmed else (
            "scale" if abs(live_share - share) < 1e-6 else "progress")
        return Move(action, f"cheapest safe split: {share:.0f}% neuron on {counts}",
                    Target(weights(share), counts))


def _harm(setup: Any) -> list[Any]:
    return [f for f in setup.scenario.faults if f.variant == NEURON and f.kind in HARM]


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
