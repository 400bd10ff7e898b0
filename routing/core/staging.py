"""Turn a target into the next single UpdateEndpointWeightsAndCapacities request. Pure.

The API "updates variant weight of one or more variants ... OR capacity of one variant"
(SageMaker API reference), and an update completes as a whole: a request that moves weights
AND adds instances shifts no traffic until the new instances are in service (minutes). So a
target is reached in stages, one request per tick (the endpoint must be InService between them):

- toward gpu (fallback, step back): weights first (seconds), then gpu capacity. Safety first:
  the broken side stops taking traffic now; the warm gpu floor (gpu.min_count) carries it while
  gpu scales up.
- toward neuron (a canary step, a return): neuron capacity first, then weights (capacity before
  traffic; the policy normally asks for them on separate ticks already).
- capacity changes: gpu before neuron (the safe side first), one variant per request.
The controller re-applies the policy's target every tick until the live endpoint matches it,
so the remaining stages follow on the next ticks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from routing.core.model import EndpointLive, Target
from routing.core.variants import GPU, NEURON

SHARE_TOLERANCE = 1e-4  # fraction of traffic


@dataclass(frozen=True)
class Update:
    """One request: weights for every variant, or the instance count of one variant."""

    weights: Mapping[str, float] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)

    def entries(self) -> list[dict[str, float | int | str]]:
        if self.weights:
            return [{"VariantName": name, "DesiredWeight": float(w)} for name, w in self.weights.items()]
        return [{"VariantName": name, "DesiredInstanceCount": int(c)} for name, c in self.counts.items()]


def _desired_share(live: EndpointLive, variant: str) -> float:
    total = sum(v.desired_weight for v in live.variants.values())
    return live.variants[variant].desired_weight / total if total > 0 else 0.0


def _target_share(target: Target, variant: str) -> float:
    total = sum(float(w) for w in target.weights.values())
    return float(target.weights.get(variant, 0.0)) / total if total > 0 else 0.0


def weights_differ(live: EndpointLive, target: Target) -> bool:
    if not target.weights:
        return False
    return any(
        abs(_desired_share(live, name) - _target_share(target, name)) > SHARE_TOLERANCE
        for name in live.variants
        if name in target.weights
    )


def counts_to_change(live: EndpointLive, target: Target) -> dict[str, int]:
    return {
        name: int(count)
        for name, count in target.instance_counts.items()
        if name in live.variants and live.variants[name].desired_instance_count != int(count)
    }


def next_update(live: EndpointLive, target: Target) -> Update | None:
    """The one request to send now toward `target`, or None when the endpoint already asks for it."""
    counts = counts_to_change(live, target)
    move_weights = weights_differ(live, target)
    toward_neuron = move_weights and NEURON in live.variants and (
        _target_share(target, NEURON) > _desired_share(live, NEURON) + SHARE_TOLERANCE
    )
    neuron_grows = NEURON in counts and counts[NEURON] > live.variants[NEURON].desired_instance_count
    if move_weights and not (toward_neuron and neuron_grows):
        return Update(weights={name: float(target.weights.get(name, 0.0)) for name in live.variants})
    for name in (GPU, NEURON) if not (toward_neuron and neuron_grows) else (NEURON, GPU):
        if name in counts:
            return Update(counts={name: counts[name]})
    if move_weights:
        return Update(weights={name: float(target.weights.get(name, 0.0)) for name in live.variants})
    return None
