"""Image URIs: explicit config wins, the SDK (neuronx for inf2) when present, else the table."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT
from toolkit.errors import UserError
from toolkit.images import resolve_image, resolve_images


def test_explicit_image_always_wins(example_data):
    from toolkit.config import parse_config

    example_data["variants"]["gpu"]["model"]["image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"
    cfg = parse_config(example_data)
    calls: list[Any] = []
    image = resolve_image(cfg.variants.gpu, cfg.region, retrieve=lambda **kw: calls.append(kw) or "sdk-uri")
    assert image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1" and calls == []


def test_table_resolves_the_example_images_in_the_dlc_account(example_config):
    images = resolve_images(example_config)
    assert images["neuron"].startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference-neuronx:")
    assert "-neuronx-py310-" in images["neuron"]
    assert images["gpu"].startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:")
    assert "-gpu-py310-" in images["gpu"]


def test_regions_with_their_own_dlc_account(example_config):
    image = resolve_image(example_config.variants.gpu, "me-south-1")
    assert image.startswith("217643126080.dkr.ecr.me-south-1.amazonaws.com/")


def test_sdk_is_asked_for_the_neuronx_image_on_inf2_only(example_config):
    calls: list[dict[str, Any]] = []

    def retrieve(**kwargs: Any) -> str:
        calls.append(kwargs)
        return f"sdk/{kwargs['instance_type']}"

    assert resolve_image(example_config.variants.neuron, "us-east-1", retrieve=retrieve) == "sdk/ml.inf2.xlarge"
    assert resolve_image(example_config.variants.gpu, "us-east-1", retrieve=retrieve) == "sdk/ml.g5.xlarge"
    assert calls[0]["inference_tool"] == "neuronx"
    assert "inference_tool" not in calls[1]
    assert calls[0]["image_scope"] == "inference" and calls[0]["version"] == "4.36.2"


def test_sdk_without_a_config_falls_back_to_the_table(example_config):
    def retrieve(**_: Any) -> str:
        raise ValueError("Unsupported huggingface version")

    image = resolve_image(example_config.variants.neuron, "us-east-1", retrieve=retrieve)
    assert "huggingface-pytorch-inference-neuronx" in image


def test_unknown_settings_without_the_sdk_name_the_field_to_set(example_data):
    from toolkit.config import parse_config

    example_data["variants"]["gpu"]["model"]["image_settings"]["framework_version"] = "9.9.9"
    cfg = parse_config(example_data)
    with pytest.raises(UserError, match=r"set variants\.gpu\.model\.image"):
        resolve_image(cfg.variants.gpu, cfg.region, where="variants.gpu.model", retrieve=lambda **_: None)


def test_module_imports_neither_boto3_nor_the_sdk():
    code = "import sys, toolkit.images; print('boto3' in sys.modules, 'sagemaker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
