"""The scenario format (YAML): traffic, per-variant hardware, autoscaling, config overrides, faults.

Shared by `hybrid demo` and `hybrid bench`; documented in docs/scenarios.md. Any file in this
format runs, not only the built-in ones (toolkit/scenarios/*.yaml).

Hardware defaults are calibrated on the published figures collected in
shared/reference/aws-facts.md ("Published performance figures"), cited where they are set.
Figures marked "assumption" have no published source: verify on your own endpoint and put the
measured values in your scenario (that is what `hybrid benchmark` measures).
"""

from __future__ import annotations

import copy
import difflib
import math
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from toolkit.config import GPU, NEURON, VARIANT_NAMES, HybridConfig, Strict, parse_config
from toolkit.errors import UserError


class Spike(Strict):
    """Traffic multiplied by `multiplier` for `duration_minutes` from `minute`."""

    minute: int = Field(ge=0, description="First minute of the spike (0-based).")
    duration_minutes: int = Field(ge=1)
    multiplier: float = Field(gt=0, description="Traffic factor during the spike, e.g. 4.0.")


class Ramp(Strict):
    """Traffic growing (or falling) linearly to `multiplier` x over `duration_minutes` from `minute`, then holding."""

    minute: int = Field(ge=0, description="First minute of the ramp (0-based).")
    duration_minutes: int = Field(ge=1)
    multiplier: float = Field(gt=0, description="Traffic factor reached at the ramp's end, e.g. 8.0.")

    def factor(self, minute: int) -> float:
        if minute < self.minute:
            return 1.0
        done = min(1.0, (minute - self.minute + 1) / self.duration_minutes)
        return 1.0 + (self.multiplier - 1.0) * done


class Peak(Strict):
    """A bell-shaped bump of `rps` extra requests/s centred on `minute` (a real day's morning or evening peak)."""

    minute: int = Field(ge=0)
    rps: float = Field(gt=0, description="Extra req/s at the centre.")
    width_minutes: float = Field(gt=0, description="Standard deviation of the bump, in minutes.")

    def rps_at(self, minute: int) -> float:
        return self.rps * math.exp(-0.5 * ((minute - self.minute) / self.width_minutes) ** 2)


class Diurnal(Strict):
    """A day-shaped curve: a cosine between min_rps and max_rps."""

    min_rps: float = Field(ge=0)
    max_rps: float = Field(gt=0)
    period_minutes: int = Field(1440, ge=2, description="Length of one cycle (1440 = a day).")
    peak_minute: int = Field(720, ge=0, description="Minute of the first peak.")

    @model_validator(mode="after")
    def _ordered(self) -> Diurnal:
        if self.min_rps > self.max_rps:
            raise ValueError(f"diurnal.min_rps ({self.min_rps}) is above max_rps ({self.max_rps})")
        return self


