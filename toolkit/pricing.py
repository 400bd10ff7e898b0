"""SageMaker real-time hosting prices ($/hour, on demand), the one table the toolkit uses.

Source: AWS SageMaker pricing page, us-east-1, real-time inference, as collected in
shared/reference/aws-facts.md (checked 2026-11). These are SageMaker hosting prices, NOT EC2
prices (inf2.xlarge is 0.76 on EC2, 0.99 on SageMaker). Config `prices:` overrides win; the
Pricing API lookup (when credentials allow) is layered on top by `hybrid price`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from routing.core.costs import cost_per_1k  # noqa: F401  (defined in the pure core, used by the policy)
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
        f"or run `hybrid price {instance_type} --live` with AWS credentials"
    )


# ----------------------------------------------------------------------------------------------
# Live prices from the AWS Pricing API, config overrides, and the quotes `hybrid price` prints.

PRICING_API_REGION = "us-east-1"  # the Pricing API has a few endpoints; us-east-1 serves every region's prices
TABLE_REGION = "us-east-1"
# Usage types of non-hosting SageMaker rows that also carry an instanceName (training, notebooks,
# processing, batch...). The SDK's helper takes the first row and can return one of these.
_NOT_HOSTING = ("train", "notebook", "processing", "transform", "batch", "studio", "canvas", "spot",
                "dataWrangler", "async", "serverless", "hyperpod", "reserved")


@dataclass
class PriceQuote:
    instance_type: str
    price_per_hour: float
    source: str  # "config", "pricing-api", "table"
    region: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attributes(item: Mapping[str, Any]) -> dict[str, str]:
    return dict(item.get("product", {}).get("attributes", {}))


def is_hosting_row(item: Mapping[str, Any]) -> bool:
    """A real-time hosting row: usage type `<REGION>-Hosting:ml.*` (or component Hosting), nothing else."""
    attrs = _attributes(item)
    usage = attrs.get("usagetype", "")
    component = attrs.get("component", "")
    hosting = re.search(r"(^|-)Hosting:ml\.", usage) is not None or component.lower() == "hosting"
    text = f"{usage} {component} {attrs.get('operation', '')}".lower()
    return hosting and not any(word.lower() in text for word in _NOT_HOSTING)


def on_demand_hourly_usd(item: Mapping[str, Any]) -> float | None:
    """The OnDemand USD per hour of one price-list item (first positive hourly dimension)."""
    for term in item.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            unit = str(dimension.get("unit", "")).lower()
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is None or unit not in ("hrs", "hr", "hour", "hours"):
                continue
            value = float(usd)
            if value > 0:
                return value
    return None


def parse_hosting_price(price_list: list[str | Mapping[str, Any]], instance_type: str) -> float | None:
    """The hosting $/hour for `instance_type` among GetProducts' PriceList items (JSON strings)."""
    for raw in price_list:
        item = json.loads(raw) if isinstance(raw, str) else raw
        attrs = _attributes(item)
        if attrs.get("instanceName", attrs.get("instanceType")) not in (instance_type, None):
            continue
        if not is_hosting_row(item):
            continue
        price = on_demand_hourly_usd(item)
        if price is not None:
            return price
    return None


def hosting_price_from_api(pricing_client: Any, instance_type: str, region: str = TABLE_REGION) -> float | None:
    """Query the Pricing API for one instance type's real-time hosting price in `region`."""
    filters = [
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
    ]
    kwargs: dict[str, Any] = {"ServiceCode": "AmazonSageMaker", "Filters": filters, "MaxResults": 100}
    while True:
        page = pricing_client.get_products(**kwargs)
        price = parse_hosting_price(page.get("PriceList", []), instance_type)
        if price is not None:
            return price
        token = page.get("NextToken")
        if not token:
            return None
        kwargs["NextToken"] = token


def check_instance_type(instance_type: str) -> None:
    from toolkit.config import INSTANCE_TYPE_RE

    if not INSTANCE_TYPE_RE.match(instance_type):
        raise UserError(f"{instance_type!r} is not a SageMaker instance type like ml.g5.xlarge")


def quote(
    instance_types: list[str],
    *,
    overrides: Mapping[str, float] | None = None,
    live: bool = False,
    pricing_client: Any | None = None,
    region: str = TABLE_REGION,
) -> list[PriceQuote]:
    """A price per type: config override, else the Pricing API (when `live`), else the table.

    Without credentials (or any API failure) a live lookup falls back to the table and says so
    in the quote's note. An unknown type with no price anywhere is a UserError (exit 2).
    """
    quotes: list[PriceQuote] = []
    api_error: str | None = None
    for instance_type in instance_types:
        check_instance_type(instance_type)
        if overrides and instance_type in overrides:
            quotes.append(PriceQuote(instance_type, float(overrides[instance_type]), "config", region))
            continue
        note = None
        if live and api_error is None:
            try:
                client = pricing_client
                if client is None:
                    import boto3

                    client = boto3.client("pricing", region_name=PRICING_API_REGION)
                found = hosting_price_from_api(client, instance_type, region)
            except Exception as error:  # no credentials, no network, access denied
                api_error = f"Pricing API unavailable ({type(error).__name__}): built-in table used"
            else:
                if found is not None:
                    quotes.append(PriceQuote(instance_type, found, "pricing-api", region))
                    continue
                note = f"no hosting row in the Pricing API for {region}: built-in table used"
        if live and api_error is not None:
            note = api_error
        if instance_type not in HOSTING_PRICES_US_EAST_1:
            raise UserError(
                f"no price known for {instance_type}: add it under `prices:` in hybrid.yaml ($/hour)"
                + ("" if live else ", or run `hybrid price --live` with AWS credentials")
            )
        if region != TABLE_REGION:
            note = (note + "; " if note else "") + f"table prices are {TABLE_REGION}"
        quotes.append(PriceQuote(instance_type, HOSTING_PRICES_US_EAST_1[instance_type], "table", region, note))
    return quotes
