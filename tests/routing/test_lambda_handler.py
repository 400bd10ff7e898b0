"""The Lambda handler against moto (DynamoDB, patched SageMaker, CloudWatch fed by the test, SNS -> SQS).

Each invocation is one scheduled tick with the real policy: the ramp advances one step per
invocation; two overlapping invocations never both act; a crash between the endpoint update
and the state write is repaired without repeating or skipping a step; a pause written through
the CLI's store is honoured by the Lambda.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from routing import lambda_handler
from routing.clock import ManualClock
from routing.controller import build_controller
from routing.dynamo_state import LEASE_SECONDS, DynamoStateStore, create_table
from routing.stores import open_store
from tests.routing._aws import create_endpoint, feed_split
from toolkit.cli import run
from toolkit.config import load_config
from toolkit.errors import UserError
from toolkit.local.server import patched_mock_aws

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TABLE = "bert-routing"
TOTAL = 1200


class Crash(BaseException):
    """The Lambda process dies here (BaseException: nothing in the tick may swallow it)."""


class World:
    def __init__(self, path: Any, sm: Any, cw: Any, ddb: Any, sqs: Any, queue_url: str, topic: str) -> None:
        self.path = str(path)
        self.config = load_config(path)
        self.sm, self.cw, self.ddb, self.sqs = sm, cw, ddb, sqs
        self.queue_url, self.topic = queue_url, topic
        self.name = self.config.name
        self.minute = T0
        self.clock = ManualClock(T0 + timedelta(seconds=5))

    def share(self) -> float:
        variants = {v["VariantName"]: v for v in self.sm.describe_endpoint(EndpointName=self.name)["ProductionVariants"]}
        total = sum(v["DesiredWeight"] for v in variants.values())
        return 100.0 * variants["neuron"]["DesiredWeight"] / total

    def feed(self, **kwargs: Any) -> None:
        """One closed minute of traffic at the live split, then the clock moves to just after it."""
        feed_split(self.cw, self.name, self.minute, total=TOTAL, neuron_share=self.share(), **kwargs)
        self.minute += timedelta(minutes=1)
        self.clock.set(self.minute + timedelta(seconds=10))

    def store(self, owner: str) -> DynamoStateStore:
        return DynamoStateStore(TABLE, self.name, client=self.ddb, clock=self.clock, owner=owner)

    def invoke(self, owner: str = "lambda", **kwargs: Any) -> dict[str, Any]:
        return lambda_handler.handle({"endpoint": self.name}, config=self.config, table=TABLE, topic_arn=self.topic,
                                     clock=self.clock, owner=owner, **kwargs)

    def cli(self, command: str) -> Any:
        """What `hybrid canary <command>` does with the controller enabled: the table's store."""
        store = open_store(self.config, client=self.ddb, clock=self.clock)
        return build_controller(self.config, clock=self.clock, store=store).command(command)

    def hybrid(self, *args: str, pin: bool = True) -> tuple[int, Any]:
        """The real CLI (`hybrid ...`), on the table because the config enables the controller."""
        import io
        from contextlib import redirect_stdout

        out = io.StringIO()
        with redirect_stdout(out):
            code = run([*args, "-c", self.path, "--output", "json",
                        *(["--now", self.clock.now().isoformat()] if pin else [])])
        return code, json.loads(out.getvalue()) if out.getvalue().strip() else None

    def records(self) -> list[dict[str, Any]]:
        return self.store("reader").records()

    def notices(self) -> list[dict[str, Any]]:
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for message in got:
                body = json.loads(message["Body"])
                out.append({"subject": body.get("Subject"), **json.loads(body["Message"])})
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture(autouse=True)
def cold_lambda():
    """Each test starts with a cold container: no clients or controller cached by another test."""
    lambda_handler.reset_warm()
    yield
    lambda_handler.reset_warm()


