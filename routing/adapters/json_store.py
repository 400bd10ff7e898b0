"""The local state store: one JSON state file and an append-only record log per endpoint.

Layout: `<state_dir>/<endpoint>/state.json`, `records.jsonl`, `lock`.

- state.json is replaced atomically (write a temp file in the same directory, fsync it,
  os.replace, fsync the directory): a crash leaves either the old or the new state, never half.
- Every save checks the stored version (optimistic concurrency): a writer whose expected
  version is stale gets ConcurrentModification and must stand aside.
- The check-and-write runs under an exclusive fcntl.flock on `lock`, so two local processes
  (a `route run` loop and a human's `canary pause`) cannot both pass the check.
- records.jsonl is only ever appended (one JSON object per line, flushed and fsynced);
  nothing rewrites or truncates it. Retention: once it passes `rotate_bytes` (default 50 MB)
  it is renamed to records.jsonl.1 (.1 -> .2 ..., `keep` files kept) and a new one begins.
- Fencing at the endpoint: `fenced(version)` holds the lock and re-checks that the stored
  version is still the one this tick saved with its intent, for the duration of the endpoint
  update. A tick that stalled after saving its intent, while another tick decided (a fallback),
  finds a newer version and does not send (ConcurrentModification).
- A state file that cannot be read (truncated, empty, not JSON, wrong shape, not UTF-8, another
  endpoint's) raises StateUnreadable: one line naming the file and `hybrid canary reset`.
  Disk trouble (full disk, a file where the folder should be) raises StorageError (exit 3).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from routing.core.errors import StateUnreadable, StorageError, UserError
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


def finite(data: Any) -> Any:
    """NaN and infinities as None (unknown), recursively: JSON has no token for them, and a record
    with a bare NaN is not JSON."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple, set, frozenset)):
        return [finite(v) for v in data]
    if hasattr(data, "to_dict") and not isinstance(data, type):
        return finite(data.to_dict())
    return data


def dumps(data: Any) -> str:
    return json.dumps(finite(data), default=_json_default, sort_keys=False, separators=(",", ":"), allow_nan=False)


RECOVERY = "hybrid canary reset -c <config> (rebuilds it from the live endpoint and the records)"


def _disk_error(path: Path, error: OSError) -> StorageError | UserError:
    if isinstance(error, (NotADirectoryError, FileExistsError)) or error.errno in (errno.ENOTDIR, errno.EEXIST):
        return UserError(f"state_dir: {path} is not a folder (a file is in the way): point state_dir or "
                         f"--state-dir at a folder")
    return StorageError(f"cannot write {path}: {error.strerror or error} (disk full or read-only?); "
                        f"nothing was saved")


