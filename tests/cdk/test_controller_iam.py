"""The controller Lambda's role, enforced: handler ticks in moto with IAM on.

moto checks IAM actions once `INITIAL_NO_AUTH_ACTION_COUNT` is reached (moto/core/authorization.py;
`enable_iam_authentication` sets it to 0): every request must then be signed by a moto IAM user
whose policies allow its action. The test user's policy is exactly the synthesized role's
actions, so a tick that calls an action the role lacks fails here instead of on AWS.

moto checks actions, not resources or conditions (it asks about Resource "*" for these
services), so the policy keeps the role's actions with Resource "*"; the resource scoping is
pinned by tests/cdk/test_controller_stack.py and tests/security/test_iam.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from cdk.controller import CONTROLLER_ACTIONS
from routing import lambda_handler
from routing.clock import ManualClock
from routing.controller import build_controller
from routing.dynamo_state import create_table
from routing.stores import open_store
from tests.cdk.conftest import Synth, synth
from tests.conftest import EXAMPLE_CONFIG
from tests.routing._aws import create_endpoint, feed_split
from toolkit.config import load_config
from toolkit.local.server import patched_mock_aws

pytestmark = pytest.mark.slow

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TABLE = "bert-routing"
TOTAL = 1200
REGION = "us-east-1"

# moto authorizes TransactWriteItems as an action of its own. AWS has no such IAM action: it
# authorizes each item with the item's action (Update -> UpdateItem, Put -> PutItem). The test
# user gets the moto name only when the role grants what AWS checks, and never the real role.
# moto names CloudWatch's actions by the SigV4 signing name ("monitoring:GetMetricData"); the IAM
# action is "cloudwatch:GetMetricData".
MOTO_ALIASES: dict[str, tuple[str, ...]] = {
    "dynamodb:TransactWriteItems": ("dynamodb:UpdateItem", "dynamodb:PutItem"),
    "monitoring:GetMetricData": ("cloudwatch:GetMetricData",),
}


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["canary"] = {"steps": [10, 50, 100], "min_bake_minutes": 1, "max_bake_minutes": 10, "min_sample": 50}
    data["controller"] = {"enabled": True, "table_name": TABLE}
    path = tmp_path_factory.mktemp("iam") / "hybrid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(config_path: Path) -> Synth:
    return synth(config_path)


@pytest.fixture(scope="module")
def role_actions(stack: Synth) -> set[str]:
    """Every action the synthesized controller role allows (its policies' Allow statements)."""
    role = next(k for k in stack.resources("AWS::IAM::Role") if "RoutingControllerRole" in k)
    actions: set[str] = set()
    for policy in stack.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                assert statement["Effect"] == "Allow"
                actions.update(_actions(statement))
    return actions


def moto_policy(actions: set[str]) -> str:
    granted = set(actions)
    granted |= {alias for alias, needs in MOTO_ALIASES.items() if all(n in actions for n in needs)}
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": sorted(granted), "Resource": "*"}]})


@contextmanager
def signed_by(keys: dict[str, str]) -> Iterator[None]:
    """Clients built inside (the handler's, the CLI's) sign with these keys."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = keys["id"], keys["secret"]
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class World:
    """An endpoint, table and topic made by an admin; ticks signed by the controller user."""

    def __init__(self, path: Path, admin: dict[str, str], controller: dict[str, str]) -> None:
        self.config = load_config(path)
        self.name = self.config.name
        self.admin, self.controller = admin, controller
        kw = {"region_name": REGION, "aws_access_key_id": admin["id"], "aws_secret_access_key": admin["secret"]}
        self.sm, self.cw, self.ddb = (boto3.client(s, **kw) for s in ("sagemaker", "cloudwatch", "dynamodb"))
        sns, self.sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
        create_endpoint(self.sm, self.name, neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
        # Both variants autoscaled, as the stack registers them: the ticks then read the scalable
        # targets and raise their floors / suspend scale-in (routing/adapters/autoscaling.py).
        aas = boto3.client("application-autoscaling", **kw)
        for variant in ("neuron", "gpu"):
            aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=f"endpoint/{self.name}/variant/{variant}",
                                         ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                                         MinCapacity=1, MaxCapacity=6)
        create_table(self.ddb, TABLE)
        self.topic = sns.create_topic(Name="notices")["TopicArn"]
        self.minute = T0
        self.clock = ManualClock(T0 + timedelta(seconds=5))

    def share(self) -> float:
        variants = {v["VariantName"]: v for v in self.sm.describe_endpoint(EndpointName=self.name)["ProductionVariants"]}
        return 100.0 * variants["neuron"]["DesiredWeight"] / sum(v["DesiredWeight"] for v in variants.values())

    def feed(self, **kwargs: Any) -> None:
        feed_split(self.cw, self.name, self.minute, total=TOTAL, neuron_share=self.share(), **kwargs)
        self.minute += timedelta(minutes=1)
        self.clock.set(self.minute + timedelta(seconds=10))

    def judged_neuron_model(self) -> Any:
        """The neuron model the controller recorded (issue 17): its image is read with DescribeModel."""
        with signed_by(self.admin):
            state = open_store(self.config, client=self.ddb, clock=self.clock).load()
        return state.neuron_model if state else None

    def cli(self, command: str) -> Any:
        """`hybrid canary <command>` by an operator (admin keys), on the controller's table."""
        with signed_by(self.admin):
            store = open_store(self.config, client=self.ddb, clock=self.clock)
            return build_controller(self.config, clock=self.clock, store=store).command(command)

    def tick(self) -> dict[str, Any]:
        """One scheduled Lambda invocation, signed by the controller user."""
        with signed_by(self.controller):
            return lambda_handler.handle({"endpoint": self.name}, config=self.config, table=TABLE,
                                         topic_arn=self.topic, clock=self.clock, owner="lambda")


@contextmanager
def enforced_world(config_path: Path, actions: set[str]) -> Iterator[World]:
    lambda_handler.reset_warm()
    with patched_mock_aws():
        from moto.core.authorization import enable_iam_authentication

        iam = boto3.client("iam", region_name=REGION)
        keys: dict[str, dict[str, str]] = {}
        for user, policy in (("admin", json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"}]})), ("controller", moto_policy(actions))):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="policy", PolicyDocument=policy)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
        # From here every request must be signed by one of the users and allowed by its policy
        # (INITIAL_NO_AUTH_ACTION_COUNT = 0).
        with enable_iam_authentication():
            yield World(config_path, keys["admin"], keys["controller"])
    lambda_handler.reset_warm()


def ramp_fallback_pause(world: World) -> list[dict[str, Any]]:
    """Start, ramp to holding, fall back on a latency regression, then pause and tick while paused."""
    summaries: list[dict[str, Any]] = []
    assert world.cli("start").state.phase.value == "ramping"
    for _ in range(12):
        world.feed()
        summaries.append(world.tick())
        if summaries[-1]["phase"] == "holding":
            break
    world.feed(neuron_p99_ms=400.0)
    world.feed(neuron_p99_ms=400.0)
    summaries.append(world.tick())
    world.cli("pause")
    world.feed()
    summaries.append(world.tick())
    return summaries


def test_the_role_grants_every_action_the_table_lists_and_nothing_else(role_actions):
    listed = {action for group in CONTROLLER_ACTIONS.values() for action in group}
    assert role_actions == listed


def problems(world: World, summaries: list[dict[str, Any]]) -> list[str]:
    """What went wrong in ramp_fallback_pause (empty: the ramp, the fallback and the pause all worked)."""
    found = [f"tick errors: {s['reason']}" for s in summaries if "metrics unavailable" in str(s.get("reason"))]
    found += [f"tick exit 3 at {s['time']}" for s in summaries if s["exit_code"] == 3]  # e.g. a denied floor raise
    if not any(s["phase"] == "holding" for s in summaries):
        found.append("the ramp never reached holding")
    model = world.judged_neuron_model()
    if model is None or model.image is None:  # DescribeModel denied: versions told apart by name only
        found.append(f"the neuron model was not read with DescribeModel: {model}")
    fallback, paused = summaries[-2], summaries[-1]
    if not (fallback["action"] == "fallback" and fallback["applied"] and world.share() == 0.0):
        found.append(f"no fallback applied: {fallback}")
    if not fallback["notified"] or not any(s["notified"] for s in summaries[:-2]):
        found.append("the fallback or the promotion was not notified")
    if not (paused["phase"] == "paused" and not paused["applied"]):
        found.append(f"the pause was not honoured: {paused}")
    return found


def test_a_ramp_a_fallback_and_a_pause_run_with_only_the_roles_actions_under_enforced_iam(config_path, role_actions):
    with enforced_world(config_path, role_actions) as world:
        summaries = ramp_fallback_pause(world)
        assert problems(world, summaries) == []
        assert [s["phase"] for s in summaries].count("holding") >= 1


@pytest.mark.parametrize("missing", [
    "sagemaker:DescribeEndpointConfig",  # issue 14, finding 1: every cold start needs it
    "sagemaker:DescribeModel",  # issue 17: model versions by artifact and image
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "cloudwatch:GetMetricData",
    "dynamodb:UpdateItem",
    "sns:Publish",
    "application-autoscaling:DescribeScalableTargets",  # issue 14, finding 6: one owner for counts
    "application-autoscaling:RegisterScalableTarget",
])
def test_without_one_action_the_ticks_fail_where_a_user_would(config_path, role_actions, missing):
    with enforced_world(config_path, role_actions - {missing}) as world:
        try:
            summaries = ramp_fallback_pause(world)
        except Exception as error:  # AwsError / ClientError from the tick, naming the denied call
            assert "AccessDenied" in str(error) or "not authorized" in str(error), error
            return
        # Denied metric reads and notices do not raise (the tick holds / is already done): the
        # scenario's outcome shows them.
        assert problems(world, summaries), f"the scenario succeeded without {missing}"


def test_the_dashboards_decision_queries_read_phase_action_and_share_from_the_records_the_handler_logs(
        config_path, role_actions, caplog, stack):
    """The Logs Insights parse patterns (cdk/controller.py) against real handler log lines."""
    import logging
    import re

    from cdk.controller import DECISION_FIELDS

    patterns = {name: re.compile(p.replace("(?<", "(?P<")) for name, p in DECISION_FIELDS.items()}
    with caplog.at_level(logging.INFO, logger="routing.lambda_handler"), \
            enforced_world(config_path, role_actions) as world:
        summaries = ramp_fallback_pause(world)
    lines = [r.getMessage() for r in caplog.records if r.name == "routing.lambda_handler" and '"command": "' in
             r.getMessage()]
    assert len(lines) == len(summaries)
    for line, summary in zip(lines, summaries, strict=True):
        record = json.loads(line)
        found = {name: (m.group(name) if (m := p.search(line)) else None) for name, p in patterns.items()}
        assert found["phase"] == summary["phase"] and found["action"] == summary["action"]
        assert found["applied"] == json.dumps(summary["applied"])
        assert float(found["neuron_share"]) == record["after"]["variants"]["neuron"]["share_percent"]
        assert json.loads(f'"{found["reason"]}"') == record["reason"]
    widgets = json.dumps(stack.stack.resolve(stack.only("AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]))
    assert "Controller: latest decisions" in widgets and "neuron_share" in widgets
