"""Does the move pay? The projection behind `hybrid plan` (pure: traffic and sizing in, figures out).

Per minute of the observed traffic (requests per minute, the endpoint's real Invocations):

- all-GPU: the gpu instances autoscaling would run for ALL the traffic,
  max(min_count, ceil(requests / target_invocations_per_instance), ceil(rps / capacity_rps_per_instance));
- steady hybrid: the canary's target share on neuron, sized the same way with neuron's figures
  and capped at its max_count (what neuron cannot take goes to gpu, as holding does on
  saturation); gpu serves the rest and never drops below its warm floor (min_count).

Each minute costs instances x $/hour / 60; a month is AWS's 730 hours, scaled from the mean
observed minute. Savings = all-GPU - hybrid; break-even = engineering cost / monthly savings.
The move "does not pay" when it saves nothing, or when break-even lies beyond the horizon.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

HOURS_PER_MONTH = 730.0
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60.0


@dataclass(frozen=True)
class Sizing:
    """One variant's hardware, price and scaling, as the projection uses them."""

    instance_type: str
    price_per_hour: float
    min_count: int
    max_count: int
    target_invocations_per_instance: float  # per minute: the autoscaling target
    capacity_rps_per_instance: float  # requests/s one instance sustains within the SLO
    price_source: str = ""
    capacity_source: str = ""

    @property
    def per_instance_per_minute(self) -> float:
        """Requests per minute one instance takes: the lower of the autoscaling target and its capacity."""
        return min(self.target_invocations_per_instance, self.capacity_rps_per_instance * 60.0)


def instances_for(requests_per_minute: float, sizing: Sizing, *, floor: bool = True) -> int:
    """Instances for this load: enough for the target and the capacity, at least min_count (no ceiling)."""
    need = math.ceil(max(0.0, requests_per_minute) / sizing.per_instance_per_minute - 1e-9)
    return max(need, sizing.min_count) if floor else need


@dataclass(frozen=True)
class MinuteSplit:
    neuron_requests: float
    gpu_requests: float
    neuron_instances: int
    gpu_instances: int
    all_gpu_instances: int


def split_minute(requests_per_minute: float, neuron: Sizing, gpu: Sizing, neuron_share: float) -> MinuteSplit:
    """The steady hybrid split of one minute and the all-GPU counterfactual's instances."""
    total = max(0.0, requests_per_minute)
    wanted = total * neuron_share
    n_neuron = min(instances_for(wanted, neuron), max(neuron.max_count, neuron.min_count))
    on_neuron = min(wanted, n_neuron * neuron.per_instance_per_minute)
    on_gpu = total - on_neuron
    return MinuteSplit(on_neuron, on_gpu, n_neuron, instances_for(on_gpu, gpu), instances_for(total, gpu))


