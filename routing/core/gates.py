"""The checks of a canary step, each a small pure function returning a model.GateResult.

A gate's verdict is three-valued: True (passed), None (inconclusive: not enough data, or not yet
confirmed: the step holds), False (failed: for the safety gates this means fall back now).
Every gate is judged on the SAME closed minutes for neuron and gpu (a concurrent baseline).

The noise rule (latency, saturation): a breach needs at least NOISE_BREACHES of the last
NOISE_WINDOW minutes with data above the threshold AND the sample-weighted aggregate of those
minutes above it, AND enough requests behind them. One noisy minute never decides.

The error rule: a breach needs at least MIN_ERRORS 5XX on neuron, a neuron 5XX rate above
slo.max_error_rate, AND a one-sided test significant at ALPHA: the two-proportion z-test against
gpu on the same minutes, or (when gpu served nothing) a one-proportion test against the cap.
So 1 error in 20 requests is never a rollback, and a gpu that fails just as much is no reason to
fall back to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from routing.core.model import Gate, GateResult, MinuteMetrics
from routing.core.parity_gate import assess_parity  # issue 17
from routing.core.stats import (
    ProportionTest,
    StepTotals,
    WindowSummary,
    one_proportion_z,
    pooled_p99,
    summarize,
    two_proportion_z,
)
from routing.core.variants import GPU, NEURON

if TYPE_CHECKING:  # the settings model is only read here (see docs/architecture.md)
    from toolkit.config import HybridConfig

ALPHA = 0.01  # one-sided significance for the error tests
MIN_ERRORS = 5  # neuron 5XX needed before an error breach can be called
NOISE_WINDOW = 3  # minutes looked at by the noise rule...
NOISE_BREACHES = 2  # ...of which this many must breach
MIN_BREACH_SAMPLES = 60  # neuron requests behind a latency breach (a p99 of fewer is one slow request)
MIN_BASELINE_SAMPLES = 30  # gpu requests in a minute for its p99 to serve as the baseline of that minute
BREACH_WINDOW = 5  # newest judged minutes in which an error burst is tested (a long step must not dilute it)
# Newest-minute windows looked at each tick, shortest first: an excess that started 2 minutes ago is
# diluted 3:2 in the 5-minute window (errors-over-cap: 1.5% against a 1% cap took 5-8 minutes to
# call). Each look is tested at ALPHA / len(BREACH_WINDOWS) (Bonferroni within the tick), so the
# tick's false-alarm rate stays ALPHA.
BREACH_WINDOWS = (2, BREACH_WINDOW)

STRONG_FACTOR = 1.3  # one minute 30% past the threshold in p99 AND p90 (a shifted distribution) decides alone
SUSTAINED_MINUTES = 5  # a tail above the threshold in every one of this many newest minutes is real, p90 or not

Point = tuple[float, float, float]  # (value, threshold, weight) for one minute


def tail_ratio(minutes: Sequence[MinuteMetrics]) -> float | None:
    """The variant's least-tailed p90/p99 ratio over the minutes that have both (None: no p90).

    A tail burst lowers a minute's ratio and a shift of the whole distribution keeps it, so the
    highest ratio in the window is the healthy shape's."""
    ratios = [m.latency_p90_ms / m.latency_p99_ms for m in minutes
              if m.latency_p90_ms is not None and m.latency_p99_ms and m.latency_p99_ms > 0]
    return max(ratios) if ratios else None


BURST_SPREAD = 2.0  # a minute whose p99 is more than twice its p90 is a burst in the tail, whatever came before


def tail_only(minute: MinuteMetrics) -> bool:
    p90, p99 = minute.latency_p90_ms, minute.latency_p99_ms
    return p90 is not None and p99 is not None and p99 > BURST_SPREAD * p90


