"""The simulation loop: autoscaling, controller ticks on the simulated clock, the summary figures."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from routing.model import Target
from toolkit.sim.runner import all_gpu_baseline, memory_world, run


class Scripted:
    """A stand-in controller: applies given targets at given minutes (the clock's minute)."""

    def __init__(self, world, plan):
        self.world, self.plan, self.seen = world, plan, []

    def _minute(self) -> int:
        return int((self.world.clock.now() - self.world.clock.origin).total_seconds() // 60)

    def command(self, name):
        return self.tick()

    def tick(self):
        minute = self._minute()
        self.seen.append(self.world.clock.now())
        action = "none"
        if minute in self.plan:
            self.world.router.apply(self.plan[minute])
            action = "fallback" if self.plan[minute].weights["neuron"] == 0 else "progress"
        decision = SimpleNamespace(action=action, reason=f"scripted at {minute}")
        return SimpleNamespace(decision=decision, state=None, errors=[])


def test_controller_ticks_five_seconds_after_each_minute_closes(make_setup):
    setup = make_setup(duration_minutes=4)
    world = memory_world(setup)
    controller = Scripted(world, {})
    run(setup, world.simulator, controller)
    start = setup.scenario.start
    assert controller.seen == [start + timedelta(minutes=m, seconds=5) for m in range(1, 5)]


def test_autoscaling_scales_out_after_three_minutes_above_target(make_setup):
    setup = make_setup(traffic={"rps": 60, "poisson": False}, hardware={"gpu": {"scale_up_delay_minutes": 2}})
    world = memory_world(setup)
    counts = [world.simulator.step().variants["gpu"].instances for _ in range(8)]
    # 60 req/s = 3,600/min at a 900/min target: 4 gpu instances, asked after minute 2, serving 2 minutes later.
    assert counts[:3] == [2, 2, 2]
    assert counts[-1] == 4
    assert world.router.describe().variants["gpu"].desired_instance_count == 4


def test_autoscaling_off_keeps_counts(make_setup):
    setup = make_setup(traffic={"rps": 60}, autoscaling={"enabled": False})
    world = memory_world(setup)
    assert {world.simulator.step().variants["gpu"].instances for _ in range(6)} == {2}


def test_autoscaling_keeps_the_routers_floor_and_its_scale_in_switch_per_variant(make_setup):
    from routing.model import Phase

    # 1 req/s: target tracking wants 1 instance of each; the router set floors as it does on AWS.
    setup = make_setup(traffic={"rps": 1, "poisson": False}, autoscaling={"scale_in_minutes": 2})
    world = memory_world(setup)
    world.router.plane.read().desired_counts.update({"neuron": 3, "gpu": 3})
    asked = Target(weights={"neuron": 5.0, "gpu": 95.0}, instance_counts={"neuron": 2, "gpu": 3})
    world.router.sync_scaling(Phase.RAMPING, asked)  # a ramp: neuron keeps what it has, gpu is the donor
    for _ in range(6):
        world.simulator.step()
    desired = world.router.describe().variants
    assert desired["neuron"].desired_instance_count == 3  # scale-in suspended (its floor, 2, is lower)
    assert desired["gpu"].desired_instance_count == 1  # gpu's floor released to min_count: scaled in
    world.router.sync_scaling(Phase.HOLDING, None)  # holding: both floors back to min_count, scale-in on
    for _ in range(6):
        world.simulator.step()
    assert world.router.describe().variants["neuron"].desired_instance_count == 1
    # A count the policy asks above what there is becomes the floor: autoscaling scales out to it.
    world.router.sync_scaling(Phase.HOLDING, Target(weights={"neuron": 100.0, "gpu": 0.0},
                                                    instance_counts={"neuron": 2, "gpu": 1}))
    for _ in range(6):
        world.simulator.step()
    assert world.router.describe().variants["neuron"].desired_instance_count == 2


def test_summary_times_the_fallback_from_the_fault_onset(make_setup):
    setup = make_setup(duration_minutes=20, canary_start_minute=0, autoscaling={"enabled": False},
                       faults=[{"minute": 8, "variant": "neuron", "kind": "latency", "magnitude": 3,
                                "duration_minutes": 4}])
    world = memory_world(setup)
    plan = {2: Target({"neuron": 50.0, "gpu": 50.0}, {"neuron": 1, "gpu": 2}),
            10: Target({"neuron": 0.0, "gpu": 100.0}, {"neuron": 1, "gpu": 2}),
            14: Target({"neuron": 50.0, "gpu": 50.0}, {"neuron": 1, "gpu": 2})}
    result = run(setup, world.simulator, Scripted(world, plan))
    result.baseline = all_gpu_baseline(setup)
    summary = result.summary()
    assert summary["fault_onset_minute"] == 8
    assert summary["fallback_minute"] == 10 and summary["minutes_to_fallback"] == 2
    assert summary["recovered_minute"] == 14
    assert summary["false_rollbacks"] == 0
    assert summary["requests_over_slo"] > 0  # the regression hurt until the fallback landed
    assert summary["requests"] == sum(r.offered for r in result.rows)
    assert summary["all_gpu_cost"] > 0 and summary["savings_vs_all_gpu"] is not None


def test_the_real_controller_runs_in_memory(make_setup):
    setup = make_setup(duration_minutes=15, canary_start_minute=3)
    world = memory_world(setup)
    result = run(setup, world.simulator, world.controller())
    assert next(r.phase for r in result.rows) == "idle"
    assert any(r.phase == "ramping" for r in result.rows)
    assert world.metrics.api_calls >= 13  # one batched metrics read per tick


def test_a_fallback_is_counted_once_while_it_lands():
    from toolkit.sim.runner import Row, fallback_events

    def row(minute, phase, action):
        return Row(minute=minute, offered=0, share={}, instances={}, requests={}, p99_ms={}, true_p99_ms=None,
                   cost=0.0, cost_per_1k={}, over_slo=0, errors=0, faults=[], phase=phase, action=action)

    rows = [row(0, "ramping", "progress"), row(1, "ramping", "fallback"),  # refused: endpoint busy
            row(2, "falling_back", "fallback"), row(3, "falling_back", "fallback"),
            row(4, "cooling_down", "none"), row(5, "falling_back", "fallback")]
    assert fallback_events(rows) == [2, 5]
    scripted = [row(0, "", "fallback"), row(1, "", "fallback"), row(2, "", "progress"), row(3, "", "fallback")]
    assert fallback_events(scripted) == [0, 3]


def test_a_new_model_waits_for_the_endpoint_to_be_in_service_as_a_deploy_pipeline_does(make_setup):
    # SageMaker refuses UpdateEndpoint while the endpoint updates: the event is deployed the first
    # minute the endpoint is InService again, and says how long it waited.
    setup = make_setup(duration_minutes=5, events=[{"minute": 1, "kind": "new_model", "variant": "neuron"}])
    world = memory_world(setup)
    world.simulator.step()
    world.router.plane.read().status = "Updating"  # e.g. a scale-up still running
    world.simulator.step()
    assert not any("new model" in e for e in world.simulator.events)
    world.simulator.step()
    assert any("new model v2 deployed (waited 1 min for InService)" in e for e in world.simulator.events)
