"""CloudWatch metrics adapter: one batched GetMetricData per tick for both variants.

What it reads (namespace AWS/SageMaker, dimensions EndpointName + VariantName, Period 60):
Invocations, Invocation4XXErrors, Invocation5XXErrors, InvocationModelErrors,
InvocationsPerInstance (Sum) and ModelLatency p50/p90/p99, SampleCount, Average, Maximum; plus
the client helper's HybridRouting/Client TargetedInvocations / FallbackInvocations (Sum), all in
the SAME call (CloudWatch takes up to 500 queries per call and bills per metric requested).

Closed minutes only: EndTime is the current minute's start minus an optional settle delay, so
the minute still being written (and, with a delay, the one CloudWatch is still aggregating) is
never judged. ModelLatency arrives in MICROSECONDS and is converted to milliseconds here, once.

SageMaker's docs do not list percentiles for ModelLatency (verify on a live endpoint): when a
minute has SampleCount > 0 but no p99, Average stands in for p50 and Maximum for p90/p99 (a
conservative stand-in) and the observation says percentiles_available=False.

AWS errors never raise: they become Observation(error=...), and the policy holds (and fails
safe after fallback.max_unknown_ticks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# The client's targeted/fallback counts: one definition of their names, in routing/client.py.
from routing.core.model import CLIENT_METRICS_NAMESPACE as CLIENT_NAMESPACE
from routing.core.model import FALLBACK_METRIC, TARGETED_METRIC, MinuteMetrics, Observation

log = logging.getLogger(__name__)

NAMESPACE = "AWS/SageMaker"

PERIOD = 60
MICROSECONDS_PER_MS = 1000.0


@dataclass(frozen=True)
class _Query:
    key: str  # MinuteMetrics field (or targeted/fallback)
    namespace: str
    metric: str
    stat: str
    latency: bool = False  # value in microseconds: convert


# Per variant, in this order; query ids are "<key>_<variant index>" (ids must start lower-case).
QUERIES: tuple[_Query, ...] = (
    _Query("invocations", NAMESPACE, "Invocations", "Sum"),
    _Query("errors_4xx", NAMESPACE, "Invocation4XXErrors", "Sum"),
    _Query("errors_5xx", NAMESPACE, "Invocation5XXErrors", "Sum"),
    _Query("model_errors", NAMESPACE, "InvocationModelErrors", "Sum"),
    _Query("invocations_per_instance", NAMESPACE, "InvocationsPerInstance", "Sum"),
    _Query("latency_p50_ms", NAMESPACE, "ModelLatency", "p50", latency=True),
    _Query("latency_p90_ms", NAMESPACE, "ModelLatency", "p90", latency=True),
    _Query("latency_p99_ms", NAMESPACE, "ModelLatency", "p99", latency=True),
    _Query("latency_avg_ms", NAMESPACE, "ModelLatency", "Average", latency=True),
    _Query("latency_max_ms", NAMESPACE, "ModelLatency", "Maximum", latency=True),
    _Query("latency_samples", NAMESPACE, "ModelLatency", "SampleCount"),
    _Query("targeted", CLIENT_NAMESPACE, TARGETED_METRIC, "Sum"),
    _Query("fallback", CLIENT_NAMESPACE, FALLBACK_METRIC, "Sum"),
)


def floor_minute(when: datetime) -> datetime:
    when = when.astimezone(UTC)
    return when.replace(second=0, microsecond=0)


def metric_window(now: datetime, minutes: int, settle_seconds: int = 0) -> tuple[datetime, datetime]:
    """(StartTime, EndTime): `minutes` whole closed minutes ending at the newest closed minute."""
    end = floor_minute(now - timedelta(seconds=settle_seconds))
    return end - timedelta(minutes=max(1, minutes)), end


def build_queries(endpoint: str, variants: Sequence[str]) -> list[dict[str, Any]]:
    queries: list[dict[str, Any]] = []
    for index, variant in enumerate(variants):
        dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        for q in QUERIES:
            queries.append(
                {
                    "Id": f"{q.key}_{index}",
                    "MetricStat": {
                        "Metric": {"Namespace": q.namespace, "MetricName": q.metric, "Dimensions": dims},
                        "Period": PERIOD,
                        "Stat": q.stat,
                    },
                    "ReturnData": True,
                }
            )
    return queries


class CloudWatchMetrics:
    """MetricsSource over CloudWatch GetMetricData.

    settle_seconds: extra delay before a minute counts as closed (CloudWatch may still be
    aggregating the newest minute for a little while after it ends). `api_calls` counts
    GetMetricData calls (pages included) for the bench.
    """

    def __init__(self, cloudwatch: Any, settle_seconds: int = 0) -> None:
        self._cw = cloudwatch
        self.settle_seconds = settle_seconds
        self.api_calls = 0
        self.last_fallbacks: dict[str, float] = {}  # client fallback retries per variant, last window

    def observe(self, endpoint: str, variants: Sequence[str], now: datetime, minutes: int) -> Observation:
        from botocore.exceptions import BotoCoreError, ClientError

        start, end = metric_window(now, minutes, self.settle_seconds)
        queries = build_queries(endpoint, variants)
        series: dict[str, dict[datetime, float]] = {}
        try:
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "MetricDataQueries": queries,
                    "StartTime": start,
                    "EndTime": end,
                    "ScanBy": "TimestampAscending",
                }
                if token:
                    kwargs["NextToken"] = token
                self.api_calls += 1
                response = self._cw.get_metric_data(**kwargs)
                for result in response.get("MetricDataResults", []):
                    points = series.setdefault(result["Id"], {})
                    for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                        points[floor_minute(ts)] = float(value)
                token = response.get("NextToken")
                if not token:
                    break
        except (ClientError, BotoCoreError) as error:
            log.warning("GetMetricData failed for %s: %s", endpoint, error)
            return Observation(window_start=start, window_end=end, error=f"GetMetricData: {error}")

        minute_starts = [start + timedelta(minutes=i) for i in range(int((end - start).total_seconds() // 60))]
        per_variant: dict[str, tuple[MinuteMetrics, ...]] = {}
        targeted: dict[str, float] = {}
        fallbacks: dict[str, float] = {}
        percentiles_ok = True
        for index, variant in enumerate(variants):
            def get(key: str, ts: datetime, index: int = index) -> float | None:
                return series.get(f"{key}_{index}", {}).get(ts)

            rows: list[MinuteMetrics] = []
            for ts in minute_starts:
                values: dict[str, Any] = {}
                for q in QUERIES:
                    if q.namespace != NAMESPACE:
                        continue
                    value = get(q.key, ts)
                    if value is not None and q.latency:
                        value = value / MICROSECONDS_PER_MS
                    values[q.key] = value
                samples = values.get("latency_samples") or 0.0
                if samples > 0 and values.get("latency_p99_ms") is None:
                    percentiles_ok = False
                    avg, peak = values.get("latency_avg_ms"), values.get("latency_max_ms")
                    if values.get("latency_p50_ms") is None:
                        values["latency_p50_ms"] = avg
                    if values.get("latency_p90_ms") is None:
                        values["latency_p90_ms"] = peak
                    values["latency_p99_ms"] = peak
                rows.append(
                    MinuteMetrics(
                        start=ts,
                        invocations=values["invocations"],
                        errors_4xx=values["errors_4xx"] or 0.0,
                        errors_5xx=values["errors_5xx"] or 0.0,
                        model_errors=values["model_errors"] or 0.0,
                        latency_p50_ms=values["latency_p50_ms"],
                        latency_p90_ms=values["latency_p90_ms"],
                        latency_p99_ms=values["latency_p99_ms"],
                        latency_avg_ms=values["latency_avg_ms"],
                        latency_max_ms=values["latency_max_ms"],
                        latency_samples=samples,
                        invocations_per_instance=values["invocations_per_instance"],
                    )
                )
            per_variant[variant] = tuple(rows)
            targeted[variant] = sum(series.get(f"targeted_{index}", {}).values())
            fallbacks[variant] = sum(series.get(f"fallback_{index}", {}).values())
        self.last_fallbacks = fallbacks
        if not percentiles_ok:
            log.warning("ModelLatency percentiles empty for %s: Average/Maximum stand in", endpoint)
        return Observation(
            window_start=start,
            window_end=end,
            minutes=per_variant,
            targeted=targeted,
            percentiles_available=percentiles_ok,
        )
