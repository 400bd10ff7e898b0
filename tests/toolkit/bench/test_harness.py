"""The harness: figures from a run, aggregation, goals and the JSON document."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolkit.bench.harness import (
    CallCounter,
    Plan,
    RunFigures,
    aggregate,
    bench_document,
    check_policies,
    figures,
    pair_with_oracle,
    plan,
    run_policy,
    scaled,
    spread,
)
from toolkit.config import GPU, NEURON
from toolkit.errors import UserError
from toolkit.sim.runner import Row


def test_static_gpu_figures_follow_from_the_scenario(make_setup):
    minutes, rps = 25, 12.0
    setup = make_setup(duration_minutes=minutes, traffic={"rps": rps, "poisson": False},
                       autoscaling={"enabled": False})
    out = run_policy(setup, "static-gpu")
    gpu = setup.hardware[GPU]
    neuron = setup.hardware[NEURON]
    per_minute = (gpu.initial_count * gpu.price_per_hour + neuron.initial_count * neuron.price_per_hour) / 60.0
    assert out.cost == pytest.approx(minutes * per_minute)
    assert out.requests == round(rps * 60) * minutes
    assert out.minutes_to_full_migration is None and out.rollbacks == 0 and out.minutes == minutes


def test_static_neuron_cost_is_the_sized_neuron_fleet_plus_the_warm_gpu(make_setup):
    import math

    minutes, rps = 20, 50.0
    setup = make_setup(duration_minutes=minutes, traffic={"rps": rps, "poisson": False},
                       autoscaling={"enabled": False})
    out = run_policy(setup, "static-neuron")
    neuron, gpu = setup.hardware[NEURON], setup.hardware[GPU]
    count = max(neuron.min_count, min(neuron.max_count, math.ceil(rps * 60 / neuron.target_invocations_per_instance)))
    assert out.cost == pytest.approx(minutes * (count * neuron.price_per_hour + gpu.min_count * gpu.price_per_hour) / 60)
    assert out.minutes_to_full_migration == 0


def _row(minute: int, neuron: float, action: str = "", over: int = 0, errors: int = 0, cost: float = 1.0,
         harmful: bool = False, fault_bad: float = 0.0) -> Row:
    return Row(minute=minute, offered=100, share={NEURON: neuron, GPU: 100.0 - neuron},
               instances={NEURON: 1, GPU: 1}, requests={NEURON: 0, GPU: 0}, p99_ms={NEURON: None, GPU: None},
               true_p99_ms=None, cost=cost, cost_per_1k={}, over_slo=over, errors=errors, faults=[], action=action,
               bad_requests=over + errors, harmful=harmful, neuron_fault_bad=fault_bad)


def test_figures_time_fallback_from_every_harmful_onset_and_flag_false_rollbacks(make_setup):
    setup = make_setup(duration_minutes=40, canary_start_minute=2)
    shares = [0, 0, 50, 100, 100, 100, 100, 100, 0, 0, 0, 0, 0, 0, 0, 0] + [100] * 14 + [0] * 10
    # Harm is the truth the fleet reports: two episodes (a re-ramp into a fault still active is a new one).
    harmful = {6, 7, 16, 17, 18}
    decided = {7, 17}  # ticks after these minutes decide: they govern minutes 8 and 18
    false_at = 30  # long after any harm
    rows = [_row(m, s, fallback_if(m, *decided, false_at), over=m, errors=2 * m, harmful=m in harmful,
                 fault_bad=50.0 if m in harmful else 0.0) for m, s in enumerate(shares)]
    out = figures(setup, rows, "x", calls=[(1, 0)] * len(rows))
    assert out.minutes_to_full_migration == shares.index(100) - setup.scenario.canary_start_minute
    assert out.harmful_onsets == 2 and out.fault_onset_minute == 6
    assert out.minutes_to_fallback_decided == 2  # worst episode: onset 6 -> governs 8; onset 16 -> governs 18
    assert out.minutes_to_fallback == 3  # onset 16: neuron stops producing bad requests at minute 19
    assert out.rollbacks == 3 and out.false_rollbacks == 1
    assert out.bad_requests == 3 * sum(range(len(shares)))
    assert out.metrics_calls == len(rows) and out.max_update_calls_per_tick == 0


def test_an_episode_with_no_rollback_has_no_fallback_time_and_a_harmless_fault_scores_nothing(make_setup):
    setup = make_setup(duration_minutes=20)
    rows = [_row(m, 100.0, "hold", harmful=5 <= m < 9, fault_bad=10.0 if 5 <= m < 9 else 0.0) for m in range(20)]
    out = figures(setup, rows, "x")
    assert out.harmful_onsets == 1 and out.minutes_to_fallback_decided is None and out.minutes_to_fallback is None
    quiet = figures(setup, [_row(m, 100.0, "fallback" if m == 10 else "hold") for m in range(20)], "x")
    assert quiet.harmful_onsets == 0 and quiet.false_rollbacks == 1


def fallback_if(m: int, *at: int) -> str:
    return "fallback" if m in at else "hold"


def test_call_counter_records_per_tick_deltas():
    class Source:
        api_calls = 0

    source, updates = Source(), [0]
    counter = CallCounter(source, lambda: updates[0])
    for metrics, update in ((1, 0), (1, 1), (2, 1)):
        source.api_calls += metrics
        updates[0] += update
        counter(None, None)
    assert counter.per_tick == [(1, 0), (1, 1), (2, 1)]


def test_spread_reports_mean_std_and_runs_without_the_figure():
    values = [2.0, 4.0, None]
    out = spread(values)
    assert out["n"] == 2 and out["missing"] == 1
    assert out["mean"] == pytest.approx(3.0) and out["std"] == pytest.approx(2 ** 0.5, rel=1e-3)
    assert spread([None])["mean"] is None


def _figures(policy: str, seed: int, cost: float, scenario: str = "s") -> RunFigures:
    return RunFigures(scenario=scenario, policy=policy, seed=seed, mode="in-memory", minutes=10, requests=100,
                      cost=cost, requests_over_slo=0, errors=0, bad_requests=0, minutes_to_full_migration=None,
                      harmful_onsets=0, fault_onset_minute=None, minutes_to_fallback=None, minutes_to_fallback_decided=None,
                      rollbacks=0, false_rollbacks=0, ticks=10, metrics_calls=10, update_calls=2,
                      max_metrics_calls_per_tick=1, max_update_calls_per_tick=1)


def test_cost_is_paired_with_the_oracle_of_the_same_seed():
    runs = [_figures("oracle", 1, 10.0), _figures("oracle", 2, 20.0), _figures("hybrid", 1, 11.0),
            _figures("hybrid", 2, 30.0)]
    pair_with_oracle(runs)
    table = aggregate(runs)
    expected = [11.0 / 10.0, 30.0 / 20.0]
    assert table["s"]["hybrid"]["cost_vs_oracle"]["mean"] == pytest.approx(sum(expected) / 2, rel=1e-3)
    assert table["s"]["hybrid"]["update_calls_per_tick"]["mean"] == pytest.approx(2 / 10)


def test_gap_closed_is_the_share_of_the_static_gpu_to_oracle_gap_a_policy_closes():
    runs = [_figures("oracle", 1, 10.0), _figures("static-gpu", 1, 30.0), _figures("hybrid", 1, 15.0),
            _figures("flagger-like", 1, 30.0)]
    pair_with_oracle(runs)
    by = {r.policy: r.gap_closed for r in runs}
    assert by == {"oracle": 1.0, "static-gpu": 0.0, "hybrid": pytest.approx(0.75), "flagger-like": 0.0}


def test_json_document_has_the_documented_keys(make_setup):
    setup = make_setup(duration_minutes=12)
    runs = [run_policy(setup, p) for p in ("hybrid", "oracle", "static-gpu")]
    doc = bench_document(runs, [setup.scenario], ["hybrid", "oracle", "static-gpu"], 1, Plan(), 1.0, 1)
    assert {"schema", "seeds", "policies", "parameters", "scenarios", "scenario_info", "wall_seconds", "workers",
            "results", "goals", "aws_check", "runs"} <= set(doc)
    assert doc["schema"] == "hybrid-bench/2"
    assert doc["scenario_info"][setup.scenario.name]["faults"] == []
    cell = doc["results"][setup.scenario.name]["hybrid"]
    for key in ("cost", "cost_vs_oracle", "gap_closed", "bad_requests", "requests_over_slo", "errors", "rollbacks",
                "false_rollbacks", "minutes_to_full_migration", "minutes_to_fallback_decided", "minutes_to_fallback",
                "metrics_calls_per_tick", "update_calls_per_tick"):
        assert {"mean", "std", "min", "max", "n", "missing"} <= set(cell[key])
    assert cell["max_metrics_calls_per_tick"] == 1 and cell["max_update_calls_per_tick"] <= 1
    assert {"goal", "scenario", "value", "bound", "met", "note"} <= set(doc["goals"][0])
    json.dumps(doc)


def test_plan_runs_low_traffic_over_twenty_seeds_and_adds_a_ten_x_copy(make_setup, example_config):
    low = make_setup(traffic={"rps": 1.0}).scenario
    jobs = plan([low], example_config, ["hybrid"], seeds=2, aws_check=False)
    assert jobs.low_traffic == low.name and jobs.adaptive == (low.name, f"{low.name}-x10")
    assert sum(1 for j in jobs.jobs if j.label == low.name and j.policy == "hybrid") == 20
    assert {j.policy for j in jobs.jobs} == {"hybrid", "static-gpu", "oracle"}  # the references always run
    assert scaled(low, 10.0).traffic.rps == pytest.approx(10 * low.traffic.rps)


def test_unknown_policy_is_bad_input():
    with pytest.raises(UserError, match="unknown policy"):
        check_policies(["hybrid,nope"])
    assert check_policies(["hybrid, oracle", "oracle"]) == ["hybrid", "oracle"]


def test_cli_bench_on_a_scenario_file_writes_json_and_plot(tmp_path):
    import yaml

    from toolkit.cli import app

    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump({"name": "tiny", "duration_minutes": 15, "traffic": {"rps": 10}}))
    plot_path = tmp_path / "out" / "bench.png"
    result = CliRunner().invoke(app, ["compare-policies", "--scenario", str(scenario), "--seeds", "1", "--workers", "1",
                                      "--no-aws-check", "--policies", "hybrid,oracle,static-gpu",
                                      "--plot", str(plot_path), "--output", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "tiny" in doc["results"] and plot_path.exists()


def test_cli_bench_rejects_an_unknown_policy_with_exit_2(capsys):
    from toolkit.cli import run

    assert run(["compare-policies", "--policies", "nope", "--no-aws-check", "--plot", ""]) == 2
    err = capsys.readouterr().err
    assert "unknown policy 'nope'" in err and "Traceback" not in err


def test_cli_bench_rejects_a_missing_scenario_with_exit_2(tmp_path, capsys):
    from toolkit.cli import run

    assert run(["compare-policies", "--scenario", str(tmp_path / "none.yaml"), "--no-aws-check", "--plot", ""]) == 2


def test_harm_that_stops_by_itself_before_any_decision_could_land_is_not_a_miss(make_setup):
    setup = make_setup(duration_minutes=20)
    # A re-ramp into a fault's last minute: one harmful minute, over before a decision could govern one.
    rows = [_row(m, 5.0, "hold", harmful=m == 8, fault_bad=20.0 if m == 8 else 0.0) for m in range(20)]
    out = figures(setup, rows, "x")
    assert out.harmful_onsets == 0 and out.minutes_to_fallback_decided is None
    longer = [_row(m, 5.0, "hold", harmful=8 <= m <= 10, fault_bad=20.0 if 8 <= m <= 10 else 0.0) for m in range(20)]
    assert figures(setup, longer, "x").harmful_onsets == 1


def test_a_step_back_answers_harm_without_counting_as_a_rollback(make_setup):
    setup = make_setup(duration_minutes=20)
    rows = [_row(m, 50.0 if m < 9 else 25.0, "step_back" if m == 7 else "hold", harmful=5 <= m < 9,
                 fault_bad=10.0 if 5 <= m < 9 else 0.0) for m in range(20)]
    out = figures(setup, rows, "x")
    assert out.minutes_to_fallback_decided == 3 and out.rollbacks == 0 and out.false_rollbacks == 0


def test_goals_judge_healthy_and_harmful_scenarios_from_the_truth(make_setup):
    from toolkit.bench.harness import judge

    healthy, harmful = make_setup().scenario, make_setup().scenario.model_copy(update={"name": "h"})
    runs = []
    for seed in range(20):
        for policy, cost in (("oracle", 10.0), ("static-gpu", 30.0), ("hybrid", 20.0), ("flagger-like", 18.0)):
            r = _figures(policy, seed, cost, "t")
            r.false_rollbacks = 1 if policy == "hybrid" and seed == 3 else 0
            runs.append(r)
            h = _figures(policy, seed, cost, "h")
            h.harmful_onsets = 1
            h.minutes_to_fallback_decided = (1 if seed else 3) if policy == "hybrid" else None
            h.bad_requests = 100 if policy == "hybrid" else 300
            runs.append(h)
    pair_with_oracle(runs)
    goals = {(g["goal"], g["scenario"]): g for g in judge(aggregate(runs), runs, [healthy, harmful], None)}
    assert goals[("healthy: 0 false rollbacks over 20 seeds", "t")]["met"] is False
    assert goals[("healthy: gap_closed >= every migrating baseline's", "t")]["met"] is False  # 0.5 vs 0.6
    assert goals[("fault: bad_requests <= 0.5 x best migrating baseline", "h")]["met"] is True
    decided = goals[("fault: fallback decided <= 2 min after every harmful onset", "h")]
    assert decided["met"] is False and decided["value"] == 3  # the worst seed decides


def test_metrics_late_for_the_whole_run_get_an_on_time_copy_and_the_late_metrics_goal(make_setup, example_config):
    from toolkit.bench.harness import judge, late_for_the_whole_run, on_time

    late = make_setup(duration_minutes=30, faults=[
        {"minute": 0, "variant": v, "kind": "metric_delay", "magnitude": 3, "duration_minutes": 30}
        for v in (NEURON, GPU)]).scenario
    partly = make_setup(duration_minutes=30, faults=[
        {"minute": 5, "variant": v, "kind": "metric_delay", "magnitude": 3, "duration_minutes": 10}
        for v in (NEURON, GPU)]).scenario
    assert late_for_the_whole_run(late) and not late_for_the_whole_run(partly)
    twin = on_time(late)
    assert twin.name == f"{late.name}-on-time" and not twin.faults
    jobs = plan([late], example_config, ["hybrid"], seeds=2, aws_check=False)
    assert jobs.late == [(late.name, twin.name)]
    assert {j.policy for j in jobs.jobs if j.label == twin.name} == {"hybrid"}  # the goal compares hybrid's runs
    table = {late.name: {"hybrid": {"minutes_to_full_migration": {"mean": 45.0, "n": 2, "missing": 0}}},
             twin.name: {"hybrid": {"minutes_to_full_migration": {"mean": 25.0, "n": 2, "missing": 0}}}}
    goal = next(g for g in judge(table, [], [], None, jobs.late) if g["goal"].startswith("late metrics"))
    assert goal["value"] == 1.8 and goal["met"] is False  # 45 vs 25 minutes: over 1.5x


def test_a_figure_no_seed_has_prints_never_for_minutes_and_a_dash_otherwise():
    from toolkit.bench.report import cell_text

    lacking = {"mean": None, "n": 0, "missing": 2}
    assert cell_text(lacking, 1, "minutes_to_full_migration") == "never"
    assert cell_text(lacking, 2, "cost_vs_oracle") == "-"
    assert cell_text({"mean": 30.0, "std": 0.0, "n": 1, "missing": 1}, 1, "minutes_to_full_migration") == "30.0 (1 never)"
