"""The report's typed input and the pure figures derived from it (no I/O, no plotting).

Both sources build a `ReportInput`:
- the demo, from a simulated run (toolkit/report/demo.py);
- `hybrid report`, from a real rollout's decision records and the variants' CloudWatch history
  (toolkit/report/rollout.py).
The renderer (toolkit/report/render.py) only ever sees a `ReportInput`.

Decision records are read with a small tolerant parser (`parse_record`): the keys the controller
writes today (routing/controller.py `_record`), any missing key defaulted, unknown keys ignored,
so records written before or after the record format is retyped read the same.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from toolkit.config import GPU, NEURON

VARIANTS = (NEURON, GPU)
QUIET_ACTIONS = frozenset({"", "none", "hold"})
HOURS_PER_MONTH = 730.0  # AWS's own monthly figure (8,760 h / 12)

# Phases grouped into episodes: a fallback's falling_back and cooling_down ticks are one episode.
EPISODE_OF_PHASE = {
    "idle": "idle",
    "ramping": "ramp",
    "holding": "holding",
    "falling_back": "fallback",
    "cooling_down": "fallback",
    "paused": "paused",
    "aborted": "aborted",
}


@dataclass(frozen=True)
class VariantSample:
    """One variant in one minute: what CloudWatch (or the simulator) saw and what it cost."""

    invocations: float = 0.0
    errors_5xx: float = 0.0
    p99_ms: float | None = None
    instances: float = 0.0
    share_percent: float | None = None  # the live traffic share, when known
    cost: float = 0.0  # $ for this minute (instances x $/hour / 60)

    @property
    def cost_per_1k(self) -> float | None:
        return self.cost / self.invocations * 1000.0 if self.invocations > 0 else None


@dataclass(frozen=True)
class MinuteSample:
    """One minute of the rollout. `minute` counts from the report's start (0-based)."""

    minute: int
    variants: Mapping[str, VariantSample]
    all_gpu_cost: float | None = None  # the counterfactual's $ for this minute (same traffic on gpu alone)
    unattributed_errors: float = 0.0  # 5XX known only for the whole endpoint (the simulator counts them so)

    def get(self, name: str) -> VariantSample:
        return self.variants.get(name) or VariantSample()

    @property
    def invocations(self) -> float:
        return sum(v.invocations for v in self.variants.values())

    @property
    def cost(self) -> float:
        return sum(v.cost for v in self.variants.values())

    @property
    def errors_5xx(self) -> float:
        return sum(v.errors_5xx for v in self.variants.values()) + self.unattributed_errors


@dataclass(frozen=True)
class DecisionPoint:
    """One decision record, as the report needs it (see parse_record for the keys read)."""

    time: datetime | None
    minute: float | None  # minutes from the report's start (set by the builder)
    command: str
    phase: str
    phase_before: str
    action: str
    reason: str
    step_k: int | None = None
    step_n: int | None = None
    step_percent: float | None = None
    applied: bool = False
    dry_run: bool = False
    failed_gates: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    shares: Mapping[str, float] = field(default_factory=dict)  # live share (%) after the tick, when recorded
    instances: Mapping[str, float] = field(default_factory=dict)  # live CurrentInstanceCount after the tick

    @property
    def quiet(self) -> bool:
        return self.action in QUIET_ACTIONS and self.command == "tick"


@dataclass(frozen=True)
class Episode:
    """Consecutive decisions of one kind (a ramp, a fallback and its cool-down, holding...)."""

    kind: str
    start_minute: float
    end_minute: float
    decisions: int
    actions: Mapping[str, int]
    reason: str  # the first non-quiet decision's reason (why the episode began)
    detail: str = ""

    @property
    def minutes(self) -> float:
        return max(0.0, self.end_minute - self.start_minute)


@dataclass(frozen=True)
class PriceEcho:
    variant: str
    instance_type: str
    price_per_hour: float
    source: str


@dataclass(frozen=True)
class ConfigEcho:
    """What the rollout was judged against: shown in the report as is."""

    endpoint: str
    region: str
    p99_latency_ms: float
    max_error_rate: float
    max_regression: float
    steps: tuple[float, ...]
    prices: tuple[PriceEcho, ...]
    gpu_warm_floor: int
    baseline_method: str = ""


@dataclass(frozen=True)
class FaultSpan:
    start_minute: float
    end_minute: float
    label: str


@dataclass
class ReportInput:
    """Everything the renderer draws. Minutes are per-minute samples from `start`."""

    title: str
    subtitle: str
    start: datetime | None
    minutes: list[MinuteSample]
    decisions: list[DecisionPoint]
    config: ConfigEcho
    faults: list[FaultSpan] = field(default_factory=list)
    x_label: str = "minutes since the start"
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# The tolerant record parser


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, Mapping) and "value" in value:  # an enum serialised as an object
        return str(value["value"])
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        out = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return out if out is not None and math.isfinite(out) else None


