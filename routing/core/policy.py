"""The decision core: state + observation + live endpoint + time in, one Decision out. Pure.

One tick, in order (each a small function):
  1. track_live_share  remember since when the live neuron share has been what it is now;
  2. measure           the judged minutes (closed minutes since that share went live), traffic,
                       cost per 1K per variant;
  3. assess            the gates of routing/gates.py over those minutes;
  4. guard             safety first: a breach (or too many ticks without metrics) falls back NOW,
                       in any phase where neuron carries traffic, even while the endpoint updates;
  5. the phase handler (ramping, holding, ...) decides the next step;
  6. finish            attach gates, cost and statistics; stamp the tick.

Weights are percent (neuron + gpu = 100). Targets always carry both variants' instance counts;
gpu is never below its min_count. See docs/routing.md for the formulas and the timing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from routing.core.costs import cost_per_1k
from routing.core.gates import (
    MIN_ERRORS,
    NOISE_WINDOW,
    Assessment,
    Silence,
    Window,
    assess,
    confirmed_above,
    fmt_cost,
    fmt_int,
    fmt_ms,
    judged_points,
    tail_ratio,
    window_from,
)
from routing.core.model import (
    Action,
    ControllerState,
    Decision,
    EndpointLive,
    Gate,
    GateResult,
    MinuteMetrics,
    Observation,
    Phase,
    PolicyMemory,
    Target,
)
from routing.core.stats import StepTotals, instances_for
from routing.core.transitions import GUARD_PHASES, Event, transition
from routing.core.variants import GPU, NEURON

if TYPE_CHECKING:  # the settings model is only read here; its module (pydantic, YAML) stays out of the core
    from toolkit.config import HybridConfig

SHARE_EPSILON = 0.05  # percentage points: the live share "is" the goal within this
DEGRADE_FRACTION = 0.9  # holding: neuron p99 above 90% of the SLO (noise rule) steps share back to gpu
RECOVER_FRACTION = 0.8  # holding: a clean minute has p99 <= 80% of the SLO (hysteresis band)
RECOVER_UTILIZATION = 0.8  # ...and load <= 80% of the saturation level
MAX_WINDOW_MINUTES = 60
DEFAULT_SCALE_UP_MINUTES = 6.0  # until one neuron scale-up has been measured (ml.inf2: ~5-8 min)
TREND_MINUTES = 6  # minutes of traffic the trend is fitted on
TREND_T = 3.0  # the slope must be this many standard errors above 0 to count as growth
MINUTE = timedelta(minutes=1)

# ------------------------------------------------------------------------------------------------
# Small helpers


def ceil_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + MINUTE


def _holding_goal(state: ControllerState, target_share: float) -> float:
    """The share holding holds at: the one it last moved to, else the canary's target."""
    return state.memory.holding_share if state.memory.holding_share is not None else float(target_share)


def _minutes_between(start: datetime | None, end: datetime) -> float:
    return (end - start).total_seconds() / 60.0 if start else 0.0


def _pct(value: float) -> str:
    return f"{value:g}%"


def _weights(neuron_share: float) -> dict[str, float]:
    neuron = round(min(100.0, max(0.0, neuron_share)), 4)
    return {NEURON: neuron, GPU: round(100.0 - neuron, 4)}


def _asked_counts(endpoint: EndpointLive) -> dict[str, int]:
    """Counts already asked for (desired), so a target never cancels a scale-up in flight."""
    return {name: max(v.desired_instance_count, v.current_instance_count) for name, v in endpoint.variants.items()}


def _with_count(t: Tick, variant: str, count: int) -> Target:
    """The live weights, `variant` asked for `count` instances, the other counts as already asked."""
    return Target(weights=_weights(t.live),
                  instance_counts=_bounded_counts(t.config, {**_asked_counts(t.endpoint), variant: count}))