class Traffic(Strict):
    """Requests per second offered to the endpoint: exactly one of rps, diurnal, per_minute."""

    rps: float | None = Field(None, ge=0, description="Constant rate.")
    diurnal: Diurnal | None = None
    per_minute: list[float] | None = Field(
        None, description="Explicit rps per minute; the last value holds after the list ends."
    )
    spikes: list[Spike] = Field(default_factory=list)
    ramps: list[Ramp] = Field(default_factory=list, description="Linear growth phases (multiply the rate).")
    peaks: list[Peak] = Field(default_factory=list, description="Bell-shaped bumps added to the rate.")
    poisson: bool = Field(True, description="Request counts per minute vary as Poisson draws around the rate.")
    client_error_rate: float = Field(
        0.001, ge=0, lt=1, description="Share of requests rejected as 4XX (bad input): not the variant's fault."
    )
    targeted_gpu_fraction: float = Field(
        0.0, ge=0, le=1,
        description="Share of requests the client sends to gpu with TargetVariant (inputs beyond the compiled shape).",
    )

    @model_validator(mode="after")
    def _one_shape(self) -> Traffic:
        given = [k for k in ("rps", "diurnal", "per_minute") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"traffic needs exactly one of rps, diurnal, per_minute (got {', '.join(given) or 'none'})")
        if self.per_minute is not None and (not self.per_minute or any(v < 0 for v in self.per_minute)):
            raise ValueError("traffic.per_minute must be a non-empty list of rates >= 0")
        return self

    def rps_at(self, minute: int) -> float:
        if self.rps is not None:
            base = self.rps
        elif self.diurnal is not None:
            d = self.diurnal
            phase = 2 * math.pi * (minute - d.peak_minute) / d.period_minutes
            base = d.min_rps + (d.max_rps - d.min_rps) * (1 + math.cos(phase)) / 2
        else:
            assert self.per_minute is not None
            base = self.per_minute[min(minute, len(self.per_minute) - 1)]
        base += sum(peak.rps_at(minute) for peak in self.peaks)
        for ramp in self.ramps:
            base *= ramp.factor(minute)
        for spike in self.spikes:
            if spike.minute <= minute < spike.minute + spike.duration_minutes:
                base *= spike.multiplier
        return base


class Latency(Strict):
    """ModelLatency of one request on a warm, unloaded instance: lognormal(median, sigma)."""

    median_ms: float | None = Field(None, gt=0)
    sigma: float | None = Field(None, ge=0, le=3, description="Lognormal shape: spread of log-latency.")
    overhead_ms: float | None = Field(None, ge=0, description="Median OverheadLatency added by SageMaker.")


class Noise(Strict):
    """Transient slow minutes that are NOT a regression (false-alarm bait)."""

    probability: float = Field(0.0, ge=0, le=1, description="Chance that a minute has a slow burst.")
    fraction: float = Field(0.02, ge=0, le=1, description="Share of that minute's requests that are slow.")
    multiplier: float = Field(4.0, ge=1, description="How much slower they are.")


class Hardware(Strict):
    """One variant's simulated hardware; unset fields take the role defaults below or the config."""

    instance_type: str | None = Field(None, description="Default: the config's variants.<name>.instance_type.")
    price_per_hour: float | None = Field(None, gt=0, description="Default: toolkit.pricing (config prices win).")
    capacity_rps_per_instance: float | None = Field(
        None, gt=0, description="Throughput one instance sustains at the SLO. Default: the config's value."
    )
    latency: Latency = Field(default_factory=Latency)
    queue_weight: float | None = Field(
        None, ge=0, description="Latency grows by 1 + queue_weight * rho/(1-rho) with utilization rho."
    )
    max_queue_factor: float | None = Field(None, ge=1, description="Cap of the queueing factor.")
    error_rate: float | None = Field(None, ge=0, lt=1, description="Base 5XX share.")
    minute_jitter: float | None = Field(None, ge=0, le=1, description="Per-minute lognormal jitter of the median.")
    noise: Noise = Field(default_factory=Noise)
    cold_start_minutes: int | None = Field(None, ge=0, description="Minutes a new instance serves slower.")
    cold_start_multiplier: float | None = Field(None, ge=1, description="Latency factor of a brand-new instance.")
    scale_up_delay_minutes: int | None = Field(None, ge=0, description="Minutes from a count increase to InService.")


