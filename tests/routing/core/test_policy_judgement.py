"""Tick-by-tick tests of the judgement: late minutes, load vs fault, errors and escalation (issue 15)."""

from __future__ import annotations

from routing.core.model import Action, Phase
from tests.routing.core.policy_world import Behaviour, World, make_config
from toolkit.config import GPU, NEURON


def _holding(world: World, limit: int = 300) -> int:
    world.run_until(lambda d: d.state.phase == Phase.HOLDING, limit=limit)
    return world.tick_no


# ------------------------------------------------------------------------------------------------
# Every minute counts once, whenever it arrives


def test_metrics_late_for_the_whole_run_still_migrate_within_their_lateness():
    on_time = _holding(World(make_config(), rps=20).started())
    late = World(make_config(), rps=20, delay=3).started()
    ticks = _holding(late)
    assert all(d.action != Action.FALLBACK for d in late.decisions)
    # Each of the 4 steps waits for its minutes at most the lateness (3 min) longer.
    assert ticks <= on_time + 4 * 3
    assert late.weights == {NEURON: 100.0, GPU: 0.0}


def test_a_minute_that_arrives_late_is_counted_exactly_once():
    world = World(make_config(canary={"steps": [10, 100], "min_sample": 100000, "max_bake_minutes": 30}),
                  rps=20, delay=lambda tick: 4 if 6 <= tick < 10 else 0).started()
    world.run(16)
    decision = world.decisions[-1]
    since = world.state.memory.live_since
    served = sum(m.invocations or 0.0 for m in world.history[NEURON]
                 if m.start >= since and m.start + policy_minute() <= world.now)
    assert decision.statistics["neuron_invocations"] == served
    assert world.state.memory.counted_minutes  # the ledger is kept...
    assert len(world.state.memory.counted_minutes) <= 61  # ...and bounded by the metrics window


def policy_minute():
    from routing.core.policy import MINUTE
    return MINUTE


def test_late_metrics_at_full_neuron_are_not_silence():
    world = World(make_config(), rps=20, delay=3).started()
    _holding(world)
    decisions = world.run(15)
    assert all(d.action != Action.FALLBACK for d in decisions)
    data = next(g for g in decisions[-1].gates if g.name == "data")
    assert data.passed is True


def test_an_outage_at_full_neuron_is_still_caught_with_late_metrics():
    world = World(make_config(), rps=20, delay=3).started()
    _holding(world)
    start = world.tick_no
    world.neuron = Behaviour(silent=lambda tick: tick > start)
    world.gpu = Behaviour(p99_ms=38.0, silent=lambda tick: tick > start)  # gpu has no weight: no rows either
    decision = world.run_until(lambda d: d.action == Action.FALLBACK, limit=20)
    assert decision.failed_gates[0].name == "data"
    assert world.tick_no - start <= 3 + 3  # its lateness, then the two silent minutes data needs


# ------------------------------------------------------------------------------------------------
# Errors: 100% gpu at once; escalation while draining


def test_a_neuron_failing_most_requests_sends_everything_to_gpu_in_the_first_fallback_tick():
    # gpu's one live instance carries 20 req/s of 60; neuron fails 60%: an overloaded gpu fails fewer.
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 1}).started()
    world.run_until(lambda d: d.state.step >= 2 and d.action == Action.PROGRESS)
    world.neuron = Behaviour(error_rate=0.6)
    decision = world.run_until(lambda d: d.action == Action.FALLBACK)
    assert decision.target.weights[NEURON] == 0.0
    assert decision.target.instance_counts[GPU] >= 4  # sized for the whole traffic with headroom


def test_errors_a_neuron_mostly_serves_drain_as_fast_as_gpu_capacity_comes():
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 1}, scale_ticks=3).started()
    world.run_until(lambda d: d.state.step >= 3 and d.action == Action.PROGRESS)
    world.neuron = Behaviour(error_rate=0.2)
    first = world.run_until(lambda d: d.action == Action.FALLBACK)
    carried = 100.0 * 1 * 20 * 0.85 / 60  # gpu's one in-service instance at the 85% saturation level
    assert carried - 0.5 <= first.target.weights[GPU] < 100.0  # gpu takes all it carries now, not more...
    assert first.target.instance_counts[GPU] >= 4  # ...and is asked for the whole traffic
    world.run_until(lambda d: world.weights[NEURON] == 0.0, limit=8)  # the rest as it comes
    assert world.state.fallbacks == 1


