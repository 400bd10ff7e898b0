"""Run policies side by side on the same scenarios and seeds, and compute the figures.

One run = one (scenario, policy, seed): the simulator (toolkit.sim) with the fleet seeded
identically for every policy, a controller ticking once per simulated minute. `hybrid` is the
REAL routing.controller.Controller over the in-memory adapters (the tick code users run);
the baselines (toolkit.bench.baselines) run through `BaselineController` on the same adapters,
so their API calls are counted the same way. `aws_check` runs `hybrid` once more through the
full AWS path (embedded AWS, deploy, CloudWatch, build_controller) for the same seed.

Figures per run (`RunFigures`), scored from the simulator's truth, not from the metrics
(definitions in docs/bench.md): cost, bad_requests (served over the SLO + failed: 5XX, dropped
at capacity, outage), minutes to full migration, rollbacks and false rollbacks (no harmful
minute shortly before), fallback decided/effective from every harmful onset (harm is the
fleet's truth: a neuron fault breaching the SLO at the share neuron carried), API calls per tick.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

from routing.model import EndpointLive, Target
from routing.router import EndpointBusy
from toolkit.bench.baselines import BASELINES, POLICIES, Baseline, Move, make, oracle_rows
from toolkit.config import NEURON, VARIANT_NAMES, HybridConfig
from toolkit.sim.runner import (
    DEPLOYED_SETTLE_SECONDS,
    HARM_KINDS,
    SHARE_EPSILON,
    Row,
    fallback_events,
    false_rollback_count,
    harm_episodes,
    memory_world,
    run,
)
from toolkit.sim.scenario import Scenario, Setup, resolve

GOAL_SEEDS = 20  # healthy scenarios' "0 false rollbacks" is judged over at least 20 seeds
REFERENCE_POLICIES = ("static-gpu", "oracle")  # always run: cost_vs_oracle and gap_closed need them


# ------------------------------------------------------------------------------------------------
# Baselines on the controller's adapters


class BaselineController:
    """Drives a Baseline like Controller.tick(): describe, one metrics read, decide, at most one update."""

    def __init__(self, policy: Baseline, world: Any, setup: Setup) -> None:
        self.policy = policy
        self.world = world
        self.setup = setup
        self.view = SimpleNamespace(setup=setup, fleet=world.simulator.fleet)
        self.wanted: Target | None = None

    def command(self, name: str) -> Any:
        if name == "start":
            self.policy.start(self.world.simulator.minute)
        return self.tick()

    def tick(self) -> Any:
        if getattr(self.policy, "static", False) or self.policy.name.startswith("static-"):
            return _result(Move("none", "static split"))
        live = self.world.router.describe()
        observation = None
        if self.policy.reads_metrics:
            observation = self.world.metrics.observe(self.setup.config.name, VARIANT_NAMES, self.world.clock.now(),
                                                     self.policy.window_minutes)
        move = self.policy.decide(self.world.simulator.minute, live, observation, self.view)
        if move.target is not None:
            self.wanted = move.target
        # The wanted endpoint is applied when the endpoint is free (a busy endpoint refuses the update;
        # the next tick tries again) and kept until it is live in full: the router stages a multi-part
        # target (counts first, weights once the instances serve), so one apply may land only a part.
        # Once live it is forgotten, so the autoscaler's later count changes are not undone.
        if self.wanted is not None and not differs(live, self.wanted):
            self.wanted = None
        elif self.wanted is not None and live.in_service:
            with contextlib.suppress(EndpointBusy):
                self.world.router.apply(self.wanted)
        return _result(move)


def differs(live: EndpointLive, target: Target) -> bool:
    total = sum(v.desired_weight for v in live.variants.values()) or 1.0
    for name in VARIANT_NAMES:
        want = target.weights.get(name)
        if want is not None and abs(100.0 * live.variants[name].desired_weight / total - want) > 1e-6:
            return True
        count = target.instance_counts.get(name)
        if count is not None and count != live.variants[name].desired_instance_count:
            return True
    return False


def _result(move: Move) -> Any:
    return SimpleNamespace(decision=SimpleNamespace(action=move.action, reason=move.reason), state=None, errors=None)


# ------------------------------------------------------------------------------------------------
# One run


@dataclass
class RunFigures:
    scenario: str
    policy: str
    seed: int
    mode: str  # in-memory | embedded-aws
    minutes: int
    requests: int
    cost: float
    requests_over_slo: int
    errors: int
    bad_requests: int
    minutes_to_full_migration: int | None
    harmful_onsets: int  # harm episodes (truth); 0: the fallback figures are not scored for this run
    fault_onset_minute: int | None  # the first harmful minute
    minutes_to_fallback: int | None  # worst episode: onset -> neuron's share stopped producing bad requests
    minutes_to_fallback_decided: int | None  # worst episode: onset -> the minute the rollback decision governs
    rollbacks: int
    false_rollbacks: int
    ticks: int
    metrics_calls: int
    update_calls: int
    max_metrics_calls_per_tick: int
    max_update_calls_per_tick: int
    wall_seconds: float = 0.0
    cost_vs_oracle: float | None = None
    gap_closed: float | None = None
    cost_vs_oracle_after_migration: float | None = None  # from the full-migration minute to the end
    full_migration_minute: int | None = None
    wrong_answers: int = 0  # answered wrongly (wrong_outputs faults; also inside bad_requests)
    cost_by_minute: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["cost_by_minute"]
        return out


def figures(setup: Setup, rows: list[Row], policy: str, *, mode: str = "in-memory",
            calls: list[tuple[int, int]] | None = None) -> RunFigures:
    """The figures of one run, from its rows (see the module docstring and docs/bench.md)."""
    calls = calls or []
    start = setup.scenario.canary_start_minute
    target = setup.config.canary.target_neuron_percent
    full = next((r.minute for r in rows if r.share[NEURON] >= target - SHARE_EPSILON), None)
    events = fallback_events(rows)
    episodes = harm_episodes(rows, events)

    def worst(values: list[int | None]) -> int | None:
        return None if not values or any(v is None for v in values) else max(v for v in values if v is not None)

    return RunFigures(
        scenario=setup.scenario.name, policy=policy, seed=setup.seed, mode=mode, minutes=len(rows),
        requests=sum(r.offered for r in rows), cost=sum(r.cost for r in rows),
        requests_over_slo=sum(r.over_slo for r in rows), errors=sum(r.errors for r in rows),
        bad_requests=sum(r.bad_requests for r in rows), wrong_answers=sum(r.wrong_answers for r in rows),
        minutes_to_full_migration=max(0, full - start) if full is not None else None,
        harmful_onsets=len(episodes), fault_onset_minute=episodes[0].onset if episodes else None,
        minutes_to_fallback=worst([e.effective for e in episodes]),
        minutes_to_fallback_decided=worst([e.decided for e in episodes]),
        rollbacks=len(events), false_rollbacks=false_rollback_count(rows, events), ticks=len(calls),
        metrics_calls=sum(c[0] for c in calls), update_calls=sum(c[1] for c in calls),
        max_metrics_calls_per_tick=max((c[0] for c in calls), default=0),
        max_update_calls_per_tick=max((c[1] for c in calls), default=0),
        full_migration_minute=full, cost_by_minute=[r.cost for r in rows],
    )


class CallCounter:
    """on_minute hook: API calls each tick made, as deltas of the adapters' counters."""

    def __init__(self, metrics: Any, updates: Callable[[], int]) -> None:
        self.metrics = metrics
        self.updates = updates
        self.last = (0, 0)
        self.per_tick: list[tuple[int, int]] = []

    def now(self) -> tuple[int, int]:
        return int(getattr(self.metrics, "api_calls", 0)), int(self.updates())

    def reset(self) -> None:
        self.last = self.now()

    def __call__(self, row: Row, result: Any) -> None:
        now = self.now()
        self.per_tick.append((now[0] - self.last[0], now[1] - self.last[1]))
        self.last = now


