"""`RoutingController`: the in-account controller for one endpoint (added when controller.enabled).

- a Lambda running routing.lambda_handler.handler: the SAME tick as `hybrid route tick`, with
  the DynamoDB store. Code and dependencies are bundled locally, without Docker: routing/ and
  the four toolkit modules it imports are copied, and pydantic + PyYAML are installed by pip
  for the Lambda's platform (manylinux x86_64, CPython RUNTIME_VERSION). That install is
  cached on disk keyed by the pinned requirements, so repeated synths never reinstall;
  boto3 comes with the runtime. The validated config reaches the Lambda in HYBRID_CONFIG;
- an EventBridge rule, rate(controller.schedule_minutes), whose event names the endpoint;
- a DynamoDB table for state, lease and decision records (on demand, point-in-time recovery,
  AWS-managed encryption; layout in routing/dynamo_state.py);
- an IAM role with inline statements only: SageMaker on the endpoint's ARN, DynamoDB on the
  table, SNS on the topic, logs on the function's own log group; GetMetricData (which has
  no resource-level permissions) is the one acknowledged wildcard;
- an SNS topic (or controller.notification_topic_arn) for fallback / promotion / abort notices
  and for the alarms on the function's Errors and Throttles and on the dead-letter queue;
- a dead-letter queue (encrypted, TLS only) for failed asynchronous invocations.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from routing.dynamo_state import LAMBDA_TIMEOUT_SECONDS, LEASE_SECONDS
from routing.lambda_handler import (
    CONFIG_ENV,
    SETTLE_ENV,
    SETTLE_SECONDS,
    TABLE_ENV,
    TOPIC_ENV,
    config_env_value,
)
from toolkit.config import HybridConfig
from toolkit.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest Python runtime (cdk-nag L1 checks it)
RUNTIME_VERSION = "3.14"  # must match RUNTIME: pip installs wheels for this CPython
ARCHITECTURE = lambda_.Architecture.X86_64
PIP_PLATFORM = "manylinux2014_x86_64"  # must match ARCHITECTURE
HANDLER = "routing.lambda_handler.handler"
# What the handler imports, and nothing else (no CLI, no simulator, no CDK).
BUNDLE_SOURCES: dict[str, tuple[str, ...] | None] = {
    "routing": None,  # every module: the controller imports its adapters lazily
    "toolkit": ("__init__.py", "config.py", "errors.py", "pricing.py"),
}
# Pinned to the versions installed here, so the Lambda runs what the tests ran.
REQUIREMENTS = ("pydantic", "pydantic-core", "PyYAML", "typing-extensions", "annotated-types", "typing-inspection")
MAX_ENV_BYTES = 3500  # Lambda allows 4 KB for all environment variables together
CACHE_ENV = "HYBRID_BUNDLE_CACHE"

assert LEASE_SECONDS > LAMBDA_TIMEOUT_SECONDS, "an expired lease must mean its holder was stopped"


def requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sagemaker-hybrid-routing"
    )
    return Path(base) / "lambda-deps"


def dependencies_key(reqs: list[str] | None = None) -> str:
    text = "\n".join([PIP_PLATFORM, RUNTIME_VERSION, *(reqs or requirements())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def install_dependencies(reqs: list[str] | None = None) -> Path:
    """The Lambda's site-packages, installed once per requirements set and reused afterwards."""
    reqs = reqs or requirements()
    target = cache_root() / dependencies_key(reqs)
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".installing-", dir=target.parent))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--platform", PIP_PLATFORM, "--implementation", "cp", "--python-version", RUNTIME_VERSION,
               "--only-binary=:all:", "--target", str(work), *reqs]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not install the controller Lambda's dependencies ({' '.join(reqs)}) for "
                        f"Python {RUNTIME_VERSION} {PIP_PLATFORM}: {last}")
    (work / ".complete").write_text("\n".join(reqs) + "\n")
    try:
        os.rename(work, target)  # atomic: a parallel synth either wins or finds ours complete
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    return target


def source_files() -> list[tuple[Path, str]]:
    """(file, path inside the bundle) for the handler's code."""
    out: list[tuple[Path, str]] = []
    for package, names in BUNDLE_SOURCES.items():
        folder = ROOT / package
        # None: the whole package, sub-packages included (routing/core, routing/adapters).
        files = sorted(folder.rglob("*.py")) if names is None else [folder / n for n in names]
        out += [(f, f"{package}/{f.relative_to(folder).as_posix()}") for f in files if "__pycache__" not in f.parts]
    return out