def test_errors_while_a_latency_fallback_drains_escalate_to_gpu_at_once():
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 1}, scale_ticks=4).started()
    world.run_until(lambda d: d.state.step >= 2 and d.action == Action.PROGRESS)
    world.neuron = Behaviour(p99_ms=400.0)
    first = world.run_until(lambda d: d.action == Action.FALLBACK)
    assert 0.0 < first.target.weights[NEURON] < 100.0  # slow but answering: gpu takes what it carries
    assert world.phase() == Phase.FALLING_BACK
    fallbacks = world.state.fallbacks
    world.neuron = Behaviour(p99_ms=400.0, error_rate=0.6)
    escalated = world.run_until(lambda d: d.statistics.get("escalated") is True, limit=5)
    assert escalated.action == Action.FALLBACK and escalated.target.weights[NEURON] == 0.0
    assert escalated.state.phase == Phase.FALLING_BACK and escalated.state.fallbacks == fallbacks
    assert "escalated" in escalated.reason


# ------------------------------------------------------------------------------------------------
# Load is not a fault; a fault at the same load is


def test_a_latency_regression_at_normal_load_falls_back_within_two_closed_minutes():
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 4}).started()
    world.neuron = Behaviour(capacity_rps=40.0)
    world.gpu = Behaviour(p99_ms=38.0, capacity_rps=20.0)
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    world.run(3)
    onset = world.tick_no
    world.neuron = Behaviour(p99_ms=lambda tick: 40.0 if tick <= onset else 400.0, capacity_rps=40.0)
    decision = world.run_until(lambda d: d.action in (Action.FALLBACK, Action.STEP_BACK), limit=5)
    assert decision.action == Action.FALLBACK and decision.statistics.get("overflow") is not True
    assert world.tick_no - onset <= 2


# ------------------------------------------------------------------------------------------------
# Noise vs a shifted distribution


def test_tail_bursts_that_leave_the_p90_alone_never_roll_back_a_healthy_model():
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 4}).started()
    world.neuron = Behaviour(p99_ms=45.0, p90_ms=30.0)
    world.gpu = Behaviour(p99_ms=38.0, p90_ms=28.0)
    world.command("promote")
    world.run_until(lambda d: d.state.phase == Phase.HOLDING and world.weights[NEURON] == 100.0, limit=20)
    # Two bursts in a row every ten minutes: a few slow requests move p99 far past the SLO, not p90.
    world.neuron = Behaviour(p99_ms=lambda tick: 250.0 if tick % 10 in (3, 4) else 45.0, p90_ms=30.0)
    decisions = world.run(60)
    assert all(d.action not in (Action.FALLBACK, Action.STEP_BACK) for d in decisions)
    assert world.weights[NEURON] == 100.0


def test_a_shifted_distribution_far_past_the_slo_falls_back_on_its_first_closed_minute():
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 4}).started()
    world.neuron = Behaviour(p99_ms=45.0, p90_ms=30.0)
    world.gpu = Behaviour(p99_ms=38.0, p90_ms=28.0)
    world.run_until(lambda d: d.state.step >= 2 and d.action == Action.PROGRESS)
    world.run(2)
    onset = world.tick_no + 1
    world.neuron = Behaviour(p99_ms=lambda t: 45.0 * (3 if t >= onset else 1), p90_ms=lambda t: 30.0 * (3 if t >= onset else 1))
    world.run_until(lambda d: d.action == Action.FALLBACK, limit=5)
    assert world.tick_no == onset  # the tick that closes the first slow minute


def test_a_marginal_shift_needs_a_second_minute():
    # Neuron already has what the ramp's end needs (60 req/s at 600/min per instance): no scale-up
    # changes the timing of the step under judgement.
    world = World(make_config(), rps=60, counts={NEURON: 6, GPU: 4}).started()
    world.neuron = Behaviour(p99_ms=125.0, p90_ms=85.0)
    world.gpu = Behaviour(p99_ms=120.0, p90_ms=80.0)  # the regression bar: 1.25 x 120 = 150 ms, like the SLO
    world.run_until(lambda d: d.state.step >= 2 and d.action == Action.PROGRESS)
    world.run(2)
    onset = world.tick_no + 1
    # p99 160 ms: past the 150 ms SLO but not by 30%, p90 moved with it.
    world.neuron = Behaviour(p99_ms=lambda t: 160.0 if t >= onset else 125.0, p90_ms=lambda t: 107.0 if t >= onset else 85.0)
    world.run_until(lambda d: d.action == Action.FALLBACK, limit=5)
    assert world.tick_no == onset + 1


# ------------------------------------------------------------------------------------------------
# Step size follows the evidence


def _ramp_shares(world: World) -> list[float]:
    return [d.target.weights[NEURON] for d in world.decisions if d.action == Action.PROGRESS]


