"""The in-account controller: an EventBridge schedule invokes this Lambda once per tick.

It runs the SAME tick as `hybrid route tick` (routing.controller.build_controller: CloudWatch
metrics, SageMaker router, the pure policy), with the DynamoDB store instead of local files:

 1. Controller.tick_leased() (as `hybrid route tick`): take the endpoint's lease
    (routing/adapters/dynamo_store.py); if another tick holds it, write a record saying this
    tick stood aside, and stop: two ticks never both act;
 2. then the tick itself: reconcile a crashed tick's intent from the live endpoint, read metrics,
    decide, save the intent, update the endpoint, save, record (the record releases the lease);
 3. publish to SNS when the tick fell back, aborted, or promoted (a manual promote, or the ramp
    reaching holding).

Environment (set by cdk/controller.py):
  HYBRID_CONFIG     JSON of the validated hybrid.yaml (the one source of truth; non-defaults only)
  HYBRID_TABLE      the DynamoDB table
  HYBRID_TOPIC_ARN  the SNS topic (optional: no notices without it)
  HYBRID_SETTLE_SECONDS  extra delay before a CloudWatch minute counts as closed (the stack sets
                    SETTLE_SECONDS: SageMaker's minutes land late, as `route tick --settle-seconds`)
  HYBRID_NOW        pin the clock (ISO 8601), for tests and replays only; never set by the stack

The returned summary (action, phase, exit code) shows in the invocation result; an AWS or
input error raises, so the Lambda's Errors alarm and the dead-letter queue see it. A fallback
(exit code 1) is a correct outcome, not a Lambda error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from routing.adapters.dynamo_store import DynamoStateStore
from routing.core.model import Action, Phase
from routing.core.records import DecisionRecord
from routing.env import CONFIG_JSON_ENV as CONFIG_ENV
from routing.env import DEFAULT_SETTLE_SECONDS, NOW_ENV, SETTLE_ENV, TABLE_ENV, TOPIC_ENV
from toolkit.errors import UserError

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

SETTLE_SECONDS = DEFAULT_SETTLE_SECONDS  # what the stack sets on real AWS (and the CLI default)
NOTIFY_ACTIONS = (Action.FALLBACK, Action.ABORT, Action.PROMOTE)


def config_env_value(config: Any) -> str:
    """What HYBRID_CONFIG holds: the validated config, fields that differ from the defaults only.

    Defaults come from the same toolkit/config.py bundled with the handler, so the Lambda
    rebuilds exactly the config the stack was synthesized from (Lambda allows 4 KB of env).
    """
    return str(config.model_dump_json(exclude_defaults=True))


def config_from_env(env: Mapping[str, str] | None = None) -> Any:
    from pydantic import ValidationError

    from toolkit.config import HybridConfig

    raw = (env if env is not None else os.environ).get(CONFIG_ENV)
    if not raw:
        raise UserError(f"{CONFIG_ENV} is not set: the stack passes the validated hybrid.yaml in it")
    try:
        return HybridConfig.model_validate_json(raw)
    except ValidationError as error:
        raise UserError(f"{CONFIG_ENV} is not a valid hybrid config: {error.errors()[0]['msg']}") from None


def _clock(env: Mapping[str, str]) -> Any:
    from routing.adapters.clock import ManualClock, SystemClock, parse_time

    pinned = env.get(NOW_ENV)
    return ManualClock(parse_time(pinned)) if pinned else SystemClock()


def notice(record: DecisionRecord) -> tuple[str, str] | None:
    """(subject, message) when operators must hear about this tick: fallback, abort, promotion."""
    if record.stood_aside or record.dry_run:
        return None
    stuck = _stuck_notice(record)
    if stuck is not None:
        return stuck
    ramp_done = record.phase_before == Phase.RAMPING and record.phase == Phase.HOLDING
    drift = bool((record.statistics or {}).get("drift"))  # a human changed the weights: paused, not reverted
    if record.action not in NOTIFY_ACTIONS and not ramp_done and not drift:
        return None
    what = "paused: weights changed outside the controller" if drift else \
        "promoted (ramp complete)" if ramp_done and record.action not in NOTIFY_ACTIONS else record.action.value
    subject = f"[hybrid] {record.endpoint}: {what}"[:100]
    after = (record.after or {}).get("variants") or {}
    message = {
        "endpoint": record.endpoint,
        "event": what,
        "time": record.time.isoformat(),
        "phase": record.phase.value,
        "reason": record.reason,
        "failed_gates": list(record.failed_gates),
        "applied": record.applied,
        "shares_after": {name: v.get("share_percent") for name, v in after.items()},
        "errors": list(record.errors),
    }
    return subject, json.dumps(message, indent=1, default=str)


def _stuck_notice(record: DecisionRecord) -> tuple[str, str] | None:
    """The endpoint is UpdateRollbackFailed/Failed (no update possible): alert on the first such tick."""
    from routing.adapters.sagemaker import STUCK_STATUSES
    from routing.controller import STUCK_FIRST_NOTE

    status = (record.before or {}).get("status")
    if status not in STUCK_STATUSES or not any(n.startswith(STUCK_FIRST_NOTE) for n in record.notes):
        return None
    message = {"endpoint": record.endpoint, "event": f"endpoint {status}", "time": record.time.isoformat(),
               "phase": record.phase.value, "reason": record.reason, "errors": list(record.errors)}
    return f"[hybrid] {record.endpoint}: endpoint {status}, action needed"[:100], json.dumps(message, indent=1)


# A warm Lambda container serves many ticks: build the boto3 clients and the controller once
# (creating a boto3 client costs ~0.2 s of model loading) and swap in each tick's store and clock.
_WARM: dict[tuple[Any, ...], Any] = {}


def reset_warm() -> None:
    """Forget the cached clients and controllers (tests; a new config always builds anew)."""
    _WARM.clear()


def _warm_clients(region: str, endpoint_url: str | None) -> Any:
    from routing.adapters.aws import AwsClients

    key = ("clients", region, endpoint_url)
    if key not in _WARM:
        _WARM[key] = AwsClients(region=region, endpoint_url=endpoint_url)
    return _WARM[key]


def _warm_controller(config: Any, *, clock: Any, store: Any, endpoint_url: str | None, settle_seconds: int) -> Any:
    from routing.controller import build_controller

    key = ("controller", config.model_dump_json(), endpoint_url, settle_seconds)
    controller = _WARM.get(key)
    if controller is None:
        controller = build_controller(config, clock=clock, store=store, endpoint_url=endpoint_url,
                                      settle_seconds=settle_seconds)
        _WARM[key] = controller
    controller.store = store  # this tick's lease holder
    controller.clock = clock
    return controller


def handle(
    event: Mapping[str, Any] | None,
    *,
    config: Any,
    table: str,
    topic_arn: str | None = None,
    clock: Any = None,
    endpoint_url: str | None = None,
    owner: str | None = None,
    settle_seconds: int = 0,
    store: DynamoStateStore | None = None,
    controller_factory: Any = None,
) -> dict[str, Any]:
    """One scheduled tick for the endpoint named by the event (default: the config's)."""
    from routing.adapters.clock import SystemClock

    endpoint = (event or {}).get("endpoint") or config.name
    if endpoint != config.name:
        raise UserError(f"event names endpoint {endpoint!r} but this controller's config is for {config.name!r}")
    clock = clock or SystemClock()
    clients = _warm_clients(config.region, endpoint_url)
    if store is None:
        store = DynamoStateStore(table, config.name, client=clients.get("dynamodb"), clock=clock, owner=owner)

    factory = controller_factory or _warm_controller
    controller = factory(config, clock=clock, store=store, endpoint_url=endpoint_url, settle_seconds=settle_seconds)
    # The same leased tick as `hybrid route tick`: stand aside (with a record) if another tick holds it.
    result = controller.tick_leased(source="lambda")
    log.info(json.dumps(result.record, default=str))
    record = result.typed or DecisionRecord.from_dict(result.record)
    if result.stood_aside and result.decision is None:
        return _summary(record, notified=False)

    # The outbox: a notice goes out once its record has landed. Records an earlier tick could not
    # write (throttled past its retries, or the process stopped) are appended by this tick from the
    # state, and their notices go out now: a fallback's notice is never lost with its record.
    for earlier in getattr(controller, "recovered", []) or []:
        _publish(clients, topic_arn, DecisionRecord.from_dict(earlier))
    notified = _publish(clients, topic_arn, record)
    return _summary(record, notified=notified)


def _publish(clients: Any, topic_arn: str | None, record: DecisionRecord) -> bool:
    message = notice(record)
    if message is None or not topic_arn:
        return False
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        clients.get("sns").publish(TopicArn=topic_arn, Subject=message[0], Message=message[1])
        return True
    except (ClientError, BotoCoreError) as error:
        # The tick is done and recorded; a lost notice must not undo it. Logged for the alarm on logs.
        log.error("SNS publish to %s failed: %s", topic_arn, error)
        return False


def _summary(record: DecisionRecord, *, notified: bool) -> dict[str, Any]:
    return {
        "endpoint": record.endpoint,
        "time": record.time.isoformat(),
        "action": record.action.value,
        "phase": record.phase.value,
        "reason": record.reason,
        "applied": record.applied,
        "stood_aside": record.stood_aside,
        "exit_code": record.exit_code,
        "notified": notified,
    }


def handler(event: Mapping[str, Any] | None, context: Any) -> dict[str, Any]:
    """The Lambda entry point (routing.lambda_handler.handler)."""
    env = os.environ
    table = env.get(TABLE_ENV)
    if not table:
        raise UserError(f"{TABLE_ENV} is not set: the stack passes the controller's DynamoDB table in it")
    owner = getattr(context, "aws_request_id", None)
    try:
        settle = int(env.get(SETTLE_ENV) or 0)
    except ValueError:
        raise UserError(f"{SETTLE_ENV} must be a whole number of seconds, not {env.get(SETTLE_ENV)!r}") from None
    return handle(event, config=config_from_env(env), table=table, topic_arn=env.get(TOPIC_ENV) or None,
                  clock=_clock(env), owner=f"lambda:{owner}" if owner else None, settle_seconds=settle)
