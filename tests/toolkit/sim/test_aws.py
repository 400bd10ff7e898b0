"""The AWS path: the same fleet through the embedded SageMaker and CloudWatch reads like the in-memory path."""

from __future__ import annotations

from datetime import timedelta

import pytest

from routing.metrics import CloudWatchMetrics
from routing.model import Target
from routing.router import EndpointBusy, SageMakerRouter
from toolkit.local.server import EmbeddedAws
from toolkit.sim.aws import aws_simulator
from toolkit.sim.memory import SimulatedMetrics

pytestmark = pytest.mark.slow


@pytest.fixture
def deployed(make_setup):
    from toolkit.deploy import deploy_endpoint
    from toolkit.sim.demo import stage_placeholder_artifacts

    setup = make_setup(traffic={"rps": 40}, config={"execution_role_arn": "arn:aws:iam::123456789012:role/demo"},
                       hardware={"neuron": {"scale_up_delay_minutes": 2}}, autoscaling={"enabled": False},
                       faults=[{"minute": 2, "variant": "neuron", "kind": "outage", "duration_minutes": 1}])
    with EmbeddedAws() as aws:
        s3 = aws.client("s3")
        stage_placeholder_artifacts(setup.config, s3)
        deploy_endpoint(setup.config, sagemaker_client=aws.client("sagemaker"), s3_client=s3, show_progress=False,
                        source="config")
        aws.hold_updates(True)
        yield setup, aws


def test_cloudwatch_path_reads_exactly_what_the_memory_path_reads(deployed):
    setup, aws = deployed
    simulator = aws_simulator(setup, aws)
    router = SageMakerRouter(aws.client("sagemaker"), setup.config.name)
    router.apply(Target({"neuron": 50.0, "gpu": 50.0}, {"neuron": 1, "gpu": 2}))
    memory = SimulatedMetrics(setup.scenario.start)
    for _ in range(4):
        for vm in simulator.step().variants.values():
            memory.publish(vm)
    now = simulator.clock.now()
    from_cloudwatch = CloudWatchMetrics(aws.client("cloudwatch")).observe(setup.config.name, ["neuron", "gpu"], now, 4)
    from_memory = memory.observe(setup.config.name, ["neuron", "gpu"], now, 4)
    for variant in ("neuron", "gpu"):
        for cw, mem in zip(from_cloudwatch.for_variant(variant), from_memory.for_variant(variant), strict=True):
            assert cw.start == mem.start
            assert cw.invocations == mem.invocations
            assert (cw.errors_4xx, cw.errors_5xx, cw.latency_samples) == (mem.errors_4xx, mem.errors_5xx,
                                                                          mem.latency_samples)
            for field in ("latency_p50_ms", "latency_p99_ms", "latency_avg_ms", "latency_max_ms"):
                assert getattr(cw, field) == pytest.approx(getattr(mem, field), rel=1e-3), (variant, field)
    neuron = from_cloudwatch.for_variant("neuron")
    assert neuron[0].invocations > 0  # the update settled as minute 0 began
    assert neuron[2].invocations is None  # outage: nothing published


def test_updates_stay_updating_until_the_fleet_serves_them(deployed):
    setup, aws = deployed
    simulator = aws_simulator(setup, aws)
    router = SageMakerRouter(aws.client("sagemaker"), setup.config.name)
    target = Target({"neuron": 20.0, "gpu": 80.0}, {"neuron": 2, "gpu": 2})
    live = router.apply(target)  # capacity first
    assert live.status == "Updating" and live.variants["neuron"].desired_instance_count == 2
    with pytest.raises(EndpointBusy):
        router.apply(target)
    simulator.step()
    assert router.describe().status == "Updating"  # the second neuron instance needs 2 minutes
    simulator.step()
    simulator.step()
    live = router.describe()
    assert live.in_service
    assert (live.variants["neuron"].current_weight, live.variants["neuron"].current_instance_count) == (0.0, 2)
    assert simulator.clock.now() == setup.scenario.start + timedelta(minutes=3, seconds=5)
    router.apply(target)  # then the traffic, which needs no new instance: served the next minute
    simulator.step()
    live = router.describe()
    assert live.in_service and live.variants["neuron"].current_weight == 20.0