def run_policy(setup: Setup, policy: str) -> RunFigures:
    """One in-memory run of `policy` on `setup` (its seed): the same fleet draws for every policy."""
    started = time.perf_counter()
    if policy == "oracle":  # not a controller: a plan per minute, live at once (baselines.oracle_rows)
        out = figures(setup, oracle_rows(setup, setup.seed), policy)
        out.wall_seconds = round(time.perf_counter() - started, 3)
        return out
    baseline = make(policy) if policy != "hybrid" else None
    prepared = baseline.prepare(setup) if baseline is not None else setup
    world = memory_world(prepared, prepared.seed)
    controller = world.controller() if baseline is None else BaselineController(baseline, world, prepared)
    counter = CallCounter(world.metrics, lambda: world.router.update_calls)
    result = run(prepared, world.simulator, controller, on_minute=counter)
    out = figures(prepared, result.rows, policy, calls=counter.per_tick)
    out.wall_seconds = round(time.perf_counter() - started, 3)
    return out


def run_hybrid_aws(setup: Setup) -> RunFigures:
    """`hybrid` through the shipped AWS path: embedded AWS, `hybrid deploy`'s code, CloudWatch, build_controller."""
    from routing.controller import build_controller
    from toolkit.deploy import deploy_endpoint
    from toolkit.local.server import EmbeddedAws
    from toolkit.sim.aws import aws_simulator
    from toolkit.sim.demo import DEMO_ROLE_ARN, stage_placeholder_artifacts

    started = time.perf_counter()
    if not setup.config.execution_role_arn:
        setup = setup.model_copy()
        setup.config = setup.config.model_copy(update={"execution_role_arn": DEMO_ROLE_ARN})
    with tempfile.TemporaryDirectory(prefix="hybrid-bench-") as state_dir, \
            EmbeddedAws(setup.config.region, export_env=True) as aws:
        s3 = aws.client("s3")
        stage_placeholder_artifacts(setup.config, s3)
        deploy_endpoint(setup.config, sagemaker_client=aws.client("sagemaker"), s3_client=s3, source="config",
                        show_progress=False, poll=0.0, sleep=lambda _s: None)
        aws.hold_updates(True)
        simulator = aws_simulator(setup, aws, setup.seed)
        controller = build_controller(setup.config, endpoint_url=aws.endpoint_url, state_dir=state_dir,
                                      clock=simulator.clock, settle_seconds=DEPLOYED_SETTLE_SECONDS)
        updates = [0]

        def count_update(**_kwargs: Any) -> None:
            updates[0] += 1

        # botocore's event hooks count the controller's own UpdateEndpointWeightsAndCapacities calls
        # (autoscaling's go through the simulator's separate client and are not counted).
        sagemaker = getattr(controller.router, "_sm", None)
        if sagemaker is not None:
            sagemaker.meta.events.register("before-call.sagemaker.UpdateEndpointWeightsAndCapacities", count_update)
        counter = CallCounter(controller.metrics, lambda: updates[0])
        counter.reset()
        result = run(setup, simulator, controller, on_minute=counter)
    out = figures(setup, result.rows, "hybrid", mode="embedded-aws", calls=counter.per_tick)
    out.wall_seconds = round(time.perf_counter() - started, 3)
    return out


