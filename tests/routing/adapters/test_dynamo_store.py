"""DynamoStateStore against moto: versioned saves, the lease (fencing token), records, the store factory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from routing.clock import ManualClock
from routing.dynamo_state import (
    LEASE_SECONDS,
    MAX_CLOCK_SKEW_SECONDS,
    RECORD_RETENTION_DAYS,
    DynamoStateStore,
    LeaseHeld,
    create_table,
)
from routing.model import ConcurrentModification, ControllerState, Intent, Phase
from routing.state import JsonFileStateStore, dumps
from routing.stores import open_store, table_for
from toolkit.local.server import patched_mock_aws

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TABLE = "ctl-routing"


@pytest.fixture
def ddb():
    with patched_mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


def _store(ddb, clock: ManualClock, owner: str, endpoint: str = "ep") -> DynamoStateStore:
    return DynamoStateStore(TABLE, endpoint, client=ddb, clock=clock, owner=owner)


def test_state_round_trips_with_the_version_as_stored(ddb):
    clock = ManualClock(T0)
    store = _store(ddb, clock, "a")
    assert store.load() is None
    state = ControllerState(endpoint="ep", phase=Phase.RAMPING, step=1, steps=(10.0, 50.0), phase_since=T0,
                            intent=Intent.from_dict({"target": {"weights": {"neuron": 50.0}}}))
    saved = store.save(state, None)
    assert saved.version == 1
    loaded = store.load()
    assert loaded == saved
    assert store.save(loaded.evolve(step=0), 1).version == 2
    assert store.load().step == 0


def test_a_save_from_a_stale_version_is_refused(ddb):
    clock = ManualClock(T0)
    store = _store(ddb, clock, "a")
    store.save(ControllerState(endpoint="ep"), None)
    with pytest.raises(ConcurrentModification, match="version 1, expected None"):
        store.save(ControllerState(endpoint="ep"), None)
    store.save(ControllerState(endpoint="ep", step=3), 1)
    with pytest.raises(ConcurrentModification, match="version 2, expected 1"):
        store.save(ControllerState(endpoint="ep", step=4), 1)
    assert store.load().step == 3


def test_only_one_of_two_stores_holds_the_lease_until_it_releases_it(ddb):
    clock = ManualClock(T0)
    a, b = _store(ddb, clock, "a"), _store(ddb, clock, "b")
    assert a.acquire() is True
    assert b.acquire() is False
    assert b.holder["owner"] == "a"
    with pytest.raises(LeaseHeld, match="held by a"):
        b.save(ControllerState(endpoint="ep"), None)
    assert b.load() is None  # the loser wrote nothing
    a.release()
    assert b.acquire() is True
    assert b.token > a.lease()["token"] - 1  # tokens only grow: release expires, never deletes


def test_an_expired_lease_is_taken_over_only_past_the_skew_bound_and_the_old_holder_can_no_longer_save(ddb):
    clock = ManualClock(T0)
    a, b = _store(ddb, clock, "a"), _store(ddb, clock, "b")
    assert a.acquire()
    first_token = a.token
    clock.advance(LEASE_SECONDS + 1)
    assert not b.acquire()  # expired on the holder's clock, but not by the skew bound on ours
    clock.advance(MAX_CLOCK_SKEW_SECONDS + 1)
    assert b.acquire()
    assert b.token == first_token + 1
    # a stalled past its lease: its token no longer matches, so the fencing refuses its write.
    with pytest.raises(ConcurrentModification, match="lost the lease"):
        a.save(ControllerState(endpoint="ep"), None)
    assert b.load() is None
    assert b.save(ControllerState(endpoint="ep"), None).version == 1


def test_a_save_renews_the_lease(ddb):
    clock = ManualClock(T0)
    a, b = _store(ddb, clock, "a"), _store(ddb, clock, "b")
    a.save(ControllerState(endpoint="ep"), None)  # acquires on first save
    clock.advance(LEASE_SECONDS - 10)
    a.save(ControllerState(endpoint="ep", step=1), 1)
    clock.advance(20)  # past the first expiry, within the renewed one
    assert not b.acquire()


def test_appending_a_record_ends_the_tick_and_releases_the_lease(ddb):
    clock = ManualClock(T0)
    a, b = _store(ddb, clock, "a"), _store(ddb, clock, "b")
    a.save(ControllerState(endpoint="ep"), None)
    assert not b.acquire()
    a.append_record({"time": T0.isoformat(), "action": "progress"})
    assert not a.holds_lease
    assert b.acquire()


def test_records_are_kept_in_order_per_endpoint_and_limited_to_the_newest(ddb):
    clock = ManualClock(T0)
    store, other = _store(ddb, clock, "a"), _store(ddb, clock, "b", endpoint="other")
    for i in range(7):
        store.append_record({"time": (T0 + timedelta(minutes=i)).isoformat(), "i": i, "x": 0.5})
    store.append_record({"time": (T0 + timedelta(minutes=6)).isoformat(), "i": 7})  # same time: kept too
    other.append_record({"time": T0.isoformat(), "i": 99})
    assert [r["i"] for r in store.records()] == list(range(8))
    assert [r["i"] for r in store.records(limit=3)] == [5, 6, 7]
    assert store.records(limit=0) == []
    assert [r["i"] for r in other.records()] == [99]
    assert store.records()[0]["x"] == 0.5  # floats survive (records are stored as JSON)


def test_records_page_through_more_than_one_query(ddb):
    clock = ManualClock(T0)
    store = _store(ddb, clock, "a")
    padding = "p" * 20_000  # ~20 KB per record: 1 MB query pages hold ~50
    for i in range(60):
        store.append_record({"time": (T0 + timedelta(seconds=i)).isoformat(), "i": i, "pad": padding})
    assert [r["i"] for r in store.records()] == list(range(60))
    assert [r["i"] for r in store.records(limit=55)] == list(range(5, 60))


def test_store_factory_picks_the_table_when_the_controller_is_enabled(example_config, tmp_path, monkeypatch):
    monkeypatch.delenv("HYBRID_TABLE", raising=False)
    assert table_for(example_config) is None
    assert isinstance(open_store(example_config, state_dir=tmp_path), JsonFileStateStore)
    enabled = example_config.model_copy(update={"controller": example_config.controller.model_copy(
        update={"enabled": True})})
    assert table_for(enabled) == f"{example_config.name}-routing"
    named = enabled.model_copy(update={"controller": enabled.controller.model_copy(update={"table_name": "t1"})})
    assert table_for(named) == "t1"
    assert table_for(example_config, "explicit") == "explicit"
    monkeypatch.setenv("HYBRID_TABLE", "from-env")
    assert table_for(example_config) == "from-env"
    store = open_store(example_config, client=object())
    assert isinstance(store, DynamoStateStore) and store.table == "from-env"


def test_a_store_that_finds_the_lease_taken_records_standing_aside_with_the_holder(ddb):
    clock = ManualClock(T0)
    a, b = _store(ddb, clock, "a"), _store(ddb, clock, "b")
    a.save(ControllerState(endpoint="ep", phase=Phase.RAMPING, steps=(10.0, 50.0)), None)
    assert not b.acquire()
    record = b.record_standing_aside(T0, source="cli")
    assert b.records() == [record]
    assert record["stood_aside"] and record["lease_holder"]["owner"] == "a" and record["phase"] == "ramping"
    assert "held by a" in record["reason"] and record["source"] == "cli"
    assert a.holds_lease  # the loser's record does not end the winner's lease


def test_a_save_is_one_transaction_checking_the_lease_token_and_the_version_together():
    """Exact request shape: the lease check and the versioned put commit or fail as one."""
    from botocore.stub import Stubber

    client = boto3.client("dynamodb", region_name="us-east-1")
    store = DynamoStateStore(TABLE, "ep", client=client, clock=ManualClock(T0), owner="me")
    store.token = 7  # as after acquire()
    now = int(T0.timestamp())
    state = ControllerState(endpoint="ep", step=2)
    expected = {"TransactItems": [
        {"Update": {
            "TableName": TABLE, "Key": {"pk": {"S": "ep"}, "sk": {"S": "lease"}},
            "UpdateExpression": "SET expires_at = :exp",
            "ConditionExpression": "#owner = :me AND #token = :tok AND expires_at >= :now",
            "ExpressionAttributeNames": {"#owner": "owner", "#token": "token"},
            "ExpressionAttributeValues": {":exp": {"N": str(now + LEASE_SECONDS)}, ":me": {"S": "me"},
                                          ":tok": {"N": "7"}, ":now": {"N": str(now)}},
        }},
        {"Put": {
            "TableName": TABLE,
            "Item": {"pk": {"S": "ep"}, "sk": {"S": "state"}, "version": {"N": "4"},
                     "state": {"S": dumps(state.evolve(version=4).to_dict())},
                     "updated_at": {"S": T0.isoformat()}, "lease_token": {"N": "7"}},
            "ConditionExpression": "version = :expected",
            "ExpressionAttributeValues": {":expected": {"N": "3"}},
        }},
    ]}
    with Stubber(client) as stub:
        stub.add_response("transact_write_items", {}, expected)
        assert store.save(state, 3).version == 4
        stub.assert_no_pending_responses()


def _throttle(ddb, code: str, times: int, operation: str = "TransactWriteItems"):
    from botocore.exceptions import ClientError

    real = ddb.transact_write_items
    left = {"n": times}

    def transact(**kwargs):
        if left["n"] > 0:
            left["n"] -= 1
            reasons = [{"Code": "None"}, {"Code": code}]
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": code},
                               "CancellationReasons": reasons}, operation)
        return real(**kwargs)

    ddb.transact_write_items = transact
    return left


def test_a_throttled_save_is_retried_and_then_lands(ddb):
    store = DynamoStateStore(TABLE, "ep", client=ddb, clock=ManualClock(T0), owner="a", sleep=lambda _s: None)
    store.save(ControllerState(endpoint="ep"), None)
    left = _throttle(ddb, "ThrottlingError", 2)
    assert store.save(ControllerState(endpoint="ep", step=1), 1).version == 2
    assert left["n"] == 0 and store.load().step == 1


def test_a_save_throttled_past_its_retries_says_so_and_is_not_a_version_conflict(ddb):
    from routing.core.errors import StorageError

    store = DynamoStateStore(TABLE, "ep", client=ddb, clock=ManualClock(T0), owner="a", sleep=lambda _s: None)
    store.save(ControllerState(endpoint="ep"), None)
    _throttle(ddb, "TransactionConflict", 99)
    with pytest.raises(StorageError, match=r"throttled or conflicting after 5 attempts .*TransactionConflict"):
        store.save(ControllerState(endpoint="ep", step=1), 1)


def test_record_items_carry_a_ttl_and_a_recovered_record_is_found_however_old(ddb):
    clock = ManualClock(T0)
    store = _store(ddb, clock, "a")
    store.append_record({"time": T0.isoformat(), "tick_id": "first", "action": "fallback"})
    for n in range(60):
        store.append_record({"time": (T0 + timedelta(minutes=n + 1)).isoformat(), "tick_id": f"t{n}"})
    items = ddb.scan(TableName=TABLE)["Items"]
    first = next(i for i in items if i.get("tick_id", {}).get("S") == "first")
    assert int(first["ttl"]["N"]) == int(T0.timestamp()) + RECORD_RETENTION_DAYS * 86400
    assert store.has_record("first") and not store.has_record("never")


def test_an_unreadable_or_foreign_state_item_is_one_line_naming_the_recovery(ddb):
    from routing.core.errors import StateUnreadable

    store = _store(ddb, ManualClock(T0), "a")
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "ep"}, "sk": {"S": "state"}, "version": {"N": "3"},
                                        "state": {"S": '{"phase": "ramp'}})
    with pytest.raises(StateUnreadable, match="hybrid canary reset"):
        store.load()
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "ep"}, "sk": {"S": "state"}, "version": {"N": "3"},
                                        "state": {"S": '{"endpoint": "other", "phase": "ramping"}'}})
    with pytest.raises(StateUnreadable, match="belongs to endpoint 'other'"):
        store.load()
    assert store.reset(ControllerState(endpoint="ep")).version == 4 and store.load().version == 4
