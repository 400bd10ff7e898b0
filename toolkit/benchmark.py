"""Side-by-side endpoint benchmark: each variant's latency, throughput and cost per 1K inferences.

Each variant is loaded on its own, either through the SageMaker runtime with `TargetVariant`
or through a local container-contract server (`GET /ping`, `POST /invocations`), at rising
concurrency levels. Like SageMaker Inference Recommender, the ramp stops once a level's p99
exceeds the latency threshold (or its error rate exceeds the SLO's). Every level is bounded in
request count AND in time.

Latency is measured at the client (request sent to response read): it includes the network and
SageMaker's overhead, not only ModelLatency, so it is what an application sees.

The capacity of a variant is the best throughput among the levels within the SLO, per instance;
its cost per 1K inferences is what one instance costs per hour over what it serves in an hour at
that capacity (toolkit.pricing: the one price table plus the config's `prices:` overrides).
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import os
import random
import re
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from toolkit.config import VARIANT_NAMES, HybridConfig, load_config
from toolkit.errors import AwsError, UserError
from toolkit.pricing import PRICE_SOURCE, cost_per_1k, price_per_hour

DEFAULT_PAYLOAD = {"inputs": "The new inference stack answers quickly and costs less per request than before."}
MAX_CONCURRENCY = 1024
MAX_BATCH_SIZE = 4096
DEFAULT_WINDOWS = 5
# "If latency variance is high (>15% P99 jitter) the migration may need model optimization":
# here, the coefficient of variation of the P99s of a level's repeated windows.
JITTER_THRESHOLD = 0.15
REQUEST_TIMEOUT_SECONDS = 60.0  # SageMaker's container timeout: a request never takes longer

Worker = Callable[[bytes], None]  # sends one request; raises on failure (HTTP >= 400, timeout...)
# The clock a run uses unless given one; read at call time, so a test can substitute virtual time.
WALL_CLOCK: tuple[Callable[[], float], Callable[[float], None]] = (time.perf_counter, time.sleep)


# ------------------------------------------------------------------------------------------------
# Parsing flags


def parse_concurrency(text: str) -> list[int]:
    """`1,4,16` -> [1, 4, 16] (sorted, unique); one-line UserError otherwise."""
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--concurrency {text!r}: expected comma-separated integers such as 1,4,16") from None
    if not levels or levels[0] < 1 or levels[-1] > MAX_CONCURRENCY:
        raise UserError(f"--concurrency {text!r}: levels must lie in 1..{MAX_CONCURRENCY}")
    return levels


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """`16,1,8` -> (1, 8, 16)."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--batch-sizes {text!r}: expected comma-separated integers such as 1,8,16") from None
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_BATCH_SIZE:
        raise UserError(f"--batch-sizes {text!r}: sizes must lie in 1..{MAX_BATCH_SIZE}")
    return tuple(sizes)


def parse_rates(text: str) -> tuple[float, ...]:
    """`20` or `10,20,40` requests/s -> (10.0, 20.0, 40.0)."""
    try:
        rates = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"--rate {text!r}: expected requests per second, e.g. 20 or 10,20,40") from None
    if not rates or rates[0] <= 0 or not all(math.isfinite(r) for r in rates):
        raise UserError(f"--rate {text!r}: rates must be > 0 requests/s")
    return tuple(rates)


