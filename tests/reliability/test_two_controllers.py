"""Two controllers at once on the same JSON store and endpoint: exactly one acts.

Both controllers load the same state version and read the endpoint before either saves (a barrier
in the metrics read makes the race certain, not likely). The store's versioned save lets one win;
the other stands aside, says so in its record, and changes nothing.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from routing.aws import client
from tests.reliability.conftest import (
    REGION,
    STEPS,
    Faulty,
    World,
    assert_safe,
    count_lost,
    ready_to_progress,
    record_updates,
)


def _race(world: World, n: int, command: str | None = None) -> list[Any]:
    barrier = threading.Barrier(n, timeout=30)
    controllers = []
    for _ in range(n):
        sm = client("sagemaker", region=REGION)  # one client per controller, as separate processes have
        record_updates(sm, world.updates)
        hooks = {"observe": barrier.wait} if command is None else {"describe": barrier.wait}
        target = "metrics" if command is None else "router"
        adapters = {"router": world.router(sm), "metrics": world.metrics(client("cloudwatch", region=REGION))}
        adapters[target] = Faulty(adapters[target], hooks=hooks)
        controllers.append(world.controller(**adapters))
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            ctl = controllers[i]
            results[i] = ctl.command(command) if command else ctl.tick()
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.fault("two controllers tick at once")
@pytest.mark.parametrize("n", [2, 3])
def test_controllers_racing_on_a_step_act_exactly_once_and_the_others_stand_aside(world: World, n: int):
    ready_to_progress(world)
    before = len(world.records())
    sent = len(world.updates)
    results = _race(world, n)
    acted = [r for r in results if r.record["applied"]]
    aside = [r for r in results if r.stood_aside]
    assert len(acted) == 1 and len(aside) == n - 1
    assert world.updates[sent:] == [{"neuron": STEPS[1], "gpu": 100.0 - STEPS[1]}]
    records = world.records()
    count_lost(max(0, before + n - len(records)))
    assert len(records) == before + n, "every racing tick leaves exactly one record"
    assert sum(1 for r in records[before:] if r["stood_aside"]) == n - 1
    assert all(r.exit_code == 0 for r in aside)
    assert_safe(world)
    state = world.store().load()
    assert STEPS[state.step] == world.share()


@pytest.mark.fault("two controllers fall back at once")
def test_controllers_racing_on_a_fallback_send_it_once(world: World):
    world.start_and_ramp_to(1)
    world.feed(2, neuron_p99_ms=400.0)
    sent = len(world.updates)
    results = _race(world, 2)
    assert sum(1 for r in results if r.record["applied"]) == 1
    assert world.updates[sent:] == [{"neuron": 0.0, "gpu": 100.0}]
    assert_safe(world, gpu_only=True)


@pytest.mark.fault("a human's abort races the loop's tick")
def test_an_abort_racing_a_tick_leaves_one_winner_and_a_safe_split(world: World):
    world.start_and_ramp_to(1)
    world.feed()
    before = len(world.records())
    barrier = threading.Barrier(2, timeout=30)
    tick_ctl = world.controller(metrics=Faulty(world.metrics(), hooks={"observe": barrier.wait}))
    first_describe: list[int] = []

    def meet_once() -> None:  # an abort that loses the race decides again: only its first read races
        if not first_describe:
            first_describe.append(1)
            barrier.wait()

    abort_ctl = world.controller(router=Faulty(world.router(), hooks={"describe": meet_once}))
    out: dict[str, Any] = {}
    threads = [threading.Thread(target=lambda: out.__setitem__("tick", tick_ctl.tick())),
               threading.Thread(target=lambda: out.__setitem__("abort", abort_ctl.command("abort")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(out) == {"tick", "abort"}
    retried = 1 if any(r["stood_aside"] and r["command"] == "abort" for r in world.records()[before:]) else 0
    count_lost(max(0, before + 2 + retried - len(world.records())))
    assert len(world.records()) == before + 2 + retried
    assert_safe(world)
    # The abort (first or retried) always goes through: exit 0 and neuron has nothing.
    assert out["abort"].exit_code == 0 and out["abort"].decision.action.value == "abort"
    assert world.share() == 0.0


@pytest.mark.fault("a human's abort loses the save race to a tick")
def test_an_abort_that_loses_the_race_is_retried_or_reported_as_not_done(world: World):
    ready_to_progress(world)
    at_save, go = threading.Event(), threading.Event()

    def hold_save() -> None:
        at_save.set()
        go.wait(30)

    abort_ctl = world.controller(store=Faulty(world.store(), hooks={"save": hold_save}))
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.__setitem__("abort", abort_ctl.command("abort")))
    thread.start()
    assert at_save.wait(30)
    world.tick()  # the loop's tick saves first (takes step 2)
    go.set()
    thread.join(60)
    result = out["abort"]
    assert_safe(world)
    assert result.exit_code == 0 and result.decision.action.value == "abort", result.record["reason"]
    assert world.share() == 0.0, f"abort exited {result.exit_code} and neuron still has {world.share()}%"
