"""hybrid plan: the projection (pure, with invariants) and the command on CSV, scenario and CloudWatch traffic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.cli import run
from toolkit.plan import HOURS_PER_MONTH, Sizing, instances_for, project, split_minute

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "hybrid.yaml")
NEURON = Sizing("ml.inf2.xlarge", 0.99, 1, 6, 1800, 40)
GPU = Sizing("ml.g5.xlarge", 1.408, 1, 8, 900, 20)


def test_sixty_requests_per_second_on_the_example_sizing_pays_with_exact_figures():
    plan = project([3600.0] * 120, NEURON, GPU, engineering_cost=12_000)
    # all-GPU: 3600/min over a 900 target = 4 g5; hybrid: 2 inf2 (1800/min each) + the warm gpu floor.
    assert plan.all_gpu_monthly == pytest.approx(4 * 1.408 * HOURS_PER_MONTH)
    assert plan.hybrid_monthly == pytest.approx((2 * 0.99 + 1.408) * HOURS_PER_MONTH)
    assert plan.savings_monthly == pytest.approx(plan.all_gpu_monthly - plan.hybrid_monthly)
    assert plan.break_even_months == pytest.approx(12_000 / plan.savings_monthly)
    assert plan.pays and plan.verdict.startswith("Pays")


def test_a_fifth_of_a_request_per_second_does_not_pay_and_says_so():
    plan = project([12.0] * 1440, NEURON, GPU, engineering_cost=12_000)
    assert not plan.pays and plan.break_even_months is None and plan.savings_monthly < 0
    assert plan.verdict.startswith("Does not pay") and "warm gpu floor" in plan.verdict


def test_savings_recovered_after_the_horizon_do_not_pay():
    plan = project([3600.0] * 60, NEURON, GPU, engineering_cost=1_000_000, horizon_months=12)
    assert plan.savings_monthly > 0 and plan.break_even_months > 12
    assert not plan.pays and plan.verdict.startswith("Does not pay within 12 months")


def test_capacity_binds_when_it_is_below_the_autoscaling_target():
    slow = Sizing("ml.g5.xlarge", 1.408, 1, 8, 900, 5)  # 5 req/s = 300/min < the 900 target
    assert instances_for(900, slow) == 3 and instances_for(0, slow) == 1 and instances_for(0, slow, floor=False) == 0


def test_what_neuron_cannot_take_at_max_count_goes_to_gpu():
    small = Sizing("ml.inf2.xlarge", 0.99, 1, 2, 1800, 40)
    s = split_minute(6000, small, GPU, 1.0)
    assert s.neuron_instances == 2 and s.neuron_requests == 3600 and s.gpu_requests == 2400
    assert s.gpu_instances == 3


sizings = st.builds(
    Sizing, st.just("ml.x.xlarge"), st.floats(0.1, 20), st.integers(1, 3), st.integers(3, 10),
    st.floats(10, 5000), st.floats(0.5, 200),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 50_000), min_size=1, max_size=200), sizings, sizings, st.floats(1, 100))
def test_the_split_always_serves_all_traffic_and_never_costs_less_than_the_floors(traffic, neuron, gpu, share):
    plan = project(traffic, neuron, gpu, neuron_share_percent=share)
    for requests in traffic:
        s = split_minute(requests, neuron, gpu, share / 100.0)
        assert s.neuron_requests + s.gpu_requests == pytest.approx(requests)
        assert s.neuron_requests <= s.neuron_instances * neuron.per_instance_per_minute + 1e-6
        assert s.gpu_requests <= s.gpu_instances * gpu.per_instance_per_minute + 1e-6
        assert s.gpu_instances >= gpu.min_count and s.neuron_instances >= neuron.min_count
    floors = (gpu.min_count * gpu.price_per_hour + neuron.min_count * neuron.price_per_hour) * HOURS_PER_MONTH
    assert plan.hybrid_monthly >= floors - 1e-6
    assert plan.all_gpu_monthly >= gpu.min_count * gpu.price_per_hour * HOURS_PER_MONTH - 1e-6
    assert plan.savings_monthly == pytest.approx(plan.all_gpu_monthly - plan.hybrid_monthly)
    assert plan.pays == (plan.savings_monthly > 0 and plan.break_even_months <= plan.horizon_months)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 20_000), min_size=1, max_size=100), st.floats(1, 5))
def test_more_traffic_never_lowers_the_all_gpu_cost(traffic, factor):
    low = project(traffic, NEURON, GPU)
    high = project([t * factor for t in traffic], NEURON, GPU)
    assert high.all_gpu_monthly >= low.all_gpu_monthly - 1e-9


# ------------------------------------------------------------------------------------------------
# The command


def _plan(capsys, *args: str) -> tuple[int, dict, str]:
    code = run(["plan", "-c", EXAMPLE, "--output", "json", *args])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else {}), captured.err


def test_plan_of_a_low_traffic_csv_says_it_does_not_pay(tmp_path, capsys):
    csv = tmp_path / "traffic.csv"
    csv.write_text("timestamp,rps\n" + "".join(f"2026-01-01T00:{m:02d}:00Z,0.2\n" for m in range(60)))
    code, data, _ = _plan(capsys, "--traffic", str(csv), "--engineering-days", "10", "--day-rate", "800")
    assert code == 0
    assert data["mean_rps"] == pytest.approx(0.2) and data["pays"] is False
    assert data["verdict"].startswith("Does not pay") and data["engineering_cost"] == 8000
    assert data["sizing"]["gpu"]["price_source"].startswith("SageMaker real-time hosting")
    assert data["traffic_source"] == f"CSV {csv}"


def test_plan_of_the_demo_scenario_pays_and_writes_a_plot(tmp_path, capsys):
    plot = tmp_path / "plan.png"
    code, data, _ = _plan(capsys, "--scenario", "demo", "--engineering-days", "15", "--day-rate", "800",
                          "--plot", str(plot))
    assert code == 0 and data["pays"] is True and data["break_even_months"] > 0
    assert data["all_gpu_monthly"] > data["hybrid_monthly"]
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_a_bad_csv_value_is_bad_input_with_its_line(tmp_path, capsys):
    csv = tmp_path / "traffic.csv"
    csv.write_text("invocations\n10\nten\n")
    code, _, err = _plan(capsys, "--traffic", str(csv))
    assert code == 2 and f"{csv}:3:" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--traffic", "a.csv", "--scenario", "demo"], "not both"),
    (["--scenario", "demo", "--engineering-days", "5"], "go together"),
])
def test_conflicting_options_are_bad_input(capsys, args, message):
    code, _, err = _plan(capsys, *args)
    assert code == 2 and message in err


def test_plan_reads_the_endpoints_invocations_from_cloudwatch(capsys):
    from moto import mock_aws

    with mock_aws():
        import boto3

        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        dims = [{"Name": "EndpointName", "Value": "bert-classifier"}, {"Name": "VariantName", "Value": "gpu"}]
        cloudwatch.put_metric_data(Namespace="AWS/SageMaker", MetricData=[
            {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": now - timedelta(minutes=m), "Value": 3600.0}
            for m in range(1, 31)])
        code, data, err = _plan(capsys, "--days", "1")
    assert code == 0, err
    assert data["mean_rps"] == pytest.approx(60.0) and data["minutes_observed"] == 30
    assert data["pays"] is True  # no engineering cost given: pays from the first month
    assert data["traffic_source"].startswith("CloudWatch AWS/SageMaker Invocations of bert-classifier")


def test_plan_without_any_invocations_in_cloudwatch_is_bad_input(capsys):
    from moto import mock_aws

    with mock_aws():
        code, _, err = _plan(capsys, "--days", "1")
    assert code == 2 and "no Invocations for endpoint bert-classifier" in err
