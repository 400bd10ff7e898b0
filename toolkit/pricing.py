"""SageMaker real-time hosting prices ($/hour, on demand), the one table the toolkit uses.

Source: AWS SageMaker pricing page, us-east-1, real-time inference, as collected in
shared/reference/aws-facts.md (checked 2026-11). These are SageMaker hosting prices, NOT EC2
prices (inf2.xlarge is 0.76 on EC2, 0.99 on SageMaker). Config `prices:` overrides win; the
Pricing API lookup (when credentials allow) is layered on top by `hybrid price`.
"""

from __future__ import annotations

from collections.abc import Mapping

from toolkit.errors import UserError

PRICE_SOURCE = "SageMaker real-time hosting, us-east-1, on demand (aws-facts.md, checked 2026-11)"

HOSTING_PRICES_US_EAST_1: dict[str, float] = {
    "ml.inf2.xlarge": 0.99,
    "ml.inf2.8xlarge": 2.36,
    "ml.inf2.24xlarge": 7.79,
    "ml.inf2.48xlarge": 15.58,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,  # other sources list 1.672: verify with the Pricing API
    "ml.g5.12xlarge": 7.09,
}


def price_per_hour(instance_type: str, overrides: Mapping[str, float] | None = None) -> float:
    """$/hour for one instance: config override first, then the built-in table."""
    if overrides and instance_type in overrides:
        return float(overrides[instance_type])
    if instance_type in HOSTING_PRICES_US_EAST_1:
        return HOSTING_PRICES_US_EAST_1[instance_type]
    raise UserError(
        f"no price known for {instance_type}: add it under `prices:` in hybrid.yaml ($/hour), "
        f"or run `hybrid price {instance_type}` with AWS credentials"
    )


def cost_per_1k(instance_count: float, price_hour: float, invocations_per_minute: float) -> float | None:
    """$ per 1,000 inferences for a variant: what its instances cost over what they served.

    None when the variant served nothing (its cost per inference is undefined, not zero).
    """
    if invocations_per_minute <= 0:
        return None
    return instance_count * price_hour / 60.0 / invocations_per_minute * 1000.0
