"""hybrid parity: the same inputs to neuron and gpu, outputs compared with the config's comparator."""

from __future__ import annotations

import sys
from typing import Any

import typer

from toolkit.commands.common import ConfigOption, Output, OutputOption, emit, load
from toolkit.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command()
    def parity(
        config: str = ConfigOption,
        inputs: str = typer.Option(..., "--inputs", help="JSONL file: one request body per line."),
        url: str | None = typer.Option(
            None, "--url", help="Container-contract servers instead of SageMaker: neuron=URL,gpu=URL (or one URL)."
        ),
        max_inputs: int | None = typer.Option(None, "--max-inputs", help="At most this many inputs (default parity.max_inputs)."),
        max_seconds: float | None = typer.Option(None, "--max-seconds", help="At most this long (default parity.max_seconds)."),
        output: Output = OutputOption,
    ) -> None:
        """Do neuron and gpu give the same answers? Exit 1 when agreement is below parity.min_agreement."""
        from toolkit import parity_run
        from toolkit.benchmark import parse_urls

        cfg = load(config)
        updates: dict[str, Any] = {}
        if max_inputs is not None:
            if max_inputs < 1:
                raise UserError("--max-inputs must be >= 1")
            updates["max_inputs"] = max_inputs
        if max_seconds is not None:
            if max_seconds <= 0:
                raise UserError("--max-seconds must be > 0")
            updates["max_seconds"] = max_seconds
        settings = cfg.parity.model_copy(update=updates)
        bodies = parity_run.read_inputs(inputs, settings.max_inputs)
        from toolkit.parity import comparator

        comparator(settings)  # a user function that cannot be imported is bad input, before any request
        if url is not None:
            urls = parse_urls(url)
            invokers = {name: parity_run.http_invoker(urls[name]) for name in ("neuron", "gpu")}
            mode = "url"
        else:
            parity_run.check_endpoint(cfg)
            invokers = parity_run.sagemaker_invokers(cfg)
            mode = "sagemaker"
        report = _run(parity_run, cfg, invokers, bodies, mode, settings,
                      show=output == Output.text and sys.stderr.isatty())
        emit(report.to_dict(), output, _render)
        if not report.summary.passed:
            raise typer.Exit(1)


def _run(parity_run: Any, cfg: Any, invokers: Any, bodies: list[bytes], mode: str, settings: Any, show: bool) -> Any:
    if not show:
        return parity_run.run_parity(cfg, invokers, bodies, mode, settings)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("parity"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("parity", total=len(bodies))
        return parity_run.run_parity(cfg, invokers, bodies, mode, settings,
                                     on_input=lambda: progress.advance(task))


def _render(data: dict[str, Any]) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    console = Console()
    s = data["summary"]
    rate = "-" if s["agreement"] is None else f"{s['agreement']:.2%}"
    console.print(f"[bold]hybrid parity[/bold] {data['endpoint']} ({data['mode']}), comparator "
                  f"{data['comparator']}: {s['agreed']}/{s['compared']} agree ({rate}; needed "
                  f"{s['min_agreement']:.2%})" + (" [yellow]stopped at max_seconds[/yellow]"
                                                   if data["stopped"] == "max_seconds" else ""))
    for key, value in s["aggregate"].items():
        console.print(f"  {key}: {value:.6g}")
    if data["worst"]:
        table = Table(title="Worst inputs")
        for column in ("#", "input", "agree", "diff"):
            table.add_column(column)
        for row in data["worst"]:
            diff = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row["diff"].items()}
            table.add_row(str(row["index"]), row["input"][:60], "yes" if row["ok"] else "[red]no[/red]",
                          json.dumps(diff)[:120])
        console.print(table)
    console.print("[green]parity: pass[/green]" if s["passed"] else "[red]parity: FAIL[/red]")
