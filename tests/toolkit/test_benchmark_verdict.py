"""hybrid benchmark's migration questions: jitter across windows, first request, batch size, open-loop
load and the verdict, against contract servers with known behaviour on a virtual clock (exact figures,
no timing assertions)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_CONFIG
from tests.toolkit._virtual_clock import VirtualClock
from toolkit import benchmark as bench
from toolkit.benchmark import (
    BatchResult,
    HttpTarget,
    LevelResult,
    LoadPlan,
    VariantResult,
    batch_body,
    make_verdict,
    percentile,
    poisson_arrivals,
    run_benchmark,
)
from toolkit.cli import run
from toolkit.contract_server import Behaviour, ContractServer
from toolkit.errors import UserError
from toolkit.pricing import HOSTING_PRICES_US_EAST_1


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    path = tmp_path / "hybrid.yaml"
    shutil.copy(EXAMPLE_CONFIG, path)
    return path


def server(clock: VirtualClock, variant: str, latency: str, **behaviour: float) -> ContractServer:
    return ContractServer(variant, latency, sleep=clock.sleep, clock=clock, behaviour=Behaviour(**behaviour))


# -- jitter -------------------------------------------------------------------------------------------


def test_p99_jitter_across_windows_is_flagged_above_15_percent_and_not_on_a_steady_server(example_config):
    # neuron: every other spell of 100 warm requests runs 50% slower (20 -> 30 ms); gpu: steady 40 ms.
    # No first-request probe, so the level's warm-up is warm request 0 and window k holds warm requests
    # 100k+1 .. 100k+100: 99 of one spell and 1 of the next. P99 interpolates at rank 98.01 of 100.
    clock = VirtualClock()
    with server(clock, "neuron", "fixed:20", jitter_pct=50, jitter_every=100) as neuron, \
         server(clock, "gpu", "fixed:40") as gpu:
        report = run_benchmark(example_config, {"neuron": HttpTarget(neuron.url), "gpu": HttpTarget(gpu.url)}, [1],
                               duration_s=1000, max_requests=400, timer=clock, sleep=clock.sleep,
                               plan=LoadPlan(windows=4, first_requests=0))
    n = report.variants["neuron"].levels[0]
    assert n.window_p99_ms == pytest.approx([20 + 0.01 * 10, 30, 20 + 0.01 * 10, 30])
    mean = (20.1 + 30) / 2
    assert n.p99_cv == pytest.approx(4.95 / mean)  # 19.8% > 15%
    assert n.p99_spread == pytest.approx(9.9 / mean)
    assert n.jitter is True
    g = report.variants["gpu"].levels[0]
    assert g.window_p99_ms == pytest.approx([40] * 4) and g.p99_cv == pytest.approx(0) and g.jitter is False
    assert report.verdict.jitter == {"neuron": True, "gpu": False}
    assert report.verdict.decision == "optimize first"
    assert any("P99 varies" in r for r in report.verdict.reasons)


def test_jitter_threshold_is_a_knob(example_config):
    clock = VirtualClock()
    with server(clock, "neuron", "fixed:20", jitter_pct=50, jitter_every=100) as neuron:
        report = run_benchmark(example_config, {"neuron": HttpTarget(neuron.url)}, [1], duration_s=1000,
                               max_requests=400, timer=clock, sleep=clock.sleep,
                               plan=LoadPlan(windows=4, jitter_threshold=0.25, first_requests=0))
    level = report.variants["neuron"].levels[0]
    assert 0.15 < level.p99_cv < 0.25 and level.jitter is False


# -- first request ------------------------------------------------------------------------------------


def test_first_request_and_after_idle_are_measured_apart_and_flagged_against_the_slo(example_config):
    # A cold first request (+1000 ms) and again after 60 s idle; the warm distribution stays at 20 ms.
    clock = VirtualClock()
    with server(clock, "neuron", "fixed:20", cold_ms=1000, idle_s=60) as neuron:
        report = run_benchmark(example_config, {"neuron": HttpTarget(neuron.url)}, [1], duration_s=1000,
                               max_requests=20, timer=clock, sleep=clock.sleep,
                               plan=LoadPlan(first_requests=2, idle_s=120))
    result = report.variants["neuron"]
    first = result.first_request
    assert first.first_ms == pytest.approx([1020, 20])
    assert first.after_idle_ms == pytest.approx(1020)
    assert first.breaks_slo and first.slo_ms == example_config.slo.p99_latency_ms
    assert result.levels[0].p99_ms == pytest.approx(20)  # the cold ones stay out of the warm figures


def test_a_first_request_within_the_slo_is_not_flagged(example_config):
    clock = VirtualClock()
    with server(clock, "gpu", "fixed:20", cold_ms=100) as gpu:
        report = run_benchmark(example_config, {"gpu": HttpTarget(gpu.url)}, [1], duration_s=1000, max_requests=5,
                               timer=clock, sleep=clock.sleep)
    first = report.variants["gpu"].first_request
    assert first.first_ms == pytest.approx([120]) and not first.breaks_slo  # 120 <= 150 ms


# -- batch size ---------------------------------------------------------------------------------------


def test_batch_sizes_give_per_request_latency_and_cost_per_inference(example_config):
    # latency = base + per_item x (batch - 1): neuron 20 + 1 ms/item, gpu 30 + 4 ms/item.
    clock = VirtualClock()
    with server(clock, "neuron", "fixed:20", per_item_ms=1) as neuron, \
         server(clock, "gpu", "fixed:30", per_item_ms=4) as gpu:
        report = run_benchmark(example_config, {"neuron": HttpTarget(neuron.url), "gpu": HttpTarget(gpu.url)}, [1],
                               duration_s=1000, max_requests=20, timer=clock, sleep=clock.sleep,
                               plan=LoadPlan(batch_sizes=(1, 16)))
    model = {"neuron": (20.0, 1.0), "gpu": (30.0, 4.0)}
    for name, (base, per_item) in model.items():
        result = report.variants[name]
        price = HOSTING_PRICES_US_EAST_1[example_config.variant(name).instance_type]
        for size in (1, 16):
            batch = result.batch(size)
            (level,) = batch.levels
            latency = base + per_item * (size - 1)
            assert level.p99_ms == pytest.approx(latency)
            assert level.throughput_rps == pytest.approx(1000 / latency)
            assert level.inferences_per_s == pytest.approx(1000 / latency * size)
            assert batch.cost_per_1k == pytest.approx(price / (1000 / latency * size * 3600) * 1000)
        assert result.batch_size == 16  # cheaper per inference on both
    v = report.verdict
    assert v.apples_batch_size == 1
    assert v.apples_cost_per_1k["neuron"] == report.variants["neuron"].batch(1).cost_per_1k
    assert v.best_batch_size == {"neuron": 16, "gpu": 16}
    assert v.saving_percent == pytest.approx(
        (1 - report.variants["neuron"].cost_per_1k / report.variants["gpu"].cost_per_1k) * 100, abs=0.01)
    assert v.decision == "migrate"


def test_batch_body_is_formed_from_the_payload_template():
    assert json.loads(batch_body(b'{"inputs": "a", "p": 1}', 3)) == {"inputs": ["a", "a", "a"], "p": 1}
    assert json.loads(batch_body(b'{"inputs": ["a", "b"]}', 3)) == {"inputs": ["a", "b", "a"]}
    assert json.loads(batch_body(b'[1, 2]', 3)) == [1, 2, 1]
    assert batch_body(b'{"inputs": "a"}', 1) == b'{"inputs": "a"}'  # batch 1 of one input: as is
    assert json.loads(batch_body(b'{"text": "a"}', 2, key="text")) == {"text": ["a", "a"]}
    with pytest.raises(UserError, match="--batch-key"):
        batch_body(b'{"text": "a"}', 2)


def test_write_capacity_records_the_chosen_batch_sizes_capacity(config_copy, capsys, monkeypatch):
    clock = VirtualClock()
    monkeypatch.setattr(bench, "WALL_CLOCK", (clock, clock.sleep))
    with server(clock, "neuron", "fixed:20", per_item_ms=1) as neuron, \
         server(clock, "gpu", "fixed:30", per_item_ms=4) as gpu:
        code = run(["loadtest", "-c", str(config_copy), "--url", f"neuron={neuron.url},gpu={gpu.url}",
                    "--concurrency", "1", "--max-requests", "10", "--batch-sizes", "1,16",
                    "--capacity-batch-size", "16", "--write-capacity", "--output", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    from toolkit.config import load_config

    cfg = load_config(config_copy)
    assert cfg.variants.neuron.capacity_rps_per_instance == pytest.approx(1000 / 35, abs=0.05)
    assert cfg.variants.gpu.capacity_rps_per_instance == pytest.approx(1000 / 90, abs=0.05)
    assert out["variants"]["neuron"]["batch_size"] == 16


# -- open loop ----------------------------------------------------------------------------------------


def lindley(start: float, offsets: list[float], services: list[float]) -> tuple[list[float], float]:
    """Response times (ms) of one FIFO server fed Poisson arrivals, and when it finishes."""
    t = start
    out = []
    for offset, service in zip(offsets, services, strict=True):
        arrival = start + offset
        t = max(t, arrival) + service / 1000.0
        out.append((t - arrival) * 1000.0)
    return out, t


def test_open_loop_latency_includes_queueing_exactly_like_a_single_server_queue(example_config):
    # 20 ms service, Poisson arrivals at 20/s (utilisation 0.4): latency = service + wait in queue.
    clock = VirtualClock()
    with server(clock, "gpu", "fixed:20") as gpu:
        report = run_benchmark(example_config, {"gpu": HttpTarget(gpu.url)}, [1], duration_s=1000, max_requests=200,
                               timer=clock, sleep=clock.sleep, plan=LoadPlan(rates=(20.0,), windows=2,
                                                                              first_requests=0))
    level = report.variants["gpu"].levels[0]
    rng = random.Random("0:gpu:1:20.0")
    t = 0.020  # the level's warm-up request
    latencies: list[float] = []
    for _ in range(2):
        offsets = poisson_arrivals(rng, 20.0, 500, 100)
        window, t = lindley(t, offsets, [20.0] * len(offsets))
        latencies += window
    latencies.sort()
    assert level.rate_rps == 20.0 and level.requests == 200
    assert level.p50_ms == pytest.approx(percentile(latencies, 50))
    assert level.p99_ms == pytest.approx(percentile(latencies, 99))
    assert level.p99_ms > 20.0  # queueing shows (a closed loop would report exactly 20 ms)


def test_poisson_arrivals_are_bounded_in_count_and_time():
    rng = random.Random(1)
    assert len(poisson_arrivals(rng, 1000.0, 10.0, 50)) == 50
    offsets = poisson_arrivals(random.Random(1), 10.0, 2.0, None)
    assert offsets == sorted(offsets) and offsets[-1] < 2.0


# -- the done-when: batch sizes 1,16 at --rate 20 through the CLI ------------------------------------


def test_cli_benchmark_batch_sizes_at_a_rate_reports_known_behaviour_and_the_verdict(config_copy, capsys,
                                                                                      monkeypatch):
    clock = VirtualClock()
    monkeypatch.setattr(bench, "WALL_CLOCK", (clock, clock.sleep))
    spec = {  # base ms, per-item ms, cold ms, jitter %
        "neuron": (10.0, 0.5, 400.0, 100.0),
        "gpu": (15.0, 2.0, 0.0, 0.0),
    }
    servers = {n: server(clock, n, f"fixed:{b:g}", per_item_ms=p, cold_ms=c, jitter_pct=j, jitter_every=100)
               for n, (b, p, c, j) in spec.items()}
    with servers["neuron"], servers["gpu"]:
        argv = ["loadtest", "-c", str(config_copy), "--url",
                f"neuron={servers['neuron'].url},gpu={servers['gpu'].url}", "--concurrency", "1",
                "--batch-sizes", "1,16", "--rate", "20", "--windows", "4", "--max-requests", "400",
                "--duration", "1000"]
        code = run([*argv, "--output", "json"])
        report = json.loads(capsys.readouterr().out)
    assert code == 0
    for name, (base, per_item, cold, jitter) in spec.items():
        result = report["variants"][name]
        assert result["first_request"]["first_ms"] == pytest.approx([base + cold])
        assert result["first_request"]["breaks_slo"] is (base + cold > 150)
        warm = 0
        for batch in result["batches"]:
            size = batch["batch_size"]
            (level,) = batch["levels"]

            def service(i: int, size: int = size, base: float = base, per_item: float = per_item,
                        jitter: float = jitter) -> float:
                slow = (i // 100) % 2 == 1
                return base * (1 + jitter / 100 if slow else 1) + per_item * (size - 1)

            rng = random.Random(f"0:{name}:{size}:20.0")
            latencies, p99s = [], []
            t = 0.0  # relative time: the first window starts as the level's warm-up request ends
            warm += 1  # the level's warm-up request
            for _ in range(4):
                offsets = poisson_arrivals(rng, 20.0, 250, 100)
                services = [service(warm + k) for k in range(len(offsets))]
                warm += len(offsets)
                window, t = lindley(t, offsets, services)
                latencies += window
                p99s.append(percentile(sorted(window), 99))
            latencies.sort()
            assert level["p50_ms"] == pytest.approx(percentile(latencies, 50))
            assert level["p99_ms"] == pytest.approx(percentile(latencies, 99))
            assert level["window_p99_ms"] == pytest.approx(p99s)
            assert level["jitter"] is (level["p99_cv"] > 0.15)
    neuron_level = report["variants"]["neuron"]["batches"][0]["levels"][0]
    assert neuron_level["jitter"] is True  # the 100% spells
    verdict = report["verdict"]
    assert verdict["jitter"]["neuron"] is True and verdict["first_request_breaks_slo"] == {"neuron": True,
                                                                                           "gpu": False}
    assert verdict["decision"] in ("optimize first", "stay on GPU")
    # The same run for people: the verdict is printed.
    clock.now = 0.0
    servers = {n: server(clock, n, f"fixed:{b:g}", per_item_ms=p, cold_ms=c, jitter_pct=j, jitter_every=100)
               for n, (b, p, c, j) in spec.items()}
    with servers["neuron"], servers["gpu"]:
        argv[4] = f"neuron={servers['neuron'].url},gpu={servers['gpu'].url}"
        code = run(argv)
    out = capsys.readouterr().out
    assert code == 0 and "Verdict: " + verdict["decision"] in out and "jitter" in out


# -- the verdict, pure ----------------------------------------------------------------------------------


def variant(name: str, cost: float | None, jitter: bool = False, cv: float | None = None) -> VariantResult:
    level = LevelResult(1, 10, 0, 1.0, 10.0, 0.0, 10.0, 10.0, 10.0, 10.0, within_slo=cost is not None,
                        jitter=jitter, p99_cv=cv)
    batch = BatchResult(1, [level], best_concurrency=1 if cost is not None else None, cost_per_1k=cost)
    return VariantResult(name, "ml.x", 1.0, 1, "t", levels=[level], best_concurrency=batch.best_concurrency,
                         cost_per_1k=cost, batches=[batch])


@pytest.mark.parametrize(
    ("neuron", "gpu", "decision"),
    [
        (variant("neuron", 0.5), variant("gpu", 1.0), "migrate"),
        (variant("neuron", 0.5, jitter=True, cv=0.3), variant("gpu", 1.0), "optimize first"),
        (variant("neuron", 1.2), variant("gpu", 1.0), "stay on GPU"),
        (variant("neuron", None), variant("gpu", 1.0), "stay on GPU"),
    ],
)
def test_verdict_decides_from_cost_and_flags(neuron, gpu, decision):
    verdict = make_verdict({"neuron": neuron, "gpu": gpu}, LoadPlan())
    assert verdict.decision == decision


def test_verdict_needs_both_variants():
    assert make_verdict({"neuron": variant("neuron", 0.5)}, LoadPlan()) is None


def test_plot_is_the_one_page_verdict_png(config_copy, tmp_path, capsys, monkeypatch):
    clock = VirtualClock()
    monkeypatch.setattr(bench, "WALL_CLOCK", (clock, clock.sleep))
    png = tmp_path / "verdict.png"
    with server(clock, "neuron", "fixed:20") as neuron, server(clock, "gpu", "fixed:30") as gpu:
        code = run(["loadtest", "-c", str(config_copy), "--url", f"neuron={neuron.url},gpu={gpu.url}",
                    "--concurrency", "1", "--max-requests", "10", "--batch-sizes", "1,4", "--plot", str(png),
                    "--output", "json"])
    capsys.readouterr()
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-sizes", "0,2"], "--batch-sizes"),
        (["--batch-sizes", "a"], "--batch-sizes"),
        (["--rate", "-1"], "--rate"),
        (["--rate", "x"], "--rate"),
        (["--windows", "0"], "--windows"),
        (["--gpu-batch-size", "8", "--batch-sizes", "1,16"], "--gpu-batch-size"),
        (["--batch-sizes", "1,4", "--payload", '{"text": "x"}'], "--batch-key"),
    ],
)
def test_bad_new_flags_are_one_line_errors_with_exit_2(config_copy, capsys, args, message):
    with ContractServer("neuron", "fixed:1") as neuron:
        code = run(["loadtest", "-c", str(config_copy), "--url", neuron.url, "--max-requests", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
