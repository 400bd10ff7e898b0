"""The local container-contract server: /ping, /invocations, variant header, errors, latency specs."""

from __future__ import annotations

import http.client
import json
import random

import pytest

from tests.toolkit._virtual_clock import VirtualClock as Clock
from toolkit.contract_server import INVOKED_VARIANT_HEADER, Behaviour, ContractServer, LatencyModel
from toolkit.errors import UserError


def request(server: ContractServer, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, dict]:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def no_sleep(_: float) -> None:
    return None


def test_ping_answers_200_when_healthy_and_503_when_not():
    with ContractServer("neuron", "fixed:0", sleep=no_sleep) as server:
        assert request(server, "GET", "/ping")[0] == 200
        server.healthy = False
        assert request(server, "GET", "/ping")[0] == 503


def test_invocations_answer_with_the_variant_header_and_the_drawn_latency():
    with ContractServer("gpu", "fixed:40", sleep=no_sleep) as server:
        status, headers, payload = request(server, "POST", "/invocations", b'{"inputs": "hi"}')
    assert status == 200
    assert headers[INVOKED_VARIANT_HEADER] == "gpu"
    assert payload == {"variant": "gpu", "latency_ms": 40.0, "bytes": 16}


def test_invocations_sleep_the_configured_latency():
    slept: list[float] = []
    with ContractServer("neuron", "uniform:10,30", seed=7, sleep=slept.append) as server:
        for _ in range(5):
            request(server, "POST", "/invocations", b"{}")
    expected_rng = random.Random(7)
    expected = []
    for _ in range(5):
        expected.append(expected_rng.uniform(10, 30) / 1000.0)
        expected_rng.random()  # the error draw that follows each latency draw
    assert slept == pytest.approx(expected)


def test_error_rate_one_fails_every_invocation_with_500():
    with ContractServer("neuron", "fixed:0", error_rate=1.0, sleep=no_sleep) as server:
        status, _, payload = request(server, "POST", "/invocations", b"{}")
        assert (status, payload["error"]) == (500, "simulated model error")
        assert (server.requests, server.errors) == (1, 1)


def test_unknown_path_is_404():
    with ContractServer("neuron", "fixed:0", sleep=no_sleep) as server:
        assert request(server, "POST", "/predict", b"{}")[0] == 404


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("fixed:20", LatencyModel("fixed", 20, 0)), ("25", LatencyModel("fixed", 25, 0)),
     ("normal:40,4", LatencyModel("normal", 40, 4)), ("lognormal:20,0.3", LatencyModel("lognormal", 20, 0.3))],
)
def test_latency_specs_parse(spec, expected):
    assert LatencyModel.parse(spec) == expected


@pytest.mark.parametrize("spec", ["gamma:1", "fixed:a", "uniform:30,10", "normal:40", "fixed:-1"])
def test_bad_latency_specs_are_user_errors(spec):
    with pytest.raises(UserError, match="latency"):
        LatencyModel.parse(spec)


def test_normal_latency_is_never_negative():
    model = LatencyModel("normal", 1, 50)
    rng = random.Random(1)
    assert min(model.sample(rng) for _ in range(1000)) >= 0.0


# -- known behaviours for the benchmark: cold start, batch-dependent latency, jitter spells ------------




def test_first_request_and_the_first_after_idle_are_cold():
    clock = Clock()
    behaviour = Behaviour(cold_ms=500, idle_s=10)
    with ContractServer("neuron", "fixed:20", sleep=clock.sleep, clock=clock, behaviour=behaviour) as server:
        answers = [request(server, "POST", "/invocations", b"{}")[2] for _ in range(2)]
        clock.sleep(9)  # not idle long enough
        answers.append(request(server, "POST", "/invocations", b"{}")[2])
        clock.sleep(10)
        answers.append(request(server, "POST", "/invocations", b"{}")[2])
    assert [(a["latency_ms"], a["cold"]) for a in answers] == [(520, True), (20, False), (20, False), (520, True)]


def test_batch_latency_grows_per_item_with_the_inputs_list():
    with ContractServer("gpu", "fixed:10", sleep=no_sleep, behaviour=Behaviour(per_item_ms=2)) as server:
        one = request(server, "POST", "/invocations", b'{"inputs": "a"}')[2]
        many = request(server, "POST", "/invocations", json.dumps({"inputs": ["a"] * 16}).encode())[2]
        listed = request(server, "POST", "/invocations", b"[1, 2, 3]")[2]
    assert (one["batch"], one["latency_ms"]) == (1, 10)
    assert (many["batch"], many["latency_ms"]) == (16, 40)
    assert (listed["batch"], listed["latency_ms"]) == (3, 14)


def test_jitter_slows_every_other_spell_of_warm_requests():
    with ContractServer("neuron", "fixed:10", sleep=no_sleep,
                        behaviour=Behaviour(jitter_pct=50, jitter_every=2)) as server:
        latencies = [request(server, "POST", "/invocations", b"{}")[2]["latency_ms"] for _ in range(6)]
    assert latencies == [10, 10, 15, 15, 10, 10]


@pytest.mark.parametrize("behaviour", [Behaviour(cold_ms=-1), Behaviour(jitter_every=0), Behaviour(idle_s=0)])
def test_bad_behaviour_is_a_user_error(behaviour):
    with pytest.raises(UserError):
        ContractServer("neuron", "fixed:1", behaviour=behaviour)
