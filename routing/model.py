"""The routing engine's vocabulary: what adapters observe, what the policy decides, what is stored.

Everything here is plain data (frozen dataclasses) plus the small protocols the controller's
adapters implement. The policy (routing/policy.py) is a pure function over these types; the
CLI loop, the Lambda, the demo and the bench all plug different adapters into the same tick.

Units: latency in milliseconds (the metrics adapter converts SageMaker's microseconds once),
weights in percent of weighted traffic, times as timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Protocol

from toolkit.config import GPU, NEURON

VARIANTS = (NEURON, GPU)


class Phase(StrEnum):
    """Where the migration stands. Shown to users as is."""

    IDLE = "idle"  # no canary started: the endpoint runs its initial weights
    RAMPING = "ramping"  # step k of n, moving share gpu -> neuron
    HOLDING = "holding"  # ramp done: steady hybrid at the cheapest safe split
    FALLING_BACK = "falling_back"  # traffic just returned to gpu; waiting for the endpoint to settle
    COOLING_DOWN = "cooling_down"  # after a fallback, waiting (with backoff) before re-ramping
    PAUSED = "paused"  # a human paused; weights stay as they are
    ABORTED = "aborted"  # a human aborted, or too many fallbacks: all on gpu until restarted


# ------------------------------------------------------------------------------------------------
# Observations (inputs)


@dataclass(frozen=True)
class MinuteMetrics:
    """One closed CloudWatch minute of one variant (AWS/SageMaker, EndpointName + VariantName)."""

    start: datetime
    invocations: float | None = None  # None: CloudWatch returned no datapoint for this minute
    errors_4xx: float = 0.0
    errors_5xx: float = 0.0
    model_errors: float = 0.0
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_avg_ms: float | None = None
    latency_max_ms: float | None = None
    latency_samples: float = 0.0  # ModelLatency SampleCount
    invocations_per_instance: float | None = None

    @property
    def has_data(self) -> bool:
        return self.invocations is not None


@dataclass(frozen=True)
class Observation:
    """What one tick read from CloudWatch: the same closed minutes for both variants."""

    window_start: datetime
    window_end: datetime  # end of the newest CLOSED minute; the open minute is never judged
    minutes: Mapping[str, tuple[MinuteMetrics, ...]] = field(default_factory=dict)  # oldest first
    targeted: Mapping[str, float] = field(default_factory=dict)  # client TargetVariant requests in the window
    error: str | None = None  # metrics could not be read: this tick knows nothing
    percentiles_available: bool = True  # False: p99 came back empty and Average/Maximum stand in (warned)

    @property
    def known(self) -> bool:
        return self.error is None

    def for_variant(self, variant: str) -> tuple[MinuteMetrics, ...]:
        return tuple(self.minutes.get(variant, ()))


# ------------------------------------------------------------------------------------------------
# The live endpoint (the truth, read every tick)


@dataclass(frozen=True)
class VariantLive:
    name: str
    instance_type: str
    current_weight: float
    desired_weight: float
    current_instance_count: int
    desired_instance_count: int


@dataclass(frozen=True)
class EndpointLive:
    name: str
    status: str  # InService | Updating | RollingBack | Failed | Creating | ...
    variants: Mapping[str, VariantLive]
    failure_reason: str | None = None

    @property
    def in_service(self) -> bool:
        return self.status == "InService"

    def share(self, variant: str) -> float:
        """Percent of weighted traffic the variant receives now (current weights, not desired)."""
        total = sum(v.current_weight for v in self.variants.values())
        if total <= 0:
            return 0.0
        return 100.0 * self.variants[variant].current_weight / total

    def counts(self) -> dict[str, int]:
        return {name: v.current_instance_count for name, v in self.variants.items()}


# ------------------------------------------------------------------------------------------------
# Decisions (outputs)


@dataclass(frozen=True)
class Target:
    """What the endpoint should look like: weights in percent, instance counts per variant."""

    weights: Mapping[str, float]
    instance_counts: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "instance_counts": dict(self.instance_counts)}


@dataclass(frozen=True)
class GateResult:
    """One check of a step: its measured value, its threshold, and the verdict.

    passed is None when the gate is inconclusive (not enough data): that holds, never fails.
    """

    name: str  # sample | latency_slo | latency_regression | errors | cost | capacity | data
    passed: bool | None
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Action(StrEnum):
    NONE = "none"  # nothing to do (idle, paused, aborted, cooling down)
    HOLD = "hold"  # keep the split; waiting for data, bake time or the endpoint
    SCALE = "scale"  # add capacity to the receiving side before shifting traffic
    PROGRESS = "progress"  # next canary step
    FALLBACK = "fallback"  # breach: traffic back to gpu in this tick
    RETURN = "return"  # holding: share back toward neuron on evidence
    STEP_BACK = "step_back"  # holding: share toward gpu (degradation or saturation)
    PROMOTE = "promote"  # manual promote: straight to the target share
    ABORT = "abort"  # all on gpu, stop


@dataclass(frozen=True)
class ControllerState:
    """Everything the controller must remember between ticks (persisted by a StateStore).

    The live endpoint, not this record, is the truth for weights and counts.
    """

    endpoint: str
    phase: Phase = Phase.IDLE
    step: int = 0  # index into the resolved canary steps (ramping), 0-based
    steps: tuple[float, ...] = ()  # neuron share after each step, resolved when the canary started
    step_started_at: datetime | None = None
    phase_since: datetime | None = None
    last_change_at: datetime | None = None  # last weight change this controller made
    fallbacks: int = 0
    cooldown_until: datetime | None = None
    unknown_ticks: int = 0
    good_minutes: int = 0  # holding: consecutive clean minutes since the last change
    paused_phase: Phase | None = None  # what to resume into
    last_tick_at: datetime | None = None
    last_window_end: datetime | None = None  # newest closed minute already judged
    version: int = 0  # bumped on every save: optimistic concurrency / fencing for stores
    extra: Mapping[str, Any] = field(default_factory=dict)  # policy-specific memory (JSON-able)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ControllerState:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        for key in ("step_started_at", "phase_since", "last_change_at", "cooldown_until", "last_tick_at",
                    "last_window_end"):
            if values.get(key):
                values[key] = datetime.fromisoformat(values[key])
        values["phase"] = Phase(values.get("phase", Phase.IDLE.value))
        if values.get("paused_phase"):
            values["paused_phase"] = Phase(values["paused_phase"])
        values["steps"] = tuple(values.get("steps", ()))
        return cls(**values)

    def evolve(self, **changes: Any) -> ControllerState:
        return replace(self, **changes)


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one tick."""

    state: ControllerState  # the new state to store
    action: Action
    reason: str  # one sentence a human reads: what and why, with the numbers
    target: Target | None = None  # None: leave the endpoint as it is
    gates: tuple[GateResult, ...] = ()
    cost_per_1k: Mapping[str, float | None] = field(default_factory=dict)  # $ per 1K inferences per variant
    statistics: Mapping[str, Any] = field(default_factory=dict)  # sample sizes, test values, expected traffic

    @property
    def failed_gates(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if g.passed is False)


