"""The one config file (`hybrid.yaml`): pydantic v2 models shared by the CDK app and the CLI.

Everything the toolkit does is driven from here; nothing else keeps settings. Weights are
percentages of weighted traffic (0..100, summing to 100) because that is how users talk
about a canary; SageMaker's `DesiredWeight` is relative, so any non-negative pair is valid
there and percentages map onto it directly.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from routing.core.variants import GPU, NEURON  # one definition, shared with the pure core
from toolkit.errors import UserError

VARIANT_NAMES = (NEURON, GPU)

# Instance families SageMaker real-time hosting offers, by kind of accelerator.
NEURON_FAMILIES = {"inf2", "trn1", "trn1n", "trn2"}
GPU_FAMILIES = {"g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5", "p5e"}
CPU_FAMILIES = {"c5", "c6i", "c7i", "m5", "m6i", "m7i", "r5", "r6i", "t2", "t3"}
KNOWN_FAMILIES = NEURON_FAMILIES | GPU_FAMILIES | CPU_FAMILIES
INSTANCE_TYPE_RE = re.compile(r"^ml\.([a-z0-9]+)\.([a-z0-9]+)$")
SIZES = {
    "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge",
    "24xlarge", "32xlarge", "48xlarge",
}
AWS_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")
S3_OBJECT_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.+")
ARN_RE = re.compile(r"^arn:(?P<partition>aws[a-z\-]*):(?P<service>[a-z0-9\-]+):(?P<region>[a-z0-9\-]*):(?P<account>\d{12})?:")


def instance_family(instance_type: str) -> str:
    match = INSTANCE_TYPE_RE.match(instance_type)
    return match.group(1) if match else ""


def is_neuron_type(instance_type: str) -> bool:
    return instance_family(instance_type) in NEURON_FAMILIES


class Strict(BaseModel):
    """Unknown keys are errors (with a did-you-mean), never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class ImageSettings(Strict):
    """What the SageMaker Python SDK needs to resolve a container image URI."""

    framework: str = Field("huggingface", description="SDK framework key, e.g. huggingface, pytorch.")
    framework_version: str | None = Field(None, description="e.g. 2.1.2 for PyTorch.")
    transformers_version: str | None = Field(None, description="For Hugging Face images.")
    py_version: str | None = Field(None, description="e.g. py310.")