# Role defaults. Figures from shared/reference/aws-facts.md, "Published performance figures".
ROLE_DEFAULTS: dict[str, dict[str, Any]] = {
    GPU: {
        # "g5.xlarge about 20 requests/s per instance at 50 ms" (BERT-class model).
        "latency": {"median_ms": 50.0, "sigma": 0.15, "overhead_ms": 2.0},
        # "GPU latency is flatter across batch sizes": the narrower spread of the two.
        # assumption: capacity_rps_per_instance is the throughput at which latency still meets the
        # SLO, so latency grows gently up to it (x1.27 at 90 %) and steeply past it.
        "queue_weight": 0.03,
        "max_queue_factor": 6.0,
        "error_rate": 0.0002,  # assumption
        "minute_jitter": 0.03,  # assumption
        "cold_start_minutes": 1,
        "cold_start_multiplier": 1.1,  # assumption (GPU containers warm quickly)
        "scale_up_delay_minutes": 4,  # assumption: instance + container start, verify
    },
    NEURON: {
        # "inf2.xlarge about 40 requests/s thanks to batching"; "single-request latency on inf2
        # 10-20% higher than GPU": median 55 ms = +10% over the GPU's 50 ms.
        # "Inf2 latency varies more with batch position": a wider spread (0.16 vs 0.15), which puts
        # neuron's healthy p99 about 13% above gpu's (inside the default 25% regression budget).
        "latency": {"median_ms": 55.0, "sigma": 0.16, "overhead_ms": 2.0},
        "queue_weight": 0.03,
        "max_queue_factor": 6.0,
        "error_rate": 0.0002,
        "minute_jitter": 0.04,
        # "first request after deployment much slower (about 150 ms vs 80 ms average)": 1.9x on the
        # first requests; diluted over a new instance's first minute we assume 1.3x (verify).
        "cold_start_minutes": 1,
        "cold_start_multiplier": 1.3,
        # "inf2 containers load (and may compile) slowly": a longer scale-up (assumption, verify).
        "scale_up_delay_minutes": 6,
    },
}


class Autoscaling(Strict):
    """Application Auto Scaling target tracking on InvocationsPerInstance (target from the config)."""

    enabled: bool = True
    scale_out_minutes: int = Field(3, ge=1, description="Consecutive minutes above target before scaling out.")
    scale_in_minutes: int = Field(15, ge=1, description="Consecutive minutes below target before scaling in.")


class Metrics(Strict):
    """What CloudWatch gives the controllers."""

    percentiles: bool = Field(
        True, description="False: ModelLatency has no percentiles (published as statistic sets, or an "
        "account without them): readers get Average and Maximum only.",
    )


class Fault(Strict):
    """Something going wrong on one variant for a while."""

    minute: int = Field(ge=0)
    variant: Literal["neuron", "gpu"]
    kind: Literal["latency", "errors", "outage", "metric_delay"]
    magnitude: float = Field(
        1.0,
        description="latency: latency factor (3 = 3x slower); errors: extra 5XX share (0.2 = 20%); "
        "metric_delay: minutes late; outage: unused.",
    )
    duration_minutes: int = Field(ge=1)
    ramp_minutes: int = Field(
        0, ge=0, description="latency only: the factor grows linearly from 1 to `magnitude` over these minutes "
        "(a slow degradation); 0 = at once.",
    )

    @model_validator(mode="after")
    def _magnitude(self) -> Fault:
        if self.kind == "latency" and self.magnitude <= 0:
            raise ValueError(f"latency fault magnitude is a factor > 0, got {self.magnitude}")
        if self.kind == "errors" and not 0 <= self.magnitude <= 1:
            raise ValueError(f"errors fault magnitude is a share in 0..1, got {self.magnitude}")
        if self.ramp_minutes and self.kind != "latency":
            raise ValueError(f"ramp_minutes applies to latency faults only, not {self.kind}")
        if self.kind == "metric_delay" and (self.magnitude < 1 or self.magnitude != int(self.magnitude)):
            raise ValueError(f"metric_delay magnitude is whole minutes >= 1, got {self.magnitude}")
        return self

    def active(self, minute: int) -> bool:
        return self.minute <= minute < self.minute + self.duration_minutes

    def factor(self, minute: int) -> float:
        """A latency fault's factor at `minute` (ramped faults grow toward `magnitude`)."""
        if self.ramp_minutes <= 0:
            return self.magnitude
        done = min(1.0, (minute - self.minute + 1) / self.ramp_minutes)
        return 1.0 + (self.magnitude - 1.0) * done