# ------------------------------------------------------------------------------------------------
# Plans: which runs, in parallel


@dataclass(frozen=True)
class Job:
    scenario: Scenario
    config: HybridConfig
    policy: str
    seed: int
    mode: str = "in-memory"
    label: str = ""  # the scenario's name in the results (a derived scenario gets its own)


def run_job(job: Job) -> RunFigures:
    scenario = job.scenario
    if job.label and job.label != scenario.name:
        scenario = scenario.model_copy(update={"name": job.label})
    setup = resolve(scenario, job.config, job.seed)
    if job.mode == "embedded-aws":
        return run_hybrid_aws(setup)
    return run_policy(setup, job.policy)


def scaled(scenario: Scenario, factor: float) -> Scenario:
    """The same scenario at `factor` x the traffic (the adaptive goal's 10x run)."""
    traffic = scenario.traffic
    update: dict[str, Any] = {}
    if traffic.rps is not None:
        update["rps"] = traffic.rps * factor
    elif traffic.diurnal is not None:
        update["diurnal"] = traffic.diurnal.model_copy(update={"min_rps": traffic.diurnal.min_rps * factor,
                                                               "max_rps": traffic.diurnal.max_rps * factor})
    else:
        update["per_minute"] = [v * factor for v in traffic.per_minute or []]
    label = f"{scenario.name}-x{factor:g}"
    return scenario.model_copy(update={"name": label, "traffic": traffic.model_copy(update=update)})