def _bounded_counts(config: HybridConfig, counts: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for variant in (NEURON, GPU):
        vc = config.variant(variant)
        out[variant] = max(vc.min_count, min(vc.max_count, int(counts.get(variant, vc.initial_count))))
    out[GPU] = max(out[GPU], config.variants.gpu.min_count, 1)
    return out


def cooldown_for(config: HybridConfig, fallbacks: int) -> timedelta:
    """cooldown_minutes x cooldown_backoff^(fallbacks-1), capped at max_cooldown_minutes."""
    fb = config.fallback
    minutes = fb.cooldown_minutes * fb.cooldown_backoff ** max(0, fallbacks - 1)
    return timedelta(minutes=min(minutes, fb.max_cooldown_minutes))


def neuron_needed(config: HybridConfig, share: float, total_rps: float, autoscaler: bool = False) -> int:
    """Neuron instances to carry share% of total_rps (at least one as soon as it has weight).

    Sized so the load stays at or below holding.saturation_utilization of the per-instance
    capacity: sizing at 100% puts each step at the edge where latency climbs (queueing) and the
    regression gate trips on a healthy model, and holding would step back at once anyway.
    autoscaler: nor below what neuron's autoscaling target asks for (target_invocations_per_instance):
    target tracking scales a smaller count out minutes later anyway.
    """
    vc = config.variants.neuron
    low = max(vc.min_count, 1 if share > 0 else 0)
    per_instance = vc.capacity_rps_per_instance * config.holding.saturation_utilization
    if autoscaler:
        per_instance = min(per_instance, vc.target_invocations_per_instance / 60.0)
    return instances_for(share / 100.0 * total_rps, per_instance, low, vc.max_count)


def gpu_needed(config: HybridConfig, share: float, total_rps: float) -> int:
    """Gpu instances to carry share% of total_rps with the fallback headroom; never below min_count."""
    vc = config.variants.gpu
    return instances_for(share / 100.0 * total_rps, vc.capacity_rps_per_instance, max(vc.min_count, 1), vc.max_count,
                         config.fallback.gpu_headroom)


# ------------------------------------------------------------------------------------------------
# Public API


def initial_state(config: HybridConfig, endpoint_name: str) -> ControllerState:
    return ControllerState(endpoint=endpoint_name, phase=Phase.IDLE, steps=tuple(config.canary.resolved_steps()))


def window_minutes(config: HybridConfig, state: ControllerState) -> int:
    """Closed minutes to fetch each tick: enough for a whole step (max bake) and the holding evidence."""
    del state  # the same window in every phase keeps the metrics call identical and cacheable
    wanted = max(config.canary.max_bake_minutes, config.holding.return_after_good_minutes, NOISE_WINDOW + 2)
    return min(MAX_WINDOW_MINUTES, wanted + 1)


# ------------------------------------------------------------------------------------------------
# 1-2. Track the live share, measure


def track_live_share(state: ControllerState, endpoint: EndpointLive, now: datetime) -> ControllerState:
    """Remember since when the live neuron share has been what it is (judged minutes start there)."""
    live = endpoint.share(NEURON) if NEURON in endpoint.variants else 0.0
    known = state.memory.live_share
    if known is None or abs(known - live) > SHARE_EPSILON or state.memory.live_since is None:
        return state.remember(live_share=live, live_since=now)
    return state


@dataclass(frozen=True)
class Measurement:
    neuron_share: float
    gpu_share: float
    step: Window  # judged minutes: closed minutes since the live share went live (within the metrics window)
    recent: Window  # closed minutes since the last fallback or start: where breaches are looked for
    totals: StepTotals  # the same minutes added up since the share went live, across ticks
    total_rps: float | None  # newest estimate of the whole endpoint's traffic
    sizing_rps: float  # what capacity is planned for: the recent peak, or the last known traffic
    silence: Silence  # the newest minutes neuron served nothing in, and what it should have served
    cost_per_1k: dict[str, float | None]  # observed: instance count x $/h over invocations
    projected_cost_per_1k: dict[str, float | None]  # right-sized fleet at the current traffic
    counted: tuple[datetime, ...] = ()  # the ledger after this tick: minute starts in totals
    data_lag: float = 0.0  # minutes CloudWatch is behind (measured)
    newest_minute: datetime | None = None
    saturated: tuple[MinuteMetrics, ...] = ()  # newest neuron minutes served past the saturation level


def _minute_totals(minutes: Mapping[str, tuple[MinuteMetrics, ...]], neuron_share: float,
                   gpu_share: float, since: datetime | None) -> list[tuple[datetime, float | None]]:
    """Total invocations per minute; since the live share went live, a silent side is inferred from
    the other side's share (before that the share was different, so minutes are plainly added)."""
    n_by = {m.start: m for m in minutes.get(NEURON, ())}
    g_by = {m.start: m for m in minutes.get(GPU, ())}
    out: list[tuple[datetime, float | None]] = []
    for start in sorted(set(n_by) | set(g_by)):
        n = n_by[start].invocations if start in n_by else None
        g = g_by[start].invocations if start in g_by else None
        if n is None and not g:
            # Neuron reported nothing and gpu nothing to infer from: unknown, not 0 (after a fallback
            # from a silent neuron, its silent minutes are older than the new share: read as 0 they
            # size gpu for no traffic, then fit a false growth trend when the traffic reappears).
            total: float | None = None
        elif (n and g) or since is None or start < since:
            total = (n or 0.0) + (g or 0.0) if (n is not None or g is not None) else None
        elif g and gpu_share > 0:
            total = g / (gpu_share / 100.0)  # neuron silent: what it should have had
        elif n and neuron_share > 0:
            total = n / (neuron_share / 100.0)
        elif n is None and g is None:
            total = None
        else:
            total = (n or 0.0) + (g or 0.0)
        out.append((start, total))
    return out


def reported_horizon(observation: Observation) -> datetime | None:
    """The newest minute start any variant has a row for: CloudWatch has reported up to there."""
    starts = [m.start for rows in observation.minutes.values() for m in rows if m.has_data]
    return max(starts) if starts else None


def data_lag(observation: Observation, previous_newest: datetime | None, previous_lag: float) -> float:
    """How late minutes arrive, in minutes, measured when a new minute shows up.

    While no new minute arrives the last measured lag stands: a stall is then seen as silence after
    that lag (so an outage is still caught), while data that is merely late is waited for.
    """
    newest = reported_horizon(observation)
    if newest is None or (previous_newest is not None and newest <= previous_newest):
        return previous_lag
    end = observation.window_end.replace(second=0, microsecond=0)
    return max(0.0, (end - (newest + MINUTE)).total_seconds() / 60.0)


def silence_of(observation: Observation, since: datetime | None, neuron_share: float, gpu_share: float,
               last_rps: float, lag_minutes: float = 0.0) -> Silence:
    """The run of newest judged minutes in which neuron served nothing, and what it should have served.

    Expected traffic per minute comes from the gpu side on the same minute (gpu invocations / gpu
    share): if gpu is quiet too, little was expected. When gpu has no weight it cannot tell; the last
    known total stands in, and two silent minutes are needed (one missing datapoint is not an outage).
    Minutes are counted from the clock, not from the rows, so a missing row is still a silent minute,
    except the newest minutes CloudWatch has not reported yet: up to the measured lag (lag_minutes),
    a minute no variant reported is late, not silent (late data delays the verdict by its lateness).
    """
    if neuron_share <= 0 or since is None:
        return Silence(0, 0.0, 0.0, 1)
    first = ceil_minute(since)
    clock_end = observation.window_end.replace(second=0, microsecond=0)
    horizon = reported_horizon(observation)
    awaited = clock_end - MINUTE * math.ceil(lag_minutes - 1e-9)
    end = min(clock_end, max(awaited, horizon + MINUTE)) if horizon is not None else awaited
    count = max(0, int((end - first).total_seconds() // 60))
    n_by = {m.start: m for m in observation.minutes.get(NEURON, ())}
    g_by = {m.start: m for m in observation.minutes.get(GPU, ())}
    silent, expected, served = 0, 0.0, 0.0
    for i in range(count):
        start = end - MINUTE * (i + 1)
        invocations = n_by[start].invocations if start in n_by else None
        if invocations:
            served = invocations
            break
        silent += 1
        if gpu_share > 0:
            gpu = g_by[start].invocations if start in g_by else None
            expected += (gpu or 0.0) / (gpu_share / 100.0) * neuron_share / 100.0
        else:
            expected += last_rps * 60.0 * neuron_share / 100.0
    return Silence(silent, expected, served, 1 if gpu_share > 0 else 2, judged_minutes=count)


def measure(config: HybridConfig, state: ControllerState, endpoint: EndpointLive, observation: Observation,
            prices: Mapping[str, float]) -> Measurement:
    neuron_share = endpoint.share(NEURON) if NEURON in endpoint.variants else 0.0
    gpu_share = 100.0 - neuron_share
    since = state.memory.live_since
    count = endpoint.counts().get(NEURON, 0)
    # Only where an overflow can answer them (ramping, holding); elsewhere (paused) they stay breaches.
    can_overflow = state.phase in (Phase.RAMPING, Phase.HOLDING)
    saturated = saturated_minutes(config, observation.minutes.get(NEURON, ()), count) if can_overflow else frozenset()
    # A minute neuron served past its saturation level is evidence of load, not of a fault: the
    # gates judge the other minutes; the saturated ones are answered with capacity (overflow).
    step = _without(window_from(observation.minutes, ceil_minute(since) if since else None), saturated)
    # Breaches are looked for from the minute in which the reset happened, not the next one: a
    # re-ramp's first minute is neuron's own requests at the new share (a few seconds at the old
    # one, which was 0 after a cool-down), and a fault still active shows there first (re-ramp
    # into latency-regression: decided a minute later with that minute left out). Steps still
    # pass only on whole minutes at their share (`step`, from the next minute).
    reset = state.memory.breach_since
    reset_minute = reset.replace(second=0, microsecond=0) if reset else None
    recent = _without(window_from(observation.minutes, reset_minute), saturated)
    totals = _minute_totals(observation.minutes, neuron_share, gpu_share, ceil_minute(since) if since else None)
    known = [t for _, t in totals if t is not None]
    last_rps = float(state.memory.total_rps or 0.0)
    total_rps = known[-1] / 60.0 if known else None
    sizing_rps = max(known[-3:]) / 60.0 if known else last_rps
    lead = state.memory.scale_up_minutes if state.memory.scale_up_minutes is not None else DEFAULT_SCALE_UP_MINUTES
    # Capacity ahead of traffic: plan for where the trend takes the traffic by the time a scale-up lands.
    sizing_rps = max(sizing_rps, forecast_rps(known, lead))

    lag = data_lag(observation, state.memory.newest_minute, state.memory.data_lag_minutes)
    # Silence waits the lag measured BEFORE this tick: a stall that starts now must not teach the lag
    # that excuses it (the new lag applies from the next tick).
    silence = silence_of(observation, since, neuron_share, gpu_share, last_rps, state.memory.data_lag_minutes)
    horizon = reported_horizon(observation)
    previous = state.memory.newest_minute
    silence = replace(silence, fresh=horizon is not None and (previous is None or horizon > previous))
    if silence.minutes and neuron_share > 0:
        # A silent neuron makes the newest totals read 0: size (e.g. the gpu taking over) on what was known.
        sizing_rps = max(sizing_rps, last_rps)

    counts = endpoint.counts()
    observed: dict[str, float | None] = {}
    projected: dict[str, float | None] = {}
    minutes = step if (step.neuron or step.gpu) else window_from(observation.minutes, None)
    for variant in (NEURON, GPU):
        vc = config.variant(variant)
        live = endpoint.variants.get(variant)
        instance_type = live.instance_type if live else vc.instance_type
        price = prices.get(instance_type, prices.get(vc.instance_type))
        if price is None:
            observed[variant] = projected[variant] = None
            continue
        items = minutes.neuron if variant == NEURON else minutes.gpu
        per_minute = sum(m.invocations or 0.0 for m in items) / len(items) if items else 0.0
        observed[variant] = cost_per_1k(counts.get(variant, 0), price, per_minute)
        rps = total_rps if total_rps else vc.capacity_rps_per_instance  # idle endpoint: cost at capacity
        fleet = max(1, math.ceil(rps / vc.capacity_rps_per_instance - 1e-9))
        projected[variant] = cost_per_1k(fleet, price, rps * 60.0)
    totals, counted = _step_totals(state, step, observation, neuron_share, gpu_share)
    return Measurement(neuron_share, gpu_share, step, recent, totals, total_rps, sizing_rps, silence, observed,
                       projected, counted, lag, reported_horizon(observation) or state.memory.newest_minute,
                       _newest_saturated(config, observation, saturated, reset_minute))


def minute_load(config: HybridConfig, minute: MinuteMetrics, count: int) -> float | None:
    """Neuron's load per instance / its capacity in a minute (InvocationsPerInstance, else over the count)."""
    if not minute.has_data or not minute.invocations:
        return None
    per_instance = (minute.invocations_per_instance if minute.invocations_per_instance is not None
                    else minute.invocations / max(count, 1))
    return per_instance / 60.0 / config.variants.neuron.capacity_rps_per_instance


def load_harmed(config: HybridConfig, minute: MinuteMetrics) -> bool:
    """The minute is over the SLO or the 5XX cap (what queueing and requests past capacity do)."""
    rate = minute.errors_5xx / minute.invocations if minute.invocations else 0.0
    slow = minute.latency_p99_ms is not None and minute.latency_p99_ms > config.slo.p99_latency_ms
    return slow or (rate > config.slo.max_error_rate and minute.errors_5xx >= MIN_ERRORS)


def saturated_minutes(config: HybridConfig, minutes: Sequence[MinuteMetrics], count: int) -> frozenset[datetime]:
    """Neuron minutes served past the saturation level AND harmed: load's doing, not a fault's.

    A saturated minute within the SLO stays evidence like any other (a fleet at its max count may
    run above the level for hours)."""
    level = config.holding.saturation_utilization
    return frozenset(m.start for m in minutes
                     if (minute_load(config, m, count) or 0.0) > level and load_harmed(config, m))


def _without(window: Window, starts: frozenset[datetime]) -> Window:
    if not starts:
        return window
    return Window(tuple(m for m in window.neuron if m.start not in starts),
                  tuple(m for m in window.gpu if m.start not in starts))


def _newest_saturated(config: HybridConfig, observation: Observation, saturated: frozenset[datetime],
                      since: datetime | None) -> tuple[MinuteMetrics, ...]:
    """The saturated neuron minutes among the newest NOISE_WINDOW with data (since the last action)."""
    rows = [m for m in observation.minutes.get(NEURON, ()) if m.has_data and m.invocations
            and (since is None or m.start >= since)][-NOISE_WINDOW:]
    return tuple(m for m in rows if m.start in saturated)


def forecast_rps(per_minute_totals: list[float], lead_minutes: float) -> float:
    """Traffic (req/s) lead_minutes ahead on the newest TREND_MINUTES' least-squares slope (growth only).

    Only a rising trend raises the plan: a falling one never sizes below the recent peak.
    """
    ys = per_minute_totals[-TREND_MINUTES:]
    if len(ys) < 3:
        return 0.0
    n = len(ys)
    mean_x, mean_y = (n - 1) / 2.0, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in range(n))
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(ys)) / var
    if slope <= 0:
        return 0.0
    # Only a real trend: minute-to-minute noise fits a small slope too, and planning on it scales
    # neuron for nothing (and an endpoint busy scaling cannot take a fallback's weights).
    intercept = mean_y - slope * mean_x
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in enumerate(ys)) / max(n - 2, 1)
    if slope * math.sqrt(var) < TREND_T * math.sqrt(residual):
        return 0.0
    return (ys[-1] + slope * lead_minutes) / 60.0


