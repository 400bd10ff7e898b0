"""The local state store: one JSON state file and an append-only record log per endpoint.

Layout: `<state_dir>/<endpoint>/state.json`, `records.jsonl`, `lock`.

- state.json is replaced atomically (write a temp file in the same directory, fsync it,
  os.replace, fsync the directory): a crash leaves either the old or the new state, never half.
- Every save checks the stored version (optimistic concurrency): a writer whose expected
  version is stale gets ConcurrentModification and must stand aside.
- The check-and-write runs under an exclusive fcntl.flock on `lock`, so two local processes
  (a `route run` loop and a human's `canary pause`) cannot both pass the check.
- records.jsonl is only ever appended (one JSON object per line, flushed and fsynced);
  nothing rewrites or truncates it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from routing.core.model import ConcurrentModification, ControllerState

STATE_FILE = "state.json"
RECORDS_FILE = "records.jsonl"
LOCK_FILE = "lock"


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps(data: Any) -> str:
    return json.dumps(data, default=_json_default, sort_keys=False, separators=(",", ":"))


class JsonFileStateStore:
    """StateStore over local files (the CLI's store; DynamoDB backs the in-account controller)."""

    def __init__(self, state_dir: str | Path, endpoint: str) -> None:
        self.endpoint = endpoint
        self.directory = Path(state_dir) / endpoint
        self.state_path = self.directory / STATE_FILE
        self.records_path = self.directory / RECORDS_FILE
        self.lock_path = self.directory / LOCK_FILE

    # -- locking ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive inter-process lock (blocking). Not re-entrant: do not nest."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # -- state -------------------------------------------------------------------------------------

    def load(self) -> ControllerState | None:
        try:
            text = self.state_path.read_text()
        except FileNotFoundError:
            return None
        return ControllerState.from_dict(json.loads(text))

    def save(self, state: ControllerState, expected_version: int | None) -> ControllerState:
        with self.locked():
            current = self.load()
            stored_version = None if current is None else current.version
            if stored_version != expected_version:
                raise ConcurrentModification(
                    f"state of {self.endpoint} is at version {stored_version}, expected {expected_version}"
                )
            new = state.evolve(version=(stored_version or 0) + 1)
            self._write_atomically(dumps(new.to_dict()) + "\n")
            return new

    def _write_atomically(self, text: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # fsync the directory so the rename itself survives a power loss.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- records -----------------------------------------------------------------------------------

    def append_record(self, record: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = dumps(dict(record))
        if "\n" in line:  # json.dumps never emits raw newlines; guard the one-record-per-line format
            raise ValueError("record serialised with a newline")
        data = (line + "\n").encode("utf-8")
        # O_APPEND: every write lands at the end even with several writers.
        with open(self.records_path, "ab+") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    data = b"\n" + data  # a crash left a torn line: never glue a good record onto it
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def _tail_lines(self, limit: int) -> list[str]:
        """The last lines of the log, read from the end: every tick reads the newest record; the log grows forever."""
        with self.records_path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            position = handle.tell()
            data = b""
            while position > 0 and data.count(b"\n") <= limit + 1:
                step = min(65536, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
        lines = data.decode("utf-8", errors="replace").splitlines()
        return lines[1:] if position > 0 else lines  # the first line may be cut in half

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest `limit` records (all when None), oldest first. A torn last line is skipped."""
        try:
            lines = self._tail_lines(limit) if limit is not None and limit > 0 else \
                self.records_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a crash mid-append leaves at most one torn line; the rest stands
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out


def resolve_state_dir(config: Any, state_dir: str | Path | None, base: Path | None = None) -> Path:
    """The JSON store's folder: --state-dir, else the config's state_dir; a relative path is taken
    from `base` (the config file's folder) when given. The one place a relative state_dir is resolved."""
    path = Path(state_dir if state_dir is not None else config.state_dir)
    if not path.is_absolute() and base is not None:
        path = base / path
    return path
