"""Metrics missing, partial, delayed or without a variant; the clock jumping or running backwards.

A step moves only on evidence: no datapoints, no latency, one variant absent or data that arrives
late never move traffic toward neuron; the toolkit holds (or falls back when neuron's silence is
itself the signal) and writes one record per tick.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.reliability.conftest import STEPS, TOTAL_PER_MINUTE, World, assert_safe, ready_to_progress
from tests.routing._aws import feed_minute, feed_split


def _advance_without_metrics(world: World, minutes: int) -> None:
    world.minute += timedelta(minutes=minutes)
    world.clock.set(world.minute + timedelta(seconds=10))


def _no_neuron_step(world: World, sent: int) -> None:
    """Nothing moved traffic toward neuron beyond the step it was on."""
    assert all(u["neuron"] <= STEPS[0] for u in world.updates[sent:]), world.updates[sent:]


@pytest.mark.fault("metrics missing for both variants")
def test_no_datapoints_at_all_hold_then_fail_safe(world: World):
    ready_to_progress(world, complete=False)
    sent = len(world.updates)
    limit = world.config.fallback.max_unknown_ticks
    for _ in range(limit - 1):  # holds: nothing is known, nothing moves
        _advance_without_metrics(world, 1)
        assert world.tick()["action"] == "hold"
        assert world.share() == STEPS[0]
    _advance_without_metrics(world, 1)
    record = world.tick()  # ...then fails safe: everything to gpu
    assert record["action"] == "fallback", record["reason"]
    _no_neuron_step(world, sent)
    assert_safe(world, gpu_only=True)


@pytest.mark.fault("NaN and infinite metric values")
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_metrics_are_unknown_hold_then_fail_safe_and_records_stay_json(world: World, bad: float):
    import json
    from dataclasses import replace

    class NonFinite:  # CloudWatch as it would look if a statistic came back NaN/inf
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def observe(self, *args: Any, **kwargs: Any) -> Any:
            seen = self.inner.observe(*args, **kwargs)
            minutes = dict(seen.minutes)
            if minutes.get("neuron"):
                minutes["neuron"] = (*minutes["neuron"][:-1], replace(minutes["neuron"][-1], latency_p99_ms=bad))
            return replace(seen, minutes=minutes)

    ready_to_progress(world)
    limit = world.config.fallback.max_unknown_ticks
    ctl = world.controller(metrics=NonFinite(world.metrics()))
    for n in range(limit):
        world.feed()
        record = world.tick(ctl)
        if n < limit - 1:
            assert record["action"] == "hold" and "non-finite" in " ".join(record["errors"]), record["reason"]
            assert world.share() == STEPS[0]
    assert record["action"] == "fallback", record["reason"]
    assert_safe(world, gpu_only=True)
    text = (world.state_dir / world.name / "records.jsonl").read_text()
    for line in text.splitlines():
        json.loads(line, parse_constant=lambda token: pytest.fail(f"bare {token} in records.jsonl"))


@pytest.mark.fault("neuron variant absent from the metrics")
def test_a_variant_missing_from_the_metrics_never_takes_a_step_and_silence_under_load_falls_back(world: World):
    world.start_and_ramp_to(1)
    sent = len(world.updates)
    for _ in range(4):  # gpu serves its half; neuron publishes nothing (a dead variant looks like this)
        feed_minute(world.cw, world.name, "gpu", world.minute, invocations=TOTAL_PER_MINUTE // 2)
        world.minute += timedelta(minutes=1)
        world.clock.set(world.minute + timedelta(seconds=10))
        world.tick()
        assert all(u["neuron"] <= STEPS[1] for u in world.updates[sent:])
    assert_safe(world, gpu_only=True)  # expected traffic and none seen on neuron: back to gpu


@pytest.mark.fault("partial metrics: invocations without latency")
def test_invocations_without_latency_never_pass_a_gate(world: World):
    ready_to_progress(world, complete=False)
    sent = len(world.updates)
    for _ in range(3):
        for variant, share in (("neuron", STEPS[0]), ("gpu", 100.0 - STEPS[0])):
            dims = [{"Name": "EndpointName", "Value": world.name}, {"Name": "VariantName", "Value": variant}]
            world.cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
                {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": world.minute + timedelta(seconds=30),
                 "Value": TOTAL_PER_MINUTE * share / 100.0}])
        world.minute += timedelta(minutes=1)
        world.clock.set(world.minute + timedelta(seconds=10))
        world.tick()
        _no_neuron_step(world, sent)
    assert_safe(world)


@pytest.mark.fault("metrics delayed past the tick")
def test_late_metrics_hold_the_tick_then_the_step_is_taken_once_when_they_arrive(world: World):
    ready_to_progress(world, complete=False)
    late = world.minute
    world.minute += timedelta(minutes=1)
    world.clock.set(world.minute + timedelta(seconds=10))
    sent = len(world.updates)
    world.tick()  # the bake's last minute has not been published yet
    _no_neuron_step(world, sent)
    feed_split(world.cw, world.name, late, total=TOTAL_PER_MINUTE, neuron_share=STEPS[0])  # it arrives
    world.feed()
    world.tick()
    assert world.share() == STEPS[1]
    assert world.updates[sent:] == [{"neuron": STEPS[1], "gpu": 100.0 - STEPS[1]}]
    assert_safe(world)


@pytest.mark.fault("metrics breach after a gap")
def test_a_breach_after_missing_minutes_still_falls_back(world: World):
    world.start_and_ramp_to(1)
    _advance_without_metrics(world, 2)
    world.tick()
    world.feed(2, neuron_p99_ms=400.0)
    world.tick()
    assert_safe(world, gpu_only=True)


# ------------------------------------------------------------------------------------------------
# Clock


@pytest.mark.fault("clock jumps forward hours mid-ramp")
def test_a_clock_jump_of_hours_never_skips_a_step(world: World):
    ready_to_progress(world)
    sent = len(world.updates)
    _advance_without_metrics(world, 6 * 60)
    world.tick()
    world.feed(3)
    world.tick()
    assert all(u["neuron"] <= STEPS[1] for u in world.updates[sent:]), world.updates[sent:]
    assert len([u for u in world.updates[sent:] if u["neuron"] > 0]) <= 1
    assert_safe(world)


@pytest.mark.fault("clock runs backwards")
def test_a_clock_running_backwards_changes_nothing_and_resumes_cleanly(world: World):
    ready_to_progress(world)
    world.tick()  # takes step 2
    assert world.share() == STEPS[1]
    sent = len(world.updates)
    state = world.store().load()
    for back in (timedelta(minutes=5), timedelta(hours=3), timedelta(days=2)):
        world.clock.set(world.minute - back)
        world.tick()
        assert len(world.updates) == sent, f"a tick {back} in the past moved traffic"
        assert world.store().load().step == state.step
        assert_safe(world)
    world.clock.set(world.minute + timedelta(seconds=10))
    world.feed(3)
    world.tick()
    assert world.share() in (STEPS[1], STEPS[2])
    assert len(world.updates) - sent <= 1
    assert_safe(world)


@pytest.mark.fault("clock runs backwards during cooldown")
def test_a_clock_running_backwards_during_cooldown_never_re_ramps_early(world: World):
    world.start_and_ramp_to(1)
    world.feed(2, neuron_p99_ms=400.0)
    world.tick()
    assert world.share() == 0.0
    sent = len(world.updates)
    fell_back_at = world.clock.now()
    for _ in range(3):
        world.feed()
        world.tick()
    world.clock.set(fell_back_at - timedelta(hours=2))
    world.tick()
    world.clock.set(fell_back_at + timedelta(minutes=4))
    world.tick()
    cooldown = world.config.fallback.cooldown_minutes
    assert cooldown > 4
    assert world.updates[sent:] == [], "traffic went back to neuron before the cooldown ended"
    assert_safe(world, gpu_only=True)


@pytest.mark.fault("clock jumps past the cooldown")
def test_a_clock_jump_past_the_cooldown_re_ramps_from_the_first_step_only(world: World):
    world.start_and_ramp_to(1)
    world.feed(2, neuron_p99_ms=400.0)
    world.tick()
    world.feed()
    assert world.tick()["phase"] == "cooling_down"  # drained: the cool-down runs from here
    sent = len(world.updates)
    _advance_without_metrics(world, 24 * 60)
    for _ in range(3):
        world.feed()
        world.tick()
    assert world.updates[sent:], "the ramp never resumed after the cooldown"
    assert world.updates[sent] == {"neuron": STEPS[0], "gpu": 100.0 - STEPS[0]}, world.updates[sent:]
    assert all(u["neuron"] <= STEPS[0] for u in world.updates[sent:]), world.updates[sent:]
    assert_safe(world)