LEDGER_GRACE = 2  # minutes: a minute still missing a side this far behind the newest reported minute is final


def _step_totals(state: ControllerState, step: Window, observation: Observation, neuron_share: float,
                 gpu_share: float) -> tuple[StepTotals, tuple[datetime, ...]]:
    """The step's running totals plus every minute not yet counted, whenever it arrived (the ledger).

    A minute is counted once, when it is complete: every variant with weight has reported it, or
    it is LEDGER_GRACE minutes behind the newest reported minute (a side that reports nothing by
    then is silent, not late; silence is judged by the data gate). The ledger (the counted minute
    starts) keeps only minutes still inside the metrics window: older ones cannot come back.
    """
    memory = state.memory
    same_step = memory.totals_since == memory.live_since
    prior = (memory.step_totals or StepTotals()) if same_step else StepTotals()
    ledger = tuple(m for m in memory.counted_minutes if m >= observation.window_start) if same_step else ()
    if not observation.known:
        return prior, ledger
    horizon = reported_horizon(observation)
    n_by = {m.start: m for m in step.neuron if m.has_data}
    g_by = {m.start: m for m in step.gpu if m.has_data}
    counted = set(ledger)
    fresh: list[datetime] = []
    for start in sorted(set(n_by) | set(g_by)):
        if start in counted:
            continue
        complete = (start in n_by or neuron_share <= 0) and (start in g_by or gpu_share <= 0)
        final = horizon is not None and start <= horizon - MINUTE * LEDGER_GRACE
        if complete or final:
            fresh.append(start)
    keep = set(fresh)
    totals = prior.add([m for m in step.neuron if m.start in keep], [m for m in step.gpu if m.start in keep])
    return totals, tuple(sorted(counted | keep))


# ------------------------------------------------------------------------------------------------
# The tick context and decision builders


@dataclass(frozen=True)
class Moved:
    """A handler's answer when the phase changed immediately: the tick goes on in the new phase."""

    state: ControllerState


@dataclass(frozen=True)
class Tick:
    config: HybridConfig
    state: ControllerState
    endpoint: EndpointLive
    observation: Observation
    now: datetime
    measured: Measurement
    assessed: Assessment

    @property
    def live(self) -> float:
        return self.measured.neuron_share

    def step_label(self, step: int | None = None) -> str:
        k = self.state.step if step is None else step
        return f"step {k + 1}/{len(self.state.steps)}"


def _decision(t: Tick, state: ControllerState, action: Action, reason: str, target: Target | None = None,
              extra_stats: Mapping[str, Any] | None = None) -> Decision:
    return Decision(state=state, action=action, reason=reason, target=target, gates=t.assessed.gates,
                    cost_per_1k=dict(t.measured.cost_per_1k), statistics=dict(extra_stats or {}))


def evidence(a: Assessment, cfg: HybridConfig) -> str:
    """The numbers behind a verdict, in one clause each (latency; errors; sample; cost)."""
    parts: list[str] = []
    slo, reg = a.gate(Gate.LATENCY_SLO), a.gate(Gate.LATENCY_REGRESSION)
    if slo is not None and slo.value is not None:
        text = f"neuron p99 {fmt_ms(slo.value)} {'<=' if slo.passed else 'vs'} {cfg.slo.p99_latency_ms:g} ms"
        if reg is not None and reg.threshold is not None:
            gpu = a.statistics.get("gpu_p99_ms")
            text += f" and {'<=' if reg.passed else 'vs'} {1 + cfg.slo.max_regression:g} x gpu {fmt_ms(gpu)}"
        parts.append(text)
    for name in (Gate.ERRORS, Gate.SAMPLE):
        gate = a.gate(name)
        if gate is not None:
            parts.append(gate.detail)
    cost = a.gate(Gate.COST)
    if cost is not None and cost.value is not None:
        parts.append(f"{fmt_cost(cost.value)} vs {fmt_cost(cost.threshold)} per 1K")
    return "; ".join(parts)


# Breaches where neuron still answers (slow, or failing a minority of requests): gpu takes what its
# in-service instances carry now and the rest as its new instances come (a capacity-aware drain).
# Pushing everything onto a warm gpu floor sized for a small share fails the excess and queues the
# rest: worse than a neuron that still serves most requests. Silence, lost metrics, or a neuron
# failing ESCALATE_ERROR_RATE of its requests or more: everything to gpu at once, whatever it carries.
# Parity (issue 17): wrong answers on a share beat 5XX for everyone on a small gpu.
GRADUAL_GATES = frozenset({Gate.LATENCY_SLO, Gate.LATENCY_REGRESSION, Gate.ERRORS, Gate.PARITY})
ESCALATE_ERROR_RATE = 0.5  # neuron 5XX rate at or above which an overloaded gpu fails fewer requests


