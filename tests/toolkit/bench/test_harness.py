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


def _row(minute: int, neuron: float, action: str = "", over: int = 0, errors: int = 0, cost: float = 1.0) -> Row:
    return Row(minute=minute, offered=100, share={NEURON: neuron, GPU: 100.0 - neuron},
               instances={NEURON: 1, GPU: 1}, requests={NEURON: 0, GPU: 0}, p99_ms={NEURON: None, GPU: None},
               true_p99_ms=None, cost=cost, cost_per_1k={}, over_slo=over, errors=errors, faults=[], action=action)


def test_figures_time_fallback_and_flag_false_rollbacks(make_setup):
    onset, length = 6, 3
    setup = make_setup(duration_minutes=30, canary_start_minute=2,
                       faults=[{"minute": onset, "variant": "neuron", "kind": "errors", "magnitude": 0.3,
                                "duration_minutes": length}])
    shares = [0, 0, 50, 100, 100, 100, 100, 100, 0, 0, 0, 0, 0, 0, 0, 0, 100, 100, 100, 100, 100, 100, 100, 100,
              100, 100, 100, 0, 0, 0]
    decided_at = onset + 1  # the tick after minute onset+1 closed
    false_at = 26  # long after the fault ended
    rows = [_row(m, s, fallback_if(m, decided_at, false_at), over=m, errors=2 * m) for m, s in enumerate(shares)]
    out = figures(setup, rows, "x", calls=[(1, 0)] * len(rows))
    first_full = shares.index(100)
    assert out.minutes_to_full_migration == first_full - setup.scenario.canary_start_minute
    first_gpu_only = next(m for m in range(onset, len(shares)) if shares[m] == 0)
    assert out.minutes_to_fallback == first_gpu_only - onset
    assert out.minutes_to_fallback_decided == decided_at + 1 - onset
    assert out.rollbacks == 2 and out.false_rollbacks == 1
    assert out.requests_over_slo == sum(range(len(shares))) and out.errors == 2 * sum(range(len(shares)))
    assert out.metrics_calls == len(rows) and out.max_update_calls_per_tick == 0


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
                      cost=cost, requests_over_slo=0, errors=0, minutes_to_full_migration=None,
                      fault_onset_minute=None, minutes_to_fallback=None, minutes_to_fallback_decided=None,
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


def test_json_document_has_the_documented_keys(make_setup):
    setup = make_setup(duration_minutes=12)
    runs = [run_policy(setup, p) for p in ("hybrid", "oracle", "static-gpu")]
    doc = bench_document(runs, [setup.scenario], ["hybrid", "oracle", "static-gpu"], 1, Plan(), 1.0, 1)
    assert {"schema", "seeds", "policies", "parameters", "scenarios", "wall_seconds", "workers", "results",
            "goals", "aws_check", "runs"} <= set(doc)
    cell = doc["results"][setup.scenario.name]["hybrid"]
    for key in ("cost", "cost_vs_oracle", "requests_over_slo", "errors", "minutes_to_full_migration",
                "minutes_to_fallback", "false_rollbacks", "metrics_calls_per_tick", "update_calls_per_tick"):
        assert {"mean", "std", "min", "max", "n", "missing"} <= set(cell[key])
    assert {"goal", "scenario", "value", "bound", "met", "note"} <= set(doc["goals"][0])
    json.dumps(doc)


def test_plan_runs_low_traffic_over_twenty_seeds_and_adds_a_ten_x_copy(make_setup, example_config):
    low = make_setup(traffic={"rps": 1.0}).scenario
    jobs = plan([low], example_config, ["hybrid"], seeds=2, aws_check=False)
    assert jobs.low_traffic == low.name and jobs.adaptive == (low.name, f"{low.name}-x10")
    assert sum(1 for j in jobs.jobs if j.label == low.name) == 20
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
