"""A tiny deterministic world for tick-by-tick policy tests (no AWS, no clock, no sleeps).

The world holds the endpoint (weights, counts, status), produces one closed CloudWatch minute per
tick from the live split and the configured behaviour of each variant, calls policy.decide with an
injected `now`, and applies the decision's target the way the controller would (scale-ups can take
a few ticks, during which the endpoint is Updating).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from routing import policy
from routing.model import (
    Action,
    ControllerState,
    Decision,
    EndpointLive,
    MinuteMetrics,
    Observation,
    Phase,
    VariantLive,
)
from toolkit.config import GPU, NEURON, HybridConfig, parse_config
from toolkit.pricing import price_per_hour

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def make_config(**overrides: dict) -> HybridConfig:
    """The example's shape with small, explicit numbers; sections overridden by keyword."""
    data: dict = {
        "name": "bert",
        "variants": {
            "neuron": {"instance_type": "ml.inf2.xlarge", "initial_count": 1, "min_count": 1, "max_count": 6,
                       "capacity_rps_per_instance": 40, "model": {"artifact": "s3://bucket/n/model.tar.gz"}},
            "gpu": {"instance_type": "ml.g5.xlarge", "initial_count": 2, "min_count": 1, "max_count": 8,
                    "capacity_rps_per_instance": 20, "model": {"artifact": "s3://bucket/g/model.tar.gz"}},
        },
        "slo": {"p99_latency_ms": 150, "max_error_rate": 0.01, "max_regression": 0.25},
        "canary": {"steps": [10, 25, 50, 100], "min_bake_minutes": 2, "max_bake_minutes": 10, "min_sample": 300},
        "fallback": {"cooldown_minutes": 5, "cooldown_backoff": 2, "max_cooldown_minutes": 60, "max_fallbacks": 3,
                     "expected_invocations_for_silence": 50, "max_unknown_ticks": 3, "gpu_headroom": 1.2,
                     "min_dwell_minutes": 5},
        "holding": {"step_back_percent": 25, "return_percent": 10, "return_after_good_minutes": 5,
                    "saturation_utilization": 0.85},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data)


def prices_for(config: HybridConfig) -> dict[str, float]:
    return {config.variant(v).instance_type: price_per_hour(config.variant(v).instance_type, config.prices)
            for v in (NEURON, GPU)}


@dataclass
class Behaviour:
    """How one variant serves a minute. Callables get the tick number for scripted noise."""

    p99_ms: float | Callable[[int], float | None] = 40.0
    p90_ms: float | Callable[[int], float | None] | None = None  # None: CloudWatch gives no p90 (the p99 speaks alone)
    error_rate: float | Callable[[int], float] = 0.0
    silent: bool | Callable[[int], bool] = False
    # Load: with a per-instance capacity (req/s), p99 grows with the load (queueing) and the requests
    # above capacity fail (5XX), as on a real instance; None: latency and errors ignore the load.
    capacity_rps: float | None = None

    def at(self, attr: str, tick: int):
        value = getattr(self, attr)
        return value(tick) if callable(value) else value


