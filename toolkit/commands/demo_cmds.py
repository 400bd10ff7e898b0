"""hybrid demo: the whole migration on an embedded AWS with simulated inf2/g5 traffic, and a report.

    hybrid demo                                     # built-in `demo` scenario, report in reports/
    hybrid demo --scenario examples/scenarios/spike.yaml --seed 7 --output json

Deploys through `hybrid deploy`'s code into the embedded AWS, runs the same controller the CLI
runs against AWS on a simulated clock (one tick per simulated minute), shows a live view,
prints a summary (including the minutes from the injected regression to the gpu fallback and
the savings vs all-GPU) and writes the report (HTML with the plot embedded, and the PNG).
Exit 0 when the demo ran (whatever the canary decided), 2 for bad input, 3 for AWS errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from toolkit.commands.common import DEFAULT_CONFIG, ConfigOption, Output, OutputOption, emit, load
from toolkit.config import GPU, NEURON
from toolkit.errors import UserError

# A packaged copy of examples/hybrid.yaml, so `hybrid demo` also works from an installed wheel
# (tests/toolkit/test_examples.py keeps the two identical).
EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "data" / "example-hybrid.yaml"


def _config(path: str) -> Any:
    # Without a hybrid.yaml in the working directory the demo runs on the example config.
    if path == DEFAULT_CONFIG and not Path(path).exists() and EXAMPLE_CONFIG.exists():
        return load(EXAMPLE_CONFIG), str(EXAMPLE_CONFIG)
    return load(path), path


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        config: str = ConfigOption,
        scenario: str = typer.Option("demo", "--scenario", "-s", help="Scenario file, or a built-in name."),
        seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the scenario's)."),
        minutes: int | None = typer.Option(None, "--minutes", min=1, help="Simulate only this many minutes."),
        report: str | None = typer.Option(
            None, "--report", help="Report path (.html with the PNG beside it, or .png). Default: reports/demo-<scenario>-seed<seed>.html"
        ),
        in_memory: bool = typer.Option(False, "--in-memory", help="Skip the embedded AWS (in-memory adapters, same controller)."),
        state_dir: str | None = typer.Option(
            None, "--state-dir", help="Keep the controller's state and decision records here (default: a temporary folder)."
        ),
        output: Output = OutputOption,
    ) -> None:
        """Watch traffic move from GPU to Inferentia on an embedded AWS, an injected fault, the fallback, the recovery."""
        from toolkit.report import write_report
        from toolkit.sim.demo import demo_setup, run_demo
        from toolkit.sim.scenario import load_scenario

        cfg, config_used = _config(config)
        setup = demo_setup(cfg, load_scenario(scenario), seed, minutes)
        path = Path(report) if report else Path("reports") / f"demo-{setup.scenario.name}-seed{setup.seed}.html"
        try:  # fail before the run, not after it
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"--report {path}: cannot create its folder ({error.strerror or error})") from None
        if output == Output.json:
            outcome = run_demo(setup, in_memory=in_memory, state_dir=state_dir)
        else:
            outcome = _run_live(setup, in_memory, state_dir)
        try:
            written = write_report(outcome.result, outcome.summary, path)
        except OSError as error:
            raise UserError(f"--report {path}: cannot write the report ({error.strerror or error})") from None
        summary = {**outcome.summary, "report": str(written), "config": config_used}
        if written.suffix.lower() != ".png":
            summary["report_png"] = str(written.with_suffix(".png"))
        emit(summary, output, _render_summary)


# ------------------------------------------------------------------------------------------------
# The live view and the final summary


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, force_terminal=None if sys.stderr.isatty() else False,
                   width=None if sys.stderr.isatty() else 120)


def _money(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"${value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _run_live(setup: Any, in_memory: bool, state_dir: str | None) -> Any:
    from rich.live import Live
    from rich.table import Table

    from toolkit.sim.demo import run_demo
    from toolkit.sim.runner import all_gpu_baseline

    console = _stderr_console()
    baseline_costs = all_gpu_baseline(setup)["cost_by_minute"]
    totals = {"cost": 0.0, "base": 0.0, "requests": 0}
    state: dict[str, Any] = {"phase_text": "starting"}
    live_enabled = console.is_terminal and not os.environ.get("HYBRID_NO_LIVE")

    def view(row: Any | None) -> Table:
        table = Table(title=f"hybrid demo: {setup.scenario.name} (seed {setup.seed}), {state['phase_text']}",
                      show_header=True, expand=False)
        table.add_column("minute")
        table.add_column("phase / step")
        table.add_column("weights neuron/gpu")
        table.add_column("instances")
        table.add_column("p99 neuron / gpu")
        table.add_column("$/1K neuron / gpu")
        table.add_column("savings vs all-GPU")
        if row is None:
            return table
        savings = 1.0 - totals["cost"] / totals["base"] if totals["base"] else None
        table.add_row(
            f"{row.minute + 1}/{setup.scenario.duration_minutes}",
            f"{row.phase or '-'} {row.step + 1 if row.phase == 'ramping' else ''}".strip(),
            f"{row.share[NEURON]:.1f}% / {row.share[GPU]:.1f}%",
            f"{row.instances[NEURON]} / {row.instances[GPU]}",
            f"{_ms(row.p99_ms[NEURON])} / {_ms(row.p99_ms[GPU])}",
            f"{_money(row.cost_per_1k[NEURON])} / {_money(row.cost_per_1k[GPU])}",
            "-" if savings is None else f"{savings:+.1%}",
        )
        table.caption = (row.reason[:160] + ("..." if len(row.reason) > 160 else "")) if row.reason else ""
        return table

    with Live(view(None), console=console, refresh_per_second=8, transient=False,
              auto_refresh=live_enabled) as live:
        def on_minute(row: Any, _result: Any) -> None:
            totals["cost"] += row.cost
            if row.minute < len(baseline_costs):
                totals["base"] += baseline_costs[row.minute]
            if row.action not in ("", "none", "hold") and not live_enabled:
                console.print(f"minute {row.minute + 1:>4}: {row.action:<9} {row.reason[:150]}")
            live.update(view(row))

        def on_phase(text: str) -> None:
            state["phase_text"] = text
            live.update(view(None))

        return run_demo(setup, in_memory=in_memory, state_dir=state_dir, on_minute=on_minute, on_phase=on_phase)


def _render_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"demo summary: {summary['scenario']} (seed {summary['seed']})", show_header=False)
    table.add_column("figure")
    table.add_column("value")

    def add(label: str, value: Any) -> None:
        table.add_row(label, "-" if value is None else str(value))

    add("simulated minutes", summary["minutes"])
    add("requests", f"{summary['requests']:,}")
    add("cost", _money(summary["total_cost"], 2))
    add("all-GPU cost (same traffic)", _money(summary.get("all_gpu_cost"), 2))
    savings = summary.get("savings_vs_all_gpu")
    add("savings vs all-GPU", None if savings is None else f"{savings:.1%}")
    add("cost per 1K (all-GPU)", f"{_money(summary['cost_per_1k'], 5)} ({_money(summary.get('all_gpu_cost_per_1k'), 5)})")
    add("final neuron share", f"{summary['final_neuron_share']}%")
    add("minutes to full migration", summary["minutes_to_full_migration"])
    add("fault onset (minute)", summary["fault_onset_minute"])
    add("fallback to gpu (minute)", summary["fallback_minute"])
    add("minutes from regression to fallback", summary["minutes_to_fallback"])
    add("...until gpu served everything", summary["minutes_to_effective_fallback"])
    add("neuron back after (minute)", summary["recovered_minute"])
    add("requests over the SLO", f"{summary['requests_over_slo']:,}")
    add("5XX served", f"{summary['errors_served']:,}")
    add("false rollbacks", summary["false_rollbacks"])
    add("wall time", f"{summary['wall_seconds']} s ({summary['mode']})")
    add("report", summary["report"])
    console.print(table)
