"""`hybrid deploy`: create or update the two-variant endpoint with boto3 (pipelines without CDK).

What it does, in order:
1. picks the model source per variant: the latest approved pair in the Model Registry
   (toolkit/registry.py), a `model_package_arn` from the config, or the config's artifact + image;
2. checks with S3 HeadObject that each config `model.artifact` exists, so a wrong path is a
   one-line UserError before anything is created (not an endpoint that can only fail on AWS);
3. `CreateModel` per variant, content-named (`<name>-<variant>-<hash>`), so an unchanged model is
   reused and a changed one never collides with the running one;
4. a NEW endpoint config every time the content changes, named `<name>-<hash of its content>`
   (endpoint configs are immutable; a fixed name would make every update fail);
5. `CreateEndpoint`, or `UpdateEndpoint(RetainAllVariantProperties=True)` so the weights the
   router set and the counts autoscaling set survive a model update (the live endpoint owns
   weights and counts; the config only seeds them on creation, from `initial_weights`);
6. waits for `InService` with a progress bar and surfaces SageMaker's `FailureReason`: a failed
   creation, an update that rolled back to the previous config, or `UpdateRollbackFailed` (a mix
   of old and new configs, which never settles by itself) is an AwsError (exit 3).

Also: `--source auto` never skips approval silently (a registered pair newer than the approved
one that still awaits approval is refused, naming `hybrid register --approve`); a config
`model_package_arn` is checked to exist before anything is created; `kms_key_arn` becomes the
endpoint config's `KmsKeyId` only when no variant has local NVMe storage (SageMaker rejects it
otherwise) and the data-capture key whenever capture is on; a Neo compile result supplies the
neuron artifact AND the job's `InferenceImage` (as the SageMaker SDK's `Model.compile()` does);
changing the instance type of an autoscaled variant deregisters its scalable target, updates,
waits, and registers it again with the same capacities and policies (SageMaker refuses the
update otherwise).

Nothing here knows whether it talks to AWS or to the embedded moto server.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from toolkit.config import GPU, NEURON, VARIANT_NAMES, HybridConfig
from toolkit.errors import AwsError, UserError

Source = Literal["auto", "registry", "config"]
DEFAULT_POLL_SECONDS = 15.0
DEFAULT_TIMEOUT_SECONDS = 3600.0
STEADY = ("InService", "Failed", "OutOfService")
ROLLBACK_FAILED = "UpdateRollbackFailed"  # a mix of old and new configs: never leaves by itself
NAME_LIMIT = 63  # SageMaker model / endpoint-config names
# CreateEndpoint right after CreateEndpointConfig can fail with a ValidationException while the
# new config propagates (CreateEndpoint docs): describe it first, then retry a bounded number of times.
CREATE_ATTEMPTS = 5
CREATE_BACKOFF_SECONDS = 2.0
# Families with local NVMe instance storage: CreateEndpointConfig rejects KmsKeyId (and VolumeSizeInGB).
NVME_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "p5e", "trn1", "trn1n", "trn2",
                           "c5d", "m5d", "r5d"})
LOCAL_SERVE_HINT = (
    "plain moto lacks ml.inf2/ml.g5 in its instance-type enum; run `hybrid local serve` "
    "(moto with the toolkit's compatibility layer) and point AWS_ENDPOINT_URL at it"
)


def short_hash(data: Any, length: int = 10) -> str:
    """A stable short digest of JSON-able content (sorted keys)."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def content_name(prefix: str, content: Any) -> str:
    digest = short_hash(content)
    return f"{prefix[: NAME_LIMIT - len(digest) - 1].rstrip('-')}-{digest}"


@dataclass
class VariantModel:
    """Where one variant's model comes from."""

    variant: str
    model_package_arn: str | None = None
    image: str | None = None
    artifact: str | None = None
    environment: dict[str, str] = field(default_factory=dict)

    def container(self) -> dict[str, Any]:
        if self.model_package_arn:
            container: dict[str, Any] = {"ModelPackageName": self.model_package_arn}
        else:
            container = {"Image": self.image, "ModelDataUrl": self.artifact}
        if self.environment:
            container["Environment"] = dict(self.environment)
        return container