@dataclass
class Plan:
    """The projection's figures (monthly = 730 h at the observed mean)."""

    minutes_observed: int
    mean_rps: float
    peak_rps: float
    neuron_share_percent: float
    all_gpu_monthly: float
    hybrid_monthly: float
    savings_monthly: float
    savings_fraction: float | None
    engineering_cost: float
    break_even_months: float | None
    horizon_months: float
    pays: bool
    verdict: str
    mean_instances: dict[str, float]
    all_gpu_mean_instances: float
    gpu_floor_monthly: float
    minutes_above_gpu_max: int
    hourly: dict[str, list[float]] = field(default_factory=dict)  # $/hour per observed hour, for the plot
    sizing: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def project(
    requests_per_minute: Sequence[float],
    neuron: Sizing,
    gpu: Sizing,
    *,
    neuron_share_percent: float = 100.0,
    engineering_cost: float = 0.0,
    horizon_months: float = 12.0,
) -> Plan:
    """Project the monthly cost all-GPU vs the steady hybrid split over the observed minutes."""
    if not requests_per_minute:
        raise ValueError("no traffic to project: the series is empty")
    share = min(max(neuron_share_percent, 0.0), 100.0) / 100.0
    n = len(requests_per_minute)
    cost_all = cost_hybrid = 0.0
    sum_neuron = sum_gpu = sum_all = 0
    above_max = 0
    hourly_all: list[float] = []
    hourly_hybrid: list[float] = []
    hour_all = hour_hybrid = 0.0
    for i, requests in enumerate(requests_per_minute):
        s = split_minute(requests, neuron, gpu, share)
        minute_all = s.all_gpu_instances * gpu.price_per_hour / 60.0
        minute_hybrid = (s.neuron_instances * neuron.price_per_hour + s.gpu_instances * gpu.price_per_hour) / 60.0
        cost_all += minute_all
        cost_hybrid += minute_hybrid
        hour_all += minute_all
        hour_hybrid += minute_hybrid
        sum_neuron += s.neuron_instances
        sum_gpu += s.gpu_instances
        sum_all += s.all_gpu_instances
        above_max += s.all_gpu_instances > gpu.max_count
        if i % 60 == 59 or i == n - 1:
            hourly_all.append(hour_all * 60.0 / (i % 60 + 1))
            hourly_hybrid.append(hour_hybrid * 60.0 / (i % 60 + 1))
            hour_all = hour_hybrid = 0.0
    all_monthly = cost_all / n * MINUTES_PER_MONTH
    hybrid_monthly = cost_hybrid / n * MINUTES_PER_MONTH
    savings = all_monthly - hybrid_monthly
    break_even = engineering_cost / savings if savings > 0 else None
    pays = savings > 0 and break_even is not None and break_even <= horizon_months
    floor_monthly = gpu.min_count * gpu.price_per_hour * HOURS_PER_MONTH
    warnings = []
    if above_max:
        warnings.append(f"{above_max} observed minute(s) needed more than gpu max_count ({gpu.max_count}) "
                        f"instances all-GPU: costed at what they needed")
    plan = Plan(
        minutes_observed=n,
        mean_rps=sum(requests_per_minute) / n / 60.0,
        peak_rps=max(requests_per_minute) / 60.0,
        neuron_share_percent=share * 100.0,
        all_gpu_monthly=all_monthly,
        hybrid_monthly=hybrid_monthly,
        savings_monthly=savings,
        savings_fraction=savings / all_monthly if all_monthly > 0 else None,
        engineering_cost=engineering_cost,
        break_even_months=break_even,
        horizon_months=horizon_months,
        pays=pays,
        verdict="",
        mean_instances={"neuron": sum_neuron / n, "gpu": sum_gpu / n},
        all_gpu_mean_instances=sum_all / n,
        gpu_floor_monthly=floor_monthly,
        minutes_above_gpu_max=above_max,
        hourly={"all_gpu": hourly_all, "hybrid": hourly_hybrid},
        sizing={"neuron": asdict(neuron), "gpu": asdict(gpu)},
        warnings=warnings,
    )
    plan.verdict = verdict(plan, gpu)
    return plan


def _usd(value: float) -> str:
    return f"${value:,.0f}"


def verdict(plan: Plan, gpu: Sizing) -> str:
    """One plain sentence: does the move pay, and why not when it does not."""
    if plan.savings_monthly <= 0:
        return (f"Does not pay: at {plan.mean_rps:.2g} req/s the hybrid split costs "
                f"{_usd(-plan.savings_monthly)}/month more than all-GPU ({_usd(plan.hybrid_monthly)} vs "
                f"{_usd(plan.all_gpu_monthly)}); the warm gpu floor alone ({gpu.min_count} x {gpu.instance_type}) "
                f"costs {_usd(plan.gpu_floor_monthly)}/month.")
    saving = f"saves {_usd(plan.savings_monthly)}/month ({plan.savings_fraction or 0:.0%})"
    if plan.engineering_cost <= 0:
        return f"Pays: the hybrid split {saving} from the first month (no engineering cost given)."
    assert plan.break_even_months is not None
    months = f"{plan.break_even_months:.1f} months"
    if not plan.pays:
        return (f"Does not pay within {plan.horizon_months:g} months: it {saving}, but the "
                f"{_usd(plan.engineering_cost)} of engineering takes {months} to recover.")
    return f"Pays: the hybrid split {saving}; the {_usd(plan.engineering_cost)} of engineering is recovered in {months}."
