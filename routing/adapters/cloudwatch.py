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
safe after fallback.max_unknown_ticks). The same for results CloudWatch marks InternalError or
Forbidden, or still PartialData after the last page: an unknown observation with the reason
(routing/core/observations.py `unreadable_reason`), never "no data" (which reads as silence).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

# The query definitions and the pure series -> Observation step live in the core (re-exported here).
from routing.core.model import Observation
from routing.core.observations import (  # noqa: F401
    CLIENT_NAMESPACE,
    FALLBACK_METRIC,
    NAMESPACE,
    PERIOD,
    QUERIES,
    TARGETED_METRIC,
    QueryStatus,
    floor_minute,
    observation_from,
    unreadable_reason,
)

log = logging.getLogger(__name__)

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
        self.last_statuses: dict[str, QueryStatus] = {}  # per query id, from the last fetch

    def observe(self, endpoint: str, variants: Sequence[str], now: datetime, minutes: int) -> Observation:
        from botocore.exceptions import BotoCoreError, ClientError

        start, end = metric_window(now, minutes, self.settle_seconds)
        queries = build_queries(endpoint, variants)
        try:
            series = self.fetch(queries, start, end)
        except (ClientError, BotoCoreError) as error:
            log.warning("GetMetricData failed for %s: %s", endpoint, error)
            return Observation(window_start=start, window_end=end, error=f"GetMetricData: {error}")
        reason = unreadable_reason(self.last_statuses)
        if reason is not None:
            log.warning("%s: %s", endpoint, reason)
            self.last_fallbacks = {}
            return Observation(window_start=start, window_end=end, error=reason)
        observation, self.last_fallbacks = observation_from(series, variants, start, end)
        if not observation.percentiles_available:
            log.warning("ModelLatency percentiles empty for %s: Average/Maximum stand in", endpoint)
        return observation

    def fetch(self, queries: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, dict[datetime, float]]:
        """Every page of one GetMetricData: query id -> minute start -> value.

        Each query's StatusCode goes to `last_statuses`: a PartialData page is followed by the
        next (NextToken); InternalError/Forbidden on any page sticks (that query's data is not
        all there, whatever the later pages say).
        """
        series: dict[str, dict[datetime, float]] = {}
        statuses: dict[str, QueryStatus] = {}
        self.last_statuses = statuses
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
            page_messages = tuple(f"{m.get('Code', '')}: {m.get('Value', '')}".strip(": ")
                                  for m in response.get("Messages", []) or [])
            for result in response.get("MetricDataResults", []):
                status = str(result.get("StatusCode") or "Complete")
                messages = tuple(f"{m.get('Code', '')}: {m.get('Value', '')}".strip(": ")
                                 for m in result.get("Messages", []) or []) or page_messages
                previous = statuses.get(result["Id"])
                if previous is None or previous.status not in ("InternalError", "Forbidden"):
                    statuses[result["Id"]] = QueryStatus(status, messages)
                points = series.setdefault(result["Id"], {})
                for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    points[floor_minute(ts)] = float(value)
            token = response.get("NextToken")
            if not token:
                return series