@dataclass
class DeployResult:
    endpoint_name: str
    endpoint_config_name: str
    action: Literal["created", "updated", "unchanged", "planned"]
    source: str
    models: dict[str, str]
    status: str
    live: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> weight/count after deploy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error_code(error: Exception) -> str:
    return getattr(error, "response", {}).get("Error", {}).get("Code", "")


def _describe_endpoint(client: Any, name: str) -> dict[str, Any] | None:
    try:
        return client.describe_endpoint(EndpointName=name)
    except Exception as error:
        message = str(error)
        if _error_code(error) in ("ValidationException", "ResourceNotFound") and (
            "Could not find" in message or "not found" in message.lower() or "does not exist" in message
        ):
            return None
        raise


def _exists(call: Callable[[], Any]) -> bool:
    try:
        call()
    except Exception as error:
        if _error_code(error) in ("ValidationException", "ResourceNotFound"):
            return False
        raise
    return True


def instance_family(instance_type: str) -> str:
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 else instance_type


def has_instance_storage(instance_type: str) -> bool:
    return instance_family(instance_type) in NVME_FAMILIES


def config_models(config: HybridConfig, compiled: Any | None = None) -> dict[str, VariantModel]:
    """Each variant's model as the config describes it (artifact + image, or a package ARN).

    `compiled` (a toolkit.compile.CompileResult from a Neo job) replaces the neuron variant's
    artifact with the compiled one and its image with the job's `InferenceImage`: the compiled
    NEFFs need the runtime Neo compiled them for, not the configured Hugging Face image.
    """
    from toolkit.compile import container_plan, inference_image
    from toolkit.images import resolve_image

    plan = container_plan(config) if config.compile.backend == "container" else None
    out: dict[str, VariantModel] = {}
    for name in VARIANT_NAMES:
        variant = config.variant(name)
        env = dict(variant.model.environment)
        if name == NEURON and plan is not None:
            env = {**plan.environment, **env}  # explicit model.environment wins
        if variant.model.model_package_arn:
            out[name] = VariantModel(name, model_package_arn=variant.model.model_package_arn, environment=env)
        else:
            image = resolve_image(variant, config.region, where=f"variants.{name}.model")
            artifact = variant.model.artifact
            if name == NEURON and compiled is not None and compiled.artifact:
                artifact = compiled.artifact
                image = inference_image(compiled) or image
            out[name] = VariantModel(name, image=image, artifact=artifact, environment=env)
    return out


def check_packages(models: Mapping[str, VariantModel], sagemaker_client: Any) -> None:
    """DescribeModelPackage each package ARN: a wrong one is a UserError before anything is created."""
    for name, model in models.items():
        if not model.model_package_arn:
            continue
        try:
            package = sagemaker_client.describe_model_package(ModelPackageName=model.model_package_arn)
        except Exception as error:
            code = _error_code(error)
            if code in ("ValidationException", "ResourceNotFound"):
                raise UserError(
                    f"variants.{name}: model package {model.model_package_arn} does not exist in this "
                    f"account and region (fix the ARN, or run `hybrid register`)"
                ) from None
            raise AwsError(f"DescribeModelPackage {model.model_package_arn}: {error}") from None
        status = package.get("ModelApprovalStatus")
        if status == "Rejected":
            raise UserError(f"variants.{name}: model package {model.model_package_arn} is Rejected: deploy another one")


def check_artifacts(models: Mapping[str, VariantModel], s3_client: Any) -> None:
    """HeadObject each variant's `model.artifact`; a missing one is a UserError naming variant and URI.

    Package-ARN variants are skipped: the registry owns their artifacts.
    """
    from toolkit.compile import split_s3

    for name, model in models.items():
        if model.model_package_arn or not model.artifact:
            continue
        uri = model.artifact
        bucket, key = split_s3(uri)
        try:
            s3_client.head_object(Bucket=bucket, Key=key)
        except Exception as error:
            code = _error_code(error)
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                raise UserError(
                    f"variants.{name}.model.artifact {uri} does not exist (upload it or fix the path)"
                ) from None
            if code in ("403", "AccessDenied", "Forbidden"):
                raise AwsError(
                    f"HeadObject {uri} (variants.{name}.model.artifact): access denied; "
                    f"the deploying credentials need s3:GetObject on it"
                ) from None
            raise AwsError(f"HeadObject {uri} (variants.{name}.model.artifact): {error}") from None


