"""Prepare the endpoint for a new neuron model: neuron at the first canary step before the update.

`RetainAllVariantProperties` keeps the live weights across an UpdateEndpoint: a new neuron model
deployed while neuron holds 100% would serve all production traffic at once, unjudged. So before
the update (`hybrid deploy` does this itself; `hybrid canary prepare-model-update` before a
`cdk deploy`):

1. the canary is paused through the controller (a recorded command), so no tick moves neuron back
   up between now and the update;
2. neuron's share goes down to the first canary step, capacity-aware like a gradual fallback
   (routing/core/versions.py's drain_target: gpu sized for its new share of the traffic, taking
   what its in-service instances carry, more as they come), each change applied through the router
   and written to the decision log;
3. after the update, the controller's next tick sees the new neuron model: the paused canary goes
   back to ramping from the first step and the new model is judged again (versions.check).

Nothing here decides a weight: the target is the core's; this module only sequences calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from routing.controller import Controller, live_summary
from routing.core.model import VARIANTS, Action, Phase
from routing.core.records import DecisionRecord
from routing.core.variants import GPU, NEURON
from routing.core.versions import SHARE_EPSILON, drain_target

COMMAND = "prepare-model-update"
PAUSABLE = (Phase.RAMPING, Phase.HOLDING)


@dataclass
class PrepareResult:
    endpoint: str
    first_step: float
    share_before: float
    share_after: float
    paused: bool
    updates: int
    records: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "first_step": self.first_step, "share_before": self.share_before,
                "share_after": self.share_after, "paused": self.paused, "updates": self.updates,
                "records": self.records}


def _traffic_rps(controller: Controller, fallback: float) -> float:
    """The endpoint's newest minute of traffic (req/s), from the same CloudWatch read as a tick."""
    now = controller.clock.now()
    observation = controller.metrics.observe(controller.endpoint, VARIANTS, now, 5)
    if not observation.known:
        return fallback
    per_minute: dict[Any, float] = {}
    for minutes in observation.minutes.values():
        for m in minutes:
            if m.invocations is not None:
                per_minute[m.start] = per_minute.get(m.start, 0.0) + m.invocations
    newest = [per_minute[k] for k in sorted(per_minute)][-3:]
    return max(newest) / 60.0 if newest else fallback


def prepare_model_update(controller: Controller, *, wait_in_service: Callable[[], Any],
                         max_updates: int = 20) -> PrepareResult:
    """Pause the canary and bring neuron down to the first step (see the module docstring)."""
    config = controller.config
    state = controller.store.load() or controller.policy.initial_state(config, controller.endpoint)
    steps = state.steps or tuple(config.canary.resolved_steps())
    first = float(steps[0])
    live = controller.router.describe()
    before = live.share(NEURON)
    records: list[dict[str, Any]] = []
    paused = False
    if state.phase in PAUSABLE:
        records.append(controller.tick_leased("pause").record)
        paused = True
        state = controller.store.load() or state
    updates = 0
    while True:
        rps = _traffic_rps(controller, float(state.memory.total_rps or 0.0))
        target = drain_target(config, live, first, rps)
        gpu = live.variants[GPU]
        if live.share(NEURON) <= first + SHARE_EPSILON and \
                max(gpu.desired_instance_count, gpu.current_instance_count) >= target.instance_counts[GPU]:
            break  # at the first step with gpu sized for the rest (staging sends weights and counts separately)
        if updates >= max_updates:
            from toolkit.errors import AwsError

            raise AwsError(f"neuron still at {live.share(NEURON):g}% after {updates} updates: gpu capacity is not "
                           f"coming into service; check the endpoint's FailureReason and instance quotas")
        after = controller.router.apply(target)
        updates += 1
        record = DecisionRecord(
            time=controller.clock.now(), tick_id=uuid.uuid4().hex, endpoint=controller.endpoint, command=COMMAND,
            phase_before=state.phase, phase=state.phase, action=Action.STEP_BACK,
            reason=(f"a new neuron model is about to be deployed: neuron {live.share(NEURON):g}% -> "
                    f"{target.weights[NEURON]:g}% toward step 1 ({first:g}%), gpu on "
                    f"{target.instance_counts[GPU]} instances for {rps:.1f} req/s"),
            target=target.to_dict(), before=live_summary(live), after=live_summary(after), applied=True,
            state_version=state.version, statistics={"sizing_rps": rps, "first_step": first},
        ).to_dict()
        controller.store.append_record(record)
        records.append(record)
        wait_in_service()
        live = controller.router.describe()
    return PrepareResult(controller.endpoint, first, before, live.share(NEURON), paused, updates, records)