def corroborated(minute: MinuteMetrics, threshold: float, ratio: float | None) -> bool:
    """Is a p99 above threshold a shift of the whole distribution (a fault, load) or a burst in the tail?

    A burst of a few percent slow requests moves the minute's p99 but not its p90; a regression or
    queueing moves both. So the minute counts when its p90 is above threshold x the usual p90/p99
    ratio too, and its p99 is not more than BURST_SPREAD x its p90. Without a p90 (or a usual
    ratio) the p99 speaks alone, as before.
    """
    p90 = minute.latency_p90_ms
    if p90 is None or ratio is None:
        return True
    return p90 > threshold * ratio and not tail_only(minute)


BURST_EXCUSE = 2.0  # a tail burst is excused against an absolute bar (the SLO) only while p99 stays within 2x it


def judged_points(minutes: Sequence[MinuteMetrics], thresholds: Sequence[float], ratio: float | None,
                  excuse_up_to: float | None = None) -> list[Point]:
    """Noise-rule points: a minute above its threshold only in the tail (p90 not moved) is capped at it.

    excuse_up_to: against an absolute bar, a tail burst whose p99 is past excuse_up_to x the
    threshold is not excused: that many requests that slow break the SLO whatever the p90 does.
    """
    out: list[Point] = []
    for m, threshold in zip(minutes, thresholds, strict=True):
        value = m.latency_p99_ms or 0.0
        severe = excuse_up_to is not None and value > excuse_up_to * threshold
        if value > threshold and not severe and not corroborated(m, threshold, ratio):
            value = threshold
        out.append((value, threshold, _weight(m)))
    return out


def strong_minute(minutes: Sequence[MinuteMetrics], thresholds: Sequence[float], p90_bars: Sequence[float | None],
                  min_weight: float) -> bool:
    """The newest minute alone is enough: a big sample whose p99 AND p90 are both STRONG_FACTOR past their bars.

    Sequential in spirit: a minute this far out carries the evidence of several marginal ones (per-minute
    jitter moves a healthy minute's p90 by a few percent, a tail burst does not move it at all), so
    the decision comes one CloudWatch period after the onset instead of two. Without a p90 (a stand-in,
    or not published) the noise rule decides.
    """
    if not minutes:
        return False
    m, threshold, bar = minutes[-1], thresholds[-1], p90_bars[-1]
    if bar is None or m.latency_p90_ms is None or m.latency_p99_ms is None or _weight(m) < min_weight \
            or tail_only(m):
        return False
    return m.latency_p99_ms > STRONG_FACTOR * threshold and m.latency_p90_ms > STRONG_FACTOR * bar


def sustained_above(points: Sequence[Point], min_weight: float) -> bool:
    """Every one of the newest SUSTAINED_MINUTES minutes above its threshold (a persistent tail)."""
    recent = list(points)[-SUSTAINED_MINUTES:]
    return (len(recent) == SUSTAINED_MINUTES and all(v > t for v, t, _ in recent)
            and sum(w for *_, w in recent) >= min_weight)


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def fmt_cost(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.3f}"


def confirmed_above(points: Sequence[Point], min_weight: float) -> bool:
    """The noise rule over the newest NOISE_WINDOW points (oldest first)."""
    recent = list(points)[-NOISE_WINDOW:]
    if sum(1 for value, threshold, _ in recent if value > threshold) < NOISE_BREACHES:
        return False
    weight = sum(w for *_, w in recent)
    if weight <= 0 or weight < min_weight:
        return False
    value = sum(v * w for v, _, w in recent) / weight
    threshold = sum(t * w for _, t, w in recent) / weight
    return value > threshold


def _weight(minute: MinuteMetrics) -> float:
    return minute.latency_samples if minute.latency_samples > 0 else (minute.invocations or 0.0)


@dataclass(frozen=True)
class Window:
    """The judged minutes of both variants, aligned by minute start (oldest first)."""

    neuron: tuple[MinuteMetrics, ...]
    gpu: tuple[MinuteMetrics, ...]

    def newest(self, count: int) -> Window:
        starts = sorted({m.start for m in (*self.neuron, *self.gpu)})[-count:] if count > 0 else []
        keep = set(starts)
        return Window(tuple(m for m in self.neuron if m.start in keep), tuple(m for m in self.gpu if m.start in keep))

    def pairs(self) -> list[tuple[MinuteMetrics, MinuteMetrics]]:
        by_start = {m.start: m for m in self.gpu}
        return [(m, by_start[m.start]) for m in self.neuron if m.start in by_start]

    def summary(self, variant: str) -> WindowSummary:
        return summarize(self.neuron if variant == NEURON else self.gpu)