def choose_models(
    config: HybridConfig, sagemaker_client: Any, source: Source, packages: Mapping[str, str] | None,
    compiled: Any | None = None,
) -> tuple[str, dict[str, VariantModel]]:
    if packages:
        missing = [v for v in VARIANT_NAMES if v not in packages]
        if missing:
            raise UserError(f"deploy: packages must name both variants, missing {', '.join(missing)}")
        return "registry", {v: VariantModel(v, model_package_arn=packages[v]) for v in VARIANT_NAMES}
    if source in ("auto", "registry"):
        from toolkit.registry import approved_pair, newest_pending_pair

        pair = approved_pair(config, sagemaker_client=sagemaker_client)
        if source == "auto":
            # Never skip a release awaiting approval in silence (for an older approved pair or the
            # config's artifacts): the pipeline that registered it meant it to be reviewed.
            pending = newest_pending_pair(config, sagemaker_client=sagemaker_client)
            if pending is not None and (pair is None or pending.version > pair.version):
                waiting = ", ".join(f"{v} {s}" for v, s in pending.status.items())
                raise UserError(
                    f"deploy --source auto: the newest pair {pending.pair} in model package group "
                    f"{pending.group} is not approved ({waiting}); run `hybrid register --approve` to deploy "
                    f"it, or pass --source config to deploy the config's artifacts"
                )
        if pair is not None:
            return "registry", {v: VariantModel(v, model_package_arn=pair.packages[v]) for v in VARIANT_NAMES}
        if source == "registry":
            raise UserError(
                f"deploy --source registry: no approved neuron+gpu pair in model package group {config.name!r}; "
                f"run `hybrid register --approve` first"
            )
    return "config", config_models(config, compiled)


def model_request(config: HybridConfig, model: VariantModel) -> dict[str, Any]:
    """The CreateModel request for one variant (name derived from its content)."""
    assert config.execution_role_arn is not None
    body: dict[str, Any] = {"ExecutionRoleArn": config.execution_role_arn, "Containers": [model.container()]}
    if config.vpc is not None:
        body["VpcConfig"] = {
            "Subnets": list(config.vpc.subnet_ids),
            "SecurityGroupIds": list(config.vpc.security_group_ids),
        }
    return {"ModelName": content_name(f"{config.name}-{model.variant}", body), **body}


@dataclass(frozen=True)
class KmsUsage:
    """Where `kms_key_arn` goes in CreateEndpointConfig."""

    endpoint_config: bool  # the ML storage volumes (EBS); refused with local NVMe storage
    data_capture: bool  # the captured requests in S3; allowed with any instance type


def kms_usage(config: HybridConfig) -> KmsUsage:
    """Apply `kms_key_arn` where SageMaker takes it, or refuse it with the reason (UserError, exit 2).

    CreateEndpointConfig rejects `KmsKeyId` when a variant's instance type has local NVMe storage
    (g5, p*, trn1/trn1n/trn2): those volumes are encrypted by the instance's hardware module.
    The data-capture key is accepted whatever the instance types.
    """
    if not config.kms_key_arn:
        return KmsUsage(False, False)
    nvme = [f"{n} ({config.variant(n).instance_type})" for n in VARIANT_NAMES
            if has_instance_storage(config.variant(n).instance_type)]
    capture = bool(config.data_capture.enabled)
    if nvme and not capture:
        raise UserError(
            f"kms_key_arn cannot be applied: variants {', '.join(nvme)} have local NVMe storage, on which "
            f"CreateEndpointConfig rejects KmsKeyId (that storage is encrypted by the instance), and data "
            f"capture is off; remove kms_key_arn or enable data_capture to encrypt the captured data with it"
        )
    return KmsUsage(endpoint_config=not nvme, data_capture=capture)


