"""Image URIs: explicit config wins, then the SageMaker SDK (neuronx for inf2), the table only offline."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from importlib import resources
from typing import Any

import pytest

from tests.conftest import ROOT
from toolkit import images
from toolkit.cli import run
from toolkit.errors import UserError
from toolkit.images import (
    DLC_ACCOUNT_EXCEPTIONS,
    IMAGE_TABLE,
    choose_image,
    choose_images,
    dlc_account,
    dlc_registry,
    resolve_image,
    resolve_images,
)


def test_explicit_image_always_wins(example_data):
    from toolkit.config import parse_config

    example_data["variants"]["gpu"]["model"]["image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"
    cfg = parse_config(example_data)
    calls: list[Any] = []
    image = resolve_image(cfg.variants.gpu, cfg.region, retrieve=lambda **kw: calls.append(kw) or "sdk-uri")
    assert image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1" and calls == []


def test_table_resolves_the_example_images_in_the_dlc_account(example_config):
    images = resolve_images(example_config, use_sdk=False)
    assert images["neuron"].startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference-neuronx:")
    assert "-neuronx-py310-" in images["neuron"]
    assert images["gpu"].startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:")
    assert "-gpu-py310-" in images["gpu"]


def test_regions_with_their_own_dlc_account(example_config):
    image = resolve_image(example_config.variants.gpu, "me-south-1", use_sdk=False)
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
        resolve_image(cfg.variants.gpu, cfg.region, where="variants.gpu.model", retrieve=lambda **_: "")


def test_module_imports_neither_boto3_nor_the_sdk():
    code = "import sys, toolkit.images; print('boto3' in sys.modules, 'sagemaker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# ------------------------------------------------------------------ the SDK first, the table offline


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: the SDK must answer from the JSON it ships."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_installed_sdk_answers_first_without_network(example_config, no_network):
    choices = {c.variant: c for c in choose_images(example_config)}
    assert {c.source for c in choices.values()} == {"sdk"}
    assert choices["neuron"].uri.startswith(
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference-neuronx:2.1.2-transformers4.36.2")
    assert "inference_tool=neuronx" in choices["neuron"].reason and "sagemaker-core" in choices["neuron"].reason
    assert "-gpu-py310-" in choices["gpu"].uri


def test_sdk_wins_over_the_table_when_both_know_the_image(example_config):
    choice = choose_image(example_config.variants.gpu, "us-east-1", retrieve=lambda **_: "sdk-uri")
    assert (choice.uri, choice.source) == ("sdk-uri", "sdk")


def test_table_is_used_only_when_the_sdk_is_not_installed(example_config, monkeypatch):
    monkeypatch.setattr(images, "_load_sdk_retrieve", lambda: None)
    choice = choose_image(example_config.variants.neuron, "us-east-1")
    assert choice.source == "table" and "not installed" in choice.reason
    assert choice.uri == resolve_image(example_config.variants.neuron, "us-east-1", use_sdk=False)


def test_other_framework_versions_resolve_through_the_sdk(example_data, no_network):
    from toolkit.config import parse_config

    example_data["variants"]["neuron"]["model"]["image_settings"] = {
        "framework": "huggingface", "framework_version": "1.13.1", "transformers_version": "4.34.1",
        "py_version": "py310"}
    cfg = parse_config(example_data)
    choice = choose_image(cfg.variants.neuron, cfg.region)
    assert choice.source == "sdk" and "1.13.1-transformers4.34.1-neuronx" in choice.uri


def _sdk_registries(name: str) -> dict[str, set[str]]:
    config = json.loads((resources.files("sagemaker.core") / "image_uri_config" / f"{name}.json").read_text())
    found: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for region, account in (node.get("registries") or {}).items():
                found.setdefault(region, set()).add(account)
            for value in node.values():
                walk(value)

    walk(config)
    return found


@pytest.mark.parametrize("family", ["huggingface-neuronx", "huggingface"])
def test_table_registry_account_matches_the_sdk_in_every_region(family):
    registries = _sdk_registries(family)
    assert len(registries) > 30
    wrong = {region: (dlc_account(region), accounts) for region, accounts in registries.items()
             if accounts != {dlc_account(region)}}
    assert wrong == {}


@pytest.mark.parametrize(("region", "account"), [
    ("ap-east-2", "975050140332"), ("ap-southeast-5", "550225433462"), ("ap-southeast-7", "590183813437"),
    ("mx-central-1", "637423239942"),
])
def test_offline_table_uses_each_new_regions_own_registry(example_config, region, account):
    image = resolve_image(example_config.variants.neuron, region, use_sdk=False)
    assert image.startswith(f"{account}.dkr.ecr.{region}.amazonaws.com/huggingface-pytorch-inference-neuronx:")
    assert DLC_ACCOUNT_EXCEPTIONS[region] == account


def test_table_refuses_a_region_it_does_not_know_rather_than_guess_an_account(example_config):
    assert dlc_registry("xx-nowhere-1") is None
    with pytest.raises(UserError, match="does not know xx-nowhere-1"):
        resolve_image(example_config.variants.gpu, "xx-nowhere-1", where="variants.gpu.model", use_sdk=False)


def test_isolated_and_china_partitions_use_their_ecr_domain():
    assert dlc_registry("cn-north-1") == "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert dlc_registry("us-iso-east-1") == "886529160074.dkr.ecr.us-iso-east-1.c2s.ic.gov"
    assert dlc_registry("us-isob-east-1") == "094389454867.dkr.ecr.us-isob-east-1.sc2s.sgov.gov"


def test_every_table_row_is_what_the_sdk_gives(example_config, no_network):
    from toolkit.config import ImageSettings

    for key, (repository, tag) in IMAGE_TABLE.items():
        settings = ImageSettings(framework=key.framework, framework_version=key.framework_version,
                                 transformers_version=key.transformers_version, py_version=key.py_version)
        instance = "ml.inf2.xlarge" if key.accelerator == "neuronx" else "ml.g5.xlarge"
        assert images.sdk_image(settings, instance, "us-east-1") == (
            f"763104351884.dkr.ecr.us-east-1.amazonaws.com/{repository}:{tag}")


def test_images_command_prints_each_variant_its_source_and_why(example_data, write_config, capsys):
    example_data["variants"]["gpu"]["model"]["image"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"
    assert run(["images", "-c", str(write_config(example_data)), "--output", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    by_variant = {c["variant"]: c for c in document["images"]}
    assert by_variant["gpu"]["source"] == "config" and "variants.gpu.model.image is set" in by_variant["gpu"]["reason"]
    assert by_variant["neuron"]["source"] == "sdk"
    assert run(["images", "-c", str(write_config(example_data))]) == 0
    text = capsys.readouterr().out
    assert "mine:1" in text and "why: variants.gpu.model.image is set" in text


def test_images_command_shows_a_package_variant_takes_the_packages_image(example_data, write_config, capsys):
    model = example_data["variants"]["gpu"]["model"]
    model.pop("artifact")
    model.pop("image_settings")
    model["model_package_arn"] = "arn:aws:sagemaker:us-east-1:111122223333:model-package/bert-classifier/3"
    assert run(["images", "-c", str(write_config(example_data)), "--output", "json"]) == 0
    gpu = json.loads(capsys.readouterr().out)["images"][1]
    assert gpu["source"] == "package" and gpu["uri"] is None
