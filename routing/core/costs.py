"""Cost arithmetic the policy judges with (pure). Prices themselves come from toolkit.pricing."""

from __future__ import annotations


def cost_per_1k(instance_count: float, price_hour: float, invocations_per_minute: float) -> float | None:
    """$ per 1,000 inferences for a variant: what its instances cost over what they served.

    None when the variant served nothing (its cost per inference is undefined, not zero).
    """
    if invocations_per_minute <= 0:
        return None
    return instance_count * price_hour / 60.0 / invocations_per_minute * 1000.0
