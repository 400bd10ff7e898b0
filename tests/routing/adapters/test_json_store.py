"""JsonFileStateStore: atomic state, optimistic concurrency, append-only records, the lock."""

from __future__ import annotations

import fcntl
import json
import threading
from datetime import UTC, datetime

import pytest

from routing.core.errors import StorageError
from routing.model import ConcurrentModification, ControllerState, Intent, Phase
from routing.state import JsonFileStateStore


def _state(**changes) -> ControllerState:
    return ControllerState(endpoint="ep", **changes)


def test_load_returns_none_before_anything_was_saved(tmp_path):
    assert JsonFileStateStore(tmp_path, "ep").load() is None


def test_save_round_trips_and_bumps_version(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    when = datetime(2026, 1, 1, 10, tzinfo=UTC)
    first = store.save(_state(phase=Phase.RAMPING, step=2, steps=(5.0, 10.0, 100.0), phase_since=when,
                              intent=Intent.from_dict({"target": {"weights": {"neuron": 10.0}}})), None)
    assert first.version == 1
    loaded = store.load()
    assert loaded == first
    second = store.save(loaded.evolve(step=3), expected_version=1)
    assert second.version == 2 and store.load().step == 3


def test_save_writes_state_file_atomically_leaving_no_temp_files(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    store.save(_state(), None)
    store.save(_state(step=1), 1)
    files = sorted(p.name for p in store.directory.iterdir())
    assert files == ["lock", "state.json"]
    assert json.loads(store.state_path.read_text())["version"] == 2


def test_failed_write_keeps_previous_state_and_says_so_in_one_line(tmp_path, monkeypatch):
    store = JsonFileStateStore(tmp_path, "ep")
    store.save(_state(step=1), None)

    def crash(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("routing.state.os.replace", crash)
    with pytest.raises(StorageError, match=r"cannot write .*state.json: disk full .*nothing was saved") as error:
        store.save(_state(step=2), 1)
    assert error.value.exit_code == 3
    assert store.load().step == 1
    assert not [p for p in store.directory.iterdir() if p.name.endswith(".tmp")]


def test_stale_expected_version_raises_concurrent_modification(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    store.save(_state(), None)
    store.save(_state(step=1), 1)
    with pytest.raises(ConcurrentModification):
        store.save(_state(step=5), 1)
    assert store.load().step == 1


def test_creating_when_state_exists_raises_concurrent_modification(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    store.save(_state(), None)
    with pytest.raises(ConcurrentModification):
        store.save(_state(step=9), None)


def test_two_stores_on_the_same_directory_cannot_both_win(tmp_path):
    a, b = JsonFileStateStore(tmp_path, "ep"), JsonFileStateStore(tmp_path, "ep")
    a.save(_state(), None)
    seen = a.load().version
    a.save(_state(step=1), seen)
    with pytest.raises(ConcurrentModification):
        b.save(_state(step=2), seen)


def test_save_waits_for_the_lock_held_by_another_process(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    store.save(_state(), None)
    done = threading.Event()
    with open(store.lock_path, "a+") as other:  # a separate open file description, as another process has
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: (store.save(_state(step=1), 1), done.set()))
        worker.start()
        worker.join(timeout=0.2)
        assert not done.is_set()  # blocked on the lock: the check-and-write cannot interleave
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    worker.join(timeout=10)
    assert done.is_set() and store.load().step == 1


def test_records_are_appended_and_never_rewritten(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    store.append_record({"n": 1, "time": datetime(2026, 1, 1, tzinfo=UTC)})
    before = store.records_path.read_bytes()
    store.append_record({"n": 2, "phase": Phase.RAMPING})
    after = store.records_path.read_bytes()
    assert after.startswith(before)
    assert [r["n"] for r in store.records()] == [1, 2]
    assert store.records()[1]["phase"] == "ramping"
    assert store.records()[0]["time"] == "2026-01-01T00:00:00+00:00"


def test_records_limit_returns_newest_oldest_first(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    for n in range(5):
        store.append_record({"n": n})
    assert [r["n"] for r in store.records(limit=2)] == [3, 4]
    assert store.records(limit=0) == []


def test_torn_last_record_is_skipped_not_fatal(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    store.append_record({"n": 1})
    with open(store.records_path, "a") as handle:
        handle.write('{"n": 2, "trunc')  # a crash mid-append
    assert [r["n"] for r in store.records()] == [1]


def test_record_after_a_torn_line_starts_on_its_own_line(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep")
    store.append_record({"n": 1})
    with open(store.records_path, "a") as handle:
        handle.write('{"n": 2, "trunc')
    store.append_record({"n": 3})
    assert [r["n"] for r in store.records()] == [1, 3]


def test_records_rotate_past_the_size_limit_keeping_the_newest_files(tmp_path):
    store = JsonFileStateStore(tmp_path, "ep", rotate_bytes=500, keep=3)
    for n in range(100):
        store.append_record({"tick_id": f"t{n}", "n": n})
    rotated = sorted(p.name for p in store.directory.iterdir() if p.name.startswith("records.jsonl."))
    assert rotated == ["records.jsonl.1", "records.jsonl.2", "records.jsonl.3"]
    assert store.records()[-1]["n"] == 99 and store.has_record("t99")
    assert all(p.stat().st_size < 500 + 100 for p in store.directory.glob("records.jsonl*"))


def test_a_record_is_appended_once_per_tick_and_non_finite_numbers_become_null(tmp_path):
    import json

    store = JsonFileStateStore(tmp_path, "ep")
    store.append_record({"tick_id": "a", "p99": float("nan"), "rate": [float("inf"), 1.0]})
    store.append_record({"tick_id": "a", "p99": 1.0})
    lines = store.records_path.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0], parse_constant=lambda t: pytest.fail(t)) == {"tick_id": "a", "p99": None,
                                                                              "rate": [None, 1.0]}


@pytest.mark.parametrize("content", [b"", b'{"phase": "ramp', b"[1]", b"\xff\xfe", b'{"endpoint": "other"}'])
def test_an_unreadable_state_file_is_one_line_naming_the_file_and_reset(tmp_path, content):
    from routing.core.errors import StateUnreadable

    store = JsonFileStateStore(tmp_path, "ep")
    store.directory.mkdir(parents=True)
    store.state_path.write_bytes(content)
    with pytest.raises(StateUnreadable) as error:
        store.load()
    assert str(store.state_path) in str(error.value) and "hybrid canary reset" in str(error.value)
    assert "\n" not in str(error.value)
    assert store.reset(_state(step=0)).version == 1
    assert (store.directory / "state.json.corrupt-1").read_bytes() == content


def test_a_stale_version_is_fenced_before_the_endpoint_update(tmp_path):
    from routing.core.model import ConcurrentModification

    store = JsonFileStateStore(tmp_path, "ep")
    saved = store.save(_state(step=1), None)
    with store.fenced(saved.version):
        pass
    store.save(_state(step=2), saved.version)  # another tick decided meanwhile
    with pytest.raises(ConcurrentModification, match="not sent"), store.fenced(saved.version):
        pytest.fail("entered the fence with a stale version")
