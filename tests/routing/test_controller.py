"""Controller.tick: the order of a tick, records, dry run, crash safety, concurrency, busy endpoints.

The policy here is a tiny fake (one step per tick, fallback when neuron p99 > 100 ms) so these
tests pin the controller, not the policy; the end-to-end CLI test runs the real policy.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from routing.clock import ManualClock
from routing.controller import Controller
from routing.model import (
    Action,
    ControllerState,
    Decision,
    EndpointLive,
    GateResult,
    MinuteMetrics,
    Observation,
    Phase,
    Target,
    VariantLive,
)
from routing.router import EndpointBusy
from routing.state import JsonFileStateStore
from toolkit.errors import AwsError

T0 = datetime(2026, 3, 1, 10, 0, 30, tzinfo=UTC)
STEPS = (10.0, 50.0, 100.0)


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the controller may swallow it)."""


# ------------------------------------------------------------------------------------------------
# Fakes


def _target(neuron: float) -> Target:
    return Target(weights={"neuron": neuron, "gpu": 100.0 - neuron}, instance_counts={"neuron": 1, "gpu": 2})


def _fake_policy() -> SimpleNamespace:
    def initial_state(config, endpoint):
        return ControllerState(endpoint=endpoint, steps=STEPS)

    def window_minutes(config, state):
        return 4

    def decide(config, state, endpoint, observation, now, prices):
        if not observation.known:
            return Decision(state.evolve(unknown_ticks=state.unknown_ticks + 1), Action.HOLD, "no metrics")
        if state.phase != Phase.RAMPING:
            return Decision(state, Action.NONE, f"{state.phase.value}: nothing to do")
        p99 = max((m.latency_p99_ms or 0.0) for m in observation.for_variant("neuron")) if \
            observation.for_variant("neuron") else 0.0
        if p99 > 100.0:
            gate = GateResult("latency_slo", False, p99, 100.0, f"neuron p99 {p99:g} ms > 100 ms")
            return Decision(state.evolve(phase=Phase.FALLING_BACK, fallbacks=state.fallbacks + 1), Action.FALLBACK,
                            "latency_slo failed", _target(0.0), (gate,), {"neuron": 0.5, "gpu": 0.4},
                            {"prices_seen": dict(prices)})
        if state.step + 1 >= len(STEPS):
            return Decision(state.evolve(phase=Phase.HOLDING), Action.HOLD, "ramp complete")
        nxt = state.step + 1
        gate = GateResult("latency_slo", True, p99, 100.0)
        return Decision(state.evolve(step=nxt), Action.PROGRESS, f"step {nxt + 1}", _target(STEPS[nxt]), (gate,),
                        {"neuron": 0.3, "gpu": 0.4}, {"prices_seen": dict(prices)})

    def apply_command(config, state, command, endpoint, now):
        if command == "start":
            return Decision(state.evolve(phase=Phase.RAMPING, step=0), Action.PROGRESS, "started", _target(STEPS[0]))
        if command == "abort":
            return Decision(state.evolve(phase=Phase.ABORTED), Action.ABORT, "aborted", _target(0.0))
        if command == "pause":
            return Decision(state.evolve(phase=Phase.PAUSED, paused_phase=state.phase), Action.NONE, "paused")
        raise AssertionError(command)

    return SimpleNamespace(initial_state=initial_state, window_minutes=window_minutes, decide=decide,
                           apply_command=apply_command)


class FakeRouter:
    def __init__(self) -> None:
        self.live = EndpointLive("bert", "InService", {
            "neuron": VariantLive("neuron", "ml.inf2.xlarge", 0.0, 0.0, 1, 1),
            "gpu": VariantLive("gpu", "ml.g5.xlarge", 100.0, 100.0, 2, 2),
        })
        self.updates: list[dict[str, float]] = []
        self.fail_with: BaseException | None = None
        self.crash_after_update = False

    def describe(self) -> EndpointLive:
        return self.live

    def apply(self, target: Target) -> EndpointLive:
        if not self.live.in_service:
            raise EndpointBusy(self.live.name, self.live.status)
        if self.fail_with is not None:
            raise self.fail_with
        variants = {
            name: replace(v, current_weight=target.weights[name], desired_weight=target.weights[name],
                          current_instance_count=target.instance_counts[name],
                          desired_instance_count=target.instance_counts[name])
            for name, v in self.live.variants.items()
        }
        self.live = replace(self.live, variants=variants)
        self.updates.append(dict(target.weights))
        if self.crash_after_update:
            raise Crash("died right after UpdateEndpointWeightsAndCapacities")
        return self.live


