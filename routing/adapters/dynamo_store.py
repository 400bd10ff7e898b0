"""The in-account controller's StateStore: one DynamoDB table, a lease, and the decision log.

Table layout (one table per stack; several endpoints may share one):

    pk (S)            sk (S)                               attributes
    <endpoint>        "state"                              version (N), state (S: JSON), updated_at, lease_token
    <endpoint>        "lease"                              owner, token (N), expires_at (N, epoch s), acquired_at
    <endpoint>        "record#<iso time>#<unique suffix>"  record (S: JSON of one decision record)

Why JSON strings: records carry floats, and DynamoDB wants Decimals; a string keeps every
record byte-for-byte what the JSON file store writes, and the CLI reads both the same way.

Concurrency, two layers:
- the state's `version` is the fencing token of the StateStore protocol: every save is a
  conditional write on the version it loaded, so two ticks that loaded the same state can
  never both store a decision (the loser gets ConcurrentModification and stands aside before
  it touches the endpoint: the controller saves its intent first);
- the lease item serialises whole ticks: a writer must hold an unexpired lease (owner + token)
  for its save to succeed; the save renews it in the same transaction. A tick that started
  while another holds the lease stands aside instead of reconciling the other tick's intent
  while that tick is still applying it. `token` only ever grows (release expires the lease,
  it never deletes it), so a holder that stalled past its expiry and lost the lease cannot
  write with its old token.

Fencing at the endpoint (the state's version protects only the table): right before an endpoint
update the controller calls `fenced(version)`, which (1) refuses once this holder has run past its
deadline, LEASE_SECONDS - MAX_CLOCK_SKEW_SECONDS after its last successful lease write, measured
on its own monotonic clock; (2) re-validates and extends the lease with a conditional write
(owner, token, unexpired, and the state still at the version this tick saved). A holder that
stalled, or whose lease another controller took, sends nothing.

Clock skew: a reader never takes a lease over on its own clock alone. The lease item records the
holder's expiry (on the holder's clock); a reader may take it only once its own clock is
MAX_CLOCK_SKEW_SECONDS past that expiry. The bound is documented (docs/reliability.md): clocks
further apart than it (NTP keeps Lambda and EC2 within milliseconds) could let a reader take over
early, and then the holder's fence (the token changed) still stops its update.

Retention: every record item carries `ttl` (epoch seconds, RECORD_RETENTION_DAYS after its time);
the stack enables DynamoDB TTL on that attribute. State and lease items have none.

LEASE_SECONDS is longer than the Lambda's timeout (the CDK construct reads both constants from
here): once a lease has expired, its holder has certainly been stopped by Lambda, so the next
tick may safely repair whatever that holder left (routing/controller.py's intent protocol).
A CLI process has no such timeout; if it stalls longer than the lease, its final save fails
(fencing), but an endpoint update it already sent cannot be recalled: the next tick's
reconcile reads the live endpoint and keeps whatever reached it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from routing.core.errors import StateUnreadable, StorageError
from routing.core.model import Action, ConcurrentModification, ControllerState, Phase
from routing.core.records import DecisionRecord, StepText

log = logging.getLogger(__name__)

STATE_SK = "state"
LEASE_SK = "lease"
RECORD_PREFIX = "record#"
LAMBDA_TIMEOUT_SECONDS = 60  # the Lambda's timeout (cdk/controller.py uses it)
LEASE_SECONDS = 2 * LAMBDA_TIMEOUT_SECONDS  # > the timeout, with margin for clock skew between hosts
MAX_CLOCK_SKEW_SECONDS = 30  # the clock difference between hosts the lease tolerates (see the docstring)
RECORD_RETENTION_DAYS = 90  # record items expire (DynamoDB TTL attribute `ttl`) this long after their time
TTL_ATTRIBUTE = "ttl"
WRITE_ATTEMPTS = 5  # a throttled or conflicting write is retried this often (with backoff) before exit 3
RETRYABLE = ("ThrottlingError", "ProvisionedThroughputExceeded", "ProvisionedThroughputExceededException",
             "ThrottlingException", "TransactionConflict", "TransactionConflictException", "RequestLimitExceeded",
             "InternalServerError")


def _dumps(data: Any) -> str:
    from routing.adapters.json_store import dumps

    return dumps(data)


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


class LeaseHeld(ConcurrentModification):
    """Another controller holds an unexpired lease on this endpoint."""


class DynamoStateStore:
    """StateStore over one DynamoDB table (see the module docstring for the item layout)."""

    def __init__(
        self,
        table: str,
        endpoint: str,
        *,
        client: Any = None,
        clock: Any = None,
        owner: str | None = None,
        lease_seconds: int = LEASE_SECONDS,
        release_after_record: bool = True,
        skew_seconds: int = MAX_CLOCK_SKEW_SECONDS,
        monotonic: Any = None,
        retention_days: int = RECORD_RETENTION_DAYS,
        sleep: Any = None,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.table = table
        self.endpoint = endpoint
        self.client = client
        self.clock = clock
        # Unique per store instance: the Lambda's request id or host+pid, plus randomness.
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self.release_after_record = release_after_record
        self.skew_seconds = skew_seconds
        self.retention_days = retention_days
        # Elapsed time on this process's own clock (never the wall clock: it may jump); tests pass a fake.
        self.monotonic = monotonic or time.monotonic
        self.sleep = sleep or time.sleep
        self.renewed_at: float | None = None  # monotonic time of our last successful lease write
        self.token: int | None = None  # the fencing token of the lease this store holds
        self.holder: dict[str, Any] | None = None  # who held the lease when acquire() failed

    # -- helpers ---------------------------------------------------------------------------------

    def _now(self) -> datetime:
        if self.clock is not None:
            return self.clock.now()
        return datetime.now(UTC)

    def _key(self, sk: str) -> dict[str, Any]:
        return {"pk": {"S": self.endpoint}, "sk": {"S": sk}}

    @staticmethod
    def _code(error: Exception) -> str:
        return getattr(error, "response", {}).get("Error", {}).get("Code", "")

    # -- the lease ---------------------------------------------------------------------------------

    @property
    def holds_lease(self) -> bool:
        return self.token is not None

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; False (and `holder` set) otherwise."""
        from botocore.exceptions import ClientError

        now = self._now()
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key=self._key(LEASE_SK),
                UpdateExpression="SET #owner = :me, expires_at = :exp, acquired_at = :at ADD #token :one",
                # Expired on the holder's clock by more than the skew bound on ours: never on our clock alone.
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :stale OR #owner = :me",
                ExpressionAttributeNames={"#owner": "owner", "#token": "token"},
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":exp": {"N": str(_epoch(now) + self.lease_seconds)},
                    ":at": {"S": now.isoformat()},
                    ":one": {"N": "1"},
                    ":stale": {"N": str(_epoch(now) - self.skew_seconds)},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if self._code(error) != "ConditionalCheckFailedException":
                raise
            self.token = None
            self.holder = self.lease()
            return False
        self.token = int(answer["Attributes"]["token"]["N"])
        self.renewed_at = self.monotonic()
        self.holder = None
        return True

    def deadline_left(self) -> float:
        """Seconds (monotonic) before this holder must stop sending updates; <= 0: past it."""
        if self.token is None or self.renewed_at is None:
            return 0.0
        return self.lease_seconds - self.skew_seconds - (self.monotonic() - self.renewed_at)

    @contextlib.contextmanager
    def fenced(self, version: int | None) -> Iterator[None]:
        """Re-validate and extend the lease right before an endpoint update (see the module docstring).

        Raises ConcurrentModification (send nothing) past the deadline, when the lease was taken
        over, or when the state moved past `version`."""
        from botocore.exceptions import ClientError

        if self.deadline_left() <= 0:
            raise ConcurrentModification(
                f"not sent: this tick ran past its lease deadline on {self.endpoint} (lease {self.lease_seconds} s "
                f"- clock-skew bound {self.skew_seconds} s); another controller may be deciding")
        now = self._now()
        renew = {
            "Update": {
                "TableName": self.table, "Key": self._key(LEASE_SK),
                "UpdateExpression": "SET expires_at = :exp",
                "ConditionExpression": "#owner = :me AND #token = :tok",
                "ExpressionAttributeNames": {"#owner": "owner", "#token": "token"},
                "ExpressionAttributeValues": {":exp": {"N": str(_epoch(now) + self.lease_seconds)},
                                              ":me": {"S": self.owner}, ":tok": {"N": str(self.token)}},
            }
        }
        check = {"ConditionCheck": {
            "TableName": self.table, "Key": self._key(STATE_SK),
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": {":v": {"N": str(version or 0)}},
        }}
        started = self.monotonic()
        try:
            self._transact([renew, check])
        except ClientError as error:
            if self._code(error) != "TransactionCanceledException":
                raise
            lost = self.token
            self.token = None
            raise ConcurrentModification(
                f"not sent: the lease on {self.endpoint} (token {lost}) was taken over or the state moved past "
                f"version {version} (another controller decided meanwhile)") from None
        self.renewed_at = started  # the lease runs from before the write, never from after it
        if self.deadline_left() <= 0:  # the renewal itself stalled
            raise ConcurrentModification(f"not sent: the lease renewal on {self.endpoint} took past the deadline")
        yield

    def _transact(self, items: list[dict[str, Any]]) -> None:
        """transact_write_items, retrying throttling and transaction conflicts (with backoff); a
        condition failure is raised at once. Past the retries: StorageError (exit 3), said as it is."""
        from botocore.exceptions import ClientError

        for attempt in range(WRITE_ATTEMPTS):
            try:
                self.client.transact_write_items(TransactItems=items)
                return
            except ClientError as error:
                if not self._retryable(error) or attempt + 1 == WRITE_ATTEMPTS:
                    if self._retryable(error):
                        raise StorageError(
                            f"DynamoDB write to {self.table} for {self.endpoint} throttled or conflicting after "
                            f"{WRITE_ATTEMPTS} attempts ({self._reasons(error)}); nothing was saved") from None
                    raise
                self.sleep(min(0.05 * 2 ** attempt, 1.0))

    @staticmethod
    def _reasons(error: Exception) -> str:
        reasons = [r.get("Code") for r in getattr(error, "response", {}).get("CancellationReasons", []) or []]
        return ", ".join(r for r in reasons if r and r != "None") or DynamoStateStore._code(error)

    @classmethod
    def _retryable(cls, error: Exception) -> bool:
        code = cls._code(error)
        if code in RETRYABLE:
            return True
        if code == "TransactionCanceledException":
            reasons = [r.get("Code") for r in getattr(error, "response", {}).get("CancellationReasons", []) or []]
            return "ConditionalCheckFailed" not in reasons and any(r in RETRYABLE for r in reasons)
        return False

    def lease(self) -> dict[str, Any] | None:
        """The lease item as plain values (owner, token, expires_at, acquired_at), or None."""
        item = self.client.get_item(TableName=self.table, Key=self._key(LEASE_SK), ConsistentRead=True).get("Item")
        if not item:
            return None
        return {
            "owner": item.get("owner", {}).get("S"),
            "token": int(item.get("token", {}).get("N", "0")),
            "expires_at": int(item.get("expires_at", {}).get("N", "0")),
            "acquired_at": item.get("acquired_at", {}).get("S"),
        }

    def release(self) -> None:
        """Expire our lease (never delete it: the token must keep growing). No-op if not held."""
        from botocore.exceptions import ClientError

        if self.token is None:
            return
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(LEASE_SK),
                UpdateExpression="SET expires_at = :zero",
                ConditionExpression="#owner = :me AND #token = :tok",
                ExpressionAttributeNames={"#owner": "owner", "#token": "token"},
                ExpressionAttributeValues={":zero": {"N": "0"}, ":me": {"S": self.owner},
                                           ":tok": {"N": str(self.token)}},
            )
        except ClientError as error:
            if self._code(error) != "ConditionalCheckFailedException":
                raise
            log.warning("lease on %s was already taken over; nothing to release", self.endpoint)
        finally:
            self.token = None

    def holder_text(self) -> str:
        holder = self.holder or {}
        expires = holder.get("expires_at")
        when = datetime.fromtimestamp(expires, UTC).isoformat() if expires else "?"
        return f"lease on {self.endpoint} held by {holder.get('owner', '?')} (token {holder.get('token', '?')}) " \
               f"until {when}"

    def record_standing_aside(self, now: datetime, source: str = "cli") -> dict[str, Any]:
        """Append (and return) the record of a tick that found the lease taken: what it found, who holds it.

        For callers that take the lease before ticking (the Lambda, the CLI): a loser always leaves a record.
        """
        state = self.load()
        phase = state.phase.value if state is not None else "idle"
        steps = tuple(state.steps) if state is not None else ()
        reason = f"stood aside: {self.holder_text()}"
        record = DecisionRecord(
            time=now, tick_id=uuid.uuid4().hex, endpoint=self.endpoint, command="tick", source=source,
            phase_before=Phase(phase), phase=Phase(phase), step=StepText.of(state, steps) if state is not None
            else StepText(0, 0, None), action=Action.NONE, reason=reason, stood_aside=True,
            lease_holder=self.holder, state_version=state.version if state is not None else None, errors=(reason,),
            notes=("another controller holds the lease on this endpoint; this tick read nothing else",),
        ).to_dict()
        self.append_record(record)
        return record

    # -- state -------------------------------------------------------------------------------------

    def load(self) -> ControllerState | None:
        item = self.client.get_item(TableName=self.table, Key=self._key(STATE_SK), ConsistentRead=True).get("Item")
        if not item:
            return None
        where = f"the state item of {self.endpoint} in table {self.table}"
        try:
            data = json.loads(item["state"]["S"])
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            state = ControllerState.from_dict(data)
            version = int(item["version"]["N"])
        except (ValueError, TypeError, KeyError, AttributeError):
            raise StateUnreadable(f"{where} is not a controller state: run hybrid canary reset -c <config> "
                                  f"(rebuilds it from the live endpoint and the records)") from None
        if state.endpoint != self.endpoint:
            raise StateUnreadable(f"{where} belongs to endpoint {state.endpoint!r}: run hybrid canary reset")
        # The item's version attribute is the one the condition checks: it wins over the JSON copy.
        return state.evolve(version=version)

    def reset(self, state: ControllerState) -> ControllerState:
        """Overwrite the state item whatever it holds (`hybrid canary reset` only); version goes on
        from the stored one so a stale writer still fails its condition."""
        item = self.client.get_item(TableName=self.table, Key=self._key(STATE_SK), ConsistentRead=True).get("Item")
        try:
            old = int(item["version"]["N"]) if item else 0
        except (KeyError, ValueError):
            old = 0
        new = state.evolve(version=old + 1)
        self.client.put_item(TableName=self.table, Item={
            **self._key(STATE_SK), "version": {"N": str(new.version)}, "state": {"S": _dumps(new.to_dict())},
            "updated_at": {"S": self._now().isoformat()}, "lease_token": {"N": "0"}})
        return new

    def save(self, state: ControllerState, expected_version: int | None) -> ControllerState:
        """Conditional on the version (fencing) AND on holding the lease, which this save renews."""
        from botocore.exceptions import ClientError

        if self.token is None and not self.acquire():
            raise LeaseHeld(f"stood aside: {self.holder_text()}")
        now = self._now()
        new_version = (expected_version or 0) + 1
        new = state.evolve(version=new_version)
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                **self._key(STATE_SK),
                "version": {"N": str(new_version)},
                "state": {"S": _dumps(new.to_dict())},
                "updated_at": {"S": now.isoformat()},
                "lease_token": {"N": str(self.token)},
            },
        }
        if expected_version is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "version = :expected"
            put["ExpressionAttributeValues"] = {":expected": {"N": str(expected_version)}}
        renew = {
            "TableName": self.table,
            "Key": self._key(LEASE_SK),
            "UpdateExpression": "SET expires_at = :exp",
            "ConditionExpression": "#owner = :me AND #token = :tok AND expires_at >= :now",
            "ExpressionAttributeNames": {"#owner": "owner", "#token": "token"},
            "ExpressionAttributeValues": {
                ":exp": {"N": str(_epoch(now) + self.lease_seconds)},
                ":me": {"S": self.owner},
                ":tok": {"N": str(self.token)},
                ":now": {"N": str(_epoch(now))},
            },
        }
        started = self.monotonic()
        try:
            self._transact([{"Update": renew}, {"Put": put}])
        except ClientError as error:
            if self._code(error) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                lost = self.token
                self.token = None
                raise ConcurrentModification(
                    f"lost the lease on {self.endpoint} (token {lost}) before saving: another controller took over"
                ) from None
            current = self.load()
            raise ConcurrentModification(
                f"state of {self.endpoint} is at version {current.version if current else None}, "
                f"expected {expected_version}"
            ) from None
        self.renewed_at = started
        return new

    # -- records -----------------------------------------------------------------------------------

    def append_record(self, record: Mapping[str, Any]) -> None:
        """Write one record (never overwrites: conditional on a new key), then end our lease.

        Every tick and command ends with exactly one record, so this is where a tick's hold on
        the endpoint ends (release_after_record=False keeps it, for callers that manage it).
        """
        # Records of the same tick time (a tick and the one that stood aside beside it) sort by
        # the wall clock's nanoseconds, i.e. in the order they were written; the random tail
        # keeps two hosts from ever sharing a key.
        from botocore.exceptions import ClientError

        moment = str(record.get("time") or self._now().isoformat())
        sk = f"{RECORD_PREFIX}{moment}#{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        item: dict[str, Any] = {**self._key(sk), "record": {"S": _dumps(dict(record))}}
        if record.get("tick_id"):
            item["tick_id"] = {"S": str(record["tick_id"])}
        try:
            expires = _epoch(datetime.fromisoformat(moment)) + self.retention_days * 86400
            item[TTL_ATTRIBUTE] = {"N": str(expires)}
        except ValueError:
            pass
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(sk)")
                break
            except ClientError as error:
                if not self._retryable(error):
                    raise
                if attempt + 1 == WRITE_ATTEMPTS:
                    # The record stays in the state (`unrecorded`): the next tick appends it.
                    raise StorageError(f"the decision record of {self.endpoint} could not be written to {self.table} "
                                       f"after {WRITE_ATTEMPTS} attempts (throttled); it is kept in the state and "
                                       f"the next tick appends it") from None
                self.sleep(min(0.05 * 2 ** attempt, 1.0))
        if self.release_after_record:
            self.release()

    def has_record(self, tick_id: str) -> bool:
        """Is this tick's record in the table? (The newest records first; a recovered record is never
        appended twice, however many records came after it.)"""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "tick_id = :t OR contains(#r, :needle)",
            "ExpressionAttributeNames": {"#r": "record"},
            "ExpressionAttributeValues": {":pk": {"S": self.endpoint}, ":prefix": {"S": RECORD_PREFIX},
                                          ":t": {"S": tick_id}, ":needle": {"S": f'"tick_id":"{tick_id}"'}},
            "ScanIndexForward": False, "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            if page.get("Items"):
                return True
            if "LastEvaluatedKey" not in page:
                return False
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest `limit` records (all when None), oldest first."""
        if limit is not None and limit <= 0:
            return []
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": self.endpoint}, ":prefix": {"S": RECORD_PREFIX}},
            "ScanIndexForward": False,  # newest first, so a limit reads only what it returns
            "ConsistentRead": True,
        }
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - len(out)
            page = self.client.query(**kwargs)
            out += [json.loads(item["record"]["S"]) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page or (limit is not None and len(out) >= limit):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        out.reverse()
        return out


def create_table(client: Any, table: str) -> None:
    """The table as the stack defines it (keys and billing): for tests and the embedded AWS."""
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
