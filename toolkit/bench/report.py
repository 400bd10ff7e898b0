"""The bench's outputs for people: a Rich table (figures and goals) and a matplotlib PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = (
    ("cost $", "cost", 2),
    ("x oracle", "cost_vs_oracle", 2),
    ("gap closed", "gap_closed", 2),
    ("bad req", "bad_requests", 0),
    ("over SLO", "requests_over_slo", 0),
    ("5XX", "errors", 0),
    ("wrong", "wrong_answers", 0),
    ("min to full", "minutes_to_full_migration", 1),
    ("fallback decided", "minutes_to_fallback_decided", 1),
    ("fallback effective", "minutes_to_fallback", 1),
    ("rollbacks", "rollbacks", 1),
    ("false rb", "false_rollbacks", 1),
    ("metrics/tick", "metrics_calls_per_tick", 2),
    ("updates/tick", "update_calls_per_tick", 3),
)


def cell_text(spread: dict[str, Any], digits: int, key: str) -> str:
    """mean ± std; for a minutes figure `never` when no seed has it and `k never` when some lack it,
    for any other figure `-` (no pair to compute it from, e.g. a hybrid-only reference run)."""
    lacking = "never" if key.startswith("minutes_to_") else "-"
    if spread.get("mean") is None:
        return lacking if spread.get("missing") else "-"
    text = f"{spread['mean']:.{digits}f}"
    if spread.get("std"):
        text += f" ±{spread['std']:.{digits}f}"
    if spread.get("missing"):
        text += f" ({spread['missing']} {'never' if lacking == 'never' else 'n/a'})"
    return text


def render(document: dict[str, Any], console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"hybrid bench: {document['seeds']} seed(s), mean ± std over seeds", show_lines=False)
    table.add_column("scenario")
    table.add_column("policy")
    for title, _, _ in COLUMNS:
        table.add_column(title, justify="right")
    for scenario, by_policy in document["results"].items():
        first = True
        for policy in document["policies"]:
            cell = by_policy.get(policy)
            if cell is None:
                continue
            style = "bold" if policy == "hybrid" else None
            table.add_row(scenario if first else "", policy,
                          *(cell_text(cell[key], digits, key) for _, key, digits in COLUMNS), style=style)
            first = False
        table.add_section()
    console.print(table)
    goals = Table(title="goals: hybrid (met / MISSED, as measured)", show_lines=False)
    for name in ("goal", "scenario", "value", "bound", "met"):
        goals.add_column(name)
    for goal in document["goals"]:
        met = goal["met"]
        mark = "[green]met[/]" if met else ("[red]MISSED[/]" if met is False else "n/a")
        value = goal["value"]
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        if goal.get("note"):
            text += f" ({goal['note']})"
        goals.add_row(goal["goal"], goal["scenario"], text, goal["bound"], mark)
    console.print(goals)
    for check in document.get("aws_check", []):
        console.print(f"embedded-AWS check, {check['scenario']} seed {check['seed']} "
                      f"({check['wall_seconds']:.1f} s): agree={check['agree']}")
        console.print(f"  embedded AWS: {check['embedded_aws']}")
        console.print(f"  in memory:    {check['in_memory']}")
    console.print(f"wall time {document['wall_seconds']:.1f} s on {document['workers']} worker(s)")


def plot(document: dict[str, Any], path: str | Path) -> Path:
    """Two panels per scenario: cost / oracle cost and bad requests, one bar per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    scenarios = list(document["results"])
    policies = document["policies"]
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 1.3 * len(scenarios)), 8.0), sharex=True)
    width = 0.8 / max(1, len(policies))
    for index, policy in enumerate(policies):
        xs = [i + (index - (len(policies) - 1) / 2) * width for i in range(len(scenarios))]
        for ax, key in ((axes[0], "cost_vs_oracle"), (axes[1], "bad_requests")):
            means, errs = [], []
            for scenario in scenarios:
                spread = document["results"][scenario].get(policy, {}).get(key, {})
                means.append(spread.get("mean") or 0.0)
                errs.append(spread.get("std") or 0.0)
            # Whiskers stop at zero: neither cost nor a request count goes negative.
            lower = [min(m, e) for m, e in zip(means, errs, strict=True)]
            ax.bar(xs, means, width, yerr=[lower, errs], label=policy, capsize=2)
    axes[0].axhline(1.05, color="black", linestyle="--", linewidth=0.8, label="goal 1.05 x oracle")
    axes[0].set_ylabel("cost / oracle cost")
    axes[1].set_ylabel("bad requests (over SLO + failed)")
    axes[1].set_yscale("symlog", linthresh=1.0)
    axes[1].set_ylim(bottom=0)
    axes[1].set_xticks(range(len(scenarios)))
    axes[1].set_xticklabels(scenarios, rotation=30, ha="right")
    axes[0].legend(fontsize=8, ncol=4)
    fig.suptitle(f"hybrid bench ({document['seeds']} seeds; bars: mean, whiskers: std)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