def neuron_error_rate(t: Tick) -> float:
    """Neuron's 5XX rate in its newest judged minute with requests (0 without): what it does now."""
    rows = [m for m in t.measured.recent.neuron if m.has_data and m.invocations]
    return rows[-1].errors_5xx / (rows[-1].invocations or 1.0) if rows else 0.0


def drains_gradually(t: Tick, breaches: tuple[GateResult, ...] | list[GateResult]) -> bool:
    """A capacity-aware drain (see GRADUAL_GATES) or everything to gpu now."""
    return all(g.name in GRADUAL_GATES for g in breaches) and neuron_error_rate(t) < ESCALATE_ERROR_RATE


def _gpu_carry_share(t: Tick) -> float:
    """Share of the traffic gpu's IN-SERVICE instances carry at the saturation level (never below its live share).

    At the level, not at 100% of capacity: a gpu fleet run at its edge queues, and its requests go
    over the SLO (measured on error-burst: 1,100 a minute from one gpu instance at rho 1).
    """
    total = t.measured.sizing_rps
    gpu_live = 100.0 - t.live
    if total <= 0:
        return 100.0
    capacity = (t.endpoint.variants[GPU].current_instance_count * t.config.variants.gpu.capacity_rps_per_instance
                * saturation_level(t.config))
    return min(100.0, max(gpu_live, math.floor(1000.0 * capacity / total) / 10.0))


def _fallback_target(t: Tick, gradual: bool = False) -> Target:
    """Weight to gpu; gpu sized for the whole traffic with headroom; never shrinking anything.

    gradual (neuron is slow or fails a minority of requests, but answers): gpu takes now what its
    in-service instances carry within capacity, and more each tick as its new instances come into
    service. Pushing all traffic onto a gpu fleet sized for a small share turns slow answers into 5XX
    for everyone (measured in the demo: 117 -> 16,647 errors). Silence, or neuron failing half its
    requests or more: 100% now.
    """
    asked = _asked_counts(t.endpoint)
    gpu = max(gpu_needed(t.config, 100.0, t.measured.sizing_rps), asked.get(GPU, 0))
    counts = _bounded_counts(t.config, {NEURON: asked.get(NEURON, t.config.variants.neuron.min_count), GPU: gpu})
    neuron_share = 100.0 - _gpu_carry_share(t) if gradual else 0.0
    return Target(weights=_weights(neuron_share), instance_counts=counts)


def _gpu_text(target: Target) -> str:
    share = target.weights[GPU]
    how = "100%" if share >= 100.0 else f"{_pct(round(share, 1))} now (what its live instances carry), the rest as they come"
    return f"gpu takes {how} on {target.instance_counts[GPU]} instances"


def fall_back(t: Tick, why: str, gradual: bool = False) -> Decision:
    """Breach: gpu takes everything in this tick (or all it can carry, for latency); then cool down or abort."""
    fallbacks = t.state.fallbacks + 1
    limit = t.config.fallback.max_fallbacks
    target = _fallback_target(t, gradual)
    common = dict(fallbacks=fallbacks, step_started_at=None, last_change_at=t.now, phase_since=t.now,
                  unknown_ticks=0, good_minutes=0, paused_phase=None)
    memory = replace(t.state.memory, last_fallback_cause=why.split("; ")[0], breach_since=t.now,
                     fallback_gradual=gradual)
    if fallbacks >= limit:
        target = _fallback_target(t, False)  # aborting: nothing stays on neuron
        memory = replace(memory, fallback_gradual=False)
        state = transition(t.state, Event.BREACH_LIMIT, cooldown_until=None, memory=memory, **common)
        reason = f"fallback {fallbacks}/{limit}: {why}; {_gpu_text(target)}; aborted"
    else:
        until = t.now + cooldown_for(t.config, fallbacks)
        state = transition(t.state, Event.BREACH, cooldown_until=until, memory=memory, **common)
        minutes = cooldown_for(t.config, fallbacks).total_seconds() / 60
        reason = f"fallback {fallbacks}/{limit}: {why}; {_gpu_text(target)}; re-ramp after a {minutes:g} min cool-down"
    stats = {"sizing_rps": t.measured.sizing_rps, "gpu_in_service": t.endpoint.variants[GPU].current_instance_count,
             "gradual": memory.fallback_gradual}
    return _decision(t, state, Action.FALLBACK, reason, target, stats)


def shift(t: Tick, state: ControllerState, goal: float, action: Action, why: str, detail: str = "",
          plan_share: float | None = None) -> Decision:
    """Move the neuron share to goal, capacity first.

    If neuron lacks the instances for the new share: SCALE (counts up, weights unchanged), and the
    shift happens on a later tick once the endpoint is InService with them. Moving share TO gpu
    never waits (it is the safe side, and gpu keeps its warm minimum). The gpu (donor) shrinks one
    step late: to what it needs for the share it carried during the step just baked (100 - live),
    with the fallback headroom, never below min_count.
    """
    rps = t.measured.sizing_rps
    asked = _asked_counts(t.endpoint)
    live_counts = t.endpoint.counts()
    # A ramp sizes neuron as target tracking will: a step sized below the autoscaling target is
    # scaled out by it minutes later anyway, at a moment nobody chose (a fallback decided in the
    # minute after an error burst waited 7 minutes for such a scale-out: error-burst, seed 13).
    need_n = neuron_needed(t.config, goal, rps, autoscaler=plan_share is not None)
    counts = dict(asked)
    counts[NEURON] = max(asked.get(NEURON, 0), need_n)
    stats = {"goal_share": goal, "neuron_needed": need_n, "sizing_rps": rps}
    if goal > t.live and live_counts.get(NEURON, 0) < need_n:
        have = live_counts.get(NEURON, 0)
        if asked.get(NEURON, 0) >= need_n:
            reason = (f"{why}: waiting for neuron capacity before {_pct(goal)} "
                      f"({have} of {need_n} instances in service for {rps:.1f} req/s)")
            return _decision(t, state, Action.HOLD, reason, None, stats)
        # One scale-up for the rest of the ramp: every scaling activity holds the endpoint in Updating
        # for the whole instance start (5-8 min for inf2), when SageMaker takes no weight change and
        # no fallback. Asked step by step, a high-traffic ramp waited for three or four of them
        # (steady-high: 4 x ~7 min); asked once for the share the ramp ends at, sized as target
        # tracking will want it there, it waits for one.
        if plan_share is not None and plan_share > goal:
            counts[NEURON] = max(counts[NEURON], neuron_needed(t.config, plan_share, rps, autoscaler=True))
        target = Target(weights=_weights(t.live), instance_counts=_bounded_counts(t.config, counts))
        reason = (f"{why}: scaling neuron {have} -> {target.instance_counts[NEURON]} instances before moving to "
                  f"{_pct(goal)}, enough for {_pct(plan_share if plan_share is not None else goal)} "
                  f"({rps:.1f} req/s; {t.config.variants.neuron.capacity_rps_per_instance:g} per instance)")
        return _decision(t, state, Action.SCALE, reason, target, stats)
    if goal < t.live:
        counts[GPU] = max(asked.get(GPU, 0), gpu_needed(t.config, 100.0 - goal, rps))
        gpu_cap = t.config.variants.gpu.capacity_rps_per_instance
        carry = instances_for((100.0 - goal) / 100.0 * rps, gpu_cap, 1, t.config.variants.gpu.max_count)
        if live_counts.get(GPU, 0) < carry:
            # Not a breach (those fall back without waiting): gpu gets the capacity first, then the share,
            # so a step back never overloads a gpu fleet sized for its old share.
            stats["gpu_needed"] = carry
            if asked.get(GPU, 0) >= counts[GPU]:
                return _decision(t, state, Action.HOLD, f"{why}: waiting for gpu capacity before {_pct(goal)} "
                                 f"({live_counts.get(GPU, 0)} of {carry} instances in service for {rps:.1f} req/s)",
                                 None, stats)
            target = Target(weights=_weights(t.live), instance_counts=_bounded_counts(t.config, counts))
            return _decision(t, state, Action.SCALE, f"{why}: scaling gpu {live_counts.get(GPU, 0)} -> "
                             f"{target.instance_counts[GPU]} instances before moving to {_pct(goal)}", target, stats)
    else:
        counts[GPU] = min(asked.get(GPU, 0), gpu_needed(t.config, 100.0 - t.live, rps))
    target = Target(weights=_weights(goal), instance_counts=_bounded_counts(t.config, counts))
    new_state = state.evolve(last_change_at=t.now, step_started_at=None, good_minutes=0)
    reason = f"{why} -> {_pct(goal)}" + (f": {detail}" if detail else "")
    return _decision(t, new_state, action, reason, target, stats)


