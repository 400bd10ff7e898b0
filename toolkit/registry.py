"""`hybrid register`: the neuron and gpu variants in the SageMaker Model Registry, idempotently.

Layout: one model package group per model (`config.name`), and per release TWO versioned
packages in it, one per variant, linked by `CustomerMetadataProperties`:
`hybrid:variant`, `hybrid:pair` (the same id on both), `hybrid:source-digest`,
`hybrid:cache-key`, `hybrid:shapes`, `hybrid:compiler`, `hybrid:backend`, `hybrid:fingerprint`.

Why two packages rather than one package with `AdditionalInferenceSpecifications`:
- the config, the CDK app and `CreateModel` address a variant's model by ONE package ARN
  (`variants.<v>.model.model_package_arn`, `Containers=[{ModelPackageName}]`); one shared package
  would need `InferenceSpecificationName` threaded through every consumer and an ARN that means
  different models depending on a second field;
- approval is per package: the neuron build can be rejected (it failed to compile cleanly, or
  regressed in the canary) while the gpu package of the same release stays approved;
- each package's `SupportedRealtimeInferenceInstanceTypes` and image describe exactly one hardware.
The price is that "the pair" is a convention, not an API object: `approved_pair` only returns
two packages that share `hybrid:pair` and are BOTH approved, newest first.

Idempotency: `hybrid:fingerprint` hashes everything a package is made of (image, artifact,
environment, instance type, compile inputs). Registering again finds the package by fingerprint
and creates nothing; `--approve` on an existing pending package only updates its status.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from toolkit.config import GPU, NEURON, VARIANT_NAMES, HybridConfig
from toolkit.errors import UserError

APPROVED = "Approved"
PENDING = "PendingManualApproval"
META = "hybrid:"
CONTENT_TYPES = ["application/json"]


@dataclass
class PackagePlan:
    variant: str
    fingerprint: str
    request: dict[str, Any]


@dataclass
class RegisterResult:
    group: str
    pair: str
    packages: dict[str, str]
    created: list[str] = field(default_factory=list)  # variants registered now
    approved: list[str] = field(default_factory=list)  # variants whose status changed to Approved now
    status: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ApprovedPair:
    group: str
    version: int  # the lower of the two package versions: how new the pair is
    pair: str
    packages: dict[str, str]
    versions: dict[str, int]
    metadata: dict[str, dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(data: Any, length: int = 64) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _meta_value(text: str) -> str:
    """Registry metadata values allow letters, digits, spaces and _.:/=+-@ (max 256)."""
    allowed = set("_.:/=+-@ ")
    return "".join(ch if ch.isalnum() or ch in allowed else "_" for ch in text)[:256]


def plan_packages(config: HybridConfig, compiled: Any) -> tuple[str, dict[str, PackagePlan]]:
    """The CreateModelPackage requests for both variants and the pair id linking them.

    `compiled` is a toolkit.compile.CompileResult for the neuron variant.
    """
    from toolkit.compile import inference_image, shapes_text
    from toolkit.images import resolve_image

    models: dict[str, dict[str, Any]] = {}
    for name in VARIANT_NAMES:
        variant = config.variant(name)
        if variant.model.model_package_arn:
            raise UserError(
                f"variants.{name}.model uses model_package_arn: `hybrid register` registers artifacts; "
                f"set variants.{name}.model.artifact instead"
            )
        env = dict(variant.model.environment)
        artifact = variant.model.artifact
        image = resolve_image(variant, config.region, where=f"variants.{name}.model")
        if name == NEURON:
            env = {**compiled.environment, **env}
            artifact = compiled.artifact or artifact
            # A Neo artifact runs on the image Neo compiled it for (DescribeCompilationJob
            # InferenceImage), as the SageMaker SDK's Model.compile() does.
            image = inference_image(compiled) or image
        models[name] = {
            "Image": image,
            "ModelDataUrl": artifact,
            "Environment": env,
            "InstanceType": variant.instance_type,
        }
    common = {
        "source-digest": compiled.source_digest,
        "cache-key": compiled.cache_key,
        "shapes": shapes_text(compiled.input_shapes),
        "compiler": compiled.versions.get("compiler", "unknown"),
        "backend": compiled.backend,
    }
    contents = {name: {"model": models[name], "common": common, "variant": name} for name in VARIANT_NAMES}
    pair = _digest(contents, 16)
    # A package belongs to exactly one pair: a change to either variant re-registers both, so
    # `hybrid:pair` on an existing package never points at a partner it was not built with.
    fingerprints = {name: _digest({**contents[name], "pair": pair}, 32) for name in VARIANT_NAMES}
    plans: dict[str, PackagePlan] = {}
    for name in VARIANT_NAMES:
        model = models[name]
        container: dict[str, Any] = {"Image": model["Image"], "ModelDataUrl": model["ModelDataUrl"]}
        if model["Environment"]:
            container["Environment"] = model["Environment"]
        metadata = {f"{META}{k}": _meta_value(v) for k, v in common.items()}
        metadata |= {f"{META}variant": name, f"{META}pair": pair, f"{META}fingerprint": fingerprints[name]}
        request = {
            "ModelPackageGroupName": config.name,
            "ModelPackageDescription": f"{config.name} {name} variant ({model['InstanceType']}), pair {pair}",
            "InferenceSpecification": {
                "Containers": [container],
                "SupportedContentTypes": CONTENT_TYPES,
                "SupportedResponseMIMETypes": CONTENT_TYPES,
                "SupportedRealtimeInferenceInstanceTypes": [model["InstanceType"]],
            },
            "CustomerMetadataProperties": metadata,
        }
        plans[name] = PackagePlan(name, fingerprints[name], request)
    return pair, plans


def _ensure_group(client: Any, config: HybridConfig) -> None:
    try:
        client.describe_model_package_group(ModelPackageGroupName=config.name)
    except Exception as error:
        if getattr(error, "response", {}).get("Error", {}).get("Code") != "ValidationException":
            raise
        client.create_model_package_group(
            ModelPackageGroupName=config.name,
            ModelPackageGroupDescription=f"{config.name}: neuron (Inferentia2) and gpu variants, linked by hybrid:pair",
        )


def _group_exists(client: Any, group: str) -> bool:
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
    except Exception as error:
        if getattr(error, "response", {}).get("Error", {}).get("Code") == "ValidationException":
            return False
        raise
    return True


def list_packages(client: Any, group: str, status: str | None = None) -> list[dict[str, Any]]:
    """Full descriptions of the group's versioned packages (the summary has no metadata)."""
    kwargs: dict[str, Any] = {"ModelPackageGroupName": group}
    if status:
        kwargs["ModelApprovalStatus"] = status
    arns: list[str] = []
    while True:
        page = client.list_model_packages(**kwargs)
        arns += [s["ModelPackageArn"] for s in page.get("ModelPackageSummaryList", [])]
        token = page.get("NextToken")
        if not token:
            break
        kwargs["NextToken"] = token
    return [client.describe_model_package(ModelPackageName=arn) for arn in arns]


