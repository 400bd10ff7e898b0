"""HybridClient: shape routing, gpu fallback per failure kind, retry budget, breaker, metrics, threads."""

from __future__ import annotations

import io
import json
import math
import threading
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from hypothesis import given
from hypothesis import strategies as st

from routing.client import (
    CLIENT_METRICS_NAMESPACE,
    FALLBACK_METRIC,
    TARGETED_METRIC,
    BreakerState,
    ClientSettings,
    HybridClient,
    RetryBudget,
    classify_error,
    default_length_of,
)
from toolkit.errors import UserError

ENDPOINT = "bert-classifier"
SHORT = {"inputs": "a short sentence"}
LONG = {"inputs": " ".join(["word"] * 200)}  # 200 words x 1.3 + 2 > 128 tokens


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def body(data: bytes = b'{"label": "POSITIVE"}') -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def ok(variant: str) -> dict[str, Any]:
    return {"Body": body(), "ContentType": "application/json", "InvokedProductionVariant": variant}


@pytest.fixture
def runtime():
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def expect(target: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"EndpointName": ENDPOINT, "Body": ANY, "ContentType": "application/json"}
    if target is not None:
        params["TargetVariant"] = target
    return params


def make(runtime_client: Any, clock: FakeClock | None = None, **settings: Any) -> HybridClient:
    settings.setdefault("publish_metrics", False)
    return HybridClient(ENDPOINT, runtime_client=runtime_client, clock=clock or FakeClock(), **settings)


# -- shape routing ---------------------------------------------------------------------------------


def test_short_request_goes_untargeted_and_reports_who_served(runtime):
    client, stub = runtime
    stub.add_response("invoke_endpoint", ok("neuron"), expect())
    result = make(client).invoke(SHORT)
    assert (result.served_by, result.targeted, result.fell_back, result.attempts) == ("neuron", False, False, 1)
    assert result.json() == {"label": "POSITIVE"}


def test_request_longer_than_compiled_sequence_targets_gpu(runtime):
    client, stub = runtime
    stub.add_response("invoke_endpoint", ok("gpu"), expect("gpu"))
    result = make(client).invoke(LONG)
    assert result.targeted and result.target_variant == "gpu" and result.reason == "shape"


def test_from_config_takes_sequence_length_from_compile_settings(runtime, example_config):
    client, stub = runtime
    cfg = example_config.model_copy(update={"compile": example_config.compile.model_copy(update={"sequence_length": 8})})
    stub.add_response("invoke_endpoint", ok("gpu"), expect("gpu"))
    hybrid = HybridClient.from_config(cfg, runtime_client=client, publish_metrics=False)
    assert hybrid.endpoint_name == example_config.name
    assert hybrid.invoke({"inputs": "one two three four five six seven"}).reason == "shape"


def test_user_predicate_and_tokenizer_decide_routing(runtime):
    client, stub = runtime
    stub.add_response("invoke_endpoint", ok("gpu"), expect("gpu"))
    stub.add_response("invoke_endpoint", ok("neuron"), expect())
    hybrid = make(client, must_use_gpu=None, tokenizer=lambda text: len(text))  # one token per character
    assert hybrid.invoke({"inputs": "x" * 129}).reason == "shape"
    assert hybrid.invoke({"inputs": "x" * 128}).reason == "weighted"
    other = make(client, must_use_gpu=lambda payload, ct: payload.get("image") is not None)
    assert other.needs_gpu({"image": "..."}) == "predicate"


def test_length_estimate_handles_batches_and_non_json():
    assert default_length_of(json.dumps({"inputs": ["a b", "a b c d"]}).encode()) == math.ceil(4 * 1.3) + 2
    assert default_length_of(b"\x00not json") is None
    assert default_length_of({"no_inputs": 1}) is None


def test_caller_target_variant_is_respected(runtime):
    client, stub = runtime
    stub.add_response("invoke_endpoint", ok("neuron"), expect("neuron"))
    result = make(client).invoke(LONG, TargetVariant="neuron")
    assert result.reason == "caller" and result.target_variant == "neuron"


