"""hybrid benchmark: figures against servers with known delays, the stop rule, cost, write-capacity."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from tests.conftest import EXAMPLE_CONFIG
from tests.toolkit._virtual_clock import VirtualClock
from toolkit.benchmark import (
    format_capacity,
    parse_concurrency,
    parse_urls,
    percentile,
    run_benchmark,
    run_level,
    sagemaker_targets,
    set_capacity_text,
    write_capacity,
)
from toolkit.cli import run
from toolkit.contract_server import ContractServer
from toolkit.errors import UserError
from toolkit.pricing import HOSTING_PRICES_US_EAST_1


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    path = tmp_path / "hybrid.yaml"
    shutil.copy(EXAMPLE_CONFIG, path)
    return path


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = run(argv)
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


# -- the done-when: known delays in, figures out ----------------------------------------------------




def test_benchmark_reports_known_delays_and_prices_capacity_from_the_table(example_config):
    # Real HTTP server and client, virtual clock: the figures must follow exactly from the delays.
    delays = {"neuron": 20.0, "gpu": 40.0}
    clock = VirtualClock()
    with ContractServer("neuron", f"fixed:{delays['neuron']:g}", sleep=clock.sleep) as neuron, \
         ContractServer("gpu", f"fixed:{delays['gpu']:g}", sleep=clock.sleep) as gpu:
        from toolkit.benchmark import HttpTarget

        targets = {"neuron": HttpTarget(neuron.url), "gpu": HttpTarget(gpu.url)}
        report = run_benchmark(example_config, targets, [1], duration_s=60, max_requests=20, timer=clock)
    for name, delay in delays.items():
        result = report.variants[name]
        (level,) = result.levels
        assert (level.requests, level.errors) == (20, 0)
        assert level.p50_ms == pytest.approx(delay, rel=0.10)
        assert level.p99_ms == pytest.approx(delay, rel=0.10)
        assert level.throughput_rps == pytest.approx(1000.0 / delay)
        price = HOSTING_PRICES_US_EAST_1[example_config.variant(name).instance_type]
        assert result.cost_per_1k == pytest.approx(price / (level.throughput_rps * 3600) * 1000, rel=1e-9)
    assert report.comparison()["cheaper"] == "neuron"


def test_cli_benchmark_measures_real_delays_and_prices_them(config_copy, capsys):
    # Wall clock through the CLI. No percentile can read below the server's delay; how close it
    # comes is load-dependent on a shared runner (no timing assertions here): the 10% bound is
    # pinned on the virtual clock above and measured by benchmarks/benchmark_accuracy.py.
    delays = {"neuron": 20.0, "gpu": 40.0}
    with ContractServer("neuron", f"fixed:{delays['neuron']:g}") as neuron, \
         ContractServer("gpu", f"fixed:{delays['gpu']:g}") as gpu:
        code, report, err = run_json(
            ["loadtest", "-c", str(config_copy), "--url", f"neuron={neuron.url},gpu={gpu.url}",
             "--concurrency", "1,4", "--duration", "5", "--max-requests", "8",
             "--latency-threshold-ms", "60000", "--output", "json"],
            capsys,
        )
    assert code == 0, err
    cfg = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for name, delay in delays.items():
        result = report["variants"][name]
        for level in result["levels"]:
            assert level["requests"] == 8 and level["errors"] == 0
            assert delay <= level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"]
        best = max(result["levels"], key=lambda lv: lv["throughput_rps"])
        assert result["best_concurrency"] == best["concurrency"]
        assert result["capacity_rps_per_instance"] == pytest.approx(best["throughput_rps"])
        price = HOSTING_PRICES_US_EAST_1[cfg["variants"][name]["instance_type"]]
        assert result["price_per_hour"] == price
        expected_cost = price / (best["throughput_rps"] * 3600) * 1000
        assert result["cost_per_1k"] == pytest.approx(expected_cost, rel=1e-9)


def test_config_price_override_is_used_for_cost(config_copy, capsys):
    data = yaml.safe_load(config_copy.read_text())
    data["prices"] = {"ml.inf2.xlarge": 3.0}
    config_copy.write_text(yaml.safe_dump(data))
    with ContractServer("neuron", "fixed:5") as neuron:
        code, report, err = run_json(
            ["loadtest", "-c", str(config_copy), "--url", neuron.url, "--variants", "neuron",
             "--concurrency", "1", "--max-requests", "5", "--output", "json"],
            capsys,
        )
    assert code == 0, err
    result = report["variants"]["neuron"]
    assert result["price_per_hour"] == 3.0
    assert result["cost_per_1k"] == pytest.approx(3.0 / (result["capacity_rps_per_instance"] * 3600) * 1000)


def test_ramp_stops_at_the_first_level_whose_p99_exceeds_the_threshold(example_config):
    # One slot: at concurrency 2 requests queue behind each other, so p99 ~ 2 x 30 ms > 50 ms.
    # Virtual clock: only the server's sleeps count, so runner load cannot move the figures.
    clock = VirtualClock()
    with ContractServer("gpu", "fixed:30", capacity=1, sleep=clock.sleep) as gpu:
        from toolkit.benchmark import HttpTarget

        report = run_benchmark(example_config, {"gpu": HttpTarget(gpu.url)}, [1, 2, 4], duration_s=5,
                               max_requests=8, threshold_ms=50, timer=clock)
    result = report.variants["gpu"]
    assert [lv.concurrency for lv in result.levels] == [1, 2]
    assert result.best_concurrency == 1 and "concurrency 2" in result.stopped


def test_errors_above_the_slo_stop_the_ramp_and_leave_no_capacity(example_config):
    from toolkit.benchmark import HttpTarget

    with ContractServer("neuron", "fixed:1", error_rate=1.0) as neuron:
        report = run_benchmark(example_config, {"neuron": HttpTarget(neuron.url)}, [1, 2], 5, max_requests=4)
    result = report.variants["neuron"]
    assert len(result.levels) == 1 and result.levels[0].error_rate == 1.0
    assert result.levels[0].first_error == "RuntimeError: HTTP 500"
    assert result.capacity_rps_per_instance is None and result.cost_per_1k is None


# -- measurement maths with a scripted clock --------------------------------------------------------


class ScriptedTarget:
    """A single-stream target whose requests take scripted times on a fake clock."""

    instances = 1

    def __init__(self, durations_ms: list[float], fail_every: int = 0) -> None:
        self.durations = list(durations_ms)
        self.fail_every = fail_every
        self.now = 0.0
        self.sent = 0

    def timer(self) -> float:
        return self.now

    def ping(self) -> None:
        return None

    def describe(self) -> str:
        return "scripted"

    def new_worker(self):
        def send(_: bytes) -> None:
            self.now += self.durations[self.sent % len(self.durations)] / 1000.0
            self.sent += 1
            if self.fail_every and self.sent % self.fail_every == 0:
                raise RuntimeError("HTTP 500")

        return send


def test_level_figures_follow_from_the_measured_latencies():
    durations = [float(ms) for ms in range(1, 101)]  # 1..100 ms
    target = ScriptedTarget(durations)
    level = run_level(target, b"{}", 1, duration_s=100, max_requests=100, timer=target.timer)
    assert level.requests == 100 and level.errors == 0
    assert level.p50_ms == pytest.approx(percentile(durations, 50)) == pytest.approx(50.5)
    assert level.p99_ms == pytest.approx(99.01)
    assert level.throughput_rps == pytest.approx(100 / (sum(durations) / 1000))
    assert level.stop_reason == "max_requests"


def test_level_is_bounded_by_duration_as_well_as_count():
    target = ScriptedTarget([300.0])
    level = run_level(target, b"{}", 1, duration_s=1.0, max_requests=1000, timer=target.timer)
    assert level.requests == 4 and level.stop_reason == "duration"  # sent at t=0, .3, .6, .9


def test_errors_are_counted_and_kept_out_of_the_latency_percentiles():
    target = ScriptedTarget([10.0, 10.0, 10.0, 500.0], fail_every=4)  # the slow one fails
    level = run_level(target, b"{}", 1, duration_s=100, max_requests=8, timer=target.timer)
    assert (level.errors, level.error_rate) == (2, 0.25)
    assert level.p99_ms == pytest.approx(10.0)


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([0.0, 10.0], 25) == 2.5


# -- SageMaker mode ---------------------------------------------------------------------------------


def test_sagemaker_targets_use_target_variant_and_live_instance_counts(example_config):
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    described = {
        "EndpointName": example_config.name,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{example_config.name}",
        "EndpointStatus": "InService",
        "CreationTime": "2026-11-01T00:00:00Z",
        "LastModifiedTime": "2026-11-01T00:00:00Z",
        "ProductionVariants": [
            {"VariantName": "neuron", "CurrentInstanceCount": 1},
            {"VariantName": "gpu", "CurrentInstanceCount": 2},
        ],
    }
    with Stubber(runtime) as rt_stub, Stubber(sagemaker) as sm_stub:
        sm_stub.add_response("describe_endpoint", described, {"EndpointName": example_config.name})
        for _ in range(1 + 1 + 3):  # the first-request probe, one untimed warm-up request, three measured
            rt_stub.add_response(
                "invoke_endpoint",
                {"Body": StreamingBody(io.BytesIO(b"{}"), 2), "InvokedProductionVariant": "gpu"},
                {"EndpointName": example_config.name, "TargetVariant": "gpu", "Body": ANY,
                 "ContentType": "application/json"},
            )
        targets = sagemaker_targets(example_config, ["gpu"], 1, runtime_client=runtime, sagemaker_client=sagemaker)
        report = run_benchmark(example_config, targets, [1], 60, max_requests=3, mode="sagemaker")
        rt_stub.assert_no_pending_responses()
    result = report.variants["gpu"]
    assert result.instances == 2
    assert result.capacity_rps_per_instance == pytest.approx(result.levels[0].throughput_rps / 2)


# -- write-capacity ---------------------------------------------------------------------------------


def test_write_capacity_edits_only_the_capacity_lines_and_keeps_a_backup(config_copy):
    original = config_copy.read_text()
    backup = write_capacity(config_copy, {"neuron": 123.456, "gpu": 31.0})
    edited = config_copy.read_text()
    assert backup.read_text() == original
    changed = [(a, b) for a, b in zip(original.splitlines(), edited.splitlines(), strict=True) if a != b]
    assert len(changed) == 2
    assert all("capacity_rps_per_instance" in b for _, b in changed)
    from toolkit.config import load_config

    cfg = load_config(config_copy)
    assert (cfg.variants.neuron.capacity_rps_per_instance, cfg.variants.gpu.capacity_rps_per_instance) == (123.5, 31.0)


def test_write_capacity_inserts_a_missing_key_and_keeps_comments():
    text = (
        "# my endpoint\nname: e1\nvariants:\n  neuron:   # inf2\n    instance_type: ml.inf2.xlarge  # cheap\n"
        "    model: {artifact: s3://bucket-a/n.tar.gz}\n  gpu:\n    instance_type: ml.g5.xlarge\n"
        "    capacity_rps_per_instance: 20   # measured last year\n    model: {artifact: s3://bucket-a/g.tar.gz}\n"
        "slo: {p99_latency_ms: 100}\n"
    )
    out = set_capacity_text(set_capacity_text(text, "neuron", 44.0), "gpu", 25.25)
    assert "  neuron:   # inf2\n    capacity_rps_per_instance: 44.0\n    instance_type" in out
    assert "    capacity_rps_per_instance: 25.2   # measured last year\n" in out or \
           "    capacity_rps_per_instance: 25.3   # measured last year\n" in out
    assert out.startswith("# my endpoint\n") and out.endswith("slo: {p99_latency_ms: 100}\n")


def test_write_capacity_refuses_flow_style_and_leaves_the_file_untouched(tmp_path, example_data):
    flow = tmp_path / "flow.yaml"
    flow.write_text(json.dumps(example_data))  # JSON is YAML in flow style
    before = flow.read_text()
    with pytest.raises(UserError, match="by hand"):
        write_capacity(flow, {"neuron": 10.0})
    assert flow.read_text() == before and not (tmp_path / "flow.yaml.bak").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_capacity_refuses_an_invalid_config(tmp_path):
    path = tmp_path / "hybrid.yaml"
    path.write_text("name: x\nvariants:\n  neuron:\n    instance_type: ml.inf2.xlarge\n")
    with pytest.raises(UserError):
        write_capacity(path, {"neuron": 10.0})
    assert not (tmp_path / "hybrid.yaml.bak").exists()


def test_cli_write_capacity_records_the_measured_capacity(config_copy, capsys):
    with ContractServer("neuron", "fixed:2") as neuron, ContractServer("gpu", "fixed:4") as gpu:
        code, report, err = run_json(
            ["loadtest", "-c", str(config_copy), "--url", f"neuron={neuron.url},gpu={gpu.url}",
             "--concurrency", "1", "--max-requests", "10", "--write-capacity", "--output", "json"],
            capsys,
        )
    assert code == 0, err
    from toolkit.config import load_config

    cfg = load_config(config_copy)
    for name in ("neuron", "gpu"):
        measured = report["variants"][name]["capacity_rps_per_instance"]
        assert cfg.variant(name).capacity_rps_per_instance == float(format_capacity(measured))
        assert report["capacity_written"][name] == float(format_capacity(measured))
    assert (config_copy.parent / "hybrid.yaml.bak").read_text() == EXAMPLE_CONFIG.read_text()


# -- plot and bad input --------------------------------------------------------------------------------


def test_plot_writes_a_png(config_copy, tmp_path, capsys):
    png = tmp_path / "bench.png"
    with ContractServer("neuron", "fixed:1") as neuron:
        code, _, err = run_json(
            ["loadtest", "-c", str(config_copy), "--url", neuron.url, "--variants", "neuron", "--concurrency", "1,2",
             "--max-requests", "4", "--plot", str(png), "--output", "json"],
            capsys,
        )
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "1,x"], "--concurrency"),
        (["--concurrency", "0"], "--concurrency"),
        (["--variants", "tpu"], "--variants"),
        (["--url", "ftp://x"], "--url"),
        (["--url", "neuron=http://127.0.0.1:9"], "no server for variant"),
        (["--payload", "{not json"], "--payload"),
        (["--plot", "out.svg", "--url", "http://127.0.0.1:9"], "--plot"),
    ],
)
def test_bad_flags_are_one_line_errors_with_exit_2(config_copy, capsys, args, message):
    code = run(["loadtest", "-c", str(config_copy), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unreachable_server_is_a_one_line_error(config_copy, capsys):
    with ContractServer("neuron", "fixed:1") as server:
        url = server.url
    code = run(["loadtest", "-c", str(config_copy), "--url", url, "--max-requests", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "no container-contract server" in err


def test_flag_parsers():
    assert parse_concurrency("16, 1,4,4") == [1, 4, 16]
    assert parse_urls("http://h:1") == {"neuron": "http://h:1", "gpu": "http://h:1"}
    assert parse_urls("neuron=http://h:1,gpu=http://h:2/") == {"neuron": "http://h:1", "gpu": "http://h:2"}


def test_a_worker_that_cannot_connect_counts_every_request_as_an_error():
    class Unreachable(ScriptedTarget):
        def new_worker(self):
            raise ConnectionRefusedError("connection refused")

    target = Unreachable([1.0])
    level = run_level(target, b"{}", 2, duration_s=100, max_requests=6, timer=target.timer)
    assert (level.requests, level.errors, level.p99_ms) == (6, 6, None)
    assert level.first_error == "ConnectionRefusedError: connection refused"


def test_text_output_shows_both_variants_side_by_side(config_copy, capsys):
    with ContractServer("neuron", "fixed:1") as neuron, ContractServer("gpu", "fixed:2") as gpu:
        code = run(["loadtest", "-c", str(config_copy), "--url", f"neuron={neuron.url},gpu={gpu.url}",
                    "--concurrency", "1", "--max-requests", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Side by side" in out and "ml.inf2.xlarge" in out and "ml.g5.xlarge" in out
    assert "cheaper per inference" in out


def test_progress_bar_path_returns_the_same_report(example_config):
    from toolkit import benchmark as bench
    from toolkit.commands.benchmark_cmds import _run_with_progress

    target = ScriptedTarget([0.0])  # instant requests; the level ends at max_requests
    report = _run_with_progress(bench, example_config, {"neuron": target}, [1, 2], 100, 5, None, b"{}", "url",
                                show=True)
    assert [lv.requests for lv in report.variants["neuron"].levels] == [5, 5]


def test_missing_endpoint_is_an_aws_error(example_config):
    from toolkit.errors import AwsError

    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    with Stubber(sagemaker) as stub:
        stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint")
        with pytest.raises(AwsError, match="DescribeEndpoint"):
            sagemaker_targets(example_config, ["neuron"], 1, runtime_client=runtime, sagemaker_client=sagemaker)
