"""Thin adapter: the variants' per-period CloudWatch history (GetMetricData), for `hybrid report` and `hybrid plan`.

SageMaker publishes under AWS/SageMaker with dimensions EndpointName + VariantName; ModelLatency
is in MICROSECONDS (converted to ms here). CloudWatch keeps 1-minute data for 15 days, 5-minute
data for 63 days: callers pick the period (`period_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from toolkit.errors import AwsError

NAMESPACE = "AWS/SageMaker"
MICROSECONDS_PER_MS = 1000.0
MAX_QUERIES = 500  # GetMetricData limit per call
ONE_MINUTE_RETENTION = timedelta(days=15)

# key -> (metric, stat)
METRICS = {
    "invocations": ("Invocations", "Sum"),
    "errors_5xx": ("Invocation5XXErrors", "Sum"),
    "p99_ms": ("ModelLatency", "p99"),
    "invocations_per_instance": ("InvocationsPerInstance", "Sum"),
}


@dataclass
class VariantHistory:
    """Per-period values (period start -> value) of one variant; a missing key means no datapoint."""

    series: dict[str, dict[datetime, float]] = field(default_factory=dict)

    def get(self, key: str, when: datetime) -> float | None:
        return self.series.get(key, {}).get(when)


def period_for(start: datetime, now: datetime | None = None) -> int:
    """60 s while CloudWatch still has 1-minute data for `start`, else 300 s."""
    now = now or datetime.now(UTC)
    return 60 if now - start < ONE_MINUTE_RETENTION else 300


def _floor(when: datetime, period: int) -> datetime:
    when = when.astimezone(UTC)
    seconds = int(when.timestamp()) // period * period
    return datetime.fromtimestamp(seconds, UTC)


def read_history(cloudwatch: Any, endpoint: str, variants: Sequence[str], start: datetime, end: datetime,
                 *, period: int = 60, metrics: Sequence[str] = tuple(METRICS)) -> dict[str, VariantHistory]:
    """GetMetricData for `metrics` of each variant over [start, end), paginated. AwsError on any failure."""
    from botocore.exceptions import BotoCoreError, ClientError

    queries: list[dict[str, Any]] = []
    for index, variant in enumerate(variants):
        dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        for key in metrics:
            metric, stat = METRICS[key]
            queries.append({"Id": f"{key}_{index}", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dims},
                "Period": period, "Stat": stat}})
    raw: dict[str, dict[datetime, float]] = {}
    try:
        for first in range(0, len(queries), MAX_QUERIES):
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"MetricDataQueries": queries[first:first + MAX_QUERIES],
                                          "StartTime": start, "EndTime": end, "ScanBy": "TimestampAscending"}
                if token:
                    kwargs["NextToken"] = token
                response = cloudwatch.get_metric_data(**kwargs)
                for result in response.get("MetricDataResults", []):
                    points = raw.setdefault(result["Id"], {})
                    for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                        points[_floor(ts, period)] = float(value)
                token = response.get("NextToken")
                if not token:
                    break
    except (ClientError, BotoCoreError) as error:
        raise AwsError(f"CloudWatch GetMetricData for {endpoint}: {error}") from None
    out: dict[str, VariantHistory] = {}
    for index, variant in enumerate(variants):
        history = VariantHistory()
        for key in metrics:
            points = raw.get(f"{key}_{index}", {})
            if key == "p99_ms":
                points = {ts: v / MICROSECONDS_PER_MS for ts, v in points.items()}
            history.series[key] = points
        out[variant] = history
    return out
