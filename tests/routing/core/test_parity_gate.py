"""The parity gate: a one-sided test on disagreement with a minimum sample, absent when online parity is off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from routing.core.model import Gate, MinuteMetrics
from routing.core.parity_gate import MIN_DISAGREEMENTS, ParityCounts, assess_parity, parity_gate
from tests.routing.core.policy_world import make_config

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def counts(compared: float, agreed: float) -> ParityCounts:
    return ParityCounts(compared, agreed)


def test_five_percent_disagreement_on_a_few_hundred_comparisons_is_a_breach_with_its_numbers():
    gate, stats = parity_gate(counts(300, 285), counts(300, 285), min_agreement=0.99, min_sample=200)
    assert gate.name == Gate.PARITY and gate.passed is False
    assert "15 of 300" in gate.detail and "5.00% > 1.00%" in gate.detail
    assert gate.value == 0.95 and gate.threshold == 0.99 and stats["z"] > 2.33


def test_a_few_disagreements_on_a_small_sample_hold_instead_of_falling_back():
    gate, _ = parity_gate(counts(40, 37), counts(40, 37), min_agreement=0.99, min_sample=200)
    assert gate.passed is None and "40 of 200" in gate.detail


def test_fewer_than_the_minimum_disagreements_is_never_a_breach_even_at_a_zero_cap():
    gate, _ = parity_gate(counts(10, 10 - (MIN_DISAGREEMENTS - 1)), counts(10, 10 - (MIN_DISAGREEMENTS - 1)),
                          min_agreement=1.0, min_sample=5)
    assert gate.passed is not False


def test_agreement_above_the_threshold_with_the_sample_passes():
    gate, _ = parity_gate(counts(250, 249), counts(250, 249), min_agreement=0.99, min_sample=200)
    assert gate.passed is True and gate.value == 0.996


def test_the_step_passes_only_on_its_own_sample_even_when_earlier_minutes_had_more():
    gate, _ = parity_gate(counts(50, 50), counts(400, 400), min_agreement=0.99, min_sample=200)
    assert gate.passed is None


@given(st.integers(0, 2000), st.floats(0.0, 1.0), st.floats(0.5, 1.0))
def test_agreement_at_or_above_the_threshold_never_breaches(compared, agreement, threshold):
    agreed = round(compared * max(agreement, threshold) + 0.5)
    agreed = min(compared, agreed)
    gate, _ = parity_gate(counts(compared, agreed), counts(compared, agreed), threshold, 100)
    assert gate.passed is not False


def minute(i: int, compared: float, agreed: float) -> MinuteMetrics:
    return MinuteMetrics(start=T0 + timedelta(minutes=i), invocations=100.0, parity_compared=compared,
                         parity_agreed=agreed)


def test_no_gate_when_online_parity_is_off_and_one_when_the_client_mirrors():
    rows = [minute(0, 100, 100), minute(1, 150, 149)]
    assert assess_parity(make_config(), rows, rows) is None  # the default: mirror_fraction 0
    on = make_config(parity={"online": {"mirror_fraction": 0.1, "min_sample": 200}})
    gate, stats = assess_parity(on, rows, rows)
    assert gate.passed is True and stats["compared"] == 250


def test_wrong_answers_that_start_mid_ramp_are_not_diluted_by_the_clean_comparisons_before_them():
    # 20 clean minutes of 100 comparisons, then 2 minutes with 5% disagreeing: 10 of 2,200 overall
    # (0.45%, under the 1% cap), 10 of 200 in the newest two minutes (5%, z = 4.0).
    on = make_config(parity={"min_agreement": 0.99, "online": {"mirror_fraction": 0.05, "min_sample": 100}})
    rows = [minute(i, 100, 100) for i in range(20)] + [minute(20, 100, 95), minute(21, 100, 95)]
    gate, _ = assess_parity(on, rows[-2:], rows)
    assert gate.passed is False and "10 of 200" in gate.detail
    whole_only, _ = parity_gate(ParityCounts.of(rows[-2:]), ParityCounts.of(rows), 0.99, 100)
    assert whole_only.passed is not False  # the ramp's totals alone would hold: diluted
