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

from cdk.endpoint import NAG_ACCOUNT, NAG_PARTITION, NAG_REGION
from routing.dynamo_state import LAMBDA_TIMEOUT_SECONDS, LEASE_SECONDS, TTL_ATTRIBUTE
from routing.lambda_handler import (
    CONFIG_ENV,
    SETTLE_ENV,
    SETTLE_SECONDS,
    TABLE_ENV,
    TOPIC_ENV,
    config_env_value,
)
from toolkit.config import VARIANT_NAMES, HybridConfig
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

# Every AWS action the controller Lambda calls, by what it acts on: the role grants exactly these
# (tests/cdk/test_controller_iam.py runs handler ticks in an IAM-enforcing moto with only them).
# Whoever adds an AWS call to routing/ adds its action here, in the group of its resource.
CONTROLLER_ACTIONS: dict[str, tuple[str, ...]] = {
    # routing/router.py: DescribeEndpoint every tick, DescribeEndpointConfig on a cold start (the
    # instance types: DescribeEndpoint does not report them), then the weight/count update.
    "endpoint": ("sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"),
    "endpoint-config": ("sagemaker:DescribeEndpointConfig",),
    # routing/adapters/sagemaker.py: DescribeModel once per endpoint config, to tell model versions
    # apart by artifact and image (issue 17), not only by the CloudFormation-generated model name.
    "model": ("sagemaker:DescribeModel",),
    # routing/metrics.py: one GetMetricData per tick; CloudWatch has no resource-level permission for it.
    "metrics": ("cloudwatch:GetMetricData",),
    # routing/dynamo_state.py: lease (UpdateItem/GetItem), state (GetItem; TransactWriteItems of an
    # Update and a Put, which IAM authorizes as UpdateItem + PutItem: there is no action of its
    # own), records (PutItem, Query).
    "table": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"),
    # routing/lambda_handler.py: fallback / abort / promotion notices.
    "topic": ("sns:Publish",),
    # One owner for instance counts (issue 14, item 6): the router raises the variant's scalable
    # target MinCapacity (RegisterScalableTarget on the existing target) instead of setting
    # DesiredInstanceCount itself, after reading it (DescribeScalableTargets); the same Register
    # call suspends dynamic scale-in during a ramp and a fallback (routing/adapters/autoscaling.py). Scalable-target ids
    # are generated by the service, so Register is scoped to the account's targets in the region;
    # DescribeScalableTargets has no resource type at all. (Tighter: ABAC with aws:ResourceTag on
    # tagged targets, once the stack's targets carry a tag; not done.) Verify on a live account that updating an existing
    # target needs nothing more (first registration also needs iam:CreateServiceLinkedRole; the
    # stack registers the targets, so the controller never registers a new one).
    "autoscaling-read": ("application-autoscaling:DescribeScalableTargets",),
    "autoscaling-write": ("application-autoscaling:RegisterScalableTarget",),
    # The Lambda runtime writes the function's own logs.
    "logs": ("logs:CreateLogStream", "logs:PutLogEvents"),
    # Publishing to the KMS-encrypted topic (only when the stack creates the topic).
    "key": ("kms:GenerateDataKey", "kms:Decrypt"),
    # (sts:GetCallerIdentity, called when the config pins `account:`, needs no permission.)
    # Lambda sends failed asynchronous invocations to the dead-letter queue with the function's
    # role (CDK grants it on the queue for `dead_letter_queue`; listed here so the table is complete).
    "dead-letters": ("sqs:SendMessage",),
}


# The dashboard reads the controller from its decision records: the handler logs one JSON record
# per tick (routing/lambda_handler.py), after the Lambda runtime's "[INFO]\t<time>\t<request id>\t"
# prefix, so CloudWatch Logs Insights cannot discover the fields by itself: each is parsed with a
# regular expression (Logs Insights syntax: named groups are `(?<name>...)`). Keys are the
# record's; the first occurrence is the top-level one ("phase_before" does not match "phase").
DECISION_FIELDS: dict[str, str] = {
    "phase": r'"phase": "(?<phase>[a-z_]+)"',
    "action": r'"action": "(?<action>[a-z_]+)"',
    "applied": r'"applied": (?<applied>true|false)',
    "neuron_share": r'"after": \{[^{}]*"variants": \{"neuron": \{[^{}]*"share_percent": (?<neuron_share>[0-9.]+)',
    "reason": r'"reason": "(?<reason>(?:[^"\\]|\\.)*)"',
}
TICK_FILTER = "filter @message like /\"command\": \"/"


def decision_query(fields: tuple[str, ...], tail: tuple[str, ...]) -> list[str]:
    parses = [f"parse @message /{DECISION_FIELDS[name]}/" for name in fields]
    return ["fields @timestamp", TICK_FILTER, *parses, *tail]