@dataclass
class World:
    config: HybridConfig
    rps: float | Callable[[int], float] = 20.0
    now: datetime = T0
    weights: dict[str, float] = field(default_factory=lambda: {NEURON: 0.0, GPU: 100.0})
    counts: dict[str, int] = field(default_factory=lambda: {NEURON: 1, GPU: 2})
    desired: dict[str, int] | None = None
    status: str = "InService"
    scale_ticks: int = 0  # ticks a scale-up takes (Updating meanwhile)
    neuron: Behaviour = field(default_factory=Behaviour)
    gpu: Behaviour = field(default_factory=lambda: Behaviour(p99_ms=38.0))
    metrics_error: str | Callable[[int], str | None] | None = None
    delay: int | Callable[[int], int] = 0  # minutes CloudWatch publishes late (both variants)
    idle_rows: bool = False  # a variant with instances and no traffic publishes Invocations = 0 (else no row)
    apply: bool = True
    state: ControllerState | None = None
    history: dict[str, list[MinuteMetrics]] = field(default_factory=lambda: {NEURON: [], GPU: []})
    decisions: list[Decision] = field(default_factory=list)
    tick_no: int = 0
    _pending: tuple[int, dict[str, int]] | None = None

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = policy.initial_state(self.config, self.config.name)
        self.prices = prices_for(self.config)

    # -- the endpoint
    def endpoint(self) -> EndpointLive:
        desired = self.desired or self.counts
        return EndpointLive(
            name=self.config.name,
            status=self.status,
            variants={
                v: VariantLive(v, self.config.variant(v).instance_type, self.weights[v], self.weights[v],
                               self.counts[v], desired[v])
                for v in (NEURON, GPU)
            },
        )

    def share(self) -> float:
        return 100.0 * self.weights[NEURON] / (self.weights[NEURON] + self.weights[GPU])

    def current_rps(self) -> float:
        return self.rps(self.tick_no) if callable(self.rps) else self.rps

    # -- one minute of traffic, closed at self.now
    def _serve_minute(self) -> None:
        start = self.now - MINUTE
        share = self.share() / 100.0
        for variant, behaviour, part in ((NEURON, self.neuron, share), (GPU, self.gpu, 1 - share)):
            invocations = round(self.current_rps() * 60 * part)
            if invocations <= 0 or behaviour.at("silent", self.tick_no):
                idle = self.idle_rows and invocations <= 0 and not behaviour.at("silent", self.tick_no)
                self.history[variant].append(MinuteMetrics(start=start, invocations=0.0 if idle else None))
                continue
            errors = round(invocations * behaviour.at("error_rate", self.tick_no))
            p99 = behaviour.at("p99_ms", self.tick_no)
            if behaviour.capacity_rps is not None and p99 is not None:
                rho = invocations / 60.0 / max(self.counts[variant], 1) / behaviour.capacity_rps
                if rho >= 1.0:
                    errors = max(errors, round(invocations * (1.0 - 1.0 / rho)))
                    p99 = p99 * 10.0
                else:
                    p99 = p99 * (1.0 + 0.5 * rho / (1.0 - rho))
            self.history[variant].append(MinuteMetrics(
                start=start, invocations=float(invocations), errors_5xx=float(errors),
                latency_p99_ms=p99, latency_p90_ms=behaviour.at("p90_ms", self.tick_no), latency_samples=float(invocations),
                invocations_per_instance=invocations / max(self.counts[variant], 1),
            ))

    def observation(self) -> Observation:
        error = self.metrics_error(self.tick_no) if callable(self.metrics_error) else self.metrics_error
        minutes = policy.window_minutes(self.config, self.state)
        start = self.now - MINUTE * minutes
        if error:
            return Observation(window_start=start, window_end=self.now, error=error)
        delay = self.delay(self.tick_no) if callable(self.delay) else self.delay
        visible = self.now - MINUTE * delay  # a minute shows once it closed `delay` minutes ago
        return Observation(
            window_start=start, window_end=self.now,
            minutes={v: tuple(m for m in self.history[v] if start <= m.start and m.start + MINUTE <= visible)
                     for v in (NEURON, GPU)},
        )

    def _progress_scaling(self) -> None:
        if self._pending is None:
            return
        ticks, counts = self._pending
        if ticks <= 0:
            self.counts = dict(counts)
            self.desired = None
            self.status = "InService"
            self._pending = None
        else:
            self._pending = (ticks - 1, counts)

    def _apply(self, decision: Decision) -> None:
        if decision.target is None or not self.apply:
            return
        self.weights = dict(decision.target.weights)
        wanted = dict(decision.target.instance_counts)
        if wanted != self.counts:
            if self._pending is not None and self._pending[1] == wanted:
                pass  # the same scale-up, already under way: it does not restart
            elif self.scale_ticks and any(wanted[v] > self.counts[v] for v in wanted):
                self.desired = wanted
                self.status = "Updating"
                self._pending = (self.scale_ticks - 1, wanted)
            else:
                self.counts = wanted

    def tick(self) -> Decision:
        """Advance one minute: serve it, decide at its close, apply."""
        self.now += MINUTE
        self.tick_no += 1
        self._serve_minute()
        self._progress_scaling()
        decision = policy.decide(self.config, self.state, self.endpoint(), self.observation(), self.now, self.prices)
        self.state = decision.state
        self.decisions.append(decision)
        self._apply(decision)
        return decision

    def command(self, name: str) -> Decision:
        decision = policy.apply_command(self.config, self.state, name, self.endpoint(), self.now)
        self.state = decision.state
        self.decisions.append(decision)
        self._apply(decision)
        return decision

    def run(self, ticks: int) -> list[Decision]:
        return [self.tick() for _ in range(ticks)]

    def run_until(self, predicate: Callable[[Decision], bool], limit: int = 200) -> Decision:
        for _ in range(limit):
            decision = self.tick()
            if predicate(decision):
                return decision
        raise AssertionError(f"not reached in {limit} ticks; last: {self.decisions[-1].reason}")

    def started(self) -> World:
        self.command("start")
        return self

    def phase(self) -> Phase:
        assert self.state is not None
        return self.state.phase


def actions(decisions: list[Decision]) -> list[Action]:
    return [d.action for d in decisions]
