"""The in-memory world: the simulated endpoint and its metrics without any AWS emulation.

`SimulatedEndpoint` implements routing.model.Router and `SimulatedMetrics` implements
routing.model.MetricsSource directly over the fleet model, so the bench runs many seeds fast with
the SAME controller code that runs against AWS. They keep AWS's semantics: an update puts the
endpoint in `Updating` until the simulator settles it (next minute, or when a scale-up's new
instances are InService), a second update while Updating is refused (EndpointBusy), metrics of a
minute appear once it has closed (later under a metric_delay fault), an outage publishes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from routing.adapters.autoscaling import VariantScaling, wanted_scaling
from routing.metrics import metric_window
from routing.model import (
    ConcurrentModification,
    ControllerState,
    EndpointLive,
    MinuteMetrics,
    ModelVersion,
    Observation,
    Target,
    VariantLive,
)
from routing.router import EndpointBusy
from routing.staging import next_update
from toolkit.config import VARIANT_NAMES
from toolkit.sim.fleet import VALUES_MS, VariantMinute, percentile_ms


@dataclass
class PlaneState:
    """What DescribeEndpoint reports: status, current and desired weights and counts."""

    status: str
    current_weights: dict[str, float]
    desired_weights: dict[str, float]
    current_counts: dict[str, int]
    desired_counts: dict[str, int]
    instance_types: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # variant -> the model it serves (issue 17)
    # Application Auto Scaling as the AWS router leaves it (routing/adapters/autoscaling.py): the
    # policy's counts are the scalable targets' MinCapacity, and dynamic scale-in is suspended in
    # the phases that need the capacity they asked for.
    floors: dict[str, int] = field(default_factory=dict)
    scale_in_suspended: dict[str, bool] = field(default_factory=dict)


class MemoryControlPlane:
    """The endpoint's control plane, in memory (the moto-backed one is toolkit.sim.aws.AwsControlPlane)."""

    def __init__(self, weights: dict[str, float], counts: dict[str, int], instance_types: dict[str, str]) -> None:
        self.state = PlaneState("InService", dict(weights), dict(weights), dict(counts), dict(counts),
                                dict(instance_types))

    def read(self) -> PlaneState:
        return self.state

    def update(self, weights: dict[str, float] | None = None, counts: dict[str, int] | None = None) -> bool:
        """UpdateEndpointWeightsAndCapacities: False (nothing changed) unless InService."""
        if self.state.status != "InService":
            return False
        self.state.desired_weights.update(weights or {})
        self.state.desired_counts.update(counts or {})
        self.state.status = "Updating"
        return True

    def scale(self, variant: str, count: int) -> bool:
        return self.update(counts={variant: count})

    def deploy_model(self, variant: str, model: str) -> None:
        """A new model version on `variant` (UpdateEndpoint retaining weights and counts: only the model changes)."""
        self.state.models[variant] = model

    def settle(self, counts: dict[str, int]) -> None:
        """The update finished: current := desired, InService."""
        self.state.current_weights = dict(self.state.desired_weights)
        self.state.current_counts = dict(counts)
        self.state.status = "InService"


def live_from(name: str, plane: PlaneState) -> EndpointLive:
    return EndpointLive(
        name=name,
        status=plane.status,
        variants={
            v: VariantLive(
                name=v,
                instance_type=plane.instance_types.get(v, ""),
                current_weight=float(plane.current_weights.get(v, 0.0)),
                desired_weight=float(plane.desired_weights.get(v, 0.0)),
                current_instance_count=int(plane.current_counts.get(v, 0)),
                desired_instance_count=int(plane.desired_counts.get(v, 0)),
            )
            for v in VARIANT_NAMES
        },
        models={v: ModelVersion(m) for v, m in plane.models.items()},
    )


class SimulatedEndpoint:
    """routing.model.Router over the in-memory control plane. Counts API calls like the AWS router."""

    def __init__(self, name: str, plane: MemoryControlPlane, base_floors: Mapping[str, int] | None = None) -> None:
        self.name = name
        self.plane = plane
        self.base_floors = dict(base_floors or {})  # the configured min_count per variant
        self.api_calls = 0
        self.update_calls = 0

    def describe(self) -> EndpointLive:
        self.api_calls += 1
        return live_from(self.name, self.plane.read())

    def sync_scaling(self, phase: Any, target: Target | None) -> list[str]:
        """As SageMakerRouter.sync_scaling, with the same rule (wanted_scaling): floors and scale-in per phase."""
        state = self.plane.read()
        for variant in VARIANT_NAMES:
            base = self.base_floors.get(variant, 1)
            current = VariantScaling(variant, state.floors.get(variant, base), 10_000,
                                     state.scale_in_suspended.get(variant, False))
            asked = target.instance_counts.get(variant) if target is not None else None
            wanted = wanted_scaling(current, phase, asked, state.desired_counts.get(variant), base)
            state.floors[variant] = wanted.min_capacity
            state.scale_in_suspended[variant] = wanted.scale_in_suspended
        return []

    def apply(self, target: Target) -> EndpointLive:
        live = self.describe()
        if not live.in_service:
            raise EndpointBusy(self.name, live.status)
        update = next_update(live, target)  # the same staging as the AWS router
        if update is None:
            return live
        self.api_calls += 1
        self.update_calls += 1
        self.plane.update(dict(update.weights) or None, dict(update.counts) or None)
        return self.describe()