class FakeMetrics:
    def __init__(self) -> None:
        self.neuron_p99 = 50.0
        self.error: str | None = None
        self.calls: list[tuple[datetime, int]] = []

    def observe(self, endpoint, variants, now, minutes):
        self.calls.append((now, minutes))
        end = now.replace(second=0, microsecond=0)
        if self.error:
            return Observation(end - timedelta(minutes=minutes), end, error=self.error)
        rows = {
            v: tuple(MinuteMetrics(start=end - timedelta(minutes=i + 1), invocations=100.0, errors_5xx=1.0,
                                   latency_p50_ms=30.0, latency_p99_ms=self.neuron_p99 if v == "neuron" else 60.0,
                                   latency_samples=100.0)
                     for i in reversed(range(minutes)))
            for v in variants
        }
        return Observation(end - timedelta(minutes=minutes), end, rows)


class CrashingStore(JsonFileStateStore):
    """Dies on the n-th save (1-based) of this instance, before writing."""

    def __init__(self, *args, crash_on_save: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.saves = 0
        self.crash_on_save = crash_on_save

    def save(self, state, expected_version):
        self.saves += 1
        if self.crash_on_save == self.saves:
            raise Crash("died before saving")
        return super().save(state, expected_version)


@pytest.fixture
def world(tmp_path, example_config):
    router, metrics, clock = FakeRouter(), FakeMetrics(), ManualClock(T0)

    def make(store=None) -> Controller:
        return Controller(example_config, metrics, router, store or JsonFileStateStore(tmp_path, "bert-classifier"), clock,
                          policy=_fake_policy())

    return SimpleNamespace(router=router, metrics=metrics, clock=clock, make=make,
                           store=lambda: JsonFileStateStore(tmp_path, "bert-classifier"))


# ------------------------------------------------------------------------------------------------
# The tick


def test_start_applies_the_first_step_and_saves_the_state(world):
    result = world.make().command("start")
    assert result.exit_code == 0 and result.record["applied"] is True
    assert world.router.updates == [{"neuron": 10.0, "gpu": 90.0}]
    saved = world.store().load()
    assert saved.phase == Phase.RAMPING and saved.step == 0 and saved.intent is None


def test_each_tick_reads_truth_and_metrics_then_progresses_one_step(world):
    controller = world.make()
    controller.command("start")
    world.clock.advance(minutes=1)
    result = controller.tick()
    assert result.exit_code == 0
    assert world.router.updates[-1] == {"neuron": 50.0, "gpu": 50.0}
    assert world.metrics.calls == [(world.clock.now(), 4)]  # window length from policy.window_minutes
    rec = result.record
    assert (rec["phase_before"], rec["phase"], rec["action"]) == ("ramping", "ramping", "progress")
    assert rec["step"] == {"k": 2, "n": 3, "neuron_percent": 50.0}
    assert rec["before"]["variants"]["neuron"]["share_percent"] == 10.0
    assert rec["after"]["variants"]["neuron"]["share_percent"] == 50.0
    assert rec["after"]["variants"]["gpu"]["desired_instance_count"] == 2
    assert rec["target"] == {"weights": {"neuron": 50.0, "gpu": 50.0}, "instance_counts": {"neuron": 1, "gpu": 2}}
    assert rec["metrics"]["variants"]["neuron"] == {
        "minutes": 4, "minutes_with_data": 4, "invocations": 400.0, "errors_5xx": 4.0, "errors_4xx": 0.0,
        "model_errors": 0.0, "p50_ms": 30.0, "p99_ms_worst_minute": 50.0, "p99_ms_last_minute": 50.0,
        "latency_samples": 400.0}
    assert rec["cost_per_1k"] == {"neuron": 0.3, "gpu": 0.4}
    assert rec["gates"][0]["name"] == "latency_slo" and rec["applied"] is True and rec["dry_run"] is False
    assert rec["statistics"]["prices_seen"] == {"ml.inf2.xlarge": 0.99, "ml.g5.xlarge": 1.408}


def test_records_are_json_lines_one_per_tick_or_command(world):
    controller = world.make()
    controller.command("start")
    controller.tick()
    controller.tick()
    lines = world.store().records_path.read_text().splitlines()
    assert [json.loads(line)["command"] for line in lines] == ["start", "tick", "tick"]
    assert [json.loads(line)["action"] for line in lines] == ["progress", "progress", "progress"]


def test_dry_run_decides_and_records_but_changes_neither_endpoint_nor_state(world):
    controller = world.make()
    controller.command("start")
    version = world.store().load().version
    result = controller.tick(dry_run=True)
    assert result.record["dry_run"] is True and result.record["applied"] is False
    assert result.record["target"]["weights"]["neuron"] == 50.0
    assert world.router.updates == [{"neuron": 10.0, "gpu": 90.0}]
    assert world.store().load().version == version and world.store().load().step == 0
    assert world.store().records()[-1]["dry_run"] is True


def test_fallback_exits_1_with_a_record_naming_the_failed_gate_and_its_numbers(world):
    controller = world.make()
    controller.command("start")
    world.metrics.neuron_p99 = 180.0
    result = controller.tick()
    assert result.exit_code == 1
    assert world.router.updates[-1] == {"neuron": 0.0, "gpu": 100.0}
    assert result.record["failed_gates"] == ["latency_slo"]
    gate = result.record["gates"][0]
    assert (gate["value"], gate["threshold"], gate["passed"]) == (180.0, 100.0, False)
    assert world.store().records()[-1]["action"] == "fallback"
    assert world.store().records()[-1]["exit_code"] == 1


def test_abort_exits_0_and_puts_everything_on_gpu(world):
    controller = world.make()
    controller.command("start")
    result = controller.command("abort")
    assert result.exit_code == 0 and world.router.updates[-1] == {"neuron": 0.0, "gpu": 100.0}
    assert world.store().load().phase == Phase.ABORTED


def test_command_without_target_saves_state_and_never_updates(world):
    controller = world.make()
    controller.command("start")
    result = controller.command("pause")
    assert result.exit_code == 0 and result.record["applied"] is False
    assert len(world.router.updates) == 1 and world.store().load().phase == Phase.PAUSED


def test_unreadable_metrics_are_recorded_and_passed_to_the_policy_as_unknown(world):
    controller = world.make()
    controller.command("start")
    world.metrics.error = "GetMetricData: Throttling"
    result = controller.tick()
    assert result.exit_code == 0 and result.record["action"] == "hold"
    assert "GetMetricData: Throttling" in result.record["errors"]
    assert world.store().load().unknown_ticks == 1


# ------------------------------------------------------------------------------------------------
# Crash safety


def test_crash_after_update_before_save_resumes_without_repeating_the_step(world, tmp_path):
    world.make().command("start")  # at 10%
    world.router.crash_after_update = True
    with pytest.raises(Crash):
        world.make().tick()  # 50% reached the endpoint, then the process died
    assert world.router.updates[-1] == {"neuron": 50.0, "gpu": 50.0}
    assert world.store().load().intent is not None
    world.router.crash_after_update = False

    result = world.make().tick()  # a fresh process
    assert any("reached the endpoint before the crash" in n for n in result.record["notes"])
    # the 50% step was kept and not sent again; this tick moved on to the next step
    assert world.router.updates == [{"neuron": 10.0, "gpu": 90.0}, {"neuron": 50.0, "gpu": 50.0},
                                    {"neuron": 100.0, "gpu": 0.0}]
    saved = world.store().load()
    assert saved.step == 2 and saved.intent is None


def test_crash_after_update_and_a_dry_run_restart_does_not_send_anything(world):
    world.make().command("start")
    world.router.crash_after_update = True
    with pytest.raises(Crash):
        world.make().tick()
    world.router.crash_after_update = False
    sent = len(world.router.updates)
    world.make().tick(dry_run=True)
    assert len(world.router.updates) == sent


def test_crash_between_intent_and_update_drops_the_step_and_decides_it_again(world):
    world.make().command("start")
    world.router.fail_with = Crash("died before UpdateEndpointWeightsAndCapacities")
    with pytest.raises(Crash):
        world.make().tick()
    assert world.router.updates == [{"neuron": 10.0, "gpu": 90.0}]  # nothing reached the endpoint
    world.router.fail_with = None

    result = world.make().tick()
    assert any("never reached the endpoint; dropped" in n for n in result.record["notes"])
    # the step is decided again from the previous state: sent exactly once, not skipped
    assert world.router.updates == [{"neuron": 10.0, "gpu": 90.0}, {"neuron": 50.0, "gpu": 50.0}]
    assert world.store().load().step == 1


def test_crash_before_a_fallback_reaches_the_endpoint_reapplies_it_on_restart(world):
    world.make().command("start")
    world.metrics.neuron_p99 = 180.0
    world.router.fail_with = Crash("died before the fallback update")
    with pytest.raises(Crash):
        world.make().tick()
    world.router.fail_with = None
    world.metrics.neuron_p99 = 50.0  # metrics look fine again: the fallback must still happen

    result = world.make().tick()
    assert world.router.updates[-1] == {"neuron": 0.0, "gpu": 100.0}
    assert result.record["action"] == "fallback" and result.exit_code == 1
    assert world.store().load().phase == Phase.FALLING_BACK


def test_crash_after_the_final_save_loses_nothing(world):
    store = CrashingStore(world.store().directory.parent, "bert-classifier", crash_on_save=3)
    controller = world.make(store)
    controller.command("start")  # saves 1 (intent) and 2 (final)
    with pytest.raises(Crash):
        controller.tick()  # dies on the intent save: nothing sent
    assert world.router.updates == [{"neuron": 10.0, "gpu": 90.0}]
    world.make().tick()
    assert world.router.updates[-1] == {"neuron": 50.0, "gpu": 50.0}


# ------------------------------------------------------------------------------------------------
# Concurrency and a busy endpoint


def test_a_concurrent_save_makes_this_tick_stand_aside_before_touching_the_endpoint(world):
    world.make().command("start")

    class Racing(JsonFileStateStore):
        raced = False

        def load(self):
            state = super().load()
            if self.raced:  # only the tick's first read races (save() re-reads under the lock)
                return state
            self.raced = True
            other = JsonFileStateStore(self.directory.parent, "bert-classifier")
            other.save(state.remember(last_fallback_cause="other"), state.version)  # another process wins
            return state

    result = world.make(Racing(world.store().directory.parent, "bert-classifier")).tick()
    assert result.stood_aside and result.exit_code == 0
    assert world.router.updates == [{"neuron": 10.0, "gpu": 90.0}]
    assert world.store().load().memory.last_fallback_cause == "other"
    record = world.store().records()[-1]
    assert record["stood_aside"] is True and record["applied"] is False
    assert record["step"]["k"] == 1  # the step this tick decided (2) was never stored or sent


def test_busy_endpoint_keeps_the_previous_state_and_records_endpoint_busy(world):
    controller = world.make()
    controller.command("start")
    world.router.live = replace(world.router.live, status="Updating")
    result = controller.tick()
    assert result.record["applied"] is False
    assert any("endpoint busy" in e for e in result.record["errors"])
    saved = world.store().load()
    assert saved.step == 0 and saved.intent is None
    world.router.live = replace(world.router.live, status="InService")
    controller.tick()
    assert world.router.updates[-1] == {"neuron": 50.0, "gpu": 50.0}


def test_aws_error_on_update_exits_3_and_changes_nothing(world):
    controller = world.make()
    controller.command("start")
    world.router.fail_with = AwsError("UpdateEndpointWeightsAndCapacities bert: instance quota exceeded")
    result = controller.tick()
    assert result.exit_code == 3
    assert "instance quota exceeded" in result.record["errors"][0]
    assert world.store().load().step == 0


def test_ctrl_c_on_the_loop_is_recorded_and_exits_130(world):
    from routing.controller import run_loop

    controller = world.make()
    controller.command("start")

    def interrupted() -> None:
        raise KeyboardInterrupt

    code = run_loop(controller, wait=interrupted, on_result=lambda _r: None, on_warning=lambda _t: None)
    assert code == 130
    last = controller.store.records()[-1]
    assert last["command"] == "run" and "interrupted (Ctrl-C) after 1 tick" in last["reason"]
    assert last["exit_code"] == 130


def test_a_staged_update_is_a_note_not_an_error():
    from routing.controller import Controller

    live = EndpointLive("bert", "InService", {
        "neuron": VariantLive("neuron", "ml.inf2.xlarge", 10.0, 10.0, 1, 1),
        "gpu": VariantLive("gpu", "ml.g5.xlarge", 90.0, 90.0, 2, 2),
    })
    from types import SimpleNamespace

    notes: list[str] = []
    bare = SimpleNamespace(router=None)  # a router without autoscaling: the whole target is the endpoint's
    bare._reached = lambda live, target: Controller._reached(bare, live, target)  # type: ignore[arg-type]
    problems = Controller._verify(bare, live, _target(50.0), notes)  # type: ignore[arg-type]
    assert problems == [] and notes and notes[0].startswith("staged update")


# ------------------------------------------------------------------------------------------------
# CloudWatch saying nothing vs minutes that arrive late


def _late_world(newest_seen: datetime, arrived: list[datetime], now: datetime):
    from routing.controller import _silent_everywhere
    from routing.core.model import ControllerState, MinuteMetrics, Observation, PolicyMemory

    state = ControllerState(endpoint="ep", last_window_end=now - timedelta(minutes=1),
                            memory=PolicyMemory(total_rps=60.0, newest_minute=newest_seen))
    observation = Observation(window_start=now - timedelta(minutes=30), window_end=now,
                              minutes={"neuron": tuple(MinuteMetrics(start=m, invocations=600.0) for m in arrived),
                                       "gpu": ()})
    return _silent_everywhere(observation, state)


def test_minutes_arriving_steadily_late_are_new_data_not_cloudwatch_saying_nothing():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    newest = now - timedelta(minutes=5)  # 3 minutes late (+ the minute closing): one new minute a tick
    observed = _late_world(newest, [newest - timedelta(minutes=1), newest, newest + timedelta(minutes=1)], now)
    assert observed.error is None


def test_no_minute_newer_than_any_seen_is_cloudwatch_saying_nothing():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    newest = now - timedelta(minutes=5)
    observed = _late_world(newest, [newest - timedelta(minutes=1), newest], now)
    assert observed.error is not None and "no datapoints for any variant" in observed.error