# ------------------------------------------------------------------------------------------------
# 4. Safety first


def guard(t: Tick) -> Decision | None:
    """Fall back on a breach or after too many unknown ticks; hold on an unknown tick. None: carry on."""
    state = t.state
    if state.phase == Phase.FALLING_BACK:
        return _escalate(t)
    if not t.observation.known:
        unknown = state.unknown_ticks + 1
        limit = t.config.fallback.max_unknown_ticks
        if t.live > 0 and unknown >= limit:
            return fall_back(replace(t, state=state.evolve(unknown_ticks=unknown)),
                             f"no metrics for {unknown} ticks ({t.observation.error})")
        reason = f"metrics unavailable ({t.observation.error}): holding, unknown tick {unknown}/{limit}"
        return _decision(t, state.evolve(unknown_ticks=unknown), Action.HOLD, reason)
    if t.live > 0 and t.assessed.breaches:
        why = "; ".join(f"{g.name} failed: {g.detail}" for g in t.assessed.breaches)
        return fall_back(t, why, gradual=drains_gradually(t, t.assessed.breaches))
    insure = _gpu_ahead_of_silence(t)
    if insure is not None:
        return insure
    harmed = _saturation_harm(t)
    if t.live > 0 and harmed and state.phase in (Phase.RAMPING, Phase.HOLDING):
        return overflow(t, _phase_goal(t), neuron_load(t), harmed)
    return None


def _gpu_ahead_of_silence(t: Tick) -> Decision | None:
    """Capacity before traffic for a fallback that silence may force: gpu scales, weights stay.

    When gpu carries no traffic it cannot vouch for the minute, so one silent neuron minute is
    either a CloudWatch minute that is late or the start of an outage, and the fallback waits for
    the second (Silence.min_minutes). The gpu scale-up (minutes) is asked on the first: if the
    second minute confirms the outage, the fallback's traffic lands on gpu instances already
    starting; if the minute was late, holding sheds them again (the insurance costs a few
    instance-minutes). Measured on neuron-outage: about one minute of all traffic failing saved.
    """
    silence = t.measured.silence
    if (t.live <= 0 or t.state.phase not in (Phase.RAMPING, Phase.HOLDING) or silence.minutes < 1
            or silence.minutes >= silence.min_minutes
            or silence.expected < t.config.fallback.expected_invocations_for_silence):
        return None
    asked = _asked_counts(t.endpoint).get(GPU, 0)
    need = gpu_needed(t.config, 100.0, t.measured.sizing_rps)
    if asked >= need:
        return None
    target = _with_count(t, GPU, need)
    reason = (f"neuron silent for {silence.minutes} min with {fmt_int(silence.expected)} requests expected "
              f"(an outage if the next minute is silent too; a late CloudWatch minute looks the same for one): "
              f"gpu {asked} -> {target.instance_counts[GPU]} instances ahead of a fallback, weights unchanged")
    return _decision(t, t.state, Action.SCALE, reason, target, {"sizing_rps": t.measured.sizing_rps})


def _saturation_harm(t: Tick) -> str:
    """The newest neuron minute load harmed (see saturated_minutes), in words ('' when none)."""
    if not t.measured.saturated:
        return ""
    m = t.measured.saturated[-1]
    load = minute_load(t.config, m, t.endpoint.counts().get(NEURON, 0)) or 0.0
    rate = m.errors_5xx / m.invocations if m.invocations else 0.0
    return (f"neuron at {load:.0%} of its capacity per instance: p99 {fmt_ms(m.latency_p99_ms)}, "
            f"5XX {rate:.1%} in the minute of {m.start:%H:%M}")


def saturation_level(config: HybridConfig) -> float:
    """Load / capacity above which neuron's latency and 5XX are load's doing: what it is sized for."""
    return config.holding.saturation_utilization


def neuron_load(t: Tick) -> float:
    """Neuron's load per instance / its capacity: the highest of the newest NOISE_WINDOW minutes with data."""
    count = t.endpoint.counts().get(NEURON, 0)
    rows = [m for m in t.observation.minutes.get(NEURON, ()) if m.has_data and m.invocations][-NOISE_WINDOW:]
    return max((minute_load(t.config, m, count) or 0.0 for m in rows), default=0.0)


def _phase_goal(t: Tick) -> float:
    if t.state.phase == Phase.HOLDING:
        return _holding_goal(t.state, t.config.canary.target_neuron_percent)
    steps = t.state.steps or tuple(t.config.canary.resolved_steps())
    return steps[min(t.state.step, len(steps) - 1)]


def overflow_share(t: Tick, load: float) -> float:
    """The neuron share its in-service instances carry at the saturation level; the rest is overflow.

    gpu takes the overflow up to what its in-service instances carry; when both fleets together are
    short (a surge above everything in service), gpu is filled and neuron keeps the rest.
    """
    cfg = t.config
    rps = t.measured.sizing_rps
    level = saturation_level(cfg)
    counts = t.endpoint.counts()
    n_cap = max(counts.get(NEURON, 0), 0) * cfg.variants.neuron.capacity_rps_per_instance
    g_cap = max(counts.get(GPU, 0), 0) * cfg.variants.gpu.capacity_rps_per_instance
    fill = 100.0 * n_cap * level / rps if rps > 0 else t.live
    if load > 0:
        fill = min(fill, t.live * level / load)  # what neuron carried, scaled to the level: the measured truth
    gpu_carry = 100.0 * g_cap / rps if rps > 0 else 100.0
    return math.floor(10.0 * max(0.0, min(t.live, max(fill, 100.0 - gpu_carry)))) / 10.0


def _overflowed(state: ControllerState, now: datetime) -> ControllerState:
    """Saturation acted on: the minutes before now are not judged again, neither for breaches
    (breach_since) nor in the step's totals (a fresh step from now: live_since)."""
    return state.remember(overflow=True, breach_since=now, live_since=now, step_totals=None, totals_since=None,
                          counted_minutes=())