def test_a_step_passed_far_inside_every_bar_on_a_big_sample_skips_the_next_one():
    world = World(make_config(), rps=400, counts={NEURON: 6, GPU: 8}).started()
    world.neuron = Behaviour(p99_ms=30.0)
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    assert _ramp_shares(world) == [10.0, 50.0, 100.0]  # 25% skipped; never the target itself


def test_a_marginal_pass_moves_one_step():
    world = World(make_config(), rps=400, counts={NEURON: 6, GPU: 8}).started()
    world.neuron = Behaviour(p99_ms=46.0)  # within 1.25 x gpu's 38 ms, not within 80% of it
    world.run_until(lambda d: d.state.phase == Phase.HOLDING)
    assert _ramp_shares(world) == [10.0, 25.0, 50.0, 100.0]


# ------------------------------------------------------------------------------------------------
# Capacity ahead of traffic


def test_the_plan_follows_a_real_trend_and_ignores_noise():
    from routing.core.policy import forecast_rps

    growing = [600.0 + 120.0 * i for i in range(6)]  # +2 req/s every minute
    assert forecast_rps(growing, 6.0) == (growing[-1] + 120.0 * 6) / 60.0
    noisy = [3600.0, 3540.0, 3660.0, 3580.0, 3630.0, 3610.0]  # flat 60 req/s with Poisson-size wiggles
    assert forecast_rps(noisy, 6.0) == 0.0
    assert forecast_rps([3600.0, 3000.0, 2400.0, 1800.0], 6.0) == 0.0  # falling: the peak stands


def test_growing_traffic_scales_neuron_ahead_with_the_measured_scale_up_time():
    world = World(make_config(), rps=lambda tick: 20.0 + 2.0 * max(0, tick - 40), counts={NEURON: 1, GPU: 4},
                  scale_ticks=3)
    world.neuron = Behaviour(capacity_rps=40.0)
    world.gpu = Behaviour(p99_ms=38.0, capacity_rps=20.0)
    world.started()
    world.command("promote")
    world.run(70)  # flat 20 req/s, then +2 req/s every minute from minute 40
    ahead = [d for d in world.decisions if d.action == Action.SCALE and "ahead of the traffic" in d.reason]
    assert ahead, "neuron never scaled ahead of the growth"
    assert world.state.memory.scale_up_minutes is not None  # the scale-ups' own time, asked -> in service
    assert all(d.action not in (Action.FALLBACK, Action.ABORT) for d in world.decisions)
    assert world.state.fallbacks == 0


def test_an_outage_starting_as_neuron_takes_everything_is_caught_while_gpu_reports_zero():
    # gpu keeps its instances at weight 0 and publishes Invocations = 0: that is no traffic estimate.
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 4}, idle_rows=True).started()
    world.run_until(lambda d: d.action == Action.PROGRESS and d.target.weights[NEURON] == 100.0)
    onset = world.tick_no + 1
    world.neuron = Behaviour(silent=lambda tick: tick >= onset)
    decision = world.run_until(lambda d: d.action == Action.FALLBACK, limit=8)
    assert decision.failed_gates[0].name == "data"
    assert world.tick_no - onset <= 3  # the mixed minute, then the two silent minutes gpu cannot vouch for


# ------------------------------------------------------------------------------------------------
# Fallback capacity: gpu asked for the whole traffic, and ahead of a silence that may be an outage


def test_once_the_fallback_weights_landed_gpu_capacity_for_the_whole_traffic_is_asked_again():
    # The endpoint takes a fallback in stages (weights first, gpu capacity on a later request):
    # after the weights landed the policy must ask the gpu count again, not wait for autoscaling.
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 1}).started()
    _holding(world)
    world.neuron = Behaviour(error_rate=0.6)
    world.apply = False
    fallback = world.run_until(lambda d: d.action == Action.FALLBACK)
    wanted = fallback.target.instance_counts[GPU]
    assert wanted >= 4
    world.weights = dict(fallback.target.weights)  # only the weights landed
    decision = world.tick()
    assert decision.action == Action.SCALE and "neuron drained" in decision.reason
    assert decision.target.instance_counts[GPU] == wanted
    assert decision.target.weights[NEURON] == 0.0
    world.counts = dict(decision.target.instance_counts)  # the capacity was asked
    later = world.run(3)
    assert all(d.action != Action.SCALE for d in later)  # asked once it is asked: nothing more


