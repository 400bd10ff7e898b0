"""The fleet model: per simulated minute, what each variant serves and what SageMaker would publish.

Pure (no I/O, no clock): given the live weights and the active instances, one call to
`Fleet.serve(minute, weights)` draws the minute's requests and returns, per variant, exactly
the figures SageMaker publishes (Invocations, InvocationsPerInstance, Invocation4XXErrors,
Invocation5XXErrors, ModelLatency and OverheadLatency in MICROSECONDS as value/count
histograms) plus the truth the bench scores on (cost, requests over the SLO, errors served,
true p99).

Latency model, per variant and minute (parameters in toolkit.sim.scenario, cited there):
  a request's ModelLatency is lognormal(median, sigma) on a warm, unloaded instance, times
  - a queueing factor 1 + queue_weight * rho / (1 - rho) (capped), rho = load / capacity;
    above capacity (rho > 1) the excess requests fail (5XX) and the rest queue at the cap;
  - a per-minute jitter (lognormal), an active latency fault's factor;
  - for the share of traffic on instances added less than cold_start_minutes ago, a cold-start
    factor decaying linearly to 1;
  - in a noise burst (probability per minute), a small share of requests `multiplier` slower.
Requests are not sampled one by one: each mixture component's mass is spread exactly over a
fixed log-spaced grid of latency bins (2 % wide) and the minute's count is drawn with one
multinomial per component, so percentiles carry real sampling noise and a minute costs a few
dozen microseconds. Deterministic for a seed (numpy PCG64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.config import GPU, NEURON, VARIANT_NAMES
from toolkit.sim.scenario import Setup, VariantHardware

# Latency grid: bins 2 % wide from 0.1 ms to 600 s, in microseconds (SageMaker's unit).
GRID_RATIO = 1.02
GRID_MIN_US = 100.0
GRID_BINS = math.ceil(math.log(600e6 / GRID_MIN_US) / math.log(GRID_RATIO))
_LOG_RATIO = math.log(GRID_RATIO)
EDGES_US = GRID_MIN_US * GRID_RATIO ** np.arange(GRID_BINS + 1)
LOG_EDGES = np.log(EDGES_US)
VALUES_US = np.sqrt(EDGES_US[:-1] * EDGES_US[1:])  # each bin's representative value (geometric middle)
VALUES_MS = VALUES_US / 1000.0
MAX_VALUES_PER_DATUM = 150  # CloudWatch PutMetricData limit for Values/Counts

# Standard normal CDF on a fine table (np.interp is far cheaper than an erf per bin edge).
_Z = np.linspace(-9.0, 9.0, 36001)
_PHI = np.array([0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) for z in _Z])
_Z99 = 2.3263478740408408  # the standard normal's 99th percentile
_TAIL_Z = 5.5  # mass beyond 5.5 sigma (< 2e-8) is folded into the edge bins


def bin_of(value_us: float) -> int:
    return int(min(max((math.log(max(value_us, GRID_MIN_US)) - LOG_EDGES[0]) / _LOG_RATIO, 0), GRID_BINS - 1))


_SUBBINS = 32  # a median's position inside a bin, quantized to 1/32 of a bin (0.06 % of latency)
_SHAPES: dict[tuple[float, int], tuple[int, np.ndarray]] = {}


def _shape(sigma: float, sub: int) -> tuple[int, np.ndarray]:
    """Bin masses of lognormal(sigma) around its median's bin: (offset of the first bin, masses).

    In log space a lognormal only shifts with its median, so the masses depend on sigma and on
    where the median sits inside its bin; they are computed once and reused.
    """
    key = (sigma, sub)
    cached = _SHAPES.get(key)
    if cached is None:
        reach = math.ceil(_TAIL_Z * sigma / _LOG_RATIO) + 1
        k = np.arange(-reach, reach + 2, dtype=float)
        z = (k - (sub + 0.5) / _SUBBINS) * _LOG_RATIO / sigma
        cdf = np.interp(z, _Z, _PHI)
        cdf[0], cdf[-1] = 0.0, 1.0
        masses = np.diff(cdf)
        cached = _SHAPES[key] = (-reach, masses / masses.sum())
    return cached


def add_lognormal(hist: np.ndarray, rng: np.random.Generator, n: int, median_us: float, sigma: float) -> None:
    """Draw n requests from lognormal(median, sigma) into the dense histogram `hist` (in place)."""
    if n <= 0:
        return
    if sigma <= 1e-9:
        hist[bin_of(median_us)] += n
        return
    position = (math.log(max(median_us, GRID_MIN_US)) - LOG_EDGES[0]) / _LOG_RATIO
    base = int(position)
    offset, masses = _shape(round(sigma, 4), min(int((position - base) * _SUBBINS), _SUBBINS - 1))
    lo = base + offset
    counts = rng.multinomial(n, masses)
    if lo < 0 or lo + len(masses) > GRID_BINS:  # off the grid's ends: clip into the edge bins
        np.add.at(hist, np.clip(np.arange(lo, lo + len(masses)), 0, GRID_BINS - 1), counts)
        return
    hist[lo:lo + len(masses)] += counts


def percentile_ms(hist: np.ndarray, q: float) -> float | None:
    """Nearest-rank percentile of a dense histogram (the same definition the embedded CloudWatch uses)."""
    total = hist.sum()
    if total <= 0:
        return None
    rank = max(q / 100.0 * total, 1.0)
    index = int(np.searchsorted(np.cumsum(hist), rank - 1e-9))
    return float(VALUES_MS[min(index, GRID_BINS - 1)])


def sparse(hist: np.ndarray) -> tuple[list[float], list[float]]:
    """(values in microseconds, counts) of the non-empty bins: what PutMetricData sends."""
    index = np.nonzero(hist)[0]
    return [round(float(v), 1) for v in VALUES_US[index]], [float(c) for c in hist[index]]


@dataclass
class VariantMinute:
    """One variant's minute: what SageMaker publishes and the truth behind it."""

    variant: str
    minute: int
    requests: int = 0  # routed to this variant (weighted + targeted): Invocations
    targeted: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0  # model errors, overload and outage failures
    instances: int = 0  # active (InService) instances
    billed_instances: int = 0  # active + starting: both are billed
    cost: float = 0.0  # $ this minute
    utilization: float = 0.0  # load / capacity
    over_slo: int = 0  # served requests slower than the SLO's p99 ceiling
    fault_bad: float = 0.0  # expected bad requests (over the SLO or failed) the active faults caused
    harmful: bool = False  # a fault made this variant breach the SLO at the share it carried (truth)
    latency: np.ndarray | None = None  # ModelLatency histogram (dense, grid bins)
    overhead: np.ndarray | None = None  # OverheadLatency histogram
    published: bool = True  # False in an outage: SageMaker publishes nothing for the variant
    publish_delay: int = 0  # minutes late (metric_delay fault)

    @property
    def bad_requests(self) -> int:
        """Requests a user saw go wrong: served over the SLO, or failed (5XX, dropped at capacity, outage)."""
        return self.over_slo + self.errors_5xx

    @property
    def latency_samples(self) -> int:
        return int(self.latency.sum()) if self.latency is not None else 0

    def p(self, q: float) -> float | None:
        return percentile_ms(self.latency, q) if self.latency is not None else None

    @property
    def invocations_per_instance(self) -> float:
        return self.requests / self.instances if self.instances else float(self.requests)