class ModelSpec(Strict):
    """Where a variant's model comes from: an artifact plus an image, or a registered package."""

    artifact: str | None = Field(
        None, description="S3 URI of model.tar.gz (for neuron: the compiled artifact or the source to compile)."
    )
    model_package_arn: str | None = Field(None, description="A Model Registry package to deploy instead.")
    image: str | None = Field(None, description="Explicit container image URI; wins over image_settings.")
    image_settings: ImageSettings | None = None
    environment: dict[str, str] = Field(default_factory=dict, description="Container environment variables.")

    @field_validator("artifact")
    @classmethod
    def _artifact_is_s3(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.+", value):
            raise ValueError(f"artifact must be an s3://bucket/key URI, got {value!r}")
        return value

    @field_validator("model_package_arn")
    @classmethod
    def _package_is_arn(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:\d{12}:model-package/", value):
            raise ValueError(f"model_package_arn must be a SageMaker model-package ARN, got {value!r}")
        return value

    @model_validator(mode="after")
    def _has_a_source(self) -> ModelSpec:
        if not self.artifact and not self.model_package_arn:
            raise ValueError("missing artifact: set model.artifact (s3://...) or model.model_package_arn")
        if self.artifact and self.model_package_arn:
            raise ValueError("set only one of model.artifact and model.model_package_arn")
        return self


class VariantConfig(Strict):
    """One production variant: hardware, scaling, model."""

    instance_type: str = Field(description="e.g. ml.inf2.xlarge or ml.g5.xlarge.")
    initial_count: int = Field(1, ge=1, description="Instances at deployment.")
    min_count: int = Field(
        1, ge=1, description="Autoscaling floor (>= 1: real-time variants cannot scale to 0). For gpu: the warm fallback capacity."
    )
    max_count: int = Field(4, ge=1, description="Autoscaling ceiling.")
    target_invocations_per_instance: int = Field(
        600, gt=0, description="Autoscaling target: SageMakerVariantInvocationsPerInstance (per minute)."
    )
    capacity_rps_per_instance: float = Field(
        20.0, gt=0, description="Requests/s one instance sustains within the SLO (hybrid loadtest --write-capacity)."
    )
    volume_size_gb: int | None = Field(None, ge=1, le=512, description="EBS volume (only for types with EBS, e.g. inf2).")
    startup_timeout_seconds: int | None = Field(None, ge=60, le=3600, description="Container start-up health check.")
    download_timeout_seconds: int | None = Field(None, ge=60, le=3600, description="Model data download.")
    model: ModelSpec

    @field_validator("instance_type")
    @classmethod
    def _known_instance_type(cls, value: str) -> str:
        match = INSTANCE_TYPE_RE.match(value)
        if not match:
            raise ValueError(f"instance_type must look like ml.<family>.<size>, got {value!r}")
        family, size = match.groups()
        if family not in KNOWN_FAMILIES:
            near = difflib.get_close_matches(family, sorted(KNOWN_FAMILIES), n=1)
            hint = f" (did you mean ml.{near[0]}.{size}?)" if near else ""
            raise ValueError(f"unknown instance family {family!r} in {value!r}{hint}")
        if size not in SIZES:
            raise ValueError(f"unknown instance size {size!r} in {value!r}")
        return value

    @model_validator(mode="after")
    def _counts_ordered(self) -> VariantConfig:
        if self.min_count > self.max_count:
            raise ValueError(f"min_count ({self.min_count}) is above max_count ({self.max_count})")
        if not self.min_count <= self.initial_count <= self.max_count:
            raise ValueError(
                f"initial_count ({self.initial_count}) must lie within min_count..max_count "
                f"({self.min_count}..{self.max_count})"
            )
        return self


class Variants(Strict):
    """The two production variants: `neuron` (Inferentia2/Trainium) and `gpu` (NVIDIA)."""

    neuron: VariantConfig
    gpu: VariantConfig

    @model_validator(mode="after")
    def _hardware_matches_role(self) -> Variants:
        if not is_neuron_type(self.neuron.instance_type):
            raise ValueError(
                f"variants.neuron.instance_type: the neuron variant must run on Neuron hardware (ml.inf2/ml.trn1/ml.trn2), "
                f"got {self.neuron.instance_type}"
            )
        if instance_family(self.gpu.instance_type) not in GPU_FAMILIES:
            raise ValueError(
                f"variants.gpu.instance_type: the gpu variant must run on a GPU instance (e.g. ml.g5.xlarge), "
                f"got {self.gpu.instance_type}"
            )
        if self.gpu.min_count < 1:
            raise ValueError("variants.gpu.min_count must be >= 1: the GPU fallback must stay warm")
        return self

    def get(self, name: str) -> VariantConfig:
        return getattr(self, name)


Percent = Annotated[float, Field(ge=0, le=100)]


class Weights(Strict):
    """Share of weighted traffic per variant, in percent; the two sum to 100."""

    neuron: Percent = Field(0.0, description="Percent of weighted traffic on neuron.")
    gpu: Percent = Field(100.0, description="Percent of weighted traffic on gpu.")

    @model_validator(mode="after")
    def _sum_100(self) -> Weights:
        if abs(self.neuron + self.gpu - 100.0) > 1e-6:
            raise ValueError(f"weights must sum to 100, got neuron={self.neuron} + gpu={self.gpu}")
        return self


class Slo(Strict):
    """The service level the split must meet, judged per closed CloudWatch minute."""

    p99_latency_ms: float = Field(
        200.0, gt=0, description="p99 ModelLatency ceiling in milliseconds (1..60000: 60 s is the invocation limit)."
    )
    max_error_rate: float = Field(0.01, ge=0, lt=1, description="5XX / invocations ceiling (0.01 = 1%).")
    # 0.5 by default: inf2's single-request latency runs 10-20% above g5 and varies more with batch
    # position (published figures, shared/reference/aws-facts.md), so a healthy neuron's p99 sits
    # ~1.25-1.3x gpu's; 0.25 rolled back healthy models in the bench. The absolute SLO still binds.
    max_regression: float = Field(
        0.5, ge=0, le=10, description="Neuron p99 may exceed GPU p99 on the same minutes by at most this fraction."
    )

    @field_validator("p99_latency_ms")
    @classmethod
    def _p99_in_ms(cls, value: float) -> float:
        # Outside 1 ms..60 s the number is almost surely in the wrong unit: 0.15 meant 150 ms, and no
        # real-time invocation may take more than 60 s (InvokeEndpoint's limit), so gating there never fires.
        if 0 < value < 1:
            raise ValueError(f"{value:g} ms is under 1 ms: in seconds? the value is in milliseconds (write {value * 1000:g})")
        if value > 60_000:
            raise ValueError(
                f"{value:g} ms is over 60 s, longer than a real-time invocation may run: in ms? "
                "the value is in milliseconds (e.g. 200)"
            )
        return value


class Curve(Strict):
    """Generate canary steps instead of listing them."""

    kind: Literal["linear", "exponential"] = Field("exponential", description="Spacing of the steps.")
    start: Percent = Field(5.0, gt=0, description="Neuron share of the first step.")
    steps: int = Field(6, ge=1, le=50, description="Number of steps, the last one at the target share.")


class CanaryPlan(Strict):
    """How traffic moves from gpu to neuron."""

    steps: list[Percent] | None = Field(
        None, description="Neuron share after each step, strictly increasing, ending at the target share."
    )
    curve: Curve | None = None
    target_neuron_percent: Percent = Field(100.0, gt=0, description="Where the ramp ends.")
    min_bake_minutes: int = Field(2, ge=1, description="A step lasts at least this long...")
    max_bake_minutes: int = Field(30, ge=1, description="...and at most this long before it holds for a human.")
    min_sample: int = Field(300, ge=1, description="Neuron invocations needed in a step before any verdict.")
    migrate_even_if_costlier: bool = Field(False, description="Keep ramping although neuron costs more per 1K.")

    @model_validator(mode="after")
    def _steps_valid(self) -> CanaryPlan:
        if self.steps is not None and self.curve is not None:
            raise ValueError("set canary.steps or canary.curve, not both")
        if self.steps is not None:
            if not self.steps:
                raise ValueError("canary.steps must not be empty")
            if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
                raise ValueError(f"canary.steps must be strictly increasing, got {self.steps}")
            if self.steps[0] <= 0:
                raise ValueError("canary.steps must start above 0")
        if self.min_bake_minutes > self.max_bake_minutes:
            raise ValueError(
                f"canary.min_bake_minutes ({self.min_bake_minutes}) is above max_bake_minutes ({self.max_bake_minutes})"
            )
        return self

    def resolved_steps(self) -> list[float]:
        """The neuron share after each step, ending exactly at target_neuron_percent."""
        target = self.target_neuron_percent
        if self.steps is not None:
            steps = [s for s in self.steps if s < target]
            return [*steps, target]
        curve = self.curve or Curve()
        n = curve.steps
        start = min(curve.start, target)
        if n == 1 or start >= target:
            return [target]
        if curve.kind == "linear":
            raw = [start + (target - start) * i / (n - 1) for i in range(n)]
        else:
            ratio = (target / start) ** (1 / (n - 1))
            raw = [start * ratio**i for i in range(n)]
        out: list[float] = []
        for value in raw[:-1]:
            rounded = round(value, 1)
            if not out or rounded > out[-1]:
                out.append(rounded)
        return [*[v for v in out if v < target], target]


class Fallback(Strict):
    """What happens when neuron misbehaves: back to GPU in one tick, return slowly."""

    cooldown_minutes: int = Field(15, ge=1, description="Wait after a fallback before re-ramping.")
    cooldown_backoff: float = Field(2.0, ge=1, description="Each further fallback multiplies the cool-down.")
    max_cooldown_minutes: int = Field(240, ge=1, description="Cap on the backed-off cool-down.")
    max_fallbacks: int = Field(3, ge=1, description="After this many fallbacks the canary aborts for a human.")
    expected_invocations_for_silence: int = Field(
        50, ge=1, description="Neuron silent while at least this many requests were expected: a failure. Fewer: hold."
    )
    max_unknown_ticks: int = Field(3, ge=1, description="Ticks without metrics (AWS errors) before failing safe.")
    gpu_headroom: float = Field(1.2, ge=1, description="GPU capacity factor over the total traffic when taking it back.")
    min_dwell_minutes: int = Field(5, ge=0, description="Minimum time between two weight changes while holding.")


class Holding(Strict):
    """Steady state after the ramp: the cheapest split within the SLO, without flapping."""

    enabled: bool = Field(True, description="After the ramp, keep adjusting the split (otherwise freeze it).")
    step_back_percent: Percent = Field(25.0, gt=0, description="Share moved to gpu when neuron degrades.")
    return_percent: Percent = Field(10.0, gt=0, description="Share moved back to neuron per return step.")
    return_after_good_minutes: int = Field(15, ge=1, description="Clean minutes needed before a return step.")
    saturation_utilization: float = Field(
        0.85, gt=0, le=1, description="Neuron load / capacity above which share moves to gpu."
    )


class Vpc(Strict):
    subnet_ids: list[str] = Field(min_length=1, description="Private subnets for the model containers.")
    security_group_ids: list[str] = Field(min_length=1, description="Security groups for the model containers.")

    @field_validator("subnet_ids", "security_group_ids")
    @classmethod
    def _resource_ids(cls, value: list[str], info: Any) -> list[str]:
        prefix, what = ("subnet", "subnet ids") if info.field_name == "subnet_ids" else ("sg", "security group ids")
        bad = [v for v in value if not re.fullmatch(rf"{prefix}-[0-9a-f]{{8}}([0-9a-f]{{9}})?", v)]
        if bad:
            raise ValueError(f"not {what} ({prefix}- and 8 or 17 hex digits): {', '.join(bad)}")
        return value


class DataCapture(Strict):
    """SageMaker data capture of requests and responses."""

    enabled: bool = Field(False, description="Capture requests and responses to S3.")
    s3_uri: str | None = Field(None, description="s3://bucket/prefix for captured data.")
    sampling_percent: int = Field(10, ge=1, le=100, description="Share of requests captured.")

    @model_validator(mode="after")
    def _needs_uri(self) -> DataCapture:
        if self.enabled and not (self.s3_uri and self.s3_uri.startswith("s3://")):
            raise ValueError("data_capture.s3_uri (s3://...) is required when data_capture.enabled is true")
        return self


class Controller(Strict):
    """The in-account routing controller (scheduled Lambda + DynamoDB)."""

    enabled: bool = Field(False, description="Deploy the scheduled Lambda controller with the stack.")
    schedule_minutes: int = Field(1, ge=1, le=60, description="Minutes between two controller ticks.")
    notification_topic_arn: str | None = Field(
        None, description="SNS topic for fallback/promotion/abort notices (default: the stack creates one)."
    )
    table_name: str | None = Field(
        None,
        pattern=r"^[a-zA-Z0-9_.-]{3,255}$",
        description="DynamoDB table for controller state and decision records (default: <name>-routing); "
        "the CLI uses it when the controller is enabled.",
    )

    def table(self, endpoint: str) -> str:
        """The table name the stack creates and the CLI and Lambda use."""
        return self.table_name or f"{endpoint}-routing"


class CompileSettings(Strict):
    """How the neuron artifact is produced (hybrid compile)."""

    backend: Literal["neo", "container", "local"] = Field(
        "container", description="neo: SageMaker compilation job; container: the neuronx container compiles at start-up; local: torch_neuronx.trace."
    )
    source_artifact: str | None = Field(None, description="S3 URI of the uncompiled model.tar.gz.")
    output_s3_uri: str | None = Field(None, description="Where compiled artifacts go (s3://bucket/prefix).")
    framework: str = Field("PYTORCH", description="Neo InputConfig.Framework.")
    framework_version: str = Field("2.1", description="Neo InputConfig.FrameworkVersion.")
    input_shapes: dict[str, list[int]] = Field(
        default_factory=lambda: {"input_ids": [1, 128], "attention_mask": [1, 128]},
        description="Static shapes the compiled model accepts.",
    )
    batch_size: int = Field(1, ge=1, description="Static batch size of the compiled model.")
    sequence_length: int = Field(128, ge=1, description="Longest input the compiled model takes (client routes longer to gpu).")
    max_runtime_seconds: int = Field(3600, ge=60, le=86400, description="Compilation job time limit.")
    role_arn: str | None = Field(None, description="Execution role for Neo compilation jobs.")

    @field_validator("output_s3_uri")
    @classmethod
    def _output_is_s3(cls, value: str | None) -> str | None:
        if value is not None and not S3_URI_RE.match(value):
            raise ValueError(f"must be an s3://bucket/prefix URI, got {value!r}")
        return value

    @model_validator(mode="after")
    def _source_is_s3(self) -> CompileSettings:
        value = self.source_artifact
        if value is None or S3_OBJECT_RE.match(value):
            return self
        if self.backend == "local" and "://" not in value:
            return self  # torch_neuronx.trace on this machine reads a local model.tar.gz
        raise ValueError(
            f"compile.source_artifact: must be an s3://bucket/key URI for backend {self.backend} "
            f"(only backend local takes a local path), got {value!r}"
        )


class OnlineParity(Strict):
    """Online parity during the canary: the client mirrors some neuron answers to gpu and compares them."""

    mirror_fraction: float = Field(
        0.0, ge=0, le=0.5, description="Share of neuron-served requests HybridClient also sends to gpu to compare (0: off, no parity gate)."
    )
    min_sample: int = Field(200, ge=1, description="Comparisons a canary step needs before the parity gate passes.")
    max_per_second: float = Field(5.0, gt=0, description="Budget: at most this many mirrored requests per second per client.")
    max_in_flight: int = Field(4, ge=1, le=64, description="Mirrored requests in flight at once per client; more are dropped, never queued behind the caller.")


class Parity(Strict):
    """How `hybrid parity` compares neuron's outputs with gpu's for the same inputs (toolkit.parity)."""

    comparator: Literal["labels", "scores", "numbers", "text", "function"] = Field(
        "scores", description="labels: agreement/top-k; scores: max abs/rel diff + cosine; numbers: per-path tolerance; text: exact match; function: your own."
    )
    label_path: str = Field("label", description="labels: JSON path of the predicted label in an output.")
    top_k_path: str | None = Field(None, description="labels: JSON path of gpu's ranked labels (top-k agreement: neuron's label among them).")
    top_k: int = Field(1, ge=1, description="labels: neuron's label must be among gpu's first k.")
    scores_path: str | None = Field(None, description="scores: JSON path of the score/probability/embedding vector (default: the whole output).")
    max_abs_diff: float = Field(0.02, ge=0, description="scores: largest allowed |neuron - gpu| of any element.")
    max_rel_diff: float | None = Field(None, ge=0, description="scores: largest allowed |neuron - gpu| / |gpu| (unset: not checked).")
    min_cosine: float = Field(0.999, ge=-1, le=1, description="scores: smallest allowed cosine similarity.")
    paths: dict[str, float] = Field(default_factory=dict, description="numbers: JSON path -> absolute tolerance.")
    text_path: str | None = Field(None, description="text: JSON path of the text (default: the whole output).")
    function: str | None = Field(None, description="function: `package.module:callable(neuron, gpu)` returning bool or {ok, ...}.")
    min_agreement: float = Field(0.99, ge=0, le=1, description="Share of inputs whose outputs must agree; below it exit 1.")
    max_inputs: int = Field(1000, ge=1, description="At most this many inputs per run.")
    max_seconds: float = Field(600.0, gt=0, description="At most this long per run.")
    worst: int = Field(5, ge=0, description="Worst inputs reported with their diffs.")
    online: OnlineParity = Field(default_factory=OnlineParity, description="Online parity during the canary (HybridClient mirroring; a canary gate).")

    @model_validator(mode="after")
    def _comparator_settings(self) -> Parity:
        if self.comparator == "numbers" and not self.paths:
            raise ValueError("comparator numbers needs paths: {JSON path: tolerance}")
        if self.comparator == "function" and not (self.function and ":" in self.function):
            raise ValueError("comparator function needs function: package.module:callable")
        return self


class HybridConfig(Strict):
    """Root of hybrid.yaml."""

    name: str = Field(description="Endpoint name; also prefixes stack resources.")
    region: str = Field("us-east-1", description="AWS region of the endpoint; commands refuse a different one.")
    account: str | None = Field(None, description="Optional: refuse to act in any other account.")
    variants: Variants
    initial_weights: Weights = Field(default_factory=Weights)
    slo: Slo = Field(default_factory=Slo)
    canary: CanaryPlan = Field(default_factory=CanaryPlan)
    fallback: Fallback = Field(default_factory=Fallback)
    holding: Holding = Field(default_factory=Holding)
    prices: dict[str, float] = Field(default_factory=dict, description="$/hour overrides by instance type.")
    kms_key_arn: str | None = Field(
        None, description="KMS key for the neuron volume and data capture (never set on a config with g5: NVMe types reject it)."
    )
    vpc: Vpc | None = Field(None, description="Run the model containers in these subnets and security groups.")
    data_capture: DataCapture = Field(default_factory=DataCapture)
    controller: Controller = Field(default_factory=Controller)
    compile: CompileSettings = Field(default_factory=CompileSettings)
    parity: Parity = Field(default_factory=Parity)
    execution_role_arn: str | None = Field(
        None, description="IAM role SageMaker assumes to run the models (CreateModel); required by `hybrid deploy`."
    )
    state_dir: str = Field(".hybrid", description="Where the CLI keeps controller state and decision records.")

    @field_validator("name")
    @classmethod
    def _endpoint_name(cls, value: str) -> str:
        if not ENDPOINT_NAME_RE.match(value):
            raise ValueError("name must be 1-63 letters, digits or hyphens, starting with a letter or digit")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not AWS_REGION_RE.match(value):
            raise ValueError(f"region {value!r} is not an AWS region name such as us-east-1")
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{12}", value):
            raise ValueError("account must be a 12-digit AWS account id")
        return value

    @field_validator("execution_role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]{1,512}", value):
            raise ValueError(f"execution_role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got {value!r}")
        return value

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        for instance_type, price in value.items():
            if not INSTANCE_TYPE_RE.match(instance_type):
                raise ValueError(f"prices key {instance_type!r} is not an instance type like ml.g5.xlarge")
            if price <= 0:
                raise ValueError(f"prices[{instance_type}] must be > 0 $/hour, got {price}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> HybridConfig:
        problems: list[str] = []
        if self.canary.target_neuron_percent < self.initial_weights.neuron:
            problems.append(
                f"canary.target_neuron_percent: {self.canary.target_neuron_percent:g} is below "
                f"initial_weights.neuron ({self.initial_weights.neuron:g})"
            )
        for name in VARIANT_NAMES:
            arn = self.variant(name).model.model_package_arn
            if arn:
                problems.extend(self._arn_problems(f"variants.{name}.model.model_package_arn", arn))
        if problems:
            # one line per problem; the loader splits them and puts each at its key's line
            raise ValueError("\n".join(problems))
        return self

    def _arn_problems(self, path: str, arn: str) -> list[str]:
        """A package from another region or account cannot back this endpoint: CreateModel refuses it."""
        match = ARN_RE.match(arn)
        if match is None:
            return []
        out: list[str] = []
        if match["region"] != self.region:
            out.append(f"{path}: the package is in {match['region']}, the endpoint in {self.region} (region): "
                       f"register the model in {self.region} or fix region")
        if self.account and match["account"] != self.account:
            out.append(f"{path}: the package belongs to account {match['account']}, the config to {self.account} "
                       "(account): use a package of this account or fix account")
        return out

    def variant(self, name: str) -> VariantConfig:
        return self.variants.get(name)


# ----------------------------------------------------------------------------------------------
# Loading and error reporting: every problem at once, one line each, with its field path and the
# line of the key in the file (`hybrid.yaml:12: slo.p99_latency_ms: ...`), like a compiler.

Loc = tuple[str | int, ...]
_ABS_PATH_PREFIX = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_<>][a-z0-9_<>]*)+|[a-z_][a-z0-9_]*): (.+)$", re.S)
_TOKEN = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the config: the field path, what is wrong, and the line of its key (if known)."""

    path: str
    message: str
    line: int | None = None

    def text(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def located(self, source: str) -> str:
        return f"{source}:{self.line}: {self.text()}" if self.line else f"{source}: {self.text()}"

    def to_dict(self, source: str) -> dict[str, Any]:
        return {"file": source, "line": self.line, "path": self.path or None, "message": self.text(),
                "text": self.located(source)}


def _model_for_path(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Walk the model tree along an error location to find the model that owns the last key."""
    model: type[BaseModel] | None = HybridConfig
    for part in loc[:-1]:
        if model is None:
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _model_in(field.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _loc_of(path: str) -> Loc:
    return tuple(path.split("."))


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of the deepest key along `loc` that the file has (a missing key: its parent's line)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1 if lines else None  # a missing top-level key: the file as a whole


def _mentioned_line(loc: Loc, message: str, lines: dict[Loc, int]) -> int | None:
    """For a rule over several keys (min_count above max_count): the line of the first key it names."""
    for token in _TOKEN.findall(message):
        parts = tuple(token.split("."))
        for candidate in ((*loc, *parts), parts):
            if candidate in lines and candidate != loc:
                return lines[candidate]
    return None


def format_issues(error: ValidationError, lines: dict[Loc, int] | None = None) -> list[ConfigIssue]:
    """One issue per problem: path, message (with a did-you-mean for unknown keys) and line."""
    lines = lines or {}
    issues: list[ConfigIssue] = []
    for item in error.errors():
        loc: Loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind = item["type"]
        if kind == "extra_forbidden":
            owner = _model_for_path(loc)
            known = sorted(owner.model_fields) if owner else []
            near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else (f"; known keys: {', '.join(known)}" if known else "")
            issues.append(ConfigIssue(_path(loc), f"unknown key{hint}", _line_of(loc, lines) if lines else None))
            continue
        message = item["msg"].removeprefix("Value error, ")
        if kind == "missing":
            message = "required field is missing"
        # A model-level rule may name the field it is about (`compile.source_artifact: ...`), one per line.
        for part in message.split("\n"):
            where, text = loc, part
            match = _ABS_PATH_PREFIX.match(part)
            if match and match[1].split(".")[0] in HybridConfig.model_fields:
                where, text = _loc_of(match[1]), match[2]
            line = None
            if lines:
                on_a_section = where == loc and kind != "missing" and _model_for_path((*loc, "")) is not None
                line = (_mentioned_line(loc, text, lines) if on_a_section else None) or _line_of(where, lines)
            issues.append(ConfigIssue(_path(where), text, line))
    return issues


def format_errors(error: ValidationError) -> list[str]:
    """One line per problem: `path: message` (no file lines: see format_issues)."""
    return [issue.text() for issue in format_issues(error)]


class ConfigError(UserError):
    """The config file is unreadable or invalid; `issues` has one entry per problem."""

    def __init__(self, source: str, problems: list[str] | list[ConfigIssue]):
        self.source = source
        self.issues = [p if isinstance(p, ConfigIssue) else ConfigIssue("", p) for p in problems]
        super().__init__(f"{source}: " + "; ".join(self.problems))

    @property
    def problems(self) -> list[str]:
        """`path: message` per problem (without the file and line)."""
        return [issue.text() for issue in self.issues]

    def lines(self) -> list[str]:
        """`file:line: path: message` per problem, as the CLI prints them."""
        return [issue.located(self.source) for issue in self.issues]

    def to_dicts(self) -> list[dict[str, Any]]:
        return [issue.to_dict(self.source) for issue in self.issues]


def parse_config(data: Any, source: str = "config", lines: dict[Loc, int] | None = None) -> HybridConfig:
    """Validate settings already read; `lines` (key path -> line) puts each problem at its line."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must be a YAML mapping of settings (name, variants, ...)"])
    try:
        return HybridConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, format_issues(error, lines)) from None


def _scalar_key(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag}>"


def _key_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], duplicates: list[ConfigIssue]) -> None:
    """Record the line of every key and list item; a key given twice in one mapping is a problem.

    PyYAML keeps the last of two equal keys silently: `p99_latency_ms: 150` then `: 900` gated at 900.
    """
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: overriding merged keys is what merges are for
            key = _scalar_key(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append(ConfigIssue(
                    _path((*loc, key)), f"duplicate key: set at line {seen[key]} and again at line {line}; keep one",
                    line))
                continue
            seen[key] = line
            lines[(*loc, key)] = line
            _key_lines(value_node, (*loc, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            _key_lines(item, (*loc, index), lines, duplicates)


def read_yaml(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML like yaml.safe_load, plus each key's line; ConfigError on bad YAML or duplicate keys."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        duplicates: list[ConfigIssue] = []
        if node is not None:
            _key_lines(node, (), lines, duplicates)
        if duplicates:
            raise ConfigError(source, duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if mark is None:
            raise ConfigError(source, [f"malformed YAML: {problem}"]) from None
        issue = ConfigIssue("", f"malformed YAML at column {mark.column + 1}: {problem}", mark.line + 1)
        raise ConfigError(source, [issue]) from None
    finally:
        loader.dispose()
    return data, lines


def load_config(path: str | Path) -> HybridConfig:
    """Read and validate hybrid.yaml; raise ConfigError listing every problem at its line."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise ConfigError(source, ["file not found (pass --config/-c with the path to your hybrid.yaml)"])
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(source, [f"cannot read the file ({getattr(error, 'strerror', None) or error})"]) from None
    data, lines = read_yaml(text, source)
    return parse_config(data, source, lines)


def config_schema() -> dict[str, Any]:
    schema = HybridConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hybrid.yaml"
    return schema