def overflow(t: Tick, goal: float, load: float, why: str) -> Decision:
    """Saturation, not a fault: neuron keeps what it carries, gpu takes the overflow, neuron scales for goal.

    No fallback count, no cool-down, the phase stays: once neuron's new instances are in service the
    phase handler moves the share back to its goal (capacity first), within minutes of the surge.
    Minutes before this decision are not judged again (breach_since), as after a fallback.
    """
    cfg, state = t.config, t.state
    rps = t.measured.sizing_rps
    share = overflow_share(t, load)
    asked = _asked_counts(t.endpoint)
    counts = {NEURON: max(asked.get(NEURON, 0), neuron_needed(cfg, goal, rps)),
              GPU: max(asked.get(GPU, 0), gpu_needed(cfg, 100.0 - share, rps))}
    target = Target(weights=_weights(share), instance_counts=_bounded_counts(cfg, counts))
    stats = {"overflow": True, "neuron_load": round(load, 4), "saturation_level": saturation_level(cfg),
             "goal_share": goal, "sizing_rps": rps, "neuron_in_service": t.endpoint.counts().get(NEURON, 0)}
    if share >= t.live - SHARE_EPSILON and all(asked.get(v, 0) >= c for v, c in target.instance_counts.items()):
        # Everything in service already carries what it can and the capacity is asked for: wait for it.
        reason = (f"neuron saturated (load, not a fault): {why}; overflow at {_pct(round(t.live, 2))} on neuron, "
                  f"waiting for the {target.instance_counts[NEURON]} neuron and {target.instance_counts[GPU]} gpu "
                  f"instances asked for")
        return _decision(t, _overflowed(state, t.now), Action.HOLD, reason, None, stats)
    memory = _overflowed(state, t.now).memory
    new = state.evolve(last_change_at=t.now, step_started_at=None, good_minutes=0, memory=memory)
    reason = (f"neuron saturated (load, not a fault): {why}; gpu takes the overflow, neuron "
              f"{_pct(round(t.live, 2))} -> {_pct(share)}, neuron {asked.get(NEURON, 0)} -> "
              f"{target.instance_counts[NEURON]} instances for {_pct(goal)} of {rps:.1f} req/s, gpu "
              f"{target.instance_counts[GPU]}; back to {_pct(goal)} once they are in service")
    return _decision(t, new, Action.STEP_BACK, reason, target, stats)


def _escalate(t: Tick) -> Decision | None:
    """Falling back gradually: silence, lost metrics, or neuron failing ESCALATE_ERROR_RATE of its
    requests meanwhile send everything to gpu now.

    None: nothing new (the handler keeps draining). The fallback count and cool-down stay those of
    the fallback being drained.
    """
    state = t.state
    if t.live <= SHARE_EPSILON or not state.memory.fallback_gradual:
        return None
    if not t.observation.known:
        unknown = state.unknown_ticks + 1
        if unknown < t.config.fallback.max_unknown_ticks:
            return None
        why = f"no metrics for {unknown} ticks ({t.observation.error})"
    else:
        breaches = t.assessed.breaches
        if not breaches or drains_gradually(t, breaches):
            return None
        why = "; ".join(f"{g.name} failed: {g.detail}" for g in breaches)
        rate = neuron_error_rate(t)
        if rate >= ESCALATE_ERROR_RATE:
            why += f" (neuron fails {rate:.0%} of its requests)"
    target = _fallback_target(t)
    new = transition(state, Event.ESCALATE, memory=replace(state.memory, fallback_gradual=False))
    return _decision(t, new, Action.FALLBACK, f"falling back, escalated: {why}; {_gpu_text(target)}", target,
                     {"escalated": True})


# ------------------------------------------------------------------------------------------------
# 5. Phase handlers


def _not_in_service(t: Tick) -> Decision:
    reason = f"endpoint {t.endpoint.status}: holding at {_pct(round(t.live, 2))} until InService"
    if t.endpoint.failure_reason:
        reason += f" ({t.endpoint.failure_reason})"
    return _decision(t, t.state, Action.HOLD, reason)


def on_idle(t: Tick) -> Decision:
    return _decision(t, t.state, Action.NONE, f"no canary started; neuron at {_pct(round(t.live, 2))}")


STRONG_SAMPLE_MULTIPLE = 4  # a step that passed on 4x its sample...
STRONG_MARGIN = 0.8  # ...with neuron's p99 within 80% of both bars and 5XX at most half the cap skips a step


def strong_evidence(t: Tick) -> bool:
    """Step size follows the evidence: a step that passed far inside every bar on a big sample.

    The next step is skipped (never the last: the target share is always a step of its own), so a
    high-traffic ramp spends its bake on fewer, larger moves; a marginal pass moves one step.
    """
    cfg, stats = t.config, t.assessed.statistics
    # The evidence is the ramp's, not only this step's: every neuron minute since the ramp began
    # (a fresh ramp after a fallback starts over), so a ramp whose small steps each gathered a
    # small sample still earns bigger steps once together they are a big one.
    step_n = float(stats.get("neuron_invocations") or 0.0)
    ramp_n = sum(m.invocations or 0.0 for m in t.measured.recent.neuron if m.has_data)
    if max(step_n, ramp_n) < STRONG_SAMPLE_MULTIPLE * cfg.canary.min_sample:
        return False
    p99 = stats.get("neuron_p99_ms")
    if p99 is None or p99 > STRONG_MARGIN * cfg.slo.p99_latency_ms:
        return False
    paired, gpu = stats.get("paired_neuron_p99_ms"), stats.get("gpu_p99_ms")
    if paired is not None and gpu is not None and paired > STRONG_MARGIN * (1.0 + cfg.slo.max_regression) * gpu:
        return False
    errors = t.measured.totals.summary(True)
    return errors.invocations > 0 and errors.errors_5xx / errors.invocations <= cfg.slo.max_error_rate / 2.0


def on_ramping(t: Tick) -> Decision:
    state, cfg = t.state, t.config
    steps = state.steps or tuple(cfg.canary.resolved_steps())
    state = state.evolve(steps=steps)
    k = min(state.step, len(steps) - 1)
    goal = steps[k]
    label = t.step_label(k)
    if not t.endpoint.in_service:
        return _not_in_service(t)
    if abs(t.live - goal) > SHARE_EPSILON:
        return shift(t, state, goal, Action.PROGRESS, label, plan_share=steps[-1])
    if state.memory.overflow:
        state = state.remember(overflow=False)
    ahead = scale_ahead(t, state, f"{label} at {_pct(goal)}")
    if ahead is not None:
        return ahead
    if state.step_started_at is None:
        since = state.memory.live_since or t.now
        state = state.evolve(step_started_at=since)
    baked = _minutes_between(state.step_started_at, t.now)
    stats = {"baked_minutes": baked, "min_bake_minutes": cfg.canary.min_bake_minutes,
             "max_bake_minutes": cfg.canary.max_bake_minutes}
    sample = t.assessed.gate(Gate.SAMPLE)
    cost = t.assessed.gate(Gate.COST)
    if t.assessed.step_passes and baked >= cfg.canary.min_bake_minutes:
        if k + 1 >= len(steps):
            new = transition(state, Event.RAMP_DONE, phase_since=t.now, good_minutes=0).remember(holding_share=goal)
            return _decision(t, new, Action.HOLD,
                             f"{label} at {_pct(goal)} passed, ramp complete, holding: {evidence(t.assessed, cfg)}", None, stats)
        jump = 2 if strong_evidence(t) and k + 2 < len(steps) - 1 else 1
        nxt = state.evolve(step=k + jump)
        how = f" with strong evidence, skipping {_pct(steps[k + 1])}" if jump > 1 else ""
        return shift(t, nxt, steps[k + jump], Action.PROGRESS, t.step_label(k + jump),
                     f"{label} passed after {baked:.0f} min{how}: {evidence(t.assessed, cfg)}", plan_share=steps[-1])
    if cost is not None and cost.passed is False:
        return _decision(t, state, Action.HOLD, f"{label} at {_pct(goal)}: holding, {cost.detail}", None, stats)
    waiting = [g for g in t.assessed.gates if g.passed is not True]
    if sample is not None and sample.passed is None:
        waiting = [sample]  # the other gates are inconclusive for the same reason: too few requests
    if baked >= cfg.canary.max_bake_minutes:
        short = "not enough sample" if sample is not None and sample.passed is None else "gates inconclusive"
        reason = (f"{label} at {_pct(goal)}: max bake {cfg.canary.max_bake_minutes} min reached with {short} "
                  f"({'; '.join(g.detail for g in waiting)}); holding until it arrives (this does not fail); "
                  f"promote or abort to decide now")
        return _decision(t, state, Action.HOLD, reason, None, stats)
    if not waiting:
        reason = (f"{label} at {_pct(goal)}: baking {baked:.0f} of {cfg.canary.min_bake_minutes} min; "
                  f"{evidence(t.assessed, cfg)}")
    else:
        reason = f"{label} at {_pct(goal)}: baking {baked:.0f} min, waiting for {'; '.join(g.detail for g in waiting)}"
    return _decision(t, state, Action.HOLD, reason, None, stats)


