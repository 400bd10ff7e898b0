"""A user's own CDK app with two hybrid endpoints in one stack (see docs/infrastructure.md).

Environment-agnostic (no `env=`, as `cdk init` makes it): the account and region are resolved
at deploy time. Each endpoint's hybrid.yaml names the region its images and artifacts are in;
the template refuses (a CloudFormation rule) to deploy an endpoint to any other region.
cdk-nag's AwsSolutions checks run on the whole app.

    cd examples/cdk_app && cdk synth       # cdk.json here runs this file

`HYBRID_CONFIGS` (comma-separated paths) replaces the two configs below.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

HERE = Path(__file__).resolve().parent
# Running from a checkout of this repository (an installed toolkit needs no path change).
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from cdk.endpoint import HybridEndpoint  # noqa: E402
from toolkit.config import HybridConfig, load_config  # noqa: E402

CONFIGS = (HERE.parent / "hybrid.yaml", HERE / "ranker.yaml")


def construct_id(name: str) -> str:
    """`bert-classifier` -> `BertClassifier` (construct ids need not be endpoint names)."""
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


class InferenceStack(cdk.Stack):
    """The user's stack: their own resources plus one HybridEndpoint per config."""

    def __init__(self, scope: Construct, construct_id_: str, *, configs: Sequence[HybridConfig]) -> None:
        super().__init__(scope, construct_id_, description="Two hybrid Inferentia2 + GPU endpoints")
        self.endpoints: dict[str, HybridEndpoint] = {}
        for config in configs:
            endpoint = HybridEndpoint(self, construct_id(config.name), config=config)
            self.endpoints[config.name] = endpoint
            cdk.CfnOutput(self, f"{construct_id(config.name)}Dashboard", value=endpoint.dashboard_name)


def build(app: cdk.App, paths: Sequence[str | Path] = CONFIGS) -> InferenceStack:
    stack = InferenceStack(app, "HybridInference", configs=[load_config(p) for p in paths])
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stack


def main() -> None:
    app = cdk.App()
    paths = [p for p in os.environ.get("HYBRID_CONFIGS", "").split(",") if p] or list(CONFIGS)
    build(app, paths)
    app.synth()


if __name__ == "__main__":
    main()