def bundle_hash(reqs: list[str] | None = None) -> str:
    digest = hashlib.sha256(dependencies_key(reqs).encode())
    for path, name in source_files():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _copy(source: Path, destination: Path) -> None:
    """Hard links where the filesystem allows (fast, no extra space), copies elsewhere."""
    for root, _dirs, files in os.walk(source):
        rel = Path(root).relative_to(source)
        if "__pycache__" in rel.parts:
            continue
        (destination / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            if name == ".complete":
                continue
            src, dst = Path(root) / name, destination / rel / name
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def write_bundle(output_dir: str | Path) -> None:
    out = Path(output_dir)
    _copy(install_dependencies(), out)
    for path, name in source_files():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / name)


@jsii.implements(cdk.ILocalBundling)
class LocalBundling:
    """Bundles on this machine (no Docker): the sources plus the cached dependency install."""

    def try_bundle(self, output_dir: str, *, image: Any = None, **_options: Any) -> bool:
        write_bundle(output_dir)
        return True


def code_asset() -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(ROOT / "routing"),
        asset_hash=bundle_hash(),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        bundling=cdk.BundlingOptions(
            # Never pulled: local bundling always succeeds (Docker is not needed, or available).
            image=RUNTIME.bundling_image,
            local=LocalBundling(),
        ),
    )


