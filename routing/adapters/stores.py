"""Which StateStore a controller uses: the local JSON files, or the in-account controller's table.

- The DynamoDB table when a table is named (argument, or env HYBRID_TABLE) or when the config
  enables the in-account controller (`controller.enabled`; table `controller.table_name`,
  default `<name>-routing`): the CLI then reads and drives the same state as the Lambda, so
  `hybrid canary status|pause|resume|abort` work wherever the controller runs.
- Otherwise the JSON files under the config's state_dir (the CLI loop's store).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from routing.core.model import StateStore
from routing.env import TABLE_ENV


def table_for(config: Any, table: str | None = None) -> str | None:
    """The table to use, or None for the local files (explicit > env HYBRID_TABLE > config)."""
    name = table or os.environ.get(TABLE_ENV) or None
    if name:
        return name
    if config.controller.enabled:
        return str(config.controller.table(config.name))
    return None


def open_store(
    config: Any,
    *,
    table: str | None = None,
    state_dir: str | Path | None = None,
    base: Path | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    clock: Any = None,
    client: Any = None,
) -> StateStore:
    """The store for `config`'s endpoint (see the module docstring for the choice)."""
    name = table_for(config, table)
    if name is None:
        from routing.adapters.json_store import JsonFileStateStore, resolve_state_dir

        return JsonFileStateStore(resolve_state_dir(config, state_dir, base), config.name)
    from routing.adapters.dynamo_store import DynamoStateStore

    if client is None:
        from routing.adapters.aws import AwsClients

        client = AwsClients(region=config.region, profile=profile, endpoint_url=endpoint_url).get("dynamodb")
    return DynamoStateStore(name, config.name, client=client, clock=clock)
