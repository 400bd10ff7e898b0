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
        plot_path: str | None = typer.Option(
            None, "--plot", help="Write the one-page verdict as a PNG: latency, cost per batch size, jitter, decision."
        ),
        batch_sizes: str = typer.Option(
            "1", "--batch-sizes", help="Batch sizes to send, e.g. 1,8,16,32 (the payload's --batch-key becomes a list)."
        ),
        batch_key: str = typer.Option("inputs", "--batch-key", help="Payload key whose value is batched."),
        gpu_batch_size: int | None = typer.Option(
            None, "--gpu-batch-size", help="The gpu's production batch size, compared on both first (default: smallest)."
        ),
        capacity_batch_size: int | None = typer.Option(
            None, "--capacity-batch-size", help="Batch size whose capacity --write-capacity records (default: each best)."
        ),
        rate: str | None = typer.Option(
            None, "--rate", help="Open loop: Poisson arrivals at R requests/s (or R1,R2,... a ramp); latency includes queueing."
        ),
        windows: int = typer.Option(5, "--windows", help="Repeated windows per level; P99 across them gives the jitter."),
        jitter_threshold: float = typer.Option(
            0.15, "--jitter-threshold", help="Flag a level whose P99 varies more than this across windows (CV)."
        ),
        first_requests: int = typer.Option(1, "--first-requests", help="First requests timed one by one, cold."),
        idle_seconds: float | None = typer.Option(
            None, "--idle-seconds", help="Also time one request after this many idle seconds."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the open-loop arrival times."),
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
        plan = bench.LoadPlan(
            windows=windows, batch_sizes=bench.parse_batch_sizes(batch_sizes), batch_key=batch_key,
            rates=None if rate is None else bench.parse_rates(rate), first_requests=first_requests,
            idle_s=idle_seconds, jitter_threshold=jitter_threshold, gpu_batch_size=gpu_batch_size,
            capacity_batch_size=capacity_batch_size, seed=seed,
        )
        plan.validate()
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
                                    mode, show=output == Output.text and sys.stderr.isatty(), plan=plan)
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
                       max_requests: int | None, threshold: float | None, body: bytes, mode: str, show: bool,
                       plan: Any = None) -> Any:
    plan = plan or bench.LoadPlan()
    if not show:
        return bench.run_benchmark(cfg, targets, levels, duration, max_requests, threshold, body, mode, plan=plan)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    done = [0]
    lock = threading.Lock()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} levels"),
                  TextColumn("{task.fields[requests]} requests"), TimeElapsedColumn(),
                  console=_stderr_console(), transient=True) as progress:
        steps = len(plan.rates) if plan.rates is not None else len(levels)
        total = len(targets) * steps * len(plan.batch_sizes)
        task = progress.add_task("benchmark", total=total, requests=0)
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
                where = f"{concurrency} req/s" if plan.rates is not None else f"concurrency {concurrency}"
                progress.update(task, description=f"{name} at {where}")
            else:
                progress.update(task, advance=1, requests=done[0])

        report = bench.run_benchmark(cfg, targets, levels, duration, max_requests, threshold, body, mode,
                                     on_level=on_level, on_request=on_request, plan=plan)
        progress.update(task, completed=total)
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
        f"[bold]hybrid loadtest[/bold] {data['endpoint']} ({data['mode']}): p99 threshold "
        f"{data['latency_threshold_ms']:g} ms, error rate <= {data['max_error_rate']:.2%}; prices: {data['price_source']}"
    )
    open_loop = data.get("load") == "open"
    load = (f"open loop, Poisson arrivals at {', '.join(f'{r:g}' for r in data['rates'])} req/s"
            if open_loop else "closed loop")
    console.print(f"load: {load}; {data['windows']} windows per level; batch sizes "
                  f"{', '.join(map(str, data['batch_sizes']))}")
    levels = Table(title="Per level (P99 CV: variation of P99 across windows)")
    step = "req/s in" if open_loop else "concurrency"
    for column in ("variant", "batch", step, "requests", "req/s", "inf/s", "p50 ms", "p90 ms", "p99 ms",
                   "P99 CV", "errors", "SLO"):
        levels.add_column(column, justify="left" if column == "variant" else "right")
    for name, result in data["variants"].items():
        for batch in result.get("batches") or [{"levels": result["levels"]}]:
            for lv in batch["levels"]:
                cv = "-" if lv.get("p99_cv") is None else f"{lv['p99_cv']:.0%}"
                if lv.get("jitter"):
                    cv = f"[red]{cv} jitter[/red]"
                levels.add_row(name, str(lv.get("batch_size", 1)),
                               _fmt(lv["rate_rps"], "g") if open_loop else str(lv["concurrency"]),
                               str(lv["requests"]), _fmt(lv["throughput_rps"]), _fmt(lv.get("inferences_per_s")),
                               _fmt(lv["p50_ms"]), _fmt(lv["p90_ms"]), _fmt(lv["p99_ms"]), cv,
                               f"{lv['error_rate']:.2%}", "[green]ok[/green]" if lv["within_slo"] else "[red]over[/red]")
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
        ("chosen batch size", lambda r: str(r.get("batch_size", 1))),
        ("best rate req/s" if open_loop else "best concurrency",
         lambda r: _fmt(r.get("best_rate"), "g") if open_loop else str(r["best_concurrency"] or "-")),
        ("capacity req/s / instance", lambda r: _fmt(r["capacity_rps_per_instance"])),
        ("p50 / p99 ms at best", lambda r: _best_latency(r)),
        ("$ per 1K inferences", lambda r: _fmt(r["cost_per_1k"], ".5f")),
        ("ramp stopped", lambda r: r["stopped"] or "-"),
        ("first request ms", _first_request),
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
    if data.get("verdict"):
        _render_verdict(console, data["verdict"])


