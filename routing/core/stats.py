"""Small, dependency-free statistics for the canary gates (pure functions, no I/O).

Why these and not Mann-Whitney (Kayenta): CloudWatch gives us per-minute aggregates (counts and
percentiles), not raw samples. Error counts are binomial, so a two-proportion z-test is the right
tool and works with sparse counts; latency tails are judged on p99 per minute with a noise rule
(see routing/gates.py), which a rank test on a handful of points would miss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routing.core.model import MinuteMetrics


@dataclass(frozen=True)
class ProportionTest:
    """One-sided test that the canary's rate is above the baseline (or above a fixed rate).

    z and p_value are None when a side has no requests: there is nothing to test.
    """

    z: float | None
    p_value: float | None

    def significant(self, alpha: float) -> bool:
        return self.p_value is not None and self.p_value < alpha


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal variable (the one-sided p-value of z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_proportion_z(x1: float, n1: float, x2: float, n2: float) -> ProportionTest:
    """Pooled two-proportion z-test, one-sided: is x1/n1 (neuron) greater than x2/n2 (gpu)?

    z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)) with the pooled p = (x1 + x2) / (n1 + n2).
    When nobody (or everybody) failed, the pooled variance is zero and there is no evidence of a
    difference: z = 0, p = 0.5.
    """
    if n1 <= 0 or n2 <= 0:
        return ProportionTest(None, None)
    pooled = (x1 + x2) / (n1 + n2)
    if pooled <= 0.0 or pooled >= 1.0:
        return ProportionTest(0.0, 0.5)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    z = (x1 / n1 - x2 / n2) / se
    return ProportionTest(z, normal_sf(z))


def one_proportion_z(x: float, n: float, p0: float) -> ProportionTest:
    """One-sided test that x/n is above a fixed rate p0 (used when gpu served nothing to compare)."""
    if n <= 0:
        return ProportionTest(None, None)
    if p0 <= 0.0:
        # A zero cap: any error is above it (z undefined, p 0), none is not.
        return ProportionTest(None, 0.0) if x > 0 else ProportionTest(0.0, 0.5)
    z = (x / n - p0) / math.sqrt(p0 * (1.0 - p0) / n)
    return ProportionTest(z, normal_sf(z))


@dataclass(frozen=True)
class WindowSummary:
    """A variant's closed minutes, added up."""

    minutes: int  # minutes in the window
    minutes_with_data: int
    invocations: float
    errors_5xx: float
    p99_ms: float | None  # sample-weighted mean of the minute p99s (see pooled_p99)
    latency_samples: float

    @property
    def error_rate(self) -> float | None:
        return self.errors_5xx / self.invocations if self.invocations > 0 else None


def _weight(minute: MinuteMetrics) -> float:
    if minute.latency_samples > 0:
        return minute.latency_samples
    return minute.invocations or 0.0


def pooled_p99(minutes: Iterable[MinuteMetrics]) -> float | None:
    """Estimate the p99 over several minutes from their per-minute p99s.

    CloudWatch cannot merge percentiles across periods without raw samples; the sample-weighted
    mean of the minute p99s is the usual estimate (exact when the minutes share a distribution,
    and a busy minute counts for more than a quiet one). None when no minute has a p99.
    """
    total = 0.0
    weight = 0.0
    for minute in minutes:
        if minute.latency_p99_ms is None:
            continue
        w = _weight(minute)
        if w <= 0:
            continue
        total += minute.latency_p99_ms * w
        weight += w
    return total / weight if weight > 0 else None


def summarize(minutes: Iterable[MinuteMetrics]) -> WindowSummary:
    items = tuple(minutes)
    with_data = [m for m in items if m.has_data]
    return WindowSummary(
        minutes=len(items),
        minutes_with_data=len(with_data),
        invocations=sum(m.invocations or 0.0 for m in with_data),
        errors_5xx=sum(m.errors_5xx for m in with_data),
        p99_ms=pooled_p99(with_data),
        latency_samples=sum(_weight(m) for m in with_data if m.latency_p99_ms is not None),
    )


def instances_for(rps: float, capacity_rps_per_instance: float, low: int, high: int, factor: float = 1.0) -> int:
    """Instances that carry rps at the given per-instance capacity, within [low, high]."""
    needed = math.ceil(max(rps, 0.0) * factor / capacity_rps_per_instance - 1e-9)
    return max(low, min(high, needed))


@dataclass(frozen=True)
class StepTotals:
    """What a step has seen so far, added up tick by tick (each closed minute counted once).

    Kept in the policy memory (PolicyMemory.step_totals) so the sample of a step is not limited to the metrics window,
    and a restart resumes the count instead of starting over.
    """

    neuron_invocations: float = 0.0
    neuron_5xx: float = 0.0
    gpu_invocations: float = 0.0
    gpu_5xx: float = 0.0
    minutes: int = 0
    neuron_p99_sum: float = 0.0  # sum of minute p99 x weight (pooled_p99 over the step)
    neuron_p99_weight: float = 0.0
    pair_neuron_sum: float = 0.0  # the same over minutes where both variants have a p99
    pair_gpu_sum: float = 0.0
    pair_weight: float = 0.0
    pair_gpu_weight: float = 0.0

    @property
    def neuron_p99(self) -> float | None:
        return self.neuron_p99_sum / self.neuron_p99_weight if self.neuron_p99_weight > 0 else None

    @property
    def pair_p99s(self) -> tuple[float | None, float | None]:
        if self.pair_weight <= 0 or self.pair_gpu_weight <= 0:
            return None, None
        return self.pair_neuron_sum / self.pair_weight, self.pair_gpu_sum / self.pair_gpu_weight

    def summary(self, neuron: bool) -> WindowSummary:
        if neuron:
            return WindowSummary(self.minutes, self.minutes, self.neuron_invocations, self.neuron_5xx,
                                 self.neuron_p99, self.neuron_p99_weight)
        return WindowSummary(self.minutes, self.minutes, self.gpu_invocations, self.gpu_5xx,
                             self.pair_p99s[1], self.pair_gpu_weight)

    def add(self, neuron: Iterable[MinuteMetrics], gpu: Iterable[MinuteMetrics]) -> StepTotals:
        """Add closed minutes (both variants, same minutes); returns a new total."""
        n_by = {m.start: m for m in neuron}
        g_by = {m.start: m for m in gpu}
        values = dict(self.__dict__)
        for start in sorted(set(n_by) | set(g_by)):
            n, g = n_by.get(start), g_by.get(start)
            values["minutes"] += 1
            if n is not None and n.has_data:
                values["neuron_invocations"] += n.invocations or 0.0
                values["neuron_5xx"] += n.errors_5xx
                if n.latency_p99_ms is not None and _weight(n) > 0:
                    values["neuron_p99_sum"] += n.latency_p99_ms * _weight(n)
                    values["neuron_p99_weight"] += _weight(n)
            if g is not None and g.has_data:
                values["gpu_invocations"] += g.invocations or 0.0
                values["gpu_5xx"] += g.errors_5xx
            if (n is not None and g is not None and n.has_data and g.has_data and n.latency_p99_ms is not None
                    and g.latency_p99_ms is not None and _weight(n) > 0 and _weight(g) > 0):
                values["pair_neuron_sum"] += n.latency_p99_ms * _weight(n)
                values["pair_weight"] += _weight(n)
                values["pair_gpu_sum"] += g.latency_p99_ms * _weight(g)
                values["pair_gpu_weight"] += _weight(g)
        return StepTotals(**values)

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: object) -> StepTotals:
        if not isinstance(data, dict):
            return cls()
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
