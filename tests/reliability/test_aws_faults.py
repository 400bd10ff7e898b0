"""Throttling and transient errors on the three calls a tick makes, through botocore's real retries.

The clients are built by routing.aws.client (adaptive retries, 5 attempts) and pointed at moto;
`Injector` answers chosen attempts with ThrottlingException / 5xx. A few failures are absorbed by
retries (the tick does what it would have done); a failure that outlasts the retries is held
(metrics: unknown tick; DescribeEndpoint/Update: nothing changes) and, for metrics, fails safe
to gpu after fallback.max_unknown_ticks.
"""

from __future__ import annotations

from types import SimpleNamespace

import botocore.endpoint
import pytest
from botocore.retries.bucket import TokenBucket

from routing.aws import DEFAULT_MAX_ATTEMPTS, client
from tests.reliability._inject import INTERNAL, SERVICE_UNAVAILABLE, THROTTLING, Injector, always, first
from tests.reliability.conftest import REGION, STEPS, World, assert_safe, count_lost, record_updates
from toolkit.errors import AwsError

# botocore's max_attempts counts retries; total attempts are one more.
TOTAL_ATTEMPTS = DEFAULT_MAX_ATTEMPTS + 1


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry delays, recorded instead of slept (tests never sleep).

    Adaptive mode also rate-limits client-side after a throttle (a token bucket waiting on a
    condition variable); its waits are recorded in the same list and skipped.
    """
    out: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=out.append))
    original = TokenBucket._sleep_amount

    def no_wait(self: TokenBucket, amount: float) -> float:
        wanted = original(self, amount)
        if wanted > 0:
            out.append(wanted)
            self._current_capacity = max(self._current_capacity, amount)  # as if the wait had passed
        return 0.0

    monkeypatch.setattr(TokenBucket, "_sleep_amount", no_wait)
    return out


def _clients(world: World) -> tuple[object, object]:
    sm = client("sagemaker", region=REGION)
    cw = client("cloudwatch", region=REGION)
    record_updates(sm, world.updates)
    return sm, cw


def _controller(world: World, sm: object, cw: object):
    return world.controller(router=world.router(sm), metrics=world.metrics(cw))


def test_controller_clients_retry_in_adaptive_mode():
    sm = client("sagemaker", region=REGION)
    retries = sm.meta.config.retries
    assert retries["mode"] == "adaptive" and retries["total_max_attempts"] == TOTAL_ATTEMPTS


@pytest.mark.fault("GetMetricData throttled, then answers")
@pytest.mark.parametrize("error", [THROTTLING, SERVICE_UNAVAILABLE, INTERNAL], ids=lambda e: e[0])
def test_transient_get_metric_data_errors_are_retried_and_the_step_still_moves(world: World, sleeps, error):
    world.start_and_ramp_to(0)
    sm, cw = _clients(world)
    for _ in range(2):
        world.feed()
        world.tick(_controller(world, sm, cw))
    injector = Injector(cw, "GetMetricData", first(2, error))
    record = None
    for _ in range(3):
        if world.share() == STEPS[1]:
            break
        world.feed()
        record = world.tick(_controller(world, sm, cw))
        assert record["errors"] == []
    assert injector.injected == 2 and injector.attempts >= 3
    assert len(sleeps) >= 2 and all(s > 0 for s in sleeps[:2]), "no backoff between retries"
    assert world.share() == STEPS[1]
    assert_safe(world)


@pytest.mark.fault("GetMetricData throttled for good")
def test_metrics_throttled_for_good_hold_then_fail_safe_after_max_unknown_ticks(world: World, sleeps):
    world.start_and_ramp_to(1)
    sm, cw = _clients(world)
    Injector(cw, "GetMetricData", always(THROTTLING))
    limit = world.config.fallback.max_unknown_ticks
    for n in range(1, limit):
        world.feed()
        record = world.tick(_controller(world, sm, cw))
        assert record["action"] == "hold" and "unknown tick" in record["reason"], record["reason"]
        assert record["errors"] and "GetMetricData" in record["errors"][0]
        assert world.share() == STEPS[1], f"unknown tick {n} moved traffic"
    world.feed()
    record = world.tick(_controller(world, sm, cw))
    assert record["action"] == "fallback", record["reason"]
    assert_safe(world, gpu_only=True)


@pytest.mark.fault("DescribeEndpoint throttled, then answers")
@pytest.mark.parametrize("error", [THROTTLING, SERVICE_UNAVAILABLE], ids=lambda e: e[0])
def test_transient_describe_endpoint_errors_are_retried(world: World, sleeps, error):
    world.start_and_ramp_to(0)
    sm, cw = _clients(world)
    injector = Injector(sm, "DescribeEndpoint", first(3, error))
    world.feed()
    record = world.tick(_controller(world, sm, cw))
    assert injector.injected == 3 and record["errors"] == []
    assert_safe(world)


@pytest.mark.fault("DescribeEndpoint throttled for good")
def test_describe_endpoint_failing_for_good_changes_nothing_and_still_records_the_tick(world: World, sleeps):
    world.start_and_ramp_to(1)
    sm, cw = _clients(world)
    Injector(sm, "DescribeEndpoint", always(THROTTLING))
    before = len(world.records())
    sent = len(world.updates)
    world.feed()
    with pytest.raises(AwsError):
        _controller(world, sm, cw).tick()
    assert len(world.updates) == sent and world.share() == STEPS[1]
    count_lost(max(0, before + 1 - len(world.records())))
    assert len(world.records()) == before + 1, "the failed tick left no decision record"


@pytest.mark.fault("UpdateEndpointWeightsAndCapacities throttled, then answers")
def test_a_throttled_update_is_retried_and_sent_once(world: World, sleeps):
    world.start_and_ramp_to(0)
    sm, cw = _clients(world)
    for _ in range(2):
        world.feed()
        world.tick(_controller(world, sm, cw))
    injector = Injector(sm, "UpdateEndpointWeightsAndCapacities", first(2, THROTTLING))
    world.feed()
    record = world.tick(_controller(world, sm, cw))
    assert record["applied"] and record["errors"] == []
    assert injector.injected == 2
    assert world.share() == STEPS[1]
    assert_safe(world)


@pytest.mark.fault("UpdateEndpointWeightsAndCapacities throttled for good")
def test_an_update_failing_for_good_leaves_endpoint_and_state_as_they_were_then_retries_next_tick(world, sleeps):
    world.start_and_ramp_to(0)
    sm, cw = _clients(world)
    for _ in range(2):
        world.feed()
        world.tick(_controller(world, sm, cw))
    state_before = world.store().load()
    injector = Injector(sm, "UpdateEndpointWeightsAndCapacities", always(THROTTLING))
    world.feed()
    result = _controller(world, sm, cw).tick()
    assert result.exit_code == 3 and not result.record["applied"]
    assert "ThrottlingException" in " ".join(result.record["errors"])
    assert injector.attempts == TOTAL_ATTEMPTS
    assert world.share() == STEPS[0]
    state = world.store().load()
    assert state.step == state_before.step and state.phase == state_before.phase
    assert_safe(world)
    # AWS recovers: the next tick takes the step, once.
    sm2, cw2 = _clients(world)
    world.feed()
    world.tick(_controller(world, sm2, cw2))
    assert world.share() == STEPS[1]
    assert world.updates.count({"neuron": STEPS[1], "gpu": 100.0 - STEPS[1]}) == 1


@pytest.mark.fault("fallback update throttled for good")
def test_a_fallback_whose_update_fails_is_decided_again_next_tick(world: World, sleeps):
    world.start_and_ramp_to(1)
    sm, cw = _clients(world)
    injector = Injector(sm, "UpdateEndpointWeightsAndCapacities", first(TOTAL_ATTEMPTS, THROTTLING))
    world.feed(2, neuron_p99_ms=400.0)
    first_try = world.tick(_controller(world, sm, cw))
    assert first_try["action"] == "fallback" and not first_try["applied"]
    assert injector.injected == TOTAL_ATTEMPTS
    world.clock.advance(30)
    second = world.tick(_controller(world, sm, cw))
    assert second["action"] == "fallback" and second["applied"], second["reason"]
    assert_safe(world, gpu_only=True)