class RoutingController(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: HybridConfig, endpoint: Any) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        stack = cdk.Stack.of(self)
        settings = config.controller
        self.endpoint_arn: str = endpoint.endpoint_arn

        self.table = dynamodb.Table(
            self, "State",
            table_name=settings.table(config.name),  # fixed: the CLI finds it from the same config
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # The decision log is an audit trail: keep it when the stack goes.
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

        self.key: kms.Key | None = None
        if settings.notification_topic_arn:
            self.topic: sns.ITopic = sns.Topic.from_topic_arn(self, "Notices", settings.notification_topic_arn)
        else:
            # A customer key (not aws/sns): CloudWatch alarms can only publish to topics whose key
            # policy lets cloudwatch.amazonaws.com use it.
            self.key = kms.Key(self, "NoticesKey", enable_key_rotation=True,
                               description=f"Encrypts the {config.name} routing controller's notices topic")
            self.key.add_to_resource_policy(iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ))
            self.topic = sns.Topic(self, "Notices", master_key=self.key, enforce_ssl=True,
                                   display_name=f"{config.name} routing controller")

        self.dead_letters = sqs.Queue(
            self, "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.THREE_MONTHS,
                                       removal_policy=cdk.RemovalPolicy.DESTROY)
        self.role = self._role()

        env = config_env_value(config)
        if len(env.encode()) > MAX_ENV_BYTES:
            raise UserError(f"the config is {len(env.encode())} bytes as JSON; the controller Lambda takes at most "
                            f"{MAX_ENV_BYTES}: shorten model environments or disable controller.enabled")
        self.function = lambda_.Function(
            self, "Function",
            description=f"Routing controller tick for SageMaker endpoint {config.name}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=HANDLER,
            code=code_asset(),
            role=self.role,
            timeout=cdk.Duration.seconds(LAMBDA_TIMEOUT_SECONDS),  # < the lease (routing/dynamo_state.py)
            memory_size=256,
            log_group=self.log_group,
            environment={
                CONFIG_ENV: env,
                TABLE_ENV: self.table.table_name,
                TOPIC_ENV: self.topic.topic_arn,
                # CloudWatch publishes SageMaker's minute late: judge it a minute after it closes.
                SETTLE_ENV: str(SETTLE_SECONDS),
            },
            dead_letter_queue=self.dead_letters,
            # The next scheduled tick is the retry; a retried stale event would only stand aside.
            retry_attempts=0,
            max_event_age=cdk.Duration.minutes(max(1, settings.schedule_minutes)),
        )

        # The function must wait for every policy of its role (Lambda checks the dead-letter
        # queue's SendMessage at creation); CDK also lists the role itself, which the Role
        # GetAtt already orders (cfn-lint W3005): depend on the policies only.
        policies = sorted(stack.get_logical_id(c) for c in self.node.find_all() if isinstance(c, iam.CfnPolicy))
        self.function.node.default_child.add_override("DependsOn", policies)

        self.rule = events.Rule(
            self, "Schedule",
            description=f"Routing controller tick for {config.name} every {settings.schedule_minutes} min",
            schedule=events.Schedule.rate(cdk.Duration.minutes(settings.schedule_minutes)),
            targets=[targets.LambdaFunction(
                self.function,
                event=events.RuleTargetInput.from_object({"endpoint": config.name}),
                dead_letter_queue=self.dead_letters,
                retry_attempts=0,
            )],
        )
        self.alarms = self._alarms()
        self._acknowledge()

        cdk.CfnOutput(self, "TableName", value=self.table.table_name,
                      description="Controller state and decision records (hybrid canary status uses it)")
        cdk.CfnOutput(self, "TopicArn", value=self.topic.topic_arn, description="Fallback/promotion/abort notices")
        cdk.CfnOutput(self, "FunctionName", value=self.function.function_name, description="Controller Lambda")
        cdk.CfnOutput(self, "ScheduleRuleName", value=self.rule.rule_name,
                      description="Disable this rule to stop the in-account controller")

    # ------------------------------------------------------------------ IAM

    def _role(self) -> iam.Role:
        role = iam.Role(
            self, "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Routing controller for {self.config.name}: its endpoint, table, topic and logs only",
        )
        statements = [
            iam.PolicyStatement(
                sid="ReadAndRouteTheEndpoint",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"],
                resources=[self.endpoint_arn],
            ),
            iam.PolicyStatement(
                sid="ReadEndpointMetrics",
                actions=["cloudwatch:GetMetricData"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="StateLeaseAndRecords",
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
                resources=[self.table.table_arn],
            ),
            iam.PolicyStatement(sid="PublishNotices", actions=["sns:Publish"], resources=[self.topic.topic_arn]),
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            ),
        ]
        if self.key is not None:
            statements.append(iam.PolicyStatement(
                sid="EncryptNotices", actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn]))
        for statement in statements:
            role.add_to_policy(statement)
        return role

    # ------------------------------------------------------------------ alarms

    def _alarms(self) -> list[cw.Alarm]:
        period = cdk.Duration.minutes(max(5, self.config.controller.schedule_minutes))
        name = self.config.name
        alarms = [
            cw.Alarm(self, "ErrorsAlarm", alarm_description=f"{name} routing controller ticks fail (see its logs)",
                     metric=self.function.metric_errors(period=period, statistic="Sum"),
                     threshold=1, evaluation_periods=1,
                     comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                     treat_missing_data=cw.TreatMissingData.NOT_BREACHING),
            cw.Alarm(self, "ThrottlesAlarm", alarm_description=f"{name} routing controller ticks are throttled",
                     metric=self.function.metric_throttles(period=period, statistic="Sum"),
                     threshold=1, evaluation_periods=1,
                     comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                     treat_missing_data=cw.TreatMissingData.NOT_BREACHING),
            cw.Alarm(self, "DeadLettersAlarm", alarm_description=f"{name} routing controller events were dropped",
                     metric=self.dead_letters.metric_approximate_number_of_messages_visible(period=period),
                     threshold=1, evaluation_periods=1,
                     comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                     treat_missing_data=cw.TreatMissingData.NOT_BREACHING),
        ]
        for alarm in alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        return alarms

    # ------------------------------------------------------------------ cdk-nag

    def _acknowledge(self) -> None:
        NagSuppressions.add_resource_suppressions(self.role, [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="cloudwatch:GetMetricData supports no resource-level permissions (the service authorization "
                       "reference lists only '*'); the controller reads its endpoint's AWS/SageMaker metrics with it.",
                applies_to=["Resource::*"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="The log group ARN ends in ':*' (its log streams): the function writes only to its own log "
                       "group, created by this stack.",
                applies_to=[RegexAppliesTo(regex=r"/^Resource::<.*Logs.*\.Arn>(:\*)?$/")],
            ),
        ], apply_to_children=True)
        NagSuppressions.add_resource_suppressions(self.dead_letters, [
            NagPackSuppression(
                id="AwsSolutions-SQS3",
                reason="This queue IS the dead-letter queue (of the controller Lambda and its schedule target); "
                       "a dead-letter queue of its own would never be read.",
            ),
        ])
