"""hybrid canary status --watch (a live view) and hybrid canary wait --timeout DURATION (a pipeline gate).

Both read the controller's own state and decision records, wherever they live: the local JSON
files of `hybrid route run`, or the in-account controller's DynamoDB table (the Lambda's; chosen
as every command chooses, routing.stores.open_store). Neither decides or changes anything.

- `canary status --watch` redraws the status view every `--interval` seconds: phase, step k/n,
  the live weights and counts, each gate of the last judgement with its numbers, the newest
  reasons. In a terminal it redraws in place; piped, it prints one frame per refresh (one JSON
  object per line with `--output json`). Ctrl-C ends it (exit 130), or `--count N` refreshes.
- `canary wait --timeout 30m` polls the state (no SageMaker call: the pipeline role needs only
  the table, or the files) until the canary is decided. Exit 0: holding (the ramp completed, or a
  promote); 1: it fell back (falling_back, cooling_down, or a fallback record since the wait
  began) or was aborted; 3: the endpoint is stuck (UpdateRollbackFailed/Failed: the controller's
  records say so) or the state cannot be read; 4: the timeout passed first; 2: no canary was
  started. Progress (each new decision record) goes to stderr; the outcome to stdout.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer

from routing.adapters.sagemaker import STUCK_STATUSES
from routing.core.model import Action, Phase, StateStore
from toolkit.commands.common import ConfigOption, Output, OutputOption, emit, load, to_jsonable
from toolkit.errors import EXIT_AWS, EXIT_OK, EXIT_ROLLED_BACK, UserError

EXIT_TIMED_OUT = 4
DEFAULT_POLL_SECONDS = 30.0  # a tick is a minute: polling faster only costs reads
RECENT_REASONS = 5
RECORDS_PER_POLL = 50  # more new records than this between two polls: the oldest are not shown

# Patched by tests so the controller ticks "while" the command waits, without real sleeping.
_sleep: Callable[[float], None] = time.sleep
_monotonic: Callable[[], float] = time.monotonic

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '30m', '2h', '1h30m', '1h30m15s'."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        match = _DURATION.match(value)
        if not value or match is None or not any(match.groups()):
            raise UserError(f"--timeout {text!r} is not a duration such as 90s, 30m, 2h or 1h30m") from None
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds < 0:
        raise UserError(f"--timeout {text!r} must not be negative")
    return seconds


# ------------------------------------------------------------------------------------------------
# wait


@dataclass(frozen=True)
class WaitOutcome:
    endpoint: str
    outcome: str  # holding | fell_back | aborted | stuck | timed_out
    phase: str
    exit_code: int
    waited_seconds: float
    reason: str
    last_record: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FAILED_PHASES = {Phase.FALLING_BACK: "fell_back", Phase.COOLING_DOWN: "fell_back", Phase.ABORTED: "aborted"}
FAILED_ACTIONS = {Action.FALLBACK.value: "fell_back", Action.ABORT.value: "aborted"}


def _progress_line(record: Mapping[str, Any]) -> str:
    step = record.get("step") or {}
    share = ((record.get("after") or {}).get("variants", {}).get("neuron") or {}).get("share_percent")
    shown = f" neuron {share:.1f}%" if isinstance(share, (int, float)) else ""
    return (f"{str(record.get('time', ''))[:19]} {record.get('phase', '?')} step {step.get('k', 0)}/"
            f"{step.get('n', 0)} {record.get('action', '?')}{shown}: {record.get('reason', '')}")


def _new_records(records: Sequence[Mapping[str, Any]], seen: set[str]) -> list[Mapping[str, Any]]:
    return [r for r in records if str(r.get("tick_id", "")) not in seen]


def wait_for(
    store: StateStore,
    endpoint: str,
    *,
    timeout: float,
    interval: float = DEFAULT_POLL_SECONDS,
    on_progress: Callable[[str], None] = lambda _line: None,
) -> WaitOutcome:
    """Poll `store` until the canary is decided or `timeout` seconds pass (see the module docstring)."""
    started = _monotonic()
    seen = {str(r.get("tick_id", "")) for r in store.records(limit=RECORDS_PER_POLL)}
    first = True
    last: Mapping[str, Any] | None = None
    while True:
        state = store.load()
        fresh = [] if first else _new_records(store.records(limit=RECORDS_PER_POLL), seen)
        first = False
        waited = _monotonic() - started
        if state is None or state.phase is Phase.IDLE:
            raise UserError(f"no canary to wait for on {endpoint}: the controller is idle; run "
                            f"`hybrid canary start -c <config>` first")
        for record in fresh:
            seen.add(str(record.get("tick_id", "")))
            last = record
            on_progress(_progress_line(record))
        for record in fresh:  # a fallback between two polls counts even if the phase moved on
            outcome = FAILED_ACTIONS.get(str(record.get("action")))
            if outcome is not None:
                return WaitOutcome(endpoint, outcome, state.phase.value, EXIT_ROLLED_BACK, waited,
                                   str(record.get("reason", "")), record)
        if state.phase in FAILED_PHASES:
            return WaitOutcome(endpoint, FAILED_PHASES[state.phase], state.phase.value, EXIT_ROLLED_BACK, waited,
                               f"the controller is {state.phase.value}", last)
        if state.phase is Phase.HOLDING:
            return WaitOutcome(endpoint, "holding", state.phase.value, EXIT_OK, waited,
                               "the canary reached holding (ramp complete or promoted)", last)
        # Only a stuck endpoint ends the wait with 3; a transient AWS error in one tick does not.
        stuck = fresh[-1] if fresh else None
        if stuck is not None and stuck.get("exit_code") == EXIT_AWS and \
                (stuck.get("before") or {}).get("status") in STUCK_STATUSES:
            return WaitOutcome(endpoint, "stuck", state.phase.value, EXIT_AWS, waited, str(stuck.get("reason", "")),
                               stuck)
        if waited >= timeout:
            return WaitOutcome(endpoint, "timed_out", state.phase.value, EXIT_TIMED_OUT, waited,
                               f"still {state.phase.value} after {waited:.0f} s (--timeout {timeout:.0f} s)", last)
        _sleep(min(interval, timeout - waited))


def _render_outcome(data: Mapping[str, Any]) -> None:
    sys.stdout.write(f"{data['endpoint']}: {data['outcome']} (phase {data['phase']}, exit {data['exit_code']}, "
                     f"waited {data['waited_seconds']:.0f} s): {data['reason']}\n")


# ------------------------------------------------------------------------------------------------
# watch


def watch_view(controller: Any, recent: int = RECENT_REASONS) -> dict[str, Any]:
    """The status view plus the newest reasons (what one frame of `--watch` shows)."""
    view = dict(controller.status())
    records = controller.store.records(limit=recent)
    view["recent"] = [{key: r.get(key) for key in ("time", "command", "phase", "action", "reason", "exit_code")}
                      for r in records]
    return view


def _frame(view: Mapping[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    step = view.get("step") or {}
    parts: list[Any] = [Text.from_markup(
        f"[bold]{view['endpoint']}[/bold] ({view['region']}) endpoint {view['endpoint_status']}; controller "
        f"[bold]{view['phase']}[/bold], step {step.get('k', 0)}/{step.get('n', 0)}, fallbacks {view['fallbacks']}"
        + (f"; last tick {str(view['last_tick_at'])[:19]}" if view.get("last_tick_at") else ""))]
    if view.get("failure_reason"):
        parts.append(Text(f"  FailureReason {view['failure_reason']}", style="red"))
    weights = Table(box=None, pad_edge=False)
    for column in ("variant", "share", "weight (cur/desired)", "count (cur/desired)"):
        weights.add_column(column)
    for name, v in ((view.get("live") or {}).get("variants") or {}).items():
        weights.add_row(name, f"{v['share_percent']:.1f}%", f"{v['current_weight']:g}/{v['desired_weight']:g}",
                        f"{v['current_instance_count']}/{v['desired_instance_count']}")
    parts.append(weights)
    last = view.get("last_judgement") or {}
    gates = last.get("gates") or []
    if gates:
        table = Table(box=None, pad_edge=False, title="gates (last judgement)", title_justify="left")
        for column in ("gate", "verdict", "value", "threshold", "detail"):
            table.add_column(column)
        for gate in gates:
            verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[yellow]wait[/yellow]"}.get(
                gate.get("passed"), "?")
            table.add_row(str(gate.get("name")), verdict, _num(gate.get("value")), _num(gate.get("threshold")),
                          str(gate.get("detail", "")))
        parts.append(table)
    if view.get("recent"):
        parts.append(Text("recent decisions:", style="bold"))
        for r in reversed(view["recent"]):
            parts.append(Text(f"  {str(r.get('time', ''))[:19]} {r.get('phase')} {r.get('action')}: {r.get('reason')}"))
    return Group(*parts)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def watch_status(controller: Any, output: Output, interval: float, count: int | None) -> int:
    """Redraw the view every `interval` seconds until Ctrl-C or `count` refreshes. Returns the exit code."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    shown = 0
    if output == Output.text and console.is_terminal:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                live.update(_frame(watch_view(controller)), refresh=True)
                shown += 1
                if count is not None and shown >= count:
                    return EXIT_OK
                _sleep(interval)
    while True:
        view = watch_view(controller)
        if output == Output.json:  # JSON Lines: one view per refresh
            sys.stdout.write(json.dumps(view, default=to_jsonable) + "\n")
            sys.stdout.flush()
        else:
            console.print(_frame(view))
            console.print()
        shown += 1
        if count is not None and shown >= count:
            return EXIT_OK
        _sleep(interval)