def parse_record(data: Mapping[str, Any]) -> DecisionPoint:
    """One decision record (a dict) into a DecisionPoint; never raises on a missing or odd key."""
    step = data.get("step")
    step_k = step_n = None
    step_percent = None
    if isinstance(step, Mapping):
        step_k, step_n = _int(step.get("k")), _int(step.get("n"))
        step_percent = _float(step.get("neuron_percent"))
    elif step is not None:
        step_k = _int(step)
    failed = data.get("failed_gates") or ()
    shares: dict[str, float] = {}
    instances: dict[str, float] = {}
    live = data.get("after") if isinstance(data.get("after"), Mapping) else data.get("before")
    variants = live.get("variants") if isinstance(live, Mapping) else None
    if isinstance(variants, Mapping):
        for name, v in variants.items():
            if not isinstance(v, Mapping):
                continue
            share = _float(v.get("share_percent"))
            count = _float(v.get("current_instance_count", v.get("desired_instance_count")))
            if share is not None:
                shares[str(name)] = share
            if count is not None:
                instances[str(name)] = count
    errors = data.get("errors") or ()
    return DecisionPoint(
        time=_parse_time(data.get("time") or data.get("at")),
        minute=None,
        command=_text(data.get("command"), "tick"),
        phase=_text(data.get("phase"), "idle"),
        phase_before=_text(data.get("phase_before"), _text(data.get("phase"), "idle")),
        action=_text(data.get("action"), "none"),
        reason=_text(data.get("reason")),
        step_k=step_k,
        step_n=step_n,
        step_percent=step_percent,
        applied=bool(data.get("applied", False)),
        dry_run=bool(data.get("dry_run", False)),
        failed_gates=tuple(_text(g.get("name") if isinstance(g, Mapping) else g) for g in failed),
        errors=tuple(_text(e) for e in errors),
        shares=shares,
        instances=instances,
    )


def read_records_jsonl(text: str) -> list[dict[str, Any]]:
    """Records from JSON lines; a torn or non-object line (a crash mid-append) is skipped."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


# ------------------------------------------------------------------------------------------------
# Episodes and the summary


def _episode_kind(decision: DecisionPoint) -> str:
    if decision.action == "fallback":
        return "fallback"
    if decision.action == "abort":
        return "aborted"
    return EPISODE_OF_PHASE.get(decision.phase, decision.phase)


def episodes(decisions: Sequence[DecisionPoint], end_minute: float | None = None) -> list[Episode]:
    """Group consecutive decisions of the same kind; an episode lasts until the next one starts.

    A fallback (the fallback ticks while the endpoint updates, then falling_back and cooling_down
    ticks) is one episode with its duration, not one row per tick. A fallback after the ramp
    resumed is a new episode.
    """
    timed = [d for d in decisions if d.minute is not None]
    out: list[Episode] = []
    group: list[DecisionPoint] = []

    def close(next_start: float | None) -> None:
        if not group:
            return
        kind = _episode_kind(group[0])
        actions: dict[str, int] = {}
        for d in group:
            if d.action not in QUIET_ACTIONS:
                actions[d.action] = actions.get(d.action, 0) + 1
        loud = next((d for d in group if d.action not in QUIET_ACTIONS), group[0])
        start = float(group[0].minute or 0.0)
        end = next_start if next_start is not None else max(float(group[-1].minute or 0.0), end_minute or 0.0)
        out.append(Episode(kind, start, end, len(group), actions, loud.reason, _detail(kind, group)))

    for decision in timed:
        kind = _episode_kind(decision)
        # A fallback is re-decided while the endpoint updates: those ticks stay in the same episode.
        if group and kind != _episode_kind(group[0]):
            close(decision.minute)
            group = []
        group.append(decision)
    close(None)
    return out


def _detail(kind: str, group: Sequence[DecisionPoint]) -> str:
    if kind == "ramp":
        steps = [d for d in group if d.action in ("progress", "promote") and d.step_percent is not None]
        if steps:
            first, last = steps[0], steps[-1]
            return (f"steps {first.step_k}..{last.step_k} of {last.step_n}: neuron "
                    f"{first.step_percent:g}% -> {last.step_percent:g}%")
    if kind == "fallback":
        gates = sorted({g for d in group for g in d.failed_gates})
        return f"failed gates: {', '.join(gates)}" if gates else ""
    return ""


@dataclass(frozen=True)
class Summary:
    """The report's headline figures (None when unknown)."""

    minutes: int
    requests: float
    errors_5xx: float
    cost: float
    all_gpu_cost: float | None
    savings_fraction: float | None
    cost_per_1k: dict[str, float | None]
    hybrid_cost_per_1k: float | None
    all_gpu_cost_per_1k: float | None
    final_neuron_share: float | None
    fallbacks: int
    fallback_minutes: float
    minutes_to_full_migration: float | None
    worst_p99_ms: dict[str, float | None]
    slo_breach_minutes: int
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def summarize(report: ReportInput) -> Summary:
    minutes = report.minutes
    requests = sum(m.invocations for m in minutes)
    cost = sum(m.cost for m in minutes)
    errors = sum(m.errors_5xx for m in minutes)
    baseline_known = bool(minutes) and all(m.all_gpu_cost is not None for m in minutes)
    base = sum(m.all_gpu_cost or 0.0 for m in minutes) if baseline_known else None
    savings = (1.0 - cost / base) if base else None
    per_variant: dict[str, float | None] = {}
    for name in VARIANTS:
        inv = sum(m.get(name).invocations for m in minutes)
        spent = sum(m.get(name).cost for m in minutes)
        per_variant[name] = spent / inv * 1000.0 if inv > 0 else None
    shares = [m.get(NEURON).share_percent for m in minutes if m.get(NEURON).share_percent is not None]
    target = report.config.steps[-1] if report.config.steps else 100.0
    full = next((d.minute for d in report.decisions if d.minute is not None and d.step_percent is not None
                 and d.step_percent >= target - 0.05 and d.action in ("progress", "promote")), None)
    started = next((d.minute for d in report.decisions if d.command == "start" and d.minute is not None), None)
    eps = episodes(report.decisions, end_minute=float(len(minutes)))
    fallback_eps = [e for e in eps if e.kind == "fallback"]
    slo = report.config.p99_latency_ms
    breaches = sum(1 for m in minutes
                   if any((m.get(n).p99_ms or 0.0) > slo and m.get(n).invocations > 0 for n in VARIANTS))
    worst = {n: max((m.get(n).p99_ms for m in minutes if m.get(n).p99_ms is not None), default=None)
             for n in VARIANTS}
    summary = Summary(
        minutes=len(minutes), requests=requests, errors_5xx=errors, cost=cost, all_gpu_cost=base,
        savings_fraction=savings, cost_per_1k=per_variant,
        hybrid_cost_per_1k=cost / requests * 1000.0 if requests else None,
        all_gpu_cost_per_1k=base / requests * 1000.0 if base is not None and requests else None,
        final_neuron_share=shares[-1] if shares else None,
        fallbacks=len(fallback_eps), fallback_minutes=sum(e.minutes for e in fallback_eps),
        minutes_to_full_migration=(full - (started or 0.0)) if full is not None else None,
        worst_p99_ms=worst, slo_breach_minutes=breaches, verdict="",
    )
    return Summary(**{**summary.to_dict(), "verdict": verdict(summary, report)})


