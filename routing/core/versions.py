"""Model versions: every new neuron model is proven again before it serves more than the first step. Pure.

The router reads which model each variant serves (DescribeEndpointConfig's ModelName, then
DescribeModel's artifact and image; `EndpointLive.models`). The state remembers the models the
canary judged (`ControllerState.neuron_model` / `gpu_model`). Each tick, before the policy:

- `check(state, live, now)`: a neuron model different from the judged one (a `hybrid deploy`, a
  `cdk deploy`, the console) while the canary ramps, holds or is paused sends it back to the
  first step (Event.NEW_MODEL -> ramping, step 1, the step's minutes counted from now) and marks
  the model unjudged. Falling back or cooling down already re-ramp from the first step: the model
  is only marked unjudged. A new gpu model is recorded (and said in the record) but restarts
  nothing: gpu is the baseline the neuron canary is compared with.
- after the policy, `guard_unjudged(...)`: while the neuron model is unjudged, neuron's share only
  goes down to the first step, capacity-aware like a gradual fallback (gpu takes now what its
  in-service instances carry, sized for its new share, the rest as they come), and no decision
  moves it above the first step. Once the first step passes (the canary moves past it), the model
  is judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from routing.core.model import Action, ControllerState, Decision, EndpointLive, ModelVersion, Phase, Target
from routing.core.policy import gpu_needed
from routing.core.transitions import Event, allows, transition
from routing.core.variants import GPU, NEURON

if TYPE_CHECKING:  # the settings model is only read here (see docs/architecture.md)
    from toolkit.config import HybridConfig

SHARE_EPSILON = 0.05  # percentage points, as the policy's
RESTARTS = (Phase.RAMPING, Phase.HOLDING, Phase.PAUSED)  # phases whose canary a new neuron model restarts


@dataclass(frozen=True)
class VersionCheck:
    state: ControllerState
    revalidate: bool = False  # the canary goes back to the first step this tick
    notes: tuple[str, ...] = ()
    reason: str = ""  # the clause the tick's reason starts with when revalidating


def _changed(old: ModelVersion | None, new: ModelVersion | None) -> bool:
    return old is not None and new is not None and not new.same_as(old)


def check(state: ControllerState, live: EndpointLive, now: datetime) -> VersionCheck:
    """Record the live models; a changed neuron model under an active canary restarts it at the first step."""
    models: Mapping[str, ModelVersion] = live.models
    notes: list[str] = []
    gpu, neuron = models.get(GPU), models.get(NEURON)
    if gpu is not None and (state.gpu_model is None or not gpu.same_as(state.gpu_model)):
        if state.gpu_model is not None:
            notes.append(f"gpu model changed: {state.gpu_model.text()} -> {gpu.text()}; recorded, the neuron "
                         f"canary is not restarted (gpu is its baseline)")
        state = state.evolve(gpu_model=gpu)
    if neuron is None:
        return VersionCheck(state, False, tuple(notes))
    old = state.neuron_model
    if old is None:
        return VersionCheck(state.evolve(neuron_model=neuron), False, tuple(notes))
    if not _changed(old, neuron):
        if neuron != old:  # the artifact was not read before (or now): keep the record current
            state = state.evolve(neuron_model=neuron)
        return VersionCheck(state, False, tuple(notes))
    what = f"neuron model changed: {old.text()} -> {neuron.text()}"
    if state.phase in RESTARTS and allows(state.phase, Event.NEW_MODEL):
        steps = state.steps
        first = f"{steps[0]:g}%" if steps else "the first step"
        memory = replace(state.memory.restarted(now), live_since=now)  # the new model's minutes start now
        new = transition(state, Event.NEW_MODEL, step=0, step_started_at=None, phase_since=now, good_minutes=0,
                         paused_phase=None, fallbacks=0, cooldown_until=None, memory=memory,
                         neuron_model=neuron, neuron_model_unjudged=True)
        reason = f"{what}: re-validating from step 1 ({first}), the new model is unjudged"
        return VersionCheck(new, True, (*notes, reason), reason)
    if state.phase in (Phase.FALLING_BACK, Phase.COOLING_DOWN):
        notes.append(f"{what}: unjudged; the re-ramp after the cool-down judges it from step 1")
        return VersionCheck(state.evolve(neuron_model=neuron, neuron_model_unjudged=True), False, tuple(notes))
    notes.append(f"{what}: recorded ({state.phase.value}: no canary running); `canary start` judges it from step 1")
    return VersionCheck(state.evolve(neuron_model=neuron, neuron_model_unjudged=True), False, tuple(notes))


def judged(state: ControllerState) -> bool:
    """The unjudged model passed the first step: the canary moved past it (or a human promoted)."""
    return state.phase == Phase.HOLDING or (state.phase == Phase.RAMPING and state.step >= 1)


def _counts(config: HybridConfig, asked: Mapping[str, int], gpu: int) -> dict[str, int]:
    neuron_cfg, gpu_cfg = config.variants.neuron, config.variants.gpu
    neuron = max(neuron_cfg.min_count, min(neuron_cfg.max_count, int(asked.get(NEURON, neuron_cfg.initial_count))))
    return {NEURON: neuron, GPU: max(gpu_cfg.min_count, 1, min(gpu_cfg.max_count, gpu))}


def drain_target(config: HybridConfig, live: EndpointLive, first: float, sizing_rps: float) -> Target:
    """Neuron toward `first`: gpu takes now what its in-service instances carry and is sized for its new share."""
    share = live.share(NEURON)
    asked = {n: max(v.desired_instance_count, v.current_instance_count) for n, v in live.variants.items()}
    gpu = max(asked.get(GPU, 0), gpu_needed(config, 100.0 - first, sizing_rps))
    if sizing_rps <= 0:
        carry = 100.0
    else:
        # gpu's in-service instances at capacity / headroom, not at capacity: at rho = 1 every request
        # queues and goes over the SLO (the bench measured ~1,200 bad requests a minute at 60 req/s).
        capacity = (live.variants[GPU].current_instance_count * config.variants.gpu.capacity_rps_per_instance
                    / config.fallback.gpu_headroom)
        # min() before floor(): a vanishing rps would make the ratio infinite (found by hypothesis)
        carry = min(100.0, max(100.0 - share, math.floor(min(1000.0, 1000.0 * capacity / sizing_rps)) / 10.0))
    neuron = round(min(share, max(first, 100.0 - carry)), 4)
    return Target(weights={NEURON: neuron, GPU: round(100.0 - neuron, 4)}, instance_counts=_counts(config, asked, gpu))


def guard_unjudged(config: HybridConfig, decision: Decision, live: EndpointLive, now: datetime,
                   check_result: VersionCheck | None = None) -> Decision:
    """After the policy: an unjudged neuron model drains to the first step and never goes above it."""
    state = decision.state
    models = {name: m.text() for name, m in ((NEURON, state.neuron_model), (GPU, state.gpu_model)) if m is not None}
    if models:  # the record says which models this tick judged
        decision = replace(decision, statistics={**decision.statistics, "models": models,
                                                 "neuron_model_unjudged": state.neuron_model_unjudged})
    if check_result is not None and check_result.revalidate:
        decision = replace(decision, reason=f"{check_result.reason}; {decision.reason}")
    if not state.neuron_model_unjudged:
        return decision
    if judged(state):
        return replace(decision, state=state.evolve(neuron_model_unjudged=False))
    if decision.action in (Action.FALLBACK, Action.ABORT) or state.phase not in (Phase.RAMPING, Phase.PAUSED):
        return decision  # toward gpu already, or no canary moving traffic
    steps = state.steps or tuple(config.canary.resolved_steps())
    first = float(steps[0])
    share = live.share(NEURON) if NEURON in live.variants else 0.0
    wanted = float(decision.target.weights.get(NEURON, share)) if decision.target is not None else share
    total = sum(decision.target.weights.values()) if decision.target is not None else 100.0
    wanted = 100.0 * wanted / total if total > 0 else share
    if share <= first + SHARE_EPSILON and wanted <= first + SHARE_EPSILON:
        return decision  # at or below the first step: the canary judges it there
    if not live.in_service:
        return decision  # the policy already holds until InService; the drain follows then
    rps = float(decision.statistics.get("sizing_rps") or state.memory.total_rps or 0.0)
    target = drain_target(config, live, first, rps)
    gpu_share = target.weights[GPU]
    how = "all of it" if target.weights[NEURON] <= first + SHARE_EPSILON else \
        f"{gpu_share:g}% now (what its live instances carry), the rest as they come"
    reason = (f"neuron model {state.neuron_model.text() if state.neuron_model else '?'} is unjudged: neuron "
              f"{share:g}% -> {first:g}% (step 1); gpu takes {how} on {target.instance_counts[GPU]} instances")
    if check_result is not None and check_result.revalidate:
        reason = f"{check_result.reason}; {reason}"
    stats = {**decision.statistics, "unjudged_model": True, "first_step": first}
    return replace(decision, action=Action.STEP_BACK, reason=reason, target=target, statistics=stats,
                   state=state.evolve(last_change_at=now))