# ------------------------------------------------------------------------------------------------
# Commands


def register(app: typer.Typer) -> None:
    canary_app = next((g.typer_instance for g in app.registered_groups if g.name == "canary"), None)
    if canary_app is None:  # routing_cmds registers the group; without it there is nothing to extend
        return

    @canary_app.command("wait")
    def wait(
        config: str = ConfigOption, output: Output = OutputOption,
        timeout: str = typer.Option(..., "--timeout", help="Give up after this long (90s, 30m, 2h, 1h30m): exit 4."),
        interval: float = typer.Option(DEFAULT_POLL_SECONDS, "--interval", min=1.0,
                                       help="Seconds between reads of the controller's state."),
        state_dir: str | None = typer.Option(None, "--state-dir", help="Local state (default: the config's)."),
        endpoint_url: str | None = typer.Option(None, "--endpoint-url", help="AWS endpoint URL (the embedded AWS)."),
        profile: str | None = typer.Option(None, "--profile", help="AWS profile for real AWS."),
    ) -> None:
        """Block until the canary is decided: exit 0 holding/promoted, 1 fell back/aborted, 4 timed out.

        Reads the controller's state (its table when the in-account controller is enabled or
        HYBRID_TABLE is set, else the local files); progress on stderr, the outcome on stdout.
        """
        from routing.stores import open_store

        seconds = parse_duration(timeout)
        cfg = load(config)
        store = open_store(cfg, state_dir=state_dir, base=Path(config).resolve().parent, endpoint_url=endpoint_url,
                           profile=profile)

        def progress(line: str) -> None:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

        outcome = wait_for(store, cfg.name, timeout=seconds, interval=interval, on_progress=progress)
        emit(outcome.to_dict(), output, _render_outcome)
        raise typer.Exit(outcome.exit_code)


__all__ = ["EXIT_TIMED_OUT", "WaitOutcome", "parse_duration", "register", "wait_for", "watch_status", "watch_view"]
