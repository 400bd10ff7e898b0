"""Operator safety through the CLI on the embedded AWS: a corrupt or foreign state is one line
(exit 2) and `abort` still works; `reset` rebuilds it; an abort from another state folder is not
undone by the loop (drift: paused, never reverted); status shows the live split and flags a
mismatch; a refused command changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.routing._aws import cli_endpoint
from toolkit.cli import run

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CORRUPT = {
    "truncated": b'{"endpoint": "x", "phase": "ramp',
    "empty": b"",
    "wrong shape": b"[1, 2, 3]",
    "not utf-8": b"\xff\xfe\x00garbage",
    "unknown phase": b'{"endpoint": "%s", "phase": "sideways"}',
    "another endpoint": b'{"endpoint": "someone-else", "phase": "ramping", "version": 3}',
}


@pytest.fixture
def setup(tmp_path, example_data, write_config):
    with cli_endpoint(tmp_path, example_data, write_config, neuron_weight=30.0, gpu_weight=70.0,
                      neuron_count=2, gpu_count=2) as world:
        yield {**world, "state": tmp_path / "state" / world["name"]}


def _cli(capsys, *args: str, now: datetime | None = T0) -> tuple[int, object, str]:
    capsys.readouterr()
    code = run([*args, "--output", "json", *(["--now", now.isoformat()] if now and args[:2] != ("route", "log")
                                             else [])])
    captured = capsys.readouterr()
    out = captured.out.strip()
    try:
        data = json.loads(out) if out else None
    except json.JSONDecodeError:
        data = out
    return code, data, captured.err


def _share(sm, name: str) -> float:
    variants = {v["VariantName"]: v for v in sm.describe_endpoint(EndpointName=name)["ProductionVariants"]}
    return 100.0 * variants["neuron"]["DesiredWeight"] / sum(v["DesiredWeight"] for v in variants.values())


def _corrupt(setup, kind: str) -> Path:
    path = setup["state"] / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    content = CORRUPT[kind]
    path.write_bytes(content % setup["name"].encode() if b"%s" in content else content)
    return path


@pytest.mark.parametrize("kind", list(CORRUPT))
@pytest.mark.parametrize("command", [("route", "tick"), ("canary", "start"), ("canary", "pause"),
                                     ("canary", "promote")])
def test_an_unreadable_state_is_one_line_naming_the_file_and_the_recovery(setup, capsys, kind, command):
    path = _corrupt(setup, kind)
    before = path.read_bytes()
    code, _, err = _cli(capsys, *command, "-c", setup["config"])
    assert code == 2, err
    assert "Traceback" not in err and str(path) in err and "hybrid canary reset" in err
    assert path.read_bytes() == before and _share(setup["sm"], setup["name"]) == 30.0


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_abort_works_with_an_unreadable_state_and_status_still_shows_the_live_split(setup, capsys, kind):
    _corrupt(setup, kind)
    code, status, _ = _cli(capsys, "canary", "status", "-c", setup["config"])
    assert code == 0 and status["weights"]["neuron"] == 30.0 and "canary reset" in status["mismatch"]
    code, record, err = _cli(capsys, "canary", "abort", "-c", setup["config"])
    assert code == 0, err
    assert record["action"] == "abort" and _share(setup["sm"], setup["name"]) == 0.0
    code, log, _ = _cli(capsys, "route", "log", "-c", setup["config"])
    assert log[-1]["action"] == "abort" and any("unreadable" in n for n in log[-1]["notes"])


def test_reset_rebuilds_the_state_from_the_live_endpoint_paused_and_keeps_the_old_file(setup, capsys):
    path = _corrupt(setup, "truncated")
    code, record, err = _cli(capsys, "canary", "reset", "-c", setup["config"])
    assert code == 0, err
    assert record["phase"] == "paused" and "neuron 30.0%" in record["reason"]
    assert (path.parent / "state.json.corrupt-1").read_bytes() == CORRUPT["truncated"]
    code, _, err = _cli(capsys, "canary", "resume", "-c", setup["config"], now=T0 + timedelta(minutes=1))
    assert code == 0, err


def test_an_abort_from_another_state_folder_is_not_undone_by_the_loop(setup, capsys):
    cfg = setup["config"]
    code, _, err = _cli(capsys, "canary", "start", "-c", cfg)
    assert code == 0, err
    tick = T0 + timedelta(minutes=1)
    code, record, err = _cli(capsys, "route", "tick", "-c", cfg, now=tick)
    assert code == 0, err
    live = _share(setup["sm"], setup["name"])
    assert live > 0
    other = setup["tmp"] / "elsewhere"
    code, record, err = _cli(capsys, "canary", "abort", "-c", cfg, "--state-dir", str(other), now=tick)
    assert code == 0 and record["action"] == "abort", err
    assert _share(setup["sm"], setup["name"]) == 0.0
    code, status, _ = _cli(capsys, "canary", "status", "-c", cfg, now=tick)
    assert "changed outside the controller" in status["mismatch"]
    for n in range(2, 6):
        code, record, err = _cli(capsys, "route", "tick", "-c", cfg, now=T0 + timedelta(minutes=n))
        assert _share(setup["sm"], setup["name"]) == 0.0, record["reason"]
    code, log, _ = _cli(capsys, "route", "log", "-c", cfg)
    drift = [r for r in log if r["reason"].startswith("drift:")]
    assert len(drift) == 1 and drift[0]["phase"] == "paused"
    assert drift[0]["statistics"]["drift"]["after_neuron_percent"] == 0.0


def test_promote_from_idle_is_refused_and_the_endpoint_is_untouched(setup, capsys):
    code, _, err = _cli(capsys, "canary", "promote", "--full", "-c", setup["config"])
    assert code == 2 and "cannot promote --full while idle" in err
    assert _share(setup["sm"], setup["name"]) == 30.0
    assert not (setup["state"] / "records.jsonl").exists()


def test_an_endpoint_url_without_a_scheme_is_one_line_exit_2(setup, capsys):
    code, _, err = _cli(capsys, "canary", "status", "-c", setup["config"], "--endpoint-url", "localhost:5000")
    assert code == 2 and "has no scheme" in err and "Traceback" not in err


def test_a_state_dir_that_is_a_file_is_one_line_exit_2(setup, capsys):
    blocker = setup["tmp"] / "a-file"
    blocker.write_text("x")
    code, _, err = _cli(capsys, "route", "tick", "-c", setup["config"], "--state-dir", str(blocker))
    assert code == 2 and "is not a folder" in err and "Traceback" not in err
