"""A real rollout as a ReportInput: decision records + the variants' CloudWatch history + prices.

Records come from `<state_dir>/<endpoint>/records.jsonl` (the CLI's store) or the in-account
controller's DynamoDB table (items `pk=<endpoint>`, `sk=record#...`, attribute `record` holding
the JSON); both are read as plain JSON by model.parse_record.

Per minute: invocations, 5XX and p99 from CloudWatch; live shares and instance counts from the
newest record at or before the minute (the controller records DescribeEndpoint after each tick);
cost = instances x $/hour / 60. The all-GPU counterfactual sizes gpu for the whole minute's
traffic with toolkit.plan.instances_for (the autoscaling target, the capacity, the warm floor).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from toolkit.errors import AwsError, UserError
from toolkit.plan import Sizing, instances_for
from toolkit.report.cloudwatch import VariantHistory
from toolkit.report.model import (
    GPU,
    VARIANTS,
    ConfigEcho,
    DecisionPoint,
    MinuteSample,
    PriceEcho,
    ReportInput,
    VariantSample,
    parse_record,
    read_records_jsonl,
    with_minutes,
)

RECORD_PREFIX = "record#"
SHARE_LAG_SECONDS = 30  # a tick a few seconds into a minute sets the weights that minute is served at


def records_path(config: Any, config_path: str | Path, state_dir: str | None) -> Path:
    """records.jsonl of the JSON store, resolved as the controller resolves it (routing/adapters/json_store.py)."""
    from routing.adapters.json_store import resolve_state_dir

    return resolve_state_dir(config, state_dir, Path(config_path).resolve().parent) / config.name / "records.jsonl"


def table_name(config: Any, table: str | None) -> str | None:
    """--table, else env HYBRID_TABLE, else the in-account controller's table (the controller's own rule)."""
    from routing.adapters.stores import table_for

    return table_for(config, table)


def read_file_records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no decision records at {path}: give --records FILE, --table NAME or --state-dir") from None
    except OSError as error:
        raise AwsError(f"cannot read {path}: {error.strerror or error}") from None
    return read_records_jsonl(text)


def read_table_records(dynamodb: Any, table: str, endpoint: str) -> list[dict[str, Any]]:
    """Every record item of `endpoint` in the controller's table, oldest first (Query, paginated)."""
    from botocore.exceptions import BotoCoreError, ClientError

    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": {"S": endpoint}, ":prefix": {"S": RECORD_PREFIX}},
    }
    try:
        while True:
            page = dynamodb.query(**kwargs)
            for item in page.get("Items", []):
                try:
                    value = json.loads(item.get("record", {}).get("S", ""))
                except json.JSONDecodeError:
                    continue
                if isinstance(value, dict):
                    out.append(value)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except (ClientError, BotoCoreError) as error:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise UserError(f"no DynamoDB table {table!r} in this account and region: check --table") from None
        raise AwsError(f"DynamoDB Query {table}: {error}") from None
    return out


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO 8601 time, or a duration back from now: 90m, 6h, 2d."""
    from datetime import UTC

    value = text.strip()
    units = {"m": 1, "h": 60, "d": 1440}
    if value[-1:] in units and value[:-1].isdigit():
        return now - timedelta(minutes=int(value[:-1]) * units[value[-1]])
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since {text!r}: give an ISO 8601 time (2026-01-01T10:00:00Z) or a duration (90m, 6h, 2d)") \
            from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def sizing(config: Any, name: str, price: float, price_source: str) -> Sizing:
    v = config.variant(name)
    return Sizing(instance_type=v.instance_type, price_per_hour=price, min_count=v.min_count, max_count=v.max_count,
                  target_invocations_per_instance=float(v.target_invocations_per_instance),
                  capacity_rps_per_instance=float(v.capacity_rps_per_instance), price_source=price_source,
                  capacity_source="hybrid.yaml capacity_rps_per_instance")


def window(decisions: Sequence[DecisionPoint], since: datetime | None) -> tuple[datetime, datetime]:
    """[start, end) of the report, whole minutes, from the records' times (or --since)."""
    times = [d.time for d in decisions if d.time is not None]
    if not times:
        raise UserError("the decision records carry no times: nothing to place on a timeline")
    # A tick judges the minutes closed before it: the first record's tick judged the minute before
    # it, the last record's tick the minute before its own.
    start = since.replace(second=0, microsecond=0) if since else \
        min(times).replace(second=0, microsecond=0) - timedelta(minutes=1)
    end = max(times).replace(second=0, microsecond=0)
    return start, max(end, start + timedelta(minutes=1))