@pytest.fixture
def world(example_data, write_config):
    data = example_data
    data["canary"] = {"steps": [10, 50, 100], "min_bake_minutes": 1, "max_bake_minutes": 10, "min_sample": 50}
    data["controller"] = {"enabled": True, "table_name": TABLE}
    path = write_config(data)
    config = load_config(path)
    with patched_mock_aws():
        sm = boto3.client("sagemaker", region_name="us-east-1")
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        create_endpoint(sm, config.name, neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
        create_table(ddb, TABLE)
        topic = sns.create_topic(Name="notices")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="notices")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield World(path, sm, cw, ddb, sqs, queue_url, topic)


def _ramp(world: World, shares: list[float], limit: int = 20) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for _ in range(limit):
        world.feed()
        summary = world.invoke()
        if not shares or shares[-1] != world.share():
            shares.append(world.share())
        if summary["phase"] == "holding":
            break
    return summary


def test_scheduled_invocations_ramp_step_by_step_and_notify_promotion_then_fallback(world):
    assert world.cli("start").state.phase.value == "ramping"
    shares: list[float] = []
    summary = _ramp(world, shares)
    assert summary["phase"] == "holding"
    assert shares == [10.0, 50.0, 100.0]  # every step, in order, once
    assert [n["event"] for n in world.notices()] == ["promoted (ramp complete)"]

    # A regression (p99 400 ms against the 150 ms SLO, two minutes): one invocation falls back.
    world.feed(neuron_p99_ms=400.0)
    world.feed(neuron_p99_ms=400.0)
    summary = world.invoke()
    assert summary["action"] == "fallback" and summary["exit_code"] == 1 and summary["notified"]
    assert world.share() == 0.0
    notices = world.notices()
    assert len(notices) == 1 and notices[0]["subject"] == f"[hybrid] {world.name}: fallback"
    assert "latency_slo" in notices[0]["failed_gates"] and notices[0]["shares_after"]["neuron"] == 0.0

    records = world.records()
    assert records[0]["command"] == "start"
    applied = [(r["action"], r["after"]["variants"]["neuron"]["share_percent"]) for r in records if r["applied"]]
    assert applied == [("progress", 10.0), ("progress", 50.0), ("progress", 100.0), ("fallback", 0.0)]
    assert all(not r["stood_aside"] for r in records)
    assert world.store("x").load().phase.value == "falling_back"


def test_two_overlapping_invocations_only_one_acts_and_the_other_records_standing_aside(world):
    world.cli("start")
    world.feed()
    inner: dict[str, Any] = {}

    def overlapping(config: Any, **kwargs: Any) -> Any:
        controller = build_controller(config, **kwargs)
        describe = controller.router.describe

        def describe_then_overlap() -> Any:
            if not inner:  # a second schedule fires while the first tick is in flight
                inner.update(world.invoke(owner="second"))
            return describe()

        controller.router.describe = describe_then_overlap
        return controller

    first = world.invoke(owner="first", controller_factory=overlapping)
    assert first["action"] == "progress" and first["applied"] and not first["stood_aside"]
    assert inner["stood_aside"] and not inner["applied"] and inner["action"] == "none"
    assert world.share() == 10.0  # one step, not two
    records = world.records()[1:]  # after `start`
    assert [(r["stood_aside"], r["applied"]) for r in records] == [(True, False), (False, True)]
    assert "held by first" in records[0]["reason"] and records[0]["lease_holder"]["owner"] == "first"
    # The lease ended with the first tick: the next schedule decides again (baking the new step).
    world.feed()
    third = world.invoke(owner="third")
    assert not third["stood_aside"] and third["action"] == "hold"