# -- fallback per failure kind -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("ModelError", 424), ("ServiceUnavailable", 503), ("InternalFailure", 500), ("ThrottlingException", 400)],
)
def test_neuron_failure_is_retried_once_on_gpu(runtime, code, status):
    client, stub = runtime
    stub.add_client_error(
        "invoke_endpoint", code, http_status_code=status, expected_params=expect(),
        response_meta={"HTTPHeaders": {"x-amzn-invoked-production-variant": "neuron"}},
    )
    stub.add_response("invoke_endpoint", ok("gpu"), expect("gpu"))
    hybrid = make(client)
    result = hybrid.invoke(SHORT)
    assert (result.served_by, result.fell_back, result.attempts, result.reason) == ("gpu", True, 2, "fallback")
    assert hybrid.snapshot()["fallback"] == {"gpu": 1}


class FakeRuntime:
    """A runtime client that replays scripted outcomes (exceptions or served variants).

    `outcomes` apply to calls not targeted at gpu, `gpu_outcomes` to calls targeted at gpu.
    """

    def __init__(self, outcomes: list[Any] | None = None, gpu_outcomes: list[Any] | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.gpu_outcomes = list(gpu_outcomes or [])
        self.default = "neuron"
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        with self.lock:
            self.calls.append(params)
            queue = self.gpu_outcomes if params.get("TargetVariant") == "gpu" else self.outcomes
            outcome = queue.pop(0) if queue else None
        if isinstance(outcome, BaseException):
            raise outcome
        variant = params.get("TargetVariant") or outcome or self.default
        return {"Body": b"{}", "InvokedProductionVariant": variant}


def client_error(code: str, status: int, variant: str | None = None) -> ClientError:
    meta: dict[str, Any] = {"HTTPStatusCode": status}
    if variant:
        meta["HTTPHeaders"] = {"x-amzn-invoked-production-variant": variant}
    return ClientError({"Error": {"Code": code, "Message": "boom"}, "ResponseMetadata": meta}, "InvokeEndpoint")


def test_read_timeout_is_retried_on_gpu():
    fake = FakeRuntime([ReadTimeoutError(endpoint_url="https://runtime.sagemaker")])
    result = make(fake).invoke(SHORT)
    assert result.fell_back and fake.calls[1]["TargetVariant"] == "gpu"


def test_client_error_4xx_is_not_retried(runtime):
    client, stub = runtime
    stub.add_client_error("invoke_endpoint", "ValidationError", http_status_code=400, expected_params=expect())
    hybrid = make(client)
    with pytest.raises(ClientError):
        hybrid.invoke(SHORT)
    assert hybrid.snapshot()["fallback"] == {} and hybrid.breaker_state is BreakerState.CLOSED


def _model_error(stub: Stubber, original_status: int, variant: str = "neuron") -> None:
    """A ModelError exactly as botocore parses it: HTTP 424, the modeled members at the top level."""
    stub.add_client_error(
        "invoke_endpoint", "ModelError", http_status_code=424, expected_params=expect(),
        response_meta={"HTTPHeaders": {"x-amzn-invoked-production-variant": variant}},
        modeled_fields={"OriginalStatusCode": original_status, "OriginalMessage": "bad input",
                        "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x"},
    )


@pytest.mark.parametrize("original_status", [400, 413, 422])
def test_model_error_with_4xx_original_status_is_the_callers_input_not_retried(runtime, original_status):
    client, stub = runtime
    _model_error(stub, original_status)  # no gpu response queued: a retry would fail the stubber
    hybrid = make(client, retry_budget_floor=3)
    with pytest.raises(ClientError) as caught:
        hybrid.invoke(SHORT)
    assert caught.value.response["OriginalStatusCode"] == original_status
    snap = hybrid.snapshot()
    assert snap["failures"] == {"model_client_error": 1} and snap["fallback"] == {}
    assert snap["retry_tokens"] == 3.0  # floor 3, one deposit of 0.1 capped at capacity 3: nothing spent


def test_a_stream_of_bad_inputs_opens_no_breaker_and_spends_no_retry_budget(runtime):
    client, stub = runtime
    for _ in range(12):
        _model_error(stub, 400)
    hybrid = make(client, breaker_failures=5, retry_budget_floor=2, retry_budget_ratio=0.0)
    for _ in range(12):
        with pytest.raises(ClientError):
            hybrid.invoke(SHORT)
    snap = hybrid.snapshot()
    assert hybrid.breaker_state is BreakerState.CLOSED and snap["breaker_opened"] == 0
    assert snap["retry_tokens"] == 2.0 and snap["budget_exhausted"] == 0


@pytest.mark.parametrize("original_status", [500, 503, 429, 408])
def test_model_error_with_5xx_or_overload_original_status_is_still_retried_on_gpu(runtime, original_status):
    client, stub = runtime
    _model_error(stub, original_status)
    stub.add_response("invoke_endpoint", ok("gpu"), expect("gpu"))
    hybrid = make(client)
    result = hybrid.invoke(SHORT)
    assert (result.served_by, result.fell_back) == ("gpu", True)
    assert hybrid.snapshot()["failures"] == {"model_error": 1}


def test_classify_model_error_by_original_status_code():
    def model_error(original: Any) -> ClientError:
        response: dict[str, Any] = {"Error": {"Code": "ModelError", "Message": "m"},
                                    "ResponseMetadata": {"HTTPStatusCode": 424}}
        if original is not None:
            response["OriginalStatusCode"] = original
        return ClientError(response, "InvokeEndpoint")  # type: ignore[arg-type]

    assert classify_error(model_error(400)).value == "model_client_error"
    assert classify_error(model_error(404)).value == "model_client_error"
    assert classify_error(model_error(500)).value == "model_error"
    assert classify_error(model_error(None)).value == "model_error"  # unknown: a neuron failure (safe side)


def test_runtime_read_timeout_is_70_seconds_for_60_second_models():
    assert ClientSettings().read_timeout_seconds == 70.0
    hybrid = HybridClient(ENDPOINT, region="us-east-1", publish_metrics=False)
    assert hybrid._runtime.meta.config.read_timeout == 70.0


def test_gpu_failure_is_not_retried_on_gpu():
    fake = FakeRuntime([client_error("ServiceUnavailable", 503, variant="gpu")])
    with pytest.raises(ClientError):
        make(fake).invoke(SHORT)
    assert len(fake.calls) == 1


def test_failed_fallback_raises_the_gpu_error_chained_to_the_neuron_error():
    fake = FakeRuntime([client_error("ModelError", 424)], [client_error("InternalFailure", 500)])
    with pytest.raises(ClientError) as caught:
        make(fake).invoke(SHORT)
    assert caught.value.response["Error"]["Code"] == "InternalFailure"
    assert caught.value.__cause__.response["Error"]["Code"] == "ModelError"


def test_classify_error_kinds():
    assert classify_error(client_error("ModelNotReadyException", 429)).value == "throttled"
    assert classify_error(client_error("InternalDependencyException", 530)).value == "server_error"
    assert classify_error(client_error("ValidationError", 400)).value == "client_error"
    assert classify_error(ValueError("bug")) is None


# -- retry budget ------------------------------------------------------------------------------------


def test_retry_budget_bounds_fallbacks_during_a_neuron_outage():
    requests = 200

    # Every neuron attempt fails; the breaker is kept out of the way to isolate the budget.
    class AlwaysFailNeuron(FakeRuntime):
        def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
            self.calls.append(params)
            if params.get("TargetVariant") != "gpu":
                raise client_error("ModelError", 424, "neuron")
            return {"Body": b"{}", "InvokedProductionVariant": "gpu"}

    fake = AlwaysFailNeuron()
    hybrid = make(fake, retry_budget_ratio=0.1, retry_budget_floor=5, breaker_failures=10**9)
    fell_back = failed = 0
    for _ in range(requests):
        try:
            fell_back += hybrid.invoke(SHORT).fell_back
        except ClientError:
            failed += 1
    assert fell_back <= 5 + 0.1 * requests
    assert fell_back >= 0.1 * requests - 1  # the budget is used, not just refused
    assert hybrid.snapshot()["budget_exhausted"] == failed > 0
    assert len(fake.calls) == requests + fell_back


def test_retry_budget_token_bucket_caps_savings():
    budget = RetryBudget(ratio=0.5, floor=2)
    for _ in range(100):
        budget.deposit()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]