def window_from(minutes: Mapping[str, Sequence[MinuteMetrics]], since: datetime | None) -> Window:
    def pick(variant: str) -> tuple[MinuteMetrics, ...]:
        items = sorted(minutes.get(variant, ()), key=lambda m: m.start)
        return tuple(m for m in items if since is None or m.start >= since)

    return Window(pick(NEURON), pick(GPU))


# ------------------------------------------------------------------------------------------------
# Gates


def sample_gate(neuron: WindowSummary, min_sample: int) -> GateResult:
    n = neuron.invocations
    if n >= min_sample:
        return GateResult(Gate.SAMPLE, True, n, min_sample, f"{fmt_int(n)} >= {fmt_int(min_sample)} samples")
    return GateResult(Gate.SAMPLE, None, n, min_sample, f"{fmt_int(n)} of {fmt_int(min_sample)} samples")


def latency_slo_gate(window: Window, totals: StepTotals, slo_ms: float, percentiles: bool = True) -> GateResult:
    """Neuron p99 within the SLO: the step's aggregate to pass; the noise rule on recent minutes to fail."""
    rows = [m for m in window.neuron if m.has_data and m.latency_p99_ms is not None]
    raw = [(m.latency_p99_ms, slo_ms, _weight(m)) for m in rows]
    ratio = tail_ratio(rows)
    points = judged_points(rows, [slo_ms] * len(rows), ratio, BURST_EXCUSE)
    aggregate = totals.neuron_p99
    strong = percentiles and strong_minute(rows, [slo_ms] * len(rows),
                                           [slo_ms * ratio if ratio else None] * len(rows), MIN_BREACH_SAMPLES)
    if strong or confirmed_above(points, MIN_BREACH_SAMPLES) or sustained_above(raw, MIN_BREACH_SAMPLES):  # type: ignore[arg-type]
        points = raw  # type: ignore[assignment]
        recent = ", ".join(f"{v:.0f}" for v, _, _ in points[-NOISE_WINDOW:])
        return GateResult(Gate.LATENCY_SLO, False, aggregate, slo_ms,
                          f"neuron p99 above the {slo_ms:g} ms SLO in the last minutes ({recent} ms)")
    if aggregate is None:
        return GateResult(Gate.LATENCY_SLO, None, None, slo_ms, "no neuron p99 yet")
    if aggregate <= slo_ms:
        return GateResult(Gate.LATENCY_SLO, True, aggregate, slo_ms, f"neuron p99 {fmt_ms(aggregate)} <= {slo_ms:g} ms")
    return GateResult(Gate.LATENCY_SLO, None, aggregate, slo_ms,
                      f"neuron p99 {fmt_ms(aggregate)} above {slo_ms:g} ms but not confirmed by {NOISE_BREACHES} of "
                      f"the last {NOISE_WINDOW} minutes")


