"""docs/config.md is generated from the models: a new or changed field must show up there."""

from __future__ import annotations

from tests.conftest import ROOT
from toolkit.configdoc import render


def test_config_reference_is_up_to_date():
    on_disk = (ROOT / "docs" / "config.md").read_text()
    assert on_disk == render(), "docs/config.md is stale: run `python -m toolkit.configdoc > docs/config.md`"


def test_config_reference_lists_every_slo_field():
    text = render()
    for key in ("slo.p99_latency_ms", "slo.max_error_rate", "slo.max_regression", "variants.<variant>.instance_type"):
        assert f"`{key}`" in text
