"""series -> Observation without AWS: units, missing minutes, and the p99 stand-in rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from routing.core.observations import observation_from

T0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
VARIANTS = ("neuron", "gpu")


def test_latency_is_converted_from_microseconds_once_and_missing_minutes_have_no_data() -> None:
    series = {"invocations_0": {T0: 120.0}, "latency_p99_ms_0": {T0: 80_000.0}, "latency_samples_0": {T0: 120.0},
              "targeted_1": {T0: 3.0, T0 + timedelta(minutes=1): 2.0}, "fallback_1": {T0: 1.0}}
    observation, fallbacks = observation_from(series, VARIANTS, T0, T0 + timedelta(minutes=2))
    first, second = observation.minutes["neuron"]
    assert first.invocations == 120.0 and first.latency_p99_ms == 80.0
    assert second.start == T0 + timedelta(minutes=1) and not second.has_data
    assert observation.percentiles_available
    assert observation.targeted == {"neuron": 0, "gpu": 5.0} and fallbacks == {"neuron": 0, "gpu": 1.0}


def test_without_percentiles_average_and_maximum_stand_in_and_the_observation_says_so() -> None:
    series = {"invocations_0": {T0: 100.0}, "latency_samples_0": {T0: 100.0},
              "latency_avg_ms_0": {T0: 40_000.0}, "latency_max_ms_0": {T0: 200_000.0}}
    observation, _ = observation_from(series, VARIANTS, T0, T0 + timedelta(minutes=1))
    (minute,) = observation.minutes["neuron"]
    assert (minute.latency_p50_ms, minute.latency_p90_ms, minute.latency_p99_ms) == (40.0, 200.0, 200.0)
    assert observation.percentiles_available is False


def test_unreadable_reason_names_each_bad_status_and_query() -> None:
    from routing.core.observations import QueryStatus, unreadable_reason

    assert unreadable_reason({"invocations_0": QueryStatus("Complete")}) is None
    assert unreadable_reason({}) is None
    reason = unreadable_reason({"invocations_0": QueryStatus("Forbidden", ("AccessDenied: no",)),
                                "errors_5xx_1": QueryStatus("InternalError"),
                                "latency_p99_ms_0": QueryStatus("PartialData"),
                                "targeted_0": QueryStatus("SomethingNew")})
    assert reason is not None
    for part in ("Forbidden for invocations_0", "AccessDenied: no", "InternalError for errors_5xx_1",
                 "incomplete after the last page for latency_p99_ms_0", "SomethingNew for targeted_0"):
        assert part in reason
