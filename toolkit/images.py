"""Container image URIs for a variant: explicit config, then the SageMaker SDK, then a table.

Order, for each variant:
1. `model.image` from hybrid.yaml always wins (private images, anything else);
2. the SageMaker SDK (`sagemaker.core.image_uris.retrieve`, from the `sagemaker-core` package the
   default set-up installs): it resolves from JSON files shipped inside the package, so it needs
   no network and knows every framework version and region AWS publishes. For Neuron hardware we
   pass `inference_tool="neuronx"` because the SDK otherwise maps every inf*/trn* type to the Inf1
   image;
3. only when the SDK is not installed (or has no image for the settings): a small offline table
   of AWS Deep Learning Containers, keyed by `image_settings` and accelerator, in the DLC
   registry of the region.

No boto3 and no import of the SDK at module load: the SDK import takes about 2 s, so it happens
on the first image asked for. `hybrid images -c hybrid.yaml` prints each choice and why.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

from toolkit.config import HybridConfig, ImageSettings, VariantConfig, is_neuron_type
from toolkit.errors import UserError

# AWS Deep Learning Containers registry accounts. Source: the SageMaker SDK's own
# image_uri_config/huggingface.json and huggingface-neuronx.json (sagemaker-core 2.27.0);
# tests/toolkit/test_images.py checks every region against the installed SDK's files.
DLC_DEFAULT_ACCOUNT = "763104351884"
DLC_DEFAULT_REGIONS = frozenset({
    "ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "ca-central-1",
    "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3", "sa-east-1", "us-east-1", "us-east-2",
    "us-west-1", "us-west-2",
})
DLC_ACCOUNT_EXCEPTIONS: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-7": "590183813437",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "mx-central-1": "637423239942",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
    "us-iso-east-1": "886529160074",
    "us-isob-east-1": "094389454867",
}
# ECR's DNS suffix outside the commercial partition.
ECR_DOMAINS = {"cn-": "amazonaws.com.cn", "us-iso-": "c2s.ic.gov", "us-isob-": "sc2s.sgov.gov"}

ImageSource = Literal["config", "package", "sdk", "table"]


@dataclass(frozen=True)
class ImageChoice:
    """Which image a variant pulls, where the answer came from, and why that source."""

    variant: str
    instance_type: str
    uri: str | None
    source: ImageSource
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImageKey(NamedTuple):
    framework: str
    accelerator: str  # "neuronx" or "gpu"
    framework_version: str | None
    transformers_version: str | None
    py_version: str | None


# (repository, tag) per image_settings + accelerator; the images the example config names.
# Tags from the same sources as the accounts above.
IMAGE_TABLE: dict[ImageKey, tuple[str, str]] = {
    ImageKey("huggingface", "neuronx", "2.1.2", "4.36.2", "py310"): (
        "huggingface-pytorch-inference-neuronx",
        "2.1.2-transformers4.36.2-neuronx-py310-sdk2.18.0-ubuntu20.04",
    ),
    ImageKey("huggingface", "neuronx", "1.13.1", "4.36.2", "py310"): (
        "huggingface-pytorch-inference-neuronx",
        "1.13.1-transformers4.36.2-neuronx-py310-sdk2.16.1-ubuntu20.04",
    ),
    ImageKey("huggingface", "gpu", "2.1.0", "4.37.0", "py310"): (
        "huggingface-pytorch-inference",
        "2.1.0-transformers4.37.0-gpu-py310-cu118-ubuntu20.04",
    ),
}


def accelerator_of(instance_type: str) -> str:
    return "neuronx" if is_neuron_type(instance_type) else "gpu"


def dlc_account(region: str) -> str | None:
    """The DLC registry account of a region; None for a region the table does not know."""
    if region in DLC_ACCOUNT_EXCEPTIONS:
        return DLC_ACCOUNT_EXCEPTIONS[region]
    return DLC_DEFAULT_ACCOUNT if region in DLC_DEFAULT_REGIONS else None


def dlc_registry(region: str) -> str | None:
    """`<account>.dkr.ecr.<region>.<domain>` of the AWS Deep Learning Containers (None: unknown region)."""
    account = dlc_account(region)
    if account is None:
        return None
    # longest prefix first: us-isob- before us-iso-
    domain = next((d for prefix, d in sorted(ECR_DOMAINS.items(), key=lambda kv: -len(kv[0]))
                   if region.startswith(prefix)), "amazonaws.com")
    return f"{account}.dkr.ecr.{region}.{domain}"


def table_image(settings: ImageSettings, instance_type: str, region: str) -> str | None:
    key = ImageKey(
        settings.framework,
        accelerator_of(instance_type),
        settings.framework_version,
        settings.transformers_version,
        settings.py_version,
    )
    found = IMAGE_TABLE.get(key)
    registry = dlc_registry(region)
    if found is None or registry is None:
        return None
    repository, tag = found
    return f"{registry}/{repository}:{tag}"


def _load_sdk_retrieve() -> Callable[..., str] | None:
    """`sagemaker.core.image_uris.retrieve` (sagemaker-core, or the SDK v2 path) if installed, else None."""
    for module_name in ("sagemaker.core.image_uris", "sagemaker.image_uris"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        retrieve = getattr(module, "retrieve", None)
        if callable(retrieve):
            return retrieve
    return None


def sdk_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for package in ("sagemaker-core", "sagemaker"):
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            continue
    return None


def sdk_arguments(settings: ImageSettings, instance_type: str, region: str) -> dict[str, Any]:
    """The `image_uris.retrieve` keyword arguments for these settings (None values dropped)."""
    kwargs: dict[str, Any] = {
        "framework": settings.framework,
        "region": region,
        "image_scope": "inference",
        "instance_type": instance_type,
        "py_version": settings.py_version,
    }
    if settings.framework == "huggingface":
        kwargs["version"] = settings.transformers_version
        if settings.framework_version:
            kwargs["base_framework_version"] = f"pytorch{settings.framework_version}"
    else:
        kwargs["version"] = settings.framework_version
    if is_neuron_type(instance_type):
        kwargs["inference_tool"] = "neuronx"  # the default maps inf2 to the Inf1 (neuron) image
    return {k: v for k, v in kwargs.items() if v is not None}


class _SdkMiss(NamedTuple):
    installed: bool
    why: str


def _ask_sdk(
    settings: ImageSettings, instance_type: str, region: str, retrieve: Callable[..., str] | None
) -> str | _SdkMiss:
    retrieve = retrieve or _load_sdk_retrieve()
    if retrieve is None:
        return _SdkMiss(False, "the SageMaker SDK (sagemaker-core) is not installed")
    try:
        found = retrieve(**sdk_arguments(settings, instance_type, region))
    except (ValueError, KeyError, TypeError) as error:
        return _SdkMiss(True, f"the SageMaker SDK has no such image ({str(error).splitlines()[0][:160]})")
    return found if found else _SdkMiss(True, "the SageMaker SDK returned no image")


def sdk_image(
    settings: ImageSettings,
    instance_type: str,
    region: str,
    retrieve: Callable[..., str] | None = None,
) -> str | None:
    """Ask the SageMaker SDK; None when it is not installed or has no such image."""
    found = _ask_sdk(settings, instance_type, region, retrieve)
    return found if isinstance(found, str) else None


def choose_image(
    variant: VariantConfig,
    region: str,
    *,
    name: str = "",
    where: str = "model",
    retrieve: Callable[..., str] | None = None,
    use_sdk: bool = True,
) -> ImageChoice:
    """The image for one variant and why; UserError naming the field to set when nothing knows it."""
    model = variant.model
    if model.image:
        return ImageChoice(name, variant.instance_type, model.image, "config",
                           f"{where}.image is set in the config (it wins over image_settings)")
    if model.model_package_arn and model.image_settings is None:
        return ImageChoice(name, variant.instance_type, None, "package",
                           f"the image registered in {model.model_package_arn} (read at deploy)")
    settings = model.image_settings
    if settings is None:
        raise UserError(f"{where}: set image (a container image URI) or image_settings (framework and versions)")
    sdk: str | _SdkMiss = _ask_sdk(settings, variant.instance_type, region, retrieve) if use_sdk else _SdkMiss(
        False, "the SageMaker SDK was not asked")
    if isinstance(sdk, str):
        label = "the SageMaker SDK" if retrieve is not None else (sdk_version() or "the SageMaker SDK")
        args = sdk_arguments(settings, variant.instance_type, region)
        shown = ", ".join(f"{k}={v}" for k, v in args.items() if k not in ("region", "instance_type", "image_scope"))
        return ImageChoice(name, variant.instance_type, sdk, "sdk", f"{label} image_uris.retrieve({shown})")
    found = table_image(settings, variant.instance_type, region)
    if found:
        return ImageChoice(name, variant.instance_type, found, "table",
                           f"{sdk.why}: the offline table of {len(IMAGE_TABLE)} images")
    key = (settings.framework, accelerator_of(variant.instance_type), settings.framework_version,
           settings.transformers_version, settings.py_version)
    table_why = "the offline table lacks it" if dlc_account(region) else f"the offline table does not know {region}"
    raise UserError(
        f"{where}.image_settings {key} in {region}: no known image ({sdk.why}; {table_why}): "
        f"set {where}.image to the container image URI"
    )


def resolve_image(
    variant: VariantConfig,
    region: str,
    *,
    where: str = "model",
    retrieve: Callable[..., str] | None = None,
    use_sdk: bool = True,
) -> str:
    """The image URI for one variant; UserError naming the field to set when nothing knows it."""
    choice = choose_image(variant, region, where=where, retrieve=retrieve, use_sdk=use_sdk)
    if choice.uri is None:
        raise UserError(f"{where}: the image comes from {variant.model.model_package_arn}, not from the config")
    return choice.uri


def choose_images(config: HybridConfig, *, use_sdk: bool = True) -> list[ImageChoice]:
    """What each variant will pull and why, neuron first."""
    return [
        choose_image(config.variant(name), config.region, name=name, where=f"variants.{name}.model", use_sdk=use_sdk)
        for name in ("neuron", "gpu")
    ]


def resolve_images(config: HybridConfig, *, use_sdk: bool = True) -> dict[str, str]:
    """Image URI per variant name (variants that deploy a model package are left out)."""
    return {c.variant: c.uri for c in choose_images(config, use_sdk=use_sdk) if c.uri is not None}
