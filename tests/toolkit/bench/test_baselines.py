"""Each baseline behaves as its documented tool does, on small hand-made cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.model import EndpointLive, MinuteMetrics, Observation, VariantLive
from toolkit.bench.baselines import FALLBACK, Alarm, FlaggerLike, GuardrailsLinear, breaching
from toolkit.bench.harness import run_policy
from toolkit.config import GPU, NEURON
from toolkit.sim.runner import memory_world, run

START = datetime(2026, 1, 1, tzinfo=UTC)


def minute(i: int, invocations: float | None, p99: float | None = 80.0, errors: float = 0.0) -> MinuteMetrics:
    if invocations is None:
        return MinuteMetrics(start=START + timedelta(minutes=i))
    return MinuteMetrics(start=START + timedelta(minutes=i), invocations=invocations, errors_5xx=errors,
                         latency_p99_ms=p99)


def observe(neuron: list[MinuteMetrics], gpu: list[MinuteMetrics] | None = None) -> Observation:
    gpu = gpu if gpu is not None else [minute(m.start.minute, 1000.0) for m in neuron]
    return Observation(window_start=neuron[0].start, window_end=neuron[-1].start + timedelta(minutes=1),
                       minutes={NEURON: tuple(neuron), GPU: tuple(gpu)})


def live(neuron_share: float = 50.0, counts: tuple[int, int] = (2, 2), status: str = "InService") -> EndpointLive:
    return EndpointLive(name="e", status=status, variants={
        NEURON: VariantLive(NEURON, "ml.inf2.xlarge", neuron_share, neuron_share, counts[0], counts[0]),
        GPU: VariantLive(GPU, "ml.g5.xlarge", 100 - neuron_share, 100 - neuron_share, counts[1], counts[1]),
    })


def test_alarm_treats_missing_datapoints_as_not_breaching():
    alarm = Alarm(p99_ms=150, error_rate=0.01, evaluation_periods=3, datapoints_to_alarm=2)
    assert breaching(minute(0, None), 150, 0.01) is None
    assert not alarm.fires((minute(0, None), minute(1, None), minute(2, None)))
    assert not alarm.fires((minute(0, 100, p99=400), minute(1, None), minute(2, None)))


def test_alarm_fires_on_m_of_n_breaching_datapoints():
    alarm = Alarm(p99_ms=150, error_rate=0.01, evaluation_periods=3, datapoints_to_alarm=2)
    assert alarm.fires((minute(0, 100, p99=400), minute(1, 100), minute(2, 100, errors=5)))
    assert not alarm.fires((minute(0, 100, p99=400), minute(1, 100), minute(2, 100)))


def test_guardrails_does_not_roll_back_on_missing_data(make_setup):
    world = SimpleNamespace(setup=make_setup(), fleet=None)
    policy = GuardrailsLinear()
    policy.start(5)
    policy.phase, policy.share, policy.since = "shifting", 20.0, 5
    silent = observe([minute(i, None) for i in range(5)])
    move = policy.decide(6, live(20.0), silent, world)
    assert move.action != FALLBACK and policy.phase == "shifting"


def test_guardrails_rolls_back_when_the_alarm_fires_and_stays_failed(make_setup):
    world = SimpleNamespace(setup=make_setup(), fleet=None)
    policy = GuardrailsLinear()
    policy.start(5)
    policy.phase, policy.share, policy.since = "shifting", 40.0, 5
    slow = observe([minute(i, 500, p99=3 * world.setup.config.slo.p99_latency_ms) for i in range(5)])
    move = policy.decide(7, live(40.0), slow, world)
    assert move.action == FALLBACK and move.target.weights[NEURON] == 0.0
    healthy = observe([minute(i, 500) for i in range(5)])
    assert policy.decide(30, live(0.0), healthy, world).target is None


def test_guardrails_steps_linearly_on_the_fixed_interval(make_setup):
    world = SimpleNamespace(setup=make_setup(), fleet=None)
    policy = GuardrailsLinear(step_percent=25.0, wait_minutes=3)
    policy.start(0)
    policy.phase, policy.share, policy.since = "shifting", 25.0, 0
    healthy = observe([minute(i, 500) for i in range(5)])
    shares = []
    for m in range(1, 10):
        move = policy.decide(m, live(policy.share), healthy, world)
        if move.target is not None:
            shares.append((m, move.target.weights[NEURON]))
    assert shares == [(3, 50.0), (6, 75.0), (9, 100.0)]


def test_flagger_counts_no_data_as_a_failed_check_and_rolls_back_at_threshold(make_setup):
    world = SimpleNamespace(setup=make_setup(), fleet=None)
    policy = FlaggerLike(threshold=3)
    policy.start(0)
    policy.decide(0, live(0.0), None, world)  # routes the first step
    silent = observe([minute(0, None)])
    moves = [policy.decide(m, live(policy.step_weight), silent, world) for m in range(1, 4)]
    assert [m.action for m in moves] == ["hold", "hold", FALLBACK]
    assert moves[-1].target.weights[NEURON] == 0.0 and policy.phase == "failed"


def test_flagger_judges_only_the_newest_datapoint(make_setup):
    world = SimpleNamespace(setup=make_setup(), fleet=None)
    slo = world.setup.config.slo.p99_latency_ms
    policy = FlaggerLike()
    policy.start(0)
    policy.decide(0, live(0.0), None, world)
    older_bad = observe([minute(0, 100, p99=3 * slo), minute(1, 100)])
    move = policy.decide(1, live(10.0), older_bad, world)
    assert move.action == "progress" and policy.failed_checks == 0
    newest_bad = observe([minute(0, 100), minute(1, 100, p99=3 * slo)])
    policy.decide(2, live(20.0), newest_bad, world)
    assert policy.failed_checks == 1


def test_flagger_promotes_after_max_weight(make_setup):
    world = SimpleNamespace(setup=make_setup(), fleet=None)
    policy = FlaggerLike(max_weight=30.0, step_weight=10.0)
    policy.start(0)
    policy.decide(0, live(0.0), None, world)
    healthy = observe([minute(0, 600)])
    weights = [policy.decide(m, live(policy.weight), healthy, world).target.weights[NEURON] for m in range(1, 4)]
    assert weights == [20.0, 30.0, 100.0] and policy.phase == "succeeded"


def test_static_policies_never_change_the_endpoint(make_setup):
    setup = make_setup(duration_minutes=20, faults=[{"minute": 8, "variant": "neuron", "kind": "latency",
                                                     "magnitude": 3.0, "duration_minutes": 5}])
    for name in ("static-gpu", "static-neuron"):
        figures = run_policy(setup, name)
        assert figures.update_calls == 0 and figures.metrics_calls == 0 and figures.rollbacks == 0


def test_static_neuron_serves_everything_on_neuron_every_minute(make_setup):
    from toolkit.bench.baselines import StaticNeuron
    from toolkit.bench.harness import BaselineController

    policy = StaticNeuron()
    setup = policy.prepare(make_setup(duration_minutes=15))
    world = memory_world(setup, setup.seed)
    rows = run(setup, world.simulator, BaselineController(policy, world, setup)).rows
    assert {r.share[NEURON] for r in rows} == {100.0}


def test_oracle_meets_the_slo_in_truth_every_minute_when_capacity_allows(make_setup):
    setup = make_setup(duration_minutes=40, traffic={"rps": 30})
    figures = run_policy(setup, "oracle")
    from toolkit.bench.baselines import oracle_rows

    for row in oracle_rows(setup, setup.seed):
        # p99 <= SLO means at most 1 % over it; the minute's draw adds sampling noise around the plan.
        assert row.over_slo <= 0.02 * sum(row.requests.values()) + 3, row.minute
    assert figures.cost <= run_policy(setup, "static-gpu").cost


def test_oracle_carries_nothing_on_neuron_while_a_fault_would_harm_it(make_setup):
    onset = 20
    setup = make_setup(duration_minutes=40, traffic={"rps": 30},
                       faults=[{"minute": onset, "variant": "neuron", "kind": "latency", "magnitude": 4.0,
                                "duration_minutes": 6}])
    from toolkit.bench.baselines import oracle_rows

    rows = oracle_rows(setup, setup.seed)
    assert all(r.share[NEURON] == 0.0 for r in rows[onset:onset + 6])
    assert rows[onset - 1].share[NEURON] > 50.0 and rows[onset + 6].share[NEURON] > 50.0
    assert run_policy(setup, "oracle").harmful_onsets == 0


def test_oracle_is_cheaper_than_or_equal_to_every_other_policy_on_a_healthy_scenario(make_setup):
    setup = make_setup(duration_minutes=60, traffic={"rps": 30})
    oracle = run_policy(setup, "oracle").cost
    for name in ("static-gpu", "static-neuron", "guardrails-linear", "flagger-like", "hybrid"):
        assert oracle <= run_policy(setup, name).cost * 1.001, name


def test_policy_starts_nothing_before_the_canary_start(make_setup):
    setup = make_setup(duration_minutes=12, canary_start_minute=6)
    from toolkit.bench.harness import BaselineController

    for policy in (GuardrailsLinear(), FlaggerLike()):
        world = memory_world(setup, setup.seed)
        rows = run(setup, world.simulator, BaselineController(policy, world, setup)).rows
        assert all(r.share[NEURON] == 0.0 for r in rows[:6]), policy.name


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), rps=st.sampled_from([5.0, 30.0, 90.0]),
       fault=st.sampled_from([None, "latency", "errors", "outage"]))
def test_no_policy_with_no_more_bad_requests_than_the_oracle_costs_less(make_setup, seed, rps, fault):
    faults = [] if fault is None else [{"minute": 15, "variant": "neuron", "kind": fault, "duration_minutes": 8,
                                        "magnitude": {"latency": 3.0, "errors": 0.2, "outage": 1.0}[fault]}]
    setup = make_setup(seed=seed, duration_minutes=35, traffic={"rps": rps},
                       config={"variants": {"gpu": {"initial_count": max(1, round(rps / 15))}}}, faults=faults)
    oracle = run_policy(setup, "oracle")
    for name in ("hybrid", "static-gpu", "static-neuron", "guardrails-linear", "flagger-like"):
        other = run_policy(setup, name)
        if other.bad_requests <= oracle.bad_requests:
            assert other.cost >= oracle.cost - 1e-9, name
