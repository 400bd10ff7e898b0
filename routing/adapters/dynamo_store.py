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

LEASE_SECONDS is longer than the Lambda's timeout (the CDK construct reads both constants from
here): once a lease has expired, its holder has certainly been stopped by Lambda, so the next
tick may safely repair whatever that holder left (routing/controller.py's intent protocol).
A CLI process has no such timeout; if it stalls longer than the lease, its final save fails
(fencing), but an endpoint update it already sent cannot be recalled: the next tick's
reconcile reads the live endpoint and keeps whatever reached it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from routing.core.model import Action, ConcurrentModification, ControllerState, Phase
from routing.core.records import DecisionRecord, StepText

log = logging.getLogger(__name__)

STATE_SK = "state"
LEASE_SK = "lease"
RECORD_PREFIX = "record#"
LAMBDA_TIMEOUT_SECONDS = 60  # the Lambda's timeout (cdk/controller.py uses it)
LEASE_SECONDS = 2 * LAMBDA_TIMEOUT_SECONDS  # > the timeout, with margin for clock skew between hosts


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
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now OR #owner = :me",
                ExpressionAttributeNames={"#owner": "owner", "#token": "token"},
                ExpressionAttributeValues={
                    ":me": {"S": self.owner},
                    ":exp": {"N": str(_epoch(now) + self.lease_seconds)},
                    ":at": {"S": now.isoformat()},
                    ":one": {"N": "1"},
                    ":now": {"N": str(_epoch(now))},
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
        self.holder = None
        return True

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
        state = ControllerState.from_dict(json.loads(item["state"]["S"]))
        # The item's version attribute is the one the condition checks: it wins over the JSON copy.
        return state.evolve(version=int(item["version"]["N"]))

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
        try:
            self.client.transact_write_items(TransactItems=[{"Update": renew}, {"Put": put}])
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
        moment = str(record.get("time") or self._now().isoformat())
        sk = f"{RECORD_PREFIX}{moment}#{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.client.put_item(
            TableName=self.table,
            Item={**self._key(sk), "record": {"S": _dumps(dict(record))}},
            ConditionExpression="attribute_not_exists(sk)",
        )
        if self.release_after_record:
            self.release()

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
