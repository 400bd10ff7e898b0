"""hybrid plan: does the move pay for this endpoint's traffic? (before migrating)

    hybrid plan -c hybrid.yaml                                  # 14 days of the endpoint's Invocations (CloudWatch)
    hybrid plan -c hybrid.yaml --engineering-days 15 --day-rate 800 --plot reports/plan.png
    hybrid plan -c hybrid.yaml --traffic traffic.csv --output json
    hybrid plan -c hybrid.yaml --scenario diurnal

Traffic: the variants' real Invocations per minute from CloudWatch (before the migration all of
it is on gpu), or a CSV (`invocations` per minute, or `rps`, one row per minute), or a scenario's
traffic model. Capacities and autoscaling targets: hybrid.yaml (capacity_rps_per_instance as
`hybrid loadtest --write-capacity` measured it). Prices: config, the Pricing API with
--live-prices, else the built-in table; each with its source. The math: toolkit/plan.py.
Exit 0 with a plan (whether or not it pays), 2 for bad input, 3 for AWS or disk errors.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from toolkit.commands.common import ConfigOption, Output, OutputOption, emit, load
from toolkit.errors import AwsError, UserError

CAPACITY_KEY = "capacity_rps_per_instance"


# ------------------------------------------------------------------------------------------------
# Traffic sources (thin adapters: each returns requests per minute, oldest first)


def traffic_from_csv(path: Path) -> list[float]:
    """One row per minute; a column `invocations` (requests in that minute) or `rps` (requests/s)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            column = "invocations" if "invocations" in fields else "rps" if "rps" in fields else None
            if column is None:
                raise UserError(f"{path}: needs a header with an `invocations` (per minute) or `rps` column, "
                                f"got {', '.join(fields) or 'no header'}")
            original = (reader.fieldnames or [])[fields.index(column)]
            out: list[float] = []
            for line, row in enumerate(reader, start=2):
                text = (row.get(original) or "").strip()
                try:
                    value = float(text)
                except ValueError:
                    raise UserError(f"{path}:{line}: {column} {text!r} is not a number") from None
                if value < 0 or value != value:
                    raise UserError(f"{path}:{line}: {column} must be >= 0, got {text}")
                out.append(value * 60.0 if column == "rps" else value)
    except FileNotFoundError:
        raise UserError(f"--traffic {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--traffic {path}: cannot read it ({error})") from None
    if not out:
        raise UserError(f"{path}: no rows after the header")
    return out


def traffic_from_scenario(name: str) -> list[float]:
    from toolkit.sim.scenario import load_scenario

    scenario = load_scenario(name)
    return [scenario.traffic.rps_at(m) * 60.0 for m in range(scenario.duration_minutes)]


def traffic_from_cloudwatch(cloudwatch: Any, endpoint: str, days: int, now: datetime) -> list[float]:
    """The endpoint's Invocations per minute over the last `days` (both variants summed; missing = 0)."""
    from toolkit.report.cloudwatch import period_for, read_history

    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(days=days)
    period = period_for(start, now)
    history = read_history(cloudwatch, endpoint, ("neuron", "gpu"), start, end, period=period,
                           metrics=("invocations",))
    points: dict[datetime, float] = {}
    for h in history.values():
        for ts, value in h.series.get("invocations", {}).items():
            points[ts] = points.get(ts, 0.0) + value
    if not points:
        raise UserError(f"no Invocations for endpoint {endpoint} in the last {days} days: is it deployed in this "
                        f"region and account? Give --traffic CSV or --scenario instead")
    first = min(points)  # a young endpoint: plan from its first datapoint, not from empty days
    per_slot = period // 60
    out: list[float] = []
    slot = first
    while slot < end:
        out.extend([points.get(slot, 0.0) / per_slot] * per_slot)
        slot += timedelta(seconds=period)
    return out


# ------------------------------------------------------------------------------------------------


def _sizings(cfg: Any, live_prices: bool) -> dict[str, Any]:
    from toolkit.plan import Sizing
    from toolkit.report.rollout import price_echoes

    prices = price_echoes(cfg, live=live_prices)
    out = {}
    for name in ("neuron", "gpu"):
        v = cfg.variant(name)
        measured = CAPACITY_KEY in v.model_fields_set
        out[name] = Sizing(
            instance_type=v.instance_type, price_per_hour=prices[name].price_per_hour, min_count=v.min_count,
            max_count=v.max_count, target_invocations_per_instance=float(v.target_invocations_per_instance),
            capacity_rps_per_instance=float(v.capacity_rps_per_instance), price_source=prices[name].source,
            capacity_source=(f"hybrid.yaml {CAPACITY_KEY}" if measured
                             else "the default: not measured, run `hybrid loadtest --write-capacity`"),
        )
    return out


