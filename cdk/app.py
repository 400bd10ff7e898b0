"""The CDK app: `python -m cdk.app` (cdk.json runs it; `cdk synth -c config=path/to/hybrid.yaml`).

Reads the config path from the `config` context key, validates it with toolkit.config, and
synthesizes one HybridEndpointStack with cdk-nag's AwsSolutions checks applied. No lookups:
synth needs no AWS credentials. A bad config prints one line per problem and exits 2.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cdk.stack import HybridEndpointStack
from toolkit.config import ConfigError, HybridConfig, load_config
from toolkit.errors import UserError

DEFAULT_CONFIG = "examples/hybrid.yaml"


def stack_name(config: HybridConfig) -> str:
    return f"hybrid-{config.name}"


def environment(config: HybridConfig) -> cdk.Environment:
    """Region from the config; the account only when the config pins one (else account-agnostic)."""
    return cdk.Environment(region=config.region, account=config.account)


def without_autoscaling(app: cdk.App) -> tuple[str, ...]:
    """`-c without_autoscaling=gpu`: step 1 of changing an autoscaled variant's instance type."""
    value = app.node.try_get_context("without_autoscaling") or ""
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


def build(app: cdk.App, config: HybridConfig) -> HybridEndpointStack:
    """Add the stack and the AwsSolutions checks to `app` (tests call this with their own App)."""
    stack = HybridEndpointStack(app, stack_name(config), config=config, env=environment(config),
                                without_autoscaling=without_autoscaling(app))
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stack


def build_from_context(context: Mapping[str, Any] | None = None) -> tuple[cdk.App, HybridEndpointStack]:
    app = cdk.App(context=dict(context) if context is not None else None)
    path = app.node.try_get_context("config") or DEFAULT_CONFIG
    return app, build(app, load_config(path))


def main(context: Mapping[str, Any] | None = None) -> int:
    """Synthesize; `context` replaces what the CDK CLI passes (CDK_CONTEXT_JSON) for in-process callers."""
    try:
        app, _ = build_from_context(context)
        app.synth()
    except ConfigError as error:
        for line in error.lines():  # file:line: path: message, as `hybrid validate` prints them
            print(line, file=sys.stderr)
        return 2
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
