"""`hybrid demo`, the orchestration: embedded AWS, the real deploy, the real controller, the simulator.

1. start the embedded AWS (moto's server on 127.0.0.1, patched by toolkit.local.compat);
2. deploy the endpoint through `hybrid deploy`'s code (toolkit.deploy.deploy_endpoint);
3. hold endpoint updates in `Updating` until the simulated fleet serves them (as on AWS);
4. build the controller with routing.controller.build_controller (the CLI's own adapters:
   CloudWatch GetMetricData, SageMaker DescribeEndpoint/UpdateEndpointWeightsAndCapacities, the
   JSON state store) on the simulated clock, and run the scenario: one tick per minute;
5. compute the all-GPU counterfactual (same traffic and seed, in memory) and the summary.

`in_memory=True` skips 1-4's AWS emulation (in-memory Router/MetricsSource, same controller code).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.config import HybridConfig
from toolkit.sim.runner import DEPLOYED_SETTLE_SECONDS, Row, RunResult, all_gpu_baseline, memory_world, run
from toolkit.sim.scenario import Scenario, Setup, resolve

# The embedded account's demo role: deploy needs an execution role, and nothing runs models here.
DEMO_ROLE_ARN = "arn:aws:iam::123456789012:role/hybrid-demo"


@dataclass
class DemoRun:
    result: RunResult
    summary: dict[str, Any]
    wall_seconds: float


def demo_setup(config: HybridConfig, scenario: Scenario, seed: int | None, minutes: int | None) -> Setup:
    setup = resolve(scenario, config, seed)
    if minutes is not None:
        setup.scenario = setup.scenario.model_copy(update={"duration_minutes": minutes})
    if not setup.config.execution_role_arn:
        setup.config = setup.config.model_copy(update={"execution_role_arn": DEMO_ROLE_ARN})
    return setup


def run_demo(setup: Setup, *, in_memory: bool = False, state_dir: str | Path | None = None,
             on_minute: Callable[[Row, Any], None] | None = None,
             on_phase: Callable[[str], None] | None = None) -> DemoRun:
    """Run the scenario end to end; the summary includes wall time and the all-GPU comparison."""
    started = time.perf_counter()
    say = on_phase or (lambda _text: None)
    say("all-GPU counterfactual")
    baseline = all_gpu_baseline(setup)
    with tempfile.TemporaryDirectory(prefix="hybrid-demo-") as scratch:
        directory = Path(state_dir) if state_dir is not None else Path(scratch)
        if in_memory:
            world = memory_world(setup)
            if state_dir is not None:  # keep the records: the CLI's own store, as `hybrid route log` reads it
                from routing.state import JsonFileStateStore

                world.store = JsonFileStateStore(directory, setup.config.name)  # type: ignore[assignment]
            controller = world.controller()
            say("running (in memory)")
            result = run(setup, world.simulator, controller, on_minute=on_minute)
            calls = {"metrics_reads": world.metrics.api_calls, "endpoint_calls": world.router.api_calls,
                     "endpoint_updates": world.router.update_calls}
        else:
            result, calls = _run_embedded(setup, directory, on_minute, say)
    result.baseline = baseline
    result.api_calls = calls
    summary = result.summary()
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    summary["mode"] = "in-memory" if in_memory else "embedded-aws"
    return DemoRun(result, summary, summary["wall_seconds"])


def stage_placeholder_artifacts(config: HybridConfig, s3_client: Any) -> None:
    """Put a tiny object at each variant's `model.artifact` in the embedded S3.

    Nothing runs the models here, but `hybrid deploy` checks the artifacts exist (as it must on AWS).
    """
    from toolkit.compile import split_s3

    for name in ("neuron", "gpu"):
        uri = config.variant(name).model.artifact
        if not uri:
            continue  # a model package: the registry owns its artifact
        bucket, key = split_s3(uri)
        try:
            s3_client.head_bucket(Bucket=bucket)
        except Exception:
            extra = {} if config.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": config.region}}
            s3_client.create_bucket(Bucket=bucket, **extra)
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"placeholder model.tar.gz (simulated fleet)")


def deploy_and_control(setup: Setup, aws: Any, state_dir: str | Path | None,
                       settle_seconds: int = DEPLOYED_SETTLE_SECONDS) -> tuple[Any, Any]:
    """On a running EmbeddedAws: stage placeholder artifacts, `hybrid deploy` the scenario's config, and
    return the fleet simulator and the real controller on its clock (the demo, the report tests)."""
    from routing.controller import build_controller
    from toolkit.deploy import deploy_endpoint
    from toolkit.sim.aws import aws_simulator

    s3 = aws.client("s3")
    stage_placeholder_artifacts(setup.config, s3)
    deploy_endpoint(setup.config, sagemaker_client=aws.client("sagemaker"), s3_client=s3, source="config",
                    show_progress=False, poll=0.0, sleep=lambda _s: None)
    aws.hold_updates(True)
    simulator = aws_simulator(setup, aws)
    controller = build_controller(setup.config, endpoint_url=aws.endpoint_url, state_dir=state_dir,
                                  clock=simulator.clock, settle_seconds=settle_seconds)
    return simulator, controller


def _run_embedded(setup: Setup, state_dir: Path, on_minute: Callable[[Row, Any], None] | None,
                  say: Callable[[str], None]) -> tuple[RunResult, dict[str, int]]:
    from toolkit.local.server import EmbeddedAws

    say("starting the embedded AWS")
    with EmbeddedAws(setup.config.region, export_env=True) as aws:
        say(f"deploying {setup.config.name} (hybrid deploy) on {aws.endpoint_url}")
        simulator, controller = deploy_and_control(setup, aws, state_dir)
        say("running")
        result = run(setup, simulator, controller, on_minute=on_minute)
        calls = {
            "metrics_reads": int(getattr(controller.metrics, "api_calls", 0)),
            "endpoint_calls": int(getattr(controller.router, "api_calls", 0)),
            "put_metric_data": int(getattr(simulator.sink, "calls", 0)),
        }
    return result, calls