def _holding_minutes(t: Tick) -> list[tuple[MinuteMetrics, float | None]]:
    """Neuron minutes with data since the last change, with load per instance per second."""
    count = max(t.endpoint.counts().get(NEURON, 0), 1)
    out = []
    for m in t.measured.step.neuron:
        if not m.has_data:
            continue
        per_instance = m.invocations_per_instance if m.invocations_per_instance is not None else (m.invocations or 0) / count
        out.append((m, per_instance / 60.0))
    return out


@dataclass(frozen=True)
class Health:
    slow: bool  # neuron p99 above DEGRADE_FRACTION of the SLO (noise rule)
    saturated: bool  # neuron load per instance above the saturation level (noise rule)
    good: int  # trailing clean minutes
    detail: str

    @property
    def degraded(self) -> bool:
        return self.slow or self.saturated


def holding_health(t: Tick) -> Health:
    """How the holding split is doing, with hysteresis bands."""
    cfg = t.config
    slo = cfg.slo.p99_latency_ms
    cap = cfg.variants.neuron.capacity_rps_per_instance
    saturation = cfg.holding.saturation_utilization * cap
    rows = _holding_minutes(t)
    with_p99 = [m for m, _ in rows if m.latency_p99_ms is not None]
    # A burst in the tail (p90 unmoved) is noise here too: see gates.corroborated.
    latency_points = judged_points(with_p99, [DEGRADE_FRACTION * slo] * len(with_p99), tail_ratio(with_p99))
    load_points = [(load, saturation, 1.0) for _, load in rows if load is not None]
    degraded_latency = confirmed_above(latency_points, 0)  # type: ignore[arg-type]
    saturated = confirmed_above(load_points, 0)  # type: ignore[arg-type]

    def clean(m: MinuteMetrics, load: float | None) -> bool:
        errors_ok = (m.errors_5xx / m.invocations) <= cfg.slo.max_error_rate if m.invocations else False
        return (m.latency_p99_ms is not None and m.latency_p99_ms <= RECOVER_FRACTION * slo and errors_ok
                and (load is None or load <= RECOVER_UTILIZATION * saturation))

    good = 0
    for m, load in reversed(rows):
        if not clean(m, load):
            break
        good += 1
    detail = []
    if degraded_latency:
        detail.append(f"neuron p99 above {DEGRADE_FRACTION:.0%} of {slo:g} ms in the last minutes")
    if saturated:
        last = rows[-1][1] if rows else 0.0
        detail.append(f"neuron saturated: {last:.1f} req/s per instance > {saturation:.1f} "
                      f"({cfg.holding.saturation_utilization:.0%} of {cap:g})")
    return Health(degraded_latency, saturated, good, "; ".join(detail))


def scale_ahead(t: Tick, state: ControllerState, where: str) -> Decision | None:
    """Capacity ahead of traffic: neuron scales for its live share of the planned traffic (trend x scale-up delay).

    Only up (never a scale-in here), counts only (weights unchanged), and only when nothing is asked yet.
    """
    asked = _asked_counts(t.endpoint).get(NEURON, 0)
    need = neuron_needed(t.config, t.live, t.measured.sizing_rps)
    if t.live <= 0 or asked >= need:
        return None
    target = _with_count(t, NEURON, need)
    if target.instance_counts[NEURON] <= asked:
        return None
    lead = state.memory.scale_up_minutes if state.memory.scale_up_minutes is not None else DEFAULT_SCALE_UP_MINUTES
    reason = (f"{where}: scaling neuron {asked} -> {target.instance_counts[NEURON]} instances ahead of the traffic "
              f"({t.measured.sizing_rps:.1f} req/s planned {lead:g} min ahead on the trend)")
    return _decision(t, state, Action.SCALE, reason, target, {"sizing_rps": t.measured.sizing_rps})


def shrink_donor(t: Tick, state: ControllerState, goal: float, dwell_ok: bool) -> Decision | None:
    """Holding: once the split has been stable for the dwell, gpu sheds what its share no longer needs."""
    asked = _asked_counts(t.endpoint).get(GPU, 0)
    needed = gpu_needed(t.config, 100.0 - goal, t.measured.sizing_rps)
    if not dwell_ok or asked <= needed:
        return None
    target = _with_count(t, GPU, needed)
    reason = (f"holding at {_pct(goal)}: gpu {asked} -> {target.instance_counts[GPU]} instances for its "
              f"{_pct(round(100.0 - goal, 2))} share of {t.measured.sizing_rps:.1f} req/s (warm minimum "
              f"{t.config.variants.gpu.min_count})")
    return _decision(t, state, Action.SCALE, reason, target)


def on_holding(t: Tick) -> Decision:
    cfg, state = t.config, t.state
    target_share = cfg.canary.target_neuron_percent
    goal = _holding_goal(state, target_share)
    if not t.endpoint.in_service:
        return _not_in_service(t)
    if abs(t.live - goal) > SHARE_EPSILON:
        action = Action.RETURN if goal > t.live else Action.STEP_BACK
        why = "holding: the surge's overflow returns" if state.memory.overflow else "holding: moving"
        return shift(t, state, goal, action, f"{why} to {_pct(goal)}")
    if state.memory.overflow:
        state = state.remember(overflow=False)
    if not cfg.holding.enabled:  # the split stays put; the breach guard still applies
        return _decision(t, state, Action.HOLD, f"holding at {_pct(goal)} (holding.enabled is false: no step back "
                         f"or return): {evidence(t.assessed, cfg)}")
    health = holding_health(t)
    good, detail = health.good, health.detail
    state = state.evolve(good_minutes=good)
    load = neuron_load(t)
    if health.degraded and load > saturation_level(cfg) and t.live > 0 \
            and overflow_share(t, load) < t.live - SHARE_EPSILON:
        # Slow or saturated because of load: the overflow goes to gpu for as long as it lasts (no dwell).
        return overflow(replace(t, state=state), goal, load, detail)
    degraded = health.slow
    dwell = _minutes_between(state.last_change_at, t.now) if state.last_change_at else math.inf
    dwell_ok = dwell >= cfg.fallback.min_dwell_minutes
    stats = {"good_minutes": good, "dwell_minutes": None if math.isinf(dwell) else dwell,
             "min_dwell_minutes": cfg.fallback.min_dwell_minutes}
    if degraded and goal > 0:
        if not dwell_ok:
            return _decision(t, state, Action.HOLD, f"holding at {_pct(goal)}: {detail}; within the "
                             f"{cfg.fallback.min_dwell_minutes} min dwell since the last change, waiting", None, stats)
        new_goal = max(0.0, round(goal - cfg.holding.step_back_percent, 4))
        new_state = state.remember(holding_share=new_goal)
        return shift(t, new_state, new_goal, Action.STEP_BACK,
                     f"holding: {detail}; stepping back {_pct(cfg.holding.step_back_percent)}")
    ahead = scale_ahead(t, state, f"holding at {_pct(goal)}")
    if ahead is not None:
        return ahead
    shrink = shrink_donor(t, state, goal, dwell_ok)
    if shrink is not None:
        return shrink
    cost = t.assessed.gate(Gate.COST)
    cheaper = cost is not None and cost.passed is True
    if goal < target_share and dwell_ok and cheaper:
        no_evidence_possible = goal <= 0 and dwell >= cfg.holding.return_after_good_minutes
        if good >= cfg.holding.return_after_good_minutes or no_evidence_possible:
            new_goal = min(target_share, round(goal + cfg.holding.return_percent, 4))
            new_state = state.remember(holding_share=new_goal)
            basis = (f"{good} clean minutes" if good else f"{dwell:.0f} min without neuron traffic (probe)")
            return shift(t, new_state, new_goal, Action.RETURN,
                         f"holding: {basis} >= {cfg.holding.return_after_good_minutes}, returning "
                         f"{_pct(cfg.holding.return_percent)} to neuron")
    reason = f"holding at {_pct(goal)}: {evidence(t.assessed, cfg)}"
    if goal < target_share:
        reason += f"; {good}/{cfg.holding.return_after_good_minutes} clean minutes toward a return"
    return _decision(t, state, Action.HOLD, reason, None, stats)


