"""Request-level routing for applications: `HybridClient` over boto3 `sagemaker-runtime`.

The controller moves *weighted* traffic between the `neuron` and `gpu` variants; this client
handles what weights cannot:

- shape routing: a request the compiled neuron model cannot take (longer than
  `compile.sequence_length`, or anything a user predicate flags) goes to gpu with
  `TargetVariant="gpu"`;
- fallback: a neuron failure (a ModelError whose container answered 5XX, 5XX, throttling,
  timeout) is retried once on gpu, within a token-bucket retry budget so a neuron outage cannot
  double the endpoint's load; the caller's bad input is never retried, never counted by the
  breaker and never spends the budget: 4XX client errors, and a ModelError (HTTP 424) whose
  `OriginalStatusCode` is a 4XX other than 408/429 (the container rejected the input; the same
  input fails on gpu too, and a stream of it must not open the breaker);
- a circuit breaker for neuron: N neuron failures in a sliding window open it; while open every
  request targets gpu explicitly; after a cool-off one probe request targets neuron (half-open)
  and its success closes the breaker;
- accounting: requests sent with `TargetVariant` skew the per-variant CloudWatch metrics the
  controller reads, so they are counted per variant and published (batched, no background
  thread) as `HybridRouting/Client` `TargetedInvocations` / `FallbackInvocations`;
- online parity (issue 17, off by default): `parity_fraction` of the answers neuron served are sent
  again to gpu (`TargetVariant="gpu"`) on a small background pool, within a per-second budget and a
  cap on requests in flight (over either, the mirror is dropped, never queued behind the caller);
  the two answers are compared with the configured comparator (toolkit/parity.py) and the counts
  published as `ParityCompared` / `ParityAgreed` (VariantName=neuron) for the controller's parity
  gate. The caller's answer is returned before the mirror is sent; a mirror's failure is counted,
  never raised.

Failure attribution: an untargeted request's variant is known only from the response
(`InvokedProductionVariant`, header `x-Amzn-Invoked-Production-Variant`). SageMaker does not
document that header on error responses, so an error is attributed to the variant in the error's
headers, else to the variant the request targeted, else to neuron when `unknown_failures_are_neuron`
(the default: a wrongly opened breaker only sends traffic to gpu, the safe direction).

Thread-safe: one lock guards counters, breaker and budget; the network call runs outside it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

# The controller's metrics adapter reads exactly these names (defined once, in the core).
from routing.core.model import (  # issue 17: online parity
    CLIENT_METRICS_NAMESPACE,
    FALLBACK_METRIC,
    PARITY_AGREED_METRIC,
    PARITY_COMPARED_METRIC,
    TARGETED_METRIC,
)
from toolkit.config import GPU, NEURON, HybridConfig, load_config
from toolkit.errors import UserError

log = logging.getLogger(__name__)

INVOKED_VARIANT_HEADER = "x-amzn-invoked-production-variant"  # botocore lower-cases header names

DEFAULT_TOKENS_PER_WORD = 1.3  # WordPiece/BPE average for English text; pass a tokenizer to be exact
DEFAULT_SPECIAL_TOKENS = 2  # [CLS] and [SEP] for BERT-class models


class FailureKind(StrEnum):
    MODEL_ERROR = "model_error"
    SERVER_ERROR = "server_error"  # 5XX: InternalFailure, ServiceUnavailable, InternalDependencyException
    THROTTLED = "throttled"  # ThrottlingException, ModelNotReadyException (429)
    TIMEOUT = "timeout"
    CLIENT_ERROR = "client_error"  # 4XX: the caller's fault, never retried
    MODEL_CLIENT_ERROR = "model_client_error"  # ModelError with a 4XX OriginalStatusCode: the caller's input


# The caller's fault: not retried, not a neuron failure for the breaker, no retry budget spent.
CALLER_FAULT = frozenset({FailureKind.CLIENT_ERROR, FailureKind.MODEL_CLIENT_ERROR})
# A container's 408/429 is the model being slow or overloaded, not bad input.
_RETRYABLE_ORIGINAL_4XX = frozenset({408, 429})
RETRYABLE = frozenset({FailureKind.MODEL_ERROR, FailureKind.SERVER_ERROR, FailureKind.THROTTLED, FailureKind.TIMEOUT})
_THROTTLE_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "ModelNotReadyException", "RequestLimitExceeded"}
)


def classify_error(error: BaseException) -> FailureKind | None:
    """What kind of failure `error` is; None for errors that are not an endpoint's answer (bugs)."""
    response = getattr(error, "response", None)
    if isinstance(response, Mapping) and "Error" in response:
        code = str(response.get("Error", {}).get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "ModelError":
            # botocore puts the modeled error's members (OriginalStatusCode, OriginalMessage,
            # LogStreamArn) at the top level of the parsed error response.
            original = _int_or_none(response.get("OriginalStatusCode"))
            if original is not None and 400 <= original < 500 and original not in _RETRYABLE_ORIGINAL_4XX:
                return FailureKind.MODEL_CLIENT_ERROR
            return FailureKind.MODEL_ERROR
        if code in _THROTTLE_CODES or status == 429:
            return FailureKind.THROTTLED
        if status >= 500 or code in ("InternalFailure", "ServiceUnavailable", "InternalDependencyException"):
            return FailureKind.SERVER_ERROR
        return FailureKind.CLIENT_ERROR
    name = type(error).__name__
    if name in ("ReadTimeoutError", "ConnectTimeoutError", "TimeoutError", "ReadTimeout", "ConnectTimeout"):
        return FailureKind.TIMEOUT
    if isinstance(error, TimeoutError):
        return FailureKind.TIMEOUT
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _variant_in_error(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return None
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    return headers.get(INVOKED_VARIANT_HEADER)


# ------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class ClientSettings:
    """Tuning knobs; defaults suit a BERT-class endpoint. Override any of them as keyword arguments."""

    neuron_variant: str = NEURON
    gpu_variant: str = GPU
    sequence_length: int | None = 128  # compiled length; None disables length routing
    tokens_per_word: float = DEFAULT_TOKENS_PER_WORD
    special_tokens: int = DEFAULT_SPECIAL_TOKENS
    breaker_failures: int = 5  # neuron failures in the window that open the breaker
    breaker_window_seconds: float = 30.0
    breaker_cooldown_seconds: float = 30.0  # open -> half-open after this long
    retry_budget_ratio: float = 0.1  # fallback retries may add at most this fraction of requests...
    retry_budget_floor: float = 10.0  # ...plus this many (so a quiet client can still retry)
    metrics_flush_seconds: float = 15.0
    publish_metrics: bool = True
    unknown_failures_are_neuron: bool = True
    # InvokeEndpoint docs: models answer within 60 s; set the SDK's read timeout to 70 s for them.
    read_timeout_seconds: float = 70.0
    connect_timeout_seconds: float = 5.0
    # Online parity (issue 17; hybrid.yaml parity.online): mirror this share of neuron's answers to gpu.
    parity_fraction: float = 0.0  # 0: off
    parity_max_per_second: float = 5.0  # mirrors started per second, at most (budget)
    parity_max_in_flight: int = 4  # mirrors running at once, at most (the pool's size)

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.parity_fraction <= 1 or self.parity_max_per_second <= 0 or self.parity_max_in_flight < 1:
            problems.append("parity_fraction must lie in 0..1, parity_max_per_second be > 0 and "
                            "parity_max_in_flight >= 1")
        if self.sequence_length is not None and self.sequence_length < 1:
            problems.append("sequence_length must be >= 1 (or None)")
        if self.tokens_per_word <= 0:
            problems.append("tokens_per_word must be > 0")
        if self.breaker_failures < 1:
            problems.append("breaker_failures must be >= 1")
        if self.breaker_window_seconds <= 0 or self.breaker_cooldown_seconds < 0:
            problems.append("breaker_window_seconds must be > 0 and breaker_cooldown_seconds >= 0")
        if not 0 <= self.retry_budget_ratio <= 1 or self.retry_budget_floor < 0:
            problems.append("retry_budget_ratio must lie in 0..1 and retry_budget_floor be >= 0")
        if self.metrics_flush_seconds < 0:
            problems.append("metrics_flush_seconds must be >= 0")
        if self.neuron_variant == self.gpu_variant:
            problems.append("neuron_variant and gpu_variant must differ")
        if problems:
            raise UserError("HybridClient: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------------
# Retry budget and circuit breaker (plain objects; the client calls them under its lock)


class RetryBudget:
    """Token bucket: each request deposits `ratio` tokens, each retry spends one.

    Over any run, retries <= floor + ratio x requests, so a neuron outage adds at most ~10%
    load on gpu instead of doubling it (the idea of gRPC's retry throttling / Finagle's budget).
    """

    def __init__(self, ratio: float, floor: float) -> None:
        self.ratio = ratio
        self.capacity = max(floor, 1.0)
        self.tokens = floor

    def deposit(self) -> None:
        self.tokens = min(self.capacity, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateBudget:
    """Token bucket refilled at `per_second` (capacity one second's worth): the mirrors' budget."""

    def __init__(self, per_second: float, now: float) -> None:
        self.rate = per_second
        self.tokens = per_second
        self.stamp = now

    def try_take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission(StrEnum):
    NEURON_OK = "neuron_ok"  # breaker closed: weighted routing may pick neuron
    PROBE = "probe"  # half-open: this request probes neuron (TargetVariant=neuron)
    GPU_ONLY = "gpu_only"  # open (or a probe is already out): target gpu


class CircuitBreaker:
    """Sliding-window breaker for the neuron variant, driven by an injected clock (seconds)."""

    def __init__(self, failures: int, window_seconds: float, cooldown_seconds: float) -> None:
        self.threshold = failures
        self.window = window_seconds
        self.cooldown = cooldown_seconds
        self.state = BreakerState.CLOSED
        self.failures: deque[float] = deque()
        self.opened_at: float | None = None
        self.probe_out = False
        self.opened_count = 0

    def admit(self, now: float) -> Admission:
        if self.state is BreakerState.CLOSED:
            return Admission.NEURON_OK
        if self.state is BreakerState.OPEN and self.opened_at is not None and now - self.opened_at >= self.cooldown:
            self.state = BreakerState.HALF_OPEN
            self.probe_out = False
        if self.state is BreakerState.HALF_OPEN and not self.probe_out:
            self.probe_out = True  # exactly one probe at a time; the rest keep going to gpu
            return Admission.PROBE
        return Admission.GPU_ONLY

    def record_failure(self, now: float, probe: bool) -> None:
        if probe or self.state is BreakerState.HALF_OPEN:
            self._open(now)  # the probe failed: another full cool-off
            return
        if self.state is BreakerState.OPEN:
            return
        self.failures.append(now)
        while self.failures and now - self.failures[0] > self.window:
            self.failures.popleft()
        if len(self.failures) >= self.threshold:
            self._open(now)

    def record_success(self, probe: bool) -> None:
        if probe or self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.CLOSED
            self.failures.clear()
            self.opened_at = None
            self.probe_out = False

    def release_probe(self) -> None:
        """A probe ended without a neuron verdict (e.g. a 4XX): let the next request probe."""
        self.probe_out = False

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self.failures.clear()
        self.probe_out = False
        self.opened_count += 1


# ------------------------------------------------------------------------------------------------
# Payload length (the default shape predicate)


def _text_of(document: Any) -> str | None:
    if not isinstance(document, Mapping):
        return None
    inputs = document.get("inputs")
    if isinstance(inputs, str):
        return inputs
    if isinstance(inputs, list) and inputs and all(isinstance(x, str) for x in inputs):
        return max(inputs, key=len)  # a batch is as long as its longest member
    if isinstance(inputs, Mapping):  # {"inputs": {"text": ..., "text_pair": ...}}
        parts = [v for v in inputs.values() if isinstance(v, str)]
        return " ".join(parts) if parts else None
    return None


def default_length_of(
    payload: Any,
    tokens_per_word: float = DEFAULT_TOKENS_PER_WORD,
    special_tokens: int = DEFAULT_SPECIAL_TOKENS,
    tokenizer: Callable[[str], int] | None = None,
    max_words: int | None = None,
) -> int | None:
    """Estimated token count of a JSON payload's "inputs" text; None when it has none.

    Cheap on purpose (a JSON parse and a whitespace split, a few microseconds): words x
    tokens_per_word + special tokens, or `tokenizer(text)` when given (exact, but slower).
    With `max_words`, counting stops after max_words + 1 words: enough to tell "longer than"
    from "not longer than" without splitting a long text to its end.
    """
    document = payload
    if isinstance(payload, (bytes, bytearray, str)):
        try:
            document = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return None
    text = _text_of(document)
    if text is None:
        return None
    if tokenizer is not None:
        return int(tokenizer(text))
    words = len(text.split(None, max_words)) if max_words is not None else len(text.split())
    return math.ceil(words * tokens_per_word) + special_tokens


# ------------------------------------------------------------------------------------------------
# The client


@dataclass(frozen=True)
class InvokeResult:
    body: bytes
    served_by: str | None  # InvokedProductionVariant; None if the response did not say
    targeted: bool  # the answering request carried TargetVariant
    fell_back: bool  # a neuron failure was retried on gpu
    attempts: int
    content_type: str | None = None
    target_variant: str | None = None
    reason: str = "weighted"  # weighted | shape | predicate | breaker_open | probe | fallback | caller

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ClientStats:
    requests: int = 0
    served: dict[str, int] = field(default_factory=dict)
    targeted: dict[str, int] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # by FailureKind
    budget_exhausted: int = 0
    metrics_publish_errors: int = 0
    parity_compared: int = 0  # online parity (issue 17): mirrored answers compared...
    parity_agreed: int = 0  # ...agreeing
    parity_dropped: int = 0  # mirrors not sent: over the budget or the in-flight cap
    parity_errors: int = 0  # mirrors whose gpu request failed (not a disagreement: nothing to compare)


class HybridClient:
    """Invoke a two-variant SageMaker endpoint with shape routing, gpu fallback and a neuron breaker."""

    def __init__(
        self,
        endpoint_name: str,
        *,
        runtime_client: Any = None,
        cloudwatch_client: Any = None,
        region: str | None = None,
        settings: ClientSettings | None = None,
        length_of: Callable[[Any], int | None] | None = None,
        tokenizer: Callable[[str], int] | None = None,
        must_use_gpu: Callable[[Any, str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        parity_compare: Callable[[Any, Any], Any] | None = None,
        rng: Callable[[], float] = random.random,
        metrics_time: Callable[[], datetime] | None = None,
        **overrides: Any,
    ) -> None:
        """parity_compare: `(neuron_output, gpu_output) -> Comparison | bool` over decoded JSON (from_config
        builds it from hybrid.yaml's parity section); rng picks the mirrored requests; metrics_time,
        when given, timestamps published datums (otherwise CloudWatch stamps them on receipt)."""
        if not endpoint_name:
            raise UserError("HybridClient: endpoint_name is required")
        known = {f.name for f in fields(ClientSettings)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UserError(f"HybridClient: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        self.settings = replace(settings or ClientSettings(), **overrides)
        self.endpoint_name = endpoint_name
        self.region = region
        self._clock = clock
        self._length_of = length_of
        self._tokenizer = tokenizer
        self._must_use_gpu = must_use_gpu
        self._runtime = runtime_client if runtime_client is not None else self._make_runtime()
        self._cloudwatch = cloudwatch_client
        s = self.settings
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one publisher at a time; never held with _lock
        self.breaker = CircuitBreaker(s.breaker_failures, s.breaker_window_seconds, s.breaker_cooldown_seconds)
        self.budget = RetryBudget(s.retry_budget_ratio, s.retry_budget_floor)
        self.stats = ClientStats()
        self._pending: dict[tuple[str, str], int] = {}  # (metric, variant) -> count not yet published
        self._last_flush = clock()
        self._closed = False
        self._parity_compare = parity_compare
        self._rng = rng
        self._metrics_time = metrics_time
        self._mirror_budget = RateBudget(s.parity_max_per_second, clock())
        self._mirrors_in_flight = 0
        self._mirror_idle = threading.Condition(self._lock)
        self._pool: ThreadPoolExecutor | None = None

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, path_or_config: str | Path | HybridConfig, **overrides: Any) -> HybridClient:
        """Endpoint name, region and compiled sequence length from hybrid.yaml; kwargs override."""
        cfg = path_or_config if isinstance(path_or_config, HybridConfig) else load_config(path_or_config)
        overrides.setdefault("sequence_length", cfg.compile.sequence_length)
        overrides.setdefault("region", cfg.region)
        online = cfg.parity.online
        if online.mirror_fraction > 0:  # issue 17: the same comparator `hybrid parity` uses
            from toolkit.parity import comparator

            overrides.setdefault("parity_fraction", online.mirror_fraction)
            overrides.setdefault("parity_max_per_second", online.max_per_second)
            overrides.setdefault("parity_max_in_flight", online.max_in_flight)
            overrides.setdefault("parity_compare", comparator(cfg.parity))
        return cls(cfg.name, **overrides)

    def _make_runtime(self) -> Any:
        import boto3
        from botocore.config import Config

        # Our fallback replaces botocore's retries: a retried neuron failure would otherwise
        # hit the same variant up to 3 more times before we see it.
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=self.settings.read_timeout_seconds,
            connect_timeout=self.settings.connect_timeout_seconds,
            max_pool_connections=50,
        )
        return boto3.client("sagemaker-runtime", region_name=self.region, config=config)

    def _cloudwatch_client(self) -> Any:
        if self._cloudwatch is None:
            import boto3

            self._cloudwatch = boto3.client("cloudwatch", region_name=self.region)
        return self._cloudwatch

    # -- routing ---------------------------------------------------------------------------------

    def needs_gpu(self, payload: Any, content_type: str = "application/json") -> str | None:
        """Why this payload must go to gpu ("shape" / "predicate"), or None if neuron can take it."""
        s = self.settings
        if self._must_use_gpu is not None and self._must_use_gpu(payload, content_type):
            return "predicate"
        if s.sequence_length is None:
            return None
        if self._length_of is not None:
            length = self._length_of(payload)
        elif "json" in content_type:
            # Fast path: n bytes hold at most (n + 1) / 2 whitespace-separated words, so a short
            # body cannot exceed the compiled length and needs no JSON parse.
            if (
                self._tokenizer is None
                and isinstance(payload, (bytes, bytearray, str))
                and math.ceil((len(payload) + 1) / 2 * s.tokens_per_word) + s.special_tokens <= s.sequence_length
            ):
                return None
            # tokens > sequence_length  <=>  words > (sequence_length - special) / tokens_per_word
            max_words = max(0, math.floor((s.sequence_length - s.special_tokens) / s.tokens_per_word))
            length = default_length_of(payload, s.tokens_per_word, s.special_tokens, self._tokenizer, max_words)
        else:
            return None
        return "shape" if length is not None and length > s.sequence_length else None

    def invoke(
        self, payload: Any, content_type: str = "application/json", accept: str | None = None, **kwargs: Any
    ) -> InvokeResult:
        """Invoke the endpoint; extra kwargs go to `invoke_endpoint` (CustomAttributes, InferenceId...)."""
        s = self.settings
        body = payload if isinstance(payload, (bytes, bytearray)) else (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        )
        params: dict[str, Any] = {"EndpointName": self.endpoint_name, "Body": body, "ContentType": content_type}
        if accept is not None:
            params["Accept"] = accept
        params.update(kwargs)

        probe = False
        target: str | None = params.get("TargetVariant")
        if target is not None:
            reason = "caller"
        else:
            reason = self.needs_gpu(payload, content_type) or "weighted"
            if reason != "weighted":
                target = s.gpu_variant
            else:
                with self._lock:
                    admission = self.breaker.admit(self._clock())
                if admission is Admission.GPU_ONLY:
                    target, reason = s.gpu_variant, "breaker_open"
                elif admission is Admission.PROBE:
                    target, reason, probe = s.neuron_variant, "probe", True
            if target is not None:
                params["TargetVariant"] = target

        with self._lock:
            self.stats.requests += 1
            self.budget.deposit()
            if target is not None:
                self._count(TARGETED_METRIC, target)

        attempts = 1
        try:
            response = self._runtime.invoke_endpoint(**params)
        except Exception as error:
            kind = classify_error(error)
            if kind is None:
                if probe:
                    with self._lock:
                        self.breaker.release_probe()
                raise
            variant = _variant_in_error(error) or target
            on_neuron = variant == s.neuron_variant or (variant is None and s.unknown_failures_are_neuron)
            retry = False
            with self._lock:
                self.stats.failures[kind.value] = self.stats.failures.get(kind.value, 0) + 1
                if kind in CALLER_FAULT:
                    if probe:
                        self.breaker.release_probe()
                elif on_neuron:
                    self.breaker.record_failure(self._clock(), probe)
                if kind in RETRYABLE and on_neuron and variant != s.gpu_variant:
                    retry = self.budget.try_spend()
                    if retry:
                        self._count(TARGETED_METRIC, s.gpu_variant)
                        self._count(FALLBACK_METRIC, s.gpu_variant)
                    else:
                        self.stats.budget_exhausted += 1
            if not retry:
                self._maybe_flush()
                raise
            params["TargetVariant"] = s.gpu_variant
            attempts = 2
            try:
                response = self._runtime.invoke_endpoint(**params)
            except Exception as retry_error:
                retry_kind = classify_error(retry_error)
                if retry_kind is not None:
                    with self._lock:
                        self.stats.failures[retry_kind.value] = self.stats.failures.get(retry_kind.value, 0) + 1
                self._maybe_flush()
                raise retry_error from error
            target, reason = s.gpu_variant, "fallback"

        served = response.get("InvokedProductionVariant") or (
            response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(INVOKED_VARIANT_HEADER)
        )
        raw = response.get("Body", b"")
        data = raw.read() if hasattr(raw, "read") else bytes(raw)
        with self._lock:
            if served is not None:
                self.stats.served[served] = self.stats.served.get(served, 0) + 1
                if served == s.neuron_variant:
                    self.breaker.record_success(probe)
            if probe and served != s.neuron_variant:
                self.breaker.release_probe()
        if served == s.neuron_variant and attempts == 1:
            self._maybe_mirror(params, data)  # issue 17: never blocks, never raises
        self._maybe_flush()
        return InvokeResult(
            body=data,
            served_by=served,
            targeted=target is not None,
            fell_back=attempts == 2,
            attempts=attempts,
            content_type=response.get("ContentType"),
            target_variant=target,
            reason=reason,
        )

    # -- online parity (issue 17) -----------------------------------------------------------------

    def _maybe_mirror(self, params: Mapping[str, Any], neuron_body: bytes) -> None:
        """Send this neuron-served request to gpu in the background, if picked and within budget."""
        s = self.settings
        if s.parity_fraction <= 0 or self._parity_compare is None or self._closed:
            return
        if self._rng() >= s.parity_fraction:
            return
        with self._lock:
            if self._mirrors_in_flight >= s.parity_max_in_flight or not self._mirror_budget.try_take(self._clock()):
                self.stats.parity_dropped += 1
                return
            self._mirrors_in_flight += 1
            self._count(TARGETED_METRIC, s.gpu_variant)  # the mirror is gpu traffic the weights did not send
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=s.parity_max_in_flight, thread_name_prefix="hybrid-parity")
            pool = self._pool
        try:
            pool.submit(self._mirror, {**params, "TargetVariant": s.gpu_variant}, neuron_body)
        except RuntimeError:  # the pool is shutting down (close() raced us): drop it
            with self._lock:
                self._mirror_done()
                self.stats.parity_dropped += 1

    def _mirror_done(self) -> None:
        """Caller holds the lock."""
        self._mirrors_in_flight -= 1
        self._mirror_idle.notify_all()

    def _mirror(self, params: dict[str, Any], neuron_body: bytes) -> None:
        try:
            response = self._runtime.invoke_endpoint(**params)
            raw = response.get("Body", b"")
            gpu_body = raw.read() if hasattr(raw, "read") else bytes(raw)
            agreed = self._agrees(neuron_body, gpu_body)
        except Exception as error:  # a mirror must never surface anywhere but in the counts
            log.debug("HybridClient: parity mirror failed: %s", error)
            with self._lock:
                self.stats.parity_errors += 1
                self._mirror_done()
            return
        with self._lock:
            self.stats.parity_compared += 1
            self.stats.parity_agreed += int(agreed)
            for metric, value in ((PARITY_COMPARED_METRIC, 1), (PARITY_AGREED_METRIC, int(agreed))):
                key = (metric, self.settings.neuron_variant)
                self._pending[key] = self._pending.get(key, 0) + value
            self._mirror_done()
        self._maybe_flush()

    def _agrees(self, neuron_body: bytes, gpu_body: bytes) -> bool:
        """Decoded JSON through the comparator; an answer without the expected shape disagrees."""
        from toolkit.parity import Comparison, safe_compare

        try:
            neuron, gpu = json.loads(neuron_body), json.loads(gpu_body)
        except (ValueError, UnicodeDecodeError):
            return neuron_body == gpu_body  # not JSON: only identical bytes agree
        assert self._parity_compare is not None
        result = safe_compare(self._parity_compare, neuron, gpu)
        return bool(result.ok) if isinstance(result, Comparison) else bool(result)

    def wait_for_mirrors(self, timeout: float | None = None) -> bool:
        """Block until no mirror is in flight (tests, shutdown); False on timeout."""
        with self._lock:
            return self._mirror_idle.wait_for(lambda: self._mirrors_in_flight == 0, timeout)

    # -- accounting and publishing -----------------------------------------------------------------

    def _count(self, metric: str, variant: str) -> None:
        """Caller holds the lock."""
        key = (metric, variant)
        self._pending[key] = self._pending.get(key, 0) + 1
        bucket = self.stats.targeted if metric == TARGETED_METRIC else self.stats.fallback
        bucket[variant] = bucket.get(variant, 0) + 1

    @property
    def breaker_state(self) -> BreakerState:
        with self._lock:
            return self.breaker.state

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            st = self.stats
            return {
                "requests": st.requests,
                "served": dict(st.served),
                "targeted": dict(st.targeted),
                "fallback": dict(st.fallback),
                "failures": dict(st.failures),
                "budget_exhausted": st.budget_exhausted,
                "metrics_publish_errors": st.metrics_publish_errors,
                "breaker": self.breaker.state.value,
                "breaker_opened": self.breaker.opened_count,
                "retry_tokens": round(self.budget.tokens, 3),
                "parity": {"compared": st.parity_compared, "agreed": st.parity_agreed,
                           "dropped": st.parity_dropped, "errors": st.parity_errors},
            }

    def _maybe_flush(self) -> None:
        if not self.settings.publish_metrics:
            return
        # Unlocked read: a stale value only delays or repeats the check; flush() re-checks.
        if self._clock() - self._last_flush >= self.settings.metrics_flush_seconds:
            self.flush(only_if_due=True)

    def flush(self, only_if_due: bool = False) -> int:
        """Publish pending counts in one PutMetricData call; returns the number of datums sent.

        Publishing never fails a request: on error the counts go back into the pending set
        and the error is logged and counted.
        """
        if not self.settings.publish_metrics:
            return 0
        if not self._flush_lock.acquire(blocking=not only_if_due):
            return 0  # someone else is publishing right now
        try:
            with self._lock:
                now = self._clock()
                if only_if_due and now - self._last_flush < self.settings.metrics_flush_seconds:
                    return 0
                self._last_flush = now
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            data = [
                {
                    "MetricName": metric,
                    "Dimensions": [
                        {"Name": "EndpointName", "Value": self.endpoint_name},
                        {"Name": "VariantName", "Value": variant},
                    ],
                    "Value": float(count),
                    "Unit": "Count",
                    **({"Timestamp": self._metrics_time()} if self._metrics_time is not None else {}),
                }
                for (metric, variant), count in sorted(pending.items())
            ]
            try:
                self._cloudwatch_client().put_metric_data(Namespace=CLIENT_METRICS_NAMESPACE, MetricData=data)
            except Exception as error:  # metrics must never break the application's requests
                log.warning("HybridClient: could not publish %d client metrics: %s", len(data), error)
                with self._lock:
                    self.stats.metrics_publish_errors += 1
                    for key, count in pending.items():
                        self._pending[key] = self._pending.get(key, 0) + count
                return 0
            return len(data)
        finally:
            self._flush_lock.release()

    def close(self) -> None:
        """Publish what is pending. Safe to call twice."""
        if not self._closed:
            self._closed = True
            if self._pool is not None:  # let mirrors in flight finish so their counts are published
                self._pool.shutdown(wait=True)
            self.flush()

    def __enter__(self) -> HybridClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
