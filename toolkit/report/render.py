"""Draw a ReportInput: one PNG (six stacked timelines) and a self-contained HTML page.

The HTML embeds the PNG (base64), a formatted summary with a one-line verdict, the config the
rollout was judged against (SLO, steps, prices with their source) and the decisions grouped into
episodes. matplotlib is imported lazily with the non-interactive Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from toolkit.report.model import (
    GPU,
    NEURON,
    VARIANTS,
    Episode,
    ReportInput,
    Summary,
    episodes,
    fmt_minutes,
    fmt_money,
    fmt_percent,
    summarize,
)

COLORS = {NEURON: "#2a9d8f", GPU: "#e76f51"}
ERROR_COLOR = "#9b2226"
FALLBACK_SHADE = "#e63946"
FAULT_SHADE = "#f4a261"
MIN_REQUESTS_FOR_COST = 10  # requests in a minute below which a variant's $/1K is not drawn
HOURS_AXIS_AFTER = 360  # minutes: a longer report's axis is in hours
BARS_UP_TO = 600  # minutes: beyond, 5XX are drawn as filled steps (tens of thousands of bars draw slowly)
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8, "borderaxespad": 0.0, "frameon": False}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def render_png(report: ReportInput, summary: Summary | None = None) -> bytes:
    """Six timelines sharing the minute axis; legends sit right of the plots (never over the data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summary or summarize(report)
    with plt.rc_context({"text.parse_math": False}):  # labels carry dollar signs, not TeX
        return _draw(plt, report, summary)


def _draw(plt: Any, report: ReportInput, summary: Summary) -> bytes:
    rows = report.minutes
    # Long rollouts (days) read better in hours; every x position goes through `at`.
    scale = 60.0 if len(rows) > HOURS_AXIS_AFTER else 1.0

    def at(minute: float) -> float:
        return minute / scale

    x = [at(m.minute) for m in rows]
    slo = report.config.p99_latency_ms
    fig, axes = plt.subplots(6, 1, figsize=(12, 16), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2.5, 1.4, 2, 2, 2]})
    fig.suptitle(f"{report.title}\n{summary.verdict}", fontsize=11)

    # 1. traffic share and instances
    ax = axes[0]
    for name in VARIANTS:
        ax.step(x, [_nan(m.get(name).share_percent) for m in rows], where="post", color=COLORS[name],
                linewidth=2 if name == NEURON else 1.2, label=f"{name} share %")
    ax.set_ylabel("traffic share (%)")
    ax.set_ylim(-5, 128)  # room above 100 % for the step labels
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    twin = ax.twinx()
    for name in VARIANTS:
        twin.step(x, [m.get(name).instances for m in rows], where="post", color=COLORS[name], linestyle=":",
                  alpha=0.9, label=f"{name} instances")
    twin.set_ylabel("instances")
    top = max([m.get(n).instances for m in rows for n in VARIANTS] + [1])
    twin.set_ylim(0, top * 1.25 + 0.5)
    handles, labels = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(handles + more[0], labels + more[1], **{**LEGEND, "bbox_to_anchor": (1.06, 1.0)})

    # 2. p99 latency vs the SLO
    ax = axes[1]
    for name in VARIANTS:
        ax.plot(x, [_nan(m.get(name).p99_ms) for m in rows], color=COLORS[name], label=f"{name} p99")
    ax.axhline(slo, color="black", linestyle="--", linewidth=1, label=f"SLO {slo:g} ms")
    seen = [m.get(n).p99_ms for m in rows for n in VARIANTS if m.get(n).p99_ms is not None]
    ax.set_ylim(0, min(max([slo * 1.3, *seen]) * 1.05, slo * 4))
    ax.set_ylabel("p99 latency (ms)")
    ax.legend(**LEGEND)

    # 3. 5XX on its own axis: a few errors must not vanish beside thousands of requests
    ax = axes[2]
    bars = len(rows) <= BARS_UP_TO
    series = [(f"{n} 5XX", COLORS[n], [m.get(n).errors_5xx for m in rows], off) for n, off in ((NEURON, -0.2), (GPU, 0.2))]
    series.append(("5XX (endpoint)", ERROR_COLOR, [m.unattributed_errors for m in rows], 0.0))
    for label, color, values, offset in series:
        if not any(values):
            continue
        if bars:
            ax.bar([v + offset / scale for v in x], values, width=(0.8 if offset == 0 else 0.4) / scale, color=color,
                   alpha=0.85, label=label)
        else:
            ax.fill_between(x, values, step="post", color=color, alpha=0.6, linewidth=0, label=label)
    ax.set_ylabel("5XX / minute")
    worst = max([m.errors_5xx for m in rows] + [0])
    ax.set_ylim(0, max(worst * 1.15, 1))
    if worst == 0:
        ax.text(0.5, 0.5, "no 5XX", transform=ax.transAxes, ha="center", va="center", color="#555", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**LEGEND)

    # 4. cost per 1K per variant
    ax = axes[3]
    plotted: list[float] = []
    for name in VARIANTS:
        # A variant that served a trickle (a few requests on warm instances) has a huge $/1K that
        # says nothing: drawn only where it served a real part of the minute.
        values = [_nan(m.get(name).cost_per_1k) if m.get(name).invocations >= max(MIN_REQUESTS_FOR_COST,
                                                                                   0.01 * m.invocations)
                  else float("nan") for m in rows]
        plotted += [v for v in values if v == v]
        ax.plot(x, values, color=COLORS[name], label=f"{name} $/1K")
    base_per_1k = [(m.all_gpu_cost / m.invocations * 1000.0) if m.all_gpu_cost is not None and m.invocations
                   else float("nan") for m in rows]
    if any(v == v for v in base_per_1k):
        plotted += [v for v in base_per_1k if v == v]
        ax.plot(x, base_per_1k, color="#555", linestyle="--", linewidth=1, label="all-GPU $/1K")
    ax.set_ylabel("$ per 1K requests")
    if plotted:  # the 98th percentile sets the scale: one odd minute must not flatten the rest
        ordered = sorted(plotted)
        ax.set_ylim(0, ordered[min(len(ordered) - 1, int(0.98 * len(ordered)))] * 1.3 or 1.0)
    else:
        ax.set_ylim(bottom=0)
    ax.legend(**LEGEND)

    # 5. cumulative cost, hybrid vs all-GPU
    ax = axes[4]
    total = 0.0
    cumulative = []
    for m in rows:
        total += m.cost
        cumulative.append(total)
    ax.plot(x, cumulative, color="#264653", linewidth=2, label="this rollout")
    if summary.all_gpu_cost is not None:
        base_total = 0.0
        base = []
        for m in rows:
            base_total += m.all_gpu_cost or 0.0
            base.append(base_total)
        ax.plot(x, base, color=COLORS[GPU], linestyle="--", label="all-GPU, same traffic")
        if rows:
            ax.annotate(f"{fmt_percent(summary.savings_fraction)} saved" if (summary.savings_fraction or 0) >= 0
                        else f"{fmt_percent(-(summary.savings_fraction or 0))} more",
                        (x[-1], cumulative[-1]), textcoords="offset points", xytext=(-60, 12), fontsize=8)
    ax.set_ylabel("cumulative cost ($)")
    ax.legend(**LEGEND)

    # 6. traffic
    ax = axes[5]
    for name in VARIANTS:
        ax.plot(x, [m.get(name).invocations for m in rows], color=COLORS[name], label=f"{name} requests/min")
    ax.set_ylabel("requests / minute")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(report.x_label.replace("minutes", "hours", 1) if scale > 1 else report.x_label)
    ax.legend(**LEGEND)

    eps = episodes(report.decisions, end_minute=float(len(rows)))
    steps = [d for d in report.decisions if d.minute is not None and d.action in ("progress", "promote")]
    for ax in axes:
        for span in report.faults:
            ax.axvspan(at(span.start_minute), at(span.end_minute), color=FAULT_SHADE, alpha=0.18, linewidth=0)
        for ep in eps:
            if ep.kind in ("fallback", "aborted"):
                ax.axvspan(at(ep.start_minute), at(max(ep.end_minute, ep.start_minute + 0.5)), color=FALLBACK_SHADE,
                           alpha=0.10, linewidth=0)
        for d in steps:
            ax.axvline(at(d.minute or 0.0), color="#6c757d", linestyle=":", linewidth=0.8)
        ax.grid(alpha=0.25)
    for d in steps:  # step markers, labelled once at the top
        label = f"{d.step_percent:g}%" if d.step_percent is not None else d.action
        axes[0].text(at(d.minute or 0.0), 102, label, fontsize=6.5, ha="center", va="bottom", rotation=90, color="#495057")
    for ep in eps:
        if ep.kind in ("fallback", "aborted"):
            axes[0].text(at(ep.start_minute), 50, f" {ep.kind} ({fmt_minutes(ep.minutes)})", color=ERROR_COLOR,
                         fontsize=8, rotation=90, va="center")
    for span in report.faults:
        axes[1].text(at(span.start_minute), axes[1].get_ylim()[1] * 0.97, f" fault: {span.label}", fontsize=8,
                     va="top", color="#b5651d")
    if x:
        axes[-1].set_xlim(min(x), max(x) + 1 / scale)
    fig.subplots_adjust(left=0.07, right=0.80, top=0.94, bottom=0.04, hspace=0.12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# HTML


def summary_rows(s: Summary) -> list[tuple[str, str]]:
    rows = [
        ("duration", fmt_minutes(s.minutes)),
        ("requests", f"{s.requests:,.0f}"),
        ("5XX errors", f"{s.errors_5xx:,.0f}" + (f" ({s.errors_5xx / s.requests:.3%})" if s.requests else "")),
        ("cost of this rollout", fmt_money(s.cost)),
        ("all-GPU cost, same traffic", fmt_money(s.all_gpu_cost)),
        ("savings vs all-GPU", fmt_percent(s.savings_fraction)),
        ("cost per 1K requests (hybrid / all-GPU)",
         f"{fmt_money(s.hybrid_cost_per_1k, 4)} / {fmt_money(s.all_gpu_cost_per_1k, 4)}"),
        ("cost per 1K on neuron / gpu",
         f"{fmt_money(s.cost_per_1k.get(NEURON), 4)} / {fmt_money(s.cost_per_1k.get(GPU), 4)}"),
        ("neuron share at the end", "-" if s.final_neuron_share is None else f"{s.final_neuron_share:.1f}%"),
        ("time to full migration", fmt_minutes(s.minutes_to_full_migration)),
        ("fallbacks to gpu", f"{s.fallbacks} ({fmt_minutes(s.fallback_minutes)} in total)" if s.fallbacks else "none"),
        ("minutes over the p99 SLO", str(s.slo_breach_minutes)),
        ("worst p99 neuron / gpu", " / ".join("-" if s.worst_p99_ms.get(n) is None else f"{s.worst_p99_ms[n]:.0f} ms"
                                             for n in VARIANTS)),
    ]
    return rows


def _episode_row(ep: Episode) -> str:
    actions = ", ".join(f"{n} x {a}" if n > 1 else a for a, n in sorted(ep.actions.items())) or "-"
    detail = f"<br><small>{html.escape(ep.detail)}</small>" if ep.detail else ""
    return (f"<tr class='{html.escape(ep.kind)}'><td>{ep.start_minute:.0f}</td><td>{fmt_minutes(ep.minutes)}</td>"
            f"<td>{html.escape(ep.kind)}</td><td>{ep.decisions}</td><td>{html.escape(actions)}</td>"
            f"<td>{html.escape(ep.reason)}{detail}</td></tr>")


def render_html(report: ReportInput, png: bytes, summary: Summary | None = None) -> str:
    summary = summary or summarize(report)
    image = base64.b64encode(png).decode("ascii")
    figures = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(summary))
    c = report.config
    prices = "".join(
        f"<tr><td>{html.escape(p.variant)}</td><td>{html.escape(p.instance_type)}</td>"
        f"<td>{fmt_money(p.price_per_hour, 3)}/h</td><td>{html.escape(p.source)}</td></tr>" for p in c.prices
    )
    steps = ", ".join(f"{s:g}%" for s in c.steps) or "-"
    eps = "".join(_episode_row(e) for e in episodes(report.decisions, end_minute=float(len(report.minutes))))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    title = html.escape(report.title)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1150px;color:#222}}
