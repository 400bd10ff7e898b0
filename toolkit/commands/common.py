"""Options and output helpers every command shares."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

import typer

from toolkit.config import HybridConfig, load_config

DEFAULT_CONFIG = os.environ.get("HYBRID_CONFIG", "hybrid.yaml")


class Output(StrEnum):
    text = "text"
    json = "json"


ConfigOption = typer.Option(
    DEFAULT_CONFIG, "--config", "-c", help="Path to hybrid.yaml (env HYBRID_CONFIG).", show_default=True
)
OutputOption = typer.Option(Output.text, "--output", "-o", help="text for people, json for pipelines.")
DryRunOption = typer.Option(False, "--dry-run", help="Decide and record, never change the endpoint.")
CompileDryRunOption = typer.Option(
    False, "--dry-run",
    help="Print the cache key and whether it is cached; start no compilation job and write nothing to S3.",
)
RegisterDryRunOption = typer.Option(
    False, "--dry-run",
    help="Print which packages would be created or approved; create, approve and write nothing.",
)


def load(path: str | Path) -> HybridConfig:
    return load_config(path)


def to_jsonable(value: Any) -> Any:
    """JSON default hook: pydantic models, our dataclasses (to_dict), enums, datetimes."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    return str(value)


def emit(data: Any, output: Output, render: Callable[[Any], None] | None = None) -> None:
    """Print `data` as JSON for machines, or through `render` (Rich) for people."""
    if output == Output.json or render is None:
        sys.stdout.write(json.dumps(data, indent=2, default=to_jsonable) + "\n")
    else:
        render(data)


def deprecated_alias(app: typer.Typer, old: str, new: str, callback: Callable[..., Any]) -> None:
    """Keep `hybrid <old>` working (hidden) for one release; it says on stderr what to type instead."""

    @functools.wraps(callback)
    def alias(*args: Any, **kwargs: Any) -> Any:
        sys.stderr.write(f"warning: `hybrid {old}` is deprecated and will be removed in the next release: "
                         f"use `hybrid {new}`\n")
        return callback(*args, **kwargs)

    app.command(old, hidden=True, help=f"Deprecated: use `hybrid {new}`.")(alias)
