"""hybrid canary start|status|pause|resume|promote|abort, hybrid route tick|run|log, hybrid status.

Every command builds the same controller (routing.controller.build_controller) the Lambda and
the demo use: CloudWatch + SageMaker through boto3, state and records in a local JSON store.
`--endpoint-url` (or env AWS_ENDPOINT_URL) targets the embedded AWS; without it, real AWS.
`--now` (or env HYBRID_NOW) pins the controller's clock: for tests and replays only.

Exit codes: 0 progressed or held (and a command that did what it was asked, abort included), 1 a tick
or loop fell back / rolled back, 2 bad input or a command the phase refuses, 3 AWS error.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from routing.env import DEFAULT_SETTLE_SECONDS
from toolkit.commands.common import ConfigOption, DryRunOption, Output, OutputOption, emit, load, to_jsonable
from toolkit.errors import EXIT_OK, UserError

EndpointUrlOption = typer.Option(
    None, "--endpoint-url", help="AWS endpoint URL (the embedded AWS); env AWS_ENDPOINT_URL also works."
)
ProfileOption = typer.Option(None, "--profile", help="AWS profile for real AWS.")
RegionOption = typer.Option(None, "--region", help="Must match the config's region (a guard, not an override).")
StateDirOption = typer.Option(
    None, "--state-dir", help="Controller state and records (default: the config's state_dir, next to the config)."
)
SettleOption = typer.Option(
    DEFAULT_SETTLE_SECONDS, "--settle-seconds", envvar="HYBRID_SETTLE_SECONDS", min=0, max=600,
    help="Extra delay before a CloudWatch minute counts as closed (60, as the Lambda: the newest minute "
         "may still be aggregating; 0 judges every minute that has ended).",
)
NowOption = typer.Option(
    None, "--now", envvar="HYBRID_NOW", help="Pin the clock (ISO 8601 UTC) for tests and replays.", hidden=True
)


def _controller(config_path: str, endpoint_url: str | None, profile: str | None, region: str | None,
                state_dir: str | None, now: str | None, settle_seconds: int = 0) -> Any:
    from routing.clock import ManualClock, parse_time
    from routing.controller import build_controller
    from routing.stores import open_store

    cfg = load(config_path)
    clock = None
    if now:
        try:
            clock = ManualClock(parse_time(now))
        except ValueError:
            raise UserError(f"--now {now!r} is not an ISO 8601 time such as 2026-01-01T10:00:00Z") from None
    base = Path(config_path).resolve().parent
    # The in-account controller's table when it is enabled (or env HYBRID_TABLE names one), so the
    # CLI drives the same state as the Lambda; otherwise the local JSON files.
    store = open_store(cfg, state_dir=state_dir, base=base, endpoint_url=endpoint_url, profile=profile, clock=clock)
    return build_controller(cfg, endpoint_url=endpoint_url, profile=profile, region=region,
                            clock=clock, settle_seconds=settle_seconds, store=store)


def _stood_aside(controller: Any, result: Any, output: Output) -> None:
    """Another controller held the lease (Controller.tick_leased left the stand-aside record)."""
    emit({"endpoint": controller.endpoint, "stood_aside": True, "action": "none",
          "reason": result.record.get("reason", "stood aside"), "exit_code": EXIT_OK}, output,
         lambda data: sys.stdout.write(f"{data['endpoint']}: {data['reason']}\n"))


def _lease_lost(result: Any) -> bool:
    return bool(result.stood_aside and result.decision is None)


# ------------------------------------------------------------------------------------------------
# Rendering for people


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _render_record(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    step = record.get("step") or {}
    colour = {"fallback": "red", "abort": "red", "progress": "green", "promote": "green"}.get(record["action"], "cyan")
    console.print(
        f"[bold]{record['endpoint']}[/bold] {record['phase_before']} -> [bold]{record['phase']}[/bold] "
        f"(step {step.get('k', 0)}/{step.get('n', 0)}): [{colour}]{record['action']}[/{colour}]"
        + ("  [yellow](dry run)[/yellow]" if record.get("dry_run") else "")
    )
    console.print(f"  {record['reason']}")
    table = Table(box=None, pad_edge=False)
    for column in ("variant", "share before", "share after", "count", "invocations", "5xx", "p50 ms",
                   "worst p99", "$/1K"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    before = (record.get("before") or {}).get("variants", {})
    after = (record.get("after") or {}).get("variants", {})
    metrics = (record.get("metrics") or {}).get("variants", {})
    for name in ("neuron", "gpu"):
        b, a, m = before.get(name, {}), after.get(name, {}), metrics.get(name, {})
        table.add_row(
            name, f"{_fmt(b.get('share_percent'))}%", f"{_fmt(a.get('share_percent'))}%",
            _fmt(a.get("desired_instance_count")), _fmt(m.get("invocations"), 0), _fmt(m.get("errors_5xx"), 0),
            _fmt(m.get("p50_ms")), _fmt(m.get("p99_ms_worst_minute")),
            _fmt((record.get("cost_per_1k") or {}).get(name), 4),
        )
    console.print(table)
    for gate in record.get("gates", []):
        verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[yellow]wait[/yellow]"}[gate["passed"]]
        console.print(f"  gate {gate['name']:<20} {verdict} {gate.get('detail', '')}")
    for problem in record.get("errors", []):
        console.print(f"  [red]error[/red] {problem}")
    for warning in record.get("warnings", []):
        console.print(f"  [yellow]warning[/yellow] {warning}")
    for note in record.get("notes", []):
        if note.startswith("staged update"):  # one stage of a larger move: progress, not a problem
            console.print(f"  [cyan]staged[/cyan] {note.removeprefix('staged update: ')}")
        else:
            console.print(f"  note: {note}")


def _render_status(view: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    step = view["step"]
    console.print(f"[bold]{view['endpoint']}[/bold] ({view['region']}) endpoint {view['endpoint_status']}; "
                  f"controller [bold]{view['phase']}[/bold], step {step['k']}/{step['n']}, "
                  f"fallbacks {view['fallbacks']}")
    if view.get("failure_reason"):
        console.print(f"  [red]FailureReason[/red] {view['failure_reason']}")
    if view.get("mismatch"):
        console.print(f"  [red]MISMATCH[/red] {view['mismatch']}")
    table = Table(box=None, pad_edge=False)
    for column in ("variant", "type", "share", "weight (cur/desired)", "count (cur/desired)"):
        table.add_column(column)
    for name, v in (view.get("live") or {}).get("variants", {}).items():
        table.add_row(name, v["instance_type"], f"{v['share_percent']:.1f}%",
                      f"{v['current_weight']:g}/{v['desired_weight']:g}",
                      f"{v['current_instance_count']}/{v['desired_instance_count']}")
    console.print(table)
    last = view.get("last_judgement")
    if last:
        console.print(f"  last: {last['time']} {last['action']}: {last['reason']}")
        failed = last.get("failed_gates") or []
        if failed:
            console.print(f"  [red]failed gates[/red]: {', '.join(failed)}")
    change = view.get("last_change")
    if change and change is not last and change.get("time") != (last or {}).get("time"):
        console.print(f"  last change: {change['time']} {change['action']}: {change['reason']}")


def _render_log(records: list[dict[str, Any]]) -> None:
    from rich.console import Console

    # Two lines per record (facts, then the reason): reasons are sentences, a table column would fold them.
    console = Console()
    if not records:
        console.print("no decision records yet")
    for r in records:
        step = r.get("step") or {}
        share = ((r.get("after") or {}).get("variants", {}).get("neuron") or {}).get("share_percent")
        applied = "dry run" if r.get("dry_run") else ("applied" if r.get("applied") else "")
        failed = f" failed: {', '.join(r['failed_gates'])}" if r.get("failed_gates") else ""
        console.print(f"{r['time'][:19]}  {r.get('command', 'tick'):<7} {r['phase']:<13} "
                      f"{step.get('k', 0)}/{step.get('n', 0)}  {r['action']:<9} neuron {_fmt(share)}%  "
                      f"{applied}{failed}", highlight=False)
        console.print(f"    {r['reason']}", highlight=False, style="dim")


def _wait(controller: Any, manual: bool, interval: float) -> None:
    if manual:
        controller.clock.advance(interval)  # a pinned clock: simulated time, no sleeping
    else:
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------
# Commands


def register(app: typer.Typer) -> None:
    canary_app = typer.Typer(help="Move traffic gpu -> neuron step by step, judged on latency, errors, cost.",
                             no_args_is_help=True)
    route_app = typer.Typer(help="Run the controller: one tick, a loop, or read the decision records.",
                            no_args_is_help=True)
    app.add_typer(canary_app, name="canary")
    app.add_typer(route_app, name="route")

    def _command(name: str, config: str, output: Output, dry_run: bool, endpoint_url: str | None,
                 profile: str | None, region: str | None, state_dir: str | None, now: str | None) -> None:
        controller = _controller(config, endpoint_url, profile, region, state_dir, now)
        result = controller.tick_leased(name, dry_run=dry_run)
        emit(result.record, output, _render_record)
        raise typer.Exit(result.exit_code)

    @canary_app.command("promote")
    def promote(
        full: bool = typer.Option(False, "--full", help="Skip every remaining step: straight to the target share."),
        config: str = ConfigOption, output: Output = OutputOption, dry_run: bool = DryRunOption,
        endpoint_url: str | None = EndpointUrlOption, profile: str | None = ProfileOption,
        region: str | None = RegionOption, state_dir: str | None = StateDirOption, now: str | None = NowOption,
    ) -> None:
        """Pass the current step now (ramping; a paused ramp resumes); --full goes to the end. Refused
        (exit 2) from idle, a fallback, a cool-down or an abort."""
        _command("promote-full" if full else "promote", config, output, dry_run, endpoint_url, profile, region,
                 state_dir, now)

    def _make(name: str, doc: str) -> None:
        def command(
            config: str = ConfigOption, output: Output = OutputOption, dry_run: bool = DryRunOption,
            endpoint_url: str | None = EndpointUrlOption, profile: str | None = ProfileOption,
            region: str | None = RegionOption, state_dir: str | None = StateDirOption, now: str | None = NowOption,
        ) -> None:
            _command(name, config, output, dry_run, endpoint_url, profile, region, state_dir, now)

        command.__doc__ = doc
        canary_app.command(name)(command)

    _make("start", "Begin the canary: the next tick takes step 1 (neuron capacity first, then traffic). "
                   "Already started from the same config: nothing to do, exit 0.")
    @canary_app.command("reset")
    def reset(
        config: str = ConfigOption, output: Output = OutputOption,
        endpoint_url: str | None = EndpointUrlOption, profile: str | None = ProfileOption,
        region: str | None = RegionOption, state_dir: str | None = StateDirOption, now: str | None = NowOption,
    ) -> None:
        """Rebuild an unreadable state from the live endpoint and the records (paused if neuron has weight,
        else idle); the old state file is kept beside it."""
        controller = _controller(config, endpoint_url, profile, region, state_dir, now)
        result = controller.reset()
        emit(result.record, output, _render_record)
        raise typer.Exit(result.exit_code)

    _make("pause", "Freeze the split where it is; ticks hold until resume.")
    _make("resume", "Continue from where the canary was paused.")
    _make("abort", "The big red button, in any phase: all traffic to gpu (sized for it), a record, exit 0.")

    @canary_app.command("status")
    def canary_status(
        config: str = ConfigOption, output: Output = OutputOption,
        endpoint_url: str | None = EndpointUrlOption, profile: str | None = ProfileOption,
        region: str | None = RegionOption, state_dir: str | None = StateDirOption, now: str | None = NowOption,
        watch: bool = typer.Option(False, "--watch", "-w", help="Live view: redraw every --interval s (Ctrl-C ends)."),
        interval: float = typer.Option(5.0, "--interval", min=0.0, help="With --watch: seconds between refreshes."),
        count: int | None = typer.Option(None, "--count", min=1, help="With --watch: stop after N refreshes."),
    ) -> None:
        """Phase, step k/n, live weights and counts, and the last judgement with its numbers."""
        controller = _controller(config, endpoint_url, profile, region, state_dir, now)
        if watch:  # toolkit/commands/watch_cmds.py
            from toolkit.commands.watch_cmds import watch_status

            raise typer.Exit(watch_status(controller, output, interval, count))
        emit(controller.status(), output, _render_status)

    # `hybrid status` is the same view as `hybrid canary status`: one function, two names.
    app.command("status", help="The endpoint (status, variants, split) and the controller (phase, last decision).")(
        canary_status
    )

    @route_app.command("tick")
    def tick(
        config: str = ConfigOption, output: Output = OutputOption, dry_run: bool = DryRunOption,
        endpoint_url: str | None = EndpointUrlOption, profile: str | None = ProfileOption,
        region: str | None = RegionOption, state_dir: str | None = StateDirOption, now: str | None = NowOption,
        settle_seconds: int = SettleOption,
    ) -> None:
        """One evaluation: read the endpoint and metrics, decide, apply, record (what a scheduler runs)."""
        controller = _controller(config, endpoint_url, profile, region, state_dir, now, settle_seconds)
        result = controller.tick_leased(dry_run=dry_run)
        if _lease_lost(result):
            _stood_aside(controller, result, output)
            raise typer.Exit(EXIT_OK)
        emit(result.record, output, _render_record)
        raise typer.Exit(result.exit_code)

    @route_app.command("run")
    def run(
        config: str = ConfigOption, output: Output = OutputOption, dry_run: bool = DryRunOption,
        interval: float = typer.Option(60.0, "--interval", min=0.0, help="Seconds between ticks."),
        max_ticks: int | None = typer.Option(None, "--max-ticks", min=1, help="Stop after this many ticks (exit 0)."),
        forever: bool = typer.Option(False, "--forever", help="Keep ticking in holding (steady state)."),
        endpoint_url: str | None = EndpointUrlOption, profile: str | None = ProfileOption,
        region: str | None = RegionOption, state_dir: str | None = StateDirOption, now: str | None = NowOption,
        settle_seconds: int = SettleOption,
    ) -> None:
        """Tick every --interval seconds until holding (exit 0) or a fallback/abort (exit 1). Ctrl-C stops."""
        from routing.controller import run_loop

        controller = _controller(config, endpoint_url, profile, region, state_dir, now, settle_seconds)
        manual = now is not None  # a pinned clock moves by --interval per tick

        def show(result: Any) -> None:
            if _lease_lost(result):  # another controller is ticking: wait for the next interval
                _stood_aside(controller, result, output)
            elif output == Output.json:  # one JSON object per line per tick (JSON Lines)
                sys.stdout.write(json.dumps(result.record, default=to_jsonable) + "\n")
                sys.stdout.flush()
            else:
                _render_record(result.record)

        code = run_loop(controller, wait=lambda: _wait(controller, manual, interval), on_result=show,
                        on_warning=lambda text: sys.stderr.write(f"warning: {text}\n"), dry_run=dry_run,
                        max_ticks=max_ticks, forever=forever)
        # Ctrl-C: run_loop recorded the interruption; toolkit/cli.py's run() prints the message.
        raise typer.Exit(code)

    @route_app.command("log")
    def log(
        config: str = ConfigOption, output: Output = OutputOption,
        limit: int = typer.Option(20, "--limit", "-n", min=0, help="Newest records to show (0: all)."),
        state_dir: str | None = StateDirOption, endpoint_url: str | None = EndpointUrlOption,
        profile: str | None = ProfileOption,
    ) -> None:
        """The decision records, oldest first (<state_dir>/<endpoint>/records.jsonl, or the controller's table)."""
        from routing.stores import open_store

        cfg = load(config)
        store = open_store(cfg, state_dir=state_dir, base=Path(config).resolve().parent, endpoint_url=endpoint_url,
                           profile=profile)
        records = store.records(limit=limit or None)
        emit(records, output, _render_log)


__all__ = ["register"]
