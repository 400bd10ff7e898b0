"""The in-memory Router and MetricsSource: AWS's semantics without AWS."""

from __future__ import annotations

from datetime import timedelta

import pytest

from routing.model import Target
from routing.router import EndpointBusy
from toolkit.sim.fleet import Fleet
from toolkit.sim.memory import SimulatedMetrics
from toolkit.sim.runner import memory_world


def test_update_is_pending_until_settled_and_a_second_one_is_refused(make_setup):
    world = memory_world(make_setup())
    live = world.router.apply(Target({"neuron": 10.0, "gpu": 90.0}, {"neuron": 1, "gpu": 2}))
    assert live.status == "Updating"
    assert live.variants["neuron"].current_weight == 0.0 and live.variants["neuron"].desired_weight == 10.0
    with pytest.raises(EndpointBusy):
        world.router.apply(Target({"neuron": 20.0, "gpu": 80.0}, {"neuron": 1, "gpu": 2}))
    world.simulator.step()
    live = world.router.describe()
    assert live.in_service and live.share("neuron") == pytest.approx(10.0)
    assert world.router.update_calls == 1


def test_a_scale_up_keeps_the_endpoint_updating_until_instances_serve(make_setup):
    world = memory_world(make_setup(hardware={"neuron": {"scale_up_delay_minutes": 3}}))
    target = Target({"neuron": 10.0, "gpu": 90.0}, {"neuron": 3, "gpu": 2})
    world.router.apply(target)  # capacity first: neuron scales before it takes any share
    statuses = []
    for _ in range(5):
        outcome = world.simulator.step()
        statuses.append((world.router.describe().status, outcome.weights["neuron"]))
    assert statuses[0] == ("Updating", 0.0)
    assert statuses[-1] == ("InService", 0.0)
    assert world.router.describe().variants["neuron"].current_instance_count == 3
    world.router.apply(target)  # then the traffic
    world.simulator.step()
    assert world.router.describe().share("neuron") == pytest.approx(10.0)


def test_metrics_show_closed_minutes_only_and_honour_delays(make_setup):
    setup = make_setup(faults=[{"minute": 1, "variant": "gpu", "kind": "metric_delay", "magnitude": 2,
                                "duration_minutes": 1}])
    metrics = SimulatedMetrics(setup.scenario.start)
    fleet = Fleet(setup)
    for minute in range(2):
        for vm in fleet.serve(minute, {"neuron": 0.0, "gpu": 100.0}).variants.values():
            metrics.publish(vm)
    at = setup.scenario.start + timedelta(minutes=2, seconds=5)
    observed = metrics.observe("ep", ["neuron", "gpu"], at, 2)
    gpu = observed.for_variant("gpu")
    assert [m.start for m in gpu] == [setup.scenario.start, setup.scenario.start + timedelta(minutes=1)]
    assert gpu[0].has_data and not gpu[1].has_data  # minute 1 is 2 minutes late
    assert observed.for_variant("neuron")[0].invocations == 0  # idle but alive: zero, not missing
    later = metrics.observe("ep", ["neuron", "gpu"], at + timedelta(minutes=2), 4)
    assert later.for_variant("gpu")[1].has_data
    assert gpu[0].latency_p99_ms is not None and gpu[0].latency_p99_ms >= gpu[0].latency_p50_ms


def test_outage_minutes_are_missing_not_zero(make_setup):
    setup = make_setup(faults=[{"minute": 0, "variant": "neuron", "kind": "outage", "duration_minutes": 1}])
    metrics = SimulatedMetrics(setup.scenario.start)
    for vm in Fleet(setup).serve(0, {"neuron": 50.0, "gpu": 50.0}).variants.values():
        metrics.publish(vm)
    observed = metrics.observe("ep", ["neuron", "gpu"], setup.scenario.start + timedelta(minutes=1, seconds=5), 1)
    assert observed.for_variant("neuron")[0].invocations is None
    assert observed.for_variant("gpu")[0].has_data


def test_settle_delay_judges_a_minute_only_a_minute_after_it_closes_like_the_lambda(make_setup):
    from routing.lambda_handler import SETTLE_SECONDS
    from toolkit.sim.runner import DEPLOYED_SETTLE_SECONDS

    assert DEPLOYED_SETTLE_SECONDS == SETTLE_SECONDS  # the bench runs the controller as deployed
    setup = make_setup()
    metrics = SimulatedMetrics(setup.scenario.start, settle_seconds=60)
    at = setup.scenario.start + timedelta(minutes=2, seconds=5)
    observed = metrics.observe("ep", ["gpu"], at, 1)
    assert observed.for_variant("gpu")[0].start == setup.scenario.start  # minute 0, not minute 1


def test_without_percentiles_readers_get_the_adapters_stand_in_and_are_told(make_setup):
    setup = make_setup(metrics={"percentiles": False})
    metrics = SimulatedMetrics(setup.scenario.start, percentiles=setup.scenario.metrics.percentiles)
    for vm in Fleet(setup).serve(0, {"neuron": 50.0, "gpu": 50.0}).variants.values():
        metrics.publish(vm)
    observation = metrics.observe("ep", ["gpu"], setup.scenario.start + timedelta(minutes=1, seconds=5), 1)
    minute = observation.for_variant("gpu")[0]
    # As routing.core.observations does for CloudWatch: Maximum stands in for p90/p99, Average for p50.
    assert minute.latency_avg_ms is not None and minute.latency_max_ms is not None
    assert minute.latency_p99_ms == minute.latency_p90_ms == minute.latency_max_ms
    assert minute.latency_p50_ms == minute.latency_avg_ms
    assert observation.percentiles_available is False