# -- circuit breaker ---------------------------------------------------------------------------------


def test_breaker_opens_after_n_failures_in_window_then_targets_gpu():
    clock = FakeClock()
    fake = FakeRuntime([client_error("ModelError", 424, "neuron")] * 3)
    hybrid = make(fake, clock, breaker_failures=3, breaker_window_seconds=10, breaker_cooldown_seconds=30)
    for _ in range(3):
        clock.t += 1
        assert hybrid.invoke(SHORT).fell_back
    assert hybrid.breaker_state is BreakerState.OPEN
    result = hybrid.invoke(SHORT)
    assert result.reason == "breaker_open" and fake.calls[-1]["TargetVariant"] == "gpu"


def test_failures_outside_the_window_do_not_open_the_breaker():
    clock = FakeClock()
    fake = FakeRuntime([client_error("ModelError", 424, "neuron")] * 3)
    hybrid = make(fake, clock, breaker_failures=3, breaker_window_seconds=10)
    for _ in range(3):
        clock.t += 6
        hybrid.invoke(SHORT)
    assert hybrid.breaker_state is BreakerState.CLOSED


def test_breaker_half_open_probe_success_closes_it():
    clock = FakeClock()
    fake = FakeRuntime([client_error("ModelError", 424, "neuron")] * 2)
    hybrid = make(fake, clock, breaker_failures=2, breaker_cooldown_seconds=30)
    hybrid.invoke(SHORT)
    hybrid.invoke(SHORT)
    assert hybrid.breaker_state is BreakerState.OPEN
    clock.t += 29
    assert hybrid.invoke(SHORT).reason == "breaker_open"
    clock.t += 1
    probe = hybrid.invoke(SHORT)
    assert probe.reason == "probe" and fake.calls[-1]["TargetVariant"] == "neuron"
    assert hybrid.breaker_state is BreakerState.CLOSED
    assert hybrid.invoke(SHORT).reason == "weighted"


