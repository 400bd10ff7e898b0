"""The packaged copies of the examples (for installed wheels) never drift from examples/."""

from __future__ import annotations

from tests.conftest import ROOT


def test_packaged_example_config_matches_examples_folder():
    assert (ROOT / "toolkit" / "data" / "example-hybrid.yaml").read_text() == (
        ROOT / "examples" / "hybrid.yaml"
    ).read_text(), "copy examples/hybrid.yaml to toolkit/data/example-hybrid.yaml"


def test_example_scenarios_match_the_built_in_ones():
    shipped = {p.name: p.read_text() for p in (ROOT / "toolkit" / "scenarios").glob("*.yaml")}
    examples = {p.name: p.read_text() for p in (ROOT / "examples" / "scenarios").glob("*.yaml")}
    assert examples, "examples/scenarios is empty"
    for name, text in examples.items():
        assert shipped.get(name) == text, f"examples/scenarios/{name} differs from toolkit/scenarios/{name}"