def test_a_cli_command_beside_a_running_tick_stands_aside_without_changing_anything(world):
    world.cli("start")
    world.feed()
    found: dict[str, Any] = {}

    def with_cli(config: Any, **kwargs: Any) -> Any:
        controller = build_controller(config, **kwargs)
        apply = controller.router.apply

        def pause_then_apply(target: Any) -> Any:
            found["pause"] = world.cli("pause")  # a human pauses while the Lambda is between save and update
            return apply(target)

        controller.router.apply = pause_then_apply
        return controller

    summary = world.invoke(controller_factory=with_cli)
    assert summary["applied"] and summary["phase"] == "ramping"
    assert found["pause"].stood_aside and found["pause"].record["stood_aside"]
    assert world.store("x").load().phase.value == "ramping"
    world.feed()
    assert world.cli("pause").state.phase.value == "paused"  # once the tick is done, the pause lands


def test_a_crash_after_the_endpoint_update_is_repaired_without_repeating_or_skipping_a_step(world):
    world.cli("start")
    world.feed()
    assert world.invoke()["applied"] and world.share() == 10.0

    def crashing(config: Any, **kwargs: Any) -> Any:
        controller = build_controller(config, **kwargs)
        apply = controller.router.apply

        def apply_then_die(target: Any) -> Any:
            apply(target)
            raise Crash("killed between UpdateEndpointWeightsAndCapacities and the state write")

        controller.router.apply = apply_then_die
        return controller

    crashed = False
    for _ in range(5):  # ticks hold while step 1 bakes; the first tick that moves traffic dies
        world.feed()
        try:
            world.invoke(owner="doomed", controller_factory=crashing)
        except Crash:
            crashed = True
            break
    assert crashed
    assert world.share() == 50.0  # the update reached the endpoint
    stored = world.store("x").load()
    assert stored.intent is not None  # ...but the state still carries the intent, not the outcome

    # The next schedule comes while the dead tick's lease has not expired: it stands aside.
    world.feed()
    assert world.invoke(owner="next")["stood_aside"]
    assert world.share() == 50.0

    # Once the lease expires (it outlives the Lambda timeout), the next tick repairs from the live endpoint.
    world.clock.advance(LEASE_SECONDS)
    recovered = world.invoke(owner="recovering")
    recovery = world.records()[-1]
    assert any("reached the endpoint before the crash; kept, not sent again" in n for n in recovery["notes"])
    assert not recovered["stood_aside"]
    assert world.store("x").load().intent is None

    shares = [world.share()]
    _ramp(world, shares)
    assert shares == [50.0, 100.0]  # 50 was neither repeated nor skipped; 100 followed
    steps = [r["step"]["k"] for r in world.records() if r["applied"]]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


def test_a_pause_from_the_cli_is_honoured_by_the_lambda_until_resume(world):
    code, record = world.hybrid("canary", "start")
    assert code == 0 and record["phase"] == "ramping"
    world.feed()
    world.invoke()
    assert world.share() == 10.0
    code, record = world.hybrid("canary", "pause")
    assert code == 0 and record["phase"] == "paused"
    for _ in range(3):
        world.feed()
        summary = world.invoke()
        assert summary["phase"] == "paused" and not summary["applied"]
    assert world.share() == 10.0
    code, status = world.hybrid("canary", "status")
    assert status["phase"] == "paused" and status["last_judgement"]["phase"] == "paused"
    code, record = world.hybrid("canary", "resume")
    assert code == 0 and record["phase"] == "ramping"
    world.feed()
    world.invoke()
    world.feed()
    world.invoke()
    assert world.share() == 50.0
    code, log = world.hybrid("route", "log", "-n", "0", pin=False)
    assert [r["command"] for r in log if r["command"] != "tick"] == ["start", "pause", "resume"]