def test_breaker_half_open_probe_failure_reopens_it_for_another_cooloff():
    clock = FakeClock()
    fake = FakeRuntime([client_error("ModelError", 424, "neuron")] * 2 + [client_error("ModelError", 424)])
    hybrid = make(fake, clock, breaker_failures=2, breaker_cooldown_seconds=30)
    hybrid.invoke(SHORT)
    hybrid.invoke(SHORT)
    clock.t += 30
    probe = hybrid.invoke(SHORT)  # targeted at neuron, fails, falls back to gpu
    assert probe.fell_back and hybrid.breaker_state is BreakerState.OPEN
    clock.t += 29
    assert hybrid.invoke(SHORT).reason == "breaker_open"


def test_only_one_probe_at_a_time_while_half_open():
    from routing.client import Admission, CircuitBreaker

    breaker = CircuitBreaker(failures=1, window_seconds=10, cooldown_seconds=5)
    breaker.record_failure(0.0, probe=False)
    assert breaker.admit(1.0) is Admission.GPU_ONLY
    assert breaker.admit(5.0) is Admission.PROBE
    assert breaker.admit(5.1) is Admission.GPU_ONLY


# -- metrics ---------------------------------------------------------------------------------------


def test_targeted_and_fallback_counts_are_published_batched_with_exact_names():
    clock = FakeClock()
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    fake = FakeRuntime([client_error("ModelError", 424, "neuron")])

    def datum(metric: str, variant: str, value: float) -> dict[str, Any]:
        return {
            "MetricName": metric,
            "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}],
            "Value": value,
            "Unit": "Count",
        }

    with Stubber(cloudwatch) as stub:
        stub.add_response(
            "put_metric_data",
            {},
            {
                "Namespace": CLIENT_METRICS_NAMESPACE,
                "MetricData": [datum(FALLBACK_METRIC, "gpu", 1.0), datum(TARGETED_METRIC, "gpu", 3.0)],
            },
        )
        hybrid = HybridClient(
            ENDPOINT, runtime_client=fake, cloudwatch_client=cloudwatch, clock=clock, metrics_flush_seconds=10
        )
        hybrid.invoke(SHORT)  # neuron fails -> gpu fallback (targeted + fallback)
        hybrid.invoke(LONG)  # shape -> targeted gpu
        hybrid.invoke(SHORT)  # untargeted: not counted
        clock.t += 10
        hybrid.invoke(LONG)  # due: this call flushes everything so far, once
        stub.assert_no_pending_responses()
    assert (CLIENT_METRICS_NAMESPACE, TARGETED_METRIC, FALLBACK_METRIC) == (
        "HybridRouting/Client", "TargetedInvocations", "FallbackInvocations",
    )