def late_for_the_whole_run(scenario: Scenario) -> bool:
    """Every variant's metrics late from the first minute to the last (the late-metrics goal)."""
    late = [f for f in scenario.faults if f.kind == "metric_delay" and f.minute == 0
            and f.duration_minutes >= scenario.duration_minutes]
    return {f.variant for f in late} == set(VARIANT_NAMES)


def on_time(scenario: Scenario) -> Scenario:
    """The same scenario with its metrics on time (the late-metrics goal's reference run)."""
    faults = [f for f in scenario.faults if f.kind != "metric_delay"]
    return scenario.model_copy(update={"name": f"{scenario.name}-on-time", "faults": faults})


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    adaptive: tuple[str, str] | None = None  # (1x scenario, 10x scenario)
    late: list[tuple[str, str]] = field(default_factory=list)  # (late for the whole run, its on-time copy)
    low_traffic: str | None = None
    aws_scenario: str | None = None


def is_low_traffic(scenario: Scenario) -> bool:
    return max(scenario.traffic.rps_at(m) for m in range(scenario.duration_minutes)) <= 2.0


def is_steady(scenario: Scenario) -> bool:
    t = scenario.traffic
    return t.rps is not None and not t.spikes and not scenario.faults and not scenario.events  # a new model is no steady state


def plan(scenarios: list[Scenario], config: HybridConfig, policies: Iterable[str], seeds: int,
         aws_check: bool = True) -> Plan:
    """Every scenario x policy x seed (static-gpu and the oracle always: the figures pair with them);
    the low-traffic scenario over >= 20 seeds; a 10x copy of a steady one."""
    policies = list(policies) + [p for p in REFERENCE_POLICIES if p not in policies]
    out = Plan()
    for scenario in scenarios:
        n = max(seeds, GOAL_SEEDS) if is_low_traffic(scenario) else seeds
        if is_low_traffic(scenario) and out.low_traffic is None:
            out.low_traffic = scenario.name
        out.jobs.extend(Job(scenario, config, p, scenario.seed + i, label=scenario.name)
                        for p in policies for i in range(n))
    for scenario in scenarios:
        if late_for_the_whole_run(scenario):  # hybrid only: the goal compares its own two runs
            twin = on_time(scenario)
            out.late.append((scenario.name, twin.name))
            out.jobs.extend(Job(twin, config, "hybrid", scenario.seed + i, label=twin.name)
                            for i in range(max(seeds, GOAL_SEEDS) if is_low_traffic(scenario) else seeds))
    steady = [s for s in scenarios if is_steady(s)]
    base = next((s for s in steady if is_low_traffic(s)), steady[0] if steady else None)
    if base is not None:
        fast = scaled(base, 10.0)
        out.adaptive = (base.name, fast.name)
        out.jobs.extend(Job(fast, config, p, base.seed + i, label=fast.name) for p in policies for i in range(seeds))
    if aws_check and "hybrid" in policies and scenarios:
        # The shortest scenario with a harmful neuron fault exercises the most of the shipped path per second.
        faulty = [s for s in scenarios if any(f.variant == NEURON and f.kind in HARM_KINDS and f.ramp_minutes == 0
                                              for f in s.faults)] or [s for s in scenarios if s.faults] or scenarios
        pick = min(faulty, key=lambda s: s.duration_minutes)
        out.aws_scenario = pick.name
        out.jobs.append(Job(pick, config, "hybrid", pick.seed, mode="embedded-aws", label=pick.name))
    return out