def parse_urls(text: str, variants: Sequence[str] = VARIANT_NAMES) -> dict[str, str]:
    """`http://h:p` (every variant) or `neuron=http://h:p1,gpu=http://h:p2`."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, url = part.partition("=")
        if not sep:
            name, url = "*", part
        if name != "*" and name not in variants:
            raise UserError(f"--url {part!r}: variant must be one of {', '.join(variants)}")
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UserError(f"--url {url!r}: expected http://HOST:PORT of a container-contract server")
        out[name] = url.rstrip("/")
    if "*" in out:
        default = out.pop("*")
        for name in variants:
            out.setdefault(name, default)
    missing = [v for v in variants if v not in out]
    if missing:
        raise UserError(f"--url: no server for variant(s) {', '.join(missing)} (use neuron=URL,gpu=URL)")
    return out


def parse_payload(text: str | None) -> bytes:
    """JSON text, or @path to a file holding the request body; default: a short sentence."""
    if text is None:
        return json.dumps(DEFAULT_PAYLOAD).encode()
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UserError(f"--payload {text}: file not found")
        return path.read_bytes()
    try:
        json.loads(text)
    except ValueError:
        raise UserError("--payload: not valid JSON (pass JSON text or @path/to/body)") from None
    return text.encode()


# ------------------------------------------------------------------------------------------------
# Targets: how one request reaches one variant


class HttpTarget:
    """A container-contract server; one keep-alive connection per worker thread."""

    def __init__(self, url: str, content_type: str = "application/json") -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.https = parts.scheme == "https"
        self.content_type = content_type
        self.instances = 1  # a contract server is one container: its figures are per instance

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=REQUEST_TIMEOUT_SECONDS)

    def ping(self) -> None:
        conn = self._connection()
        conn.timeout = 5
        try:
            conn.request("GET", "/ping")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise UserError(f"{self.url}/ping answered HTTP {response.status}: the container is not healthy")
        except OSError as error:
            raise UserError(f"no container-contract server at {self.url} (GET /ping: {error})") from None
        finally:
            conn.close()

    def describe(self) -> str:
        return self.url

    def new_worker(self) -> Worker:
        conn = self._connection()
        conn.connect()  # the TCP handshake is not part of any request's latency
        state: dict[str, http.client.HTTPConnection] = {"conn": conn}
        headers = {"Content-Type": self.content_type, "Accept": "application/json"}

        def send(body: bytes) -> None:
            conn = state["conn"]
            try:
                conn.request("POST", "/invocations", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                state["conn"] = self._connection()  # a fresh connection for the next request
                raise
            if response.status >= 400:
                raise RuntimeError(f"HTTP {response.status}")

        return send


class SageMakerTarget:
    """One variant of a live endpoint, reached with TargetVariant (botocore retries off)."""

    def __init__(self, runtime_client: Any, endpoint: str, variant: str, instances: int,
                 content_type: str = "application/json") -> None:
        self.runtime = runtime_client
        self.endpoint = endpoint
        self.variant = variant
        self.instances = max(1, instances)
        self.content_type = content_type

    def ping(self) -> None:
        return None  # DescribeEndpoint already proved the endpoint exists

    def describe(self) -> str:
        return f"{self.endpoint} TargetVariant={self.variant}"

    def new_worker(self) -> Worker:
        def send(body: bytes) -> None:
            response = self.runtime.invoke_endpoint(
                EndpointName=self.endpoint, TargetVariant=self.variant, Body=body, ContentType=self.content_type
            )
            response["Body"].read()

        return send


def sagemaker_targets(cfg: HybridConfig, variants: Sequence[str], max_concurrency: int,
                      runtime_client: Any = None, sagemaker_client: Any = None) -> dict[str, SageMakerTarget]:
    """Targets for the live endpoint; instance counts from DescribeEndpoint (the truth)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    if runtime_client is None:
        runtime_client = boto3.client(
            "sagemaker-runtime", region_name=cfg.region,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                          max_pool_connections=max(10, max_concurrency), read_timeout=REQUEST_TIMEOUT_SECONDS),
        )
    sagemaker_client = sagemaker_client or boto3.client("sagemaker", region_name=cfg.region)
    try:
        described = sagemaker_client.describe_endpoint(EndpointName=cfg.name)
    except (ClientError, BotoCoreError) as error:
        raise AwsError(f"DescribeEndpoint {cfg.name}: {error}") from None
    if described.get("EndpointStatus") not in ("InService", "Updating"):
        raise AwsError(f"endpoint {cfg.name} is {described.get('EndpointStatus')}: it must be InService to benchmark")
    counts = {v["VariantName"]: int(v.get("CurrentInstanceCount") or 0) for v in described.get("ProductionVariants", [])}
    targets = {}
    for name in variants:
        if name not in counts:
            raise AwsError(f"endpoint {cfg.name} has no production variant {name!r} (it has {', '.join(counts)})")
        targets[name] = SageMakerTarget(runtime_client, cfg.name, name, counts[name])
    return targets


# ------------------------------------------------------------------------------------------------
# Measuring


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no data."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class LevelResult:
    concurrency: int  # closed loop: workers sending back to back; open loop: most requests in flight
    requests: int
    errors: int
    elapsed_s: float
    throughput_rps: float  # successful requests per second
    error_rate: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    within_slo: bool = False
    stop_reason: str | None = None  # bounded by: "max_requests" or "duration"
    first_error: str | None = None  # the first failure's message, to tell a broken target from a slow one
    batch_size: int = 1
    rate_rps: float | None = None  # open loop: the Poisson arrival rate; None = closed loop
    inferences_per_s: float = 0.0  # throughput x batch size
    window_p99_ms: list[float] = field(default_factory=list)  # P99 of each window that had a success
    p99_cv: float | None = None  # coefficient of variation of window_p99_ms (population SD / mean)
    p99_spread: float | None = None  # (max - min) / mean of window_p99_ms
    jitter: bool = False  # p99_cv above the jitter threshold


@dataclass
class Window:
    """What one window measured, before any summary (levels merge their windows' raw latencies)."""

    latencies: list[float]
    errors: int
    elapsed_s: float
    stop_reason: str
    first_error: str | None


def _failing_worker(error: Exception) -> Worker:
    def send(_: bytes) -> None:
        raise error from None

    return send


class _Tally:
    """What one level's workers measured, shared under a lock: latencies, errors, the first error,
    and the window's clock (started once every worker is connected and warmed up)."""

    def __init__(self, timer: Callable[[], float]) -> None:
        self.timer = timer
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error: str | None = None
        self.start = self.last = 0.0

    def begin(self) -> None:
        self.start = self.timer()
        self.last = self.timer()

    def send(self, send: Worker, body: bytes, since: float, on_request: Callable[[], None] | None) -> None:
        """Send one request and count it; its latency runs from `since` (sent, or arrived)."""
        failure: str | None = None
        try:
            send(body)
        except Exception as error:  # every failure kind counts as an error of this level
            failure = f"{type(error).__name__}: {error}"
        t1 = self.timer()
        with self.lock:
            if failure is None:
                self.latencies.append((t1 - since) * 1000.0)
            else:
                self.errors += 1
                self.first_error = self.first_error or failure
            self.last = max(self.last, t1)
        if on_request is not None:
            on_request()

    def window(self, stopped_by: str) -> Window:
        return Window(self.latencies, self.errors, max(self.last - self.start, 1e-9), stopped_by, self.first_error)


