"""Application Auto Scaling adapter: the variants' scalable targets, read and (re)registered.

One owner for instance counts (docs/infrastructure.md, "Who owns what"): when a variant has a
scalable target, Application Auto Scaling owns its DesiredInstanceCount. The router never sets
that count itself (target tracking would move it back, and each of its scaling activities puts
the endpoint in `Updating`, which refuses the router's next update, a fallback included).
Instead the router owns the target's FLOOR and its scale-in switch:

- a count the policy asks for becomes the target's MinCapacity (RegisterScalableTarget on the
  existing target; MaxCapacity is raised with it if needed): autoscaling itself scales out to it;
- dynamic scale-in is suspended (SuspendedState.DynamicScalingInSuspended) for neuron while the
  canary ramps, and for both variants during a fallback episode (falling_back, cooling_down), so
  autoscaling cannot take away the capacity a step or the fallback just asked for; it is restored
  in every other phase (holding, paused, idle, aborted), and gpu (the donor) keeps it through a
  ramp. Scale-out and scheduled scaling are left as the target has them.
- where scale-in is allowed, a floor asking no more than the variant already has goes back to the
  configured min_count (wanted_scaling), so a count asked once is not the floor forever.

Calls: one DescribeScalableTargets per tick (both variants, filtered by resource id), and one
RegisterScalableTarget per variant whose floor or switch must change (at most two per tick, most
ticks none). They are counted in `api_calls`, apart from the router's SageMaker calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from routing.core.model import Phase
from toolkit.errors import AwsError

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# Phases in which autoscaling must not remove capacity the controller asked for: neuron's through
# a ramp (asked ahead of the steps) and a fallback episode (warm for the re-ramp); gpu's only in a
# fallback episode. During a ramp gpu is the donor: it may shed what its shrinking share no longer
# needs (a fallback re-asks gpu capacity for the whole traffic at once, routing/core/policy.py).
SCALE_IN_SUSPENDED_PHASES = frozenset({Phase.RAMPING, Phase.FALLING_BACK, Phase.COOLING_DOWN})
GPU_SCALE_IN_SUSPENDED_PHASES = frozenset({Phase.FALLING_BACK, Phase.COOLING_DOWN})


def scale_in_suspended(variant: str, phase: Phase) -> bool:
    return phase in (GPU_SCALE_IN_SUSPENDED_PHASES if variant == "gpu" else SCALE_IN_SUSPENDED_PHASES)
MIN_FLOOR = 1  # Application Auto Scaling keeps a real-time variant at >= 1 instance


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


@dataclass(frozen=True)
class VariantScaling:
    """A variant's scalable target as Application Auto Scaling has it."""

    variant: str
    min_capacity: int
    max_capacity: int
    scale_in_suspended: bool = False
    scale_out_suspended: bool = False
    scheduled_suspended: bool = False


class ScalableTargets:
    """The scalable targets of one endpoint's variants (those that have one)."""

    def __init__(self, client: Any, endpoint: str, variants: Sequence[str]) -> None:
        self._client = client
        self.endpoint = endpoint
        self.variants = tuple(variants)
        self.api_calls = 0

    def read(self) -> dict[str, VariantScaling]:
        """Variant -> its scalable target; a variant without one is absent (the router then sets counts)."""
        from botocore.exceptions import BotoCoreError, ClientError

        ids = {resource_id(self.endpoint, v): v for v in self.variants}
        out: dict[str, VariantScaling] = {}
        kwargs: dict[str, Any] = {"ServiceNamespace": NAMESPACE, "ResourceIds": list(ids),
                                  "ScalableDimension": DIMENSION}
        try:
            while True:
                self.api_calls += 1
                page = self._client.describe_scalable_targets(**kwargs)
                for t in page.get("ScalableTargets", []):
                    variant = ids.get(t.get("ResourceId", ""))
                    if variant is None:
                        continue
                    suspended = t.get("SuspendedState") or {}
                    out[variant] = VariantScaling(
                        variant=variant, min_capacity=int(t["MinCapacity"]), max_capacity=int(t["MaxCapacity"]),
                        scale_in_suspended=bool(suspended.get("DynamicScalingInSuspended", False)),
                        scale_out_suspended=bool(suspended.get("DynamicScalingOutSuspended", False)),
                        scheduled_suspended=bool(suspended.get("ScheduledScalingSuspended", False)),
                    )
                token = page.get("NextToken")
                if not token:
                    return out
                kwargs["NextToken"] = token
        except ClientError as error:
            message = str(error.response.get("Error", {}).get("Message", error))
            raise AwsError(f"DescribeScalableTargets {self.endpoint}: {message} (the controller needs "
                           f"application-autoscaling:DescribeScalableTargets)") from None
        except BotoCoreError as error:
            raise AwsError(f"DescribeScalableTargets {self.endpoint}: {error}") from None

    def register(self, wanted: VariantScaling) -> VariantScaling:
        """RegisterScalableTarget on the existing target: floor, ceiling and the three suspend switches."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.api_calls += 1
            self._client.register_scalable_target(
                ServiceNamespace=NAMESPACE, ResourceId=resource_id(self.endpoint, wanted.variant),
                ScalableDimension=DIMENSION, MinCapacity=wanted.min_capacity, MaxCapacity=wanted.max_capacity,
                # All three switches: a member left out would be reset to false (a human's suspension lost).
                SuspendedState={"DynamicScalingInSuspended": wanted.scale_in_suspended,
                                "DynamicScalingOutSuspended": wanted.scale_out_suspended,
                                "ScheduledScalingSuspended": wanted.scheduled_suspended},
            )
        except ClientError as error:
            message = str(error.response.get("Error", {}).get("Message", error))
            raise AwsError(f"RegisterScalableTarget {self.endpoint}/{wanted.variant}: {message}") from None
        except BotoCoreError as error:
            raise AwsError(f"RegisterScalableTarget {self.endpoint}/{wanted.variant}: {error}") from None
        return wanted


def wanted_scaling(current: VariantScaling, phase: Phase, floor: int | None, desired: int | None = None,
                   base: int | None = None) -> VariantScaling:
    """What the router wants of a target: the policy's count as the floor (if any), scale-in per phase. Pure.

    With `base` (the configured min_count) and `desired` (the variant's DesiredInstanceCount now):
    where scale-in is allowed, a floor that asks for no more than the variant already has (or no
    floor) gives MinCapacity back to `base`. Policy targets carry the counts already asked, so
    without the release every count ever asked (a peak, a ramp, a fallback) would stay the floor
    and autoscaling could never scale in again.
    """
    suspended = scale_in_suspended(current.variant, phase)
    wanted = replace(current, scale_in_suspended=suspended)
    if base is not None and not suspended and (floor is None or (desired is not None and floor <= desired)):
        floor = base
    if floor is not None:
        minimum = max(MIN_FLOOR, int(floor))
        wanted = replace(wanted, min_capacity=minimum, max_capacity=max(current.max_capacity, minimum))
    return wanted