def test_the_entry_point_reads_its_config_table_and_topic_from_the_environment(world, monkeypatch):
    monkeypatch.setenv(lambda_handler.CONFIG_ENV, lambda_handler.config_env_value(world.config))
    monkeypatch.setenv(lambda_handler.TABLE_ENV, TABLE)
    monkeypatch.setenv(lambda_handler.TOPIC_ENV, world.topic)
    monkeypatch.setenv(lambda_handler.NOW_ENV, (T0 + timedelta(minutes=1)).isoformat())
    context = SimpleNamespace(aws_request_id="req-1")
    monkeypatch.setenv(lambda_handler.SETTLE_ENV, "60")
    summary = lambda_handler.handler({"endpoint": world.name}, context)
    assert summary["phase"] == "idle" and summary["exit_code"] == 0
    record = world.records()[-1]
    assert record["time"] == (T0 + timedelta(minutes=1)).isoformat()
    # Settled: at 10:01:00 with 60 s to settle, the newest minute judged closed ends at 10:00.
    assert record["metrics"]["window_end"] == T0.isoformat()
    monkeypatch.setenv(lambda_handler.SETTLE_ENV, "soon")
    with pytest.raises(UserError, match="HYBRID_SETTLE_SECONDS"):
        lambda_handler.handler({"endpoint": world.name}, context)
    monkeypatch.setenv(lambda_handler.SETTLE_ENV, "0")
    with pytest.raises(UserError, match="other-endpoint"):
        lambda_handler.handler({"endpoint": "other-endpoint"}, context)
    monkeypatch.delenv(lambda_handler.CONFIG_ENV)
    with pytest.raises(UserError, match="HYBRID_CONFIG is not set"):
        lambda_handler.handler({}, context)


def test_the_config_travels_through_the_environment_unchanged_and_small(example_config):
    value = lambda_handler.config_env_value(example_config)
    assert lambda_handler.config_from_env({lambda_handler.CONFIG_ENV: value}) == example_config
    assert len(value.encode()) < 3000  # Lambda allows 4 KB for all variables together


def test_an_error_inside_the_tick_releases_the_lease_for_the_next_schedule(world):
    def broken(config: Any, **kwargs: Any) -> Any:
        raise UserError("endpoint bert-classifier does not exist")

    with pytest.raises(UserError):
        world.invoke(owner="broken", controller_factory=broken)
    assert world.store("next").acquire()


def test_a_cli_route_tick_beside_a_running_lambda_tick_stands_aside_and_leaves_a_record(world):
    world.cli("start")
    world.feed()
    found: dict[str, Any] = {}

    def with_cli_tick(config: Any, **kwargs: Any) -> Any:
        controller = build_controller(config, **kwargs)
        describe = controller.router.describe

        def tick_beside() -> Any:
            if not found:
                found["tick"] = world.hybrid("route", "tick")
            return describe()

        controller.router.describe = tick_beside
        return controller

    assert world.invoke(controller_factory=with_cli_tick)["applied"]
    code, output = found["tick"]
    assert code == 0 and output["stood_aside"] and "held by lambda" in output["reason"]
    aside = [r for r in world.records() if r["stood_aside"]]
    assert len(aside) == 1 and aside[0]["source"] == "cli" and aside[0]["lease_holder"]["owner"] == "lambda"
    assert world.share() == 10.0


def test_a_warm_container_reuses_its_controller_with_each_ticks_own_store_and_clock(world):
    world.cli("start")
    world.feed()
    world.invoke(owner="tick-1")
    (controller,) = [v for k, v in lambda_handler._WARM.items() if k[0] == "controller"]
    assert controller.store.owner == "tick-1"
    world.feed()
    world.invoke(owner="tick-2")
    assert [v for k, v in lambda_handler._WARM.items() if k[0] == "controller"] == [controller]
    assert controller.store.owner == "tick-2" and controller.clock is world.clock
    assert not controller.store.holds_lease  # released with the tick's record


def _set_status(name: str, status: str, failure_reason: str | None = None) -> None:
    """What SageMaker shows after a failed update whose rollback failed too (moto cannot produce it)."""
    from moto.sagemaker.models import sagemaker_backends

    for account in sagemaker_backends.values():
        for backend in account.values():
            if name in backend.endpoints:
                backend.endpoints[name].endpoint_status = status
                if failure_reason is not None:
                    backend.endpoints[name].failure_reason = failure_reason