def endpoint_config_request(config: HybridConfig, model_names: Mapping[str, str]) -> dict[str, Any]:
    """CreateEndpointConfig, named after a hash of its content."""
    plan = None
    if config.compile.backend == "container":
        from toolkit.compile import container_plan

        plan = container_plan(config)
    variants: list[dict[str, Any]] = []
    for name in VARIANT_NAMES:
        v = config.variant(name)
        pv: dict[str, Any] = {
            "VariantName": name,
            "ModelName": model_names[name],
            "InstanceType": v.instance_type,
            "InitialInstanceCount": v.initial_count,
            # percent maps onto SageMaker's relative weights directly (only used at creation)
            "InitialVariantWeight": float(getattr(config.initial_weights, name)),
        }
        startup = v.startup_timeout_seconds
        if name == NEURON and plan is not None:
            startup = max(startup or 0, plan.startup_timeout_seconds)
        if startup:
            pv["ContainerStartupHealthCheckTimeoutInSeconds"] = startup
        if v.download_timeout_seconds:
            pv["ModelDataDownloadTimeoutInSeconds"] = v.download_timeout_seconds
        if v.volume_size_gb and name == NEURON:
            pv["VolumeSizeInGB"] = v.volume_size_gb  # EBS-backed inf2 only; g5 has NVMe
        variants.append(pv)
    body: dict[str, Any] = {"ProductionVariants": variants}
    key = kms_usage(config)
    if key.endpoint_config:
        body["KmsKeyId"] = config.kms_key_arn
    if config.data_capture.enabled:
        body["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": config.data_capture.sampling_percent,
            "DestinationS3Uri": config.data_capture.s3_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
        if key.data_capture:
            body["DataCaptureConfig"]["KmsKeyId"] = config.kms_key_arn
    return {"EndpointConfigName": content_name(config.name, body), **body}


def _is_enum_rejection(error: Exception) -> bool:
    """botocore's or moto's "Member must satisfy enum value set" for an instance type."""
    message = str(error)
    return _error_code(error) == "ValidationException" and "enum value set" in message and "nstanceType" in message


def create_endpoint_config(sagemaker_client: Any, request: Mapping[str, Any], endpoint_name: str) -> None:
    try:
        sagemaker_client.create_endpoint_config(**request, Tags=[{"Key": "hybrid:endpoint", "Value": endpoint_name}])
    except Exception as error:
        if _is_enum_rejection(error):
            # Real SageMaker knows ml.inf2/ml.g5; only plain moto's stale enum answers this way.
            types = ", ".join(pv["InstanceType"] for pv in request["ProductionVariants"])
            raise AwsError(f"CreateEndpointConfig rejected the instance types ({types}): {LOCAL_SERVE_HINT}") from None
        raise


def create_endpoint(
    sagemaker_client: Any, endpoint_name: str, config_name: str, *, sleep: Callable[[float], None],
    attempts: int = CREATE_ATTEMPTS, backoff: float = CREATE_BACKOFF_SECONDS,
) -> None:
    """CreateEndpoint once the new config is visible, retrying its eventual-consistency ValidationException."""
    for attempt in range(attempts):
        if _exists(lambda: sagemaker_client.describe_endpoint_config(EndpointConfigName=config_name)):
            try:
                sagemaker_client.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
                return
            except Exception as error:
                if _error_code(error) != "ValidationException" or "already exist" in str(error):
                    raise
                last = str(error)
        else:
            last = f"endpoint config {config_name} not visible yet"
        if attempt + 1 < attempts:
            sleep(backoff * 2**attempt)
    raise AwsError(f"CreateEndpoint {endpoint_name} with {config_name} failed {attempts} times: {last}")


def _live_variants(description: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        pv["VariantName"]: {
            "weight": pv.get("CurrentWeight"),
            "instance_count": pv.get("CurrentInstanceCount"),
        }
        for pv in description.get("ProductionVariants", [])
    }


def rollback_failed_error(endpoint_name: str, description: Mapping[str, Any]) -> AwsError:
    """`UpdateRollbackFailed` never settles by itself: stop polling and say what to do."""
    return AwsError(
        f"endpoint {endpoint_name} is UpdateRollbackFailed ({description.get('FailureReason', 'no reason given')}): "
        f"it serves a mix of the old and new configs and will not recover by itself; deploy a known-good "
        f"config again (`hybrid deploy`, which calls UpdateEndpoint) or delete the endpoint"
    )


def wait_in_service(
    sagemaker_client: Any,
    endpoint_name: str,
    *,
    poll: float = DEFAULT_POLL_SECONDS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Poll DescribeEndpoint until it leaves Creating/Updating; return the last description."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    start = clock()
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=console, transient=True, disable=not show_progress,
    ) as progress:
        task = progress.add_task(f"endpoint {endpoint_name}: waiting", total=None)
        while True:
            description = sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
            status = description["EndpointStatus"]
            progress.update(task, description=f"endpoint {endpoint_name}: {status}")
            if status in STEADY:
                return description
            if status == ROLLBACK_FAILED:
                raise rollback_failed_error(endpoint_name, description)
            if clock() - start >= timeout:
                raise AwsError(f"endpoint {endpoint_name} still {status} after {timeout:.0f}s; check the SageMaker console")
            sleep(poll)


def _compiled_neuron(config: HybridConfig, s3_client: Any | None) -> Any | None:
    """The cached Neo result for the current inputs (its artifact and InferenceImage), if any."""
    if config.compile.backend != "neo" or s3_client is None or config.variants.neuron.model.model_package_arn:
        return None
    from toolkit.compile import lookup

    try:
        return lookup(config, s3_client=s3_client)
    except UserError:
        return None  # no source artifact to key the cache on: nothing compiled for this config


SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _resource_id(endpoint_name: str, variant: str) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant}"