class JsonFileStateStore:
    """StateStore over local files (the CLI's store; DynamoDB backs the in-account controller)."""

    def __init__(self, state_dir: str | Path, endpoint: str, *, rotate_bytes: int = 50 * 1024 * 1024,
                 keep: int = 5) -> None:
        self.endpoint = endpoint
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.directory = Path(state_dir) / endpoint
        self.state_path = self.directory / STATE_FILE
        self.records_path = self.directory / RECORDS_FILE
        self.lock_path = self.directory / LOCK_FILE

    # -- locking ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive inter-process lock (blocking). Not re-entrant: do not nest."""
        self._mkdir()
        try:
            handle = open(self.lock_path, "a+")  # noqa: SIM115 - closed below
        except OSError as error:
            raise _disk_error(self.lock_path, error) from None
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _mkdir(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _disk_error(self.directory, error) from None

    @contextlib.contextmanager
    def fenced(self, version: int | None) -> Iterator[None]:
        """Hold the lock while the endpoint is updated, if the stored state is still at `version`.

        Raises ConcurrentModification (send nothing) when another tick saved since: the decision
        this tick is about to send is stale (e.g. it stalled while another tick fell back)."""
        with self.locked():
            current = self._read()
            stored = None if current is None else current.version
            if stored != version:
                raise ConcurrentModification(
                    f"not sent: state of {self.endpoint} moved to version {stored} since this tick saved "
                    f"version {version} (another controller decided meanwhile)")
            yield

    # -- state -------------------------------------------------------------------------------------

    def load(self) -> ControllerState | None:
        return self._read()

    def _read(self) -> ControllerState | None:
        path = self.state_path
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise UserError(f"state_dir: {self.directory.parent} is not a folder (a file is in the way): point "
                            f"state_dir or --state-dir at a folder") from None
        except UnicodeDecodeError:
            raise StateUnreadable(f"state file {path} is not UTF-8 text: run {RECOVERY}") from None
        except OSError as error:
            raise StateUnreadable(f"state file {path} cannot be read ({error.strerror}): run {RECOVERY}") from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            state = ControllerState.from_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            what = "empty" if not text.strip() else f"not a controller state ({str(error).splitlines()[0][:80]})"
            raise StateUnreadable(f"state file {path} is {what}: run {RECOVERY}") from None
        if state.endpoint != self.endpoint:
            raise StateUnreadable(f"state file {path} belongs to endpoint {state.endpoint!r}, not {self.endpoint!r}: "
                                  f"move it away or run {RECOVERY}")
        return state

    def reset(self, state: ControllerState) -> ControllerState:
        """Replace whatever state.json holds (corrupt or not) with `state`; the old file is kept beside
        it as state.json.corrupt-<n> for the post-mortem. `hybrid canary reset` only."""
        with self.locked():
            if self.state_path.exists():
                n = 1
                while (self.directory / f"{STATE_FILE}.corrupt-{n}").exists():
                    n += 1
                os.replace(self.state_path, self.directory / f"{STATE_FILE}.corrupt-{n}")
            new = state.evolve(version=1)
            self._write_atomically(dumps(new.to_dict()) + "\n")
            return new

    def save(self, state: ControllerState, expected_version: int | None) -> ControllerState:
        with self.locked():
            current = self._read()
            stored_version = None if current is None else current.version
            if stored_version != expected_version:
                raise ConcurrentModification(
                    f"state of {self.endpoint} is at version {stored_version}, expected {expected_version}"
                )
            new = state.evolve(version=(stored_version or 0) + 1)
            self._write_atomically(dumps(new.to_dict()) + "\n")
            return new

    def _write_atomically(self, text: str) -> None:
        try:
            self._write_atomically_or_raise(text)
        except OSError as error:
            raise _disk_error(self.state_path, error) from None

    def _write_atomically_or_raise(self, text: str) -> None:
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
        self._mkdir()
        line = dumps(dict(record))
        if "\n" in line:  # json.dumps never emits raw newlines; guard the one-record-per-line format
            raise ValueError("record serialised with a newline")
        data = (line + "\n").encode("utf-8")
        tick_id = record.get("tick_id")
        try:
            with self.locked():
                # Once per tick: a tick appending its own record and another recovering it from the
                # state (the outbox) may race; whoever comes second finds it and writes nothing.
                if tick_id and self._in_tail(str(tick_id)):
                    return
                self._rotate_if_due()
                self._append_bytes(data)
        except OSError as error:
            raise _disk_error(self.records_path, error) from None

    def _in_tail(self, tick_id: str, window: int = 256 * 1024) -> bool:
        needle = f'"tick_id":"{tick_id}"'.encode()
        try:
            with self.records_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - window))
                return needle in handle.read()
        except FileNotFoundError:
            return False

    def has_record(self, tick_id: str) -> bool:
        """Is the record of this tick in the log (current file or the newest rotated one)? Reads the
        files as bytes, no lookback limit: a recovered record is never appended twice."""
        needle = f'"tick_id":"{tick_id}"'.encode()
        for path in (self.records_path, self.records_path.with_name(f"{RECORDS_FILE}.1")):
            try:
                if needle in path.read_bytes():
                    return True
            except FileNotFoundError:
                continue
        return False

    def _rotate_if_due(self) -> None:
        """Under the lock: records.jsonl -> .1 -> .2 ... once it passes rotate_bytes (keep files)."""
        with contextlib.suppress(FileNotFoundError):
            if self.records_path.stat().st_size < self.rotate_bytes:
                return
            for n in range(self.keep - 1, 0, -1):
                older = self.records_path.with_name(f"{RECORDS_FILE}.{n}")
                if older.exists():
                    os.replace(older, self.records_path.with_name(f"{RECORDS_FILE}.{n + 1}"))
            os.replace(self.records_path, self.records_path.with_name(f"{RECORDS_FILE}.1"))

    def _append_bytes(self, data: bytes) -> None:
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
