"""hybrid validate, hybrid config schema."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console

from toolkit.commands.common import ConfigOption, Output, OutputOption, emit, load
from toolkit.config import config_schema


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="The config file: its JSON Schema for editors.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @app.command()
    def validate(config: str = ConfigOption, output: Output = OutputOption) -> None:
        """Check hybrid.yaml; print every problem with its field path (exit 2 if any)."""
        cfg = load(config)

        def render(_: object) -> None:
            console = Console()
            steps = ", ".join(f"{s:g}%" for s in cfg.canary.resolved_steps())
            console.print(f"[green]ok[/green] {config}: endpoint [bold]{cfg.name}[/bold] in {cfg.region}")
            for name in ("neuron", "gpu"):
                v = cfg.variant(name)
                console.print(
                    f"  {name:<6} {v.instance_type:<16} count {v.initial_count} ({v.min_count}..{v.max_count}), "
                    f"weight {getattr(cfg.initial_weights, name):g}%"
                )
            console.print(f"  canary steps: {steps}; SLO p99 <= {cfg.slo.p99_latency_ms:g} ms, "
                          f"errors <= {cfg.slo.max_error_rate:.2%}")

        emit({"valid": True, "config": cfg}, output, render)

    @config_app.command("schema")
    def schema() -> None:
        """Print the JSON Schema of hybrid.yaml (for editor completion and CI checks)."""
        sys.stdout.write(json.dumps(config_schema(), indent=2) + "\n")