@dataclass
class ScalingRegistration:
    """A variant's scalable target and policies, as read before deregistering them."""

    variant: str
    target: dict[str, Any]  # RegisterScalableTarget arguments
    policies: list[dict[str, Any]]  # PutScalingPolicy arguments


def changed_instance_types(sagemaker_client: Any, current: Mapping[str, Any], ec_request: Mapping[str, Any]) -> list[str]:
    """Variants whose instance type differs between the live endpoint config and the new one."""
    live = sagemaker_client.describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
    before = {pv["VariantName"]: pv.get("InstanceType") for pv in live.get("ProductionVariants", [])}
    return [pv["VariantName"] for pv in ec_request["ProductionVariants"]
            if pv["VariantName"] in before and before[pv["VariantName"]] != pv["InstanceType"]]


def scalable_target(autoscaling_client: Any, endpoint_name: str, variant: str) -> dict[str, Any] | None:
    targets = autoscaling_client.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[_resource_id(endpoint_name, variant)],
        ScalableDimension=SCALABLE_DIMENSION,
    ).get("ScalableTargets", [])
    return targets[0] if targets else None


def suspend_autoscaling(autoscaling_client: Any, endpoint_name: str, variant: str) -> ScalingRegistration:
    """Read the variant's scalable target and policies, then deregister it (which drops the policies)."""
    resource = _resource_id(endpoint_name, variant)
    target = scalable_target(autoscaling_client, endpoint_name, variant)
    assert target is not None
    registration: dict[str, Any] = {
        "ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": target["MinCapacity"], "MaxCapacity": target["MaxCapacity"],
    }
    role = target.get("RoleARN", "")
    if role and "aws-service-role" not in role:  # the service-linked role is the default anyway
        registration["RoleARN"] = role
    if target.get("SuspendedState"):
        registration["SuspendedState"] = target["SuspendedState"]
    policies: list[dict[str, Any]] = []
    for policy in autoscaling_client.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION,
    ).get("ScalingPolicies", []):
        put = {key: policy[key] for key in ("PolicyName", "PolicyType") if key in policy}
        for key in ("TargetTrackingScalingPolicyConfiguration", "StepScalingPolicyConfiguration"):
            if key in policy:
                put[key] = policy[key]
        policies.append({"ServiceNamespace": "sagemaker", "ResourceId": resource,
                         "ScalableDimension": SCALABLE_DIMENSION, **put})
    autoscaling_client.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=SCALABLE_DIMENSION
    )
    return ScalingRegistration(variant, registration, policies)


