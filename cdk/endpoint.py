"""`HybridEndpoint`: one SageMaker real-time endpoint with a `neuron` and a `gpu` production variant.

Built from L1 resources on purpose: the experimental L2 (`aws_sagemaker_alpha`) lacks the
retain settings and cannot autoscale two variants of one endpoint (construct ids collide).

Who owns what once deployed (see docs/infrastructure.md):
- the CDK/CloudFormation owns the models, the endpoint config and the endpoint's existence;
- the router (`hybrid route` / the controller) owns the variant WEIGHTS;
- Application Auto Scaling owns the variant instance COUNTS.
`RetainAllVariantProperties: true` with nothing excluded keeps both across `cdk deploy`.

Public attributes other constructs use (e.g. cdk/controller.py's RoutingController):
`config`, `endpoint_name` (str, fixed = config.name), `endpoint` (CfnEndpoint),
`endpoint_arn`, `endpoint_config` (CfnEndpointConfig), `models` / `scalable_targets` /
`latency_alarms` / `error_alarms` (dicts keyed by variant name), `variant_names`,
`dashboard`, `dashboard_name`, `execution_role`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from toolkit.config import VARIANT_NAMES, HybridConfig, VariantConfig, instance_family
from toolkit.errors import UserError
from toolkit.images import DLC_ACCOUNT_EXCEPTIONS, DLC_DEFAULT_ACCOUNT, resolve_image
from toolkit.pricing import price_per_hour

# Instance families whose storage is local NVMe instance storage rather than an EBS volume
# (EC2 instance store volumes; the SageMaker docs name ml.p4d, ml.g4dn and ml.g5 as examples).
# CreateEndpointConfig rejects KmsKeyId (and VolumeSizeInGB) when any variant uses one of them.
# inf2, inf1, p3 (not p3dn) and c5/m5/r5 are EBS-only. The Trainium families are accepted by
# the config for the neuron variant, so they must be here too.
NVME_FAMILIES = {
    "g4dn", "g4ad", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en",
    "trn1", "trn1n", "trn2", "c5d", "m5d", "r5d", "c6id", "m6id", "r6id",
}

# The service-linked role Application Auto Scaling uses for SageMaker variants. Naming it keeps
# CDK from creating (and us from having to secure) an extra IAM role per scalable target.
AUTOSCALING_SLR = (
    "arn:{partition}:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)

NAMESPACE = "AWS/SageMaker"
PERIOD = cdk.Duration.minutes(1)

# cdk-nag matches `appliesTo` against the rendered ARN. With a region and
# @aws-cdk/core:enablePartitionLiterals the partition is a literal ("aws"); in an
# environment-agnostic stack, or without that flag, it renders as <AWS::Partition>, the region
# as <AWS::Region> and the account as <AWS::AccountId>. Every pattern accepts both forms.
NAG_PARTITION = r"(?:[a-z-]+|<AWS::Partition>)"
NAG_REGION = r"(?:[a-z0-9-]+|<AWS::Region>)"
NAG_ACCOUNT = r"(?:\d{12}|<AWS::AccountId>)"


def has_instance_storage(instance_type: str) -> bool:
    return instance_family(instance_type) in NVME_FAMILIES


def ecr_repository_arn(image_uri: str, partition: str = "aws") -> str | None:
    """`arn:<partition>:ecr:<region>:<account>:repository/<name>` for an ECR image URI, else None."""
    registry, _, rest = image_uri.partition("/")
    parts = registry.split(".")
    if len(parts) < 6 or parts[1:3] != ["dkr", "ecr"] or not rest:
        return None
    account, region = parts[0], parts[3]
    name = rest.split("@", 1)[0] if "@" in rest else rest.rsplit(":", 1)[0]
    return f"arn:{partition}:ecr:{region}:{account}:repository/{name}"


def s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def s3_prefix_arn(partition: str, uri: str, *, is_prefix: bool = False) -> str:
    """Objects under an S3 prefix: for an object URI its own "folder", never the whole bucket."""
    bucket, key = s3_parts(uri)
    if is_prefix:
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    else:
        prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return f"arn:{partition}:s3:::{bucket}/{prefix}*"


@dataclass
class _Grants:
    """Execution-role statements plus the reason each resource wildcard is acceptable."""

    statements: list[iam.PolicyStatement] = field(default_factory=list)
    wildcard_reasons: dict[str, str] = field(default_factory=dict)  # appliesTo regex -> reason


class HybridEndpoint(Construct):
    """Models, endpoint config, endpoint, autoscaling, alarms, dashboard and execution role."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: HybridConfig, without_autoscaling: Iterable[str] = ()
    ) -> None:
        """without_autoscaling: variants whose scalable target is left out of the template.

        Step 1 of the CDK two-step for changing an autoscaled variant's instance type (SageMaker
        refuses while the variant is registered): deploy once without its target (CloudFormation
        deregisters it), then change the type and deploy with it again (docs/infrastructure.md).
        """
        super().__init__(scope, construct_id)
        unscaled = tuple(without_autoscaling)
        unknown = [n for n in unscaled if n not in VARIANT_NAMES]
        if unknown:
            raise UserError(f"without_autoscaling: unknown variant {', '.join(unknown)} (the variants are "
                            f"{', '.join(VARIANT_NAMES)})")
        self.config = config
        self.endpoint_name = config.name
        self.variant_names: tuple[str, ...] = VARIANT_NAMES
        stack = cdk.Stack.of(self)
        self._partition = stack.partition
        self._account = stack.account
        self._region = stack.region
        self._check_region(stack)

        self.images = {name: self._image(name) for name in VARIANT_NAMES}
        self.execution_role = self._execution_role()
        self.models = {name: self._model(name) for name in VARIANT_NAMES}
        self.endpoint_config = self._endpoint_config()
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,  # fixed name is safe: the endpoint is updated in place
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            # A stack update swaps in a new endpoint config (configs are immutable). Without these
            # two settings that swap RESETS every variant to the template's InitialVariantWeight
            # and InitialInstanceCount: a `cdk deploy` in the middle of a canary would snap traffic
            # back to the initial split and undo autoscaling. Retain all, exclude NOTHING:
            # - DesiredWeight stays with the router (it owns weights; live DescribeEndpoint is truth);
            # - DesiredInstanceCount stays with Application Auto Scaling (it owns counts).
            # Excluding either would hand it back to the template on every deploy.
            retain_all_variant_properties=True,
            exclude_retained_variant_properties=[],
        )
        self.endpoint_arn = self.endpoint.ref
        self.scalable_targets = {name: self._autoscaling(name) for name in VARIANT_NAMES if name not in unscaled}
        self.latency_alarms: dict[str, cw.Alarm] = {}
        self.error_alarms: dict[str, cw.Alarm] = {}
        for name in VARIANT_NAMES:
            self.latency_alarms[name], self.error_alarms[name] = self._alarms(name)
        # Dashboards are account-global, not regional: the same endpoint name in two regions must
        # not share one. The region is a token in an environment-agnostic stack (resolved at deploy).
        self.dashboard_name = f"{self.endpoint_name}-hybrid-{stack.region}"
        self.unpriced = self._unpriced()
        self.dashboard = self._dashboard()

    # ------------------------------------------------------------------ region

    def _check_region(self, stack: cdk.Stack) -> None:
        """Images and artifacts are resolved for config.region: the endpoint must be deployed there.

        A stack with a region: synth refuses a mismatch. An environment-agnostic stack (region
        unknown until deploy): a CloudFormation rule refuses the deployment in any other region,
        before anything is created (the images would be pulled from the wrong region otherwise).
        """
        wanted = self.config.region
        if not cdk.Token.is_unresolved(stack.region):
            if stack.region != wanted:
                raise UserError(
                    f"stack {stack.stack_name} is in region {stack.region} but {self.endpoint_name}'s config says "
                    f"region {wanted}: container images and model artifacts must be in the endpoint's region; "
                    f"set region: {stack.region} in hybrid.yaml (with artifacts in that region) or deploy the "
                    f"stack to {wanted}"
                )
            return
        cdk.CfnRule(
            self,
            "RegionMatchesConfig",
            assertions=[
                cdk.CfnRuleAssertion(
                    assert_=cdk.Fn.condition_equals(cdk.Aws.REGION, wanted),
                    assert_description=(
                        f"{self.endpoint_name} is configured for {wanted} (its images and model artifacts are there): "
                        f"deploy this stack to {wanted}, or set region in hybrid.yaml and synthesize again"
                    ),
                )
            ],
        )

    # ------------------------------------------------------------------ models and endpoint

    def _image(self, name: str) -> str | None:
        """Explicit `model.image`, else toolkit.images' table (the SDK only if the table lacks it)."""
        variant = self.config.variant(name)
        if variant.model.model_package_arn:
            return None  # the package names its own image
        return resolve_image(variant, self.config.region, where=f"variants.{name}.model")

    def _model(self, name: str) -> sagemaker.CfnModel:
        spec = self.config.variant(name).model
        env = dict(spec.environment) or None
        if spec.model_package_arn:
            containers = [
                sagemaker.CfnModel.ContainerDefinitionProperty(
                    model_package_name=spec.model_package_arn, environment=env
                )
            ]
            primary = None
        else:
            containers = None
            primary = sagemaker.CfnModel.ContainerDefinitionProperty(
                image=self.images[name], model_data_url=spec.artifact, environment=env
            )
        vpc = self.config.vpc
        # No model_name: CloudFormation generates one, so a changed model can be replaced
        # (a fixed name would make the replacement collide with the old model).
        model = sagemaker.CfnModel(
            self,
            f"{name.capitalize()}Model",
            execution_role_arn=self.execution_role.role_arn,
            primary_container=primary,
            containers=containers,
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                subnets=vpc.subnet_ids, security_group_ids=vpc.security_group_ids
            )
            if vpc
            else None,
        )
        # The role's policy (not just the role, which GetAtt already orders) must exist before
        # SageMaker validates image and artifact access.
        policy = self.execution_role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            model.node.add_dependency(policy)
        return model

    def _variant(self, name: str) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        variant: VariantConfig = self.config.variant(name)
        weight = getattr(self.config.initial_weights, name)
        nvme = has_instance_storage(variant.instance_type)
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=name,
            model_name=self.models[name].attr_model_name,
            instance_type=variant.instance_type,
            initial_instance_count=variant.initial_count,
            initial_variant_weight=weight,  # percent; SageMaker weights are relative, so 0..100 maps directly
            # inf2 containers load (and may compile) slowly: raised timeouts from the config.
            container_startup_health_check_timeout_in_seconds=variant.startup_timeout_seconds,
            model_data_download_timeout_in_seconds=variant.download_timeout_seconds,
            # Volume size only exists where the type has an EBS volume (inf2), never on NVMe types.
            volume_size_in_gb=None if nvme else variant.volume_size_gb,
        )

    def _endpoint_config(self) -> sagemaker.CfnEndpointConfig:
        cfg = self.config
        # KmsKeyId encrypts the ML storage volume. Instance types with local NVMe storage (g5,
        # the gpu variant) have no such volume and CreateEndpointConfig REJECTS the whole config
        # if KmsKeyId is set alongside them; NVMe instance storage is encrypted at rest by the
        # hardware anyway. So the key is only applied when no variant runs on an NVMe type.
        any_nvme = any(has_instance_storage(cfg.variant(n).instance_type) for n in VARIANT_NAMES)
        kms_key_id = cfg.kms_key_arn if cfg.kms_key_arn and not any_nvme else None
        capture = None
        if cfg.data_capture.enabled:
            capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                destination_s3_uri=cfg.data_capture.s3_uri,
                initial_sampling_percentage=cfg.data_capture.sampling_percent,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
                # S3 object encryption of the captured data: unrelated to the NVMe restriction.
                kms_key_id=cfg.kms_key_arn,
            )
        # No endpoint_config_name: configs are immutable, every change is a new, generated name.
        return sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[self._variant(name) for name in VARIANT_NAMES],
            kms_key_id=kms_key_id,
            data_capture_config=capture,
        )

    # ------------------------------------------------------------------ execution role

    def _execution_role(self) -> iam.Role:
        grants = self._grants()
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker execution role for the {self.endpoint_name} hybrid endpoint models (least privilege).",
        )
        for statement in grants.statements:
            role.add_to_policy(statement)
        suppressions = [
            NagPackSuppression(id="AwsSolutions-IAM5", reason=reason, applies_to=[RegexAppliesTo(regex=pattern)])
            for pattern, reason in grants.wildcard_reasons.items()
        ]
        if suppressions:
            NagSuppressions.add_resource_suppressions(role, suppressions, apply_to_children=True)
        return role

    def _grants(self) -> _Grants:
        cfg, p, region, account = self.config, self._partition, self._region, self._account
        g = _Grants()
        artifacts = sorted(
            {s3_prefix_arn(p, cfg.variant(n).model.artifact) for n in VARIANT_NAMES if cfg.variant(n).model.artifact}
        )
        if cfg.compile.output_s3_uri:
            # `hybrid deploy` may point new models at freshly compiled artifacts under this prefix.
            artifacts.append(s3_prefix_arn(p, cfg.compile.output_s3_uri, is_prefix=True))
        if artifacts:
            g.statements.append(
                iam.PolicyStatement(sid="ReadModelArtifacts", actions=["s3:GetObject"], resources=artifacts)
            )
            g.wildcard_reasons[rf"/^Resource::arn:{NAG_PARTITION}:s3:::[^*]+/\*$/"] = (
                "Read-only s3:GetObject on the folder holding each configured model artifact "
                "(and the compile output prefix): SageMaker reads model.tar.gz from there; no other bucket or prefix."
            )

        repositories = sorted(
            {arn for n in VARIANT_NAMES if (img := self.images[n]) and (arn := ecr_repository_arn(img, p))}
        )
        packages = [
            cfg.variant(n).model.model_package_arn for n in VARIANT_NAMES if cfg.variant(n).model.model_package_arn
        ]
        package_accounts = sorted({arn.split(":")[4] for arn in packages if arn})
        # Images live in the endpoint's region, config.region (_check_region pins the stack to it);
        # the stack's region may be a token here.
        image_region = cfg.region
        dlc_account = DLC_ACCOUNT_EXCEPTIONS.get(image_region, DLC_DEFAULT_ACCOUNT)
        for pkg_account in package_accounts:
            # A package's image and artifact are only known from DescribeModelPackage at deploy
            # time: scope by the owning account instead of by name.
            repositories += [
                f"arn:{p}:ecr:{image_region}:{pkg_account}:repository/*",
                f"arn:{p}:ecr:{image_region}:{dlc_account}:repository/*",
            ]
            g.statements.append(
                iam.PolicyStatement(
                    sid=f"ReadPackageArtifacts{pkg_account}",
                    actions=["s3:GetObject"],
                    resources=["*"],
                    conditions={"StringEquals": {"s3:ResourceAccount": pkg_account}},
                )
            )
        if package_accounts:
            g.wildcard_reasons[rf"/^Resource::arn:{NAG_PARTITION}:ecr:{NAG_REGION}:{NAG_ACCOUNT}:repository/\*$/"] = (
                "Model-package variants: the package names its image only at deploy time, so ECR pull is scoped to "
                "the package owner's and the AWS Deep Learning Containers' registries in this region."
            )
        if repositories:
            g.statements.append(
                iam.PolicyStatement(
                    sid="PullModelImages",
                    actions=["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                    resources=sorted(set(repositories)),
                )
            )
        star_reasons = [
            "ecr:GetAuthorizationToken has no resource-level permissions (AWS requires Resource '*'); "
            "image pulls themselves are limited to the named repositories",
            "cloudwatch:PutMetricData has no resource-level permissions; limited by condition to the "
            "/aws/sagemaker/Endpoints namespace",
        ]
        g.statements.append(iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        g.statements.append(
            iam.PolicyStatement(
                sid="PublishEndpointMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}},
            )
        )
        group = f"arn:{p}:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{self.endpoint_name}"
        g.statements.append(
            iam.PolicyStatement(
                sid="WriteEndpointLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                resources=[group, f"{group}:log-stream:*"],
            )
        )
        g.wildcard_reasons[
            rf"/^Resource::arn:{NAG_PARTITION}:logs:{NAG_REGION}:{NAG_ACCOUNT}:log-group:/aws/sagemaker/Endpoints/"
            r"[^*]+:log-stream:\*$/"
        ] = "Log streams are created per instance with generated names, inside this endpoint's own log group only."
        if cfg.data_capture.enabled and cfg.data_capture.s3_uri:
            bucket, key = s3_parts(cfg.data_capture.s3_uri)
            g.statements.append(
                iam.PolicyStatement(
                    sid="WriteDataCapture",
                    actions=["s3:PutObject"],
                    resources=[f"arn:{p}:s3:::{bucket}/{key.rstrip('/') + '/' if key else ''}*"],
                )
            )
            g.wildcard_reasons[rf"/^Resource::arn:{NAG_PARTITION}:s3:::[^*]+\*$/"] = (
                "Data capture writes objects with generated keys under the configured capture prefix only."
            )
            if cfg.kms_key_arn:
                g.statements.append(
                    iam.PolicyStatement(
                        sid="EncryptDataCapture",
                        actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                        resources=[cfg.kms_key_arn],
                    )
                )
        if cfg.vpc:
            # AWS's SageMaker VPC example grants these ENI actions on Resource "*". We scope them per the
            # Service Authorization Reference instead; verify on a real VPC deployment (no AWS account here).
            ec2 = f"arn:{p}:ec2:{region}:{account}"
            subnets = [f"{ec2}:subnet/{s}" for s in cfg.vpc.subnet_ids]
            enis = f"{ec2}:network-interface/*"
            g.statements.append(
                iam.PolicyStatement(
                    sid="VpcCreateNetworkInterfaces",
                    actions=["ec2:CreateNetworkInterface"],
                    # IAM checks every resource of the request: the new ENI (id unknown until created,
                    # hence network-interface/*) AND its subnet and security groups, which are pinned here.
                    resources=[*subnets, *(f"{ec2}:security-group/{sg}" for sg in cfg.vpc.security_group_ids), enis],
                )
            )
            g.statements.append(
                iam.PolicyStatement(
                    sid="VpcManageNetworkInterfaces",
                    actions=[
                        "ec2:CreateNetworkInterfacePermission",
                        "ec2:DeleteNetworkInterface",
                        "ec2:DeleteNetworkInterfacePermission",
                    ],
                    resources=[enis],
                    # ec2:Subnet is a condition key of the network-interface resource these actions act on
                    # (Service Authorization Reference): only ENIs in the configured subnets.
                    conditions={"ArnEquals": {"ec2:Subnet": subnets}},
                )
            )
            g.statements.append(
                iam.PolicyStatement(
                    sid="VpcDescribeNetwork",
                    actions=[
                        "ec2:DescribeDhcpOptions",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSecurityGroups",
                        "ec2:DescribeSubnets",
                        "ec2:DescribeVpcs",
                    ],
                    resources=["*"],
                )
            )
            g.wildcard_reasons[rf"/^Resource::arn:{NAG_PARTITION}:ec2:{NAG_REGION}:{NAG_ACCOUNT}:network-interface/\*$/"] = (
                "ENIs SageMaker creates for the model containers: their ids do not exist before creation. "
                "CreateNetworkInterface is bounded by the named subnets and security groups; delete and the "
                "ENI-permission actions by an ec2:Subnet condition on the configured subnets."
            )
            star_reasons.append(
                "the ec2:Describe* calls SageMaker makes to attach model containers to the configured subnets "
                "(EC2 Describe actions support no resource-level permissions)"
            )
        if package_accounts:
            star_reasons.append(
                "s3:GetObject for model-package artifacts, restricted by the s3:ResourceAccount condition to the package owner"
            )
        g.wildcard_reasons["/^Resource::\\*$/"] = "; ".join(star_reasons) + "."
        return g

    # ------------------------------------------------------------------ autoscaling

    def _autoscaling(self, name: str) -> appscaling.ScalableTarget:
        variant = self.config.variant(name)
        role = iam.Role.from_role_arn(
            self,
            f"{name.capitalize()}AutoscalingRole",
            AUTOSCALING_SLR.format(partition=self._partition, account=self._account),
            mutable=False,
        )
        target = appscaling.ScalableTarget(
            self,
            f"{name.capitalize()}ScalableTarget",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint_name}/variant/{name}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            # SageMaker real-time variants cannot be scaled below one instance by Application
            # Auto Scaling; a min_count of 0 is kept by the router, not by this target.
            min_capacity=max(1, variant.min_count),
            max_capacity=variant.max_count,
            role=role,
        )
        # The resource id names the endpoint literally, so CloudFormation would not order them.
        target.node.add_dependency(self.endpoint)
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            # Per-variant targets: inf2 and g5 sustain different request rates per instance.
            target_value=float(variant.target_invocations_per_instance),
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_out_cooldown=cdk.Duration.minutes(1),
            # Slow scale-in: a canary step moves traffic in bursts; do not shed capacity mid-step.
            scale_in_cooldown=cdk.Duration.minutes(5),
        )
        return target

    # ------------------------------------------------------------------ metrics, alarms, dashboard

    def metric(
        self, name: str, variant: str, statistic: str = "Sum", namespace: str = NAMESPACE, labelled: bool = False
    ) -> cw.Metric:
        """One per-variant SageMaker metric at 1-minute periods (labelled for dashboard legends)."""
        return cw.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": variant},
            statistic=statistic,
            period=PERIOD,
            label=f"{variant} {name} {statistic}" if labelled else None,
        )

    def error_rate(self, variant: str) -> cw.MathExpression:
        errors, invocations = f"err_{variant}", f"inv_{variant}"
        return cw.MathExpression(
            # FILL: a minute with invocations but no 5XX datapoint has zero errors, not unknown.
            expression=f"FILL({errors}, 0) / {invocations}",
            using_metrics={
                errors: self.metric("Invocation5XXErrors", variant),
                invocations: self.metric("Invocations", variant),
            },
            label=f"{variant} 5XX error rate",
            period=PERIOD,
        )

    def _alarms(self, name: str) -> tuple[cw.Alarm, cw.Alarm]:
        slo = self.config.slo
        cap = name.capitalize()
        # Missing data = the variant served nothing that minute (neuron at weight 0, or idle
        # traffic). That is not a latency or error breach, so NOT_BREACHING; a variant going
        # silent while it should serve is the controller's call (it knows the expected traffic:
        # fallback.expected_invocations_for_silence). BREACHING would page on every idle minute.
        latency = cw.Alarm(
            self,
            f"{cap}LatencyAlarm",
            alarm_name=f"{self.endpoint_name}-{name}-p99-latency",
            alarm_description=(
                f"p99 ModelLatency of variant {name} above the SLO of {slo.p99_latency_ms:g} ms "
                f"(threshold in MICROSECONDS: ModelLatency is published in µs) in 3 of 5 minutes."
            ),
            metric=self.metric("ModelLatency", name, statistic="p99"),
            threshold=slo.p99_latency_ms * 1000.0,  # ms -> µs
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        errors = cw.Alarm(
            self,
            f"{cap}ErrorRateAlarm",
            alarm_name=f"{self.endpoint_name}-{name}-5xx-rate",
            alarm_description=(
                f"Invocation5XXErrors / Invocations of variant {name} above {slo.max_error_rate:g} "
                f"(a ratio: 0.01 = 1%) in 3 of 5 minutes."
            ),
            metric=self.error_rate(name),
            threshold=slo.max_error_rate,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        return latency, errors

    def instances(self, variant: str) -> cw.MathExpression:
        """Instances in service, derived: SageMaker publishes no instance-count metric.

        Invocations / InvocationsPerInstance per minute; a minute without traffic shows the
        autoscaling floor (min_count), where an idle variant sits.
        """
        floor = max(1, self.config.variant(variant).min_count)
        inv, ipi = f"inv_{variant}", f"ipi_{variant}"  # ids must be unique across nested expressions
        return cw.MathExpression(
            expression=f"FILL(IF({ipi} > 0, {inv} / {ipi}, {floor}), {floor})",
            using_metrics={
                inv: self.metric("Invocations", variant),
                ipi: self.metric("InvocationsPerInstance", variant),
            },
            label=f"{variant} instances (derived)",
            period=PERIOD,
        )

    def _unpriced(self) -> list[str]:
        """Instance types with no known price (config `prices:` or the built-in table).

        Synth does not fail for them (`hybrid validate` accepts any SageMaker type): the dashboard
        shows a note instead of the blended-cost graph, and synth prints a warning saying what to set.
        """
        missing: list[str] = []
        for name in VARIANT_NAMES:
            instance_type = self.config.variant(name).instance_type
            try:
                price_per_hour(instance_type, self.config.prices)
            except UserError:
                missing.append(instance_type)
        if missing:
            cdk.Annotations.of(self).add_warning_v2(
                "hybrid:no-price",
                f"no price known for {', '.join(missing)}: the dashboard's blended $ per 1K inferences graph is "
                f"replaced by a note; add $/hour under `prices:` in hybrid.yaml to get it",
            )
        return missing

    def cost_per_1k(self) -> cw.MathExpression:
        """Blended $ per 1,000 inferences: what both variants' instances cost over what they served."""
        usage: dict[str, cw.IMetric] = {}
        cost_terms, invocation_terms = [], []
        for name in VARIANT_NAMES:
            price = price_per_hour(self.config.variant(name).instance_type, self.config.prices)
            usage[f"inst_{name}"] = self.instances(name)
            usage[f"inv_{name}"] = self.metric("Invocations", name)
            cost_terms.append(f"inst_{name} * {price / 60.0:.6f}")  # $ per instance-minute
            invocation_terms.append(f"FILL(inv_{name}, 0)")
        return cw.MathExpression(
            expression=f"1000 * ({' + '.join(cost_terms)}) / ({' + '.join(invocation_terms)})",
            using_metrics=usage,
            label="blended $ per 1K inferences",
            period=PERIOD,
        )

    def _cost_widget(self) -> cw.IWidget:
        if not self.unpriced:
            return cw.GraphWidget(title="Blended $ per 1K inferences", left=[self.cost_per_1k()], width=8)
        types = ", ".join(self.unpriced)
        return cw.TextWidget(
            markdown=(f"### Blended $ per 1K inferences\nNo price known for {types}: add its $/hour under "
                      "`prices:` in hybrid.yaml and deploy again to get this graph."),
            width=8,
            height=6,
        )

    def _dashboard(self) -> cw.Dashboard:
        v = VARIANT_NAMES

        def latency_ms(variant: str, stat: str) -> cw.MathExpression:
            return cw.MathExpression(
                expression=f"lat_{variant}_{stat} / 1000",  # µs -> ms for people
                using_metrics={f"lat_{variant}_{stat}": self.metric("ModelLatency", variant, statistic=stat)},
                label=f"{variant} {stat} ms",
                period=PERIOD,
            )

        slo_line = cw.HorizontalAnnotation(value=self.config.slo.p99_latency_ms, label="p99 SLO (ms)")
        widgets: list[list[cw.IWidget]] = [
            [
                cw.TextWidget(
                    markdown=(
                        f"# {self.endpoint_name}: neuron (inf2) + gpu (g5)\n"
                        "Weights are set by the router, instance counts by autoscaling. ModelLatency is "
                        "published in µs and shown here in ms. Instance counts are derived "
                        "(Invocations / InvocationsPerInstance); idle minutes show the autoscaling floor."
                    ),
                    width=24,
                    height=3,
                )
            ],
            [
                cw.GraphWidget(
                    title="Invocations per minute",
                    left=[self.metric("Invocations", n, labelled=True) for n in v],
                    width=8,
                ),
                cw.GraphWidget(
                    title="ModelLatency p50 / p99 (ms)",
                    left=[latency_ms(n, s) for n in v for s in ("p50", "p99")],
                    left_annotations=[slo_line],
                    width=8,
                ),
                cw.GraphWidget(
                    title="5XX errors and error rate",
                    left=[self.metric("Invocation5XXErrors", n, labelled=True) for n in v],
                    right=[self.error_rate(n) for n in v],
                    right_annotations=[
                        cw.HorizontalAnnotation(value=self.config.slo.max_error_rate, label="max error rate")
                    ],
                    width=8,
                ),
            ],
            [
                cw.GraphWidget(title="Instances in service (derived)", left=[self.instances(n) for n in v], width=8),
                self._cost_widget(),
                cw.GraphWidget(
                    title="Instance CPU / GPU utilization (%)",
                    left=[
                        self.metric("CPUUtilization", n, "Average", "/aws/sagemaker/Endpoints", labelled=True)
                        for n in v
                    ],
                    right=[self.metric("GPUUtilization", "gpu", "Average", "/aws/sagemaker/Endpoints", labelled=True)],
                    width=8,
                ),
            ],
        ]
        return cw.Dashboard(self, "Dashboard", dashboard_name=self.dashboard_name, widgets=widgets)
