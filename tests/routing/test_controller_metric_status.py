"""GetMetricData answers marked Forbidden / InternalError are unknown, not silence, through a real tick.

The embedded AWS serves the endpoint and CloudWatch; a thin proxy marks the neuron invocations
query as CloudWatch would when it cannot answer it (no points, StatusCode Forbidden). With 10 %
of traffic on neuron, reading that as "no data" would look like a silent variant; the policy must
instead hold with the reason in the record, and fail safe after fallback.max_unknown_ticks.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.routing._aws import create_endpoint
from tests.routing.test_controller_autoscaling import World
from toolkit.config import load_config
from toolkit.local.server import patched_mock_aws


class MarkingCloudWatch:
    def __init__(self, client: Any, status: str) -> None:
        self._client = client
        self.status = status

    def get_metric_data(self, **kwargs: Any) -> Any:
        response = self._client.get_metric_data(**kwargs)
        for result in response["MetricDataResults"]:
            if result["Id"] == "invocations_0" and self.status:
                result.update(StatusCode=self.status, Timestamps=[], Values=[],
                              Messages=[{"Code": self.status, "Value": "not allowed on this metric"}])
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("status", ["Forbidden", "InternalError"])
def test_unanswered_metric_queries_hold_with_the_reason_then_fail_safe(example_data, write_config, tmp_path, status):
    data = example_data
    data["canary"] = {"steps": [10, 50, 100], "min_bake_minutes": 1, "max_bake_minutes": 10, "min_sample": 50}
    config = load_config(write_config(data))
    with patched_mock_aws():
        world = World(config, tmp_path)
        create_endpoint(world.sm, config.name, neuron_weight=0.0, gpu_weight=100.0, neuron_count=1, gpu_count=2)
        world.controller.command("start")
        assert world.tick().decision.action.value == "progress" and world.share() == 10.0

        world.controller.metrics._cw = MarkingCloudWatch(world.cw, status)
        limit = config.fallback.max_unknown_ticks
        results = [world.tick() for _ in range(limit)]

        held, last = results[:-1], results[-1]
        assert all(r.decision.action.value == "hold" for r in held)
        assert all(status in r.record["reason"] and "invocations_0" in r.record["reason"] for r in held)
        assert all(r.record["metrics"]["error"] for r in results)  # the record says the window was unreadable
        assert last.decision.action.value == "fallback" and f"no metrics for {limit} ticks" in last.record["reason"]
        assert world.share() == 0.0 and last.exit_code == 1