@dataclass
class MinuteOutcome:
    minute: int
    offered: int
    variants: dict[str, VariantMinute]
    weights: dict[str, float]
    true_p99_ms: float | None = None
    faults: list[str] = field(default_factory=list)

    @property
    def cost(self) -> float:
        return sum(v.cost for v in self.variants.values())

    @property
    def over_slo(self) -> int:
        return sum(v.over_slo for v in self.variants.values())

    @property
    def errors(self) -> int:
        return sum(v.errors_5xx for v in self.variants.values())

    @property
    def served(self) -> int:
        return sum(v.requests for v in self.variants.values())

    @property
    def bad_requests(self) -> int:
        return sum(v.bad_requests for v in self.variants.values())


@dataclass
class _Instance:
    ready_minute: int  # first minute it serves


@dataclass(frozen=True)
class MinuteDraws:
    """What chance decides about a minute whatever the policy does: its traffic, jitter and noise bursts.

    Drawn from streams of their own (not the stream that samples latencies), so every policy
    faces the same minutes and the oracle can know them in advance.
    """

    offered: int
    targeted: int  # of `offered`, sent to gpu with TargetVariant
    jitter: dict[str, float]  # per variant: the minute's median latency factor
    noise: dict[str, bool]  # per variant: a noise burst this minute


