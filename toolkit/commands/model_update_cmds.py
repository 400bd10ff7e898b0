"""hybrid canary prepare-model-update: neuron down to the first canary step before a new neuron model.

Run it before a deploy that changes the neuron model outside `hybrid deploy` (e.g. `cdk deploy`;
`hybrid deploy` does the same by itself). See toolkit/model_update.py and docs/ci.md.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from toolkit.commands.common import ConfigOption, Output, OutputOption, emit
from toolkit.commands.routing_cmds import EndpointUrlOption, ProfileOption, RegionOption, StateDirOption


def prepare(config_path: str, *, endpoint_url: str | None, profile: str | None, region: str | None,
            state_dir: str | None, show_progress: bool) -> Any:
    """Build the controller the other canary commands use and prepare the endpoint (shared with `hybrid deploy`)."""
    from toolkit.commands.routing_cmds import _controller
    from toolkit.deploy import wait_in_service
    from toolkit.model_update import prepare_model_update

    controller = _controller(config_path, endpoint_url, profile, region, state_dir, None)
    sagemaker = controller.router._sm  # the same client the router drives

    def wait() -> None:
        wait_in_service(sagemaker, controller.endpoint, show_progress=show_progress)

    return prepare_model_update(controller, wait_in_service=wait)


def register(app: typer.Typer) -> None:
    # The `canary` group is routing_cmds'; this module adds one command to it (registered after it).
    canary_app = next((g.typer_instance for g in app.registered_groups if g.name == "canary"), None)
    if canary_app is None:
        return

    @canary_app.command("prepare-model-update")
    def prepare_cmd(
        config: str = ConfigOption, output: Output = OutputOption, endpoint_url: str | None = EndpointUrlOption,
        profile: str | None = ProfileOption, region: str | None = RegionOption,
        state_dir: str | None = StateDirOption,
    ) -> None:
        """Before a new neuron model: pause the canary and bring neuron to the first step (gpu sized first)."""
        result = prepare(config, endpoint_url=endpoint_url, profile=profile, region=region, state_dir=state_dir,
                         show_progress=output == Output.text)

        def render(data: dict[str, Any]) -> None:
            paused = "canary paused; " if data["paused"] else ""
            sys.stdout.write(f"{data['endpoint']}: {paused}neuron {data['share_before']:g}% -> "
                             f"{data['share_after']:g}% (first step {data['first_step']:g}%) in {data['updates']} "
                             f"update(s). Deploy the new model now; the next tick judges it from step 1.\n")

        emit(result.to_dict(), output, render)