@pytest.mark.parametrize("status", ["UpdateRollbackFailed", "Failed"])
def test_a_stuck_endpoint_is_recorded_every_tick_alerted_once_and_route_tick_exits_3(world, status):
    assert world.cli("start").state.phase.value == "ramping"
    world.feed()
    world.invoke()
    assert world.share() == 10.0
    world.notices()  # drain
    _set_status(world.name, status, "capacity error while rolling back")

    summaries = []
    for _ in range(3):
        world.feed()
        summaries.append(world.invoke())
    assert [s["exit_code"] for s in summaries] == [3, 3, 3]  # never a quiet wait
    assert all(status in s["reason"] and "hybrid deploy" in s["reason"] for s in summaries)
    assert [s["notified"] for s in summaries] == [True, False, False]  # one alert, not one a minute
    notices = world.notices()
    assert len(notices) == 1 and notices[0]["subject"] == f"[hybrid] {world.name}: endpoint {status}, action needed"
    assert "capacity error while rolling back" in notices[0]["reason"]
    stuck = [r for r in world.records() if r["exit_code"] == 3]
    assert len(stuck) == 3 and all(r["before"]["status"] == status and not r["applied"] for r in stuck)
    assert world.share() == 10.0 and world.store("x").load().phase.value == "ramping"  # state kept for the repair

    world.feed()
    code, record = world.hybrid("route", "tick")
    assert code == 3 and status in record["reason"] and record["errors"]

    _set_status(world.name, "InService")  # repaired by a human: the ramp carries on where it was
    world.feed()
    summary = world.invoke()
    assert summary["exit_code"] == 0 and "hybrid deploy" not in summary["reason"]


def test_a_fallback_whose_record_write_is_throttled_notifies_once_when_the_next_tick_lands_it(world, monkeypatch):
    from botocore.exceptions import ClientError

    from routing.core.errors import StorageError

    world.cli("start")
    _ramp(world, [])
    world.notices()  # drain the promotion notice
    world.feed(neuron_p99_ms=400.0)
    world.feed(neuron_p99_ms=400.0)
    original = DynamoStateStore.append_record
    throttled = {"left": 5}  # every retry of the fallback's record write is throttled

    def put_item(self: Any, **kwargs: Any) -> Any:
        if throttled["left"] > 0 and kwargs.get("TableName") == TABLE and "record" in kwargs.get("Item", {}):
            throttled["left"] -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "PutItem")
        return real_put(**kwargs)

    real_put = world.ddb.put_item
    monkeypatch.setattr(DynamoStateStore, "append_record",
                        lambda self, record: (setattr(self.client, "put_item", lambda **kw: put_item(self, **kw)),
                                              original(self, record))[1])
    monkeypatch.setattr("routing.adapters.dynamo_store.time.sleep", lambda _s: None)
    with pytest.raises(StorageError, match="kept in the state and the next tick appends it"):
        world.invoke()
    assert world.share() == 0.0  # the fallback landed; its record and notice wait in the outbox
    assert world.notices() == []
    world.feed()
    world.invoke()
    notices = world.notices()
    assert [n["event"] for n in notices] == ["fallback"]
    fallbacks = [r for r in world.records() if r["action"] == "fallback"]
    assert len(fallbacks) == 1 and any("did not land" in n for n in fallbacks[0]["notes"])


def test_a_human_change_pauses_the_lambda_and_notifies_without_reverting(world):
    world.cli("start")
    _ramp(world, [], limit=3)
    assert world.share() > 0
    world.notices()
    world.sm.update_endpoint_weights_and_capacities(EndpointName=world.name, DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": 0.0}, {"VariantName": "gpu", "DesiredWeight": 100.0}])
    world.feed()
    summary = world.invoke()
    assert summary["phase"] == "paused" and summary["notified"]
    assert [n["event"] for n in world.notices()] == ["paused: weights changed outside the controller"]
    world.feed()
    world.invoke()
    assert world.share() == 0.0