# ------------------------------------------------------------------------------------------------
# Adapter protocols (implemented for AWS, for the simulator and for tests)


class Clock(Protocol):
    def now(self) -> datetime: ...


class MetricsSource(Protocol):
    def observe(self, endpoint: str, variants: Sequence[str], now: datetime, minutes: int) -> Observation:
        """Closed minutes in (now - minutes, newest closed minute], both variants, one batched call."""
        ...


class Router(Protocol):
    def describe(self) -> EndpointLive:
        """DescribeEndpoint: the truth, every tick."""
        ...

    def apply(self, target: Target) -> EndpointLive:
        """UpdateEndpointWeightsAndCapacities (only when InService); returns the endpoint as read after."""
        ...


class StateStore(Protocol):
    def load(self) -> ControllerState | None: ...

    def save(self, state: ControllerState, expected_version: int | None) -> ControllerState:
        """Write state if the stored version still equals expected_version (None: must not exist).

        Returns the state with its new version; raises ConcurrentModification otherwise.
        """
        ...

    def append_record(self, record: Mapping[str, Any]) -> None:
        """Append one decision record; records are never rewritten or dropped."""
        ...

    def records(self, limit: int | None = None) -> list[dict[str, Any]]: ...


class ConcurrentModification(Exception):
    """Another controller saved the state first: this tick stands aside."""