def latency_regression_gate(window: Window, totals: StepTotals, max_regression: float,
                            gpu_share: float, percentiles: bool = True) -> GateResult:
    """Neuron p99 <= (1 + max_regression) x gpu p99 on the same minutes (step aggregate; noise rule to fail)."""
    factor = 1.0 + max_regression
    # A gpu minute is a baseline only with enough requests behind its p99: late in a ramp gpu serves
    # a few requests a minute, and their p99 is one request's latency (bench: false rollbacks).
    pairs = [(n, g) for n, g in window.pairs()
             if n.latency_p99_ms is not None and g.latency_p99_ms is not None and n.has_data and g.has_data
             and max(g.latency_samples, g.invocations or 0) >= MIN_BASELINE_SAMPLES]
    neuron_p99, gpu_p99 = totals.pair_p99s
    if not pairs and neuron_p99 is None:
        if gpu_share <= 0:
            return GateResult(Gate.LATENCY_REGRESSION, True, None, None,
                              "gpu serves no traffic: no baseline on these minutes, judged on the SLO only")
        return GateResult(Gate.LATENCY_REGRESSION, None, None, None, "no minutes with both p99s yet")
    raw = [(n.latency_p99_ms, factor * g.latency_p99_ms, _weight(n)) for n, g in pairs]  # type: ignore[operator]
    # The burst test against gpu's own p90 when it has one (same minute), else the usual ratio.
    ratio = tail_ratio([n for n, _ in pairs])
    points = []
    for (n, g), point in zip(pairs, raw, strict=True):
        value, threshold, weight = point
        if value > threshold and n.latency_p90_ms is not None:
            bar = factor * g.latency_p90_ms if g.latency_p90_ms is not None else threshold * (ratio or 0.0)
            if n.latency_p90_ms <= bar or tail_only(n):
                value = threshold
        points.append((value, threshold, weight))
    if neuron_p99 is None:  # nothing accumulated yet (first tick of a step): the window speaks
        neuron_p99, gpu_p99 = pooled_p99(n for n, _ in pairs), pooled_p99(g for _, g in pairs)
    threshold = factor * gpu_p99 if gpu_p99 is not None else None
    bars = [factor * g.latency_p90_ms if g.latency_p90_ms is not None else None for _, g in pairs]
    strong = percentiles and strong_minute([n for n, _ in pairs], [t for _, t, _ in raw], bars, MIN_BREACH_SAMPLES)
    if strong or confirmed_above(points, MIN_BREACH_SAMPLES) or sustained_above(raw, MIN_BREACH_SAMPLES):  # type: ignore[arg-type]
        return GateResult(Gate.LATENCY_REGRESSION, False, neuron_p99, threshold,
                          f"neuron p99 {fmt_ms(neuron_p99)} > {factor:g} x gpu {fmt_ms(gpu_p99)} in "
                          f"{NOISE_BREACHES}+ of the last {NOISE_WINDOW} minutes")
    if neuron_p99 is not None and threshold is not None and neuron_p99 <= threshold:
        return GateResult(Gate.LATENCY_REGRESSION, True, neuron_p99, threshold,
                          f"<= {factor:g} x gpu {fmt_ms(gpu_p99)}")
    return GateResult(Gate.LATENCY_REGRESSION, None, neuron_p99, threshold,
                      f"neuron p99 {fmt_ms(neuron_p99)} above {factor:g} x gpu {fmt_ms(gpu_p99)}, not confirmed")


@dataclass(frozen=True)
class ErrorTest:
    neuron_errors: float
    neuron_requests: float
    gpu_errors: float
    gpu_requests: float
    test: ProportionTest
    baseline: str  # "gpu" or "cap"
    breach: bool


def error_test(neuron: WindowSummary, gpu: WindowSummary, cap: float, alpha: float = ALPHA) -> ErrorTest:
    x1, n1, x2, n2 = neuron.errors_5xx, neuron.invocations, gpu.errors_5xx, gpu.invocations
    if n2 > 0:
        test, baseline = two_proportion_z(x1, n1, x2, n2), "gpu"
    else:
        test, baseline = one_proportion_z(x1, n1, cap), "cap"
    rate = x1 / n1 if n1 > 0 else 0.0
    breach = x1 >= MIN_ERRORS and rate > cap and test.significant(alpha)
    return ErrorTest(x1, n1, x2, n2, test, baseline, breach)


