"""Fixtures shared by the simulator and bench tests: small scenarios built in code."""

from __future__ import annotations

from typing import Any

import pytest

from toolkit.sim.scenario import Setup, parse_scenario, resolve


@pytest.fixture
def make_setup(example_config):
    def _make(seed: int = 1, **overrides: Any) -> Setup:
        data: dict[str, Any] = {"name": "t", "duration_minutes": 30, "traffic": {"rps": 30}, "seed": seed}
        data.update(overrides)
        return resolve(parse_scenario(data), example_config)

    return _make
