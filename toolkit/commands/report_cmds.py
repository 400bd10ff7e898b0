"""hybrid report: the HTML and PNG report of a real rollout.

    hybrid report -c hybrid.yaml                       # records.jsonl in the state dir (or the controller's table)
    hybrid report -c hybrid.yaml --since 6h --out reports/rollout.html
    hybrid report -c hybrid.yaml --table bert-classifier-routing --output json

Reads the decision records (records.jsonl, or the in-account controller's DynamoDB table) and the
variants' CloudWatch history over the same window, then renders with the demo's renderer.
Exit 0 when the report was written, 2 for bad input, 3 for AWS or disk errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from toolkit.commands.common import ConfigOption, Output, OutputOption, emit, load
from toolkit.errors import AwsError, UserError

EndpointUrlOption = typer.Option(
    None, "--endpoint-url", help="AWS endpoint URL (the embedded AWS); env AWS_ENDPOINT_URL also works."
)
ProfileOption = typer.Option(None, "--profile", help="AWS profile for real AWS.")


def aws_client(config: Any, service: str, endpoint_url: str | None, profile: str | None) -> Any:
    """A boto3 client in the config's region (thin: no retries or waiting of our own)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        session = boto3.Session(profile_name=profile, region_name=config.region)
        return session.client(service, endpoint_url=endpoint_url) if endpoint_url else session.client(service)
    except ProfileNotFound:
        raise UserError(f"--profile {profile}: no such AWS profile in ~/.aws/config") from None
    except BotoCoreError as error:
        raise AwsError(f"{service} client: {error}") from None


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        config: str = ConfigOption,
        since: str | None = typer.Option(
            None, "--since", help="Start of the report: ISO 8601 time or a duration back from now (90m, 6h, 2d). "
            "Default: the first record."),
        records: str | None = typer.Option(None, "--records", help="A records.jsonl file (default: the state dir's)."),
        table: str | None = typer.Option(
            None, "--table", help="Read the records from this DynamoDB table (the in-account controller's); "
            "default: env HYBRID_TABLE, or the controller's table when it is enabled."),
        state_dir: str | None = typer.Option(None, "--state-dir", help="Where records.jsonl lives (default: the config's state_dir)."),
        out: str | None = typer.Option(
            None, "--out", help="Report path (.html with the PNG beside it, or .png). Default: reports/rollout-<name>-<start>.html"),
        period: int | None = typer.Option(
            None, "--period", help="CloudWatch period in seconds, 60 or 300 (default: 60 while CloudWatch keeps "
            "1-minute data, i.e. 15 days)."),
        live_prices: bool = typer.Option(False, "--live-prices", help="Ask the AWS Pricing API (else config prices, then the table)."),
        endpoint_url: str | None = EndpointUrlOption,
        profile: str | None = ProfileOption,
        output: Output = OutputOption,
    ) -> None:
        """Report a real rollout: traffic share, instances, p99, 5XX, cost per 1K, savings vs all-GPU, episodes."""
        from toolkit.report.cloudwatch import period_for, read_history
        from toolkit.report.model import summarize
        from toolkit.report.render import write_report
        from toolkit.report.rollout import (
            build,
            parse_since,
            price_echoes,
            read_file_records,
            read_table_records,
            records_path,
            table_name,
            window,
        )

        if records is not None and table is not None:
            raise UserError("give --records FILE or --table NAME, not both")
        if period is not None and period not in (60, 300):
            raise UserError(f"--period {period}: use 60 or 300 (seconds)")
        cfg = load(config)
        now = datetime.now(UTC)
        start_at = parse_since(since, now) if since else None
        name = None if records is not None else table_name(cfg, table)
        if name is not None:
            raw = read_table_records(aws_client(cfg, "dynamodb", endpoint_url, profile), name, cfg.name)
            source = f"DynamoDB table {name}"
        else:
            path = Path(records) if records is not None else records_path(cfg, config, state_dir)
            raw = read_file_records(path)
            source = str(path)
        from toolkit.report.model import parse_record

        parsed = [parse_record(r) for r in raw]
        if start_at is not None:
            parsed = [d for d in parsed if d.time is None or d.time >= start_at]
        if not any(d.time is not None for d in parsed):
            raise UserError(f"no decision records in {source}" + (f" since {start_at:%Y-%m-%d %H:%M} UTC" if start_at else "")
                            + ": nothing to report (run `hybrid route log` to see what is there)")
        start, end = window(parsed, start_at)
        prices = price_echoes(cfg, live=live_prices)
        history = read_history(aws_client(cfg, "cloudwatch", endpoint_url, profile), cfg.name, ("neuron", "gpu"),
                               start, end, period=period or period_for(start, now))
        data = build(cfg, raw, history, prices, start=start, end=end, source=source)
        target = Path(out) if out else Path("reports") / f"rollout-{cfg.name}-{start:%Y%m%d-%H%M}.html"
        try:
            written = write_report(data, target)
        except OSError as error:
            raise AwsError(f"--out {target}: cannot write the report ({error.strerror or error})") from None
        summary = summarize(data)
        result: dict[str, Any] = {
            "endpoint": cfg.name, "start": start.isoformat(), "end": end.isoformat(), "records": source,
            "decisions": len(data.decisions), "summary": summary.to_dict(), "report": str(written),
        }
        if written.suffix.lower() != ".png":
            result["report_png"] = str(written.with_suffix(".png"))
        emit(result, output, _render)


def _render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from toolkit.report.model import Summary
    from toolkit.report.render import summary_rows

    console = Console()
    summary = Summary(**result["summary"])
    table = Table(title=f"rollout of {result['endpoint']}: {result['start'][:16]} to {result['end'][:16]} UTC",
                  show_header=False)
    table.add_column("figure")
    table.add_column("value")
    for label, value in summary_rows(summary):
        table.add_row(label, value)
    console.print(table)
    console.print(summary.verdict)
    console.print(f"report: {result['report']}" + (f" (and {result['report_png']})" if "report_png" in result else ""))


__all__ = ["register"]