def minute_metrics(start: datetime, vm: VariantMinute, percentiles: bool = True) -> MinuteMetrics:
    """A variant-minute as the CloudWatch adapter would read it (latency in milliseconds).

    percentiles=False: as when ModelLatency carries no percentiles; only Average and Maximum remain.
    """
    hist = vm.latency
    samples = float(hist.sum()) if hist is not None else 0.0
    with_p = percentiles and samples > 0
    avg = mx = None
    if samples > 0:
        assert hist is not None
        avg = float((hist * VALUES_MS).sum() / samples)
        mx = float(VALUES_MS[np.nonzero(hist)[0][-1]])
    # Without percentiles the CloudWatch adapter (routing.core.observations) stands in Average for p50
    # and Maximum for p90/p99 and says so; the simulated source must hand the policy the same minute.
    stand_in = samples > 0 and not with_p
    return MinuteMetrics(
        start=start,
        invocations=float(vm.requests),
        errors_4xx=float(vm.errors_4xx),
        errors_5xx=float(vm.errors_5xx),
        latency_p50_ms=percentile_ms(hist, 50) if with_p else (avg if stand_in else None),
        latency_p90_ms=percentile_ms(hist, 90) if with_p else (mx if stand_in else None),
        latency_p99_ms=percentile_ms(hist, 99) if with_p else (mx if stand_in else None),
        latency_avg_ms=avg,
        latency_max_ms=mx,
        latency_samples=samples,
        invocations_per_instance=vm.invocations_per_instance,
        parity_compared=float(vm.parity_compared),
        parity_agreed=float(vm.parity_agreed),
    )


class SimulatedMetrics:
    """routing.model.MetricsSource over published variant-minutes (metric delays honoured)."""

    def __init__(self, start: datetime, settle_seconds: int = 0, percentiles: bool = True) -> None:
        self.start = start
        self.settle_seconds = settle_seconds  # like CloudWatchMetrics: a minute counts as closed this much later
        self.percentiles = percentiles
        self._minutes: dict[tuple[str, int], tuple[MinuteMetrics, int, int]] = {}  # -> (metrics, visible at, targeted)
        self.api_calls = 0

    def publish(self, vm: VariantMinute) -> None:
        if not vm.published or (vm.instances == 0 and vm.requests == 0):
            return  # an outage (or a variant with no instances) publishes nothing
        start = self.start + timedelta(minutes=vm.minute)
        visible = vm.minute + 1 + vm.publish_delay  # the minute must close first
        self._minutes[(vm.variant, vm.minute)] = (minute_metrics(start, vm, self.percentiles), visible, vm.targeted)

    def _index(self, when: datetime) -> int:
        return int((when - self.start).total_seconds() // 60)

    def observe(self, endpoint: str, variants: Sequence[str], now: datetime, minutes: int) -> Observation:
        self.api_calls += 1
        start, end = metric_window(now, minutes, self.settle_seconds)
        now_index = self._index(now)
        first, last = self._index(start), self._index(end)
        per_variant: dict[str, tuple[MinuteMetrics, ...]] = {}
        targeted: dict[str, float] = {}
        for variant in variants:
            rows = []
            total_targeted = 0.0
            for index in range(first, last):
                entry = self._minutes.get((variant, index))
                if entry is not None and entry[1] <= now_index:
                    rows.append(entry[0])
                    total_targeted += entry[2]
                else:
                    rows.append(MinuteMetrics(start=self.start + timedelta(minutes=index)))
            per_variant[variant] = tuple(rows)
            targeted[variant] = total_targeted
        stood_in = not self.percentiles and any(m.latency_samples > 0 for rows in per_variant.values() for m in rows)
        return Observation(window_start=start, window_end=end, minutes=per_variant, targeted=targeted,
                           percentiles_available=not stood_in)


class MemoryStateStore:
    """routing.model.StateStore in memory (the bench runs thousands of ticks; no fsync per tick)."""

    def __init__(self) -> None:
        self._state: ControllerState | None = None
        self._records: list[dict[str, Any]] = []

    def load(self) -> ControllerState | None:
        return self._state

    def save(self, state: ControllerState, expected_version: int | None) -> ControllerState:
        stored = None if self._state is None else self._state.version
        if stored != expected_version:
            raise ConcurrentModification(f"state at version {stored}, expected {expected_version}")
        self._state = state.evolve(version=(stored or 0) + 1)
        return self._state

    def append_record(self, record: Mapping[str, Any]) -> None:
        self._records.append(dict(record))

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        return list(self._records if limit is None else self._records[-limit:])