def execute(jobs: list[Job], workers: int = 2, progress: Callable[[RunFigures], None] | None = None) -> list[RunFigures]:
    """Run the jobs (in `workers` processes when > 1); longest first so the pool ends together."""
    ordered = sorted(jobs, key=lambda j: (j.mode != "embedded-aws", -j.scenario.duration_minutes))
    results: list[RunFigures] = []
    if workers <= 1 or len(ordered) <= 1:
        for job in ordered:
            results.append(run_job(job))
            if progress:
                progress(results[-1])
        return results
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads (moto, rich)
    with context.Pool(workers) as pool:
        for item in pool.imap_unordered(run_job, ordered, chunksize=1):
            results.append(item)
            if progress:
                progress(item)
    return results


# ------------------------------------------------------------------------------------------------
# Aggregation


FIGURES = ("cost", "cost_vs_oracle", "gap_closed", "cost_vs_oracle_after_migration", "bad_requests",
           "requests_over_slo", "errors", "wrong_answers", "minutes_to_full_migration", "minutes_to_fallback_decided",
           "minutes_to_fallback", "harmful_onsets", "rollbacks", "false_rollbacks",
           "metrics_calls_per_tick", "update_calls_per_tick")
HARM_FIGURES = ("minutes_to_fallback_decided", "minutes_to_fallback")  # scored only on runs with a harmful onset


def pair_with_oracle(runs: list[RunFigures]) -> None:
    """Per (scenario, seed): cost / oracle cost, gap_closed against static-gpu, and the post-migration ratio."""
    oracle = {(r.scenario, r.seed): r for r in runs if r.policy == "oracle" and r.mode == "in-memory"}
    gpu = {(r.scenario, r.seed): r.cost for r in runs if r.policy == "static-gpu" and r.mode == "in-memory"}
    for r in runs:
        base = oracle.get((r.scenario, r.seed))
        r.cost_vs_oracle = round(r.cost / base.cost, 4) if base and base.cost else None
        status_quo = gpu.get((r.scenario, r.seed))
        if base is not None and status_quo is not None and status_quo - base.cost > 1e-9:
            r.gap_closed = round((status_quo - r.cost) / (status_quo - base.cost), 4)
        if base is not None and r.full_migration_minute is not None and base.cost_by_minute:
            m = r.full_migration_minute
            theirs = sum(base.cost_by_minute[m:])
            ours = sum(r.cost_by_minute[m:])
            r.cost_vs_oracle_after_migration = round(ours / theirs, 4) if theirs > 0 else None


def spread(values: list[float | None]) -> dict[str, Any]:
    """mean, std (sample), min, max over the runs that have the figure; `missing` counts the others."""
    known = [float(v) for v in values if v is not None]
    out: dict[str, Any] = {"n": len(known), "missing": len(values) - len(known)}
    if known:
        out.update(mean=round(statistics.fmean(known), 4),
                   std=round(statistics.stdev(known), 4) if len(known) > 1 else 0.0,
                   min=round(min(known), 4), max=round(max(known), 4))
    else:
        out.update(mean=None, std=None, min=None, max=None)
    return out


def _value(run: RunFigures, name: str) -> float | None:
    if name == "metrics_calls_per_tick":
        return run.metrics_calls / run.ticks if run.ticks else 0.0
    if name == "update_calls_per_tick":
        return run.update_calls / run.ticks if run.ticks else 0.0
    return getattr(run, name)