def errors_gate(window: Window, totals: StepTotals, cap: float) -> tuple[GateResult, dict[str, Any]]:
    """5XX: breach when the whole step OR its newest minutes (BREACH_WINDOWS) show a significant excess."""
    whole = error_test(totals.summary(True), totals.summary(False), cap)
    looks = [error_test(w.summary(NEURON), w.summary(GPU), cap, ALPHA / len(BREACH_WINDOWS))
             for w in (window.newest(n) for n in BREACH_WINDOWS)]
    recent = next((r for r in looks if r.breach), looks[-1])
    judged = recent if recent.breach and not whole.breach else whole
    z = judged.test.z
    if z is None:
        z_text = "any error is above a 0 cap" if judged.test.p_value == 0.0 else "no test"
    else:
        z_text = f"z={z:.1f} vs {judged.baseline}"
    detail = (f"5XX {fmt_int(judged.neuron_errors)}/{fmt_int(judged.neuron_requests)} vs "
              f"{fmt_int(judged.gpu_errors)}/{fmt_int(judged.gpu_requests)} ({z_text})")
    stats = {
        "neuron_5xx": judged.neuron_errors, "neuron_requests": judged.neuron_requests,
        "gpu_5xx": judged.gpu_errors, "gpu_requests": judged.gpu_requests,
        "z": judged.test.z, "p_value": judged.test.p_value, "baseline": judged.baseline,
        "alpha": ALPHA, "min_errors": MIN_ERRORS, "recent_minutes": BREACH_WINDOW,
    }
    rate = judged.neuron_errors / judged.neuron_requests if judged.neuron_requests > 0 else None
    if whole.breach or recent.breach:
        where = "in the last minutes" if judged is recent else "over the step"
        return GateResult(Gate.ERRORS, False, rate, cap, f"{detail}: neuron worse and above {cap:.2%} {where}"), stats
    if judged.neuron_requests <= 0:
        return GateResult(Gate.ERRORS, None, None, cap, "no neuron requests yet"), stats
    return GateResult(Gate.ERRORS, True, rate, cap, detail), stats


@dataclass(frozen=True)
class Silence:
    minutes: int  # newest judged minutes in a row with no neuron requests
    expected: float  # neuron requests those minutes should have had (its share of the traffic)
    newest_served: float  # requests in the newest minute that had some
    min_minutes: int = 1  # silent minutes needed before a failure (2 when gpu cannot vouch for traffic)
    judged_minutes: int = 0
    fresh: bool = True  # a minute newer than any seen before arrived this tick (False: late or stalled)


def data_gate(silence: Silence, neuron_share: float, threshold: int) -> GateResult:
    """Silence judged by expected traffic: expected >= threshold is a failure, fewer is a hold."""
    if neuron_share <= 0:
        return GateResult(Gate.DATA, True, None, threshold, "neuron has no weight: no traffic expected")
    if silence.minutes == 0:
        if silence.judged_minutes == 0:
            return GateResult(Gate.DATA, None, None, threshold, "no closed minute at this share yet")
        if not silence.fresh:
            return GateResult(Gate.DATA, None, silence.newest_served, threshold,
                              "no new minute arrived this tick (metrics late or stalled): holding")
        return GateResult(Gate.DATA, True, silence.newest_served, threshold,
                          f"neuron reported {fmt_int(silence.newest_served)} requests in its newest minute")
    if silence.expected >= threshold and silence.minutes >= silence.min_minutes:
        return GateResult(Gate.DATA, False, silence.expected, threshold,
                          f"neuron silent for {silence.minutes} min while {fmt_int(silence.expected)} requests "
                          f"were expected (>= {threshold})")
    return GateResult(Gate.DATA, None, silence.expected, threshold,
                      f"neuron silent for {silence.minutes} min with {silence.expected:.0f} requests expected "
                      f"(failure at >= {threshold} over >= {silence.min_minutes} min): holding")


def cost_gate(projected: Mapping[str, float | None], observed: Mapping[str, float | None],
              migrate_anyway: bool) -> GateResult:
    """Ramp only while neuron is cheaper per inference (projected at the current traffic)."""
    n, g = projected.get(NEURON), projected.get(GPU)
    seen = f"observed {fmt_cost(observed.get(NEURON))} vs {fmt_cost(observed.get(GPU))} per 1K"
    if n is None or g is None:
        return GateResult(Gate.COST, None, n, g, f"no price for a variant; {seen}")
    cheaper = n < g
    detail = f"{fmt_cost(n)} vs {fmt_cost(g)} per 1K at the current traffic ({seen})"
    if cheaper:
        return GateResult(Gate.COST, True, n, g, detail)
    if migrate_anyway:
        return GateResult(Gate.COST, True, n, g, f"{detail}: neuron costlier, migrating anyway (config)")
    return GateResult(Gate.COST, False, n, g, f"{detail}: neuron is not cheaper")


