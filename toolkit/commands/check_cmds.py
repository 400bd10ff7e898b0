"""hybrid check: a pre-flight of the model before any compile (architecture, task, shapes, dtype)."""

from __future__ import annotations

import typer

from toolkit.commands.common import ConfigOption, Output, OutputOption, emit, load


def register(app: typer.Typer) -> None:
    @app.command()
    def check(
        config: str = ConfigOption,
        model: str | None = typer.Option(
            None, "--model", help="The model to audit: a directory, config.json, model.tar.gz or s3:// URI "
            "(default: compile.source_artifact, else the neuron then gpu artifact)."
        ),
        output: Output = OutputOption,
    ) -> None:
        """Before compiling: can the configured Neuron path compile this model? Exit 1 if not."""
        from toolkit import preflight

        cfg = load(config)
        location = preflight.model_location(cfg, model)
        report = preflight.assess(preflight.read_model_config(location), cfg, location)
        emit(report.to_dict(), output, _render)
        if report.verdict == "failure":
            raise typer.Exit(1)


def _render(data: dict) -> None:
    from rich.console import Console

    console = Console()
    arch = ", ".join(data["architectures"]) or "-"
    console.print(f"[bold]hybrid check[/bold] {data['source']}: {arch} (model_type {data['model_type']}), "
                  f"task {data['task'] or '-'}, compile.backend {data['backend']}")
    marks = {"ok": "[green]ok[/green]", "warning": "[yellow]warning[/yellow]", "failure": "[red]FAIL[/red]"}
    for finding in data["findings"]:
        console.print(f"  {marks[finding['level']]:>8}  {finding['check']}: {finding['message']}", soft_wrap=True)
    console.print(f"table: {data['table_source']}, as of {data['table_as_of']}", soft_wrap=True)
    verdict = {"ok": "[green]ready to compile[/green]", "warning": "[yellow]compile with care (warnings)[/yellow]",
               "failure": "[red]not supported as configured[/red]"}[data["verdict"]]
    console.print(f"verdict: {verdict}")