def test_silent_minutes_before_a_fallback_are_unknown_traffic_not_zero():
    # An outage at 100% neuron: its silent minutes must not size gpu for no traffic afterwards.
    # gpu, with no weight, publishes Invocations = 0 (idle_rows): those minutes are not "no traffic".
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 1}, idle_rows=True, delay=1).started()
    _holding(world)
    start = world.tick_no
    world.neuron = Behaviour(silent=lambda tick: tick > start)
    world.run_until(lambda d: d.action == Action.FALLBACK, limit=10)
    for decision in world.run(4):
        assert decision.statistics["sizing_rps"] >= 55.0, decision.reason


def test_the_first_silent_minute_at_full_neuron_scales_gpu_without_moving_weights():
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 1}).started()
    _holding(world)
    start = world.tick_no
    world.neuron = Behaviour(silent=lambda tick: tick > start)
    world.gpu = Behaviour(p99_ms=38.0, silent=lambda tick: tick > start)  # no weight: no rows either
    world.apply = False
    decisions = world.run_until(lambda d: d.action != Action.HOLD, limit=5)
    assert decisions.action == Action.SCALE, decisions.reason
    assert decisions.target.weights[NEURON] == 100.0  # one silent minute may be a late datapoint
    assert decisions.target.instance_counts[GPU] >= 4  # sized for the whole traffic
    world.counts = dict(decisions.target.instance_counts)
    assert world.run_until(lambda d: d.action != Action.HOLD, limit=3).action == Action.FALLBACK


def test_late_metrics_at_full_neuron_never_scale_gpu_ahead_of_a_fallback():
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 1}, delay=3).started()
    _holding(world)
    assert all(d.action not in (Action.SCALE, Action.FALLBACK) or "silent" not in d.reason for d in world.run(15))


# ------------------------------------------------------------------------------------------------
# A faster ramp: the ramp's evidence sizes the steps, one neuron scale-up for the rest of the ramp


def test_a_ramp_whose_steps_together_gathered_a_big_sample_skips_a_step():
    # 20 req/s, 2-minute bakes: 5%, 10%, 15% gather 120, 240, 360 requests, none 4 x min_sample (400)
    # alone (and 20% may not skip into the last step): the ramp's own total lets 10% skip 15%.
    world = World(make_config(canary={"steps": [5, 10, 15, 20, 50, 100], "min_sample": 100}), rps=20,
                  counts={NEURON: 3, GPU: 2}, neuron=Behaviour(p99_ms=30.0)).started()
    _holding(world)
    moves = [d for d in world.decisions if d.action == Action.PROGRESS]
    assert any("skipping 15%" in d.reason for d in moves), [d.reason[:60] for d in moves]
    assert len(moves) < 6


def test_the_first_neuron_scale_up_of_a_ramp_is_sized_for_where_the_ramp_ends():
    # 120 req/s: 5% fits one neuron instance, 100% needs 4 at the autoscaling target (1,800/min):
    # asked step by step that is several scale-ups, each holding the endpoint in Updating.
    world = World(make_config(), rps=120, counts={NEURON: 1, GPU: 8}, scale_ticks=5).started()
    _holding(world)
    scales = [d for d in world.decisions if d.action == Action.SCALE and "neuron" in d.reason]
    assert len(scales) == 1, [d.reason for d in scales]
    assert scales[0].target.instance_counts[NEURON] >= 4
    assert "enough for 100%" in scales[0].reason


def test_an_error_rate_over_the_cap_is_called_on_its_first_minute_not_diluted_by_clean_ones():
    # 3% 5XX against a 1% cap at 60 req/s: 108 errors in the newest minute. Diluted by four clean
    # minutes (the 5-minute window) it is 0.6%, under the cap; the newest 2 minutes call it at once.
    world = World(make_config(), rps=60, counts={NEURON: 3, GPU: 1}).started()
    _holding(world)
    world.run(6)
    world.neuron = Behaviour(error_rate=0.03)
    decision = world.tick()
    assert decision.action == Action.FALLBACK, decision.reason
    assert "errors failed" in decision.reason


def test_breaches_are_looked_for_from_the_minute_of_the_reset_not_the_next_one():
    from datetime import timedelta

    from routing.core import policy

    # A re-ramp (or a start) resets at a tick 5 s into a minute: that minute is neuron's own
    # requests at the new share, so a fault still active must count there for a breach.
    world = World(make_config(), rps=60, counts={NEURON: 6, GPU: 4}).started()
    world.run(3)
    newest = world.now - timedelta(minutes=1)  # the newest closed minute's start
    state = world.state.remember(breach_since=newest + timedelta(seconds=5))
    measured = policy.measure(world.config, state, world.endpoint(), world.observation(), world.prices)
    assert [m.start for m in measured.recent.neuron] == [newest]