def test_publish_failure_keeps_counts_for_the_next_flush_and_never_fails_requests():
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    with Stubber(cloudwatch) as stub:
        stub.add_client_error("put_metric_data", "InternalServiceError", http_status_code=500)
        stub.add_response("put_metric_data", {}, {"Namespace": CLIENT_METRICS_NAMESPACE, "MetricData": ANY})
        hybrid = HybridClient(ENDPOINT, runtime_client=FakeRuntime(), cloudwatch_client=cloudwatch, clock=FakeClock())
        hybrid.invoke(LONG)
        assert hybrid.flush() == 0
        assert hybrid.snapshot()["metrics_publish_errors"] == 1
        hybrid.close()
        stub.assert_no_pending_responses()


# -- threads and settings -----------------------------------------------------------------------------


def test_counters_stay_consistent_under_many_threads():
    class EverySeventhNeuronFails(FakeRuntime):
        def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
            with self.lock:
                self.calls.append(params)
                fail = "TargetVariant" not in params and len(self.calls) % 7 == 0
            if fail:
                raise client_error("ModelError", 424, "neuron")
            return {"Body": b"{}", "InvokedProductionVariant": params.get("TargetVariant", "neuron")}

    fake = EverySeventhNeuronFails()
    hybrid = make(fake, breaker_failures=10**9, retry_budget_floor=10**6)
    per_thread, threads = 250, 8

    def work(i: int) -> None:
        for j in range(per_thread):
            hybrid.invoke(LONG if (i + j) % 3 == 0 else SHORT)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    snap = hybrid.snapshot()
    total = per_thread * threads
    assert snap["requests"] == total
    assert sum(snap["served"].values()) == total
    assert len(fake.calls) == total + snap["fallback"]["gpu"]
    shape = sum(1 for i in range(threads) for j in range(per_thread) if (i + j) % 3 == 0)
    assert snap["targeted"]["gpu"] == shape + snap["fallback"]["gpu"]


def test_bad_settings_are_one_line_user_errors():
    with pytest.raises(UserError, match="breaker_failures"):
        ClientSettings(breaker_failures=0)
    with pytest.raises(UserError, match="unknown setting"):
        HybridClient(ENDPOINT, runtime_client=FakeRuntime(), breaker_failure=3)


def test_served_variant_is_read_from_the_real_response_header_under_moto():
    import requests
    from moto import mock_aws

    with mock_aws():
        requests.post(
            "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
            json={"results": [
                {"Body": '{"label": "A"}', "ContentType": "application/json", "InvokedProductionVariant": "neuron"},
                {"Body": '{"label": "B"}', "ContentType": "application/json", "InvokedProductionVariant": "gpu"},
            ]},
            timeout=5,
        )
        runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
        hybrid = HybridClient(ENDPOINT, runtime_client=runtime, publish_metrics=False)
        short = hybrid.invoke(SHORT)
        long = hybrid.invoke(LONG)
    assert (short.served_by, short.json(), short.targeted) == ("neuron", {"label": "A"}, False)
    assert (long.served_by, long.json(), long.target_variant) == ("gpu", {"label": "B"}, "gpu")


@given(
    words=st.lists(st.text(alphabet="ab \n\t", min_size=0, max_size=4), max_size=60),
    sequence_length=st.integers(min_value=1, max_value=60),
    tokens_per_word=st.sampled_from([0.5, 1.0, 1.3, 2.0]),
)
def test_early_stopping_word_count_decides_like_a_full_count(words, sequence_length, tokens_per_word):
    text = " ".join(words)
    hybrid = HybridClient(ENDPOINT, runtime_client=FakeRuntime(), publish_metrics=False,
                          sequence_length=sequence_length, tokens_per_word=tokens_per_word)
    full = math.ceil(len(text.split()) * tokens_per_word) + 2
    assert (hybrid.needs_gpu({"inputs": text}) == "shape") == (full > sequence_length)
