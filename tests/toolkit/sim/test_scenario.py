"""The scenario format: built-ins load, defaults resolve from the config and price table, bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.errors import UserError
from toolkit.sim.scenario import builtin_dir, builtin_names, load_scenario, parse_scenario, resolve

ROOT = Path(__file__).resolve().parents[3]
REQUIRED = {"steady-high", "steady-low", "diurnal", "spike", "latency-regression", "error-burst",
            "neuron-outage", "noisy-metrics", "delayed-metrics", "demo"}


def test_every_builtin_scenario_loads_and_resolves(example_config):
    assert set(builtin_names()) >= REQUIRED
    for name in builtin_names():
        setup = resolve(load_scenario(name), example_config)
        assert setup.scenario.name == name
        assert setup.hardware["neuron"].instance_type.startswith("ml.inf2")


def test_example_scenarios_are_copies_of_the_builtins():
    for path in (ROOT / "examples" / "scenarios").glob("*.yaml"):
        assert path.read_text() == (builtin_dir() / path.name).read_text(), path.name
    assert {"demo.yaml", "spike.yaml"} <= {p.name for p in (ROOT / "examples" / "scenarios").glob("*.yaml")}


def test_hardware_defaults_come_from_config_and_price_table(make_setup):
    setup = make_setup()
    neuron, gpu = setup.hardware["neuron"], setup.hardware["gpu"]
    assert (neuron.price_per_hour, gpu.price_per_hour) == (0.99, 1.408)
    assert (neuron.capacity_rps_per_instance, gpu.capacity_rps_per_instance) == (40, 20)
    assert neuron.median_ms > gpu.median_ms  # inf2 single-request latency is higher (published 10-20 %)


def test_scenario_hardware_and_config_overrides_win(make_setup):
    setup = make_setup(hardware={"neuron": {"price_per_hour": 0.5, "latency": {"median_ms": 30}}},
                       config={"slo": {"p99_latency_ms": 90}, "canary": {"steps": [50, 100]}})
    assert setup.hardware["neuron"].price_per_hour == 0.5
    assert setup.hardware["neuron"].median_ms == 30
    assert setup.hardware["neuron"].sigma == 0.16  # untouched fields keep the role default
    assert setup.config.slo.p99_latency_ms == 90
    assert setup.config.canary.resolved_steps() == [50, 100]


def test_traffic_shapes():
    diurnal = parse_scenario({"name": "d", "duration_minutes": 10,
                              "traffic": {"diurnal": {"min_rps": 10, "max_rps": 30, "period_minutes": 100,
                                                      "peak_minute": 50}}}).traffic
    assert diurnal.rps_at(50) == pytest.approx(30)
    assert diurnal.rps_at(0) == pytest.approx(10)
    listed = parse_scenario({"name": "l", "duration_minutes": 10,
                             "traffic": {"per_minute": [1, 2, 3], "spikes": [
                                 {"minute": 1, "duration_minutes": 1, "multiplier": 10}]}}).traffic
    assert [listed.rps_at(m) for m in range(5)] == [1, 20, 3, 3, 3]


@pytest.mark.parametrize(("data", "message"), [
    ({"traffic": {"rps": 1, "diurnal": {"min_rps": 1, "max_rps": 2}}}, "exactly one of rps, diurnal, per_minute"),
    ({"traffic": {"rsp": 1}}, "traffic.rsp: unknown key; did you mean 'rps'?"),
    ({"faults": [{"minute": 1, "variant": "neuron", "kind": "errors", "magnitude": 2, "duration_minutes": 1}]},
     "errors fault magnitude is a share in 0..1"),
    ({"faults": [{"minute": 99, "variant": "neuron", "kind": "outage", "duration_minutes": 1}]},
     "faults[0].minute (99) is past duration_minutes"),
    ({"hardware": {"tpu": {}}}, "unknown variant(s) tpu"),
    ({"duration_minutes": 0}, "duration_minutes: Input should be greater than or equal to 1"),
])
def test_bad_scenarios_are_one_line_errors(data, message):
    base = {"name": "bad", "duration_minutes": 30, "traffic": {"rps": 1}}
    base.update(data)
    with pytest.raises(UserError) as error:
        parse_scenario(base, "bad.yaml")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_invalid_config_override_names_the_field(example_config):
    scenario = parse_scenario({"name": "x", "duration_minutes": 5, "traffic": {"rps": 1},
                               "config": {"slo": {"p99_latency_ms": -1}}})
    with pytest.raises(UserError, match=r"slo\.p99_latency_ms"):
        resolve(scenario, example_config)


def test_unknown_scenario_name_lists_the_builtins(tmp_path):
    with pytest.raises(UserError, match=r"built-in: .*demo"):
        load_scenario(tmp_path / "nope.yaml")


def test_malformed_yaml_is_a_user_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="malformed YAML"):
        load_scenario(path)


def test_scenario_instance_type_becomes_the_endpoints_instance_type(make_setup):
    setup = make_setup(hardware={"neuron": {"instance_type": "ml.inf2.8xlarge"}})
    assert setup.config.variants.neuron.instance_type == "ml.inf2.8xlarge"
    assert setup.hardware["neuron"].price_per_hour == 2.36
