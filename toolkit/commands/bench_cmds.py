"""hybrid compare-policies (was `hybrid bench`): our controller beside guardrails-style, Flagger-style, static splits and an oracle.

    hybrid compare-policies                             # every built-in scenario, table + plot
    hybrid compare-policies --scenario my.yaml --seeds 20 --output json > results.json

Every policy runs on the same scenarios with the same seeds (the fleet draws identically);
`hybrid` is the real controller. Figures, goals and the JSON schema: docs/bench.md.
Exit 0 when the bench ran (goals met or not: the table says), 2 for bad input.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from toolkit.commands.common import DEFAULT_CONFIG, ConfigOption, Output, OutputOption, deprecated_alias, emit, load
from toolkit.errors import UserError

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "hybrid.yaml"
DEFAULT_SEEDS = 20  # the goals are judged over 20 seeds; runtime measured in docs/bench.md


def _config(path: str) -> Any:
    # Like `hybrid demo`: without a hybrid.yaml here, the example config (the bench needs no account).
    if path == DEFAULT_CONFIG and not Path(path).exists() and EXAMPLE_CONFIG.exists():
        return load(EXAMPLE_CONFIG)
    return load(path)


def register(app: typer.Typer) -> None:
    @app.command("compare-policies")
    def bench(
        config: str = ConfigOption,
        scenario: list[str] = typer.Option(
            None, "--scenario", "-s", help="Scenario file or built-in name (repeat). Default: every built-in."),
        seeds: int = typer.Option(DEFAULT_SEEDS, "--seeds", min=1, max=1000,
                                  help="Seeds per scenario (low-traffic scenarios run at least 20)."),
        policies: list[str] = typer.Option(
            None, "--policies", "-p",
            help="Policies to run (repeat or comma-separate): hybrid, static-gpu, static-neuron, "
                 "guardrails-linear, flagger-like, oracle. Default: all."),
        plot: str | None = typer.Option("reports/bench.png", "--plot", help="PNG path for the plot ('' for none)."),
        aws_check: bool = typer.Option(True, "--aws-check/--no-aws-check",
                                       help="Also run hybrid once through the embedded AWS path."),
        workers: int = typer.Option(2, "--workers", min=1, max=64, help="Worker processes."),
        output: Output = OutputOption,
    ) -> None:
        """Simulated: every routing policy on the same scenarios and seeds; figures, goals met/missed, a plot."""
        from toolkit.bench.harness import bench_document, check_policies, load_scenarios, plan

        chosen = check_policies(policies or [])
        cfg = _config(config)
        scenarios = load_scenarios(scenario or None)
        if plot:
            try:
                Path(plot).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserError(f"--plot {plot}: cannot create its folder ({error.strerror or error})") from None
        the_plan = plan(scenarios, cfg, chosen, seeds, aws_check=aws_check)
        started = time.perf_counter()
        runs = _run(the_plan.jobs, workers)
        wall = time.perf_counter() - started
        document = bench_document(runs, scenarios, chosen, seeds, the_plan, wall, workers)
        if plot:
            from toolkit.bench.report import plot as draw

            try:
                document["plot"] = str(draw(document, plot))
            except OSError as error:
                raise UserError(f"--plot {plot}: cannot write the plot ({error.strerror or error})") from None
        from toolkit.bench.report import render

        emit(document, output, render)

    deprecated_alias(app, "bench", "compare-policies", bench)


def _run(jobs: list[Any], workers: int) -> list[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from toolkit.bench.harness import execute

    console = Console(stderr=True, force_terminal=None if sys.stderr.isatty() else False)
    with Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("", total=len(jobs))

        def advance(item: Any) -> None:
            progress.update(task, advance=1, description=f"{item.scenario} {item.policy} seed {item.seed}")

        return execute(jobs, workers=workers, progress=advance)
