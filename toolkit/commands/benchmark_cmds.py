"""hybrid loadtest: load the real endpoint's variants; latency, throughput and cost per 1K, side by side.

Was `hybrid benchmark` (kept as a hidden alias for one release): renamed so nobody takes it for
`hybrid compare-policies`, the simulated comparison of routing policies.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import typer

from toolkit.commands.common import ConfigOption, Output, OutputOption, deprecated_alias, emit, load
from toolkit.config import VARIANT_NAMES
from toolkit.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("loadtest")
    def benchmark(
        config: str = ConfigOption,
        concurrency: str = typer.Option("1,4,16", "--concurrency", help="Concurrency levels, comma-separated."),
        duration: float = typer.Option(60.0, "--duration", help="Seconds per level (upper bound)."),
        max_requests: int | None = typer.Option(None, "--max-requests", help="Requests per level (upper bound)."),
        latency_threshold_ms: float | None = typer.Option(
            None, "--latency-threshold-ms", help="Stop raising concurrency once p99 exceeds this (default: slo.p99_latency_ms)."
        ),
        url: str | None = typer.Option(
            None, "--url", help="Container-contract server(s) instead of SageMaker: URL, or neuron=URL,gpu=URL."
        ),
        variants: str = typer.Option("neuron,gpu", "--variants", help="Which variants to load, comma-separated."),
        payload: str | None = typer.Option(None, "--payload", help="Request body: JSON text or @file."),
        write_capacity: bool = typer.Option(
            False, "--write-capacity", help="Record each variant's per-instance capacity at the SLO in the config file."
        ),
        plot_path: str | None = typer.Option(None, "--plot", help="Write a PNG of latency and throughput."),
        output: Output = OutputOption,
    ) -> None:
        """Load test the endpoint: each variant (TargetVariant, or local servers with --url), its capacity and price."""
        from toolkit import benchmark as bench

        cfg = load(config)
        levels = bench.parse_concurrency(concurrency)
        names = [n.strip() for n in variants.split(",") if n.strip()]
        unknown = [n for n in names if n not in VARIANT_NAMES]
        if not names or unknown:
            raise UserError(f"--variants {variants!r}: choose from {', '.join(VARIANT_NAMES)}")
        body = bench.parse_payload(payload)
        if plot_path is not None and not plot_path.lower().endswith(".png"):
            raise UserError(f"--plot {plot_path}: the plot is a PNG; give a path ending in .png")
        targets: dict[str, Any]
        if url is not None:
            urls = bench.parse_urls(url, names)
            targets = {n: bench.HttpTarget(urls[n]) for n in names}
            mode = "url"
        else:
            targets = bench.sagemaker_targets(cfg, names, max(levels))
            mode = "sagemaker"

        report = _run_with_progress(bench, cfg, targets, levels, duration, max_requests, latency_threshold_ms, body,
                                    mode, show=output == Output.text and sys.stderr.isatty())
        if write_capacity:
            capacities = {n: r.capacity_rps_per_instance for n, r in report.variants.items()
                          if r.capacity_rps_per_instance}
            missing = [n for n in report.variants if n not in capacities]
            if missing:
                raise UserError(
                    f"no level of {', '.join(missing)} met the SLO (p99 <= {report.latency_threshold_ms:g} ms): "
                    f"nothing written; lower --concurrency or raise --latency-threshold-ms"
                )
            bench.write_capacity(config, capacities)
            report.capacity_written = {n: float(bench.format_capacity(c)) for n, c in capacities.items()}
        if plot_path is not None:
            bench.plot(report, plot_path)
        emit(report.to_dict(), output, lambda data: _render(data, config, plot_path))

    deprecated_alias(app, "benchmark", "loadtest", benchmark)


def _run_with_progress(bench: Any, cfg: Any, targets: dict[str, Any], levels: list[int], duration: float,
                       max_requests: int | None, threshold: float | None, body: bytes, mode: str, show: bool) -> Any:
    if not show:
        return bench.run_benchmark(cfg, targets, levels, duration, max_requests, threshold, body, mode)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    done = [0]
    lock = threading.Lock()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} levels"),
                  TextColumn("{task.fields[requests]} requests"), TimeElapsedColumn(),
                  console=_stderr_console(), transient=True) as progress:
        task = progress.add_task("benchmark", total=len(targets) * len(levels), requests=0)
        last = [0.0]

        def on_request() -> None:
            with lock:
                done[0] += 1
                now = time.monotonic()
                if now - last[0] < 0.2:  # keep the bar cheap under load
                    return
                last[0] = now
            progress.update(task, requests=done[0])

        def on_level(name: str, concurrency: int, level: Any) -> None:
            if level is None:
                progress.update(task, description=f"{name} at concurrency {concurrency}")
            else:
                progress.update(task, advance=1, requests=done[0])

        report = bench.run_benchmark(cfg, targets, levels, duration, max_requests, threshold, body, mode,
                                     on_level=on_level, on_request=on_request)
        progress.update(task, completed=len(targets) * len(levels))
    return report


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _render(data: dict[str, Any], config: str, plot_path: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]hybrid benchmark[/bold] {data['endpoint']} ({data['mode']}): p99 threshold "
        f"{data['latency_threshold_ms']:g} ms, error rate <= {data['max_error_rate']:.2%}; prices: {data['price_source']}"
    )
    levels = Table(title="Per concurrency level")
    for column in ("variant", "concurrency", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "SLO"):
        levels.add_column(column, justify="left" if column == "variant" else "right")
    for name, result in data["variants"].items():
        for lv in result["levels"]:
            levels.add_row(name, str(lv["concurrency"]), str(lv["requests"]), _fmt(lv["throughput_rps"]),
                           _fmt(lv["p50_ms"]), _fmt(lv["p90_ms"]), _fmt(lv["p99_ms"]), f"{lv['error_rate']:.2%}",
                           "[green]ok[/green]" if lv["within_slo"] else "[red]over[/red]")
    console.print(levels)

    names = list(data["variants"])
    side = Table(title="Side by side (best level within the SLO, per instance)")
    side.add_column("")
    for name in names:
        side.add_column(name, justify="right")
    rows: list[tuple[str, Any]] = [
        ("instance type", lambda r: r["instance_type"]),
        ("$ / hour", lambda r: f"{r['price_per_hour']:.3f}"),
        ("instances measured", lambda r: str(r["instances"])),
        ("best concurrency", lambda r: str(r["best_concurrency"] or "-")),
        ("capacity req/s / instance", lambda r: _fmt(r["capacity_rps_per_instance"])),
        ("p50 / p99 ms at best", lambda r: _best_latency(r)),
        ("$ per 1K inferences", lambda r: _fmt(r["cost_per_1k"], ".5f")),
        ("ramp stopped", lambda r: r["stopped"] or "-"),
    ]
    for label, cell in rows:
        side.add_row(label, *[cell(data["variants"][n]) for n in names])
    console.print(side)
    comparison = data["comparison"]
    if comparison.get("saving_percent") is not None:
        console.print(f"[bold]{comparison['cheaper']}[/bold] is {comparison['saving_percent']:.1f}% cheaper per inference")
    if data.get("capacity_written"):
        written = ", ".join(f"{n} {v:g} req/s" for n, v in data["capacity_written"].items())
        console.print(f"wrote capacity_rps_per_instance to {config} ({written}); backup {config}.bak")
    if plot_path:
        console.print(f"plot: {plot_path}")


def _best_latency(result: dict[str, Any]) -> str:
    best = next((lv for lv in result["levels"] if lv["concurrency"] == result["best_concurrency"]), None)
    return "-" if best is None else f"{_fmt(best['p50_ms'])} / {_fmt(best['p99_ms'])}"
