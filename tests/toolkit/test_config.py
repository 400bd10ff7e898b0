"""hybrid.yaml validation: the example passes, every kind of mistake gets its own clear line."""

from __future__ import annotations

import copy
import itertools
import json
import re

import pytest
import yaml

from tests.conftest import EXAMPLE_CONFIG
from toolkit.cli import run
from toolkit.config import CanaryPlan, ConfigError, Curve, load_config, parse_config

EXAMPLE_TEXT = EXAMPLE_CONFIG.read_text()


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
    assert line.startswith("variants.neuron.instance_type: the neuron variant must run on Neuron hardware")


def test_gpu_variant_on_neuron_hardware_is_rejected(example_data):
    example_data["variants"]["gpu"]["instance_type"] = "ml.inf2.xlarge"
    (line,) = problems_for(example_data)
    assert line.startswith("variants.gpu.instance_type: the gpu variant must run on a GPU instance")


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
    assert line.startswith("malformed YAML at column 1")
    assert caught.value.lines()[0].startswith(f"{path}:3: malformed YAML")


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
    assert all(line.startswith(f"error: {path}:") for line in err)
    assert "Traceback" not in "".join(err)


def test_validate_cli_ok_json(capsys):
    code = run(["validate", "-c", "examples/hybrid.yaml", "--output", "json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is True and document["ok"] is True
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


# ------------------------------------------------------------------ strict loading: lines and duplicates


def load_problems(path) -> list[str]:
    """`file:line: path: message` lines as the CLI prints them."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.lines()


def test_duplicate_key_is_rejected_naming_both_lines(example_data, write_config):
    text = yaml.safe_dump(example_data, sort_keys=False)
    text = text.replace("  p99_latency_ms: 150", "  p99_latency_ms: 150\n  p99_latency_ms: 900")
    path = write_config(text)
    first = next(i for i, line in enumerate(text.splitlines(), 1) if "p99_latency_ms: 150" in line)
    (line,) = load_problems(path)
    assert line == (f"{path}:{first + 1}: slo.p99_latency_ms: duplicate key: set at line {first} "
                    f"and again at line {first + 1}; keep one")


def test_yaml_merge_keys_may_override_without_being_duplicates(example_data, write_config):
    text = yaml.safe_dump(example_data, sort_keys=False).replace(
        "slo:\n", "slo:\n  <<: {max_error_rate: 0.05}\n", 1)
    assert load_config(write_config(text)).slo.max_error_rate == example_data["slo"]["max_error_rate"]


def test_every_validation_error_carries_the_line_of_its_key(write_config):
    text = (EXAMPLE_TEXT
            .replace("p99_latency_ms: 150", "p99_latency_ms: -1")
            .replace("max_count: 6", "max_count: 0")
            .replace("  max_error_rate:", "  max_eror_rate:"))
    path = write_config(text)
    lines = load_problems(path)

    def line_of(fragment: str) -> int:
        return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)

    assert f"{path}:{line_of('p99_latency_ms: -1')}: slo.p99_latency_ms: Input should be greater than 0" in lines
    assert any(line.startswith(f"{path}:{line_of('max_count: 0')}: variants.neuron.max_count: ") for line in lines)
    assert any(line.startswith(f"{path}:{line_of('max_eror_rate')}: slo.max_eror_rate: unknown key") for line in lines)


def test_a_rule_over_a_section_points_at_the_key_it_names(write_config):
    text = EXAMPLE_TEXT.replace("    min_count: 1\n    max_count: 6", "    min_count: 9\n    max_count: 6", 1)
    path = write_config(text)
    (line,) = load_problems(path)
    min_line = next(i for i, line in enumerate(text.splitlines(), 1) if "min_count: 9" in line)
    assert line.startswith(f"{path}:{min_line}: variants.neuron: min_count (9) is above max_count (6)")


def test_missing_required_key_points_at_its_section(example_data, write_config):
    del example_data["variants"]["gpu"]["instance_type"]
    path = write_config(example_data)
    (line,) = load_problems(path)
    gpu_line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.strip() == "gpu:")
    assert line == f"{path}:{gpu_line}: variants.gpu.instance_type: required field is missing"


# ------------------------------------------------------------------ SLO sanity, ARNs, compile URIs


@pytest.mark.parametrize(("value", "hint"), [(0.15, "in seconds?"), (0.999, "in seconds?"),
                                             (60_001, "in ms?"), (150_000, "in ms?")])
def test_p99_outside_one_ms_to_sixty_seconds_asks_about_the_unit(example_data, value, hint):
    example_data["slo"]["p99_latency_ms"] = value
    (line,) = problems_for(example_data)
    assert line.startswith("slo.p99_latency_ms: ") and hint in line


@pytest.mark.parametrize("value", [1, 150, 60_000])
def test_p99_within_one_ms_to_sixty_seconds_is_accepted(example_data, value):
    example_data["slo"]["p99_latency_ms"] = value
    assert parse_config(example_data).slo.p99_latency_ms == value


PACKAGE = "arn:aws:sagemaker:{region}:{account}:model-package/bert-classifier/3"


def _use_package(data, region: str, account: str = "111122223333") -> None:
    model = data["variants"]["gpu"]["model"]
    model.pop("artifact")
    model["model_package_arn"] = PACKAGE.format(region=region, account=account)


def test_model_package_from_another_region_is_rejected(example_data):
    _use_package(example_data, "eu-west-1")
    (line,) = problems_for(example_data)
    assert line.startswith("variants.gpu.model.model_package_arn: the package is in eu-west-1, the endpoint in us-east-1")


def test_model_package_from_another_account_is_rejected_when_the_config_names_one(example_data):
    _use_package(example_data, "us-east-1", account="999988887777")
    assert parse_config(copy.deepcopy(example_data)).variants.gpu.model.model_package_arn  # no account: fine
    example_data["account"] = "111122223333"
    (line,) = problems_for(example_data)
    assert line.startswith("variants.gpu.model.model_package_arn: the package belongs to account 999988887777")


def test_model_package_in_the_config_region_and_account_is_accepted(example_data):
    _use_package(example_data, "us-east-1", account="111122223333")
    example_data["account"] = "111122223333"
    assert parse_config(example_data).variants.gpu.model.model_package_arn.endswith("/3")


def test_package_region_error_carries_the_arn_line(example_data, write_config):
    _use_package(example_data, "eu-west-1")
    path = write_config(example_data)
    arn_line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "model_package_arn" in t)
    (line,) = load_problems(path)
    assert line.startswith(f"{path}:{arn_line}: variants.gpu.model.model_package_arn: the package is in eu-west-1")


@pytest.mark.parametrize("backend", ["neo", "container"])
def test_compile_source_without_s3_is_caught_at_validate(example_data, backend):
    example_data["compile"] = {"backend": backend, "source_artifact": "my-bucket/model.tar.gz"}
    (line,) = problems_for(example_data)
    assert line.startswith("compile.source_artifact: must be an s3://bucket/key URI")


def test_local_backend_may_compile_a_local_file(example_data):
    example_data["compile"] = {"backend": "local", "source_artifact": "build/model.tar.gz"}
    assert parse_config(example_data).compile.source_artifact == "build/model.tar.gz"


def test_compile_output_must_be_s3(example_data):
    example_data["compile"] = {"output_s3_uri": "/tmp/out"}
    (line,) = problems_for(example_data)
    assert line.startswith("compile.output_s3_uri: must be an s3://bucket/prefix URI")


# ------------------------------------------------------------------ --output json on errors


def test_validate_json_error_is_a_json_object_on_stdout_and_lines_on_stderr(write_config, capsys):
    text = EXAMPLE_TEXT.replace("p99_latency_ms: 150", "p99_latency_ms: 0.15")
    path = write_config(text)
    code = run(["validate", "-c", str(path), "--output", "json"])
    captured = capsys.readouterr()
    assert code == 2
    document = json.loads(captured.out)
    assert document["ok"] is False and document["exit_code"] == 2
    (error,) = document["errors"]
    p99_line = next(i for i, t in enumerate(text.splitlines(), 1) if "p99_latency_ms: 0.15" in t)
    assert error["file"] == str(path) and error["line"] == p99_line and error["path"] == "slo.p99_latency_ms"
    assert "in seconds?" in error["message"]
    assert captured.err.strip() == f"error: {error['text']}"


LEAF_LINES = [n for n, text in enumerate(EXAMPLE_TEXT.splitlines(), 1)
              if re.match(r"^\s*[a-z_][a-z0-9_]*:\s*[^\s#]", text)]


@pytest.mark.parametrize("number", LEAF_LINES)
def test_any_setting_of_the_example_given_twice_is_named_with_both_lines(write_config, number):
    lines = EXAMPLE_TEXT.splitlines()
    key = lines[number - 1].split(":")[0].strip()
    text = "\n".join([*lines[:number], lines[number - 1], *lines[number:]]) + "\n"
    (problem,) = load_problems(write_config(text))
    assert problem.startswith(f"{write_config(text)}:{number + 1}: ")
    assert f".{key}: duplicate key" in problem or problem.split(":")[2].strip() == key
    assert f"set at line {number} and again at line {number + 1}" in problem
