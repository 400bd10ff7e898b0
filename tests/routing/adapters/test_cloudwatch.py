"""CloudWatchMetrics: one batched GetMetricData per tick, closed minutes, µs -> ms, fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.metrics import QUERIES, CloudWatchMetrics, build_queries, metric_window
from tests.routing._aws import feed_minute
from toolkit.local.server import patched_mock_aws

NOW = datetime(2026, 3, 1, 10, 7, 42, tzinfo=UTC)
EP = "bert"


@pytest.fixture
def cw_stubbed():
    client = boto3.client("cloudwatch", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber


def _result(query_id: str, points: list[tuple[datetime, float]]) -> dict:
    return {"Id": query_id, "Label": query_id, "Timestamps": [t for t, _ in points],
            "Values": [v for _, v in points], "StatusCode": "Complete"}


def test_window_is_whole_closed_minutes_ending_before_the_open_minute():
    start, end = metric_window(NOW, 5)
    assert end == datetime(2026, 3, 1, 10, 7, tzinfo=UTC)
    assert start == datetime(2026, 3, 1, 10, 2, tzinfo=UTC)
    _, settled_end = metric_window(NOW, 5, settle_seconds=60)
    assert settled_end == datetime(2026, 3, 1, 10, 6, tzinfo=UTC)


def test_one_get_metric_data_call_carries_every_query_for_both_variants(cw_stubbed):
    client, stubber = cw_stubbed
    expected = {
        "MetricDataQueries": build_queries(EP, ("neuron", "gpu")),
        "StartTime": datetime(2026, 3, 1, 10, 4, tzinfo=UTC),
        "EndTime": datetime(2026, 3, 1, 10, 7, tzinfo=UTC),
        "ScanBy": "TimestampAscending",
    }
    stubber.add_response("get_metric_data", {"MetricDataResults": []}, expected)
    metrics = CloudWatchMetrics(client)
    metrics.observe(EP, ("neuron", "gpu"), NOW, 3)
    stubber.assert_no_pending_responses()
    assert metrics.api_calls == 1
    queries = expected["MetricDataQueries"]
    assert len(queries) == 2 * len(QUERIES)
    assert {q["MetricStat"]["Period"] for q in queries} == {60}
    by_id = {q["Id"]: q["MetricStat"] for q in queries}
    assert by_id["latency_p99_ms_0"]["Stat"] == "p99"
    assert by_id["latency_p99_ms_0"]["Metric"]["MetricName"] == "ModelLatency"
    assert by_id["latency_p99_ms_0"]["Metric"]["Dimensions"] == [
        {"Name": "EndpointName", "Value": EP}, {"Name": "VariantName", "Value": "neuron"}]
    assert by_id["invocations_1"]["Metric"]["Dimensions"][1]["Value"] == "gpu"
    assert by_id["targeted_1"]["Metric"]["Namespace"] == "HybridRouting/Client"
    assert by_id["targeted_1"]["Metric"]["MetricName"] == "TargetedInvocations"
    assert by_id["fallback_0"]["Metric"]["MetricName"] == "FallbackInvocations"
    names = {s["Metric"]["MetricName"] for s in by_id.values()}
    assert {"Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "InvocationModelErrors",
            "InvocationsPerInstance", "ModelLatency"} <= names


def test_latency_is_converted_from_microseconds_to_milliseconds_once(cw_stubbed):
    client, stubber = cw_stubbed
    m = datetime(2026, 3, 1, 10, 6, tzinfo=UTC)
    results = [
        _result("invocations_0", [(m, 120.0)]),
        _result("latency_p50_ms_0", [(m, 41_000.0)]),
        _result("latency_p90_ms_0", [(m, 55_000.0)]),
        _result("latency_p99_ms_0", [(m, 88_500.0)]),
        _result("latency_avg_ms_0", [(m, 43_000.0)]),
        _result("latency_max_ms_0", [(m, 120_000.0)]),
        _result("latency_samples_0", [(m, 120.0)]),
        _result("errors_5xx_0", [(m, 2.0)]),
        _result("targeted_1", [(m, 7.0), (m - timedelta(minutes=1), 3.0)]),
        _result("fallback_1", [(m, 2.0)]),
    ]
    stubber.add_response("get_metric_data", {"MetricDataResults": results}, {
        "MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": ANY})
    metrics = CloudWatchMetrics(client)
    obs = metrics.observe(EP, ("neuron", "gpu"), NOW, 2)
    assert obs.known and obs.percentiles_available
    neuron = obs.for_variant("neuron")
    assert [x.start for x in neuron] == [datetime(2026, 3, 1, 10, 5, tzinfo=UTC), m]
    assert neuron[0].invocations is None  # no datapoint: unknown, not zero
    last = neuron[-1]
    assert (last.invocations, last.errors_5xx) == (120.0, 2.0)
    assert (last.latency_p50_ms, last.latency_p90_ms, last.latency_p99_ms) == (41.0, 55.0, 88.5)
    assert (last.latency_avg_ms, last.latency_max_ms, last.latency_samples) == (43.0, 120.0, 120.0)
    assert obs.targeted == {"neuron": 0.0, "gpu": 10.0}
    assert metrics.last_fallbacks == {"neuron": 0.0, "gpu": 2.0}


def test_empty_percentiles_fall_back_to_average_and_maximum_with_a_flag(cw_stubbed):
    client, stubber = cw_stubbed
    m = datetime(2026, 3, 1, 10, 6, tzinfo=UTC)
    results = [
        _result("invocations_0", [(m, 50.0)]),
        _result("latency_p99_ms_0", []),
        _result("latency_avg_ms_0", [(m, 40_000.0)]),
        _result("latency_max_ms_0", [(m, 95_000.0)]),
        _result("latency_samples_0", [(m, 50.0)]),
    ]
    stubber.add_response("get_metric_data", {"MetricDataResults": results})
    obs = CloudWatchMetrics(client).observe(EP, ("neuron", "gpu"), NOW, 1)
    assert obs.percentiles_available is False
    minute = obs.for_variant("neuron")[-1]
    assert (minute.latency_p50_ms, minute.latency_p99_ms) == (40.0, 95.0)


def test_no_samples_and_no_percentiles_is_not_a_percentile_problem(cw_stubbed):
    client, stubber = cw_stubbed
    stubber.add_response("get_metric_data", {"MetricDataResults": []})
    obs = CloudWatchMetrics(client).observe(EP, ("neuron", "gpu"), NOW, 1)
    assert obs.percentiles_available is True
    assert obs.for_variant("gpu")[0].latency_p99_ms is None


def test_throttling_becomes_an_unknown_observation_not_an_exception(cw_stubbed):
    client, stubber = cw_stubbed
    stubber.add_client_error("get_metric_data", service_error_code="Throttling", service_message="Rate exceeded",
                             http_status_code=400)
    obs = CloudWatchMetrics(client).observe(EP, ("neuron", "gpu"), NOW, 3)
    assert not obs.known
    assert "Throttling" in obs.error or "Rate exceeded" in obs.error
    assert obs.window_end == datetime(2026, 3, 1, 10, 7, tzinfo=UTC)


def test_pages_are_followed_and_counted(cw_stubbed):
    client, stubber = cw_stubbed
    m = datetime(2026, 3, 1, 10, 6, tzinfo=UTC)
    stubber.add_response("get_metric_data", {"MetricDataResults": [_result("invocations_1", [(m, 10.0)])],
                                             "NextToken": "page2"})
    stubber.add_response("get_metric_data", {"MetricDataResults": [_result("errors_5xx_1", [(m, 1.0)])]},
                         {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": ANY,
                          "NextToken": "page2"})
    metrics = CloudWatchMetrics(client)
    gpu = metrics.observe(EP, ("neuron", "gpu"), NOW, 1).for_variant("gpu")[0]
    assert (gpu.invocations, gpu.errors_5xx) == (10.0, 1.0)
    assert metrics.api_calls == 2


def test_against_embedded_cloudwatch_percentiles_and_closed_minutes_only():
    with patched_mock_aws():
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        base = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
        for i in range(3):
            feed_minute(cw, EP, "neuron", base + timedelta(minutes=i), invocations=200, latency_ms=40.0, p99_ms=90.0)
            feed_minute(cw, EP, "gpu", base + timedelta(minutes=i), invocations=800, latency_ms=50.0, p99_ms=70.0,
                        errors_5xx=3)
        # the open minute (10:03) has data that must not be judged
        feed_minute(cw, EP, "neuron", base + timedelta(minutes=3), invocations=5, latency_ms=900.0, p99_ms=900.0)
        metrics = CloudWatchMetrics(cw)
        obs = metrics.observe(EP, ("neuron", "gpu"), base + timedelta(minutes=3, seconds=20), 3)
        assert obs.known, obs.error
        neuron, gpu = obs.for_variant("neuron"), obs.for_variant("gpu")
        assert [m.invocations for m in neuron] == [200.0, 200.0, 200.0]
        assert all(m.latency_p99_ms == pytest.approx(90.0) for m in neuron)
        assert all(m.latency_p50_ms == pytest.approx(40.0) for m in neuron)
        assert all(m.latency_samples == 200.0 for m in neuron)
        assert [m.errors_5xx for m in gpu] == [3.0, 3.0, 3.0]
        assert metrics.api_calls == 1


@settings(max_examples=60, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
    minutes=st.integers(min_value=1, max_value=60),
    points=st.dictionaries(st.integers(min_value=0, max_value=59), st.floats(min_value=0, max_value=1e8), max_size=20),
)
def test_any_response_maps_onto_whole_closed_minutes_in_milliseconds(now, minutes, points):
    client = boto3.client("cloudwatch", region_name="us-east-1")
    start, end = metric_window(now, minutes)
    inside = {i: v for i, v in points.items() if i < minutes}
    results = [_result("latency_p99_ms_1", [(start + timedelta(minutes=i), v) for i, v in inside.items()]),
               _result("latency_samples_1", [(start + timedelta(minutes=i), 1.0) for i in inside])]
    with Stubber(client) as stubber:
        stubber.add_response("get_metric_data", {"MetricDataResults": results})
        obs = CloudWatchMetrics(client).observe(EP, ("neuron", "gpu"), now, minutes)
    gpu = obs.for_variant("gpu")
    assert len(gpu) == minutes and len(obs.for_variant("neuron")) == minutes
    assert obs.window_end == end <= now and end - start == timedelta(minutes=minutes)
    assert all(m.start.second == 0 and m.start.microsecond == 0 and m.start < end for m in gpu)
    for i, m in enumerate(gpu):
        expected = inside.get(i)
        assert m.latency_p99_ms == (None if expected is None else pytest.approx(expected / 1000.0))


# -- StatusCode: InternalError / Forbidden / PartialData are not silence ------------------------------

ANY_PAGE = {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": ANY}


def _with_status(query_id: str, points: list[tuple[datetime, float]], status: str,
                 messages: list[dict] | None = None) -> dict:
    result = {**_result(query_id, points), "StatusCode": status}
    if messages is not None:
        result["Messages"] = messages
    return result


@pytest.mark.parametrize("status", ["InternalError", "Forbidden"])
def test_an_unanswered_query_makes_the_observation_unknown_with_the_reason(cw_stubbed, status):
    client, stubber = cw_stubbed
    m = datetime(2026, 3, 1, 10, 6, tzinfo=UTC)
    # The exact shape GetMetricData returns: a result with no points and a non-Complete StatusCode.
    results = [_result("invocations_1", [(m, 100.0)]),
               _with_status("invocations_0", [], status, [{"Code": status, "Value": "try again"}])]
    stubber.add_response("get_metric_data", {"MetricDataResults": results, "Messages": []}, ANY_PAGE)
    obs = CloudWatchMetrics(client).observe(EP, ("neuron", "gpu"), NOW, 1)
    stubber.assert_no_pending_responses()
    assert not obs.known  # not "neuron had no traffic": unknown
    assert status in obs.error and "invocations_0" in obs.error and "try again" in obs.error


def test_partial_data_follows_next_token_and_completes(cw_stubbed):
    client, stubber = cw_stubbed
    m = datetime(2026, 3, 1, 10, 6, tzinfo=UTC)
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        _with_status("invocations_0", [(m - timedelta(minutes=1), 40.0)], "PartialData")], "NextToken": "more"},
        ANY_PAGE)
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        _with_status("invocations_0", [(m, 60.0)], "Complete")]}, {**ANY_PAGE, "NextToken": "more"})
    metrics = CloudWatchMetrics(client)
    obs = metrics.observe(EP, ("neuron", "gpu"), NOW, 2)
    stubber.assert_no_pending_responses()
    assert obs.known and metrics.api_calls == 2
    assert [x.invocations for x in obs.for_variant("neuron")] == [40.0, 60.0]


def test_partial_data_without_a_next_page_is_unknown_not_missing_minutes(cw_stubbed):
    client, stubber = cw_stubbed
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        _with_status("latency_p99_ms_0", [], "PartialData")]}, ANY_PAGE)
    obs = CloudWatchMetrics(client).observe(EP, ("neuron", "gpu"), NOW, 1)
    assert not obs.known and "incomplete" in obs.error and "latency_p99_ms_0" in obs.error


def test_an_error_on_an_earlier_page_sticks_even_when_a_later_page_says_complete(cw_stubbed):
    client, stubber = cw_stubbed
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        _with_status("errors_5xx_0", [], "InternalError")], "NextToken": "p2"}, ANY_PAGE)
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        _with_status("errors_5xx_0", [], "Complete")]}, {**ANY_PAGE, "NextToken": "p2"})
    obs = CloudWatchMetrics(client).observe(EP, ("neuron", "gpu"), NOW, 1)
    assert not obs.known and "InternalError" in obs.error
