"""The statistics behind the gates: values checked against hand computations."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from routing import gates
from routing.model import MinuteMetrics
from routing.stats import (
    StepTotals,
    instances_for,
    normal_sf,
    one_proportion_z,
    pooled_p99,
    summarize,
    two_proportion_z,
)

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def minute(i: int, invocations: float | None, p99: float | None = None, errors: float = 0.0) -> MinuteMetrics:
    return MinuteMetrics(start=T0 + timedelta(minutes=i), invocations=invocations, errors_5xx=errors,
                         latency_p99_ms=p99, latency_samples=invocations or 0.0)


def test_normal_tail_matches_known_quantiles():
    assert normal_sf(0.0) == pytest.approx(0.5)
    assert normal_sf(1.6448536) == pytest.approx(0.05, abs=1e-6)
    assert normal_sf(2.3263479) == pytest.approx(0.01, abs=1e-6)


def test_two_proportion_z_matches_the_pooled_formula():
    # p1 = 0.1, p2 = 0.025, pooled 0.05: se = sqrt(0.05 * 0.95 * (1/100 + 1/200)) = 0.026693
    test = two_proportion_z(10, 100, 5, 200)
    assert test.z == pytest.approx(0.075 / math.sqrt(0.05 * 0.95 * 0.015))
    assert test.z == pytest.approx(2.8098, abs=1e-3)
    assert test.p_value == pytest.approx(normal_sf(test.z))
    assert test.significant(0.01) and not two_proportion_z(5, 200, 10, 100).significant(0.01)


def test_two_proportion_z_without_errors_or_requests_has_no_evidence():
    assert two_proportion_z(0, 100, 0, 100).p_value == 0.5
    assert two_proportion_z(1, 0, 0, 100).z is None
    assert not two_proportion_z(1, 0, 0, 100).significant(0.5)


def test_one_error_in_twenty_requests_is_not_significant_against_the_cap():
    test = one_proportion_z(1, 20, 0.01)
    assert test.z == pytest.approx((0.05 - 0.01) / math.sqrt(0.01 * 0.99 / 20))
    assert not test.significant(gates.ALPHA)
    assert one_proportion_z(20, 200, 0.01).significant(gates.ALPHA)


def test_one_proportion_against_a_zero_cap():
    assert one_proportion_z(1, 100, 0.0).significant(0.01)
    assert one_proportion_z(1, 100, 0.0).z is None  # no infinities in JSON records
    assert not one_proportion_z(0, 100, 0.0).significant(0.01)


def test_pooled_p99_weights_busy_minutes_more():
    # 900 requests at 40 ms and 100 at 400 ms: (900 x 40 + 100 x 400) / 1000 = 76 ms
    assert pooled_p99([minute(0, 900, 40.0), minute(1, 100, 400.0)]) == pytest.approx(76.0)
    assert pooled_p99([minute(0, None), minute(1, 10, None)]) is None


def test_summarize_adds_closed_minutes_and_skips_missing_ones():
    summary = summarize([minute(0, 100, 50.0, errors=2), minute(1, None), minute(2, 300, 30.0, errors=1)])
    assert (summary.minutes, summary.minutes_with_data) == (3, 2)
    assert summary.invocations == 400 and summary.errors_5xx == 3
    assert summary.error_rate == pytest.approx(3 / 400)
    assert summary.p99_ms == pytest.approx((100 * 50 + 300 * 30) / 400)


def test_step_totals_add_each_minute_and_pair_only_minutes_with_both_p99s():
    totals = StepTotals().add(
        [minute(0, 100, 50.0, errors=1), minute(1, 100, 70.0)],
        [minute(0, 900, 40.0), minute(1, 900, None)],
    )
    assert totals.minutes == 2
    assert (totals.neuron_invocations, totals.neuron_5xx, totals.gpu_invocations) == (200, 1, 1800)
    assert totals.neuron_p99 == pytest.approx(60.0)
    assert totals.pair_p99s == (pytest.approx(50.0), pytest.approx(40.0))
    assert StepTotals.from_dict(totals.to_dict()) == totals
    assert StepTotals.from_dict(None) == StepTotals()


def test_instances_for_rounds_up_within_bounds():
    assert instances_for(100, 20, 1, 8, factor=1.2) == 6
    assert instances_for(100.0001, 20, 1, 8, factor=1.2) == 7
    assert instances_for(0, 20, 1, 8) == 1
    assert instances_for(1000, 20, 1, 8) == 8


def test_noise_rule_needs_two_of_three_minutes_and_the_aggregate():
    assert not gates.confirmed_above([(400, 150, 100), (40, 150, 100), (40, 150, 100)], 60)
    assert gates.confirmed_above([(40, 150, 100), (400, 150, 100), (400, 150, 100)], 60)
    # Two minutes just above, one far below: the aggregate holds the verdict back.
    assert not gates.confirmed_above([(160, 150, 100), (160, 150, 100), (10, 150, 100)], 60)
    # Too few requests behind the breach: a p99 of 10 requests is one slow request.
    assert not gates.confirmed_above([(400, 150, 5), (400, 150, 5)], 60)