def register_models(
    config: HybridConfig,
    *,
    sagemaker_client: Any,
    compiled: Any,
    approve: bool = False,
    dry_run: bool = False,
) -> RegisterResult:
    """Register both variants unless packages with the same fingerprints exist; approve on request."""
    pair, plans = plan_packages(config, compiled)
    result = RegisterResult(group=config.name, pair=pair, packages={})
    existing: dict[str, dict[str, Any]] = {}
    if _group_exists(sagemaker_client, config.name):
        for package in list_packages(sagemaker_client, config.name):
            fingerprint = (package.get("CustomerMetadataProperties") or {}).get(f"{META}fingerprint")
            for name, p in plans.items():
                if fingerprint == p.fingerprint and name not in existing:
                    existing[name] = package
    if dry_run:
        for name in VARIANT_NAMES:
            found = existing.get(name)
            result.packages[name] = found["ModelPackageArn"] if found else "(new)"
            result.status[name] = found["ModelApprovalStatus"] if found else (APPROVED if approve else PENDING)
        return result
    _ensure_group(sagemaker_client, config)
    for name in VARIANT_NAMES:
        p = plans[name]
        found = existing.get(name)
        if found is None:
            arn = sagemaker_client.create_model_package(
                **p.request, ModelApprovalStatus=APPROVED if approve else PENDING
            )["ModelPackageArn"]
            result.created.append(name)
            result.status[name] = APPROVED if approve else PENDING
        else:
            arn = found["ModelPackageArn"]
            result.status[name] = found.get("ModelApprovalStatus", PENDING)
            if approve and result.status[name] != APPROVED:
                sagemaker_client.update_model_package(
                    ModelPackageArn=arn,
                    ModelApprovalStatus=APPROVED,
                    ApprovalDescription="hybrid register --approve",
                    # re-sent so a partial update can never drop the pair's link
                    CustomerMetadataProperties=p.request["CustomerMetadataProperties"],
                )
                result.approved.append(name)
                result.status[name] = APPROVED
        result.packages[name] = arn
    return result


