"""Operator safety: a stale tick never overrides a fallback or an abort (fencing at the endpoint, on
the JSON files and on DynamoDB, with a stalled process and a skewed clock), the controller never
fights a human (drift pauses, never reverts), abort works from anywhere, promote and abort in
every phase, a throttled record write is delivered later exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import boto3
import pytest

from routing.adapters.clock import ManualClock
from routing.adapters.dynamo_store import LEASE_SECONDS, MAX_CLOCK_SKEW_SECONDS, DynamoStateStore, create_table
from routing.core.model import Phase
from tests.reliability.conftest import STEPS, Faulty, World, assert_safe, ready_to_progress
from toolkit.errors import AwsError, UserError

TABLE = "bert-routing"


def _after(world: World, sent: int) -> list[float]:
    return [u["neuron"] for u in world.updates[sent:]]


# ------------------------------------------------------------------------------------------------
# Fencing: the JSON store


@pytest.mark.fault("a tick stalls between saving its intent and sending it while another falls back (JSON)")
def test_a_stalled_tick_never_sends_its_stale_step_after_a_fallback_json(world: World):
    ready_to_progress(world)  # the next tick moves 10% -> 50%
    stalled, go = threading.Event(), threading.Event()

    def stall() -> None:
        stalled.set()
        go.wait(30)

    slow = world.controller(store=Faulty(world.store(), hooks={"fenced": stall}))
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.__setitem__("a", slow.tick()))
    thread.start()
    assert stalled.wait(30)  # A saved "50%" as its intent and stalls before sending it
    world.feed(2, neuron_p99_ms=400.0)
    record = world.tick()  # B: neuron breaches: fall back
    assert record["action"] == "fallback" and world.share() == 0.0
    sent = len(world.updates)
    go.set()
    thread.join(60)
    assert _after(world, sent) == [], "the stalled tick sent its stale step after the fallback"
    assert out["a"].stood_aside and "not sent" in " ".join(out["a"].errors)
    assert_safe(world, gpu_only=True)


# ------------------------------------------------------------------------------------------------
# Fencing: DynamoDB (the Lambda and the CLI share the table)


def _dynamo(world: World, owner: str, clock: ManualClock) -> DynamoStateStore:
    client = boto3.client("dynamodb", region_name="us-east-1")
    if TABLE not in client.list_tables()["TableNames"]:
        create_table(client, TABLE)
    return DynamoStateStore(TABLE, world.name, client=client, clock=clock, owner=owner,
                            monotonic=lambda: clock.now().timestamp(), sleep=lambda _s: None)


def _ramp_on_dynamo(world: World, store: DynamoStateStore) -> None:
    ctl = world.controller(store=store)
    ctl.tick_leased("start")
    for _ in range(20):
        world.feed()
        ctl.tick_leased()
        if world.share() == STEPS[0]:
            break
    for _ in range(2):
        world.feed()
        ctl.tick_leased()
    world.feed()


@pytest.mark.fault("a CLI tick stalls past its lease while the Lambda falls back (DynamoDB)")
def test_a_tick_stalled_past_its_lease_never_sends_after_the_lambda_fell_back(world: World):
    cli = _dynamo(world, "cli", world.clock)
    _ramp_on_dynamo(world, cli)
    sent_before = len(world.updates)
    fell_back: dict[str, Any] = {}

    def stall() -> None:  # 160 s pass inside the CLI's tick; the Lambda takes over and falls back
        world.feed(2, neuron_p99_ms=400.0)
        world.clock.advance(LEASE_SECONDS + MAX_CLOCK_SKEW_SECONDS + 10)
        lam = world.controller(store=_dynamo(world, "lambda", world.clock))
        fell_back["result"] = lam.tick_leased(source="lambda")

    slow = world.controller(store=Faulty(cli, hooks={"fenced": stall}))
    result = slow.tick_leased()
    assert fell_back["result"].decision.action.value == "fallback"
    assert world.share() == 0.0
    assert max(_after(world, sent_before)[1:], default=0.0) == 0.0, world.updates[sent_before:]
    assert result.stood_aside and "lease" in " ".join(result.errors)


@pytest.mark.fault("a clock 200 s ahead takes the lease mid-tick to abort (DynamoDB)")
def test_a_skewed_clock_abort_is_not_overwritten_by_the_in_flight_tick(world: World):
    lam_clock = world.clock
    lam = _dynamo(world, "lambda", lam_clock)
    _ramp_on_dynamo(world, lam)  # the next tick moves 10% -> 50%
    ahead = ManualClock(lam_clock.now() + timedelta(seconds=200))
    aborted: dict[str, Any] = {}

    def human_aborts() -> None:  # mid-tick, a CLI whose clock runs 200 s ahead presses abort
        human = world.controller(store=_dynamo(world, "cli", ahead), clock=ahead)
        aborted["result"] = human.tick_leased("abort")

    ticking = world.controller(store=Faulty(lam, hooks={"fenced": human_aborts}))
    result = ticking.tick_leased(source="lambda")
    assert aborted["result"].exit_code == 0 and aborted["result"].decision.action.value == "abort"
    assert world.share() == 0.0, "the Lambda's in-flight update overwrote the abort"
    assert result.stood_aside


@pytest.mark.fault("a clock within the skew bound cannot take a running tick's lease")
def test_a_reader_never_takes_over_a_lease_on_its_own_clock_alone(world: World):
    lam = _dynamo(world, "lambda", world.clock)
    assert lam.acquire()
    ahead = ManualClock(world.clock.now() + timedelta(seconds=LEASE_SECONDS + MAX_CLOCK_SKEW_SECONDS - 1))
    human = world.controller(store=_dynamo(world, "cli", ahead), clock=ahead)
    with pytest.raises(AwsError, match="cannot abort now"):
        human.tick_leased("abort")


# ------------------------------------------------------------------------------------------------
# Drift: a human changes the weights


def _set_weights(world: World, neuron: float) -> None:
    world.sm.update_endpoint_weights_and_capacities(EndpointName=world.name, DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": neuron}, {"VariantName": "gpu", "DesiredWeight": 100.0 - neuron}])


@pytest.mark.fault("a human drains neuron in the console mid-ramp")
@pytest.mark.parametrize("phase", ["ramping", "holding"])
def test_a_human_change_is_paused_on_recorded_and_never_reverted(world: World, phase: str):
    world.start_and_ramp_to(1 if phase == "ramping" else 2)
    if phase == "holding":
        for _ in range(3):
            world.feed()
            world.tick()
        assert world.store().load().phase == Phase.HOLDING
    _set_weights(world, 0.0)
    sent = len(world.updates)
    world.feed()
    record = world.tick()
    assert record["phase"] == "paused" and record["reason"].startswith("drift:")
    assert record["statistics"]["drift"]["after_neuron_percent"] == 0.0
    assert record["statistics"]["drift"]["before_neuron_percent"] > 0
    for _ in range(5):
        world.feed()
        world.tick()
    assert _after(world, sent) == [], "the controller reverted a human's change"
    assert world.share() == 0.0


@pytest.mark.fault("autoscaling moves instance counts within min/max")
def test_autoscaling_counts_are_not_drift(world: World):
    world.start_and_ramp_to(1)
    live = world.live()
    world.sm.update_endpoint_weights_and_capacities(EndpointName=world.name, DesiredWeightsAndCapacities=[
        {"VariantName": "gpu", "DesiredInstanceCount": live.variants["gpu"].desired_instance_count + 1}])
    world.feed()
    record = world.tick()
    assert record["phase"] == "ramping" and not record["reason"].startswith("drift")


# ------------------------------------------------------------------------------------------------
# Promote and abort in every phase


def _into(world: World, phase: str) -> None:
    if phase == "idle":
        return
    if phase == "ramping":
        world.start_and_ramp_to(0)
    elif phase == "holding":
        world.start_and_ramp_to(2)
        for _ in range(3):
            world.feed()
            world.tick()
    elif phase == "paused":
        world.start_and_ramp_to(1)
        world.tick(command="pause")
    elif phase in ("falling_back", "cooling_down"):
        world.start_and_ramp_to(1)
        world.feed(2, neuron_p99_ms=400.0)
        world.tick()
        if phase == "cooling_down":
            world.feed()
            world.tick()
    elif phase == "aborted":
        world.start_and_ramp_to(1)
        world.tick(command="abort")
    state = world.store().load()
    assert state is not None and state.phase.value == phase, state


@pytest.mark.fault("promote in every phase")
@pytest.mark.parametrize("phase", [p.value for p in Phase])
def test_promote_in_every_phase_is_accepted_only_where_a_canary_progresses(world: World, phase: str):
    _into(world, phase)
    before, version = world.share(), (world.store().load().version if phase != "idle" else None)
    if phase in ("ramping", "holding", "paused"):
        return  # accepted there (tests/routing/core/test_commands.py pins what each does)
    with pytest.raises(UserError, match=f"while {phase}"):
        world.controller().command("promote-full")
    assert world.share() == before
    assert (world.store().load().version if phase != "idle" else None) == version


@pytest.mark.fault("abort in every phase, with no local state, and with a corrupt one")
@pytest.mark.parametrize("phase", [p.value for p in Phase])
@pytest.mark.parametrize("local", ["same state", "no state", "corrupt state"])
def test_abort_in_every_phase_from_anywhere_puts_all_on_gpu(world: World, phase: str, local: str, tmp_path):
    from routing.state import JsonFileStateStore

    _into(world, phase)
    store = world.store()
    if local == "no state":
        store = JsonFileStateStore(tmp_path / "elsewhere", world.name)
    elif local == "corrupt state":
        (world.state_dir / world.name).mkdir(parents=True, exist_ok=True)
        (world.state_dir / world.name / "state.json").write_text('{"phase": "ramp')
    result = world.controller(store=store).command("abort")
    assert result.exit_code == 0, result.record["reason"]
    assert world.share() == 0.0
    records = store.records()
    assert records and records[-1]["command"] == "abort"


# ------------------------------------------------------------------------------------------------
# Records


@pytest.mark.fault("a record write throttled past its retries on a fallback tick")
def test_a_throttled_record_is_delivered_by_the_next_tick_once_and_truthfully(world: World):
    from routing.core.errors import StorageError

    world.start_and_ramp_to(1)
    world.feed(2, neuron_p99_ms=400.0)
    throttled = world.controller(store=Faulty(world.store(), plan={
        ("append_record", 1): ("before", StorageError("throttled"))}))
    with pytest.raises(StorageError):
        throttled.tick()
    assert world.share() == 0.0  # the fallback itself landed
    pending = world.store().load().unrecorded
    assert pending is not None and pending["action"] == "fallback"
    world.feed()
    nxt = world.controller()
    world.tick(nxt)
    records = world.records()
    fallback = [r for r in records if r["tick_id"] == pending["tick_id"]]
    assert len(fallback) == 1 and any("did not land" in n for n in fallback[0]["notes"])
    assert nxt.recovered and nxt.recovered[0]["tick_id"] == pending["tick_id"]
    for _ in range(60):  # many records later, never appended again
        world.feed()
        world.tick()
    assert len([r for r in world.records() if r["tick_id"] == pending["tick_id"]]) == 1


@pytest.mark.fault("the endpoint is deleted between describe and update")
def test_an_endpoint_deleted_mid_tick_leaves_a_record_exit_3_and_no_intent(world: World):
    ready_to_progress(world)

    def delete() -> None:
        world.sm.delete_endpoint(EndpointName=world.name)

    ctl = world.controller(router=Faulty(world.router(), hooks={"apply": delete}))
    record = world.tick(ctl)
    assert record["exit_code"] == 3 and "does not exist" in " ".join(record["errors"])
    state = world.store().load()
    assert state.intent is None and state.step == 0  # nothing advanced: the step never landed


@pytest.mark.fault("the lease is lost after the update landed, before the final save (DynamoDB)")
def test_an_update_that_landed_but_could_not_be_saved_is_reported_as_such_exit_3(world: World):
    store = _dynamo(world, "cli", world.clock)
    _ramp_on_dynamo(world, store)
    saves = {"n": 0}

    def steal_before_the_final_save() -> None:
        saves["n"] += 1
        if saves["n"] == 2:  # the first save is the intent; the second comes after the update
            world.clock.advance(LEASE_SECONDS + MAX_CLOCK_SKEW_SECONDS + 1)
            assert _dynamo(world, "other", world.clock).acquire()

    result = world.controller(store=Faulty(store, hooks={"save": steal_before_the_final_save})).tick_leased()
    assert result.record["applied"] and result.exit_code == 3
    assert any("reached AWS but the state could not be saved" in n for n in result.record["notes"])
