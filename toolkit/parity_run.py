"""Running `hybrid parity`: send the same inputs to both variants and compare (adapter around toolkit.parity).

Targets are the live endpoint's variants (InvokeEndpoint with TargetVariant) or local
container-contract servers, as in `hybrid benchmark --url`. Inputs are a JSONL file, one request
body per line. A run is bounded by `parity.max_inputs` and `parity.max_seconds`.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from toolkit.config import HybridConfig, Parity
from toolkit.errors import AwsError, UserError
from toolkit.parity import Comparison, Summary, comparator, safe_compare, summarise

Invoker = Callable[[bytes], Any]  # one request -> the decoded JSON output; raises on failure


def read_inputs(path: str | Path, limit: int) -> list[bytes]:
    """Up to `limit` request bodies from a JSONL file (one JSON document per line; blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--inputs {path}: file not found")
    bodies: list[bytes] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError:
                raise UserError(f"--inputs {path}:{number}: not a JSON document (one request body per line)") from None
            bodies.append(line.strip())
            if len(bodies) >= limit:
                break
    if not bodies:
        raise UserError(f"--inputs {path}: no inputs (one JSON request body per line)")
    return bodies


def http_invoker(url: str) -> Invoker:
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    state: dict[str, http.client.HTTPConnection] = {}

    def invoke(body: bytes) -> Any:
        conn = state.get("conn") or cls(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        state["conn"] = conn
        try:
            conn.request("POST", "/invocations", body=body,
                         headers={"Content-Type": "application/json", "Accept": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            state.pop("conn", None)
            raise
        if response.status >= 400:
            raise RuntimeError(f"HTTP {response.status}")
        return json.loads(data)

    return invoke


def sagemaker_invoker(runtime: Any, endpoint: str, variant: str) -> Invoker:
    def invoke(body: bytes) -> Any:
        response = runtime.invoke_endpoint(EndpointName=endpoint, TargetVariant=variant, Body=body,
                                           ContentType="application/json", Accept="application/json")
        return json.loads(response["Body"].read())

    return invoke


def sagemaker_invokers(cfg: HybridConfig, runtime: Any = None) -> dict[str, Invoker]:
    import boto3
    from botocore.config import Config

    runtime = runtime or boto3.client("sagemaker-runtime", region_name=cfg.region,
                                      config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    return {name: sagemaker_invoker(runtime, cfg.name, name) for name in ("neuron", "gpu")}


@dataclass
class InputDiff:
    index: int  # line order among the inputs read (0-based)
    input: str
    ok: bool
    severity: float | None
    diff: dict[str, Any]
    neuron: Any = None
    gpu: Any = None


@dataclass
class ParityReport:
    endpoint: str
    mode: str
    comparator: str
    inputs: int
    stopped: str  # "done", or "max_seconds" when the time bound cut the run short
    summary: Summary
    worst: list[InputDiff] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    """JSON has no Infinity: an unmeasurable diff (an error, a shape mismatch) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _call(invoke: Invoker, body: bytes) -> tuple[Any, str | None]:
    try:
        return invoke(body), None
    except Exception as error:  # a failed request is a disagreement with its reason, not a crash
        return None, f"{type(error).__name__}: {error}"


def run_parity(cfg: HybridConfig, invokers: Mapping[str, Invoker], inputs: list[bytes], mode: str,
               parity: Parity | None = None, timer: Callable[[], float] = time.monotonic,
               on_input: Callable[[], None] | None = None) -> ParityReport:
    parity = parity or cfg.parity
    compare = comparator(parity)
    start = timer()
    rows: list[InputDiff] = []
    comparisons: list[Comparison] = []
    stopped = "done"
    for index, body in enumerate(inputs):
        if timer() - start >= parity.max_seconds:
            stopped = "max_seconds"
            break
        neuron, n_error = _call(invokers["neuron"], body)
        gpu, g_error = _call(invokers["gpu"], body)
        if n_error or g_error:
            result = Comparison(False, math.inf, {"error": {"neuron": n_error, "gpu": g_error}})
        else:
            result = safe_compare(compare, neuron, gpu)
        comparisons.append(result)
        rows.append(InputDiff(index, body.decode(errors="replace")[:200], result.ok, result.severity, result.diff,
                              neuron, gpu))
        if on_input:
            on_input()
    worst = sorted(rows, key=lambda r: (r.ok, -(r.severity or 0.0)))[: parity.worst]
    return ParityReport(cfg.name, mode, parity.comparator, len(comparisons), stopped, summarise(comparisons, parity),
                        worst, parity.model_dump(mode="json"))


def check_endpoint(cfg: HybridConfig, sagemaker_client: Any = None) -> None:
    """The endpoint must be InService with both variants before any input is sent."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = sagemaker_client or boto3.client("sagemaker", region_name=cfg.region)
    try:
        described = client.describe_endpoint(EndpointName=cfg.name)
    except (ClientError, BotoCoreError) as error:
        raise AwsError(f"DescribeEndpoint {cfg.name}: {error}") from None
    names = {v["VariantName"] for v in described.get("ProductionVariants", [])}
    missing = {"neuron", "gpu"} - names
    if missing:
        raise AwsError(f"endpoint {cfg.name} has no production variant {', '.join(sorted(missing))}")
