"""hybrid.yaml validation: the example passes, every kind of mistake gets its own clear line."""

from __future__ import annotations

import itertools
import json

import pytest

from toolkit.cli import run
from toolkit.config import CanaryPlan, ConfigError, Curve, load_config, parse_config


def problems_for(data) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "hybrid.yaml")
    return caught.value.problems


def test_example_config_is_valid(example_config):
    assert example_config.name == "bert-classifier"
    assert example_config.variants.neuron.instance_type == "ml.inf2.xlarge"
    assert example_config.initial_weights.gpu == 100


def test_unknown_key_suggests_the_nearest_known_key(example_data):
    example_data["slo"]["p99_latency_msec"] = 100
    assert problems_for(example_data) == ["slo.p99_latency_msec: unknown key; did you mean 'p99_latency_ms'?"]


def test_unknown_top_level_key_suggests_nearest(example_data):
    example_data["canery"] = {}
    assert problems_for(example_data) == ["canery: unknown key; did you mean 'canary'?"]


def test_weights_out_of_range_name_the_field(example_data):
    example_data["initial_weights"] = {"neuron": 120, "gpu": -20}
    lines = problems_for(example_data)
    assert any(line.startswith("initial_weights.neuron: ") and "less than or equal to 100" in line for line in lines)
    assert any(line.startswith("initial_weights.gpu: ") and "greater than or equal to 0" in line for line in lines)


def test_weights_must_sum_to_100(example_data):
    example_data["initial_weights"] = {"neuron": 30, "gpu": 30}
    assert problems_for(example_data) == ["initial_weights: weights must sum to 100, got neuron=30.0 + gpu=30.0"]


def test_unknown_instance_family_suggests_a_known_one(example_data):
    example_data["variants"]["gpu"]["instance_type"] = "ml.g55.xlarge"
    (line,) = problems_for(example_data)
    assert line.startswith("variants.gpu.instance_type: unknown instance family 'g55'")
    assert "did you mean ml.g5.xlarge?" in line


def test_neuron_variant_on_gpu_hardware_is_rejected(example_data):
    example_data["variants"]["neuron"]["instance_type"] = "ml.g5.xlarge"
    (line,) = problems_for(example_data)
    assert line.startswith("variants: variants.neuron must run on Neuron hardware")


def test_gpu_variant_on_neuron_hardware_is_rejected(example_data):
    example_data["variants"]["gpu"]["instance_type"] = "ml.inf2.xlarge"
    (line,) = problems_for(example_data)
    assert "variants.gpu must run on a GPU instance" in line


def test_negative_slo_is_rejected(example_data):
    example_data["slo"]["p99_latency_ms"] = -5
    assert problems_for(example_data) == ["slo.p99_latency_ms: Input should be greater than 0"]


def test_missing_artifact_is_named(example_data):
    del example_data["variants"]["gpu"]["model"]["artifact"]
    (line,) = problems_for(example_data)
    assert line.startswith("variants.gpu.model: missing artifact")


def test_every_problem_is_reported_at_once(example_data):
    example_data["slo"]["p99_latency_ms"] = 0
    example_data["region"] = "moon-1"
    example_data["variants"]["neuron"]["min_count"] = 9
    lines = problems_for(example_data)
    assert len(lines) == 3
    assert {line.split(":")[0] for line in lines} == {"slo.p99_latency_ms", "region", "variants.neuron"}


def test_malformed_yaml_names_line_and_column(write_config):
    path = write_config("name: x\nvariants: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (line,) = caught.value.problems
    assert line.startswith("line 3, column 1: malformed YAML")


def test_missing_file_says_how_to_pass_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert "--config" in caught.value.problems[0]


def test_curve_steps_increase_and_end_at_target():
    steps = CanaryPlan(curve=Curve(kind="exponential", start=5, steps=6)).resolved_steps()
    assert steps[0] == 5 and steps[-1] == 100
    assert all(b > a for a, b in itertools.pairwise(steps))
    assert len(steps) == 6


def test_listed_steps_end_at_target_share():
    assert CanaryPlan(steps=[10, 50, 90], target_neuron_percent=60).resolved_steps() == [10, 50, 60]


def test_steps_must_increase(example_data):
    example_data["canary"] = {"steps": [10, 5]}
    (line,) = problems_for(example_data)
    assert "strictly increasing" in line


def test_validate_cli_prints_one_line_per_problem_and_exits_2(example_data, write_config, capsys):
    example_data["slo"]["p99_latency_ms"] = -1
    example_data["initial_weights"] = {"neuron": 10, "gpu": 10}
    path = write_config(example_data)
    code = run(["validate", "-c", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 2
    assert all(line.startswith(f"error: {path}: ") for line in err)
    assert "Traceback" not in "".join(err)


def test_validate_cli_ok_json(capsys):
    code = run(["validate", "-c", "examples/hybrid.yaml", "--output", "json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is True
    assert document["config"]["variants"]["gpu"]["instance_type"] == "ml.g5.xlarge"


def test_unknown_flag_is_a_one_line_usage_error(capsys):
    code = run(["validate", "--bogus"])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: No such option: --bogus")


def test_config_schema_is_json_schema(capsys):
    assert run(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "hybrid.yaml"
    assert "variants" in schema["properties"]


def test_vpc_ids_are_checked_before_cloudformation_sees_them(example_data):
    example_data["vpc"] = {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_ids": ["sg-0c"]}
    (line,) = problems_for(example_data)
    assert line.startswith("vpc.security_group_ids: not security group ids") and "sg-0c" in line


def test_real_time_variant_cannot_scale_below_one_instance(example_data):
    example_data["variants"]["neuron"]["min_count"] = 0
    (line,) = problems_for(example_data)
    assert line == "variants.neuron.min_count: Input should be greater than or equal to 1"