def _reassert(t: Tick, action: Action, what: str, capacity: bool = False) -> Decision | None:
    """Level-triggered: if neuron still has live weight where it must have none, ask again.

    capacity: also while gpu has not been asked for the whole traffic. A fallback is staged
    (weights first, gpu capacity on a later request: routing/core/staging.py), so the gpu count
    must be asked again once the weights have landed; without it gpu waits for its autoscaler
    (3 minutes above target, then the scale-up) while its warm floor carries everything
    (measured on neuron-outage: gpu asked 4 minutes after the fallback, 3,600 bad requests a minute).
    """
    target = _fallback_target(t, t.state.memory.fallback_gradual and action == Action.FALLBACK)
    if t.live > SHARE_EPSILON:
        # Returned even while the endpoint updates: the controller applies it as soon as it can.
        return _decision(t, t.state, action, f"{what}: neuron still at {_pct(round(t.live, 2))}; {_gpu_text(target)}",
                         target)
    asked = _asked_counts(t.endpoint).get(GPU, 0)
    if capacity and asked < target.instance_counts[GPU]:
        return _decision(t, t.state, Action.SCALE,
                         f"{what}: neuron drained; gpu {asked} -> {target.instance_counts[GPU]} instances "
                         f"for the whole traffic ({t.measured.sizing_rps:.1f} req/s)", target)
    return None


def on_falling_back(t: Tick) -> Decision | Moved:
    again = _reassert(t, Action.FALLBACK, "falling back", capacity=True)
    if again is not None:
        return again
    # The cool-down counts from the moment neuron is drained (a gradual fallback drains over minutes).
    until = max(t.state.cooldown_until or t.now, t.now + cooldown_for(t.config, max(1, t.state.fallbacks)))
    return Moved(transition(t.state, Event.DRAINED, phase_since=t.now, cooldown_until=until))


def on_cooling_down(t: Tick) -> Decision | Moved:
    until = t.state.cooldown_until or t.now
    again = _reassert(t, Action.FALLBACK, "cooling down", capacity=t.now < until)
    if again is not None:
        return again
    if t.now < until or not t.observation.known:
        left = (until - t.now).total_seconds() / 60
        reason = (f"cooling down after fallback {t.state.fallbacks}/{t.config.fallback.max_fallbacks}: "
                  f"{left:.0f} min left ({t.state.memory.last_fallback_cause or 'breach'})")
        return _decision(t, t.state, Action.NONE, reason)
    # The re-ramp is judged on its own minutes only: the fault's minutes were acted on already.
    return Moved(transition(t.state, Event.COOLED, step=0, step_started_at=None, phase_since=t.now,
                            cooldown_until=None).remember(breach_since=t.now))


def on_paused(t: Tick) -> Decision:
    was = t.state.paused_phase.value if t.state.paused_phase else "unknown"
    return _decision(t, t.state, Action.NONE,
                     f"paused (was {was}) at neuron {_pct(round(t.live, 2))}; resume, promote or abort")


def on_aborted(t: Tick) -> Decision:
    again = _reassert(t, Action.ABORT, "aborted")
    if again is not None:
        return again
    return _decision(t, t.state, Action.NONE, "aborted: all traffic on gpu; `canary start` to try again")


HANDLERS: dict[Phase, Callable[[Tick], Decision | Moved]] = {
    Phase.IDLE: on_idle,
    Phase.RAMPING: on_ramping,
    Phase.HOLDING: on_holding,
    Phase.FALLING_BACK: on_falling_back,
    Phase.COOLING_DOWN: on_cooling_down,
    Phase.PAUSED: on_paused,
    Phase.ABORTED: on_aborted,
}


# ------------------------------------------------------------------------------------------------
# decide


def _finish(t: Tick, decision: Decision) -> Decision:
    memory = decision.state.memory
    # Silence is not evidence of no traffic: while neuron has weight and is silent, the last known
    # traffic stays the expectation (otherwise an outage at 100% neuron reads as "nothing expected").
    silent = t.measured.silence.minutes > 0 and t.measured.neuron_share > 0 and not t.measured.total_rps
    if t.measured.total_rps is not None and not silent:
        memory = replace(memory, total_rps=round(t.measured.total_rps, 4))
    if memory.live_since == t.state.memory.live_since:
        memory = replace(memory, step_totals=t.measured.totals, totals_since=memory.live_since,
                         counted_minutes=t.measured.counted)
    if t.observation.known:
        memory = replace(memory, data_lag_minutes=t.measured.data_lag, newest_minute=t.measured.newest_minute)
    memory = _measure_scale_up(memory, t.endpoint, t.now)
    known = t.observation.known
    state = decision.state.evolve(
        last_tick_at=t.now,
        last_window_end=t.observation.window_end if known else decision.state.last_window_end,
        unknown_ticks=0 if known else decision.state.unknown_ticks,
        memory=memory,
    )
    statistics = {
        **t.assessed.statistics,
        "neuron_share": round(t.measured.neuron_share, 4),
        "total_rps": t.measured.total_rps,
        "sizing_rps": t.measured.sizing_rps,
        "projected_cost_per_1k": t.measured.projected_cost_per_1k,
        "unknown_ticks": state.unknown_ticks,
        "percentiles_available": t.observation.percentiles_available,
        **decision.statistics,
    }
    return replace(decision, state=state, statistics=statistics)


def _measure_scale_up(memory: PolicyMemory, endpoint: EndpointLive, now: datetime) -> PolicyMemory:
    """Time neuron's scale-ups (asked -> in service): the lead time capacity is planned with."""
    live = endpoint.variants.get(NEURON)
    if live is None:
        return memory
    growing = live.desired_instance_count > live.current_instance_count
    if growing and memory.scale_asked_at is None:
        return replace(memory, scale_asked_at=now)
    if not growing and memory.scale_asked_at is not None:
        took = max(1.0, (now - memory.scale_asked_at).total_seconds() / 60.0)
        return replace(memory, scale_asked_at=None, scale_up_minutes=round(took, 2))
    return memory


def decide(config: HybridConfig, state: ControllerState, endpoint: EndpointLive, observation: Observation,
           now: datetime, prices: Mapping[str, float]) -> Decision:
    """One tick of the controller, pure. See the module docstring for the order of things."""
    state = track_live_share(state, endpoint, now)
    m = measure(config, state, endpoint, observation, prices)
    phase_for_gates = state.paused_phase if state.phase == Phase.PAUSED else state.phase
    a = assess(config, m.step, m.recent, m.totals, m.neuron_share, m.gpu_share, m.silence, m.projected_cost_per_1k,
               m.cost_per_1k, regression_is_breach=phase_for_gates != Phase.HOLDING,
               percentiles_available=observation.percentiles_available)
    t = Tick(config, state, endpoint, observation, now, m, a)
    decision = guard(t) if state.phase in GUARD_PHASES else None
    if decision is None:
        if not observation.known:  # nothing at risk in these phases; the handlers need no metrics
            t = replace(t, state=state.evolve(unknown_ticks=state.unknown_ticks + 1))
        decision = _run_handlers(t)
    return _finish(t, decision)


def _run_handlers(t: Tick) -> Decision:
    """The phase's handler decides; after an immediate transition (Moved) the new phase's handler
    decides in the same tick. The one place where phases follow each other within a tick."""
    for _ in range(len(Phase)):
        out = HANDLERS[t.state.phase](t)
        if isinstance(out, Decision):
            return out
        t = replace(t, state=out.state)
    raise RuntimeError(f"immediate transitions did not settle (last phase {t.state.phase.value})")


def __getattr__(name: str) -> Any:
    """`apply_command` and `COMMANDS` moved to routing/core/commands.py; still importable from here
    (lazily: commands imports this module)."""
    if name in ("apply_command", "COMMANDS"):
        from routing.core import commands
        return getattr(commands, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