# ------------------------------------------------------------------------------------------------
# A step, assessed


@dataclass(frozen=True)
class Assessment:
    gates: tuple[GateResult, ...]
    breaches: tuple[GateResult, ...]  # failed safety gates: fall back now
    statistics: Mapping[str, Any] = field(default_factory=dict)

    def gate(self, name: Gate) -> GateResult | None:
        return next((g for g in self.gates if g.name == name), None)

    @property
    def step_passes(self) -> bool:
        return all(g.passed is True for g in self.gates)


def _stand_in(gate: GateResult) -> GateResult:
    if gate.passed is not False:
        return gate
    return replace(gate, passed=None,
                   detail=f"{gate.detail} (p99 unavailable: a stand-in above the threshold proves nothing, holding)")


def assess(config: HybridConfig, step: Window, recent: Window, totals: StepTotals, neuron_share: float,
           gpu_share: float, silence: Silence, projected: Mapping[str, float | None],
           observed: Mapping[str, float | None], regression_is_breach: bool = True,
           percentiles_available: bool = True) -> Assessment:
    """All gates of a step; which failures are breaches.

    step: closed minutes since the live share went live (silence is judged there, against the share);
    recent: closed minutes since the last fallback (or the start), at whatever share: a breach in the
    minute before a shift still counts, and the minutes a fallback already acted on never count twice;
    totals: the step's running totals (sample, aggregates to pass).
    percentiles_available False: the "p99" values are a stand-in (Maximum/Average) for an empty
    percentile; a stand-in below a threshold still proves the p99 is, one above it proves nothing,
    so a latency failure is downgraded to inconclusive (hold) instead of a fallback.
    """
    neuron = totals.summary(True)
    sample = sample_gate(neuron, config.canary.min_sample)
    slo = latency_slo_gate(recent, totals, config.slo.p99_latency_ms, percentiles_available)
    regression = latency_regression_gate(recent, totals, config.slo.max_regression, gpu_share, percentiles_available)
    if not percentiles_available:
        slo, regression = (_stand_in(g) for g in (slo, regression))
    errors, error_stats = errors_gate(recent, totals, config.slo.max_error_rate)
    data = data_gate(silence, neuron_share, config.fallback.expected_invocations_for_silence)
    cost = cost_gate(projected, observed, config.canary.migrate_even_if_costlier)
    gates = (sample, slo, regression, errors, data, cost)
    safety = [data, slo, errors] + ([regression] if regression_is_breach else [])
    # --- issue 17: output parity (routing/core/parity_gate.py); no gate when online parity is off ---
    parity = assess_parity(config, step.neuron, recent.neuron)
    if parity is not None:
        gates, safety = (*gates, parity[0]), [*safety, parity[0]]
    # --- end issue 17 ---
    breaches = tuple(g for g in safety if g.passed is False) if neuron_share > 0 else ()
    pair_neuron, pair_gpu = totals.pair_p99s
    statistics = {
        "step_minutes": totals.minutes,
        "neuron_invocations": totals.neuron_invocations,
        "gpu_invocations": totals.gpu_invocations,
        "neuron_p99_ms": totals.neuron_p99,
        "gpu_p99_ms": pair_gpu,
        "paired_neuron_p99_ms": pair_neuron,
        "min_sample": config.canary.min_sample,
        "silent_minutes": silence.minutes,
        "expected_neuron_invocations": silence.expected,
        "errors": error_stats,
        "noise_rule": f"{NOISE_BREACHES} of {NOISE_WINDOW} minutes and aggregate",
        **({"parity": parity[1]} if parity is not None else {}),  # issue 17
    }
    return Assessment(gates, breaches, statistics)
