"""The `hybrid` command. Errors become one line and an exit code; never a traceback.

Exit codes: 0 ok (progressed or held), 1 failed or rolled-back canary, 2 bad input, 3 AWS error,
130 interrupted (Ctrl-C). With `--output json` an error is also a JSON object on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer >= 0.29 vendors click

from toolkit.errors import EXIT_AWS, EXIT_BAD_INPUT, EXIT_INTERRUPTED, HybridError

PIPED_WIDTH = 512  # wider than any line we print (ARNs, image URIs), so nothing wraps in a log
HELP_WIDTH = 100

EPILOG = (
    "[bold]Exit codes[/bold]: 0 ok (progressed, held or promoted); 1 the canary fell back or was rolled back; "
    "2 bad input (config, flag, name: nothing was changed); 3 AWS or disk error; 4 timed out (`canary wait`); "
    "130 interrupted (Ctrl-C).\n\n"
    "[bold]Environment[/bold]: HYBRID_CONFIG (default for --config/-c); HYBRID_TABLE (keep controller state "
    "and decision records in this DynamoDB table instead of the local state_dir); AWS_ENDPOINT_URL (send every "
    "AWS call there, e.g. the embedded AWS); AWS_PROFILE, AWS_REGION (the usual AWS settings); HYBRID_NO_LIVE "
    "(no live view in `hybrid demo`); HYBRID_SETTLE_SECONDS (default for `route tick/run --settle-seconds`); "
    "HYBRID_NOW (pin the controller's clock, ISO 8601: tests and replays only); HYBRID_BUNDLE_CACHE (where "
    "`cdk synth` caches the controller bundle). The controller Lambda also reads HYBRID_TOPIC_ARN (its SNS "
    "topic), set by the stack.\n\n"
    "With --output json, an error is also printed on stdout as {\"ok\": false, \"errors\": [...]}."
)

app = typer.Typer(
    name="hybrid",
    help="Run one SageMaker endpoint on Inferentia2 and GPU: validate, compile, register, deploy, "
    "canary, route, demo, loadtest, compare-policies.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from toolkit import __version__

        try:
            from importlib.metadata import version

            installed = version("sagemaker-hybrid-routing")
        except Exception:  # not installed as a distribution (a source checkout on PYTHONPATH)
            installed = __version__
        sys.stdout.write(f"hybrid {installed}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run one SageMaker endpoint on Inferentia2 and GPU at once and move traffic between them safely."""


# Each module registers its commands; heavy imports stay inside the commands themselves.
COMMAND_MODULES = [
    "toolkit.commands.config_cmds",
    "toolkit.commands.routing_cmds",
    "toolkit.commands.model_update_cmds",  # adds `canary prepare-model-update` to routing_cmds' group
    "toolkit.commands.watch_cmds",
    "toolkit.commands.pipeline_cmds",
    "toolkit.commands.benchmark_cmds",
    "toolkit.commands.demo_cmds",
    "toolkit.commands.bench_cmds",
    "toolkit.commands.check_cmds",
    "toolkit.commands.parity_cmds",
    "toolkit.commands.report_cmds",
    "toolkit.commands.plan_cmds",
    "toolkit.commands.local_cmds",
]

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as _error:
        if _error.name != _name:
            raise
        continue  # that command group has not landed yet
    _module.register(app)


def _print_error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")


def _wants_json(argv: list[str]) -> bool:
    """Whether the command line asked for `--output json` (read before click parses, for its errors too)."""
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in ("--output", "-o") and index + 1 < len(argv):
            if argv[index + 1] == "json":
                return True
        elif arg in ("--output=json", "-ojson", "-o=json"):
            return True
    return False


def _fail(code: int, errors: list[dict[str, Any]], as_json: bool) -> int:
    """Each error as one line on stderr; for --output json also one object on stdout."""
    for error in errors:
        _print_error(error["text"])
    if as_json:
        document = {"ok": False, "exit_code": code, "errors": errors}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return code


def _interrupted(as_json: bool) -> int:
    message = "interrupted (Ctrl-C); the command stopped where it was"
    return _fail(EXIT_INTERRUPTED, [{"message": message, "text": message}], as_json)


def _error_dicts(error: HybridError) -> list[dict[str, Any]]:
    to_dicts = getattr(error, "to_dicts", None)
    if callable(to_dicts):  # ConfigError: file, line, path per problem
        return to_dicts()
    return [{"message": str(error), "text": str(error)}]


@contextmanager
def _wide_output_when_piped() -> Iterator[None]:
    """Rich wraps at 80 columns when stdout is not a terminal, splitting ARNs in CI logs.

    Every Console reads COLUMNS when it is created; a wide value keeps each line whole (tables are
    still only as wide as their content). The help screens are boxes as wide as the console, so
    they keep a readable width (typer's own width setting, the one TERMINAL_WIDTH sets).
    A user's own COLUMNS wins.
    """
    from typer import rich_utils

    set_here = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    help_width = rich_utils.MAX_WIDTH
    if set_here:
        os.environ["COLUMNS"] = str(PIPED_WIDTH)
        rich_utils.MAX_WIDTH = help_width or HELP_WIDTH
    try:
        yield
    finally:
        if set_here:
            os.environ.pop("COLUMNS", None)
            rich_utils.MAX_WIDTH = help_width


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this; `main` exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        with _wide_output_when_piped():
            result = app(args=args, prog_name="hybrid", standalone_mode=False)
    except typer.Exit as stop:
        if stop.exit_code == EXIT_INTERRUPTED:  # e.g. `route run` after recording the Ctrl-C
            return _interrupted(as_json)
        return stop.exit_code
    except SystemExit as stop:  # shell completion ends with sys.exit
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except (typer.Abort, KeyboardInterrupt):  # a prompt's abort, or Ctrl-C outside a command
        return _interrupted(as_json)
    except NoArgsIsHelpError as error:
        sys.stdout.write(error.format_message() + "\n")
        return 0
    except ClickException as error:
        message = error.format_message()
        return _fail(EXIT_BAD_INPUT, [{"message": message, "text": message}], as_json)
    except HybridError as error:
        return _fail(error.exit_code, _error_dicts(error), as_json)
    except Exception as error:  # botocore errors without importing botocore at start-up
        module = type(error).__module__ or ""
        if module.startswith(("botocore", "boto3")):
            message = f"AWS: {error}"
            return _fail(EXIT_AWS, [{"message": message, "text": message}], as_json)
        raise
    if result == EXIT_INTERRUPTED:
        # typer turns Ctrl-C inside a command into a silent `return 130`; say what happened
        return _interrupted(as_json)
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
