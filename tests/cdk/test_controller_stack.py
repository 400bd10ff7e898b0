"""The stack with `controller.enabled`: the RoutingController's resources, IAM scoping, checks, bundle.

One synth for the module (a config with the controller on, every 5 minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdk import controller as ctl
from routing.dynamo_state import LAMBDA_TIMEOUT_SECONDS, LEASE_SECONDS
from routing.lambda_handler import CONFIG_ENV, SETTLE_ENV, TABLE_ENV, TOPIC_ENV, config_from_env
from tests.cdk.conftest import Synth, cfn_lint, nag_findings, nag_suppressions, synth
from tests.conftest import EXAMPLE_CONFIG
from toolkit.config import load_config

pytestmark = pytest.mark.slow

SCHEDULE_MINUTES = 5


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["controller"] = {"enabled": True, "schedule_minutes": SCHEDULE_MINUTES}
    path = tmp_path_factory.mktemp("controller") / "hybrid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(config_path: Path) -> Synth:
    return synth(config_path)


def _logical_id(stack: Synth, type_name: str, contains: str) -> str:
    found = [k for k in stack.resources(type_name) if contains in k]
    assert len(found) == 1, (type_name, contains, found)
    return found[0]


def _controller_statements(stack: Synth) -> list[dict[str, Any]]:
    role = _logical_id(stack, "AWS::IAM::Role", "RoutingControllerRole")
    out: list[dict[str, Any]] = []
    for policy in stack.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _function(stack: Synth) -> dict[str, Any]:
    return stack.only("AWS::Lambda::Function")["Properties"]


def test_a_schedule_rule_invokes_the_function_at_the_configured_rate_naming_the_endpoint(stack):
    rule = stack.only("AWS::Events::Rule")["Properties"]
    assert rule["ScheduleExpression"] == f"rate({SCHEDULE_MINUTES} minutes)"
    assert rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [_logical_id(stack, "AWS::Lambda::Function", "RoutingController"), "Arn"]}
    assert json.loads(target["Input"]) == {"endpoint": "bert-classifier"}


def test_the_table_is_on_demand_with_point_in_time_recovery_encryption_and_the_store_keys(stack):
    table = stack.only("AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert props["TableName"] == "bert-classifier-routing"  # what the CLI derives from the same config
    assert table["DeletionPolicy"] == "Retain"  # the decision log outlives the stack
    # Retention: record items expire on the attribute the store writes (state and lease items have none).
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}


def test_endpoint_actions_are_scoped_to_the_endpoint_and_table_actions_to_the_table(stack):
    statements = _controller_statements(stack)
    endpoint = {"Ref": _logical_id(stack, "AWS::SageMaker::Endpoint", "HybridEndpoint")}
    table = {"Fn::GetAtt": [_logical_id(stack, "AWS::DynamoDB::Table", "RoutingController"), "Arn"]}
    by_service: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        for action in _actions(statement):
            by_service.setdefault(action.split(":")[0], []).append(statement)
    on_endpoint = {a for s in by_service["sagemaker"] if s["Resource"] == endpoint for a in _actions(s)}
    assert on_endpoint == {"sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"}
    # The router reads the instance types from the endpoint's config on every cold start.
    configs, models = [s for s in by_service["sagemaker"] if s["Resource"] != endpoint]
    assert _actions(configs) == ["sagemaker:DescribeEndpointConfig"]
    # ...and each variant's model once per endpoint config, to tell model versions apart (issue 17).
    assert _actions(models) == ["sagemaker:DescribeModel"]
    assert stack.stack.resolve(models["Resource"]) == {"Fn::Join": ["", [
        "arn:aws:sagemaker:us-east-1:", {"Ref": "AWS::AccountId"}, ":model/*"]]}
    assert stack.stack.resolve(configs["Resource"]) == {"Fn::Join": ["", [
        "arn:aws:sagemaker:us-east-1:", {"Ref": "AWS::AccountId"}, ":endpoint-config/*"]]}
    dynamo = {a for s in by_service["dynamodb"] for a in _actions(s)}
    assert dynamo == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
    assert all(s["Resource"] == table for s in by_service["dynamodb"])
    topic = {"Ref": _logical_id(stack, "AWS::SNS::Topic", "RoutingController")}
    assert all(s["Resource"] == topic for s in by_service["sns"])
    logs = {"Fn::GetAtt": [_logical_id(stack, "AWS::Logs::LogGroup", "RoutingController"), "Arn"]}
    assert all(s["Resource"] == logs for s in by_service["logs"])


def test_no_wildcard_actions_and_wildcard_resources_only_where_names_are_unknowable(stack):
    statements = _controller_statements(stack)
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in _actions(statement)), statement
    unscoped = [s for s in statements if s["Resource"] == "*" or "*" in json.dumps(s["Resource"])]
    assert sorted(a for s in unscoped for a in _actions(s)) == [
        "application-autoscaling:DescribeScalableTargets",  # no resource type
        "application-autoscaling:RegisterScalableTarget",  # scalable-target/* of this account and region
        "cloudwatch:GetMetricData",  # no resource type
        "sagemaker:DescribeEndpointConfig",  # endpoint-config/* of this account and region
        "sagemaker:DescribeModel",  # model/* of this account and region
    ]


def test_the_role_has_no_managed_policies_and_only_lambda_assumes_it(stack):
    role = stack.resources("AWS::IAM::Role")[_logical_id(stack, "AWS::IAM::Role", "RoutingControllerRole")]
    assert "ManagedPolicyArns" not in role["Properties"]
    (assume,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert assume["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_the_function_runs_the_handler_on_the_newest_python_within_the_lease(stack):
    import aws_cdk.aws_lambda as lambda_

    fn = _function(stack)
    assert fn["Handler"] == "routing.lambda_handler.handler"
    newest = max((r for r in dir(lambda_.Runtime) if r.startswith("PYTHON_3_")), key=lambda r: int(r.split("_")[2]))
    assert fn["Runtime"] == getattr(lambda_.Runtime, newest).name == f"python{ctl.RUNTIME_VERSION}"
    assert fn["Architectures"] == ["x86_64"] and "x86_64" in ctl.PIP_PLATFORM
    assert fn["Timeout"] == LAMBDA_TIMEOUT_SECONDS < LEASE_SECONDS
    assert fn["LoggingConfig"]["LogGroup"] == {"Ref": _logical_id(stack, "AWS::Logs::LogGroup", "RoutingController")}


def test_the_function_gets_the_validated_config_table_and_topic(stack, config_path):
    env = _function(stack)["Environment"]["Variables"]
    assert config_from_env({CONFIG_ENV: env[CONFIG_ENV]}) == ctl.controller_config(load_config(config_path))
    assert env[TABLE_ENV] == {"Ref": _logical_id(stack, "AWS::DynamoDB::Table", "RoutingController")}
    assert env[TOPIC_ENV] == {"Ref": _logical_id(stack, "AWS::SNS::Topic", "RoutingController")}
    assert env[SETTLE_ENV] == "60"  # SageMaker's minutes reach CloudWatch late


def test_failed_async_invocations_go_to_an_encrypted_tls_only_dead_letter_queue(stack):
    queue_id = _logical_id(stack, "AWS::SQS::Queue", "RoutingController")
    assert _function(stack)["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert stack.only("AWS::Lambda::EventInvokeConfig")["Properties"]["MaximumRetryAttempts"] == 0
    queue = stack.resources("AWS::SQS::Queue")[queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    policy = stack.only("AWS::SQS::QueuePolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in policy)


def test_no_model_environment_value_reaches_the_lambda_or_its_template(stack, config_path):
    """Container environments may hold secrets (HF_TOKEN): the controller never reads them."""
    config = load_config(config_path)
    env = _function(stack)["Environment"]["Variables"]
    rebuilt = config_from_env({CONFIG_ENV: env[CONFIG_ENV]})
    assert all(rebuilt.variant(n).model.environment == {} for n in ("neuron", "gpu"))
    assert rebuilt.variant("neuron").instance_type == config.variant("neuron").instance_type
    lambda_json = json.dumps(stack.resources("AWS::Lambda::Function"))
    values = [v for n in ("neuron", "gpu") for v in config.variant(n).model.environment.values()]
    assert values and not [v for v in values if v in lambda_json]


def test_the_topic_policy_lets_cloudwatch_alarms_of_this_account_and_region_publish(stack):
    topic = {"Ref": _logical_id(stack, "AWS::SNS::Topic", "RoutingController")}
    (policy,) = stack.resources("AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [topic]
    allow = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert len(allow) == 1
    (statement,) = allow
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == "sns:Publish" and statement["Resource"] == topic
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert stack.stack.resolve(statement["Condition"]["ArnLike"]["aws:SourceArn"]) == {"Fn::Join": ["", [
        "arn:aws:cloudwatch:us-east-1:", {"Ref": "AWS::AccountId"}, ":alarm:*"]]}
    # The key lets CloudWatch encrypt for the topic as well (a KMS-encrypted topic needs both).
    key = stack.only("AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} for s in key)


def test_alarms_on_errors_and_throttles_notify_the_encrypted_topic(stack):
    topic_id = _logical_id(stack, "AWS::SNS::Topic", "RoutingController")
    fn = _logical_id(stack, "AWS::Lambda::Function", "RoutingController")
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in stack.resources("AWS::CloudWatch::Alarm").values()
              if a["Properties"].get("Namespace") == "AWS/Lambda"}
    assert set(alarms) == {"Errors", "Throttles"}
    for alarm in alarms.values():
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": fn}}]
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    topic = stack.resources("AWS::SNS::Topic")[topic_id]["Properties"]
    assert "KmsMasterKeyId" in topic


def test_cfn_lint_reports_nothing(stack, tmp_path):
    assert cfn_lint(stack, tmp_path) == []


def test_cdk_nag_leaves_no_unacknowledged_findings_and_every_acknowledgment_has_a_reason(stack):
    assert nag_findings(stack) == []
    controller = [s for s in nag_suppressions(stack) if "GetMetricData" in s["reason"] or "dead-letter" in s["reason"]
                  or "log group" in s["reason"] or "DescribeEndpointConfig" in s["reason"]
                  or "RegisterScalableTarget" in s["reason"]]
    assert {s["id"] for s in controller} == {"AwsSolutions-IAM5", "AwsSolutions-SQS3"}
    for entry in nag_suppressions(stack):
        assert len(entry["reason"]) >= 40, entry


def _bundle(stack: Synth) -> Path:
    assembly = Path(stack.app.synth().directory)
    code = _function(stack)["Code"]["S3Key"].removesuffix(".zip")
    path = assembly / f"asset.{code}"
    assert path.is_dir(), sorted(p.name for p in assembly.iterdir())
    return path


def test_the_bundle_holds_the_handler_code_and_linux_wheels_for_the_runtime_only(stack):
    bundle = _bundle(stack)
    assert (bundle / "routing" / "lambda_handler.py").is_file()
    assert (bundle / "routing" / "controller.py").read_text() == (ctl.ROOT / "routing" / "controller.py").read_text()
    assert sorted(p.name for p in (bundle / "toolkit").iterdir()) == sorted(ctl.BUNDLE_SOURCES["toolkit"])
    cores = [p.name for p in (bundle / "pydantic_core").glob("_pydantic_core*.so")]
    tag = ctl.RUNTIME_VERSION.replace(".", "")
    assert cores and all(f"cpython-{tag}-x86_64-linux-gnu" in name for name in cores), cores
    assert (bundle / "yaml").is_dir()
    for absent in ("cdk", "tests", "boto3", "moto", "aws_cdk"):
        assert not (bundle / absent).exists(), absent


def test_the_bundled_code_imports_nothing_outside_the_bundle(stack):
    """The handler's whole import closure (tick included) resolves inside the bundle's sources."""
    bundle = _bundle(stack)
    env = json.dumps(_function(stack)["Environment"]["Variables"][CONFIG_ENV])
    # The bundle's own pydantic wheels are for the runtime's CPython, not this one: the bundle
    # goes LAST on the path, so third-party packages load from this venv and only routing/ and
    # toolkit/ (absent from the venv's path once the repo root is dropped) come from the bundle.
    script = f"""