def restore_autoscaling(autoscaling_client: Any, registration: ScalingRegistration) -> None:
    """Register the scalable target again with the same capacities, then put its policies back."""
    try:
        autoscaling_client.register_scalable_target(**registration.target)
        for policy in registration.policies:
            autoscaling_client.put_scaling_policy(**policy)
    except Exception as error:
        raise AwsError(
            f"re-registering autoscaling for variant {registration.variant} "
            f"(min {registration.target['MinCapacity']}, max {registration.target['MaxCapacity']}, "
            f"{len(registration.policies)} policies) failed: {error}; register it again by hand or redeploy the stack"
        ) from None


def deploy_endpoint(
    config: HybridConfig,
    *,
    sagemaker_client: Any,
    s3_client: Any | None = None,
    verify_artifacts: bool = True,
    wait: bool = True,
    poll: float = DEFAULT_POLL_SECONDS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    source: Source = "auto",
    packages: Mapping[str, str] | None = None,
    dry_run: bool = False,
    show_progress: bool = True,
    autoscaling_client: Any | None = None,
    before_neuron_update: Callable[[], Any] | None = None,
) -> DeployResult:
    """Create or update the endpoint `config.name`; see the module docstring.

    `s3_client` checks the config artifacts exist before anything is created; callers that cannot
    reach S3 must say so with `verify_artifacts=False` (no silent skip). `autoscaling_client`
    (Application Auto Scaling) lets an update change an autoscaled variant's instance type.
    `before_neuron_update` runs before an UpdateEndpoint that changes the neuron model (the CLI
    passes toolkit/model_update.py's prepare: neuron to the first canary step, gpu sized for the rest).
    """
    if not config.execution_role_arn:
        raise UserError("execution_role_arn is not set in hybrid.yaml: deploy needs the IAM role SageMaker runs the models with")
    compiled = _compiled_neuron(config, s3_client) if source != "registry" and not packages else None
    source_used, models = choose_models(config, sagemaker_client, source, packages, compiled)
    check_packages(models, sagemaker_client)
    if verify_artifacts:
        if s3_client is None and any(m.artifact and not m.model_package_arn for m in models.values()):
            raise TypeError("deploy_endpoint: pass s3_client to check the model artifacts, or verify_artifacts=False")
        if s3_client is not None:
            check_artifacts(models, s3_client)
    model_requests = {name: model_request(config, models[name]) for name in VARIANT_NAMES}
    model_names = {name: req["ModelName"] for name, req in model_requests.items()}
    ec_request = endpoint_config_request(config, model_names)
    ec_name = ec_request["EndpointConfigName"]
    endpoint_name = config.name

    current = _describe_endpoint(sagemaker_client, endpoint_name)

    def unchanged(description: Mapping[str, Any] | None) -> bool:
        return (description is not None and description.get("EndpointConfigName") == ec_name
                and description["EndpointStatus"] == "InService")

    if unchanged(current):
        assert current is not None
        return DeployResult(endpoint_name, ec_name, "unchanged", source_used, model_names, "InService",
                            _live_variants(current))
    if dry_run:
        status = current["EndpointStatus"] if current else "absent"
        return DeployResult(endpoint_name, ec_name, "planned", source_used, model_names, status)
    if current is not None and current["EndpointStatus"] in ("Creating", "Updating", "SystemUpdating", "RollingBack"):
        if not wait:
            raise AwsError(f"endpoint {endpoint_name} is {current['EndpointStatus']}: retry when it is InService")
        # one update at a time: a router weight change or an earlier deploy must settle first
        current = wait_in_service(sagemaker_client, endpoint_name, poll=poll, timeout=timeout, sleep=sleep,
                                  clock=clock, show_progress=show_progress)
        if unchanged(current):
            return DeployResult(endpoint_name, ec_name, "unchanged", source_used, model_names, "InService",
                                _live_variants(current))
    if current is not None and current["EndpointStatus"] == "Failed":
        raise AwsError(
            f"endpoint {endpoint_name} is Failed ({current.get('FailureReason', 'no reason given')}); "
            f"delete it (aws sagemaker delete-endpoint --endpoint-name {endpoint_name}) and deploy again"
        )
    retype: list[str] = []  # autoscaled variants whose instance type changes
    if current is not None and autoscaling_client is not None:
        retype = [v for v in changed_instance_types(sagemaker_client, current, ec_request)
                  if scalable_target(autoscaling_client, endpoint_name, v) is not None]
        if retype and not wait:
            raise UserError(
                f"deploy --no-wait: the instance type of autoscaled variant(s) {', '.join(retype)} changes, which "
                f"needs their scalable targets deregistered until the update ends; deploy with --wait"
            )

    for name in VARIANT_NAMES:
        req = model_requests[name]
        if not _exists(lambda req=req: sagemaker_client.describe_model(ModelName=req["ModelName"])):
            sagemaker_client.create_model(**req, Tags=[{"Key": "hybrid:variant", "Value": name}])
    if not _exists(lambda: sagemaker_client.describe_endpoint_config(EndpointConfigName=ec_name)):
        create_endpoint_config(sagemaker_client, ec_request, endpoint_name)

    if current is None:
        create_endpoint(sagemaker_client, endpoint_name, ec_name, sleep=sleep)
        action: Literal["created", "updated"] = "created"
    else:
        # SageMaker refuses an instance-type change on an autoscaled variant: deregister its
        # scalable target (and with it its policies) first, register it again after the update.
        if before_neuron_update is not None and _neuron_model_changes(sagemaker_client, current, model_names):
            # issue 17: RetainAllVariantProperties keeps neuron's weight; a new model must start at the first step.
            before_neuron_update()
        saved = [suspend_autoscaling(autoscaling_client, endpoint_name, v) for v in retype]
        try:
            # Retain live weights (router) and instance counts (autoscaling) across the config swap.
            sagemaker_client.update_endpoint(
                EndpointName=endpoint_name, EndpointConfigName=ec_name, RetainAllVariantProperties=True
            )
            action = "updated"
            if not wait:
                return DeployResult(endpoint_name, ec_name, action, source_used, model_names, "Updating")
            final = wait_in_service(sagemaker_client, endpoint_name, poll=poll, timeout=timeout, sleep=sleep,
                                    clock=clock, show_progress=show_progress)
        finally:
            # Also after a failed or rolled-back update: the variant must not stay without autoscaling.
            for registration in saved:
                restore_autoscaling(autoscaling_client, registration)
        return _finish(endpoint_name, ec_name, action, source_used, model_names, final)

    if not wait:
        return DeployResult(endpoint_name, ec_name, action, source_used, model_names, "Creating")
    final = wait_in_service(sagemaker_client, endpoint_name, poll=poll, timeout=timeout, sleep=sleep, clock=clock,
                            show_progress=show_progress)
    return _finish(endpoint_name, ec_name, action, source_used, model_names, final)


