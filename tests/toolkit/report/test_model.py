"""The report's record parser, episodes and summary: pure, no AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from toolkit.report.model import (
    ConfigEcho,
    MinuteSample,
    PriceEcho,
    ReportInput,
    VariantSample,
    episodes,
    fmt_money,
    parse_record,
    read_records_jsonl,
    summarize,
    with_minutes,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def _record(minute: int, phase: str, action: str, **extra) -> dict:
    return {"time": (START + timedelta(minutes=minute, seconds=5)).isoformat(), "command": "tick",
            "phase": phase, "action": action, "reason": f"{action} at {minute}", **extra}


def test_a_record_as_the_controller_writes_it_is_read_with_step_gates_and_live_split():
    data = _record(3, "ramping", "progress", step={"k": 2, "n": 6, "neuron_percent": 9.1},
                   failed_gates=["latency_slo"], applied=True,
                   after={"status": "Updating", "variants": {
                       "neuron": {"share_percent": 9.1, "current_instance_count": 2},
                       "gpu": {"share_percent": 90.9, "current_instance_count": 4}}})
    d = parse_record(data)
    assert (d.phase, d.action, d.step_k, d.step_n, d.step_percent) == ("ramping", "progress", 2, 6, 9.1)
    assert d.failed_gates == ("latency_slo",) and d.applied
    assert d.shares == {"neuron": 9.1, "gpu": 90.9} and d.instances == {"neuron": 2.0, "gpu": 4.0}


def test_missing_odd_and_unknown_keys_never_raise():
    d = parse_record({"time": "not a time", "step": "3", "phase": {"value": "holding"}, "gates": None,
                      "failed_gates": [{"name": "errors"}], "after": "garbage", "new_key": 1})
    assert d.time is None and d.step_k == 3 and d.phase == "holding" and d.failed_gates == ("errors",)
    empty = parse_record({})
    assert (empty.phase, empty.action, empty.command, empty.reason) == ("idle", "none", "tick", "")


def test_torn_and_non_object_lines_are_skipped():
    text = '{"action": "hold"}\n[1, 2]\n{"action": "prog\n\n{"action": "fallback"}\n'
    assert [r["action"] for r in read_records_jsonl(text)] == ["hold", "fallback"]


def test_eleven_fallback_ticks_and_their_cool_down_are_one_episode_with_its_duration():
    records = [_record(0, "ramping", "progress", step={"k": 1, "n": 2, "neuron_percent": 50})]
    records += [_record(m, "falling_back", "fallback", failed_gates=["latency_slo"]) for m in range(5, 16)]
    records += [_record(m, "cooling_down", "none") for m in range(16, 25)]
    records += [_record(25, "ramping", "progress", step={"k": 1, "n": 2, "neuron_percent": 50})]
    decisions = with_minutes([parse_record(r) for r in records], START)
    eps = episodes(decisions, end_minute=30)
    assert [e.kind for e in eps] == ["ramp", "fallback", "ramp"]
    fallback = eps[1]
    assert fallback.actions == {"fallback": 11} and fallback.decisions == 20
    assert round(fallback.minutes) == 20 and "latency_slo" in fallback.detail
    assert fallback.reason == "fallback at 5"


def test_a_second_fallback_after_the_ramp_resumed_is_a_second_episode():
    records = [_record(1, "falling_back", "fallback"), _record(3, "ramping", "progress"),
               _record(6, "falling_back", "fallback")]
    eps = episodes(with_minutes([parse_record(r) for r in records], START), end_minute=10)
    assert [e.kind for e in eps] == ["fallback", "ramp", "fallback"]


def _report(costs: list[tuple[float, float]], baseline: float | None) -> ReportInput:
    config = ConfigEcho("e", "us-east-1", 150, 0.01, 0.5, (50.0, 100.0),
                        (PriceEcho("neuron", "ml.inf2.xlarge", 0.99, "table"),), 1)
    minutes = [MinuteSample(i, {"neuron": VariantSample(invocations=100, cost=n, share_percent=100.0),
                                "gpu": VariantSample(invocations=100, cost=g)}, all_gpu_cost=baseline)
               for i, (n, g) in enumerate(costs)]
    return ReportInput("t", "s", START, minutes, [], config)


def test_summary_savings_and_cost_per_1k_come_from_the_minutes():
    s = summarize(_report([(0.01, 0.02)] * 10, baseline=0.04))
    assert abs(s.cost - 0.3) < 1e-12 and abs(s.all_gpu_cost - 0.4) < 1e-12
    assert abs(s.savings_fraction - 0.25) < 1e-12
    assert abs(s.cost_per_1k["neuron"] - 0.1) < 1e-12 and abs(s.hybrid_cost_per_1k - 0.15) < 1e-12
    assert s.verdict.startswith("Migrated") and "saved 25.0% vs all-GPU" in s.verdict


def test_without_a_counterfactual_the_savings_are_unknown_not_zero():
    s = summarize(_report([(0.01, 0.02)] * 3, baseline=None))
    assert s.all_gpu_cost is None and s.savings_fraction is None and "saved" not in s.verdict


@given(st.floats(min_value=-1e7, max_value=1e7, allow_nan=False))
def test_money_is_formatted_with_a_dollar_sign_and_two_decimals(value):
    text = fmt_money(value)
    assert "$" in text and text.count(".") == 1 and len(text.split(".")[1]) == 2
    assert text.startswith("-") == (round(value, 2) < 0)