def plot(plan: Any, traffic: list[float], path: Path) -> Path:
    """Hourly $/hour all-GPU vs hybrid over the observed traffic, and the traffic itself."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"text.parse_math": False}):  # verdicts carry dollar signs, not TeX
        return _draw(plt, plan, traffic, path)


def _draw(plt: Any, plan: Any, traffic: list[float], path: Path) -> Path:
    hours = list(range(len(plan.hourly["all_gpu"])))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    fig.suptitle(plan.verdict if len(plan.verdict) < 130 else plan.verdict[:127] + "...", fontsize=10)
    top.step(hours, plan.hourly["all_gpu"], where="post", color="#e76f51", label="all-GPU $/hour")
    top.step(hours, plan.hourly["hybrid"], where="post", color="#2a9d8f", label="hybrid $/hour")
    top.set_ylabel("$ / hour")
    top.set_ylim(bottom=0)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    rps = [sum(traffic[h * 60:(h + 1) * 60]) / max(1, len(traffic[h * 60:(h + 1) * 60])) / 60.0 for h in hours]
    bottom.plot(hours, rps, color="#264653", label="mean req/s")
    bottom.set_ylabel("requests / s")
    bottom.set_xlabel("hour of the observed traffic")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    for ax in (top, bottom):
        ax.grid(alpha=0.25)
    fig.subplots_adjust(left=0.08, right=0.82, top=0.9, bottom=0.08)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
    return path


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        config: str = ConfigOption,
        days: int = typer.Option(14, "--days", min=1, max=63, help="Days of CloudWatch history (1-minute data: 15 days)."),
        engineering_days: float = typer.Option(0.0, "--engineering-days", min=0, help="Engineering days the migration takes."),
        day_rate: float = typer.Option(0.0, "--day-rate", min=0, help="$ per engineering day."),
        traffic: str | None = typer.Option(None, "--traffic", help="CSV of the traffic: `invocations` per minute or `rps`, one row per minute."),
        scenario: str | None = typer.Option(None, "--scenario", help="A scenario file or built-in name: its traffic model."),
        neuron_share: float | None = typer.Option(
            None, "--neuron-share", min=0, max=100, help="Steady neuron share in percent (default: canary.target_neuron_percent)."),
        horizon_months: float = typer.Option(12.0, "--horizon-months", min=1, help="Break-even later than this: does not pay."),
        plot_path: str | None = typer.Option(None, "--plot", help="Write a PNG: $/hour all-GPU vs hybrid, and the traffic."),
        live_prices: bool = typer.Option(False, "--live-prices", help="Ask the AWS Pricing API (else config prices, then the table)."),
        endpoint_url: str | None = typer.Option(None, "--endpoint-url", help="AWS endpoint URL (the embedded AWS)."),
        profile: str | None = typer.Option(None, "--profile", help="AWS profile for real AWS."),
        output: Output = OutputOption,
    ) -> None:
        """Project the monthly cost all-GPU vs the steady hybrid split, the savings and the break-even."""
        from toolkit.commands.report_cmds import aws_client
        from toolkit.plan import project

        if traffic is not None and scenario is not None:
            raise UserError("give --traffic CSV or --scenario, not both")
        if (engineering_days > 0) != (day_rate > 0):
            raise UserError("--engineering-days and --day-rate go together (the engineering cost is their product)")
        cfg = load(config)
        if traffic is not None:
            series, source = traffic_from_csv(Path(traffic)), f"CSV {traffic}"
        elif scenario is not None:
            series, source = traffic_from_scenario(scenario), f"scenario {scenario}"
        else:
            now = datetime.now(UTC)
            series = traffic_from_cloudwatch(aws_client(cfg, "cloudwatch", endpoint_url, profile), cfg.name, days, now)
            source = f"CloudWatch AWS/SageMaker Invocations of {cfg.name}, last {days} days"
        sizings = _sizings(cfg, live_prices)
        share = neuron_share if neuron_share is not None else float(cfg.canary.target_neuron_percent)
        result = project(series, sizings["neuron"], sizings["gpu"], neuron_share_percent=share,
                         engineering_cost=engineering_days * day_rate, horizon_months=horizon_months)
        for name, s in sizings.items():
            if s.capacity_source.startswith("the default"):
                result.warnings.append(f"{name}: capacity not measured ({s.capacity_source})")
        data = {"endpoint": cfg.name, "traffic_source": source, **result.to_dict()}
        if plot_path is not None:
            try:
                data["plot"] = str(plot(result, series, Path(plot_path)))
            except OSError as error:
                raise AwsError(f"--plot {plot_path}: cannot write it ({error.strerror or error})") from None
        emit(data, output, _render)


def _render(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from toolkit.report.model import fmt_money

    console = Console()
    hours = data["minutes_observed"] / 60.0
    table = Table(title=f"plan for {data['endpoint']}: {data['traffic_source']}", show_header=False)
    table.add_column("figure")
    table.add_column("value")
    table.add_row("traffic observed", f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h")
    table.add_row("mean / peak", f"{data['mean_rps']:.2f} / {data['peak_rps']:.2f} req/s")
    table.add_row("steady neuron share", f"{data['neuron_share_percent']:g}%")
    for name in ("neuron", "gpu"):
        s = data["sizing"][name]
        table.add_row(f"{name} instance", f"{s['instance_type']} at {fmt_money(s['price_per_hour'], 3)}/h ({s['price_source']})")
        table.add_row(f"{name} capacity / target",
                      f"{s['capacity_rps_per_instance']:g} req/s ({s['capacity_source']}); "
                      f"autoscaling target {s['target_invocations_per_instance']:g}/min; min {s['min_count']}")
    table.add_row("mean instances all-GPU", f"{data['all_gpu_mean_instances']:.2f} gpu")
    table.add_row("mean instances hybrid",
                  f"{data['mean_instances']['neuron']:.2f} neuron + {data['mean_instances']['gpu']:.2f} gpu")
    table.add_row("monthly cost all-GPU", fmt_money(data["all_gpu_monthly"]))
    table.add_row("monthly cost hybrid", fmt_money(data["hybrid_monthly"]))
    fraction = data["savings_fraction"]
    table.add_row("savings per month", fmt_money(data["savings_monthly"])
                  + (f" ({fraction:.1%})" if fraction is not None else ""))
    table.add_row("engineering cost", fmt_money(data["engineering_cost"], 0))
    months = data["break_even_months"]
    table.add_row("break-even", "never" if months is None else f"{months:.1f} months")
    console.print(table)
    for warning in data["warnings"]:
        console.print(f"warning: {warning}")
    console.print(data["verdict"])
    if data.get("plot"):
        console.print(f"plot: {data['plot']}")


__all__ = ["register"]