class Scenario(Strict):
    """Root of a scenario file."""

    name: str = Field(description="Short name, shown in reports.")
    description: str = ""
    duration_minutes: int = Field(ge=1, le=100_000)
    seed: int = Field(0, description="Default seed (--seed overrides).")
    start: datetime = Field(datetime(2026, 1, 1, tzinfo=UTC), description="Simulated start time (UTC).")
    canary_start_minute: int = Field(5, ge=0, description="When `canary start` is issued (gpu baseline before).")
    traffic: Traffic
    hardware: dict[str, Hardware] = Field(default_factory=dict, description="Per variant: neuron, gpu.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    metrics: Metrics = Field(default_factory=Metrics)
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides merged into hybrid.yaml (e.g. slo, canary, fallback, holding, variants).",
    )
    faults: list[Fault] = Field(default_factory=list)

    @field_validator("hardware")
    @classmethod
    def _variants(cls, value: dict[str, Hardware]) -> dict[str, Hardware]:
        unknown = sorted(set(value) - set(VARIANT_NAMES))
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(unknown)}: use neuron and gpu")
        return value

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(second=0, microsecond=0)

    @model_validator(mode="after")
    def _faults_in_range(self) -> Scenario:
        for i, fault in enumerate(self.faults):
            if fault.minute >= self.duration_minutes:
                raise ValueError(f"faults[{i}].minute ({fault.minute}) is past duration_minutes ({self.duration_minutes})")
        return self


class VariantHardware(BaseModel):
    """Hardware with every field resolved (scenario, then role defaults, then config / price table)."""

    name: str
    instance_type: str
    price_per_hour: float
    capacity_rps_per_instance: float
    median_ms: float
    sigma: float
    overhead_ms: float
    queue_weight: float
    max_queue_factor: float
    error_rate: float
    minute_jitter: float
    noise: Noise
    cold_start_minutes: int
    cold_start_multiplier: float
    scale_up_delay_minutes: int
    min_count: int
    max_count: int
    initial_count: int
    target_invocations_per_instance: float


class Setup(BaseModel):
    """A scenario resolved against a config: what the simulator runs."""

    model_config = {"arbitrary_types_allowed": True}

    scenario: Scenario
    config: HybridConfig
    hardware: dict[str, VariantHardware]
    seed: int

    def fault_list(self, variant: str, kind: str, minute: int) -> list[Fault]:
        return [f for f in self.scenario.faults if f.variant == variant and f.kind == kind and f.active(minute)]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merged_config(config: HybridConfig, overrides: dict[str, Any], source: str = "scenario config") -> HybridConfig:
    """The config with the scenario's overrides merged in (validated like hybrid.yaml)."""
    if not overrides:
        return config
    data = config.model_dump(mode="json", exclude_none=True)
    # Exactly one of canary.steps / canary.curve may be set: an override of one replaces the other.
    canary = overrides.get("canary") or {}
    if "steps" in canary:
        data.get("canary", {}).pop("curve", None)
    if "curve" in canary:
        data.get("canary", {}).pop("steps", None)
    return parse_config(_merge(data, overrides), source)


