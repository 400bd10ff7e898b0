"""Container image URIs for a variant: explicit config, then the SageMaker Python SDK, then a table.

Order, for each variant:
1. `model.image` from hybrid.yaml always wins (anything the table lacks, private images);
2. the SageMaker Python SDK v3 (`sagemaker.core.image_uris.retrieve`) when the optional `sdk`
   extra is installed; for Neuron hardware we pass `inference_tool="neuronx"` because the SDK
   otherwise maps every inf*/trn* type to the Inf1 image;
3. an explicit table of AWS Deep Learning Containers, keyed by `image_settings` and the
   accelerator (neuronx / gpu), in the DLC registry of the config's region.

Pure on purpose: no boto3, no I/O beyond the lazy SDK import, so the CDK app can call it at
synth time. The SDK import takes about 2 s, so it happens only when the table cannot answer
or when `prefer_sdk=True`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from toolkit.config import HybridConfig, ImageSettings, VariantConfig, is_neuron_type
from toolkit.errors import UserError

# AWS Deep Learning Containers registry accounts. Source: the DLC "available_images.md"
# (https://github.com/aws/deep-learning-containers/blob/master/available_images.md) and the
# SageMaker Python SDK's image_uri_config/huggingface*.json; 763104351884 unless listed.
DLC_DEFAULT_ACCOUNT = "763104351884"
DLC_ACCOUNT_EXCEPTIONS: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-4": "457447274322",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-south-1": "217643126080",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}


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


def dlc_registry(region: str) -> str:
    """`<account>.dkr.ecr.<region>.<domain>` of the AWS Deep Learning Containers."""
    account = DLC_ACCOUNT_EXCEPTIONS.get(region, DLC_DEFAULT_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
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
    if found is None:
        return None
    repository, tag = found
    return f"{dlc_registry(region)}/{repository}:{tag}"


def _load_sdk_retrieve() -> Callable[..., str] | None:
    """`sagemaker.core.image_uris.retrieve` (SDK v3) if installed, else None."""
    for module_name in ("sagemaker.core.image_uris", "sagemaker.image_uris"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        retrieve = getattr(module, "retrieve", None)
        if callable(retrieve):
            return retrieve
    return None


def sdk_image(
    settings: ImageSettings,
    instance_type: str,
    region: str,
    retrieve: Callable[..., str] | None = None,
) -> str | None:
    """Ask the SageMaker Python SDK; None when it is not installed or has no such image."""
    retrieve = retrieve or _load_sdk_retrieve()
    if retrieve is None:
        return None
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
    try:
        return retrieve(**{k: v for k, v in kwargs.items() if v is not None})
    except (ValueError, KeyError, TypeError):
        return None  # the SDK has no config for these settings: fall back to the table


def resolve_image(
    variant: VariantConfig,
    region: str,
    *,
    where: str = "model",
    prefer_sdk: bool = False,
    retrieve: Callable[..., str] | None = None,
) -> str:
    """The image URI for one variant; UserError naming the field to set when nothing knows it."""
    model = variant.model
    if model.image:
        return model.image
    settings = model.image_settings
    if settings is None:
        raise UserError(f"{where}: set image (a container image URI) or image_settings (framework and versions)")
    if prefer_sdk or retrieve is not None:
        found = sdk_image(settings, variant.instance_type, region, retrieve)
        if found:
            return found
    found = table_image(settings, variant.instance_type, region)
    if found:
        return found
    if not prefer_sdk and retrieve is None:
        found = sdk_image(settings, variant.instance_type, region)
        if found:
            return found
    key = (settings.framework, accelerator_of(variant.instance_type), settings.framework_version,
           settings.transformers_version, settings.py_version)
    raise UserError(
        f"{where}.image_settings {key} has no known image (SageMaker SDK not installed or without it): "
        f"set {where}.image to the container image URI"
    )


def resolve_images(config: HybridConfig, *, prefer_sdk: bool = False) -> dict[str, str]:
    """Image URI per variant name."""
    return {
        name: resolve_image(config.variant(name), config.region, where=f"variants.{name}.model", prefer_sdk=prefer_sdk)
        for name in ("neuron", "gpu")
    }
