"""The controller killed at every point of a tick, then restarted.

The tick that dies is one that wants to act (step 1/3 -> step 2/3). The process dies with a
BaseException injected before or after each adapter and store call in turn; a new controller
(fresh adapters, same state dir, same live endpoint) then ticks once. Afterwards:
- the endpoint is on a safe split and the state agrees with it (no pending intent, step = live share);
- the step was sent to AWS exactly once (never repeated) and none was skipped;
- every weight change that reached AWS is explained by a decision record (none lost).
"""

from __future__ import annotations

import pytest

from tests.reliability.conftest import (
    STEPS,
    Crash,
    Faulty,
    World,
    assert_safe,
    count_lost,
    ready_to_progress,
)

# (adapter, method, call number, before/after): every call one tick makes, in order.
POINTS = [
    ("store", "load", 1, "before"),
    ("store", "load", 1, "after"),
    ("router", "describe", 1, "before"),
    ("router", "describe", 1, "after"),
    ("metrics", "observe", 1, "before"),
    ("metrics", "observe", 1, "after"),
    ("store", "save", 1, "before"),  # before the intent is saved
    ("store", "save", 1, "after"),  # intent saved, update not sent
    ("router", "apply", 1, "before"),
    ("router", "apply", 1, "after"),  # the update reached AWS, the process died
    ("store", "save", 2, "before"),  # applied, final state not saved
    ("store", "save", 2, "after"),  # final state saved, record not written
    ("store", "append_record", 1, "before"),
    ("store", "append_record", 1, "after"),
]



def _id(point: tuple[str, str, int, str]) -> str:
    return f"{point[3]}-{point[0]}.{point[1]}#{point[2]}"


def _explained(world: World, update: dict[str, float], records: list[dict]) -> bool:
    for record in records:
        target = (record.get("target") or {}).get("weights")
        if record.get("applied") and target == update:
            return True
        # The restart's record names the recovered action and shows the weights it found in place.
        found = {name: v["desired_weight"] for name, v in ((record.get("before") or {}).get("variants") or {}).items()}
        if found == update and any(n.startswith("recovered") for n in record.get("notes", [])):
            return True
    return False


@pytest.mark.fault("controller killed mid-tick, restarted")
@pytest.mark.parametrize(
    "point",
    [pytest.param(p, id=_id(p)) for p in POINTS],
)
def test_a_tick_killed_at_any_point_restarts_consistent_without_repeating_or_losing_a_step(world: World, point):
    ready_to_progress(world)
    sent_before = len(world.updates)
    records_before = len(world.records())
    adapter, method, n, when = point
    adapters = {"store": world.store(), "router": world.router(), "metrics": world.metrics()}
    adapters[adapter] = Faulty(adapters[adapter], {(method, n): (when, Crash(f"killed {when} {method}"))})
    doomed = world.controller(**adapters)
    with pytest.raises(Crash):
        doomed.tick()
    died_with = len(world.records()) - records_before
    assert died_with in (0, 1)  # the dead tick wrote its record or nothing, never half of one

    world.clock.advance(30)  # restarted within the same minute: no new metrics
    world.tick()  # a new process: fresh adapters over the same files and endpoint

    live = assert_safe(world)
    share = world.share()
    assert share == STEPS[1], f"after restart neuron is at {share}, expected step 2 ({STEPS[1]})"
    state = world.store().load()
    assert state is not None and STEPS[state.step] == share, "state's step disagrees with the live endpoint"
    sent = world.updates[sent_before:]
    assert sent == [{"neuron": STEPS[1], "gpu": 100.0 - STEPS[1]}], f"step sent {len(sent)} times: {sent}"
    assert live.variants["gpu"].desired_instance_count >= world.config.variant("gpu").min_count
    records = world.records()
    lost = [u for u in world.updates if not _explained(world, u, records)]
    count_lost(len(lost))
    assert lost == [], f"weight changes with no decision record: {lost}"


@pytest.mark.fault("controller killed during a fallback, restarted")
@pytest.mark.parametrize("point", [("router", "apply", 1, "before"), ("store", "save", 1, "after"),
                                   ("router", "apply", 1, "after")], ids=_id)
def test_a_fallback_killed_before_it_reaches_aws_is_re_applied_on_restart(world: World, point):
    world.start_and_ramp_to(1)
    world.feed(2, neuron_p99_ms=400.0)  # a latency breach: the next tick falls back
    adapter, method, n, when = point
    adapters = {"store": world.store(), "router": world.router(), "metrics": world.metrics()}
    adapters[adapter] = Faulty(adapters[adapter], {(method, n): (when, Crash("killed"))})
    with pytest.raises(Crash):
        world.controller(**adapters).tick()
    world.clock.advance(30)
    record = world.tick()
    assert_safe(world, gpu_only=True)
    assert world.updates[-1] == {"neuron": 0.0, "gpu": 100.0}
    assert world.updates.count({"neuron": 0.0, "gpu": 100.0}) == 1, "fallback sent twice"
    assert record["phase"] in ("falling_back", "cooling_down")


@pytest.mark.fault("restart long after a crash")
def test_a_restart_hours_after_a_crash_does_not_replay_the_old_decision(world: World):
    ready_to_progress(world)
    store = Faulty(world.store(), {("save", 1): ("after", Crash("killed"))})
    with pytest.raises(Crash):
        world.controller(store=store).tick()
    world.clock.advance(minutes=180)  # no metrics for three hours: nothing to judge a step on
    world.tick()
    assert_safe(world)
    assert world.share() == STEPS[0], "a step decided three hours ago was sent without fresh evidence"
    assert world.updates.count({"neuron": STEPS[1], "gpu": 100.0 - STEPS[1]}) == 0
