"""A new neuron model: `hybrid deploy` (or `canary prepare-model-update` before cdk) brings neuron to the
first step first, gpu sized for the rest; the next tick judges the new model from step 1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from routing.adapters.clock import ManualClock
from routing.adapters.cloudwatch import CloudWatchMetrics
from routing.adapters.json_store import JsonFileStateStore
from routing.adapters.sagemaker import SageMakerRouter
from routing.controller import Controller
from routing.core.model import ControllerState, Phase
from routing.core.policy import gpu_needed
from tests.routing._aws import feed_split
from tests.toolkit.test_compile import make_config, pipeline_data
from tests.toolkit.test_deploy import _s3, _sm, aws  # noqa: F401  (the embedded world fixture)
from toolkit.deploy import deploy_endpoint
from toolkit.model_update import COMMAND, prepare_model_update

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def holding_at_full_neuron(tmp_path: Any) -> tuple[Any, Any, Controller]:
    data = pipeline_data(tmp_path)
    data["canary"] = {"steps": [10, 50, 100], "target_neuron_percent": 100}
    cfg = make_config(data)
    sm = _sm()
    deploy_endpoint(cfg, sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    sm.update_endpoint_weights_and_capacities(EndpointName=cfg.name, DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": 100.0}, {"VariantName": "gpu", "DesiredWeight": 0.0}])
    sm.update_endpoint_weights_and_capacities(EndpointName=cfg.name, DesiredWeightsAndCapacities=[
        {"VariantName": "gpu", "DesiredInstanceCount": 1}])
    cw = boto3.client("cloudwatch", region_name=cfg.region)
    for i in range(5, 0, -1):  # 60 req/s, all on neuron
        feed_split(cw, cfg.name, T0 - timedelta(minutes=i), total=3600, neuron_share=100.0)
    store = JsonFileStateStore(tmp_path / "state", cfg.name)
    store.save(ControllerState(endpoint=cfg.name, phase=Phase.HOLDING, step=2, steps=(10.0, 50.0, 100.0)), None)
    controller = Controller(cfg, metrics=CloudWatchMetrics(cw), router=SageMakerRouter(sm, cfg.name),
                            store=store, clock=ManualClock(T0 + timedelta(seconds=10)))
    return data, sm, controller


def test_prepare_pauses_the_canary_and_brings_neuron_to_the_first_step_with_gpu_sized_first(aws, tmp_path):  # noqa: F811
    _, _sm_client, controller = holding_at_full_neuron(tmp_path)
    waits: list[int] = []
    result = prepare_model_update(controller, wait_in_service=lambda: waits.append(1))
    assert result.paused and controller.store.load().phase == Phase.PAUSED
    assert (result.share_before, result.share_after, result.first_step) == (100.0, 10.0, 10.0)
    live = controller.router.describe()
    assert live.variants["gpu"].desired_instance_count == gpu_needed(controller.config, 90.0, 60.0)
    assert live.variants["gpu"].desired_instance_count > 1
    records = controller.store.records()
    assert records[0]["command"] == "pause"
    assert [r["command"] for r in records[1:]] == [COMMAND] * result.updates and len(waits) == result.updates
    assert all("a new neuron model is about to be deployed" in r["reason"] for r in records[1:])


def test_deploy_runs_the_preparation_only_when_the_neuron_model_changes(aws, tmp_path):  # noqa: F811
    data = pipeline_data(tmp_path)
    sm = _sm()
    deploy_endpoint(make_config(data), sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    calls: list[str] = []
    data["variants"]["gpu"]["model"]["environment"] = {"LOG_LEVEL": "debug"}
    deploy_endpoint(make_config(data), sagemaker_client=sm, s3_client=_s3(), show_progress=False,
                    before_neuron_update=lambda: calls.append("gpu change"))
    assert calls == []
    data["variants"]["neuron"]["model"]["environment"]["LOG_LEVEL"] = "debug"
    deploy_endpoint(make_config(data), sagemaker_client=sm, s3_client=_s3(), show_progress=False,
                    before_neuron_update=lambda: calls.append("neuron change"))
    assert calls == ["neuron change"]


def test_after_the_deploy_the_next_tick_judges_the_new_model_from_the_first_step(aws, tmp_path):  # noqa: F811
    data, sm, controller = holding_at_full_neuron(tmp_path)
    controller.tick()  # the controller has seen (and recorded) the model the canary judged
    prepare_model_update(controller, wait_in_service=lambda: None)
    data["variants"]["neuron"]["model"]["environment"]["LOG_LEVEL"] = "debug"
    result = deploy_endpoint(make_config(data), sagemaker_client=sm, s3_client=_s3(), show_progress=False)
    assert controller.router.describe().share("neuron") == 10.0  # RetainAllVariantProperties kept the first step
    record = controller.tick().record
    assert record["phase"] == "ramping" and "neuron model changed" in record["reason"]
    state = controller.store.load()
    assert state.neuron_model.name == result.models["neuron"] and state.neuron_model_unjudged


def test_cli_deploy_of_a_new_neuron_model_prepares_first_and_the_prepare_command_is_there(aws, tmp_path, capsys):  # noqa: F811
    import json

    from tests.toolkit.test_compile import write
    from toolkit.cli import run

    data = pipeline_data(tmp_path)
    data["canary"] = {"steps": [10, 50, 100], "target_neuron_percent": 100}
    data["state_dir"] = str(tmp_path / "state")
    path = write(tmp_path, data)
    assert run(["deploy", "-c", path, "--source", "config", "-o", "json"]) == 0
    sm = _sm()
    sm.update_endpoint_weights_and_capacities(EndpointName=data["name"], DesiredWeightsAndCapacities=[
        {"VariantName": "neuron", "DesiredWeight": 100.0}, {"VariantName": "gpu", "DesiredWeight": 0.0}])
    capsys.readouterr()
    data["variants"]["neuron"]["model"]["environment"]["LOG_LEVEL"] = "debug"
    path = write(tmp_path, data)
    assert run(["deploy", "-c", path, "--source", "config", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["live"]["neuron"]["weight"] == 10.0  # the first step, not 100
    assert run(["canary", "prepare-model-update", "-c", path, "-o", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["share_before"] == 10.0 and again["updates"] == 0  # already there: nothing to do