table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}}
th{{background:#f6f6f6}}img{{max-width:100%}}.verdict{{font-size:1.15em;font-weight:600;padding:.6em .8em;
background:#eef6f5;border-left:4px solid #2a9d8f}}tr.fallback td,tr.aborted td{{background:#fdecea}}</style></head>
<body><h1>{title}</h1>
<p>{html.escape(report.subtitle)}</p>
<p class="verdict">{html.escape(summary.verdict)}</p>
<h2>Summary</h2><table>{figures}</table>
<h2>Judged against</h2>
<table><tr><th>endpoint</th><td>{html.escape(c.endpoint)} ({html.escape(c.region)})</td></tr>
<tr><th>p99 SLO</th><td>{c.p99_latency_ms:g} ms</td></tr>
<tr><th>max 5XX rate</th><td>{c.max_error_rate:.2%}</td></tr>
<tr><th>max neuron p99 regression vs gpu</th><td>{c.max_regression:.0%}</td></tr>
<tr><th>canary steps (neuron share)</th><td>{html.escape(steps)}</td></tr>
<tr><th>warm gpu floor</th><td>{c.gpu_warm_floor} instance(s)</td></tr>
<tr><th>all-GPU counterfactual</th><td>{html.escape(c.baseline_method or '-')}</td></tr></table>
<table><tr><th>variant</th><th>instance type</th><th>price</th><th>price source</th></tr>{prices}</table>
<img alt="traffic share, instances, p99 latency, 5XX, cost per 1K, cumulative cost and traffic timelines"
 src="data:image/png;base64,{image}">
<h2>Episodes</h2><p>Consecutive decisions of one kind in one row: a fallback with its cool-down is one row.</p>
<table><tr><th>from minute</th><th>lasted</th><th>episode</th><th>decisions</th><th>actions</th><th>why</th></tr>{eps}</table>
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
</body></html>
"""


def write_report(report: ReportInput, path: str | Path) -> Path:
    """`.png` writes the plot only; anything else writes the HTML (plot embedded) and the PNG beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(report)
    png = render_png(report, summary)
    if path.suffix.lower() == ".png":
        path.write_bytes(png)
        return path
    path.with_suffix(".png").write_bytes(png)
    path.write_text(render_html(report, png, summary), encoding="utf-8")
    return path