def _first_request(result: dict[str, Any]) -> str:
    first = result.get("first_request")
    if not first:
        return "-"
    if first.get("error") and not first["first_ms"]:
        return f"[red]failed: {first['error']}[/red]"
    text = " / ".join(_fmt(ms) for ms in first["first_ms"]) or "-"
    if first.get("after_idle_ms") is not None:
        text += f"; after {first['after_idle_s']:g} s idle {_fmt(first['after_idle_ms'])}"
    return f"[red]{text} > SLO[/red]" if first["breaks_slo"] else text


def _render_verdict(console: Any, verdict: dict[str, Any]) -> None:
    from rich.panel import Panel
    from rich.table import Table

    table = Table(show_header=True, box=None)
    table.add_column("")
    for name in ("neuron", "gpu"):
        table.add_column(name, justify="right")
    apples = verdict["apples_batch_size"]
    table.add_row(f"$ / 1K at the SLO, batch {apples} on both",
                  *[_fmt(verdict["apples_cost_per_1k"].get(n), ".5f") for n in ("neuron", "gpu")])
    table.add_row("best batch size", *[str(verdict["best_batch_size"].get(n) or "-") for n in ("neuron", "gpu")])
    table.add_row("$ / 1K at the SLO, best batch",
                  *[_fmt(verdict["best_cost_per_1k"].get(n), ".5f") for n in ("neuron", "gpu")])
    table.add_row(f"P99 jitter (> {verdict['jitter_threshold']:.0%} flagged)",
                  *[("[red]" if verdict["jitter"][n] else "") + ("-" if verdict["p99_cv"][n] is None
                    else f"{verdict['p99_cv'][n]:.0%}") + (" FLAG[/red]" if verdict["jitter"][n] else "")
                    for n in ("neuron", "gpu")])
    table.add_row("first request breaks the SLO",
                  *[("[red]yes[/red]" if verdict["first_request_breaks_slo"][n] else "no") for n in ("neuron", "gpu")])
    saving = verdict["saving_percent"]
    apples_saving = verdict["apples_saving_percent"]
    lines = [
        f"saving on neuron: {_fmt(apples_saving)}% at batch {apples} (apples to apples), "
        f"{_fmt(saving)}% at each one's best batch size",
        *[f"- {reason}" for reason in verdict["reasons"]],
    ]
    color = {"migrate": "green", "optimize first": "yellow"}.get(verdict["decision"], "red")
    console.print(Panel.fit(table, title="Verdict"))
    console.print("\n".join(lines))
    console.print(f"[bold {color}]Verdict: {verdict['decision']}[/bold {color}]")


def _best_latency(result: dict[str, Any]) -> str:
    best = next((lv for lv in result["levels"] if lv["concurrency"] == result["best_concurrency"]), None)
    return "-" if best is None else f"{_fmt(best['p50_ms'])} / {_fmt(best['p99_ms'])}"
