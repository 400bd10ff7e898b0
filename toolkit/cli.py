"""The `hybrid` command. Errors become one line and an exit code; never a traceback.

Exit codes: 0 ok (progressed or held), 1 failed or rolled-back canary, 2 bad input, 3 AWS error.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer >= 0.29 vendors click

from toolkit.errors import EXIT_AWS, EXIT_BAD_INPUT, HybridError

app = typer.Typer(
    name="hybrid",
    help="Run one SageMaker endpoint on Inferentia2 and GPU: validate, compile, register, deploy, "
    "canary, route, demo, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module registers its commands; heavy imports stay inside the commands themselves.
COMMAND_MODULES = [
    "toolkit.commands.config_cmds",
    "toolkit.commands.routing_cmds",
    "toolkit.commands.pipeline_cmds",
    "toolkit.commands.benchmark_cmds",
    "toolkit.commands.demo_cmds",
    "toolkit.commands.bench_cmds",
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


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this; `main` exits with it)."""
    try:
        result = app(args=argv, prog_name="hybrid", standalone_mode=False)
    except typer.Exit as stop:
        return stop.exit_code
    except typer.Abort:
        _print_error("aborted")
        return 130
    except NoArgsIsHelpError as error:
        sys.stdout.write(error.format_message() + "\n")
        return 0
    except ClickException as error:
        _print_error(error.format_message())
        return EXIT_BAD_INPUT
    except HybridError as error:
        problems = getattr(error, "problems", None)
        source = getattr(error, "source", None)
        if problems:
            for problem in problems:
                _print_error(f"{source}: {problem}" if source else problem)
        else:
            _print_error(str(error))
        return error.exit_code
    except Exception as error:  # botocore errors without importing botocore at start-up
        module = type(error).__module__ or ""
        if module.startswith(("botocore", "boto3")):
            _print_error(f"AWS: {error}")
            return EXIT_AWS
        raise
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
