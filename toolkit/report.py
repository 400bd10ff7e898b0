"""The demo's report: one PNG (weights, latency, cost, traffic timelines) and a self-contained HTML page.

The HTML embeds the PNG (base64), the summary figures and the decision reasons (every tick that
changed something), so one file can be mailed or opened from a CI artifact. matplotlib is
imported here, lazily by the callers (`hybrid demo`), with the non-interactive Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.config import GPU, NEURON

COLORS = {NEURON: "#2a9d8f", GPU: "#e76f51"}
QUIET_ACTIONS = {"", "none", "hold"}


def _fault_spans(faults: Sequence[Any]) -> list[tuple[int, int, str]]:
    return [(f.minute, f.minute + f.duration_minutes, f"{f.variant} {f.kind}") for f in faults]


def render_png(result: Any, summary: Mapping[str, Any]) -> bytes:
    """Four stacked timelines: neuron share and instances, p99 per variant vs SLO, cumulative cost, traffic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows
    setup = result.setup
    minutes = [r.minute for r in rows]
    slo = setup.config.slo.p99_latency_ms
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True, gridspec_kw={"height_ratios": [3, 3, 2, 2]})
    title = f"{setup.scenario.name} (seed {setup.seed}): {setup.scenario.description}"
    fig.suptitle(title if len(title) < 110 else title[:107] + "...", fontsize=11)

    ax = axes[0]
    ax.step(minutes, [r.share[NEURON] for r in rows], where="post", color=COLORS[NEURON], label="neuron share %")
    ax.step(minutes, [r.share[GPU] for r in rows], where="post", color=COLORS[GPU], alpha=0.6, label="gpu share %")
    ax.set_ylabel("traffic share (%)")
    ax.set_ylim(-5, 105)
    twin = ax.twinx()
    for name in (NEURON, GPU):
        twin.step(minutes, [r.instances[name] for r in rows], where="post", color=COLORS[name], linestyle=":",
                  alpha=0.8, label=f"{name} instances")
    twin.set_ylabel("instances")
    twin.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize=8)

    ax = axes[1]
    for name in (NEURON, GPU):
        ax.plot(minutes, [r.p99_ms[name] if r.p99_ms[name] is not None else float("nan") for r in rows],
                color=COLORS[name], label=f"{name} p99 (CloudWatch)")
    ax.plot(minutes, [r.true_p99_ms if r.true_p99_ms is not None else float("nan") for r in rows],
            color="#264653", linewidth=0.8, alpha=0.7, label="served p99 (all requests)")
    ax.axhline(slo, color="black", linestyle="--", linewidth=1, label=f"SLO {slo:g} ms")
    ax.set_ylabel("ModelLatency p99 (ms)")
    top = max([slo * 1.5] + [v for r in rows for v in r.p99_ms.values() if v is not None])
    ax.set_ylim(0, min(top * 1.05, slo * 4))
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[2]
    cumulative = []
    total = 0.0
    for r in rows:
        total += r.cost
        cumulative.append(total)
    ax.plot(minutes, cumulative, color="#264653", label="hybrid (this run)")
    if result.baseline and result.baseline.get("cost_by_minute"):
        base_total = 0.0
        base = []
        for cost in result.baseline["cost_by_minute"][: len(rows)]:
            base_total += cost
            base.append(base_total)
        ax.plot(minutes[: len(base)], base, color=COLORS[GPU], linestyle="--", label="all-GPU (same traffic)")
    ax.set_ylabel("cumulative cost ($)")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[3]
    for name in (NEURON, GPU):
        ax.plot(minutes, [r.requests[name] for r in rows], color=COLORS[name], label=f"{name} requests/min")
    ax.bar(minutes, [r.errors for r in rows], color="#9b2226", alpha=0.6, label="5XX served")
    ax.set_ylabel("requests / minute")
    ax.set_xlabel("simulated minute")
    ax.legend(loc="upper right", fontsize=8)

    for ax in axes:
        for start, end, _label in _fault_spans(setup.scenario.faults):
            ax.axvspan(start, end, color="#f4a261", alpha=0.15)
        if summary.get("fallback_minute") is not None:
            ax.axvline(summary["fallback_minute"], color="#9b2226", linewidth=1.2, linestyle="-.")
        ax.grid(alpha=0.25)
    spans = _fault_spans(setup.scenario.faults)
    if spans:
        axes[0].text(spans[0][0], 102, f" fault: {spans[0][2]}", fontsize=8, va="bottom", color="#b5651d")
    if summary.get("fallback_minute") is not None:
        axes[0].text(summary["fallback_minute"], 50, " fallback", color="#9b2226", fontsize=8, rotation=90)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def decisions(result: Any) -> list[dict[str, Any]]:
    """The ticks that did something (every progress, fallback, scale...), with their reasons."""
    out = []
    for r in result.rows:
        if r.action in QUIET_ACTIONS and not any(e.startswith("autoscaling") for e in r.events):
            continue
        out.append({"minute": r.minute + 1, "phase": r.phase, "action": r.action or "-", "reason": r.reason,
                    "events": list(r.events)})
    return out


def render_html(result: Any, summary: Mapping[str, Any], png: bytes) -> str:
    image = base64.b64encode(png).decode("ascii")
    figures = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items()
        if not isinstance(v, (dict, list))
    )
    rows = "".join(
        f"<tr><td>{d['minute']}</td><td>{html.escape(d['phase'])}</td><td>{html.escape(d['action'])}</td>"
        f"<td>{html.escape(d['reason'])}{'<br><small>' + html.escape('; '.join(d['events'])) + '</small>' if d['events'] else ''}</td></tr>"
        for d in decisions(result)
    )
    name = html.escape(result.setup.scenario.name)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hybrid demo: {name}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}}
th{{background:#f6f6f6}}img{{max-width:100%}}</style></head>
<body><h1>hybrid demo: {name}</h1>
<p>{html.escape(result.setup.scenario.description)}</p>
<img alt="weights, latency, cost and traffic timelines" src="data:image/png;base64,{image}">
<h2>Summary</h2><table>{figures}</table>
<h2>Decisions</h2><p>Every tick that changed something (minute = when the tick ran).</p>
<table><tr><th>minute</th><th>phase</th><th>action</th><th>reason</th></tr>{rows}</table>
</body></html>
"""


def write_report(result: Any, summary: Mapping[str, Any], path: str | Path) -> Path:
    """Write the report: `.png` writes the plot only; anything else writes HTML (plot embedded) plus the PNG beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = render_png(result, summary)
    if path.suffix.lower() == ".png":
        path.write_bytes(png)
        return path
    path.with_suffix(".png").write_bytes(png)
    path.write_text(render_html(result, summary, png), encoding="utf-8")
    return path
