"""hybrid validate, hybrid images, hybrid config schema."""

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
        """Check hybrid.yaml; print every problem as file:line: field: what to fix (exit 2 if any)."""
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

        emit({"ok": True, "valid": True, "config": cfg}, output, render)

    @app.command()
    def images(config: str = ConfigOption, output: Output = OutputOption) -> None:
        """Print the container image each variant will pull and why (config, SageMaker SDK or offline table)."""
        from toolkit.images import choose_images

        cfg = load(config)
        choices = choose_images(cfg)

        def render(_: object) -> None:
            console = Console()
            console.print(f"images for endpoint [bold]{cfg.name}[/bold] in {cfg.region}:")
            for choice in choices:
                console.print(f"  {choice.variant:<6} {choice.instance_type:<16} [bold]{choice.source}[/bold]  "
                              f"{choice.uri or '(from the model package)'}", highlight=False)
                console.print(f"         why: {choice.reason}", highlight=False)

        emit({"region": cfg.region, "images": [c.to_dict() for c in choices]}, output, render)

    @config_app.command("schema")
    def schema() -> None:
        """Print the JSON Schema of hybrid.yaml (for editor completion and CI checks)."""
        sys.stdout.write(json.dumps(config_schema(), indent=2) + "\n")
