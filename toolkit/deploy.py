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
   creation, or an update that rolled back to the previous config, is an AwsError (exit 3).

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
NAME_LIMIT = 63  # SageMaker model / endpoint-config names


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


def config_models(config: HybridConfig) -> dict[str, VariantModel]:
    """Each variant's model as the config describes it (artifact + image, or a package ARN)."""
    from toolkit.compile import container_plan
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
            out[name] = VariantModel(name, image=image, artifact=variant.model.artifact, environment=env)
    return out


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
    config: HybridConfig, sagemaker_client: Any, source: Source, packages: Mapping[str, str] | None
) -> tuple[str, dict[str, VariantModel]]:
    if packages:
        missing = [v for v in VARIANT_NAMES if v not in packages]
        if missing:
            raise UserError(f"deploy: packages must name both variants, missing {', '.join(missing)}")
        return "registry", {v: VariantModel(v, model_package_arn=packages[v]) for v in VARIANT_NAMES}
    if source in ("auto", "registry"):
        from toolkit.registry import approved_pair

        pair = approved_pair(config, sagemaker_client=sagemaker_client)
        if pair is not None:
            return "registry", {v: VariantModel(v, model_package_arn=pair.packages[v]) for v in VARIANT_NAMES}
        if source == "registry":
            raise UserError(
                f"deploy --source registry: no approved neuron+gpu pair in model package group {config.name!r}; "
                f"run `hybrid register --approve` first"
            )
    return "config", config_models(config)


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
    # No KmsKeyId: CreateEndpointConfig rejects it when a variant (g5) has local NVMe storage.
    if config.data_capture.enabled:
        body["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": config.data_capture.sampling_percent,
            "DestinationS3Uri": config.data_capture.s3_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        }
    return {"EndpointConfigName": content_name(config.name, body), **body}


def _live_variants(description: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        pv["VariantName"]: {
            "weight": pv.get("CurrentWeight"),
            "instance_count": pv.get("CurrentInstanceCount"),
        }
        for pv in description.get("ProductionVariants", [])
    }


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
            if clock() - start >= timeout:
                raise AwsError(f"endpoint {endpoint_name} still {status} after {timeout:.0f}s; check the SageMaker console")
            sleep(poll)


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
) -> DeployResult:
    """Create or update the endpoint `config.name`; see the module docstring.

    `s3_client` checks the config artifacts exist before anything is created; callers that cannot
    reach S3 must say so with `verify_artifacts=False` (no silent skip).
    """
    if not config.execution_role_arn:
        raise UserError("execution_role_arn is not set in hybrid.yaml: deploy needs the IAM role SageMaker runs the models with")
    source_used, models = choose_models(config, sagemaker_client, source, packages)
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

    for name in VARIANT_NAMES:
        req = model_requests[name]
        if not _exists(lambda req=req: sagemaker_client.describe_model(ModelName=req["ModelName"])):
            sagemaker_client.create_model(**req, Tags=[{"Key": "hybrid:variant", "Value": name}])
    if not _exists(lambda: sagemaker_client.describe_endpoint_config(EndpointConfigName=ec_name)):
        sagemaker_client.create_endpoint_config(**ec_request, Tags=[{"Key": "hybrid:endpoint", "Value": endpoint_name}])

    if current is None:
        sagemaker_client.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=ec_name)
        action: Literal["created", "updated"] = "created"
    else:
        # Retain live weights (router) and instance counts (autoscaling) across the config swap.
        sagemaker_client.update_endpoint(
            EndpointName=endpoint_name, EndpointConfigName=ec_name, RetainAllVariantProperties=True
        )
        action = "updated"

    if not wait:
        return DeployResult(endpoint_name, ec_name, action, source_used, model_names,
                            "Creating" if action == "created" else "Updating")
    final = wait_in_service(sagemaker_client, endpoint_name, poll=poll, timeout=timeout, sleep=sleep, clock=clock,
                            show_progress=show_progress)
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
    "config_models",
    "deploy_endpoint",
    "endpoint_config_request",
    "model_request",
    "wait_in_service",
]
