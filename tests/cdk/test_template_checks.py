"""The example's synthesized template passes cfn-lint and cdk-nag's AwsSolutions pack."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks

from tests.cdk.conftest import Synth, cfn_lint, nag_findings, nag_suppressions, synth
from tests.conftest import EXAMPLE_CONFIG

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack() -> Synth:
    return synth(EXAMPLE_CONFIG)


def test_cfn_lint_reports_no_errors(stack: Synth, tmp_path: Path) -> None:
    errors = [line for line in cfn_lint(stack, tmp_path) if line.startswith("E")]
    assert errors == []


def test_cfn_lint_reports_no_warnings_either(stack: Synth, tmp_path: Path) -> None:
    assert cfn_lint(stack, tmp_path) == []


def test_app_applies_the_aws_solutions_pack(stack: Synth) -> None:
    # Without this, "no findings" below would be vacuous.
    assert any(isinstance(aspect, AwsSolutionsChecks) for aspect in cdk.Aspects.of(stack.app).all)


def test_cdk_nag_leaves_no_unacknowledged_findings(stack: Synth) -> None:
    assert nag_findings(stack) == []


def test_every_nag_acknowledgment_is_specific_and_reasoned(stack: Synth) -> None:
    suppressions = nag_suppressions(stack)
    assert suppressions, "the execution role's resource wildcards must be acknowledged, not hidden"
    for entry in suppressions:
        assert entry["id"].startswith("AwsSolutions-")
        assert len(entry["reason"]) >= 40
        # Scoped to named findings (appliesTo), never a blanket pass on the whole rule.
        assert entry.get("applies_to"), entry
    assert {e["id"] for e in suppressions} == {"AwsSolutions-IAM5"}
