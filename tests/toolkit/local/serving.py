"""Run `hybrid local serve` as a subprocess, as a user or a CI job would, with bounded waits."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0  # seconds; importing moto on a loaded 2-core machine takes a while
STOP_TIMEOUT = 30.0


@dataclass
class Served:
    process: subprocess.Popen[str]
    lines: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.lines[0]


def _reader(stream: object, out: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line.rstrip("\n"))
    out.put(None)


def start(*args: str) -> Served:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", "local", "serve", *args], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    served = Served(process, [])
    while True:
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            process.kill()
            raise AssertionError(f"local serve printed nothing for {START_TIMEOUT}s") from None
        if line is None:
            process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"local serve exited {process.returncode}: {process.stderr.read()}")  # type: ignore[union-attr]
        served.lines.append(line)
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            served.env[name] = value
        if line.startswith("# ready"):
            return served


def stop(served: Served, signum: int = signal.SIGTERM) -> tuple[int, str]:
    """Send the signal; return the exit code and stderr (bounded wait, killed if it hangs)."""
    served.process.send_signal(signum)
    try:
        _, err = served.process.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.communicate()
        raise AssertionError(f"local serve ignored signal {signum} for {STOP_TIMEOUT}s") from None
    return served.process.returncode, err


@contextmanager
def serving(*args: str) -> Iterator[Served]:
    served = start(*args)
    try:
        yield served
    finally:
        if served.process.poll() is None:
            stop(served)
