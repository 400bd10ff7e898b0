"""From CloudWatch series to an Observation: the pure half of the metrics adapter.

routing/adapters/cloudwatch.py fetches (paged GetMetricData) and hands the series, keyed by query
id and minute, to `observation_from`, which builds the per-minute rows and applies the one
judgement made here: when a minute has ModelLatency samples but no p99 (SageMaker's docs do not
list percentiles for ModelLatency; verify on a live endpoint), Average stands in for p50 and
Maximum for p90/p99 (a conservative stand-in), and the observation says percentiles_available=False.
ModelLatency arrives in MICROSECONDS and is converted to milliseconds here, once.

A result is only data when CloudWatch says so: each MetricDataResult carries a StatusCode.
`Complete` is data; `PartialData` means more pages follow (the adapter follows NextToken), and a
PartialData still standing after the last page is an incomplete answer; `InternalError` and
`Forbidden` mean CloudWatch could not answer that query, NOT that the variant was silent.
`unreadable_reason` turns such statuses into the reason the observation is unknown (the policy
then holds, and fails safe after fallback.max_unknown_ticks), never into missing minutes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from routing.core.model import CLIENT_METRICS_NAMESPACE as CLIENT_NAMESPACE
from routing.core.model import (
    FALLBACK_METRIC,
    PARITY_AGREED_METRIC,
    PARITY_COMPARED_METRIC,
    TARGETED_METRIC,
    MinuteMetrics,
    Observation,
)

NAMESPACE = "AWS/SageMaker"
Series = Mapping[str, Mapping[datetime, float]]  # query id ("<key>_<variant index>") -> minute start -> value

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
    # Online parity (issue 17): published by the client with VariantName=neuron; per-minute fields of the rows.
    _Query("parity_compared", CLIENT_NAMESPACE, PARITY_COMPARED_METRIC, "Sum"),
    _Query("parity_agreed", CLIENT_NAMESPACE, PARITY_AGREED_METRIC, "Sum"),
)
PARITY_KEYS = ("parity_compared", "parity_agreed")  # client-namespace queries that land in MinuteMetrics


COMPLETE = "Complete"
PARTIAL = "PartialData"
UNREADABLE_STATUSES = ("InternalError", "Forbidden")


@dataclass(frozen=True)
class QueryStatus:
    """One query's StatusCode after every page, with CloudWatch's messages for it (if any)."""

    status: str
    messages: tuple[str, ...] = ()


def unreadable_reason(statuses: Mapping[str, QueryStatus]) -> str | None:
    """Why these GetMetricData results cannot be read as data, or None when every query is Complete.

    Pure. Statuses are keyed by query id. Unknown status codes count as unreadable too: a new
    code must not silently become silence.
    """
    bad = {qid: st for qid, st in statuses.items() if st.status != COMPLETE}
    if not bad:
        return None
    by_status: dict[str, list[str]] = {}
    for qid in sorted(bad):
        by_status.setdefault(bad[qid].status, []).append(qid)
    parts = []
    for status in sorted(by_status):
        ids = by_status[status]
        shown = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
        what = "incomplete after the last page" if status == PARTIAL else status
        messages = sorted({m for qid in ids for m in bad[qid].messages})
        parts.append(f"{what} for {shown}" + (f" ({'; '.join(messages[:2])})" if messages else ""))
    hint = " (Forbidden: the role lacks cloudwatch:GetMetricData on a namespace or a KMS key)" \
        if "Forbidden" in by_status else ""
    return "GetMetricData answered without data: " + "; ".join(parts) + hint


def floor_minute(when: datetime) -> datetime:
    when = when.astimezone(UTC)
    return when.replace(second=0, microsecond=0)


def observation_from(series: Series, variants: Sequence[str], start: datetime,
                     end: datetime) -> tuple[Observation, dict[str, float]]:
    """(the Observation of the closed minutes [start, end), client fallback retries per variant). Pure."""
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
                    **{key: get(key, ts) or 0.0 for key in PARITY_KEYS},
                )
            )
        per_variant[variant] = tuple(rows)
        targeted[variant] = sum(series.get(f"targeted_{index}", {}).values())
        fallbacks[variant] = sum(series.get(f"fallback_{index}", {}).values())
    return Observation(
        window_start=start,
        window_end=end,
        minutes=per_variant,
        targeted=targeted,
        percentiles_available=percentiles_ok,
    ), fallbacks


def reject_non_finite(observation: Observation) -> Observation:
    """NaN or an infinity anywhere in the minutes makes the whole observation unknown (error set,
    minutes dropped): the tick holds, and `fallback.max_unknown_ticks` unknown ticks in a row fall
    back, exactly as when CloudWatch cannot be read. Kept apart from observation_from (the
    controller calls it at the boundary) so the parsing and this rule change independently."""
    if not observation.known:
        return observation
    for variant, minutes in observation.minutes.items():
        for minute in minutes:
            for name, value in ((f.name, getattr(minute, f.name)) for f in fields(minute)):
                if isinstance(value, float) and not math.isfinite(value):
                    return replace(observation, minutes={}, targeted={},
                                   error=f"CloudWatch returned {value} for {variant} {name} at "
                                         f"{minute.start.isoformat()}: a non-finite value is unknown, not a number")
    return observation