def _neuron_model_changes(sagemaker_client: Any, current: Mapping[str, Any], model_names: Mapping[str, str]) -> bool:
    """Does the update give the neuron variant another model (models are content-named) than it runs now?"""
    live = sagemaker_client.describe_endpoint_config(EndpointConfigName=current["EndpointConfigName"])
    running = {v["VariantName"]: v.get("ModelName") for v in live.get("ProductionVariants", [])}
    return running.get(NEURON) != model_names.get(NEURON)


def _finish(endpoint_name: str, ec_name: str, action: Literal["created", "updated"], source_used: str,
            model_names: dict[str, str], final: Mapping[str, Any]) -> DeployResult:
    status = final["EndpointStatus"]
    if status != "InService":
        raise AwsError(f"endpoint {endpoint_name} is {status}: {final.get('FailureReason', 'no reason given')}")
    if final.get("EndpointConfigName") != ec_name:
        # An update that fails rolls back to the previous config and stays InService.
        raise AwsError(
            f"endpoint {endpoint_name} update to {ec_name} rolled back: {final.get('FailureReason', 'no reason given')}"
        )
    return DeployResult(endpoint_name, ec_name, action, source_used, model_names, status, _live_variants(final))


__all__ = [
    "GPU",
    "NEURON",
    "DeployResult",
    "VariantModel",
    "check_artifacts",
    "check_packages",
    "config_models",
    "deploy_endpoint",
    "endpoint_config_request",
    "kms_usage",
    "model_request",
    "wait_in_service",
]
