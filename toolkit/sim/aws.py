"""Thin adapters between the fleet model and an AWS API (the embedded one in the demo).

- `AwsControlPlane`: the endpoint as the fleet sees it. `read()` is DescribeEndpoint (+ the
  config's instance types); `scale()` is what Application Auto Scaling does,
  UpdateEndpointWeightsAndCapacities with only DesiredInstanceCount; `settle()` reports that the
  fleet finished a pending update (new instances InService), through a hook the embedded AWS
  provides (real SageMaker does this by itself; the emulator needs to be told when).
- `CloudWatchPublisher`: PutMetricData exactly as SageMaker publishes (namespace AWS/SageMaker,
  dimensions EndpointName + VariantName, latencies in microseconds as Values/Counts, timestamp =
  the simulated minute), batched, late under a metric_delay fault, nothing during an outage; the
  client helper's TargetedInvocations (HybridRouting/Client) for TargetVariant traffic.

Honesty note: weights and counts only ever change through the same SageMaker API calls AWS
offers (the controller's and autoscaling's UpdateEndpointWeightsAndCapacities); the only
emulator-specific call is `settle`, standing in for SageMaker finishing an update.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from routing.metrics import CLIENT_NAMESPACE, NAMESPACE, TARGETED_METRIC
from toolkit.config import VARIANT_NAMES
from toolkit.sim.fleet import MinuteOutcome, metric_data
from toolkit.sim.memory import PlaneState

MAX_DATUMS_PER_CALL = 1000  # PutMetricData limit (and 1 MB per request)


class AwsControlPlane:
    def __init__(self, sagemaker: Any, endpoint: str, settle_hook: Callable[[str, dict[str, int]], Any]) -> None:
        self._sm = sagemaker
        self.endpoint = endpoint
        self._settle_hook = settle_hook
        self._types: dict[str, dict[str, str]] = {}
        self.calls = 0

    def read(self) -> PlaneState:
        self.calls += 1
        data = self._sm.describe_endpoint(EndpointName=self.endpoint)
        config_name = data.get("EndpointConfigName", "")
        if config_name not in self._types:
            config = self._sm.describe_endpoint_config(EndpointConfigName=config_name)
            self._types[config_name] = {v["VariantName"]: v.get("InstanceType", "")
                                        for v in config.get("ProductionVariants", [])}
        variants = {v["VariantName"]: v for v in data.get("ProductionVariants", [])}

        def get(name: str, key: str, fallback: str) -> float:
            v = variants.get(name, {})
            return float(v.get(key, v.get(fallback, 0.0)) or 0.0)

        return PlaneState(
            status=str(data.get("EndpointStatus", "")),
            current_weights={n: get(n, "CurrentWeight", "DesiredWeight") for n in VARIANT_NAMES},
            desired_weights={n: get(n, "DesiredWeight", "CurrentWeight") for n in VARIANT_NAMES},
            current_counts={n: int(get(n, "CurrentInstanceCount", "DesiredInstanceCount")) for n in VARIANT_NAMES},
            desired_counts={n: int(get(n, "DesiredInstanceCount", "CurrentInstanceCount")) for n in VARIANT_NAMES},
            instance_types=dict(self._types[config_name]),
        )

    def scale(self, variant: str, count: int) -> bool:
        """Application Auto Scaling's call: only DesiredInstanceCount. False when the endpoint is busy."""
        from botocore.exceptions import ClientError

        self.calls += 1
        try:
            self._sm.update_endpoint_weights_and_capacities(
                EndpointName=self.endpoint,
                DesiredWeightsAndCapacities=[{"VariantName": variant, "DesiredInstanceCount": int(count)}],
            )
        except ClientError:
            return False  # Updating: AAS retries on its next evaluation
        return True

    def settle(self, counts: dict[str, int]) -> None:
        self._settle_hook(self.endpoint, counts)


class CloudWatchPublisher:
    """The fleet's metrics into CloudWatch, as SageMaker publishes them."""

    def __init__(self, cloudwatch: Any, endpoint: str, start: datetime) -> None:
        self._cw = cloudwatch
        self.endpoint = endpoint
        self.start = start
        self._queue: list[tuple[int, dict[str, Any]]] = []  # (visible from minute, datum)
        self.calls = 0
        self.datums = 0

    def publish_minute(self, outcome: MinuteOutcome) -> None:
        timestamp = self.start + timedelta(minutes=outcome.minute)
        for vm in outcome.variants.values():
            entries = metric_data(vm, self.endpoint, timestamp)
            if vm.targeted and vm.published:
                entries.append({
                    "MetricName": TARGETED_METRIC, "Timestamp": timestamp, "Value": float(vm.targeted),
                    "Dimensions": [{"Name": "EndpointName", "Value": self.endpoint},
                                   {"Name": "VariantName", "Value": vm.variant}],
                    "_namespace": CLIENT_NAMESPACE,
                })
            self._queue.extend((outcome.minute + vm.publish_delay, entry) for entry in entries)
        self.flush(outcome.minute)

    def flush(self, minute: int) -> None:
        """Send everything whose (possibly delayed) time has come, one call per namespace and 1000 datums."""
        due = [entry for visible, entry in self._queue if visible <= minute]
        self._queue = [(visible, entry) for visible, entry in self._queue if visible > minute]
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for entry in due:
            namespace = entry.pop("_namespace", NAMESPACE)
            by_namespace.setdefault(namespace, []).append(entry)
        for namespace, entries in by_namespace.items():
            for first in range(0, len(entries), MAX_DATUMS_PER_CALL):
                self.calls += 1
                self.datums += len(entries[first:first + MAX_DATUMS_PER_CALL])
                self._cw.put_metric_data(Namespace=namespace, MetricData=entries[first:first + MAX_DATUMS_PER_CALL])


def aws_simulator(setup: Any, aws: Any, seed: int | None = None) -> Any:
    """A Simulator whose control plane and metrics live in an AWS API (`aws`: toolkit.local EmbeddedAws).

    The endpoint `setup.config.name` must exist (deployed through `hybrid deploy`'s code path).
    Returns the Simulator; its clock (`simulator.clock`) is the one to give the controller.
    """
    from toolkit.sim.runner import SimClock, Simulator

    name = setup.config.name
    plane = AwsControlPlane(aws.client("sagemaker"), name, aws.settle_endpoint)
    publisher = CloudWatchPublisher(aws.client("cloudwatch"), name, setup.scenario.start)
    return Simulator(setup, plane, publisher, SimClock(setup.scenario.start), seed)