def build(
    config: Any,
    records: Sequence[Mapping[str, Any]],
    history: Mapping[str, VariantHistory],
    prices: Mapping[str, PriceEcho],
    *,
    start: datetime,
    end: datetime,
    source: str,
) -> ReportInput:
    """The report input of a real rollout between start and end (minute resolution)."""
    last = end + timedelta(minutes=1)  # the tick after the last minute belongs to the report
    decisions = [d for d in (parse_record(r) for r in records) if d.time is not None and start <= d.time < last]
    decisions.sort(key=lambda d: d.time)  # type: ignore[arg-type, return-value]
    decisions = with_minutes(decisions, start)
    gpu_sizing = sizing(config, GPU, prices[GPU].price_per_hour, prices[GPU].source)
    known = [d for d in decisions if d.instances or d.shares]
    offsets = [float(d.minute or 0.0) for d in known]
    minutes: list[MinuteSample] = []
    count = max(1, int((end - start).total_seconds() // 60))
    for i in range(count):
        ts = start + timedelta(minutes=i)
        at = bisect_right(offsets, i + SHARE_LAG_SECONDS / 60.0) - 1
        live = known[at] if at >= 0 else (known[0] if known else None)
        variants: dict[str, VariantSample] = {}
        for name in VARIANTS:
            h = history.get(name) or VariantHistory()
            invocations = h.get("invocations", ts) or 0.0
            instances = live.instances.get(name) if live is not None else None
            if instances is None:  # no record yet: InvocationsPerInstance = Invocations / instances
                per = h.get("invocations_per_instance", ts)
                instances = round(invocations / per) if per else 0.0
            share = live.shares.get(name) if live is not None else None
            variants[name] = VariantSample(
                invocations=invocations, errors_5xx=h.get("errors_5xx", ts) or 0.0, p99_ms=h.get("p99_ms", ts),
                instances=float(instances), share_percent=share,
                cost=float(instances) * prices[name].price_per_hour / 60.0,
            )
        total = sum(v.invocations for v in variants.values())
        all_gpu = instances_for(total, gpu_sizing) * gpu_sizing.price_per_hour / 60.0
        minutes.append(MinuteSample(minute=i, variants=variants, all_gpu_cost=all_gpu))
    steps = tuple(config.canary.resolved_steps())
    echo = ConfigEcho(
        endpoint=config.name, region=config.region, p99_latency_ms=config.slo.p99_latency_ms,
        max_error_rate=config.slo.max_error_rate, max_regression=config.slo.max_regression, steps=steps,
        prices=tuple(prices[n] for n in VARIANTS), gpu_warm_floor=config.variant(GPU).min_count,
        baseline_method=(f"the same per-minute traffic on {gpu_sizing.instance_type} alone: "
                         f"max(min_count {gpu_sizing.min_count}, requests / target "
                         f"{gpu_sizing.target_invocations_per_instance:g} per instance per minute, "
                         f"rps / capacity {gpu_sizing.capacity_rps_per_instance:g}) instances"),
    )
    notes = [f"Decision records: {source} ({len(decisions)} in the window).",
             "Latency, traffic and 5XX: CloudWatch AWS/SageMaker, 1 point per minute; instances and shares: "
             "the live endpoint as each tick recorded it."]
    if not decisions:
        notes.append("No decision records in this window: the timeline shows CloudWatch only.")
    if not any(m.invocations for m in minutes):
        notes.append("CloudWatch returned no Invocations for this window: it keeps 1-minute data for 15 days, "
                     "5-minute data for 63 (try --period 300); costs shown are the instances' only.")
    return ReportInput(
        title=f"hybrid rollout: {config.name} ({config.region})",
        subtitle=f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC",
        start=start, minutes=minutes, decisions=decisions, config=echo,
        x_label=f"minutes since {start:%Y-%m-%d %H:%M} UTC", notes=notes,
    )


def price_echoes(config: Any, *, live: bool = False, pricing_client: Any = None) -> dict[str, PriceEcho]:
    """Each variant's $/hour with where it came from (config, Pricing API, or the built-in table)."""
    from toolkit.pricing import PRICE_SOURCE, quote

    out: dict[str, PriceEcho] = {}
    for name in VARIANTS:
        instance_type = config.variant(name).instance_type
        q = quote([instance_type], overrides=config.prices, live=live, pricing_client=pricing_client,
                  region=config.region)[0]
        source = {"config": "hybrid.yaml prices:", "pricing-api": f"AWS Pricing API ({q.region})"}.get(
            q.source, PRICE_SOURCE)
        if q.note:
            source += f"; {q.note}"
        out[name] = PriceEcho(name, instance_type, q.price_per_hour, source)
    return out
