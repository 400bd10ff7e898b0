"""The `hybrid` command itself: version, completion, help, exit codes, JSON errors, Ctrl-C, names."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from tests.conftest import EXAMPLE_CONFIG, ROOT
from toolkit import __version__
from toolkit.cli import app, run


def _params(command: str) -> dict[str, Any]:
    import typer

    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]


def test_version_prints_the_package_version_and_exits_0(capsys):
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hybrid {__version__}"


def test_shell_completion_is_on(capsys):
    assert run(["--show-completion", "bash"]) == 0
    assert "_HYBRID_COMPLETE" in capsys.readouterr().out


def test_help_lists_exit_codes_and_environment_variables(capsys):
    assert run(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("Exit codes", "2 bad input", "3 AWS", "130 interrupted", "HYBRID_CONFIG", "HYBRID_TABLE",
                   "AWS_ENDPOINT_URL"):
        assert needle in text


def test_every_hybrid_environment_variable_the_code_reads_is_in_the_help():
    from toolkit.cli import EPILOG

    pattern = re.compile(r"""(?:environ\.get\(|_ENV = |envvar=)["'](HYBRID_[A-Z_]+)["']""")
    names = {name for folder in ("toolkit", "routing", "cdk") for path in (ROOT / folder).rglob("*.py")
             for name in pattern.findall(path.read_text())}
    assert {"HYBRID_CONFIG", "HYBRID_TABLE"} <= names
    assert sorted(name for name in names if name not in EPILOG) == []


def test_usage_error_with_json_output_is_a_json_object_on_stdout(capsys):
    code = run(["validate", "--bogus", "--output", "json"])
    captured = capsys.readouterr()
    assert code == 2
    document = json.loads(captured.out)
    assert document == {"ok": False, "exit_code": 2, "errors": [{"message": "No such option: --bogus",
                                                                  "text": "No such option: --bogus"}]}
    assert captured.err.strip() == "error: No such option: --bogus"


def test_errors_without_json_output_print_nothing_on_stdout(tmp_path, capsys):
    assert run(["validate", "-c", str(tmp_path / "nope.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"error: {tmp_path / 'nope.yaml'}: file not found")


def test_ctrl_c_exits_130_with_a_message(monkeypatch, capsys):
    from toolkit.commands import config_cmds

    def interrupted(_: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(config_cmds, "load", interrupted)
    assert run(["validate", "-c", str(EXAMPLE_CONFIG)]) == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err


def test_a_command_that_ends_with_exit_130_after_recording_ctrl_c_still_says_so(monkeypatch, capsys):
    """`route run` records the interruption and raises typer.Exit(130): the user sees why it stopped."""
    import typer

    from toolkit.commands import config_cmds

    def interrupted(_: Any) -> None:
        raise typer.Exit(130)

    monkeypatch.setattr(config_cmds, "load", interrupted)
    assert run(["validate", "-c", str(EXAMPLE_CONFIG)]) == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err


def test_piped_output_is_not_wrapped_at_80_columns(monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert run(["images", "-c", str(EXAMPLE_CONFIG)]) == 0
    lines = capsys.readouterr().out.splitlines()
    uri_lines = [line for line in lines if ".dkr.ecr." in line]
    assert len(uri_lines) == 2 and all(line.rstrip().endswith("-ubuntu20.04") for line in uri_lines)
    assert max(len(line) for line in lines) > 80
    assert "COLUMNS" not in os.environ  # restored for whatever runs next in this process


def test_a_users_own_columns_setting_wins(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "60")
    assert run(["images", "-c", str(EXAMPLE_CONFIG)]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 60


@pytest.mark.parametrize(("old", "new"), [("benchmark", "loadtest"), ("bench", "compare-policies")])
def test_old_benchmark_names_still_work_hidden_with_a_deprecation_line(tmp_path, capsys, old, new):
    assert run([old, "-c", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"`hybrid {old}` is deprecated" in err and f"use `hybrid {new}`" in err
    assert run(["--help"]) == 0
    listed = capsys.readouterr().out
    assert f" {new} " in listed and f"│ {old} " not in listed


def test_new_benchmark_names_print_no_deprecation(tmp_path, capsys):
    assert run(["loadtest", "-c", str(tmp_path / "nope.yaml")]) == 2
    assert "deprecated" not in capsys.readouterr().err


def test_dry_run_help_on_compile_and_register_says_what_they_do_not_do():
    compile_help = _params("compile")["dry_run"].help
    register_help = _params("register")["dry_run"].help
    assert "start no compilation job" in compile_help and "endpoint" not in compile_help
    assert "create, approve and write nothing" in register_help and "endpoint" not in register_help
    assert "never change the endpoint" in _params("deploy")["dry_run"].help