def _warm_worker(target: Any, body: bytes, warmup: int, ready: threading.Barrier) -> Worker:
    """A connected worker after its untimed, uncounted warm-up requests (connection and cache
    set-up); waits until every worker is ready. A worker that cannot connect fails every request."""
    try:
        send = target.new_worker()
    except Exception as error:  # e.g. connection refused
        send = _failing_worker(error)
    try:
        for _ in range(warmup):
            send(body)
    except Exception:
        pass
    finally:
        ready.wait()
    return send


def _closed_window(target: Any, body: bytes, concurrency: int, duration_s: float, max_requests: int | None,
                   timer: Callable[[], float], on_request: Callable[[], None] | None, warmup: int) -> Window:
    tally = _Tally(timer)
    issued = 0
    ready = threading.Barrier(concurrency, action=tally.begin)

    def reserve() -> bool:
        nonlocal issued
        with tally.lock:
            if max_requests is not None and issued >= max_requests:
                return False
            if timer() >= tally.start + duration_s:
                return False
            issued += 1
            return True

    def work() -> None:
        send = _warm_worker(target, body, warmup, ready)
        while reserve():
            tally.send(send, body, timer(), on_request)

    _run_workers(work, concurrency)
    return tally.window("max_requests" if max_requests is not None and issued >= max_requests else "duration")