def over_share(slo_ms: float, components: list[tuple[float, float]], sigma: float) -> float:
    """Expected share of requests slower than `slo_ms` for a mixture of lognormals [(share, median_ms)]."""
    total = sum(w for w, _ in components)
    if total <= 0:
        return 0.0
    if sigma <= 1e-9:
        return sum(w for w, median in components if median > slo_ms) / total
    out = 0.0
    for w, median in components:
        z = (math.log(slo_ms) - math.log(max(median, 1e-9))) / sigma
        out += w * 0.5 * math.erfc(z / math.sqrt(2.0))  # the normal tail beyond z
    return out / total


class Fleet:
    """The simulated instances behind both variants; `serve` is one minute of traffic."""

    def __init__(self, setup: Setup, seed: int | None = None) -> None:
        self.setup = setup
        self.hw: dict[str, VariantHardware] = setup.hardware
        self.seed = setup.seed if seed is None else seed
        self.rng = np.random.default_rng(self.seed)  # samples the requests of a minute (policy-dependent)
        self._traffic_rng = np.random.default_rng([self.seed, 1])  # the offered traffic (policy-independent)
        self._draws: list[MinuteDraws] = []
        self.slo_ms = setup.config.slo.p99_latency_ms
        # Instances from the initial deployment count as warm (the deploy waits for InService and health checks).
        self.instances: dict[str, list[_Instance]] = {
            name: [_Instance(-10_000) for _ in range(self.hw[name].initial_count)] for name in VARIANT_NAMES
        }
        self.pending: dict[str, list[_Instance]] = {name: [] for name in VARIANT_NAMES}

    # -- capacity ---------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Active (serving) instances per variant."""
        return {name: len(self.instances[name]) for name in VARIANT_NAMES}

    def provisioned(self) -> dict[str, int]:
        """Active + starting: what the endpoint will have once scale-ups finish."""
        return {name: len(self.instances[name]) + len(self.pending[name]) for name in VARIANT_NAMES}

    def set_counts(self, minute: int, desired: dict[str, int]) -> None:
        """Move toward the desired counts: scale-ups start (ready after the delay), scale-ins are immediate."""
        for name, want in desired.items():
            want = max(0, int(want))
            have = len(self.instances[name]) + len(self.pending[name])
            if want > have:
                ready = minute + self.hw[name].scale_up_delay_minutes
                self.pending[name].extend(_Instance(ready) for _ in range(want - have))
            elif want < have:
                drop = have - want
                while drop and self.pending[name]:
                    self.pending[name].pop()
                    drop -= 1
                # Newest instances go first (they are the coldest).
                self.instances[name].sort(key=lambda i: i.ready_minute)
                del self.instances[name][len(self.instances[name]) - drop:]
        self.promote(minute)

    def promote(self, minute: int) -> None:
        for name in VARIANT_NAMES:
            ready = [i for i in self.pending[name] if i.ready_minute <= minute]
            if ready:
                self.pending[name] = [i for i in self.pending[name] if i.ready_minute > minute]
                self.instances[name].extend(ready)

    def scaling(self) -> bool:
        return any(self.pending[name] for name in VARIANT_NAMES)

    # -- one minute -------------------------------------------------------------------------------

    # -- the truth, without drawing anything (for an oracle) ---------------------------------------

    def queue_factor(self, name: str, rho: float) -> float:
        hw = self.hw[name]
        capped = min(max(rho, 0.0), 0.99)  # past capacity the excess fails; the rest queues at the cap
        return min(1.0 + hw.queue_weight * capped / (1.0 - capped), hw.max_queue_factor)

    def expected_p_ms(self, name: str, minute: int, requests_per_minute: float, instances: int,
                      q: float = 99.0) -> float | None:
        """The q-th percentile ModelLatency the variant would serve at this load (no jitter, warm).

        None when nothing can serve (no instances, or an outage). Deterministic: consumes no randomness.
        """
        hw = self.hw[name]
        if instances <= 0 or self.setup.fault_list(name, "outage", minute):
            return None
        rho = requests_per_minute / (instances * hw.capacity_rps_per_instance * 60.0)
        factor = self.queue_factor(name, rho) * self.latency_factor(name, minute)
        z = float(np.interp(q / 100.0, _PHI, _Z))
        return hw.median_ms * factor * math.exp(z * hw.sigma)

    def expected_error_rate(self, name: str, minute: int, requests_per_minute: float, instances: int) -> float:
        """Share of the variant's requests that would fail (5XX: model errors, overload, outage)."""
        hw = self.hw[name]
        if instances <= 0 or self.setup.fault_list(name, "outage", minute):
            return 1.0
        capacity = instances * hw.capacity_rps_per_instance * 60.0
        overload = max(0.0, requests_per_minute - capacity) / requests_per_minute if requests_per_minute > 0 else 0.0
        rate = hw.error_rate + sum(f.magnitude for f in self.setup.fault_list(name, "errors", minute))
        return min(1.0, overload + (1.0 - overload) * min(rate, 1.0))

    def draws(self, minute: int) -> MinuteDraws:
        """The minute's traffic, jitter and noise bursts: the same for every policy on this seed."""
        traffic = self.setup.scenario.traffic
        while len(self._draws) <= minute:
            m = len(self._draws)
            expected = traffic.rps_at(m) * 60.0
            offered = int(self._traffic_rng.poisson(expected)) if traffic.poisson else round(expected)
            targeted = int(self._traffic_rng.binomial(offered, traffic.targeted_gpu_fraction)) \
                if traffic.targeted_gpu_fraction else 0
            # Jitter and noise from a stream per minute: independent of how many minutes were drawn before.
            minute_rng = np.random.default_rng([self.seed, 2, m])
            jitter, noise = {}, {}
            for name in VARIANT_NAMES:
                hw = self.hw[name]
                jitter[name] = math.exp(minute_rng.normal(0.0, hw.minute_jitter)) if hw.minute_jitter > 0 else 1.0
                noise[name] = bool(hw.noise.probability > 0 and minute_rng.random() < hw.noise.probability)
            self._draws.append(MinuteDraws(offered, targeted, jitter, noise))
        return self._draws[minute]

    def offered(self, minute: int) -> int:
        return self.draws(minute).offered

    def latency_factor(self, name: str, minute: int) -> float:
        """The active latency faults' combined factor (a ramped fault grows toward its magnitude)."""
        factor = 1.0
        for fault in self.setup.fault_list(name, "latency", minute):
            factor *= fault.factor(minute)
        return factor

    def fault_error_rate(self, name: str, minute: int) -> float:
        return sum(f.magnitude for f in self.setup.fault_list(name, "errors", minute))

    def max_load_per_instance(self, name: str, minute: int) -> float:
        """Requests/min one warm instance of `name` serves at `minute` while the SLO holds in truth.

        Knows the minute's drawn jitter and noise burst and the active faults (what only an oracle
        can know). The queueing factor depends on utilisation alone, so capacity is linear in the
        instance count. 0 when no load meets the SLO (an outage, an error rate over the cap, a
        latency fault or noise burst that breaks the p99 on its own).
        """
        hw = self.hw[name]
        slo = self.setup.config.slo
        if self.setup.fault_list(name, "outage", minute):
            return 0.0
        if hw.error_rate + self.fault_error_rate(name, minute) > slo.max_error_rate:
            return 0.0
        draws = self.draws(minute)
        median = hw.median_ms * draws.jitter[name] * self.latency_factor(name, minute)
        noise = hw.noise.fraction if draws.noise[name] else 0.0
        budget = 1.0 - 0.99  # p99 <= SLO: at most 1 % of requests over it

        def over(queue: float) -> float:
            parts = [(1.0 - noise, median * queue)] + ([(noise, median * queue * hw.noise.multiplier)] if noise else [])
            return over_share(self.slo_ms, parts, hw.sigma)

        if over(1.0) > budget:
            return 0.0
        top = self.queue_factor(name, 0.99)
        if over(top) <= budget:
            rho = 0.99
        else:
            if noise:  # a mixture: solve for the queueing factor that puts 1 % over the SLO
                lo, hi = 1.0, top
                for _ in range(30):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if over(mid) <= budget else (lo, mid)
            else:  # one lognormal: its p99 is median x exp(z99 x sigma), in closed form
                lo = self.slo_ms / (median * math.exp(_Z99 * hw.sigma))
            rho = (lo - 1.0) / (hw.queue_weight + lo - 1.0) if hw.queue_weight > 0 else 0.99
        return min(rho, 0.99) * hw.capacity_rps_per_instance * 60.0

    def force_counts(self, counts: dict[str, int]) -> None:
        """Set the active instances at once, warm (the oracle provisions instantly, with no cold start)."""
        for name, want in counts.items():
            self.instances[name] = [_Instance(-10_000) for _ in range(max(0, int(want)))]
            self.pending[name] = []

    def serve(self, minute: int, weights: dict[str, float]) -> MinuteOutcome:
        """Route one minute of requests by the live weights and serve them on the active instances."""
        self.promote(minute)
        draws = self.draws(minute)
        offered, targeted = draws.offered, draws.targeted
        weighted = offered - targeted
        total_weight = sum(max(0.0, weights.get(n, 0.0)) for n in VARIANT_NAMES)
        share_neuron = max(0.0, weights.get(NEURON, 0.0)) / total_weight if total_weight > 0 else 0.0
        to_neuron = int(self.rng.binomial(weighted, share_neuron)) if 0 < share_neuron < 1 else (
            weighted if share_neuron >= 1 else 0)
        routed = {NEURON: (to_neuron, 0), GPU: (weighted - to_neuron + targeted, targeted)}
        variants: dict[str, VariantMinute] = {}
        faults: list[str] = []
        merged = np.zeros(GRID_BINS, dtype=np.int64)
        for name in VARIANT_NAMES:
            n, n_targeted = routed[name]
            vm = self._serve_variant(name, minute, n, faults, draws)
            vm.targeted = n_targeted
            variants[name] = vm
            if vm.latency is not None:
                merged += vm.latency
        outcome = MinuteOutcome(
            minute=minute, offered=offered, variants=variants,
            weights={n: float(weights.get(n, 0.0)) for n in VARIANT_NAMES},
            true_p99_ms=percentile_ms(merged, 99.0), faults=faults,
        )
        return outcome

    def _serve_variant(self, name: str, minute: int, n: int, faults: list[str], draws: MinuteDraws) -> VariantMinute:
        hw = self.hw[name]
        rng = self.rng
        setup = self.setup
        active = self.instances[name]
        vm = VariantMinute(variant=name, minute=minute, requests=n, instances=len(active),
                           billed_instances=len(active) + len(self.pending[name]))
        vm.cost = vm.billed_instances * hw.price_per_hour / 60.0
        for fault in setup.fault_list(name, "metric_delay", minute):
            vm.publish_delay = max(vm.publish_delay, int(fault.magnitude))
            faults.append(f"{name}:metric_delay")
        outage = bool(setup.fault_list(name, "outage", minute))
        if outage:
            faults.append(f"{name}:outage")
            vm.published = False
        if n == 0:
            return vm
        capacity = len(active) * hw.capacity_rps_per_instance * 60.0
        if outage or capacity <= 0:
            vm.errors_5xx = n  # nothing can serve them
            vm.utilization = math.inf if capacity <= 0 else 0.0
            if outage:  # the fault failed them all; no instances at all is the policy's doing
                vm.fault_bad, vm.harmful = float(n), True
            return vm
        rho = n / capacity
        vm.utilization = rho
        overload = round(n - capacity) if rho > 1 else 0
        served = n - overload
        errors_4xx = int(rng.binomial(served, self.setup.scenario.traffic.client_error_rate))
        fault_errors = self.fault_error_rate(name, minute)
        error_rate = hw.error_rate + fault_errors
        if setup.fault_list(name, "errors", minute):
            faults.append(f"{name}:errors")
        error_rate = min(error_rate, 1.0)
        errors_5xx = int(rng.binomial(served - errors_4xx, error_rate)) if error_rate > 0 else 0
        vm.errors_4xx = errors_4xx
        vm.errors_5xx = errors_5xx + overload
        samples = served - errors_4xx - errors_5xx  # failed requests carry no ModelLatency sample here

        healthy_factor = self.queue_factor(name, rho) * draws.jitter[name]
        fault_factor = self.latency_factor(name, minute)
        if setup.fault_list(name, "latency", minute):
            faults.append(f"{name}:latency")
        median_us = hw.median_ms * 1000.0 * healthy_factor * fault_factor

        # Mixture: warm instances, cold ones (decaying factor), and a noise burst.
        components: list[tuple[float, float]] = []  # (share, median_us)
        cold_share = 0.0
        cold_factor_sum = 0.0
        if hw.cold_start_minutes > 0:
            for instance in active:
                age = minute - instance.ready_minute
                if 0 <= age < hw.cold_start_minutes:
                    cold_share += 1.0 / len(active)
                    cold_factor_sum += 1.0 + (hw.cold_start_multiplier - 1.0) * (1.0 - age / hw.cold_start_minutes)
        noise_share = hw.noise.fraction if draws.noise[name] else 0.0
        warm_share = max(0.0, 1.0 - cold_share - noise_share)
        components.append((warm_share, median_us))
        if cold_share > 0:
            components.append((cold_share, median_us * cold_factor_sum / (cold_share * len(active))))
        if noise_share > 0:
            components.append((noise_share, median_us * hw.noise.multiplier))
        shares = np.array([c[0] for c in components])
        counts = rng.multinomial(samples, shares / shares.sum()) if len(components) > 1 else [samples]
        latency = np.zeros(GRID_BINS, dtype=np.int64)
        for (_, median), count in zip(components, counts, strict=True):
            add_lognormal(latency, rng, int(count), median, hw.sigma)
        overhead = np.zeros(GRID_BINS, dtype=np.int64)
        add_lognormal(overhead, rng, samples, max(hw.overhead_ms, 0.05) * 1000.0, 0.3)
        vm.latency = latency
        vm.overhead = overhead
        vm.over_slo = int(latency[self.slo_ms < VALUES_MS].sum())
        # The truth about harm: what the faults alone added, at the load this variant carried.
        # Queueing is in both terms, so a capacity shortfall (the policy's doing) is not the fault's.
        slo = setup.config.slo
        error_harm = fault_errors * (served - errors_4xx)
        latency_harm = 0.0
        if fault_factor != 1.0:
            medians_ms = [(share, median / 1000.0) for share, median in components]
            with_fault = over_share(self.slo_ms, medians_ms, hw.sigma)
            without = over_share(self.slo_ms, [(w, m / fault_factor) for w, m in medians_ms], hw.sigma)
            latency_harm = max(0.0, with_fault - without) * samples
        vm.fault_bad = error_harm + latency_harm
        breach = (fault_errors > 0 and hw.error_rate + fault_errors > slo.max_error_rate) or \
            (samples > 0 and latency_harm / samples > 0.01)
        vm.harmful = breach and vm.fault_bad >= 1.0
        return vm


