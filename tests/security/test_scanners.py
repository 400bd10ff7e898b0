"""cdk-nag, cfn-lint and checkov on every stack variant: zero unexplained findings.

cdk-nag and cfn-lint reuse tests/cdk/conftest.py's helpers; checkov runs with the repository's
.checkov.yaml, whose every skipped check must carry a reason (a comment on its line).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cdk.conftest import ROOT, cfn_lint, nag_findings
from tests.security.test_iam import NO_CONTROLLER

CHECKOV_CONFIG = ROOT / ".checkov.yaml"
CHECKOV = Path(sys.executable).parent / "checkov"

STACKS = [pytest.param("endpoint", id="endpoint"), pytest.param("endpoint+vpc", id="endpoint+vpc"),
          pytest.param("endpoint+controller", id="endpoint+controller", marks=NO_CONTROLLER)]
CHECKOV_STACKS = STACKS


@pytest.mark.parametrize("name", STACKS)
def test_cdk_nag_leaves_no_unacknowledged_findings(stacks, name):
    assert nag_findings(stacks[name]) == []


@pytest.mark.parametrize("name", STACKS)
def test_cfn_lint_reports_nothing(stacks, name, tmp_path):
    assert cfn_lint(stacks[name], tmp_path) == []


def _checkov(template: Path) -> dict:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    done = subprocess.run([str(CHECKOV), "-f", str(template), "--config-file", str(CHECKOV_CONFIG), "-o", "json"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    data = json.loads(done.stdout)
    return data[0] if isinstance(data, list) else data


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov is not installed in this environment")
@pytest.mark.parametrize("name", CHECKOV_STACKS)
def test_checkov_finds_nothing_beyond_the_reasoned_skips(stacks, name, tmp_path):
    template = tmp_path / "template.json"
    template.write_text(json.dumps(stacks[name].json()))
    result = _checkov(template)
    assert result["summary"]["parsing_errors"] == 0
    assert result["summary"]["passed"] > 0, "checkov ran no checks: the scan is not real"
    failed = [f"{c['check_id']} {c['check_name']} @ {c['resource']}" for c in result["results"]["failed_checks"]]
    assert failed == []


def test_every_checkov_skip_carries_a_reason():
    config = yaml.safe_load(CHECKOV_CONFIG.read_text())
    skipped = config.get("skip-check", [])
    assert skipped, "no skips: then this test should go"
    for line in CHECKOV_CONFIG.read_text().splitlines():
        match = re.match(r"\s*-\s*(CKV\w+)\s*(#\s*(.*))?$", line)
        if match:
            reason = (match.group(3) or "").strip()
            assert len(reason) > 40, f"{match.group(1)} is skipped without a reason"
