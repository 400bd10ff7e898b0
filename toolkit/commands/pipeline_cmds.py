"""hybrid compile | register | deploy | price: what a CI pipeline runs before the canary.

Exit codes: 0 ok, 1 the compilation job failed (SageMaker's FailureReason printed verbatim),
2 bad input, 3 AWS error (including a failed or rolled-back deploy). boto3 is imported inside
the commands; clients honour AWS_ENDPOINT_URL, which is how the embedded AWS is reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from toolkit.commands.common import (
    CompileDryRunOption,
    ConfigOption,
    DryRunOption,
    Output,
    OutputOption,
    RegisterDryRunOption,
    emit,
    load,
)

EndpointUrlOption = typer.Option(
    None, "--endpoint-url", help="AWS endpoint URL (the embedded AWS); env AWS_ENDPOINT_URL also works."
)
ProfileOption = typer.Option(None, "--profile", help="AWS profile for real AWS.")


def _clients(cfg: Any, endpoint_url: str | None, profile: str | None, *names: str) -> list[Any]:
    """boto3 clients in the config's region; refuses other accounts when `account` is set (as `route`)."""
    import boto3

    from routing.adapters.aws import check_account

    session = boto3.session.Session(region_name=cfg.region, profile_name=profile)
    if cfg.account:
        check_account(session.client("sts", endpoint_url=endpoint_url), cfg.account)
    return [session.client(name, endpoint_url=endpoint_url) for name in names]


def _load(config: str) -> Any:
    """The config, with a relative state_dir taken relative to the config file (as `route` does)."""
    from routing.adapters.json_store import resolve_state_dir

    cfg = load(config)
    state = resolve_state_dir(cfg, None, base=Path(config).resolve().parent)
    return cfg if str(state) == cfg.state_dir else cfg.model_copy(update={"state_dir": str(state)})