def resolve(scenario: Scenario, config: HybridConfig, seed: int | None = None) -> Setup:
    """Resolve every hardware default; merge the scenario's config overrides. UserError if a price is unknown."""
    from toolkit.pricing import price_per_hour

    overrides = copy.deepcopy(scenario.config)
    for name, given in scenario.hardware.items():  # the endpoint must run the simulated hardware
        if given.instance_type:
            overrides.setdefault("variants", {}).setdefault(name, {})["instance_type"] = given.instance_type
    merged = merged_config(config, overrides, f"scenario {scenario.name}: config")
    hardware: dict[str, VariantHardware] = {}
    for name in VARIANT_NAMES:
        variant = merged.variant(name)
        given = scenario.hardware.get(name, Hardware())
        defaults = ROLE_DEFAULTS[name]
        lat = given.latency

        def pick(value: Any, key: str, defaults: dict[str, Any] = defaults) -> Any:
            return defaults[key] if value is None else value

        instance_type = given.instance_type or variant.instance_type
        price = given.price_per_hour or price_per_hour(instance_type, merged.prices)
        hardware[name] = VariantHardware(
            name=name,
            instance_type=instance_type,
            price_per_hour=price,
            capacity_rps_per_instance=given.capacity_rps_per_instance or variant.capacity_rps_per_instance,
            median_ms=lat.median_ms or defaults["latency"]["median_ms"],
            sigma=defaults["latency"]["sigma"] if lat.sigma is None else lat.sigma,
            overhead_ms=defaults["latency"]["overhead_ms"] if lat.overhead_ms is None else lat.overhead_ms,
            queue_weight=pick(given.queue_weight, "queue_weight"),
            max_queue_factor=pick(given.max_queue_factor, "max_queue_factor"),
            error_rate=pick(given.error_rate, "error_rate"),
            minute_jitter=pick(given.minute_jitter, "minute_jitter"),
            noise=given.noise,
            cold_start_minutes=pick(given.cold_start_minutes, "cold_start_minutes"),
            cold_start_multiplier=pick(given.cold_start_multiplier, "cold_start_multiplier"),
            scale_up_delay_minutes=pick(given.scale_up_delay_minutes, "scale_up_delay_minutes"),
            min_count=variant.min_count,
            max_count=variant.max_count,
            initial_count=variant.initial_count,
            target_invocations_per_instance=float(variant.target_invocations_per_instance),
        )
    # A scenario's price override must be the controller's price too (one price per instance type).
    given_prices = {hw.instance_type: hw.price_per_hour for name, hw in hardware.items()
                    if scenario.hardware.get(name, Hardware()).price_per_hour is not None}
    if given_prices:
        merged = merged.model_copy(update={"prices": {**merged.prices, **given_prices}})
    return Setup(scenario=scenario, config=merged, hardware=hardware,
                 seed=scenario.seed if seed is None else seed)


# ------------------------------------------------------------------------------------------------
# Loading


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise UserError(f"{source}: a scenario must be a YAML mapping (name, duration_minutes, traffic, ...)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise UserError(f"{source}: " + "; ".join(_problems(error))) from None


def _problems(error: ValidationError) -> list[str]:
    """One line per problem with its path; unknown keys get a did-you-mean from the model that owns them."""
    lines = []
    for item in error.errors():
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[") or "(root)"
        if item["type"] == "extra_forbidden":
            owner: Any = Scenario
            for part in loc[:-1]:
                field = owner.model_fields.get(str(part)) if isinstance(owner, type) else None
                annotation = field.annotation if field else None
                owner = next((a for a in (annotation, *getattr(annotation, "__args__", ()))
                              if isinstance(a, type) and issubclass(a, BaseModel)), None)
                if owner is None:
                    break
            known = sorted(owner.model_fields) if owner else []
            near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            lines.append(f"{path}: unknown key" + (f"; did you mean {near[0]!r}?" if near else ""))
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {'required field is missing' if item['type'] == 'missing' else message}")
    return lines


def builtin_dir() -> Path:
    return Path(str(resources.files("toolkit") / "scenarios"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario file path, or the name of a built-in scenario (toolkit/scenarios/<name>.yaml)."""
    path = Path(name_or_path)
    if not path.exists():
        candidate = builtin_dir() / f"{name_or_path}.yaml"
        if candidate.exists():
            path = candidate
        else:
            known = ", ".join(builtin_names())
            raise UserError(f"scenario {str(name_or_path)!r}: no such file and no built-in scenario of that name "
                            f"(built-in: {known})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise UserError(f"{path}: {where}malformed YAML: {getattr(error, 'problem', None) or error}") from None
    return parse_scenario(data, str(path))