def aggregate(runs: list[RunFigures]) -> dict[str, dict[str, dict[str, Any]]]:
    """{scenario: {policy: {figure: spread, ...}}} over seeds (in-memory runs)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        if r.mode != "in-memory":
            continue
        out.setdefault(r.scenario, {}).setdefault(r.policy, {"runs": []})["runs"].append(r)
    for by_policy in out.values():
        for policy, cell in by_policy.items():
            group: list[RunFigures] = cell.pop("runs")
            cell["seeds"] = sorted(r.seed for r in group)
            for name in FIGURES:
                # A fault neuron carried no traffic for is not scored (neither 0 nor missing).
                scored = [r for r in group if r.harmful_onsets] if name in HARM_FIGURES else group
                cell[name] = spread([_value(r, name) for r in scored])
            cell["max_metrics_calls_per_tick"] = max(r.max_metrics_calls_per_tick for r in group)
            cell["max_update_calls_per_tick"] = max(r.max_update_calls_per_tick for r in group)
            cell["policy"] = policy
    return out


# ------------------------------------------------------------------------------------------------
# Goals (issue 13 prints them; the judgement issue makes hybrid meet them), judged on the aggregate


HEALTHY_COST_RATIO = 1.05
FALLBACK_MINUTES = 2
BAD_REQUESTS_FRACTION = 0.5
ADAPTIVE_SPEEDUP = 3.0
LATE_RATIO = 1.5  # metrics late for the whole run: full migration within 1.5 x the on-time run's time
CANARY_BASELINES = ("guardrails-linear", "flagger-like")  # the tools a user would pick to migrate


def _mean(table: dict[str, Any], scenario: str, policy: str, figure: str) -> float | None:
    return table.get(scenario, {}).get(policy, {}).get(figure, {}).get("mean")


def harmful_scenarios(runs: list[RunFigures]) -> set[str]:
    """Scenarios where some run saw a harmful minute (truth): a harmless fault keeps a scenario healthy."""
    return {r.scenario for r in runs if r.harmful_onsets and r.mode == "in-memory"}


def judge(table: dict[str, Any], runs: list[RunFigures], scenarios: list[Scenario],
          adaptive: tuple[str, str] | None, late: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """One entry per goal and scenario: goal, scenario, value, bound, met (None: not applicable / no data)."""
    goals: list[dict[str, Any]] = []
    harmful = harmful_scenarios(runs)
    names = [s.name for s in scenarios] + ([adaptive[1]] if adaptive else [])

    def add(goal: str, scenario: str, value: Any, bound: str, met: bool | None, note: str = "") -> None:
        goals.append({"goal": goal, "scenario": scenario, "value": value, "bound": bound, "met": met, "note": note})

    for name in names:
        cells = table.get(name, {})
        if "hybrid" not in cells:
            continue
        ours = [r for r in runs if r.scenario == name and r.policy == "hybrid" and r.mode == "in-memory"]
        theirs = {b: cells[b] for b in CANARY_BASELINES if b in cells}
        bad = _mean(table, name, "hybrid", "bad_requests")
        if name not in harmful:
            total = sum(r.false_rollbacks for r in ours)
            add("healthy: 0 false rollbacks over 20 seeds", name, total, f"0 over >= {GOAL_SEEDS} seeds",
                total == 0 and len(ours) >= GOAL_SEEDS, f"{len(ours)} seeds")
            gap = _mean(table, name, "hybrid", "gap_closed")
            best_gap = max((c["gap_closed"]["mean"] for c in theirs.values() if c["gap_closed"]["mean"] is not None),
                           default=None)
            add("healthy: gap_closed >= every migrating baseline's", name, gap,
                f">= {best_gap:.3g}" if best_gap is not None else "n/a",
                None if gap is None or best_gap is None else gap >= best_gap)
            worst_bad = min((c["bad_requests"]["mean"] for c in theirs.values()), default=None)
            add("healthy: bad_requests <= every migrating baseline's", name, bad,
                f"<= {worst_bad:g}" if worst_bad is not None else "n/a",
                None if bad is None or worst_bad is None else bad <= worst_bad)
            cell = cells["hybrid"]["cost_vs_oracle_after_migration"]
            ratio = cell["mean"]
            note = f"{cell['missing']} seed(s) never migrated" if cell["missing"] else ""
            add("healthy: after the migration, cost <= 1.05 x oracle", name, ratio, f"<= {HEALTHY_COST_RATIO}",
                None if ratio is None and not cell["missing"] else (
                    ratio is not None and not cell["missing"] and ratio <= HEALTHY_COST_RATIO), note)
        else:
            best = min((c["bad_requests"]["mean"] for c in theirs.values()), default=None)
            add("fault: bad_requests <= 0.5 x best migrating baseline", name, bad,
                f"<= {BAD_REQUESTS_FRACTION * best:g}" if best is not None else "n/a",
                None if bad is None or best is None else bad <= BAD_REQUESTS_FRACTION * best)
            decided = cells["hybrid"]["minutes_to_fallback_decided"]
            effective = cells["hybrid"]["minutes_to_fallback"]
            unscored = sum(1 for r in ours if not r.harmful_onsets)
            notes = []
            if decided["missing"]:
                notes.append(f"{decided['missing']} seed(s) with a harmful onset never decided")
            if effective["max"] is not None:
                notes.append(f"effective <= {effective['max']:g} min")
            if unscored:
                notes.append(f"{unscored} seed(s) unscored: neuron carried nothing while harmed")
            met = None if decided["n"] == 0 and not decided["missing"] else (
                decided["missing"] == 0 and decided["max"] is not None and decided["max"] <= FALLBACK_MINUTES)
            add("fault: fallback decided <= 2 min after every harmful onset", name, decided["max"],
                f"<= {FALLBACK_MINUTES} (worst onset, worst seed)", met, "; ".join(notes))
    if adaptive:
        slow, fast = adaptive
        a = _mean(table, slow, "hybrid", "minutes_to_full_migration")
        b = _mean(table, fast, "hybrid", "minutes_to_full_migration")
        speedup = round(a / b, 2) if a is not None and b else None
        add("adaptive: 10x traffic -> full migration >= 3x sooner", f"{slow} vs {fast}", speedup,
            f">= {ADAPTIVE_SPEEDUP:g}x", None if speedup is None else speedup >= ADAPTIVE_SPEEDUP,
            f"{a} vs {b} minutes")
        for baseline in CANARY_BASELINES:
            x = _mean(table, slow, baseline, "minutes_to_full_migration")
            y = _mean(table, fast, baseline, "minutes_to_full_migration")
            if x is None and y is None:
                continue
            add(f"adaptive: {baseline} schedule unchanged at 10x", f"{slow} vs {fast}", f"{x} vs {y}",
                "equal (+-1 min)", None if x is None or y is None else abs(x - y) <= 1.0)
    for slow, twin in late or []:
        a = _mean(table, slow, "hybrid", "minutes_to_full_migration")
        b = _mean(table, twin, "hybrid", "minutes_to_full_migration")
        missing = table.get(slow, {}).get("hybrid", {}).get("minutes_to_full_migration", {}).get("missing", 0)
        ratio = round(a / b, 2) if a is not None and b else None
        add(f"late metrics: full migration <= {LATE_RATIO:g} x on time", f"{slow} vs {twin}", ratio,
            f"<= {LATE_RATIO:g}x", None if ratio is None else (ratio <= LATE_RATIO and not missing),
            f"{a} vs {b} minutes" + (f"; {missing} seed(s) never migrated" if missing else ""))
    for scope, filt in (("in-memory", lambda r: r.mode == "in-memory"), ("embedded-aws", lambda r: r.mode != "in-memory")):
        ours = [r for r in runs if r.policy == "hybrid" and filt(r)]
        if not ours:
            continue
        m = max(r.max_metrics_calls_per_tick for r in ours)
        u = max(r.max_update_calls_per_tick for r in ours)
        add("api: 1 metrics call and <= 1 update per tick", f"all ({scope})", f"metrics max {m}, updates max {u}",
            "1 / <= 1", m <= 1 and u <= 1)
    return goals


def aws_comparison(runs: list[RunFigures]) -> list[dict[str, Any]]:
    """The embedded-AWS run of hybrid beside the in-memory run of the same scenario and seed."""
    out = []
    memory = {(r.scenario, r.seed): r for r in runs if r.policy == "hybrid" and r.mode == "in-memory"}
    for r in runs:
        if r.mode != "embedded-aws":
            continue
        twin = memory.get((r.scenario, r.seed))
        fields = ("cost", "bad_requests", "requests_over_slo", "errors", "minutes_to_full_migration", "minutes_to_fallback",
                  "rollbacks", "false_rollbacks", "metrics_calls", "update_calls")
        out.append({"scenario": r.scenario, "seed": r.seed, "wall_seconds": r.wall_seconds,
                    "embedded_aws": {f: getattr(r, f) for f in fields},
                    "in_memory": {f: getattr(twin, f) for f in fields} if twin else None,
                    "agree": _agree(r, twin) if twin else None})
    return out


def _agree(a: RunFigures, b: RunFigures) -> bool:
    """Close agreement: cost within 2 %, rollback count equal, fallback within a minute."""
    close = math.isclose(a.cost, b.cost, rel_tol=0.02)
    same_rollbacks = a.rollbacks == b.rollbacks
    fa, fb = a.minutes_to_fallback, b.minutes_to_fallback
    fallback = (fa is None) == (fb is None) and (fa is None or fb is None or abs(fa - fb) <= 1)
    return close and same_rollbacks and fallback


def policy_parameters(policies: Iterable[str]) -> dict[str, Any]:
    return {p: (make(p).parameters() if p in BASELINES else {"controller": "routing.controller.Controller",
                                                             "settings": "hybrid.yaml (+ scenario overrides)"})
            for p in policies}


def check_policies(names: Iterable[str]) -> list[str]:
    from toolkit.errors import UserError

    out = []
    for name in names:
        for part in str(name).split(","):
            part = part.strip()
            if not part:
                continue
            if part not in POLICIES:
                raise UserError(f"--policies: unknown policy {part!r} (known: {', '.join(POLICIES)})")
            if part not in out:
                out.append(part)
    return out or list(POLICIES)


SCHEMA = "hybrid-bench/2"


def scenario_info(scenarios: list[Scenario], the_plan: Plan) -> dict[str, Any]:
    """Per scenario: its description, minutes, and faults (empty for a healthy one)."""
    out = {}
    for s in scenarios:
        out[s.name] = {"description": s.description, "duration_minutes": s.duration_minutes,
                       "percentiles": s.metrics.percentiles,
                       "faults": [f.model_dump(mode="json") for f in s.faults]}
    if the_plan.adaptive:
        slow, fast = the_plan.adaptive
        base = out.get(slow, {})
        out[fast] = {**base, "description": f"{slow} at 10x the traffic (the adaptive goal)"}
    for slow, twin in the_plan.late:
        base = out.get(slow, {})
        out[twin] = {**base, "faults": [f for f in base.get("faults", []) if f.get("kind") != "metric_delay"],
                     "description": f"{slow} with its metrics on time (hybrid only: the late-metrics goal)"}
    return out


def bench_document(runs: list[RunFigures], scenarios: list[Scenario], policies: list[str], seeds: int,
                   the_plan: Plan, wall_seconds: float, workers: int) -> dict[str, Any]:
    """The JSON document (schema: docs/bench.md)."""
    pair_with_oracle(runs)
    table = aggregate(runs)
    policies = list(policies) + [p for p in REFERENCE_POLICIES if p not in policies]
    return {
        "schema": SCHEMA,
        "seeds": seeds,
        "policies": policies,
        "parameters": policy_parameters(policies),
        "scenarios": [s.name for s in scenarios] + ([the_plan.adaptive[1]] if the_plan.adaptive else []),
        "scenario_info": scenario_info(scenarios, the_plan),
        "settle_seconds": DEPLOYED_SETTLE_SECONDS,
        "wall_seconds": round(wall_seconds, 2),
        "workers": workers,
        "results": table,
        "goals": judge(table, runs, scenarios, the_plan.adaptive, the_plan.late),
        "aws_check": aws_comparison(runs),
        "runs": [r.to_dict() for r in sorted(runs, key=lambda r: (r.scenario, r.policy, r.seed, r.mode))],
    }


def load_scenarios(names: list[str] | None) -> list[Scenario]:
    from toolkit.sim.scenario import builtin_names, load_scenario

    chosen = names or builtin_names()
    scenarios = [load_scenario(n) for n in chosen]
    seen: set[str] = set()
    for s in scenarios:
        if s.name in seen:
            from toolkit.errors import UserError

            raise UserError(f"--scenario: two scenarios are named {s.name!r}; give each file its own `name`")
        seen.add(s.name)
    return scenarios