def approved_pair(config: HybridConfig, *, sagemaker_client: Any) -> ApprovedPair | None:
    """The newest pair whose neuron AND gpu packages are both Approved, else None."""
    if not _group_exists(sagemaker_client, config.name):
        return None
    by_pair: dict[str, dict[str, dict[str, Any]]] = {}
    for package in list_packages(sagemaker_client, config.name, status=APPROVED):
        meta = package.get("CustomerMetadataProperties") or {}
        pair, variant = meta.get(f"{META}pair"), meta.get(f"{META}variant")
        if pair and variant in VARIANT_NAMES:
            slot = by_pair.setdefault(pair, {})
            # the newest version wins if a variant was registered twice in one pair
            if variant not in slot or package.get("ModelPackageVersion", 0) > slot[variant].get("ModelPackageVersion", 0):
                slot[variant] = package
    complete = [(pair, slot) for pair, slot in by_pair.items() if all(v in slot for v in VARIANT_NAMES)]
    if not complete:
        return None
    pair, slot = max(complete, key=lambda item: min(p.get("ModelPackageVersion", 0) for p in item[1].values()))
    return ApprovedPair(
        group=config.name,
        version=_pair_version(slot),
        pair=pair,
        packages={v: slot[v]["ModelPackageArn"] for v in VARIANT_NAMES},
        versions={v: int(slot[v].get("ModelPackageVersion", 0)) for v in VARIANT_NAMES},
        metadata={v: dict(slot[v].get("CustomerMetadataProperties") or {}) for v in VARIANT_NAMES},
    )


@dataclass
class PendingPair:
    """A complete pair (both variants registered, none rejected) with a package awaiting approval."""

    group: str
    pair: str
    version: int  # the lower of the two package versions: how new the pair is
    status: dict[str, str]


def _pair_version(packages: dict[str, dict[str, Any]]) -> int:
    return min(int(p.get("ModelPackageVersion", 0)) for p in packages.values())


def newest_pending_pair(config: HybridConfig, *, sagemaker_client: Any) -> PendingPair | None:
    """The newest pair that is registered but not (fully) approved, or None.

    `deploy --source auto` uses it so that a release still waiting for `register --approve`
    is never skipped in silence for an older approved pair or the config's artifacts.
    """
    if not _group_exists(sagemaker_client, config.name):
        return None
    by_pair: dict[str, dict[str, dict[str, Any]]] = {}
    for package in list_packages(sagemaker_client, config.name):
        meta = package.get("CustomerMetadataProperties") or {}
        pair, variant = meta.get(f"{META}pair"), meta.get(f"{META}variant")
        if pair and variant in VARIANT_NAMES:
            slot = by_pair.setdefault(pair, {})
            if variant not in slot or package.get("ModelPackageVersion", 0) > slot[variant].get("ModelPackageVersion", 0):
                slot[variant] = package
    pending = [
        (pair, slot) for pair, slot in by_pair.items()
        if all(v in slot for v in VARIANT_NAMES)
        and all(p.get("ModelApprovalStatus") != "Rejected" for p in slot.values())
        and any(p.get("ModelApprovalStatus") == PENDING for p in slot.values())
    ]
    if not pending:
        return None
    pair, slot = max(pending, key=lambda item: _pair_version(item[1]))
    return PendingPair(group=config.name, pair=pair, version=_pair_version(slot),
                       status={v: str(slot[v].get("ModelApprovalStatus")) for v in VARIANT_NAMES})


def package_count(client: Any, group: str) -> int:
    return len(list_packages(client, group)) if _group_exists(client, group) else 0


__all__ = ["GPU", "NEURON", "ApprovedPair", "PendingPair", "RegisterResult", "approved_pair", "newest_pending_pair", "plan_packages", "register_models"]