def verdict(s: Summary, report: ReportInput) -> str:
    """One line a person can act on."""
    share = f"{s.final_neuron_share:.0f}% on neuron" if s.final_neuron_share is not None else "share unknown"
    money = ""
    if s.savings_fraction is not None and s.all_gpu_cost is not None:
        monthly = (s.all_gpu_cost - s.cost) / max(s.minutes, 1) * 60.0 * HOURS_PER_MONTH
        word = "saved" if s.savings_fraction >= 0 else "cost"
        money = (f"; {word} {abs(s.savings_fraction):.1%} vs all-GPU "
                 f"(~{fmt_money(abs(monthly), 0)}/month at this traffic)")
    falls = "" if s.fallbacks == 0 else (
        f"; {s.fallbacks} fallback{'s' if s.fallbacks != 1 else ''} to gpu ({s.fallback_minutes:.0f} min in total)")
    if s.final_neuron_share is not None and s.final_neuron_share >= (report.config.steps[-1] if report.config.steps
                                                                      else 100.0) - 0.05:
        head = "Migrated"
    elif s.final_neuron_share is not None and s.final_neuron_share > 0.05:
        head = "Partly migrated"
    else:
        head = "Not migrated"
    return f"{head}: {share} at the end{falls}{money}."


# ------------------------------------------------------------------------------------------------
# Formatting shared by the HTML and the CLI


def fmt_money(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    # Sign from the rounded value: never "-$0.00".
    return f"-${abs(value):,.{digits}f}" if round(value, digits) < 0 else f"${abs(value) if value <= 0 else value:,.{digits}f}"


def fmt_percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def fmt_minutes(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 120:
        return f"{value / 60:.1f} h"
    return f"{value:.0f} min"


def with_minutes(decisions: Iterable[DecisionPoint], start: datetime) -> list[DecisionPoint]:
    """Place each record on the report's minute axis (minutes since `start`)."""
    from dataclasses import replace

    out = []
    for d in decisions:
        minute = (d.time - start).total_seconds() / 60.0 if d.time is not None else None
        out.append(replace(d, minute=minute))
    return out