def metric_data(vm: VariantMinute, endpoint: str, timestamp: Any) -> list[dict[str, Any]]:
    """PutMetricData entries for one variant-minute, as SageMaker publishes them (namespace AWS/SageMaker)."""
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": vm.variant}]
    out: list[dict[str, Any]] = []
    if not vm.published or (vm.instances == 0 and vm.requests == 0):
        return out

    def scalar(name: str, value: float, unit: str = "None") -> None:
        out.append({"MetricName": name, "Dimensions": dims, "Timestamp": timestamp, "Value": float(value),
                    "Unit": unit})

    scalar("Invocations", vm.requests)
    scalar("InvocationsPerInstance", vm.invocations_per_instance)
    scalar("Invocation4XXErrors", vm.errors_4xx)
    scalar("Invocation5XXErrors", vm.errors_5xx)
    for name, hist in (("ModelLatency", vm.latency), ("OverheadLatency", vm.overhead)):
        if hist is None or hist.sum() == 0:
            continue
        values, counts = sparse(hist)
        for start in range(0, len(values), MAX_VALUES_PER_DATUM):
            out.append({"MetricName": name, "Dimensions": dims, "Timestamp": timestamp,
                        "Values": values[start:start + MAX_VALUES_PER_DATUM],
                        "Counts": counts[start:start + MAX_VALUES_PER_DATUM], "Unit": "Microseconds"})
    return out