def _warn(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def _check_config_target(target: str) -> None:
    """--write-config must name a file in an existing folder (checked before anything is registered)."""
    from toolkit.errors import UserError

    path = Path(target)
    if path.is_dir():
        raise UserError(f"--write-config {target}: is a folder; name the file to write, e.g. {path / 'hybrid.packages.yaml'}")
    if not path.parent.is_dir():
        raise UserError(f"--write-config {target}: folder {path.parent} does not exist; create it or name another file")


def _write_package_config(source: str, target: str, packages: dict[str, str]) -> None:
    """A copy of hybrid.yaml whose variants deploy the registered packages (the CDK app reads it)."""
    import yaml

    from toolkit.config import parse_config

    data = yaml.safe_load(Path(source).read_text())
    for name, arn in packages.items():
        model = data["variants"][name]["model"]
        model.pop("artifact", None)
        model["model_package_arn"] = arn
    parse_config(data, target)  # never write a config the other commands would refuse
    try:
        Path(target).write_text(yaml.safe_dump(data, sort_keys=False))
    except OSError as error:  # disk full, permissions: the packages are registered; say so (exit 3)
        from routing.core.errors import StorageError

        raise StorageError(f"--write-config {target}: could not write ({error.strerror or error}); the packages are "
                       f"registered: run `hybrid register --write-config FILE` again to write it") from error


def register(app: typer.Typer) -> None:
    @app.command("compile")
    def compile_cmd(
        config: str = ConfigOption,
        output: Output = OutputOption,
        force: bool = typer.Option(False, "--force", help="Compile even when the cache has this key."),
        dry_run: bool = CompileDryRunOption,
        endpoint_url: str | None = EndpointUrlOption,
        profile: str | None = ProfileOption,
    ) -> None:
        """Compile the neuron artifact (neo | container | local), reusing the content-addressed cache."""
        from toolkit.compile import compile_model, lookup, plan

        cfg = _load(config)
        sagemaker, s3 = _clients(cfg, endpoint_url, profile, "sagemaker", "s3")
        if dry_run:
            hit = lookup(cfg, s3_client=s3)
            result = hit or plan(cfg, s3_client=s3)
        else:
            result = compile_model(cfg, sagemaker_client=sagemaker, s3_client=s3, warn=_warn, force=force,
                                   show_progress=output == Output.text)

        def render(_: object) -> None:
            from rich.console import Console

            console = Console()
            if result.backend == "container":
                console.print(f"[green]container[/green]: no ahead-of-time compile; the neuron variant compiles at "
                              f"start-up from {result.source_artifact}")
                for key, value in result.environment.items():
                    console.print(f"  {key}={value}")
            elif result.cache_hit:
                console.print(f"[green]cache hit[/green] {result.cache_key[:16]}: {result.artifact}")
            elif result.compiled:
                console.print(f"[green]compiled[/green] {result.job_name or result.backend}: {result.artifact}")
            else:
                console.print(f"[yellow]would compile[/yellow] (key {result.cache_key[:16]}, not cached)")
            console.print(f"  key {result.cache_key}\n  source {result.source_digest}\n  target {result.target}")

        emit(result.to_dict(), output, render)

    @app.command("register")
    def register_cmd(
        config: str = ConfigOption,
        output: Output = OutputOption,
        approve: bool = typer.Option(False, "--approve", help="Register (or mark) both packages Approved."),
        write_config: str | None = typer.Option(
            None, "--write-config", help="Also write a copy of the config deploying these packages (for cdk deploy)."
        ),
        dry_run: bool = RegisterDryRunOption,
        endpoint_url: str | None = EndpointUrlOption,
        profile: str | None = ProfileOption,
    ) -> None:
        """Register the neuron and gpu packages in the model package group `name` (idempotent)."""
        from toolkit.compile import lookup
        from toolkit.errors import UserError
        from toolkit.registry import register_models

        cfg = _load(config)
        if write_config:
            _check_config_target(write_config)  # refuse before registering anything
        sagemaker, s3 = _clients(cfg, endpoint_url, profile, "sagemaker", "s3")
        compiled = lookup(cfg, s3_client=s3)
        if compiled is None:
            raise UserError("no compiled neuron artifact for the current inputs: run `hybrid compile` first")
        result = register_models(cfg, sagemaker_client=sagemaker, compiled=compiled, approve=approve, dry_run=dry_run)
        if write_config and not dry_run:
            _write_package_config(config, write_config, result.packages)

        def render(_: object) -> None:
            from rich.console import Console

            console = Console()
            verb = "registered" if result.created else "unchanged"
            console.print(f"[green]{verb}[/green] group {result.group}, pair {result.pair}")
            for name, arn in result.packages.items():
                mark = " (new)" if name in result.created else (" (approved now)" if name in result.approved else "")
                console.print(f"  {name:<6} {result.status.get(name, '?'):<22} {arn}{mark}")

        emit(result.to_dict(), output, render)

    @app.command("deploy")
    def deploy_cmd(
        config: str = ConfigOption,
        output: Output = OutputOption,
        source: str = typer.Option(
            "auto", "--source",
            help="auto: the approved pair if one exists, else the config (refused while a newer pair awaits "
            "approval); registry; config.",
        ),
        wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for InService."),
        dry_run: bool = DryRunOption,
        endpoint_url: str | None = EndpointUrlOption,
        profile: str | None = ProfileOption,
        prepare: bool = typer.Option(
            True, "--prepare/--no-prepare",
            help="A new neuron model: first pause the canary and bring neuron to its first step (gpu sized "
            "for the rest), so the new model is judged again before it serves more.",
        ),
        state_dir: str | None = typer.Option(None, "--state-dir", help="Controller state (for --prepare)."),
    ) -> None:
        """Create or update the endpoint (new content-named endpoint config; live weights/counts retained)."""
        from toolkit.deploy import deploy_endpoint
        from toolkit.errors import UserError

        if source not in ("auto", "registry", "config"):
            raise UserError(f"--source must be auto, registry or config, got {source!r}")
        cfg = _load(config)
        sagemaker, s3, autoscaling = _clients(cfg, endpoint_url, profile, "sagemaker", "s3",
                                              "application-autoscaling")

        def before() -> None:  # issue 17: toolkit/model_update.py
            from toolkit.commands.model_update_cmds import prepare as prepare_endpoint

            prepare_endpoint(config, endpoint_url=endpoint_url, profile=profile, region=None, state_dir=state_dir,
                             show_progress=output == Output.text)
        hook = before if prepare and wait and not dry_run else None
        result = deploy_endpoint(cfg, sagemaker_client=sagemaker, s3_client=s3, wait=wait,
                                 source=source,  # type: ignore[arg-type]
                                 dry_run=dry_run, show_progress=output == Output.text,
                                 autoscaling_client=autoscaling, before_neuron_update=hook)

        def render(_: object) -> None:
            from rich.console import Console

            console = Console()
            console.print(f"[green]{result.action}[/green] endpoint {result.endpoint_name} "
                          f"({result.status}) with {result.endpoint_config_name}, models from {result.source}")
            for name, model in result.models.items():
                live = result.live.get(name, {})
                console.print(f"  {name:<6} {model}  weight {live.get('weight')}  instances {live.get('instance_count')}")

        emit(result.to_dict(), output, render)

    @app.command("price")
    def price_cmd(
        instance_types: list[str] = typer.Argument(None, help="e.g. ml.inf2.xlarge ml.g5.xlarge (default: the config's)."),
        config: str = ConfigOption,
        output: Output = OutputOption,
        live: bool = typer.Option(False, "--live", help="Ask the AWS Pricing API (falls back to the table)."),
    ) -> None:
        """$/hour of SageMaker real-time hosting per instance type, with where each price came from."""
        from toolkit.errors import UserError
        from toolkit.pricing import PRICE_SOURCE, quote

        cfg = load(config) if Path(config).exists() else None
        types = list(instance_types or [])
        if not types:
            if cfg is None:
                raise UserError("name instance types (hybrid price ml.inf2.xlarge ml.g5.xlarge) or pass --config")
            types = [cfg.variants.neuron.instance_type, cfg.variants.gpu.instance_type]
        quotes = quote(types, overrides=cfg.prices if cfg else None, live=live,
                       region=cfg.region if cfg else "us-east-1")

        def render(_: object) -> None:
            from rich.console import Console
            from rich.table import Table

            table = Table("instance type", "$/hour", "source", "note")
            for q in quotes:
                table.add_row(q.instance_type, f"{q.price_per_hour:.3f}", q.source, q.note or "")
            console = Console()
            console.print(table)
            if any(q.source == "table" for q in quotes):
                console.print(f"table: {PRICE_SOURCE}", style="dim")

        emit([q.to_dict() for q in quotes], output, render)
