"""Each baseline behaves as its real counterpart: full migration when healthy, rollback when harmed.

Small cases through the harness (the same adapters, staging and autoscaling as the bench).
"""

from __future__ import annotations

import pytest

from toolkit.bench.harness import run_policy
from toolkit.config import NEURON

MIGRATING = ("guardrails-linear", "flagger-like")


@pytest.mark.parametrize("policy", MIGRATING)
@pytest.mark.parametrize("rps", [30.0, 120.0])
def test_migrating_baseline_reaches_full_migration_on_a_healthy_scenario(make_setup, policy, rps):
    gpu = max(2, round(rps / 15))  # sized like the scenarios: the autoscaling target of 900/min/instance
    setup = make_setup(duration_minutes=70, traffic={"rps": rps}, config={"variants": {"gpu": {"initial_count": gpu}}})
    out = run_policy(setup, policy)
    assert out.minutes_to_full_migration is not None, policy
    assert out.rollbacks == 0 and out.false_rollbacks == 0
    # Canary capacity: no overload at the canary's steps (Flagger's canary inherits the primary's minimum).
    assert out.errors < 0.002 * out.requests


@pytest.mark.parametrize(("policy", "onset"), [("guardrails-linear", 12), ("flagger-like", 8)])
def test_migrating_baseline_rolls_back_when_a_fault_harms_neuron_during_its_deployment(make_setup, policy, onset):
    # Each tool watches only during its deployment (guardrails: ~25 min of steps and bake; Flagger: 5 one-minute steps).
    setup = make_setup(duration_minutes=40, traffic={"rps": 30},
                       faults=[{"minute": onset, "variant": "neuron", "kind": "errors", "magnitude": 0.3,
                                "duration_minutes": 20}])
    out = run_policy(setup, policy)
    assert out.harmful_onsets >= 1 and out.rollbacks == 1 and out.false_rollbacks == 0
    assert out.minutes_to_fallback_decided is not None


def test_guardrails_terminates_the_green_fleet_on_rollback(make_setup):
    from toolkit.bench.baselines import GuardrailsLinear
    from toolkit.bench.harness import BaselineController
    from toolkit.sim.runner import memory_world, run

    setup = make_setup(duration_minutes=40, traffic={"rps": 60},
                       config={"variants": {"gpu": {"initial_count": 4}}},
                       faults=[{"minute": 14, "variant": "neuron", "kind": "errors", "magnitude": 0.3,
                                "duration_minutes": 20}])
    world = memory_world(setup, setup.seed)
    rows = run(setup, world.simulator, BaselineController(GuardrailsLinear(), world, setup)).rows
    rolled = next(r.minute for r in rows if r.action == "fallback")
    # Within a few minutes (the update waits for the endpoint), neuron is back at its floor, not left to autoscaling.
    assert rows[rolled + 6].instances[NEURON] == setup.hardware[NEURON].min_count


def test_flagger_promotion_lands_weights_and_count_both(make_setup):
    setup = make_setup(duration_minutes=50, traffic={"rps": 60}, config={"variants": {"gpu": {"initial_count": 4}}})
    out = run_policy(setup, "flagger-like")
    assert out.minutes_to_full_migration is not None
