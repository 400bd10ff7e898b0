"""A simulated run (toolkit.sim.runner.RunResult) as a ReportInput: the demo's report uses the same renderer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from toolkit.report.model import (
    GPU,
    VARIANTS,
    ConfigEcho,
    DecisionPoint,
    FaultSpan,
    MinuteSample,
    PriceEcho,
    ReportInput,
    VariantSample,
)


def _price_source(setup: Any, name: str) -> str:
    from toolkit.pricing import PRICE_SOURCE

    hw = setup.hardware[name]
    scenario_hw = (getattr(setup.scenario, "variants", None) or {}).get(name)
    if scenario_hw is not None and getattr(scenario_hw, "price_per_hour", None) is not None:
        return f"scenario {setup.scenario.name}"
    if hw.instance_type in setup.config.prices:
        return "hybrid.yaml prices:"
    return PRICE_SOURCE


def config_echo(setup: Any, baseline_method: str) -> ConfigEcho:
    config = setup.config
    return ConfigEcho(
        endpoint=config.name, region=config.region, p99_latency_ms=config.slo.p99_latency_ms,
        max_error_rate=config.slo.max_error_rate, max_regression=config.slo.max_regression,
        steps=tuple(config.canary.resolved_steps()),
        prices=tuple(PriceEcho(n, setup.hardware[n].instance_type, setup.hardware[n].price_per_hour,
                               _price_source(setup, n)) for n in VARIANTS),
        gpu_warm_floor=setup.hardware[GPU].min_count, baseline_method=baseline_method,
    )


def _variant_costs(row: Any, setup: Any) -> dict[str, float]:
    """Split the minute's cost by variant: from each variant's cost per 1K when it served, the rest to the other."""
    known = {n: row.cost_per_1k[n] * row.requests[n] / 1000.0 for n in VARIANTS
             if row.cost_per_1k.get(n) is not None and row.requests.get(n)}
    out = dict(known)
    missing = [n for n in VARIANTS if n not in known]
    if len(missing) == 1:
        out[missing[0]] = max(0.0, row.cost - sum(known.values()))
    elif missing:  # neither served: by instances x price
        for n in missing:
            out[n] = row.instances[n] * setup.hardware[n].price_per_hour / 60.0
    return out


def from_run(result: Any, summary: Mapping[str, Any] | None = None) -> ReportInput:
    """The demo's rows (one per simulated minute, with the tick that followed) as the report's input."""
    setup = result.setup
    steps = list(setup.config.canary.resolved_steps())
    baseline = (result.baseline or {}).get("cost_by_minute") or []
    minutes: list[MinuteSample] = []
    decisions: list[DecisionPoint] = []
    for row in result.rows:
        costs = _variant_costs(row, setup)
        variants = {
            n: VariantSample(invocations=float(row.requests[n]), p99_ms=row.p99_ms[n],
                             instances=float(row.instances[n]), share_percent=row.share[n], cost=costs.get(n, 0.0))
            for n in VARIANTS
        }
        minutes.append(MinuteSample(minute=row.minute, variants=variants,
                                    all_gpu_cost=baseline[row.minute] if row.minute < len(baseline) else None,
                                    unattributed_errors=float(row.errors)))
        if row.phase or row.action:
            tick_minute = row.minute + 1  # the tick after minute m runs at m+1
            percent = steps[row.step] if 0 <= row.step < len(steps) else None
            decisions.append(DecisionPoint(
                time=None, minute=float(tick_minute),
                command="start" if tick_minute == setup.scenario.canary_start_minute else "tick",
                phase=row.phase or "idle", phase_before="", action=row.action or "none", reason=row.reason,
                step_k=row.step + 1 if row.phase == "ramping" else None, step_n=len(steps), step_percent=percent,
                applied=row.action not in ("", "none", "hold"),
            ))
    faults = [FaultSpan(f.minute, f.minute + f.duration_minutes, f"{f.variant} {f.kind}")
              for f in setup.scenario.faults]
    title = f"hybrid demo: {setup.scenario.name} (seed {setup.seed})"
    mode = (summary or {}).get("mode", "simulated")
    notes = [f"Simulated run ({mode}): the fleet is simulated; the deploy, the controller and its adapters are real.",
             "5XX are counted for the whole endpoint in the simulation (not per variant)."]
    notes += _fault_notes(summary or {})
    notes += _parity_notes(summary or {})
    return ReportInput(
        title=title, subtitle=setup.scenario.description, start=setup.scenario.start, minutes=minutes,
        decisions=decisions,
        config=config_echo(setup, "the same simulated traffic and seed served by gpu alone, with autoscaling"),
        faults=faults, x_label="simulated minute", notes=notes,
    )


def _fault_notes(summary: Mapping[str, Any]) -> list[str]:
    """The demo's own figures about the injected fault (the truth only a simulation knows)."""
    onset = summary.get("fault_onset_minute")
    if onset is None:
        return []
    parts = [f"Neuron fault injected at minute {onset}"]
    if summary.get("fallback_minute") is not None:
        parts.append(f"fallback decided at minute {summary['fallback_minute']} "
                     f"({summary.get('minutes_to_fallback')} min after the onset)")
    if summary.get("fallback_effective_minute") is not None:
        parts.append(f"gpu served everything from minute {summary['fallback_effective_minute']}")
    if summary.get("recovered_minute") is not None:
        parts.append(f"neuron back from minute {summary['recovered_minute']}")
    out = ["; ".join(parts) + "."]
    if summary.get("requests_over_slo") is not None:
        out.append(f"Requests over the SLO (true latency of every request): {summary['requests_over_slo']:,}; "
                   f"false rollbacks: {summary.get('false_rollbacks', 0)}.")
    return out


def _parity_notes(summary: Mapping[str, Any]) -> list[str]:
    """Output parity (issue 17): what the client's mirroring saw, and the wrong answers users got (truth)."""
    parity = summary.get("parity") or {}
    wrong = summary.get("wrong_answers") or 0
    if not parity.get("compared") and not wrong:
        return []
    if parity.get("compared"):
        seen = (f"Output parity: {parity['agreed']:,} of {parity['compared']:,} mirrored neuron answers agreed "
                f"with gpu's ({parity['agreement']:.2%})")
    else:
        seen = "Output parity: off (no answers mirrored; the controller could not see wrong answers)"
    return [f"{seen}; requests answered wrongly (truth): {wrong:,}."]


__all__ = ["config_echo", "from_run"]
