"""The routing engine's vocabulary: what adapters observe, what the policy decides, what is stored.

Everything here is plain data (frozen dataclasses) plus the small protocols the controller's
adapters implement. The policy (routing/policy.py) is a pure function over these types; the
CLI loop, the Lambda, the demo and the bench all plug different adapters into the same tick.

Units: latency in milliseconds (the metrics adapter converts SageMaker's microseconds once),
weights in percent of weighted traffic, times as timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from routing.core.stats import StepTotals
from routing.core.variants import GPU, NEURON, VARIANTS  # noqa: F401  (re-exported)


class Phase(StrEnum):
    """Where the migration stands. Shown to users as is."""

    IDLE = "idle"  # no canary started: the endpoint runs its initial weights
    RAMPING = "ramping"  # step k of n, moving share gpu -> neuron
    HOLDING = "holding"  # ramp done: steady hybrid at the cheapest safe split
    FALLING_BACK = "falling_back"  # traffic just returned to gpu; waiting for the endpoint to settle
    COOLING_DOWN = "cooling_down"  # after a fallback, waiting (with backoff) before re-ramping
    PAUSED = "paused"  # a human paused; weights stay as they are
    ABORTED = "aborted"  # a human aborted, or too many fallbacks: all on gpu until restarted


# What the request router (routing/client.py) publishes and the metrics adapter reads: one definition.
CLIENT_METRICS_NAMESPACE = "HybridRouting/Client"
TARGETED_METRIC = "TargetedInvocations"  # every request sent with TargetVariant (incl. fallback retries)
FALLBACK_METRIC = "FallbackInvocations"  # the subset that were gpu retries after a neuron failure
# Online parity (issue 17): the client mirrors some neuron-served requests to gpu and compares the
# answers; it publishes both counts with VariantName=neuron, the controller's gate reads them.
PARITY_COMPARED_METRIC = "ParityCompared"  # mirrored neuron answers compared with gpu's
PARITY_AGREED_METRIC = "ParityAgreed"  # ...of which agreed within the configured comparator


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
    parity_compared: float = 0.0  # neuron rows: client-mirrored answers compared with gpu's this minute
    parity_agreed: float = 0.0  # ...of which agreed

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
    def parity_counts(self) -> tuple[float, float]:
        """(compared, agreed) of neuron's answers over the whole window (per minute: MinuteMetrics)."""
        rows = self.minutes.get(NEURON, ())
        return sum(m.parity_compared for m in rows), sum(m.parity_agreed for m in rows)

    @property
    def known(self) -> bool:
        return self.error is None

    def for_variant(self, variant: str) -> tuple[MinuteMetrics, ...]:
        return tuple(self.minutes.get(variant, ()))


# ------------------------------------------------------------------------------------------------
# The live endpoint (the truth, read every tick)


@dataclass(frozen=True)
class ModelVersion:
    """Which model a variant serves: the SageMaker model name and what it runs (DescribeModel).

    artifact: the model package ARN, else the model data URL (S3), else None when not read.
    image: the container image. Two versions are the same model only with the same name AND (where
    read) the same artifact and image: a new name may carry a new environment (deploy names models
    by content), and judging a model again costs time, never safety.
    """

    name: str
    artifact: str | None = None
    image: str | None = None

    def same_as(self, other: ModelVersion) -> bool:
        if self.name != other.name:
            return False
        known = self.artifact is not None and other.artifact is not None
        return not known or (self.artifact, self.image) == (other.artifact, other.image)

    def text(self) -> str:
        return self.name + (f" ({self.artifact})" if self.artifact else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "artifact": self.artifact, "image": self.image}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ModelVersion | None:
        if not data or not data.get("name"):
            return None
        return cls(str(data["name"]), data.get("artifact"), data.get("image"))


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
    models: Mapping[str, ModelVersion] = field(default_factory=dict)  # per variant; empty when not read

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


class Gate(StrEnum):
    """The checks of a step. A StrEnum: records and JSON carry the plain names, as before."""

    SAMPLE = "sample"  # enough requests on neuron to judge
    LATENCY_SLO = "latency_slo"  # neuron p99 within slo.p99_latency_ms (noise rule)
    LATENCY_REGRESSION = "latency_regression"  # neuron p99 within (1 + max_regression) x gpu's, same minutes
    ERRORS = "errors"  # neuron 5XX rate: capped and not significantly worse than gpu's
    DATA = "data"  # neuron serves what its share should bring (silence is an outage)
    COST = "cost"  # neuron cheaper per 1K inferences (or migrating anyway, by config)
    PARITY = "parity"  # neuron's answers agree with gpu's (online parity; only when the client mirrors)


