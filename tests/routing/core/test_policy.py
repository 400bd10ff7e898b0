"""Tick-by-tick tests of the decision core (Flagger style): one behaviour per test, injected clock."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import pytest

from routing import policy
from routing.model import Action, ControllerState, Phase
from tests.routing.core.policy_world import MINUTE, T0, Behaviour, World, make_config
from toolkit.config import GPU, NEURON


def shares(world: World) -> list[float]:
    return [d.target.weights[NEURON] for d in world.decisions if d.target is not None]


# ------------------------------------------------------------------------------------------------
# Ramp


def test_clean_ramp_walks_every_step_then_holds_at_the_target():
    world = World(make_config()).started()
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    assert [d.target.weights[NEURON] for d in world.decisions if d.action == Action.PROGRESS] == [10.0, 25.0, 50.0, 100.0]
    progressed = [d for d in world.decisions if d.action == Action.PROGRESS]
    assert len(progressed) == 4
    for decision in progressed[1:]:  # every step after the first was judged, with all gates passing
        assert {g.name for g in decision.gates if g.passed is True} >= {"sample", "latency_slo", "errors", "cost"}
    assert world.weights == {NEURON: 100.0, GPU: 0.0}


def test_progress_reason_states_the_judged_numbers():
    world = World(make_config()).started()
    decision = world.run_until(lambda d: d.action == Action.PROGRESS and d.state.step == 1)
    assert decision.reason.startswith("step 2/4")
    for fragment in ("neuron p99 40.0 ms <= 150 ms", "1.25 x gpu 38.0 ms", "5XX 0/", ">= 300 samples", "per 1K"):
        assert fragment in decision.reason
    assert decision.statistics["neuron_invocations"] >= 300
    assert decision.statistics["errors"]["z"] is not None


def test_high_traffic_migrates_faster_than_low_traffic():
    fast = World(make_config(), rps=100, counts={NEURON: 4, GPU: 6}).started()
    slow = World(make_config(), rps=3, counts={NEURON: 4, GPU: 6}).started()
    fast.run_until(lambda d: d.state.phase == Phase.HOLDING)
    slow.run_until(lambda d: d.state.phase == Phase.HOLDING, limit=400)
    assert fast.tick_no < slow.tick_no
    # At high traffic each step lasts min_bake (2 min) plus the shift and confirm ticks, not max_bake.
    assert fast.tick_no <= 4 * (2 + 2) + 1


@pytest.mark.parametrize("rps", [3.0, 20.0, 400.0])
def test_time_to_full_migration_follows_the_documented_formula(rps):
    # docs/routing.md: T = 1 + sum_k (1 + max(min_bake, ceil(min_sample / (s_k/100 x R x 60)))) minutes
    config = make_config(canary={"steps": None, "curve": {"kind": "exponential", "start": 5, "steps": 6},
                                 "max_bake_minutes": 30})
    world = World(config, rps=rps, counts={NEURON: 6, GPU: 8}).started()
    world.run_until(lambda d: d.state.phase == Phase.HOLDING, limit=500)
    canary = config.canary
    per_minute = [round(s / 100 * rps * 60) for s in canary.resolved_steps()]  # whole requests, as the world serves
    expected = 1 + sum(1 + max(canary.min_bake_minutes, math.ceil(canary.min_sample / n)) for n in per_minute)
    assert world.tick_no == expected


def test_step_waits_for_min_bake_even_when_the_sample_is_reached_at_once():
    world = World(make_config(canary={"min_bake_minutes": 4}), rps=200, counts={NEURON: 6, GPU: 8}).started()
    world.run_until(lambda d: d.action == Action.PROGRESS)  # step 1 shifted
    holds = 0
    while world.tick().action != Action.PROGRESS:
        holds += 1
    assert holds >= 4


def test_low_traffic_holds_at_max_bake_and_never_fails():
    world = World(make_config(), rps=1).started()
    decisions = world.run(20)
    assert all(d.action != Action.FALLBACK for d in decisions)
    assert world.phase() == Phase.RAMPING and world.state.step == 0
    last = decisions[-1]
    assert last.action == Action.HOLD
    assert "max bake 10 min reached with not enough sample" in last.reason
    sample = next(g for g in last.gates if g.name == "sample")
    assert sample.passed is None and sample.value < 300


def test_step_sample_accumulates_beyond_the_metrics_window():
    # 2 req/s at 10% is 12 requests a minute: 300 take 25 minutes, longer than the 11-minute window.
    world = World(make_config(), rps=2).started()
    decision = world.run_until(lambda d: d.action == Action.PROGRESS and d.state.step == 1, limit=60)
    assert decision.statistics["neuron_invocations"] >= 300
    assert world.tick_no > policy.window_minutes(world.config, world.state)


def test_cost_gate_holds_the_ramp_while_neuron_costs_more_per_inference():
    config = make_config(prices={"ml.inf2.xlarge": 9.0})
    world = World(config).started()
    decisions = world.run(10)
    assert world.state.step == 0 and world.phase() == Phase.RAMPING
    cost = next(g for g in decisions[-1].gates if g.name == "cost")
    assert cost.passed is False and cost.value > cost.threshold
    assert "not cheaper" in decisions[-1].reason
    assert all(d.action != Action.FALLBACK for d in decisions)


def test_migrate_even_if_costlier_keeps_ramping():
    config = make_config(prices={"ml.inf2.xlarge": 9.0}, canary={"migrate_even_if_costlier": True})
    world = World(config).started()
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    assert world.weights[NEURON] == 100.0


# ------------------------------------------------------------------------------------------------
# Gates that fall back


def test_latency_slo_breach_falls_back_with_the_failed_gate_and_its_numbers():
    world = World(make_config()).started()
    world.neuron = Behaviour(p99_ms=lambda tick: 40.0 if tick < 6 else 400.0)
    decision = world.run_until(lambda d: d.action == Action.FALLBACK)
    assert decision.target is not None and decision.target.weights == {NEURON: 0.0, GPU: 100.0}
    failed = {g.name: g for g in decision.failed_gates}
    assert failed["latency_slo"].value == pytest.approx(400.0)
    assert failed["latency_slo"].threshold == 150.0
    assert "400" in decision.reason and "150 ms" in decision.reason
    assert decision.state.phase == Phase.FALLING_BACK


def test_regression_against_gpu_on_the_same_minutes_falls_back_within_the_slo():
    world = World(make_config()).started()
    world.neuron = Behaviour(p99_ms=lambda tick: 40.0 if tick < 3 else 100.0)  # 100 < 150 SLO, > 1.25 x 38
    decision = world.run_until(lambda d: d.action == Action.FALLBACK)
    names = {g.name for g in decision.failed_gates}
    assert names == {"latency_regression"}
    gate = decision.failed_gates[0]
    assert gate.threshold == pytest.approx(1.25 * 38.0)


def test_a_latency_stand_in_without_percentiles_holds_instead_of_falling_back():
    world = World(make_config()).started()
    world.neuron = Behaviour(p99_ms=lambda tick: 40.0 if tick < 3 else 400.0)  # e.g. Maximum standing in
    real = world.observation

    def without_percentiles():
        return replace(real(), percentiles_available=False)

    world.observation = without_percentiles
    decisions = world.run(6)
    assert all(d.action != Action.FALLBACK for d in decisions)
    slo = next(g for g in decisions[-1].gates if g.name == "latency_slo")
    assert slo.passed is None and "p99 unavailable" in slo.detail
    assert decisions[-1].statistics["percentiles_available"] is False


def test_a_single_noisy_minute_does_not_fall_back():
    world = World(make_config()).started()
    world.neuron = Behaviour(p99_ms=lambda tick: 900.0 if tick == 3 else 40.0)
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    assert all(d.action != Action.FALLBACK for d in world.decisions)


def test_noisy_metrics_never_flap_the_split():
    # One breaching minute in every three, plus jitter: never 2 of the last 3.
    world = World(make_config()).started()
    world.neuron = Behaviour(p99_ms=lambda tick: 400.0 if tick % 3 == 0 else 40.0 + (tick % 5))
    world.run(60)
    assert all(d.action != Action.FALLBACK for d in world.decisions)
    moves = shares(world)
    assert moves == sorted(moves), f"the split moved back and forth: {moves}"


def test_error_burst_falls_back_in_the_tick_that_sees_the_burst_minute():
    world = World(make_config()).started()
    world.neuron = Behaviour(error_rate=lambda tick: 0.0 if tick < 6 else 0.2)
    decision = world.run_until(lambda d: d.action == Action.FALLBACK)
    assert world.tick_no == 6  # the tick that sees the first burst minute closed
    gate = next(g for g in decision.failed_gates if g.name == "errors")
    assert gate.value > gate.threshold == 0.01  # the burst minute pooled with the clean minutes before it
    assert decision.statistics["errors"]["z"] > 3


def test_one_error_in_twenty_requests_is_not_a_rollback():
    # neuron serves 20 requests a minute at 10% (200/min total); one of them fails each minute.
    world = World(make_config(), rps=200 / 60).started()
    world.neuron = Behaviour(error_rate=lambda tick: 0.05 if tick == 3 else 0.0)
    world.run(8)
    assert all(d.action != Action.FALLBACK for d in world.decisions)
    errors = next(g for g in world.decisions[-1].gates if g.name == "errors")
    assert errors.passed is True and "5XX 1/" in errors.detail


def test_persistent_errors_at_low_traffic_fall_back_once_the_evidence_is_significant():
    world = World(make_config(), rps=200 / 60).started()
    world.neuron = Behaviour(error_rate=0.05)  # one in twenty, every minute
    decision = world.run_until(lambda d: d.action == Action.FALLBACK, limit=30)
    stats = decision.statistics["errors"]
    assert stats["neuron_5xx"] >= 5 and stats["p_value"] < 0.01


def test_gpu_failing_as_much_as_neuron_is_no_reason_to_fall_back():
    world = World(make_config(canary={"target_neuron_percent": 50}), rps=50, counts={NEURON: 2, GPU: 4}).started()
    world.neuron = Behaviour(error_rate=0.05)
    world.gpu = Behaviour(p99_ms=38.0, error_rate=0.05)
    world.run(12)
    assert all(d.action != Action.FALLBACK for d in world.decisions)


def test_silence_where_traffic_was_expected_falls_back():
    world = World(make_config(), rps=20).started()
    world.neuron = Behaviour(silent=lambda tick: tick >= 3)
    decision = world.run_until(lambda d: d.action == Action.FALLBACK)
    gate = decision.failed_gates[0]
    assert gate.name == "data" and gate.value >= 50 and gate.threshold == 50


def test_silence_where_little_traffic_was_expected_holds():
    world = World(make_config(), rps=0.05).started()  # 0.3 neuron requests a minute expected
    world.neuron = Behaviour(silent=True)
    decisions = world.run(12)
    assert all(d.action != Action.FALLBACK for d in decisions)
    data = next(g for g in decisions[-1].gates if g.name == "data")
    assert data.passed is None and data.value < 50


def test_metrics_errors_hold_then_fail_safe_after_max_unknown_ticks():
    world = World(make_config()).started()
    world.run(3)  # neuron live at 10%
    world.metrics_error = "ThrottlingException: rate exceeded"
    first, second, third = world.run(3)
    assert (first.action, second.action) == (Action.HOLD, Action.HOLD)
    assert first.state.unknown_ticks == 1 and second.state.unknown_ticks == 2
    assert "ThrottlingException" in first.reason
    assert third.action == Action.FALLBACK and third.target.weights[NEURON] == 0.0
    assert "no metrics for 3 ticks" in third.reason


def test_unknown_ticks_reset_when_metrics_come_back():
    world = World(make_config()).started()
    world.run(3)
    world.metrics_error = lambda tick: "timeout" if tick in (4, 5) else None
    world.run(6)
    assert world.state.unknown_ticks == 0
    assert all(d.action != Action.FALLBACK for d in world.decisions)


# ------------------------------------------------------------------------------------------------
# Fallback, cool-down, re-ramp


def test_fallback_raises_gpu_to_carry_the_whole_traffic_within_its_bounds():
    world = World(make_config(), rps=100, counts={NEURON: 3, GPU: 1}).started()
    world.neuron = Behaviour(error_rate=lambda tick: 0.0 if tick < 3 else 0.5)
    decision = world.run_until(lambda d: d.action == Action.FALLBACK)
    assert decision.target.instance_counts[GPU] == math.ceil(100 * 1.2 / 20)  # 6, within 1..8
    big = World(make_config(), rps=1000, counts={NEURON: 6, GPU: 1}).started()
    big.neuron = Behaviour(error_rate=lambda tick: 0.0 if tick < 3 else 0.5)
    assert big.run_until(lambda d: d.action == Action.FALLBACK).target.instance_counts[GPU] == 8  # max_count


def test_cool_down_with_backoff_then_re_ramp_from_step_zero():
    world = World(make_config()).started()
    bad = {"on": True}
    world.neuron = Behaviour(p99_ms=lambda tick: 400.0 if bad["on"] else 40.0)
    first = world.run_until(lambda d: d.action == Action.FALLBACK)
    assert first.state.cooldown_until == world.now + 5 * MINUTE
    bad["on"] = False
    cooling = world.run_until(lambda d: d.state.phase == Phase.RAMPING)
    assert world.now >= first.state.cooldown_until
    assert cooling.target is not None and cooling.target.weights[NEURON] == 10.0 and cooling.state.step == 0
    bad["on"] = True
    second = world.run_until(lambda d: d.action == Action.FALLBACK)
    assert second.state.fallbacks == 2
    assert second.state.cooldown_until == world.now + 10 * MINUTE  # 5 x 2^(2-1)


def test_max_fallbacks_aborts_and_stays_on_gpu():
    world = World(make_config()).started()
    world.neuron = Behaviour(p99_ms=400.0)
    world.run_until(lambda d: d.state.phase == Phase.ABORTED, limit=120)
    assert world.state.fallbacks == 3
    assert world.weights[NEURON] == 0.0
    later = world.run(5)
    assert all(d.action == Action.NONE and d.target is None for d in later)


def test_fallback_that_did_not_apply_is_asked_again_next_tick():
    world = World(make_config()).started()
    world.neuron = Behaviour(p99_ms=lambda tick: 40.0 if tick < 3 else 400.0)
    world.run_until(lambda d: d.action == Action.FALLBACK)
    world.weights = {NEURON: 10.0, GPU: 90.0}  # the update was lost
    again = world.tick()
    assert again.action == Action.FALLBACK and again.target.weights[NEURON] == 0.0
    assert again.state.fallbacks == 1  # the same fallback, not a new one


# ------------------------------------------------------------------------------------------------
# Capacity before traffic, endpoint states


def test_neuron_scales_before_its_share_rises_and_shifts_only_once_in_service():
    world = World(make_config(), rps=100, counts={NEURON: 1, GPU: 6}, scale_ticks=2).started()
    scale = world.run_until(lambda d: d.action == Action.SCALE)
    assert scale.target.weights == {NEURON: world.weights[NEURON], GPU: world.weights[GPU]}  # weights unchanged
    needed = scale.target.instance_counts[NEURON]
    assert needed > 1 and "scaling neuron 1 ->" in scale.reason
    assert world.status == "Updating"
    waiting = world.tick()
    assert waiting.action == Action.HOLD and waiting.target is None
    world.run_until(lambda d: d.action == Action.PROGRESS)
    assert world.counts[NEURON] >= needed  # capacity was in service before the share moved


def test_gpu_donor_shrinks_one_step_late_and_never_below_min():
    world = World(make_config(), rps=20, counts={NEURON: 1, GPU: 4}).started()
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    progressed = [d for d in world.decisions if d.action == Action.PROGRESS]
    gpu_counts = [d.target.instance_counts[GPU] for d in progressed]
    assert gpu_counts == sorted(gpu_counts, reverse=True)
    # The shift to 25% still sizes gpu for the 90% it carried during step 1: ceil(18 x 1.2 / 20) = 2.
    assert gpu_counts[1] == 2
    assert min(gpu_counts) >= world.config.variants.gpu.min_count


def test_endpoint_updating_holds_without_a_target():
    world = World(make_config()).started()
    world.run(3)
    world.status = "Updating"
    decision = world.tick()
    assert decision.action == Action.HOLD and decision.target is None
    assert "Updating" in decision.reason


def test_breach_while_updating_still_returns_the_fallback_target():
    world = World(make_config()).started()
    world.neuron = Behaviour(p99_ms=lambda tick: 40.0 if tick < 3 else 400.0)
    world.run(3)
    world.status = "Updating"
    decision = world.run_until(lambda d: d.action != Action.HOLD)
    assert decision.action == Action.FALLBACK and decision.target.weights[NEURON] == 0.0


# ------------------------------------------------------------------------------------------------
# Holding


def holding_world(**kwargs) -> World:
    world = World(make_config(), **kwargs).started()
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    return world


def test_holding_answers_a_surge_with_neuron_capacity_and_gpu_overflow_never_a_fallback():
    spike = {"on": False}
    config = make_config()
    neuron = config.variants.neuron.model_copy(update={"target_invocations_per_instance": 1800})  # 75% of 40 req/s
    config = config.model_copy(update={"variants": config.variants.model_copy(update={"neuron": neuron})})
    world = World(config, rps=lambda tick: 200.0 if spike["on"] else 60.0, counts={NEURON: 2, GPU: 4},
                  scale_ticks=4).started()
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    world.run_until(lambda d: world.status == "InService", limit=10)
    world.neuron = Behaviour(capacity_rps=40.0)
    world.gpu = Behaviour(p99_ms=38.0, capacity_rps=20.0)
    spike["on"] = True
    decision = world.run_until(lambda d: d.statistics.get("overflow") is True, limit=6)
    assert decision.action == Action.STEP_BACK and "load, not a fault" in decision.reason
    assert decision.target.weights[NEURON] < 100.0  # the overflow goes to gpu...
    assert decision.target.instance_counts[NEURON] == 6  # ...while neuron scales for the whole share
    back = world.run_until(lambda d: world.weights[NEURON] == 100.0, limit=20)
    assert all(d.action not in (Action.FALLBACK, Action.ABORT) for d in world.decisions)
    assert world.state.fallbacks == 0 and world.state.cooldown_until is None
    assert back.state.phase == Phase.HOLDING and world.counts[NEURON] == 6


def test_holding_steps_back_when_neuron_latency_nears_the_slo():
    world = holding_world()
    world.neuron = Behaviour(p99_ms=140.0)  # above 90% of 150, below the SLO: degrade, not breach
    decision = world.run_until(lambda d: d.action != Action.HOLD, limit=5)
    assert decision.action == Action.STEP_BACK and decision.target.weights[NEURON] == 75.0


def test_holding_returns_to_neuron_slowly_and_only_after_clean_minutes():
    world = holding_world()
    world.neuron = Behaviour(p99_ms=140.0)
    world.run_until(lambda d: d.action == Action.STEP_BACK, limit=5)
    stepped_back_at = world.now
    world.neuron = Behaviour(p99_ms=40.0)
    ret = world.run_until(lambda d: d.action == Action.RETURN, limit=30)
    assert ret.target.weights[NEURON] == 85.0  # +10, not straight back to 100
    assert world.now - stepped_back_at >= 5 * MINUTE
    assert "clean minutes" in ret.reason


def test_holding_never_changes_the_split_twice_within_the_dwell():
    world = holding_world(counts={NEURON: 2, GPU: 4})
    world.neuron = Behaviour(p99_ms=lambda tick: 140.0 if tick % 5 < 3 else 40.0)
    world.run(60)
    times = [d.state.last_change_at for d in world.decisions if d.action in (Action.STEP_BACK, Action.RETURN)]
    assert len(times) >= 2
    for a, b in itertools.pairwise(times):
        assert b - a >= 5 * MINUTE


def test_holding_disabled_keeps_the_split_but_still_falls_back_on_a_breach():
    world = World(make_config(holding={"enabled": False})).started()
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    world.neuron = Behaviour(p99_ms=140.0)  # would step back if holding adjusted
    assert all(d.action == Action.HOLD for d in world.run(8))
    world.neuron = Behaviour(p99_ms=500.0)
    assert world.run_until(lambda d: d.action != Action.HOLD, limit=5).action == Action.FALLBACK


def test_holding_breach_falls_back_with_gpu_taking_all_it_carries_and_sized_for_everything():
    world = holding_world()
    world.neuron = Behaviour(p99_ms=500.0)
    decision = world.run_until(lambda d: d.action != Action.HOLD, limit=5)
    assert decision.action == Action.FALLBACK
    gpu_live = decision.statistics["gpu_in_service"]
    carried = min(100.0, 100.0 * gpu_live * 20 * 0.85 / 20.0)  # 20 req/s; gpu 20/instance at the 85% level
    assert decision.target.weights[GPU] >= math.floor(10 * carried) / 10
    assert decision.target.instance_counts[GPU] >= math.ceil(20 * 1.2 / 20)
    world.run_until(lambda d: world.weights[NEURON] == 0.0, limit=5)


def test_holding_shrinks_idle_gpu_to_its_warm_minimum_after_the_dwell():
    world = holding_world(rps=60, counts={NEURON: 2, GPU: 4})
    assert world.counts[GPU] == 2  # sized for the 50% it carried before the last step
    decision = world.run_until(lambda d: d.action == Action.SCALE, limit=10)
    assert decision.target.instance_counts[GPU] == world.config.variants.gpu.min_count
    assert decision.target.weights == {NEURON: 100.0, GPU: 0.0}


def test_restart_from_a_stored_state_resumes_without_repeating_a_step():
    straight = World(make_config()).started()
    straight.run(20)
    restarted = World(make_config()).started()
    for _ in range(20):
        restarted.state = ControllerState.from_dict(restarted.state.to_dict())  # the process died between ticks
        restarted.tick()
    assert [d.action for d in restarted.decisions] == [d.action for d in straight.decisions]
    assert [d.reason for d in restarted.decisions] == [d.reason for d in straight.decisions]


# ------------------------------------------------------------------------------------------------
# Contract details


def test_every_decision_carries_cost_per_variant_and_the_gates():
    world = World(make_config()).started()
    for decision in world.run(15):
        assert set(decision.cost_per_1k) == {NEURON, GPU}
        assert {g.name for g in decision.gates} >= {"sample", "latency_slo", "latency_regression", "errors", "data", "cost"}


def test_decisions_and_states_serialize_to_strict_json():
    world = World(make_config(slo={"max_error_rate": 0.0})).started()
    world.neuron = Behaviour(error_rate=lambda tick: 0.0 if tick < 8 else 0.3, silent=lambda tick: tick == 5)
    for decision in world.run(20):
        json.dumps(decision.statistics, allow_nan=False)
        json.dumps([g.to_dict() for g in decision.gates], allow_nan=False)
        json.dumps(decision.state.to_dict(), allow_nan=False)
        assert ControllerState.from_dict(json.loads(json.dumps(decision.state.to_dict()))) == decision.state


def test_window_covers_a_whole_step():
    config = make_config()
    assert policy.window_minutes(config, policy.initial_state(config, "bert")) > config.canary.max_bake_minutes


def test_initial_state_is_idle_with_the_resolved_steps():
    config = make_config()
    state = policy.initial_state(config, "bert")
    assert state.phase == Phase.IDLE and state.steps == (10.0, 25.0, 50.0, 100.0)
    world = World(config)
    assert world.tick().action == Action.NONE
    assert world.now == T0 + MINUTE
