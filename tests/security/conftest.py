"""One synth per configuration for the security suite (reusing tests/cdk/conftest.py's synth)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cdk.conftest import Synth, synth

CONTROLLER_MODULE = importlib.util.find_spec("cdk.controller") is not None


def _write(tmp: Path, data: dict[str, Any], name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def example_raw() -> dict[str, Any]:
    from tests.conftest import EXAMPLE_CONFIG

    return yaml.safe_load(EXAMPLE_CONFIG.read_text())


@pytest.fixture(scope="session")
def stacks(tmp_path_factory: pytest.TempPathFactory, example_raw: dict[str, Any]) -> dict[str, Synth]:
    """The example stack, the same with a VPC, and (when cdk/controller.py exists) with the controller."""
    tmp = tmp_path_factory.mktemp("security-synth")
    out = {"endpoint": synth()}
    vpc = dict(example_raw, vpc={"subnet_ids": ["subnet-0123abcd"], "security_group_ids": ["sg-0123abcd"]})
    out["endpoint+vpc"] = synth(_write(tmp, vpc, "vpc"))
    if CONTROLLER_MODULE:
        controller = dict(example_raw, controller={**(example_raw.get("controller") or {}), "enabled": True})
        out["endpoint+controller"] = synth(_write(tmp, controller, "controller"))
    return out
