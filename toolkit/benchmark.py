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
import re
import shutil
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
REQUEST_TIMEOUT_SECONDS = 60.0  # SageMaker's container timeout: a request never takes longer

Worker = Callable[[bytes], None]  # sends one request; raises on failure (HTTP >= 400, timeout...)


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
    concurrency: int
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
    """`concurrency` workers send requests back to back until max_requests or duration is reached.

    Each worker first sends `warmup` untimed requests (not counted), then the clock starts.
    """
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"issued": 0, "errors": 0}
    clock: dict[str, float] = {}
    errors: dict[str, str] = {}
    # The clock starts once every worker is connected and warmed up.
    ready = threading.Barrier(concurrency, action=lambda: clock.update(start=timer(), last=timer()))

    def reserve() -> bool:
        with lock:
            if max_requests is not None and counts["issued"] >= max_requests:
                return False
            if timer() >= clock["start"] + duration_s:
                return False
            counts["issued"] += 1
            return True

    def work() -> None:
        try:
            send = target.new_worker()
        except Exception as error:  # e.g. connection refused: every request of this worker fails
            setup_error = error

            def send(_: bytes) -> None:
                raise setup_error from None

        try:
            for _ in range(warmup):  # untimed, uncounted: first requests pay connection and cache set-up
                send(body)
        except Exception:
            pass
        finally:
            ready.wait()
        while reserve():
            t0 = timer()
            failure: str | None = None
            try:
                send(body)
            except Exception as error:  # every failure kind counts as an error of this level
                failure = f"{type(error).__name__}: {error}"
            t1 = timer()
            with lock:
                if failure is None:
                    latencies.append((t1 - t0) * 1000.0)
                else:
                    counts["errors"] += 1
                    errors.setdefault("first", failure)
                clock["last"] = max(clock["last"], t1)
            if on_request is not None:
                on_request()

    if concurrency == 1:
        work()  # no thread: keeps single-stream figures free of thread hand-off noise
    else:
        threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = max(clock["last"] - clock["start"], 1e-9)
    latencies.sort()
    done = len(latencies) + counts["errors"]
    return LevelResult(
        concurrency=concurrency,
        requests=done,
        errors=counts["errors"],
        elapsed_s=elapsed,
        throughput_rps=len(latencies) / elapsed,
        error_rate=counts["errors"] / done if done else 0.0,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        mean_ms=sum(latencies) / len(latencies) if latencies else None,
        stop_reason="max_requests" if max_requests is not None and counts["issued"] >= max_requests else "duration",
        first_error=errors.get("first"),
    )


@dataclass
class VariantResult:
    variant: str
    instance_type: str
    price_per_hour: float
    instances: int
    target: str
    levels: list[LevelResult] = field(default_factory=list)
    best_concurrency: int | None = None
    capacity_rps_per_instance: float | None = None
    cost_per_1k: float | None = None  # $ per 1,000 inferences on one instance at its SLO capacity
    stopped: str | None = None  # why the ramp stopped before the last level

    @property
    def best(self) -> LevelResult | None:
        return next((lv for lv in self.levels if lv.concurrency == self.best_concurrency), None)


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


def finish_variant(result: VariantResult, threshold_ms: float, max_error_rate: float) -> VariantResult:
    """Pick the best level within the SLO and price it."""
    within = [lv for lv in result.levels if lv.within_slo]
    if not within:
        return result
    best = max(within, key=lambda lv: lv.throughput_rps)
    result.best_concurrency = best.concurrency
    result.capacity_rps_per_instance = best.throughput_rps / result.instances
    # cost_per_1k(instances, $/h, invocations/min): one instance serving capacity x 60 per minute.
    result.cost_per_1k = cost_per_1k(1, result.price_per_hour, result.capacity_rps_per_instance * 60.0)
    return result


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
) -> VariantResult:
    instance_type = cfg.variant(name).instance_type
    result = VariantResult(
        variant=name,
        instance_type=instance_type,
        price_per_hour=price_per_hour(instance_type, cfg.prices),
        instances=target.instances,
        target=target.describe(),
    )
    max_error_rate = cfg.slo.max_error_rate
    for concurrency in levels:
        if on_level:
            on_level(name, concurrency, None)
        level = run_level(target, body, concurrency, duration_s, max_requests, timer=timer, on_request=on_request)
        level.within_slo = (
            level.p99_ms is not None and level.p99_ms <= threshold_ms and level.error_rate <= max_error_rate
        )
        result.levels.append(level)
        if on_level:
            on_level(name, concurrency, level)
        if not level.within_slo:
            if level.p99_ms is None:
                result.stopped = f"no successful request at concurrency {concurrency} ({level.first_error})"
            elif level.p99_ms > threshold_ms:
                result.stopped = f"p99 {level.p99_ms:.1f} ms > {threshold_ms:g} ms at concurrency {concurrency}"
            else:
                result.stopped = f"error rate {level.error_rate:.2%} > {max_error_rate:.2%} at concurrency {concurrency}"
            break
    return finish_variant(result, threshold_ms, max_error_rate)


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
    timer: Callable[[], float] = time.perf_counter,
) -> BenchmarkReport:
    """Benchmark each variant in turn (never both at once: they would share the client's CPU)."""
    if duration_s <= 0:
        raise UserError("--duration must be > 0 seconds")
    if max_requests is not None and max_requests < 1:
        raise UserError("--max-requests must be >= 1")
    threshold = threshold_ms if threshold_ms is not None else cfg.slo.p99_latency_ms
    if threshold <= 0:
        raise UserError("--latency-threshold-ms must be > 0")
    for name in targets:  # prices first: a missing price is bad input, found before any load
        price_per_hour(cfg.variant(name).instance_type, cfg.prices)
    for target in targets.values():
        target.ping()
    payload = body if body is not None else parse_payload(None)
    results = {
        name: benchmark_variant(name, target, cfg, payload, levels, duration_s, max_requests, threshold,
                                on_level=on_level, on_request=on_request, timer=timer)
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
    """p99 and throughput against concurrency, both variants, threshold marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"neuron": "tab:blue", "gpu": "tab:orange"}
    for name, result in report.variants.items():
        color = colors.get(name)
        xs = [lv.concurrency for lv in result.levels]
        ax_lat.plot(xs, [lv.p99_ms for lv in result.levels], marker="o", color=color, label=f"{name} p99")
        ax_lat.plot(xs, [lv.p50_ms for lv in result.levels], linestyle="--", alpha=0.6, color=color,
                    label=f"{name} p50")
        cost = f", ${result.cost_per_1k:.4f}/1K" if result.cost_per_1k is not None else ""
        ax_tp.plot(xs, [lv.throughput_rps for lv in result.levels], marker="o", color=color,
                   label=f"{name} ({result.instance_type}{cost})")
    ax_lat.axhline(report.latency_threshold_ms, color="red", linewidth=1, label="p99 threshold")
    ax_lat.set(xlabel="concurrency", ylabel="latency (ms)", title="Latency")
    ax_tp.set(xlabel="concurrency", ylabel="requests/s", title="Throughput")
    for ax in (ax_lat, ax_tp):
        ax.set_xscale("log", base=2)
        ax.set_xticks(report.concurrency, [str(c) for c in report.concurrency])
        ax.minorticks_off()
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"hybrid benchmark: {report.endpoint}")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
