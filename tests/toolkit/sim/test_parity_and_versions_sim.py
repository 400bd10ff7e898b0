"""Simulator (issue 17): wrong answers as a fault online parity catches, a new model version mid-holding."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.config import load_config
from toolkit.errors import UserError
from toolkit.sim.runner import memory_world, run, summarize
from toolkit.sim.scenario import load_scenario, parse_scenario, resolve

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "hybrid.yaml"


def simulate(name: str, **overrides):
    scenario = load_scenario(name)
    if overrides:
        scenario = parse_scenario({**scenario.model_dump(mode="json"), **overrides})
    setup = resolve(scenario, load_config(EXAMPLE))
    world = memory_world(setup)
    return run(setup, world.simulator, world.controller())


def test_wrong_outputs_are_caught_by_online_parity_and_fall_back_with_the_numbers():
    result = simulate("wrong-outputs")
    fallbacks = [r for r in result.rows if r.action == "fallback" and "parity failed" in r.reason]
    assert fallbacks, [r.reason for r in result.rows if r.action]
    assert fallbacks[0].minute >= 40 and "mirrored requests" in fallbacks[0].reason
    summary = summarize(result)
    assert summary["wrong_answers"] > 0 and summary["bad_requests"] >= summary["wrong_answers"]
    assert summary["parity"]["compared"] > 0 and summary["parity"]["agreement"] < 0.99


def test_without_online_parity_the_same_wrong_answers_go_unseen_and_are_scored_as_they_are():
    blind = simulate("wrong-outputs", config={"variants": {"gpu": {"initial_count": 4}}})  # parity off
    seeing = simulate("wrong-outputs")
    assert not any("parity" in r.reason for r in blind.rows)
    assert summarize(blind)["wrong_answers"] > 3 * summarize(seeing)["wrong_answers"]
    assert summarize(blind)["parity"]["compared"] == 0


def test_a_new_neuron_model_mid_holding_goes_back_to_the_first_step_and_ramps_again():
    result = simulate("new-model-mid-holding")
    rows = result.rows
    assert any("neuron: new model v2 deployed" in e for e in rows[60].events)
    assert rows[59].share["neuron"] == 100.0
    back = next(r for r in rows if r.minute >= 60 and r.share["neuron"] <= 5.0 + 1e-6)
    passed = next(r for r in rows if r.minute > back.minute and "step 1/6 passed" in r.reason)
    assert all(r.share["neuron"] <= 5.0 + 1e-6 for r in rows if back.minute <= r.minute <= passed.minute)
    assert "neuron model changed" in rows[60].reason
    assert rows[-1].share["neuron"] == 100.0 and summarize(result)["fallbacks"] == 0


def test_scenario_events_and_the_new_fault_are_validated():
    base = {"name": "x", "duration_minutes": 10, "traffic": {"rps": 1}}
    with pytest.raises(UserError, match=r"events\[0\].minute \(12\) is past duration_minutes"):
        parse_scenario({**base, "events": [{"minute": 12}]})
    with pytest.raises(UserError, match=r"wrong_outputs fault magnitude is a share in 0\.\.1"):
        parse_scenario({**base, "faults": [{"minute": 1, "variant": "neuron", "kind": "wrong_outputs",
                                            "magnitude": 5, "duration_minutes": 2}]})
