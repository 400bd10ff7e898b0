"""`hybrid compile`: produce the neuron artifact, once per distinct input (content-addressed cache).

Backends (`compile.backend` in hybrid.yaml):
- `neo`: a SageMaker Neo `CreateCompilationJob` with `TargetDevice: ml_inf2` (ml_trn1 for
  Trainium), polled to completion. The botocore model offers ml_inf2 compilation only in
  us-east-2 and ml_trn1 only in us-east-1, and a model's `ModelDataUrl` must be in the
  endpoint's region: a config in any other region is refused before any call (exit 2), naming
  the two ways out (compile.backend: container, or compile with a config in the offered region
  and copy the artifact to a bucket in the endpoint's region as variants.neuron.model.artifact).
- `container`: no ahead-of-time compile. The Hugging Face neuronx container compiles at start-up
  from `HF_OPTIMUM_BATCH_SIZE` / `HF_OPTIMUM_SEQUENCE_LENGTH` (TGI-neuronx reads `HF_NUM_CORES`,
  `HF_BATCH_SIZE`, `HF_SEQUENCE_LENGTH`); deploy sets these on the neuron variant and raises its
  start-up health-check timeout, because compiling at start-up takes minutes.
- `local`: `torch_neuronx.trace` on an inf2/trn1 build host (torch-neuronx is not on PyPI).

Cache: key = sha256 of (source digest, backend, target, input shapes, framework and compiler
versions). The source digest is the S3 ETag of the source artifact (or the sha256 of a local
file). A manifest (`manifest.json`: key, versions, shapes, source digest, created_at, artifact
URI) is written beside the artifact under `<compile.output_s3_uri>/<key[:16]>/` and mirrored in
`<state_dir>/compile-cache/`. A hit reuses the artifact and makes no compile call. Compiled
NEFFs are tied to the compiler version, hence its place in the key.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from toolkit.config import NEURON, HybridConfig, instance_family
from toolkit.errors import EXIT_ROLLED_BACK, AwsError, HybridError, MissingDependencyError, UserError

# botocore's sagemaker model, OutputConfig.TargetDevice: "Currently ml_trn1 is available only in
# US East (N. Virginia) Region, and ml_inf2 is available only in US East (Ohio) Region."
NEO_REGIONS = {"ml_inf2": "us-east-2", "ml_trn1": "us-east-1"}
NEO_REGION = NEO_REGIONS["ml_inf2"]
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")
DEFAULT_POLL_SECONDS = 30.0
CONTAINER_STARTUP_TIMEOUT = 1800  # compiling at start-up takes minutes; SageMaker allows up to 3600
MANIFEST = "manifest.json"

# NeuronCores per instance (HF_NUM_CORES defaults to all of them).
NEURON_CORES = {
    "ml.inf2.xlarge": 2, "ml.inf2.8xlarge": 2, "ml.inf2.24xlarge": 12, "ml.inf2.48xlarge": 24,
    "ml.trn1.2xlarge": 2, "ml.trn1.32xlarge": 32, "ml.trn1n.32xlarge": 32,
}
NEO_TARGETS = {"inf2": "ml_inf2", "trn1": "ml_trn1", "trn1n": "ml_trn1"}


class CompileFailed(HybridError):
    """SageMaker reported the compilation job FAILED/STOPPED (exit 1: the input did not compile)."""

    exit_code = EXIT_ROLLED_BACK


@dataclass
class ContainerPlan:
    """What the neuron variant needs when the container compiles at start-up."""

    environment: dict[str, str]
    startup_timeout_seconds: int


@dataclass
class CompileResult:
    backend: str
    cache_key: str
    source_artifact: str
    source_digest: str
    target: str
    input_shapes: dict[str, list[int]]
    versions: dict[str, str]
    artifact: str | None  # S3 URI the neuron variant loads (None: nothing compiled ahead of time)
    cache_hit: bool = False
    compiled: bool = False
    job_name: str | None = None
    manifest_uri: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    created_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def manifest(self) -> dict[str, Any]:
        return {
            "key": self.cache_key,
            "backend": self.backend,
            "target": self.target,
            "versions": self.versions,
            "input_shapes": self.input_shapes,
            "source_artifact": self.source_artifact,
            "source_digest": self.source_digest,
            "artifact": self.artifact,
            "job_name": self.job_name,
            "created_at": self.created_at,
        }


# ----------------------------------------------------------------------------------------------
# helpers


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise UserError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def shapes_text(shapes: dict[str, list[int]]) -> str:
    """`input_ids=1x128 attention_mask=1x128`: readable, and valid as registry metadata."""
    return " ".join(f"{name}={'x'.join(str(d) for d in dims)}" for name, dims in shapes.items())


def neuron_target(config: HybridConfig) -> str:
    instance_type = config.variants.neuron.instance_type
    target = NEO_TARGETS.get(instance_family(instance_type))
    return target or f"ml_{instance_family(instance_type)}"


def source_artifact(config: HybridConfig) -> str:
    source = config.compile.source_artifact or config.variants.neuron.model.artifact
    if not source:
        raise UserError(
            "compile.source_artifact is not set (and variants.neuron.model uses a model package): "
            "set compile.source_artifact to the uncompiled model.tar.gz"
        )
    return source


def source_digest(source: str, s3_client: Any | None) -> str:
    """S3 ETag of the source (no download), or sha256 of a local file."""
    if source.startswith("s3://"):
        if s3_client is None:
            raise UserError(f"source artifact {source} is on S3: an S3 client is needed to read its ETag")
        bucket, key = split_s3(source)
        try:
            head = s3_client.head_object(Bucket=bucket, Key=key)
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                raise UserError(f"source artifact {source} does not exist: upload it or fix compile.source_artifact") from None
            raise
        return "etag:" + head["ETag"].strip('"')
    path = Path(source)
    if not path.is_file():
        raise UserError(f"source artifact {source} is not a file: set compile.source_artifact to s3://... or a local path")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def compiler_versions(config: HybridConfig) -> dict[str, str]:
    """What pins the compiler for this backend (part of the cache key)."""
    c = config.compile
    versions = {"framework": c.framework, "framework_version": c.framework_version}
    if c.backend == "neo":
        # Neo picks its compiler from the framework version; the job's InferenceImage is
        # recorded in the manifest after compiling.
        versions["compiler"] = "sagemaker-neo"
    elif c.backend == "container":
        from toolkit.images import resolve_image

        versions["compiler"] = resolve_image(config.variants.neuron, config.region, where="variants.neuron.model")
    else:
        versions["compiler"] = "neuronx-cc " + _dist_version("neuronx-cc")
        versions["torch_neuronx"] = _dist_version("torch-neuronx")
    return versions


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def cache_key(digest: str, backend: str, target: str, shapes: dict[str, list[int]], versions: dict[str, str]) -> str:
    blob = json.dumps(
        {"source": digest, "backend": backend, "target": target, "shapes": shapes, "versions": versions},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def container_plan(config: HybridConfig) -> ContainerPlan:
    """Environment and start-up timeout for the neuronx container compiling at start-up."""
    c = config.compile
    neuron = config.variants.neuron
    cores = NEURON_CORES.get(neuron.instance_type, 2)
    env = {
        # optimum-neuron inference toolkit (encoder models)
        "HF_OPTIMUM_BATCH_SIZE": str(c.batch_size),
        "HF_OPTIMUM_SEQUENCE_LENGTH": str(c.sequence_length),
        # TGI-neuronx (decoder models) reads these instead
        "HF_NUM_CORES": str(cores),
        "HF_BATCH_SIZE": str(c.batch_size),
        "HF_SEQUENCE_LENGTH": str(c.sequence_length),
    }
    startup = max(neuron.startup_timeout_seconds or 0, CONTAINER_STARTUP_TIMEOUT)
    return ContainerPlan(environment=env, startup_timeout_seconds=startup)


# ----------------------------------------------------------------------------------------------
# the cache


def _prefix(config: HybridConfig, key: str) -> str | None:
    out = config.compile.output_s3_uri
    return f"{out.rstrip('/')}/{key[:16]}" if out else None


def _local_manifest(config: HybridConfig, key: str) -> Path:
    return Path(config.state_dir) / "compile-cache" / f"{key}.json"


def read_manifest(config: HybridConfig, key: str, s3_client: Any | None) -> dict[str, Any] | None:
    prefix = _prefix(config, key)
    if prefix and s3_client is not None:
        bucket, obj = split_s3(f"{prefix}/{MANIFEST}")
        try:
            body = s3_client.get_object(Bucket=bucket, Key=obj)["Body"].read()
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code not in ("NoSuchKey", "404", "NotFound"):
                raise
        else:
            return json.loads(body)
    path = _local_manifest(config, key)
    if path.is_file():
        return json.loads(path.read_text())
    return None


def write_manifest(config: HybridConfig, result: CompileResult, s3_client: Any | None) -> None:
    body = json.dumps(result.manifest(), indent=2, sort_keys=True)
    prefix = _prefix(config, result.cache_key)
    if prefix and s3_client is not None:
        bucket, obj = split_s3(f"{prefix}/{MANIFEST}")
        s3_client.put_object(Bucket=bucket, Key=obj, Body=body.encode(), ContentType="application/json")
        result.manifest_uri = f"{prefix}/{MANIFEST}"
    path = _local_manifest(config, result.cache_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body + "\n")
    if result.manifest_uri is None:
        result.manifest_uri = str(path)


def plan(config: HybridConfig, *, s3_client: Any | None) -> CompileResult:
    """The cache key and everything it is made of, without compiling anything."""
    c = config.compile
    source = source_artifact(config)
    digest = source_digest(source, s3_client)
    target = neuron_target(config)
    versions = compiler_versions(config)
    key = cache_key(digest, c.backend, target, dict(c.input_shapes), versions)
    return CompileResult(
        backend=c.backend, cache_key=key, source_artifact=source, source_digest=digest, target=target,
        input_shapes=dict(c.input_shapes), versions=versions, artifact=None,
    )


def lookup(config: HybridConfig, *, s3_client: Any | None, planned: CompileResult | None = None) -> CompileResult | None:
    """The compiled result for the current inputs if it exists (never compiles)."""
    result = copy.copy(planned) if planned is not None else plan(config, s3_client=s3_client)
    if config.compile.backend == "container":
        return _container_result(config, result)
    manifest = read_manifest(config, result.cache_key, s3_client)
    if manifest is None or manifest.get("key") != result.cache_key or not manifest.get("artifact"):
        return None
    result.artifact = manifest["artifact"]
    result.versions = {**result.versions, **manifest.get("versions", {})}
    result.job_name = manifest.get("job_name")
    result.created_at = manifest.get("created_at")
    result.cache_hit = True
    prefix = _prefix(config, result.cache_key)
    result.manifest_uri = f"{prefix}/{MANIFEST}" if prefix and s3_client is not None else str(_local_manifest(config, result.cache_key))
    return result


def _container_result(config: HybridConfig, result: CompileResult) -> CompileResult:
    result.artifact = result.source_artifact if result.source_artifact.startswith("s3://") else None
    result.environment = container_plan(config).environment
    return result


# ----------------------------------------------------------------------------------------------
# compile


def compile_model(
    config: HybridConfig,
    *,
    sagemaker_client: Any | None = None,
    s3_client: Any | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll: float = DEFAULT_POLL_SECONDS,
    warn: Callable[[str], None] | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> CompileResult:
    """Compile (or reuse) the neuron artifact for `config`; see the module docstring."""
    backend = config.compile.backend
    warnings: list[str] = []

    def _warn(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    if backend == "local":
        _require_torch_neuronx()
    if backend == "neo":
        check_neo_region(config, neuron_target(config))  # before any call
    result = plan(config, s3_client=s3_client)
    if backend == "container":
        result = _container_result(config, result)
        result.warnings = warnings
        return result
    if not force:
        hit = lookup(config, s3_client=s3_client, planned=result)
        if hit is not None:
            hit.warnings = warnings
            return hit
    if backend == "neo":
        result = _compile_neo(config, result, sagemaker_client, sleep=sleep, clock=clock, poll=poll,
                              show_progress=show_progress)
    else:
        result = _compile_local(config, result, s3_client)
    result.compiled = True
    result.created_at = datetime.now(UTC).isoformat(timespec="seconds")
    write_manifest(config, result, s3_client)
    result.warnings = warnings
    return result


def check_neo_region(config: HybridConfig, target: str) -> None:
    """Refuse a Neo compile where its target is not offered (one line naming the fixes, exit 2)."""
    offered = NEO_REGIONS.get(target)
    if offered is None or config.region == offered:
        return
    raise UserError(
        f"compile.backend neo: SageMaker Neo compiles {target} only in {offered}, not in {config.region}; "
        f"use compile.backend: container (the neuronx container compiles at start-up), or compile with a "
        f"copy of the config whose region is {offered} and copy the artifact to a {config.region} bucket "
        f"as variants.neuron.model.artifact"
    )


def neo_request(config: HybridConfig, result: CompileResult, job_name: str) -> dict[str, Any]:
    c = config.compile
    role = c.role_arn or config.execution_role_arn
    if not role:
        raise UserError("compile.role_arn (or execution_role_arn) is not set: Neo needs a role to read and write S3")
    prefix = _prefix(config, result.cache_key)
    if not prefix:
        raise UserError("compile.output_s3_uri is not set: Neo needs an s3://bucket/prefix for the compiled artifact")
    if not result.source_artifact.startswith("s3://"):
        raise UserError(f"compile.source_artifact must be an s3:// URI for Neo, got {result.source_artifact!r}")
    if instance_family(config.variants.neuron.instance_type) not in NEO_TARGETS:
        raise UserError(
            f"Neo has no target for {config.variants.neuron.instance_type}: use compile.backend: container"
        )
    return {
        "CompilationJobName": job_name,
        "RoleArn": role,
        "InputConfig": {
            "S3Uri": result.source_artifact,
            "DataInputConfig": json.dumps(result.input_shapes, separators=(",", ":")),
            "Framework": c.framework,
            "FrameworkVersion": c.framework_version,
        },
        "OutputConfig": {"S3OutputLocation": f"{prefix}/", "TargetDevice": result.target},
        "StoppingCondition": {"MaxRuntimeInSeconds": c.max_runtime_seconds},
        "Tags": [{"Key": "hybrid:cache-key", "Value": result.cache_key}],
    }


def _compile_neo(
    config: HybridConfig,
    result: CompileResult,
    client: Any,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    poll: float,
    show_progress: bool,
) -> CompileResult:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if client is None:
        raise UserError("compile.backend neo needs a SageMaker client")
    base = f"{config.name[:30].rstrip('-')}-neo-{result.cache_key[:10]}"
    job_name = f"{base}-{uuid.uuid4().hex[:6]}"  # job names are unique forever; retries need a new one
    client.create_compilation_job(**neo_request(config, result, job_name))
    result.job_name = job_name
    limit = float(config.compile.max_runtime_seconds)
    start = clock()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=not show_progress,
    ) as progress:
        task = progress.add_task(f"Neo {job_name}", total=limit)
        while True:
            job = client.describe_compilation_job(CompilationJobName=job_name)
            status = job["CompilationJobStatus"]
            progress.update(task, completed=min(clock() - start, limit), description=f"Neo {job_name}: {status}")
            if status in TERMINAL:
                break
            if clock() - start > limit + 600:
                raise AwsError(f"compilation job {job_name} still {status} past its {limit:.0f}s limit")
            sleep(poll)
    if status != "COMPLETED":
        # Verbatim: the reason is SageMaker's diagnosis of the model (unsupported op, bad shape).
        raise CompileFailed(f"compilation job {job_name} {status}: {job.get('FailureReason', 'no FailureReason given')}")
    result.artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    if job.get("InferenceImage"):
        result.versions = {**result.versions, "inference_image": job["InferenceImage"]}
    return result


def inference_image(result: CompileResult) -> str | None:
    """The serving image a Neo job named for its artifact (None for the other backends)."""
    if result.backend != "neo":
        return None
    return result.versions.get("inference_image") or None


def _require_torch_neuronx() -> Any:
    try:
        return importlib.import_module("torch_neuronx")
    except ImportError:
        raise MissingDependencyError(
            "compile.backend local needs torch-neuronx, which installs only on inf2/trn1 build hosts "
            "(not from PyPI): set compile.backend: neo (SageMaker Neo compiles) or "
            "compile.backend: container (the neuronx container compiles at start-up)"
        ) from None


def _compile_local(config: HybridConfig, result: CompileResult, s3_client: Any | None) -> CompileResult:
    """torch_neuronx.trace on this host; runs only where torch-neuronx is installed (not in CI here)."""
    torch_neuronx = _require_torch_neuronx()
    torch = importlib.import_module("torch")
    workdir = Path(tempfile.mkdtemp(prefix="hybrid-compile-"))
    source = result.source_artifact
    if source.startswith("s3://"):
        if s3_client is None:
            raise UserError("an S3 client is needed to download the source artifact")
        bucket, key = split_s3(source)
        local_source = workdir / "source.tar.gz"
        s3_client.download_file(bucket, key, str(local_source))
    else:
        local_source = Path(source)
    if local_source.name.endswith(".tar.gz"):
        with tarfile.open(local_source) as archive:
            archive.extractall(workdir / "src", filter="data")
        candidates = sorted((workdir / "src").rglob("*.pt"))
        if not candidates:
            raise UserError(f"{source}: no TorchScript .pt file inside the archive to trace")
        local_source = candidates[0]
    model = torch.jit.load(str(local_source)).eval()
    example = tuple(torch.zeros(shape, dtype=torch.long) for shape in result.input_shapes.values())
    traced = torch_neuronx.trace(model, example)
    neff = workdir / "model.neuron"
    torch.jit.save(traced, str(neff))
    archive_path = workdir / "model.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(neff, arcname="model.neuron")
    prefix = _prefix(config, result.cache_key)
    if prefix and s3_client is not None:
        bucket, key = split_s3(f"{prefix}/model.tar.gz")
        s3_client.upload_file(str(archive_path), bucket, key)
        result.artifact = f"{prefix}/model.tar.gz"
    else:
        cached = _local_manifest(config, result.cache_key).with_suffix(".tar.gz")
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(archive_path.read_bytes())
        result.artifact = str(cached)
    return result


__all__ = [
    "NEURON",
    "CompileFailed",
    "CompileResult",
    "ContainerPlan",
    "cache_key",
    "compile_model",
    "container_plan",
    "inference_image",
    "lookup",
    "neo_request",
    "plan",
    "shapes_text",
]