import json, sys
sys.path = [p for p in sys.path if p and ('site-packages' in p or 'lib/python' in p)] + [{str(bundle)!r}]
import routing.lambda_handler as h
from routing import controller, policy, metrics, router, aws, clock, dynamo_state, state, stores
config = h.config_from_env({{h.CONFIG_ENV: json.loads({env!r})}})
ours = {{n: m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in ('routing', 'toolkit')}}
print(json.dumps(ours))
"""
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=bundle.parent,
                          check=False)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    assert "toolkit.config" in modules and "routing.policy" in modules
    outside = {n: f for n, f in modules.items() if not f.startswith(str(bundle))}
    assert outside == {}


def test_the_dependency_install_is_cached_by_requirements(stack, monkeypatch):
    first = ctl.install_dependencies()
    assert (first / ".complete").read_text().split() == ctl.requirements()

    def no_pip(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pip ran again for requirements already installed")

    monkeypatch.setattr(ctl.subprocess, "run", no_pip)
    assert ctl.install_dependencies() == first
    assert ctl.dependencies_key(["pydantic==1.0"]) != ctl.dependencies_key()


def test_a_configured_topic_replaces_the_stacks_own_for_notices_alarms_and_the_grant(config_path):
    """controller.notification_topic_arn: no topic or key is created; everything points at that ARN."""
    from types import SimpleNamespace

    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from tests.cdk.conftest import cdk_context

    topic = "arn:aws:sns:us-east-1:123456789012:platform-alerts"
    endpoint = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/bert-classifier"
    base = load_config(config_path)
    config = base.model_copy(update={"controller": base.controller.model_copy(
        update={"notification_topic_arn": topic})})
    app = cdk.App(context=cdk_context())
    bare = cdk.Stack(app, "Bare", env=cdk.Environment(region="us-east-1", account="123456789012"))
    ctl.RoutingController(bare, "RoutingController", config=config, endpoint=SimpleNamespace(endpoint_arn=endpoint))
    template = Template.from_stack(bare)
    assert template.find_resources("AWS::SNS::Topic") == {} and template.find_resources("AWS::KMS::Key") == {}
    statements = [s for p in template.find_resources("AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    publish = [s for s in statements if "sns:Publish" in _actions(s)]
    assert [s["Resource"] for s in publish] == [topic]
    assert not any(a.startswith("kms:") for s in statements for a in _actions(s))
    assert next(s for s in statements if "sagemaker:DescribeEndpoint" in _actions(s))["Resource"] == endpoint
    for alarm in template.find_resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [topic]
    env = template.find_resources("AWS::Lambda::Function")
    assert [f["Properties"]["Environment"]["Variables"][TOPIC_ENV] for f in env.values()] == [topic]