@dataclass(frozen=True)
class GateResult:
    """One check of a step: its measured value, its threshold, and the verdict.

    passed is None when the gate is inconclusive (not enough data): that holds, never fails.
    """

    name: Gate
    passed: bool | None
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "name": str(self.name)}  # a plain string in records and JSON


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


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class PolicyMemory:
    """What the policy remembers between ticks beyond the phase (owned by the policy alone)."""

    live_share: float | None = None  # the neuron share seen live when live_since was stamped
    live_since: datetime | None = None  # since when the live share has been what it is: judged minutes start here
    breach_since: datetime | None = None  # breaches are looked for in minutes after this (start, fallback, re-ramp)
    total_rps: float | None = None  # newest known traffic of the whole endpoint (kept through silences)
    step_totals: StepTotals | None = None  # the judged minutes added up across ticks...
    totals_since: datetime | None = None  # ...for the live share that went live at this moment
    holding_share: float | None = None  # holding: the neuron share the split holds at (None: the canary target)
    fallback_gradual: bool = False  # the last fallback drains neuron over several ticks (latency, not errors)
    last_fallback_cause: str | None = None  # the first clause of the last fallback's reason (shown while cooling)
    # The ledger: minute starts already added into step_totals (each minute counts once, whenever it
    # arrives). Bounded: only minutes still inside the metrics window are kept.
    counted_minutes: tuple[datetime, ...] = ()
    data_lag_minutes: float = 0.0  # how late CloudWatch minutes arrive (measured): silence waits this long
    newest_minute: datetime | None = None  # the newest minute start any variant has reported so far
    overflow: bool = False  # neuron's overflow share is on gpu because neuron saturated (load, not a fault)
    scale_asked_at: datetime | None = None  # a neuron scale-up is in flight since...
    scale_up_minutes: float | None = None  # ...and the last one took this long (measured)

    def restarted(self, now: datetime) -> PolicyMemory:
        """A new canary: forget the old run, keep what is known about the live endpoint and its traffic."""
        return PolicyMemory(live_share=self.live_share, live_since=self.live_since, total_rps=self.total_rps,
                            breach_since=now, data_lag_minutes=self.data_lag_minutes,
                            newest_minute=self.newest_minute,
                            scale_up_minutes=self.scale_up_minutes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "live_share": self.live_share, "live_since": _iso(self.live_since), "breach_since": _iso(self.breach_since),
            "total_rps": self.total_rps, "step_totals": self.step_totals.to_dict() if self.step_totals else None,
            "totals_since": _iso(self.totals_since), "holding_share": self.holding_share,
            "fallback_gradual": self.fallback_gradual, "last_fallback_cause": self.last_fallback_cause,
            "counted_minutes": [_iso(m) for m in self.counted_minutes], "data_lag_minutes": self.data_lag_minutes,
            "newest_minute": _iso(self.newest_minute), "overflow": self.overflow, "scale_asked_at": _iso(self.scale_asked_at),
            "scale_up_minutes": self.scale_up_minutes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PolicyMemory:
        data = data or {}
        return cls(
            live_share=None if data.get("live_share") is None else float(data["live_share"]),
            live_since=_time(data.get("live_since")), breach_since=_time(data.get("breach_since")),
            total_rps=None if data.get("total_rps") is None else float(data["total_rps"]),
            step_totals=StepTotals.from_dict(data["step_totals"]) if isinstance(data.get("step_totals"), dict) else None,
            totals_since=_time(data.get("totals_since")),
            holding_share=None if data.get("holding_share") is None else float(data["holding_share"]),
            fallback_gradual=bool(data.get("fallback_gradual", False)),
            last_fallback_cause=data.get("last_fallback_cause"),
            counted_minutes=tuple(t for t in (_time(m) for m in data.get("counted_minutes") or ()) if t is not None),
            data_lag_minutes=float(data.get("data_lag_minutes") or 0.0),
            newest_minute=_time(data.get("newest_minute")), overflow=bool(data.get("overflow", False)),
            scale_asked_at=_time(data.get("scale_asked_at")),
            scale_up_minutes=None if data.get("scale_up_minutes") is None else float(data["scale_up_minutes"]),
        )

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> PolicyMemory:
        """Migrate the untyped `extra` of state files written before the typed memory (read only)."""
        cause = extra.get("last_fallback")
        return cls.from_dict({
            **{k: extra.get(k) for k in ("live_share", "live_since", "breach_since", "total_rps", "step_totals",
                                         "totals_since", "fallback_gradual")},
            "holding_share": extra.get("share"),
            "last_fallback_cause": str(cause).split("; ")[0] if cause is not None else None,
        })


@dataclass(frozen=True)
class Intent:
    """An endpoint update the controller decided and saved but has not yet seen confirmed (write-ahead)."""

    target: Target
    action: Action
    decided_at: datetime
    previous_state: ControllerState | None = None  # restored if a progress step never reached AWS

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target.to_dict(), "action": self.action.value, "decided_at": self.decided_at.isoformat(),
                "previous_state": self.previous_state.to_dict() if self.previous_state is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Intent:
        target = data.get("target") or {}
        previous = data.get("previous_state")
        return cls(
            target=Target(weights=dict(target.get("weights", {})), instance_counts=dict(target.get("instance_counts", {}))),
            action=Action(data.get("action", Action.HOLD.value)),
            decided_at=_time(data.get("decided_at")) or datetime.fromisoformat("1970-01-01T00:00:00+00:00"),
            previous_state=ControllerState.from_dict(previous) if previous else None,
        )


_TIMES = ("step_started_at", "phase_since", "last_change_at", "cooldown_until", "last_tick_at", "last_window_end")


@dataclass(frozen=True)
class ControllerState:
    """Everything the controller must remember between ticks (persisted by a StateStore).

    The live endpoint, not this record, is the truth for weights and counts. `memory` is the
    policy's; `intent` and `unrecorded` are the controller's write-ahead fields, cleared when done.
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
    memory: PolicyMemory = field(default_factory=PolicyMemory)
    intent: Intent | None = None  # an update saved before it is sent; cleared once confirmed
    unrecorded: Mapping[str, Any] | None = None  # this tick's record, saved before it is appended; cleared next tick
    # Model versions (issue 17, routing/core/versions.py): what the canary judged, and whether the
    # neuron model now serving has yet to pass the first step (then it never gets more than that share).
    neuron_model: ModelVersion | None = None
    gpu_model: ModelVersion | None = None
    neuron_model_unjudged: bool = False
    # What this controller last sent and saw land: live weights that differ from it with no intent
    # of ours in flight mean someone else changed them (drift). None: no expectation (idle, after a
    # command that sent nothing, after drift was reported).
    applied_target: Target | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "endpoint": self.endpoint, "phase": self.phase.value, "step": self.step, "steps": list(self.steps),
            **{key: _iso(getattr(self, key)) for key in _TIMES},
            "fallbacks": self.fallbacks, "unknown_ticks": self.unknown_ticks, "good_minutes": self.good_minutes,
            "paused_phase": self.paused_phase.value if self.paused_phase else None, "version": self.version,
            "memory": self.memory.to_dict(),
            "intent": self.intent.to_dict() if self.intent is not None else None,
            "unrecorded": dict(self.unrecorded) if self.unrecorded is not None else None,
            "neuron_model": self.neuron_model.to_dict() if self.neuron_model else None,
            "gpu_model": self.gpu_model.to_dict() if self.gpu_model else None,
            "neuron_model_unjudged": self.neuron_model_unjudged,
            "applied_target": self.applied_target.to_dict() if self.applied_target is not None else None,
        }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ControllerState:
        """Reads this format and the one before it (policy memory, intent and record in `extra`)."""
        extra = data.get("extra") or {}
        memory = PolicyMemory.from_dict(data["memory"]) if data.get("memory") is not None \
            else PolicyMemory.from_extra(extra)
        intent = data.get("intent") if "intent" in data else extra.get("intent")
        unrecorded = data.get("unrecorded") if "unrecorded" in data else extra.get("unrecorded")
        plain = {"endpoint", "step", "fallbacks", "unknown_ticks", "good_minutes", "version"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in plain}
        for key in _TIMES:
            values[key] = _time(data.get(key))
        values["phase"] = Phase(data.get("phase", Phase.IDLE.value))
        values["paused_phase"] = Phase(data["paused_phase"]) if data.get("paused_phase") else None
        values["steps"] = tuple(data.get("steps", ()))
        values["neuron_model"] = ModelVersion.from_dict(data.get("neuron_model"))
        values["gpu_model"] = ModelVersion.from_dict(data.get("gpu_model"))
        values["neuron_model_unjudged"] = bool(data.get("neuron_model_unjudged", False))
        applied = data.get("applied_target")
        return cls(**values, memory=memory, intent=Intent.from_dict(intent) if intent else None,
                   unrecorded=dict(unrecorded) if unrecorded else None,
                   applied_target=Target(weights={k: float(v) for k, v in applied["weights"].items()},
                                         instance_counts={k: int(v) for k, v in applied["instance_counts"].items()})
                   if applied else None)

    def evolve(self, **changes: Any) -> ControllerState:
        return replace(self, **changes)

    def remember(self, **changes: Any) -> ControllerState:
        """The same state with some policy memory changed."""
        return replace(self, memory=replace(self.memory, **changes))


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


@runtime_checkable
class LeasedStore(StateStore, Protocol):
    """A StateStore shared by several controllers (the DynamoDB table): one tick at a time holds its lease.

    The lease is taken before a tick and given back with the tick's record (or by release() on an
    error). The JSON files need none: their version check already makes a second writer stand aside.
    """

    def acquire(self) -> bool:
        """Take the lease; False when another controller holds it."""
        ...

    def release(self) -> None: ...

    def holder_text(self) -> str:
        """Who holds the lease, in words (for the stand-aside message)."""
        ...

    def record_standing_aside(self, now: datetime, source: str = "cli") -> dict[str, Any]:
        """Append (and return) the record of a tick that found the lease taken."""
        ...


class ConcurrentModification(Exception):
    """Another controller saved the state first: this tick stands aside."""