def _run_workers(work: Callable[[], None], count: int) -> None:
    if count == 1:
        work()  # no thread: keeps single-stream figures free of thread hand-off noise
        return
    threads = [threading.Thread(target=work, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def poisson_arrivals(rng: random.Random, rate: float, duration_s: float, max_requests: int | None) -> list[float]:
    """Arrival offsets (s) of a Poisson process at `rate`/s within `duration_s`, at most max_requests."""
    out: list[float] = []
    t = 0.0
    while max_requests is None or len(out) < max_requests:
        t += rng.expovariate(rate)
        if t >= duration_s:
            break
        out.append(t)
    return out


def _open_window(target: Any, body: bytes, rate: float, workers: int, duration_s: float, max_requests: int | None,
                 timer: Callable[[], float], sleep: Callable[[float], None], rng: random.Random,
                 on_request: Callable[[], None] | None, warmup: int) -> Window:
    """Requests arrive at Poisson times whether or not earlier ones are done; a request's latency
    runs from its arrival, so time spent waiting for a free worker (queueing) counts."""
    offsets = poisson_arrivals(rng, rate, duration_s, max_requests)
    tally = _Tally(timer)
    taken = 0
    ready = threading.Barrier(workers, action=tally.begin)

    def take() -> float | None:
        nonlocal taken
        with tally.lock:
            if taken >= len(offsets):
                return None
            taken += 1
            return tally.start + offsets[taken - 1]

    def work() -> None:
        send = _warm_worker(target, body, warmup, ready)
        while (arrival := take()) is not None:
            now = timer()
            if now < arrival:
                sleep(arrival - now)  # idle until the request arrives; a late worker sends at once
            tally.send(send, body, arrival, on_request)

    _run_workers(work, workers)
    return tally.window("max_requests" if max_requests is not None and len(offsets) >= max_requests else "duration")


def _summarise(windows: Sequence[Window], concurrency: int, batch_size: int = 1, rate: float | None = None,
               jitter_threshold: float = 0.15) -> LevelResult:
    latencies = sorted(x for w in windows for x in w.latencies)
    errors = sum(w.errors for w in windows)
    elapsed = sum(w.elapsed_s for w in windows)
    done = len(latencies) + errors
    p99s = [p for w in windows if (p := percentile(sorted(w.latencies), 99)) is not None]
    cv = spread = None
    if len(p99s) >= 2 and statistics.fmean(p99s) > 0:
        mean = statistics.fmean(p99s)
        cv = statistics.pstdev(p99s) / mean
        spread = (max(p99s) - min(p99s)) / mean
    throughput = len(latencies) / elapsed
    return LevelResult(
        concurrency=concurrency,
        requests=done,
        errors=errors,
        elapsed_s=elapsed,
        throughput_rps=throughput,
        error_rate=errors / done if done else 0.0,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        mean_ms=sum(latencies) / len(latencies) if latencies else None,
        stop_reason=windows[-1].stop_reason if windows else None,
        first_error=next((w.first_error for w in windows if w.first_error), None),
        batch_size=batch_size,
        rate_rps=rate,
        inferences_per_s=throughput * batch_size,
        window_p99_ms=p99s,
        p99_cv=cv,
        p99_spread=spread,
        jitter=cv is not None and cv > jitter_threshold,
    )


def run_level(
    target: Any,
    body: bytes,
    concurrency: int,
    duration_s: float,
    max_requests: int | None,
    timer: Callable[[], float] = time.perf_counter,
    on_request: Callable[[], None] | None = None,
    warmup: int = 1,
) -> LevelResult:
    """One closed-loop window: `concurrency` workers send back to back until max_requests or duration.

    Each worker first sends `warmup` untimed requests (not counted), then the clock starts.
    """
    window = _closed_window(target, body, concurrency, duration_s, max_requests, timer, on_request, warmup)
    return _summarise([window], concurrency)


def split_budget(total: int | None, duration_s: float, windows: int) -> list[tuple[int | None, float]]:
    """A level's request and time budget shared by its windows (the level's totals are kept)."""
    n = max(1, min(windows, total) if total is not None else windows)
    shares = [None] * n if total is None else [total // n + (1 if i < total % n else 0) for i in range(n)]
    return [(share, duration_s / n) for share in shares]


@dataclass(frozen=True)
class LoadPlan:
    """How each variant is loaded besides the concurrency ramp (every field has a CLI flag)."""

    windows: int = DEFAULT_WINDOWS
    batch_sizes: tuple[int, ...] = (1,)
    batch_key: str = "inputs"
    rates: tuple[float, ...] | None = None  # open loop at these arrival rates; None = closed loop
    first_requests: int = 1
    idle_s: float | None = None
    jitter_threshold: float = JITTER_THRESHOLD
    gpu_batch_size: int | None = None  # the gpu's production batch size: apples to apples (default: smallest)
    capacity_batch_size: int | None = None  # whose capacity --write-capacity records (default: each one's best)
    seed: int = 0

    def validate(self) -> None:
        if self.windows < 1:
            raise UserError("--windows must be >= 1")
        if self.first_requests < 0:
            raise UserError("--first-requests must be >= 0")
        if self.idle_s is not None and self.idle_s <= 0:
            raise UserError("--idle-seconds must be > 0")
        if not 0 < self.jitter_threshold < 10:
            raise UserError("--jitter-threshold is a fraction such as 0.15 (15%)")
        for flag, value in (("--gpu-batch-size", self.gpu_batch_size), ("--capacity-batch-size", self.capacity_batch_size)):
            if value is not None and value not in self.batch_sizes:
                raise UserError(f"{flag} {value} is not one of --batch-sizes {','.join(map(str, self.batch_sizes))}")


def measure_level(target: Any, body: bytes, level: int | float, plan: LoadPlan, workers: int, duration_s: float,
                  max_requests: int | None, batch_size: int, timer: Callable[[], float],
                  sleep: Callable[[float], None], rng: random.Random,
                  on_request: Callable[[], None] | None = None) -> LevelResult:
    """One level (a concurrency, or an arrival rate when plan.rates is set) as repeated windows."""
    windows = []
    for i, (share, window_s) in enumerate(split_budget(max_requests, duration_s, plan.windows)):
        warmup = 1 if i == 0 else 0  # the level warms up once; later windows follow on at once
        if plan.rates is None:
            windows.append(_closed_window(target, body, int(level), window_s, share, timer, on_request, warmup))
        else:
            windows.append(_open_window(target, body, float(level), workers, window_s, share, timer, sleep, rng,
                                        on_request, warmup))
    concurrency = int(level) if plan.rates is None else workers
    return _summarise(windows, concurrency, batch_size, None if plan.rates is None else float(level),
                      plan.jitter_threshold)


@dataclass
class FirstRequest:
    """The first requests a variant served in this run, and the first after an idle pause."""

    first_ms: list[float]
    after_idle_s: float | None
    after_idle_ms: float | None
    slo_ms: float
    breaks_slo: bool
    error: str | None = None


def probe_first_requests(target: Any, body: bytes, count: int, idle_s: float | None, slo_ms: float,
                         timer: Callable[[], float], sleep: Callable[[float], None]) -> FirstRequest:
    """Time the first `count` requests one by one (no warm-up), then one more after `idle_s` idle."""
    first: list[float] = []
    after: float | None = None
    error: str | None = None
    try:
        send = target.new_worker()
        for _ in range(count):
            t0 = timer()
            send(body)
            first.append((timer() - t0) * 1000.0)
        if idle_s is not None:
            sleep(idle_s)
            t0 = timer()
            send(body)
            after = (timer() - t0) * 1000.0
    except Exception as failure:  # reported, not raised: the warm levels still say whether it serves
        error = f"{type(failure).__name__}: {failure}"
    worst = max([*first, *([after] if after is not None else [])], default=0.0)
    return FirstRequest(first, idle_s, after, slo_ms, worst > slo_ms, error)


def batch_body(template: bytes, size: int, key: str = "inputs") -> bytes:
    """The request body for a batch of `size` inputs, formed from the payload template.

    A JSON list body is the batch itself; an object's `key` holds the input (or a list of inputs).
    Inputs are repeated in turn to reach `size`. Size 1 with a single input sends the template as is.
    """
    try:
        data = json.loads(template)
    except ValueError:
        raise UserError("--payload: batching needs a JSON payload template") from None

    def fill(items: list[Any]) -> list[Any]:
        if not items:
            raise UserError("--payload: the list of inputs to batch is empty")
        return [items[i % len(items)] for i in range(size)]

    if isinstance(data, list):
        return json.dumps(fill(data)).encode()
    if not isinstance(data, dict) or key not in data:
        raise UserError(f"--payload has no {key!r} key to form a batch from; set --batch-key to the inputs' key")
    value = data[key]
    if size == 1 and not isinstance(value, list):
        return template
    data[key] = fill(value if isinstance(value, list) else [value])
    return json.dumps(data).encode()


@dataclass
class BatchResult:
    batch_size: int
    levels: list[LevelResult] = field(default_factory=list)
    best_concurrency: int | None = None
    best_rate: float | None = None
    capacity_rps_per_instance: float | None = None  # requests/s (each carries batch_size inputs)
    cost_per_1k: float | None = None  # $ per 1,000 inferences (inputs), not requests
    stopped: str | None = None

    @property
    def best(self) -> LevelResult | None:
        return next((lv for lv in self.levels if lv.within_slo and lv.concurrency == self.best_concurrency
                     and lv.rate_rps == self.best_rate), None)


@dataclass
class VariantResult:
    variant: str
    instance_type: str
    price_per_hour: float
    instances: int
    target: str
    levels: list[LevelResult] = field(default_factory=list)  # the chosen batch size's levels
    best_concurrency: int | None = None
    capacity_rps_per_instance: float | None = None
    cost_per_1k: float | None = None  # $ per 1,000 inferences on one instance at its SLO capacity
    stopped: str | None = None  # why the ramp stopped before the last level
    batch_size: int = 1  # the chosen batch size: cheapest per inference within the SLO
    best_rate: float | None = None
    batches: list[BatchResult] = field(default_factory=list)
    first_request: FirstRequest | None = None

    @property
    def best(self) -> LevelResult | None:
        return next((lv for lv in self.levels if lv.concurrency == self.best_concurrency
                     and lv.rate_rps == self.best_rate), None)

    def batch(self, size: int) -> BatchResult | None:
        return next((b for b in self.batches if b.batch_size == size), None)


@dataclass
class Verdict:
    """The one-page answer: cost at the SLO on each side, the saving, the flags, the decision."""

    decision: str  # "migrate" | "optimize first" | "stay on GPU"
    reasons: list[str]
    apples_batch_size: int
    apples_cost_per_1k: dict[str, float | None]
    apples_saving_percent: float | None
    best_batch_size: dict[str, int | None]
    best_cost_per_1k: dict[str, float | None]
    saving_percent: float | None  # neuron's best vs gpu's best; > 0 = neuron cheaper
    jitter: dict[str, bool]
    p99_cv: dict[str, float | None]
    first_request_breaks_slo: dict[str, bool]
    jitter_threshold: float


def _saving(neuron: float | None, gpu: float | None) -> float | None:
    if neuron is None or gpu is None or gpu <= 0:
        return None
    return round((1 - neuron / gpu) * 100, 2)


def make_verdict(variants: Mapping[str, VariantResult], plan: LoadPlan) -> Verdict | None:
    """Pure: the decision from the measured results (both variants needed)."""
    if "neuron" not in variants or "gpu" not in variants:
        return None
    neuron, gpu = variants["neuron"], variants["gpu"]
    apples = plan.gpu_batch_size or min(plan.batch_sizes)
    apples_cost = {n: (b.cost_per_1k if (b := v.batch(apples)) else None) for n, v in variants.items()}
    chosen = {n: v.best for n, v in variants.items()}
    jitter = {n: bool(lv and lv.jitter) for n, lv in chosen.items()}
    first = {n: bool(v.first_request and v.first_request.breaks_slo) for n, v in variants.items()}
    saving = _saving(neuron.cost_per_1k, gpu.cost_per_1k)
    reasons: list[str] = []
    if neuron.cost_per_1k is None:
        decision = "stay on GPU"
        reasons.append("neuron met the SLO at no level and batch size")
    elif saving is not None and saving <= 0:
        decision = "stay on GPU"
        reasons.append(f"neuron costs {-saving:.1f}% more per inference than gpu at the SLO")
    else:
        if saving is None:
            reasons.append("gpu met the SLO at no level: nothing to compare neuron's cost with")
        else:
            reasons.append(f"neuron is {saving:.1f}% cheaper per inference at the SLO "
                           f"(batch {neuron.batch_size} vs gpu batch {gpu.batch_size})")
        lv = chosen["neuron"]
        if jitter["neuron"] and lv is not None and lv.p99_cv is not None:
            reasons.append(f"neuron's P99 varies {lv.p99_cv:.0%} across windows (> {plan.jitter_threshold:.0%}): "
                           f"optimize the model (static shapes, batch size, compiler flags) before going live")
        if first["neuron"]:
            reasons.append("neuron's first request breaks the SLO: warm it up at deploy (and keep it busy) "
                           "before it takes traffic")
        decision = "optimize first" if jitter["neuron"] or first["neuron"] else "migrate"
    return Verdict(
        decision=decision,
        reasons=reasons,
        apples_batch_size=apples,
        apples_cost_per_1k=apples_cost,
        apples_saving_percent=_saving(apples_cost.get("neuron"), apples_cost.get("gpu")),
        best_batch_size={n: (v.batch_size if v.cost_per_1k is not None else None) for n, v in variants.items()},
        best_cost_per_1k={n: v.cost_per_1k for n, v in variants.items()},
        saving_percent=saving,
        jitter=jitter,
        p99_cv={n: (lv.p99_cv if lv else None) for n, lv in chosen.items()},
        first_request_breaks_slo=first,
        jitter_threshold=plan.jitter_threshold,
    )


@dataclass
class BenchmarkReport:
    endpoint: str
    mode: str  # "url" (container-contract servers) or "sagemaker" (TargetVariant)
    concurrency: list[int]
    duration_s: float
    max_requests: int | None
    latency_threshold_ms: float
    max_error_rate: float
    price_source: str
    variants: dict[str, VariantResult]
    capacity_written: dict[str, float] = field(default_factory=dict)
    load: str = "closed"  # "closed": back-to-back workers; "open": Poisson arrivals at `rates`
    rates: list[float] | None = None
    windows: int = DEFAULT_WINDOWS
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    verdict: Verdict | None = None

    def comparison(self) -> dict[str, Any]:
        costs = {n: v.cost_per_1k for n, v in self.variants.items() if v.cost_per_1k is not None}
        if len(costs) < 2:
            return {"cheaper": next(iter(costs), None), "saving_percent": None}
        cheaper = min(costs, key=lambda n: costs[n])
        dearer = max(costs, key=lambda n: costs[n])
        saving = (1 - costs[cheaper] / costs[dearer]) * 100 if costs[dearer] else 0.0
        return {"cheaper": cheaper, "saving_percent": round(saving, 2)}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["comparison"] = self.comparison()
        return data


def finish_batch(result: BatchResult, price: float, instances: int) -> BatchResult:
    """Pick the batch size's best level within the SLO and price it per inference."""
    within = [lv for lv in result.levels if lv.within_slo]
    if not within:
        return result
    best = max(within, key=lambda lv: lv.throughput_rps)
    result.best_concurrency, result.best_rate = best.concurrency, best.rate_rps
    result.capacity_rps_per_instance = best.throughput_rps / instances
    # cost_per_1k(instances, $/h, inferences/min): one instance serving capacity x batch x 60 a minute.
    result.cost_per_1k = cost_per_1k(1, price, result.capacity_rps_per_instance * result.batch_size * 60.0)
    return result


def finish_variant(result: VariantResult, threshold_ms: float, max_error_rate: float,
                   capacity_batch_size: int | None = None) -> VariantResult:
    """Choose the batch size (cheapest per inference within the SLO, or the one asked for)."""
    priced = [b for b in result.batches if b.cost_per_1k is not None]
    chosen = None
    if capacity_batch_size is not None:
        chosen = result.batch(capacity_batch_size)
    elif priced:
        chosen = min(priced, key=lambda b: b.cost_per_1k or math.inf)
    chosen = chosen or (result.batches[0] if result.batches else None)
    if chosen is None:
        return result
    result.batch_size = chosen.batch_size
    result.levels = chosen.levels
    result.best_concurrency, result.best_rate = chosen.best_concurrency, chosen.best_rate
    result.capacity_rps_per_instance = chosen.capacity_rps_per_instance
    result.cost_per_1k = chosen.cost_per_1k
    result.stopped = chosen.stopped
    return result


def _stop_reason(level: LevelResult, threshold_ms: float, max_error_rate: float) -> str:
    where = f"rate {level.rate_rps:g}/s" if level.rate_rps is not None else f"concurrency {level.concurrency}"
    if level.p99_ms is None:
        return f"no successful request at {where} ({level.first_error})"
    if level.p99_ms > threshold_ms:
        return f"p99 {level.p99_ms:.1f} ms > {threshold_ms:g} ms at {where}"
    return f"error rate {level.error_rate:.2%} > {max_error_rate:.2%} at {where}"


def benchmark_variant(
    name: str,
    target: Any,
    cfg: HybridConfig,
    body: bytes,
    levels: Sequence[int],
    duration_s: float,
    max_requests: int | None,
    threshold_ms: float,
    on_level: Callable[[str, int, LevelResult | None], None] | None = None,
    on_request: Callable[[], None] | None = None,
    timer: Callable[[], float] = time.perf_counter,
    plan: LoadPlan | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> VariantResult:
    plan = plan or LoadPlan()
    instance_type = cfg.variant(name).instance_type
    price = price_per_hour(instance_type, cfg.prices)
    result = VariantResult(variant=name, instance_type=instance_type, price_per_hour=price,
                           instances=target.instances, target=target.describe())
    max_error_rate = cfg.slo.max_error_rate
    if plan.first_requests or plan.idle_s:
        result.first_request = probe_first_requests(target, body, plan.first_requests, plan.idle_s, threshold_ms,
                                                    timer, sleep)
    steps: Sequence[int | float] = plan.rates if plan.rates is not None else levels
    workers = max(levels)
    for size in plan.batch_sizes:
        batch = BatchResult(batch_size=size)
        payload = body if plan.batch_sizes == (1,) else batch_body(body, size, plan.batch_key)
        # One seeded arrival stream per variant, batch size and rate: runs repeat, variants compare.
        for step in steps:
            if on_level:
                on_level(name, int(step), None)
            rng = random.Random(f"{plan.seed}:{name}:{size}:{step}")
            level = measure_level(target, payload, step, plan, workers, duration_s, max_requests, size, timer,
                                  sleep, rng, on_request)
            level.within_slo = (
                level.p99_ms is not None and level.p99_ms <= threshold_ms and level.error_rate <= max_error_rate
            )
            batch.levels.append(level)
            if on_level:
                on_level(name, int(step), level)
            if not level.within_slo:
                batch.stopped = _stop_reason(level, threshold_ms, max_error_rate)
                break
        result.batches.append(finish_batch(batch, price, result.instances))
    return finish_variant(result, threshold_ms, max_error_rate, plan.capacity_batch_size)


def run_benchmark(
    cfg: HybridConfig,
    targets: Mapping[str, Any],
    levels: Sequence[int],
    duration_s: float,
    max_requests: int | None = None,
    threshold_ms: float | None = None,
    body: bytes | None = None,
    mode: str = "url",
    on_level: Callable[[str, int, LevelResult | None], None] | None = None,
    on_request: Callable[[], None] | None = None,
    timer: Callable[[], float] | None = None,
    plan: LoadPlan | None = None,
    sleep: Callable[[float], None] | None = None,
) -> BenchmarkReport:
    """Benchmark each variant in turn (never both at once: they would share the client's CPU)."""
    plan = plan or LoadPlan()
    plan.validate()
    wall_timer, wall_sleep = WALL_CLOCK  # read at call time: tests put a virtual clock here
    timer = timer or wall_timer
    sleep = sleep or wall_sleep
    if duration_s <= 0:
        raise UserError("--duration must be > 0 seconds")
    if max_requests is not None and max_requests < 1:
        raise UserError("--max-requests must be >= 1")
    threshold = threshold_ms if threshold_ms is not None else cfg.slo.p99_latency_ms
    if threshold <= 0:
        raise UserError("--latency-threshold-ms must be > 0")
    for name in targets:  # prices first: a missing price is bad input, found before any load
        price_per_hour(cfg.variant(name).instance_type, cfg.prices)
    payload = body if body is not None else parse_payload(None)
    if plan.batch_sizes != (1,):
        for size in plan.batch_sizes:  # a template that cannot form a batch is bad input, before any load
            batch_body(payload, size, plan.batch_key)
    for target in targets.values():
        target.ping()
    results = {
        name: benchmark_variant(name, target, cfg, payload, levels, duration_s, max_requests, threshold,
                                on_level=on_level, on_request=on_request, timer=timer, plan=plan, sleep=sleep)
        for name, target in targets.items()
    }
    return BenchmarkReport(
        endpoint=cfg.name,
        mode=mode,
        concurrency=list(levels),
        duration_s=duration_s,
        max_requests=max_requests,
        latency_threshold_ms=threshold,
        max_error_rate=cfg.slo.max_error_rate,
        price_source=PRICE_SOURCE + (" + config prices" if cfg.prices else ""),
        variants=results,
        load="closed" if plan.rates is None else "open",
        rates=None if plan.rates is None else list(plan.rates),
        windows=plan.windows,
        batch_sizes=list(plan.batch_sizes),
        verdict=make_verdict(results, plan),
    )


# ------------------------------------------------------------------------------------------------
# Writing capacity back into hybrid.yaml: a minimal text edit, validated, with a backup

_KEY = "capacity_rps_per_instance"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _block_end(lines: list[str], header: int, header_indent: int) -> int:
    for j in range(header + 1, len(lines)):
        if _is_content(lines[j]) and _indent(lines[j]) <= header_indent:
            return j
    return len(lines)


def _first_child_indent(lines: list[str], start: int, end: int, parent_indent: int) -> int | None:
    for j in range(start, end):
        if _is_content(lines[j]):
            indent = _indent(lines[j])
            return indent if indent > parent_indent else None
    return None


def format_capacity(value: float) -> str:
    text = f"{value:.1f}" if value >= 1 else f"{value:.3g}"
    return text if float(text) > 0 else f"{value:.3g}"


def set_capacity_text(text: str, variant: str, value: float) -> str:
    """Set variants.<variant>.capacity_rps_per_instance in YAML text, touching only that line.

    Comments, order and formatting elsewhere stay as they are. Block-style mappings only; for
    anything else (flow style, anchors) a one-line UserError asks for a hand edit.
    """
    hand = f"set variants.{variant}.{_KEY}: {format_capacity(value)} by hand"
    lines = text.splitlines(keepends=True)
    top = next((i for i, ln in enumerate(lines) if re.match(r"^variants\s*:\s*(#.*)?$", ln.rstrip("\r\n"))), None)
    if top is None:
        raise UserError(f"no block-style `variants:` mapping found to edit; {hand}")
    end = _block_end(lines, top, 0)
    child = _first_child_indent(lines, top + 1, end, 0)
    if child is None:
        raise UserError(f"`variants:` has no indented block to edit; {hand}")
    header = next(
        (i for i in range(top + 1, end)
         if _indent(lines[i]) == child and re.match(rf"^\s*{re.escape(variant)}\s*:\s*(#.*)?$", lines[i].rstrip("\r\n"))),
        None,
    )
    if header is None:
        raise UserError(f"no block-style `variants.{variant}:` mapping found to edit; {hand}")
    vend = _block_end(lines, header, child)
    grand = _first_child_indent(lines, header + 1, vend, child)
    if grand is None:
        raise UserError(f"`variants.{variant}:` has no indented block to edit; {hand}")
    newline = "\r\n" if lines[header].endswith("\r\n") else "\n"
    pattern = re.compile(
        rf"^(?P<indent> *){_KEY}(?P<sep>\s*:\s*)(?P<value>[^#\r\n]*?)(?P<comment>\s+#[^\r\n]*)?(?P<eol>\r?\n)?$"
    )
    for i in range(header + 1, vend):
        match = pattern.match(lines[i])
        if match and len(match.group("indent")) == grand:
            lines[i] = (f"{match.group('indent')}{_KEY}{match.group('sep')}{format_capacity(value)}"
                        f"{match.group('comment') or ''}{match.group('eol') or ''}")
            return "".join(lines)
    # Not there yet: insert it as the variant's first key (indentation taken from its siblings).
    lines.insert(header + 1, f"{' ' * grand}{_KEY}: {format_capacity(value)}{newline}")
    return "".join(lines)


def write_capacity(path: str | Path, capacities: Mapping[str, float]) -> Path:
    """Record per-instance capacities in the config file; returns the backup's path.

    The edited text must parse to exactly the old settings plus the new values and pass
    load_config before it replaces the file; the original is kept as `<file>.bak`.
    """
    path = Path(path)
    original = path.read_text()
    cfg_before = load_config(path)  # refuse to edit a file that is already invalid
    del cfg_before
    expected = copy.deepcopy(yaml.safe_load(original))
    text = original
    for variant, value in capacities.items():
        if not value or value <= 0:
            raise UserError(f"capacity for {variant} must be > 0 req/s, got {value}")
        text = set_capacity_text(text, variant, value)
        expected["variants"][variant][_KEY] = float(format_capacity(value))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        load_config(tmp)
        if yaml.safe_load(text) != expected:
            raise UserError(
                f"{path}: editing {_KEY} would change other settings (unusual YAML?); "
                f"set {', '.join(f'variants.{v}.{_KEY}: {format_capacity(c)}' for v, c in capacities.items())} by hand"
            )
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
        return backup
    finally:
        if tmp.exists():
            tmp.unlink()


# ------------------------------------------------------------------------------------------------
# Plot


def plot(report: BenchmarkReport, path: str | Path) -> Path:
    """The one-page verdict (PNG): p99 and throughput per level at the chosen batch size, cost per 1K
    per batch size, P99 per window (jitter), and the decision with its reasons."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise UserError("--plot needs matplotlib: pip install 'sagemaker-hybrid-routing[local]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax_lat, ax_cost), (ax_jit, ax_text) = axes
    colors = {"neuron": "tab:blue", "gpu": "tab:orange"}
    open_loop = report.load == "open"
    for name, result in report.variants.items():
        color = colors.get(name)
        xs = [lv.rate_rps if open_loop else lv.concurrency for lv in result.levels]
        ax_lat.plot(xs, [lv.p99_ms for lv in result.levels], marker="o", color=color,
                    label=f"{name} p99 (batch {result.batch_size})")
        ax_lat.plot(xs, [lv.p50_ms for lv in result.levels], linestyle="--", alpha=0.6, color=color,
                    label=f"{name} p50")
        sizes = [b.batch_size for b in result.batches]
        ax_cost.plot(sizes, [b.cost_per_1k for b in result.batches], marker="o", color=color,
                     label=f"{name} ({result.instance_type})")
        best = result.best
        if best is not None and best.window_p99_ms:
            flag = " JITTER" if best.jitter else ""
            ax_jit.plot(range(1, len(best.window_p99_ms) + 1), best.window_p99_ms, marker="o", color=color,
                        label=f"{name}: CV {best.p99_cv or 0:.0%}{flag}")
    ax_lat.axhline(report.latency_threshold_ms, color="red", linewidth=1, label="p99 threshold")
    ax_lat.set(xlabel="arrival rate (req/s)" if open_loop else "concurrency", ylabel="latency (ms)",
               title="Latency at the chosen batch size")
    if not open_loop:
        ax_lat.set_xscale("log", base=2)
        ax_lat.set_xticks(report.concurrency, [str(c) for c in report.concurrency])
        ax_lat.minorticks_off()
    ax_cost.set(xlabel="batch size", ylabel="$ per 1K inferences", title="Cost per 1K at the SLO")
    ax_cost.set_xticks(report.batch_sizes, [str(b) for b in report.batch_sizes])
    ax_jit.set(xlabel="window", ylabel="P99 (ms)", title="P99 per window at the chosen level (jitter)")
    ax_jit.xaxis.get_major_locator().set_params(integer=True)
    for ax in (ax_lat, ax_cost, ax_jit):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax_text.axis("off")
    ax_text.text(0, 1, verdict_text(report), va="top", family="monospace", fontsize=8.5, wrap=True)
    fig.suptitle(f"hybrid benchmark: {report.endpoint}")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def verdict_text(report: BenchmarkReport) -> str:
    """The verdict as plain lines (the plot's text panel)."""
    v = report.verdict
    if v is None:
        return "No verdict: benchmark both variants (--variants neuron,gpu)."

    def money(x: float | None) -> str:
        return "-" if x is None else f"${x:.5f}"

    lines = [
        f"VERDICT: {v.decision.upper()}",
        "",
        f"$ per 1K at the SLO, batch {v.apples_batch_size} on both:",
        f"  neuron {money(v.apples_cost_per_1k.get('neuron'))}   gpu {money(v.apples_cost_per_1k.get('gpu'))}",
        "$ per 1K at the SLO, best batch size:",
        f"  neuron {money(v.best_cost_per_1k.get('neuron'))} (batch {v.best_batch_size.get('neuron') or '-'})"
        f"   gpu {money(v.best_cost_per_1k.get('gpu'))} (batch {v.best_batch_size.get('gpu') or '-'})",
        f"saving: {'-' if v.saving_percent is None else f'{v.saving_percent:.1f}%'}",
        f"P99 jitter > {v.jitter_threshold:.0%}: "
        + ", ".join(f"{n} {'YES' if f else 'no'}" for n, f in v.jitter.items()),
        "first request over the SLO: "
        + ", ".join(f"{n} {'YES' if f else 'no'}" for n, f in v.first_request_breaks_slo.items()),
        "",
    ]
    lines += [f"- {reason}" for reason in v.reasons]
    return "\n".join(lines)
