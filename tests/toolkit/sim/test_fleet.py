"""The fleet model: what a variant serves and publishes in one minute, and the truth behind it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.sim.fleet import (
    MAX_VALUES_PER_DATUM,
    VALUES_MS,
    Fleet,
    add_lognormal,
    metric_data,
    percentile_ms,
)

EVEN = {"neuron": 50.0, "gpu": 50.0}


def test_histogram_percentiles_follow_the_lognormal():
    rng = np.random.default_rng(0)
    hist = np.zeros(len(VALUES_MS), dtype=np.int64)
    add_lognormal(hist, rng, 200_000, 50_000.0, 0.2)
    assert hist.sum() == 200_000
    assert percentile_ms(hist, 50) == pytest.approx(50.0, rel=0.02)
    assert percentile_ms(hist, 99) == pytest.approx(50.0 * math.exp(2.326 * 0.2), rel=0.03)


def test_same_seed_same_minutes_different_seed_different(make_setup):
    def run(seed: int) -> list[tuple[int, float | None]]:
        fleet = Fleet(make_setup(seed=seed))
        return [(o.offered, o.true_p99_ms) for o in (fleet.serve(m, EVEN) for m in range(5))]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_weights_split_traffic_and_zero_weight_gets_nothing(make_setup):
    fleet = Fleet(make_setup())
    outcome = fleet.serve(0, {"neuron": 0.0, "gpu": 100.0})
    assert outcome.variants["neuron"].requests == 0
    assert outcome.variants["gpu"].requests == outcome.offered
    shares = [fleet.serve(m, {"neuron": 30.0, "gpu": 70.0}).variants["neuron"].requests for m in range(1, 30)]
    assert np.mean(shares) / 1800 == pytest.approx(0.3, abs=0.03)


def test_load_near_capacity_raises_latency_and_excess_fails(make_setup):
    light = Fleet(make_setup(traffic={"rps": 10, "poisson": False}, hardware={"gpu": {"minute_jitter": 0}}))
    heavy = Fleet(make_setup(traffic={"rps": 38, "poisson": False}, hardware={"gpu": {"minute_jitter": 0}}))
    over = Fleet(make_setup(traffic={"rps": 80, "poisson": False}))
    gpu_only = {"neuron": 0.0, "gpu": 100.0}  # 2 gpu instances x 20 req/s = 40 req/s capacity
    assert heavy.serve(0, gpu_only).variants["gpu"].p(50) > 1.2 * light.serve(0, gpu_only).variants["gpu"].p(50)
    overloaded = over.serve(0, gpu_only).variants["gpu"]
    assert overloaded.errors_5xx >= 80 * 60 - 40 * 60
    assert overloaded.utilization == pytest.approx(2.0)


def test_latency_fault_multiplies_latency_only_while_active(make_setup):
    setup = make_setup(faults=[{"minute": 2, "variant": "neuron", "kind": "latency", "magnitude": 3.0,
                                "duration_minutes": 2}])
    fleet = Fleet(setup)
    p50 = [fleet.serve(m, EVEN).variants["neuron"].p(50) for m in range(6)]
    assert min(p50[2:4]) > 2.5 * max(p50[:2] + p50[4:])


def test_outage_fails_every_request_and_publishes_nothing(make_setup):
    setup = make_setup(faults=[{"minute": 0, "variant": "neuron", "kind": "outage", "duration_minutes": 1}])
    outcome = Fleet(setup).serve(0, EVEN)
    neuron = outcome.variants["neuron"]
    assert neuron.errors_5xx == neuron.requests > 0
    assert not neuron.published
    assert metric_data(neuron, "ep", 0) == []


def test_error_fault_raises_5xx_share(make_setup):
    setup = make_setup(faults=[{"minute": 0, "variant": "gpu", "kind": "errors", "magnitude": 0.3,
                                "duration_minutes": 1}])
    gpu = Fleet(setup).serve(0, EVEN).variants["gpu"]
    assert gpu.errors_5xx / gpu.requests == pytest.approx(0.3, abs=0.05)


def test_metric_delay_is_carried_to_the_publisher(make_setup):
    setup = make_setup(faults=[{"minute": 0, "variant": "gpu", "kind": "metric_delay", "magnitude": 3,
                                "duration_minutes": 1}])
    assert Fleet(setup).serve(0, EVEN).variants["gpu"].publish_delay == 3


def test_scale_up_waits_for_the_delay_and_new_instances_start_cold(make_setup):
    setup = make_setup(hardware={"neuron": {"scale_up_delay_minutes": 3, "cold_start_minutes": 2,
                                            "cold_start_multiplier": 3.0, "minute_jitter": 0}},
                       traffic={"rps": 20, "poisson": False})
    fleet = Fleet(setup)
    warm = fleet.serve(0, {"neuron": 100.0, "gpu": 0.0}).variants["neuron"]
    fleet.set_counts(1, {"neuron": 2})
    assert fleet.counts()["neuron"] == 1 and fleet.scaling()
    fleet.promote(3)
    assert fleet.counts()["neuron"] == 1
    cold = fleet.serve(4, {"neuron": 100.0, "gpu": 0.0}).variants["neuron"]
    assert fleet.counts()["neuron"] == 2 and not fleet.scaling()
    assert cold.p(99) > 1.5 * warm.p(99)


def test_scale_in_is_immediate_and_cost_counts_starting_instances(make_setup):
    fleet = Fleet(make_setup())
    fleet.set_counts(0, {"gpu": 5})
    outcome = fleet.serve(0, EVEN)
    assert outcome.variants["gpu"].billed_instances == 5
    assert outcome.variants["gpu"].cost == pytest.approx(5 * 1.408 / 60)
    fleet.set_counts(1, {"gpu": 1})
    assert fleet.provisioned()["gpu"] == 1


def test_metric_data_is_what_sagemaker_publishes(make_setup):
    vm = Fleet(make_setup(traffic={"rps": 20})).serve(0, EVEN).variants["neuron"]
    data = metric_data(vm, "ep", "2026-01-01T00:00:00Z")
    names = {d["MetricName"] for d in data}
    assert names == {"Invocations", "InvocationsPerInstance", "Invocation4XXErrors", "Invocation5XXErrors",
                     "ModelLatency", "OverheadLatency"}
    for datum in data:
        assert datum["Dimensions"] == [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "neuron"}]
    latency = [d for d in data if d["MetricName"] == "ModelLatency"]
    assert all(d["Unit"] == "Microseconds" and len(d["Values"]) <= MAX_VALUES_PER_DATUM for d in latency)
    assert sum(sum(d["Counts"]) for d in latency) == vm.latency_samples
    values = [v for d in latency for v in d["Values"]]
    assert min(values) > 30_000 and max(values) < 400_000  # microseconds around a 55 ms median


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # a stateless factory
@given(rps=st.floats(0, 300), neuron=st.floats(0, 100), seed=st.integers(0, 10_000))
def test_every_request_is_accounted_for(make_setup, rps, neuron, seed):
    setup = make_setup(seed=seed, traffic={"rps": rps})
    outcome = Fleet(setup).serve(0, {"neuron": neuron, "gpu": 100.0 - neuron})
    assert sum(v.requests for v in outcome.variants.values()) == outcome.offered
    for vm in outcome.variants.values():
        assert vm.errors_4xx + vm.errors_5xx + vm.latency_samples == vm.requests
        assert 0 <= vm.over_slo <= vm.latency_samples


def test_expected_percentiles_match_what_the_fleet_serves(make_setup):
    setup = make_setup(traffic={"rps": 30, "poisson": False}, hardware={"gpu": {"minute_jitter": 0}},
                       faults=[{"minute": 1, "variant": "gpu", "kind": "latency", "magnitude": 2.0,
                                "duration_minutes": 1}])
    fleet = Fleet(setup)
    gpu_only = {"neuron": 0.0, "gpu": 100.0}
    for minute in range(2):
        served = fleet.serve(minute, gpu_only).variants["gpu"]
        expected = fleet.expected_p_ms("gpu", minute, served.requests, served.instances, 50)
        assert served.p(50) == pytest.approx(expected, rel=0.03)
    assert fleet.expected_p_ms("gpu", 0, 1800, 0) is None
    assert fleet.expected_error_rate("gpu", 0, 4800, 2) == pytest.approx(0.5, abs=0.01)  # twice the capacity


def _harm(make_setup, fault: dict, share: float = 100.0, minute: int = 0):
    from toolkit.sim.fleet import Fleet

    setup = make_setup(traffic={"rps": 30}, faults=[{"minute": 0, "variant": "neuron", "duration_minutes": 300,
                                                     **fault}])
    return Fleet(setup).serve(minute, {"neuron": share, "gpu": 100.0 - share}).variants["neuron"]


def test_harm_is_the_truth_not_the_label(make_setup):
    # An error rate just over the cap (1 %) is harmful; just under it is not.
    assert _harm(make_setup, {"kind": "errors", "magnitude": 0.015}).harmful
    assert not _harm(make_setup, {"kind": "errors", "magnitude": 0.005}).harmful
    # A 1.2x latency fault keeps neuron's p99 inside the 150 ms SLO: labelled, harmless.
    assert not _harm(make_setup, {"kind": "latency", "magnitude": 1.2}).harmful
    assert _harm(make_setup, {"kind": "latency", "magnitude": 3.0}).harmful
    # A fault on a neuron that carries nothing harms nobody.
    assert not _harm(make_setup, {"kind": "outage"}, share=0.0).harmful
    assert _harm(make_setup, {"kind": "outage"}, share=5.0).harmful


def test_bad_requests_count_over_slo_and_failed_requests(make_setup):
    vm = _harm(make_setup, {"kind": "errors", "magnitude": 0.3})
    assert vm.bad_requests == vm.over_slo + vm.errors_5xx and vm.errors_5xx > 0


def test_a_ramped_latency_fault_grows_linearly_to_its_magnitude(make_setup):
    setup = make_setup(duration_minutes=200, faults=[{"minute": 10, "variant": "neuron", "kind": "latency",
                                                      "magnitude": 3.0, "ramp_minutes": 100, "duration_minutes": 150}])
    fault = setup.scenario.faults[0]
    assert fault.factor(10) == pytest.approx(1.02) and fault.factor(59) == pytest.approx(2.0)
    assert fault.factor(150) == pytest.approx(3.0)


def test_every_policy_faces_the_same_traffic_and_jitter_on_a_seed(make_setup):
    from toolkit.sim.fleet import Fleet

    setup = make_setup(traffic={"rps": 30})
    a, b = Fleet(setup), Fleet(setup)
    a.serve(0, {"neuron": 0.0, "gpu": 100.0})
    b.serve(0, {"neuron": 70.0, "gpu": 30.0})  # different routing draws different request samples...
    assert a.draws(1) == b.draws(1)  # ...but the next minute's traffic, jitter and noise are the same
