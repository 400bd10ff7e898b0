"""The parity gate: do neuron's answers agree with gpu's on the requests the client mirrored? Pure.

The application's HybridClient (routing/client.py) mirrors `parity.online.mirror_fraction` of the
requests neuron served to gpu, compares the two answers with the configured comparator
(toolkit/parity.py) and publishes ParityCompared / ParityAgreed per minute (VariantName=neuron);
the controller reads them in its one GetMetricData and they arrive here on neuron's MinuteMetrics.

The rule mirrors the 5XX gate (routing/core/gates.py):
- breach (fall back) when, since the last fallback or start, at least MIN_DISAGREEMENTS answers
  disagreed, the disagreement rate is above the cap (1 - parity.min_agreement), AND a one-sided
  one-proportion z-test says it is significantly above the cap at ALPHA: a handful of bf16
  rounding flips on a small sample is never a rollback;
- pass when the step has at least parity.online.min_sample comparisons and agreement is at least
  parity.min_agreement;
- otherwise inconclusive (the step holds until the sample arrives, like the sample gate).

When online parity is off (mirror_fraction 0, the default) there is no gate at all: a gate that
can never get data would hold every step forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from routing.core.model import Gate, GateResult, MinuteMetrics
from routing.core.stats import one_proportion_z

if TYPE_CHECKING:  # the settings model is only read here (see docs/architecture.md)
    from collections.abc import Iterable

    from toolkit.config import HybridConfig

ALPHA = 0.01  # one-sided significance, as the 5XX gate
MIN_DISAGREEMENTS = 5  # disagreeing answers needed before a parity breach can be called
# As the 5XX gate: the newest 2 and 5 minutes are looked at too (each at ALPHA / 2), so wrong answers
# that start mid-ramp are not diluted by the clean comparisons before them (wrong-outputs: 5% wrong
# answers against a 1% cap took 7-30 minutes to call on the ramp's totals alone).
BREACH_WINDOWS = (2, 5)


@dataclass(frozen=True)
class ParityCounts:
    compared: float = 0.0
    agreed: float = 0.0

    @property
    def disagreed(self) -> float:
        return max(0.0, self.compared - self.agreed)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared > 0 else None

    @classmethod
    def of(cls, minutes: Iterable[MinuteMetrics]) -> ParityCounts:
        rows = list(minutes)
        return cls(sum(m.parity_compared for m in rows), sum(m.parity_agreed for m in rows))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _looks_bad(counts: ParityCounts, cap: float, alpha: float) -> bool:
    test = one_proportion_z(counts.disagreed, counts.compared, cap)
    rate = counts.disagreed / counts.compared if counts.compared > 0 else 0.0
    return counts.disagreed >= MIN_DISAGREEMENTS and rate > cap and test.significant(alpha)


def parity_gate(step: ParityCounts, recent: ParityCounts, min_agreement: float,
                min_sample: int, newest: tuple[ParityCounts, ...] = ()) -> tuple[GateResult, dict[str, Any]]:
    """The gate over the step's comparisons (to pass) and those since the last fallback (to fail);
    `newest`: the newest minutes' counts (BREACH_WINDOWS), each also tested to fail."""
    cap = 1.0 - min_agreement
    if not _looks_bad(recent, cap, ALPHA):
        recent = next((w for w in newest if _looks_bad(w, cap, ALPHA / max(len(newest), 1))), recent)
    test = one_proportion_z(recent.disagreed, recent.compared, cap)
    rate = recent.disagreed / recent.compared if recent.compared > 0 else 0.0
    breach = _looks_bad(recent, cap, ALPHA / max(len(newest), 1))
    stats = {"compared": step.compared, "agreed": step.agreed, "recent_compared": recent.compared,
             "recent_disagreed": recent.disagreed, "z": test.z, "p_value": test.p_value, "alpha": ALPHA,
             "min_disagreements": MIN_DISAGREEMENTS, "min_sample": min_sample, "min_agreement": min_agreement}
    if breach:
        z = f"z={test.z:.1f} vs the cap" if test.z is not None else "any disagreement is above a 0 cap"
        detail = (f"neuron disagreed with gpu on {recent.disagreed:,.0f} of {recent.compared:,.0f} mirrored requests "
                  f"({rate:.2%} > {cap:.2%}, {z})")
        return GateResult(Gate.PARITY, False, 1.0 - rate, min_agreement, detail), stats
    agreement = step.agreement
    if step.compared >= min_sample and agreement is not None and agreement >= min_agreement:
        return GateResult(Gate.PARITY, True, agreement, min_agreement,
                          f"agreement {_pct(agreement)} >= {_pct(min_agreement)} on {step.compared:,.0f} "
                          f"mirrored requests"), stats
    if step.compared < min_sample:
        detail = f"{step.compared:,.0f} of {min_sample:,} mirrored comparisons (agreement {_pct(agreement)})"
    else:
        detail = (f"agreement {_pct(agreement)} below {_pct(min_agreement)} on {step.compared:,.0f} mirrored "
                  f"requests, not significant yet")
    return GateResult(Gate.PARITY, None, agreement, min_agreement, detail), stats


def assess_parity(config: HybridConfig, step: Iterable[MinuteMetrics],
                  recent: Iterable[MinuteMetrics]) -> tuple[GateResult, dict[str, Any]] | None:
    """The parity gate of a step from neuron's judged minutes, or None when online parity is off."""
    parity = getattr(config, "parity", None)
    online = getattr(parity, "online", None)
    if parity is None or online is None or online.mirror_fraction <= 0:
        return None
    rows = [m for m in recent if m.has_data]
    newest = tuple(ParityCounts.of(rows[-n:]) for n in BREACH_WINDOWS)
    return parity_gate(ParityCounts.of(step), ParityCounts.of(rows), parity.min_agreement, online.min_sample, newest)