def controller_config(config: HybridConfig) -> HybridConfig:
    """The config the Lambda gets: everything but the models' container environments.

    The controller never reads model.environment, and it may hold secrets (HF_TOKEN): they stay
    in the models, out of the Lambda's environment and the template's Lambda properties.
    """
    variants = {
        name: config.variant(name).model_copy(
            update={"model": config.variant(name).model.model_copy(update={"environment": {}})})
        for name in VARIANT_NAMES
    }
    return config.model_copy(update={"variants": config.variants.model_copy(update=variants)})


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
            # Retention: record items carry `ttl` (routing/adapters/dynamo_store.py, RECORD_RETENTION_DAYS);
            # DynamoDB deletes them after it. State and lease items have none and stay.
            time_to_live_attribute=TTL_ATTRIBUTE,
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
            # A topic policy replaces SNS's default one: with only enforce_ssl's deny statement, the
            # alarms below could not publish. Only CloudWatch alarms of this account and region.
            self.topic.add_to_resource_policy(iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": stack.format_arn(
                        service="cloudwatch", resource="alarm", resource_name="*",
                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)},
                },
            ))

        self.dead_letters = sqs.Queue(
            self, "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.THREE_MONTHS,
                                       removal_policy=cdk.RemovalPolicy.DESTROY)
        self.role = self._role()

        env = config_env_value(controller_config(config))
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
        self._dashboard_widgets(endpoint)

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
        stack = cdk.Stack.of(self)
        a = CONTROLLER_ACTIONS
        # Endpoint configs get CloudFormation-generated names (and `hybrid deploy` makes new ones):
        # the account's endpoint configs in this region, read-only.
        configs = stack.format_arn(service="sagemaker", resource="endpoint-config", resource_name="*")
        statements = [
            iam.PolicyStatement(sid="ReadAndRouteTheEndpoint", actions=list(a["endpoint"]),
                                resources=[self.endpoint_arn]),
            iam.PolicyStatement(sid="ReadEndpointConfigs", actions=list(a["endpoint-config"]), resources=[configs]),
            iam.PolicyStatement(sid="ReadModels", actions=list(a["model"]), resources=[
                stack.format_arn(service="sagemaker", resource="model", resource_name="*")]),
            iam.PolicyStatement(sid="ReadEndpointMetrics", actions=list(a["metrics"]), resources=["*"]),
            iam.PolicyStatement(sid="StateLeaseAndRecords", actions=list(a["table"]),
                                resources=[self.table.table_arn]),
            iam.PolicyStatement(sid="PublishNotices", actions=list(a["topic"]), resources=[self.topic.topic_arn]),
            iam.PolicyStatement(sid="ReadScalableTargets", actions=list(a["autoscaling-read"]), resources=["*"]),
            # Scalable-target ids are generated by the service: this account's targets in this region.
            iam.PolicyStatement(sid="RaiseOwnMinCapacity", actions=list(a["autoscaling-write"]), resources=[
                stack.format_arn(service="application-autoscaling", resource="scalable-target", resource_name="*")]),
            iam.PolicyStatement(sid="WriteOwnLogs", actions=list(a["logs"]),
                                resources=[self.log_group.log_group_arn]),
        ]
        if self.key is not None:
            statements.append(iam.PolicyStatement(sid="EncryptNotices", actions=list(a["key"]),
                                                  resources=[self.key.key_arn]))
        for statement in statements:
            role.add_to_policy(statement)
        return role

    # ------------------------------------------------------------------ dashboard

    def _dashboard_widgets(self, endpoint: Any) -> None:
        """The controller on the endpoint's dashboard: phase, actions and neuron share from its records."""
        dashboard = getattr(endpoint, "dashboard", None)
        if dashboard is None:
            return
        groups = [self.log_group.log_group_name]
        dashboard.add_widgets(
            cw.LogQueryWidget(
                title="Controller: neuron share % after each tick (decision records)",
                log_group_names=groups,
                query_lines=decision_query(("neuron_share",), (
                    "filter ispresent(neuron_share)",
                    "stats max(neuron_share) as neuron_share_percent by bin(5m)",
                )),
                view=cw.LogQueryVisualizationType.LINE,
                width=8,
                height=6,
            ),
            cw.LogQueryWidget(
                title="Controller: latest decisions (phase, action, applied, reason)",
                log_group_names=groups,
                query_lines=decision_query(("phase", "action", "applied", "neuron_share", "reason"), (
                    "display @timestamp, phase, action, applied, neuron_share, reason",
                    "sort @timestamp desc",
                    "limit 50",
                )),
                view=cw.LogQueryVisualizationType.TABLE,
                width=16,
                height=6,
            ),
        )

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
                reason="cloudwatch:GetMetricData and application-autoscaling:DescribeScalableTargets support no "
                       "resource-level permissions (the service authorization reference lists only '*'); the "
                       "controller reads its endpoint's metrics and its variants' scalable targets with them.",
                applies_to=["Resource::*"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="application-autoscaling:RegisterScalableTarget on this account's scalable targets in this "
                       "region: target ids are generated by the service; the controller raises its own variants' "
                       "MinCapacity so that autoscaling stays the one owner of instance counts.",
                applies_to=[RegexAppliesTo(
                    regex=rf"/^Resource::arn:{NAG_PARTITION}:application-autoscaling:{NAG_REGION}:{NAG_ACCOUNT}"
                          r":scalable-target/\*$/")],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="sagemaker:DescribeModel (read-only) on this account's models in this region: model names "
                       "are generated by CloudFormation and by `hybrid deploy`; it tells model versions apart.",
                applies_to=[RegexAppliesTo(
                    regex=rf"/^Resource::arn:{NAG_PARTITION}:sagemaker:{NAG_REGION}:{NAG_ACCOUNT}:model/\*$/")],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="sagemaker:DescribeEndpointConfig (read-only) on this account's endpoint configs in this "
                       "region: the endpoint's config names are generated by CloudFormation and by `hybrid deploy`.",
                applies_to=[RegexAppliesTo(
                    regex=rf"/^Resource::arn:{NAG_PARTITION}:sagemaker:{NAG_REGION}:{NAG_ACCOUNT}:endpoint-config/\*$/")],
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
