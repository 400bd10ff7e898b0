"""Container image URIs for synth without the SageMaker Python SDK: one small, explicit table.

`cdk synth` must work offline and without the SDK (it takes ~2 s to import and is an optional
extra). A variant's image is, in order:
1. `model.image` from hybrid.yaml (always wins; use it for anything not in the table);
2. this table, keyed by `image_settings` and the accelerator kind (neuronx for Neuron hardware,
   gpu otherwise), in the AWS Deep Learning Containers registry of the config's region.

The tags come from the SageMaker Python SDK's `image_uri_config` (huggingface.json,
huggingface-neuronx.json) and the AWS DLC `available_images.md`; they are the images the
example config names. Anything else fails with a one-line error asking for `model.image`,
never with a guessed tag.
"""

from __future__ import annotations

from typing import NamedTuple

from toolkit.config import ImageSettings, is_neuron_type
from toolkit.errors import UserError

# The AWS Deep Learning Containers account per region (763104351884 unless listed).
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


# (repository, tag) per image_settings + accelerator.
DEFAULT_IMAGES: dict[ImageKey, tuple[str, str]] = {
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


def dlc_registry(region: str) -> str:
    """`<account>.dkr.ecr.<region>.<domain>` of the AWS Deep Learning Containers."""
    account = DLC_ACCOUNT_EXCEPTIONS.get(region, DLC_DEFAULT_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}"


def default_image(settings: ImageSettings, instance_type: str, region: str, where: str = "model") -> str:
    """The DLC image URI for these settings, or a UserError naming the field to set instead."""
    accelerator = "neuronx" if is_neuron_type(instance_type) else "gpu"
    key = ImageKey(
        settings.framework, accelerator, settings.framework_version, settings.transformers_version, settings.py_version
    )
    found = DEFAULT_IMAGES.get(key)
    if found is None:
        known = "; ".join(
            f"{k.framework} {k.accelerator} {k.framework_version}/transformers {k.transformers_version}/{k.py_version}"
            for k in DEFAULT_IMAGES
        )
        raise UserError(
            f"{where}.image_settings {tuple(key)} has no built-in image for synth: set {where}.image "
            f"to the container image URI (built-in: {known})"
        )
    repository, tag = found
    return f"{dlc_registry(region)}/{repository}:{tag}"


def ecr_repository_arn(image_uri: str, partition: str = "aws") -> str | None:
    """`arn:<partition>:ecr:<region>:<account>:repository/<name>` for an ECR image URI, else None."""
    registry, _, rest = image_uri.partition("/")
    parts = registry.split(".")
    if len(parts) < 6 or parts[1:3] != ["dkr", "ecr"] or not rest:
        return None
    account, region = parts[0], parts[3]
    name = rest.split("@", 1)[0] if "@" in rest else rest.rsplit(":", 1)[0]
    return f"arn:{partition}:ecr:{region}:{account}:repository/{name}"
