"""Output parity: the comparators (pure), the local deterministic model, and `hybrid parity` against it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import EXAMPLE_CONFIG
from toolkit.cli import run
from toolkit.config import Parity
from toolkit.contract_server import ContractServer
from toolkit.errors import UserError
from toolkit.parity import (
    PathError,
    comparator,
    flatten_numbers,
    get_path,
    safe_compare,
    summarise,
    vector_diff,
)
from toolkit.parity_run import run_parity
from toolkit.toy_model import LABELS, ToyClassifier, answer, to_bf16

WORDS = ["great", "fast", "cheap", "slow", "awful", "love", "hate", "fine", "broken", "works", "again", "never", "always", "price", "support", "quality", "refund", "late", "early", "happy", "sad", "ok", "neutral", "table", "chair", "model", "latency"]


def samples(path: Path, count: int = 60) -> Path:
    lines = []
    for i in range(count):
        text = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 5))
        lines.append(json.dumps({"inputs": text}))
    path.write_text("\n".join(lines) + "\n")
    return path


# -- comparators -------------------------------------------------------------------------------------


def test_json_paths_reach_keys_and_indices():
    data = {"predictions": [{"score": 0.5, "label": "A"}], "x": 1}
    assert get_path(data, "predictions[0].score") == 0.5
    assert get_path(data, "predictions.0.label") == "A"
    assert get_path(data, None) is data and get_path(data, "$") is data
    with pytest.raises(PathError):
        get_path(data, "predictions[3]")
    with pytest.raises(PathError):
        get_path(data, "y")


def test_scores_compare_max_abs_rel_and_cosine():
    cfg = Parity(comparator="scores", scores_path="scores", max_abs_diff=0.01, max_rel_diff=0.05, min_cosine=0.99)
    compare = comparator(cfg)
    same = compare({"scores": [0.2, 0.8]}, {"scores": [0.2, 0.8]})
    assert same.ok and same.diff["max_abs_diff"] == 0 and same.diff["cosine"] == pytest.approx(1)
    close = compare({"scores": [0.205, 0.795]}, {"scores": [0.2, 0.8]})
    assert close.ok and close.diff["max_abs_diff"] == pytest.approx(0.005)
    assert close.diff["max_rel_diff"] == pytest.approx(0.025)
    rel_breach = compare({"scores": [0.0095, 0.99]}, {"scores": [0.0005, 0.99]})  # abs 0.009 but rel 18x
    assert not rel_breach.ok
    far = compare({"scores": [0.8, 0.2]}, {"scores": [0.2, 0.8]})
    assert not far.ok and far.severity > close.severity


def test_hf_style_label_score_lists_compare_by_label():
    assert flatten_numbers([{"label": "B", "score": 0.3}, {"label": "A", "score": 0.7}]) == [0.7, 0.3]


def test_labels_agreement_and_top_k():
    cfg = Parity(comparator="labels", label_path="label")
    assert comparator(cfg)({"label": "A"}, {"label": "A"}).ok
    assert not comparator(cfg)({"label": "B"}, {"label": "A"}).ok
    top = Parity(comparator="labels", label_path="label", top_k=2, top_k_path="ranked")
    gpu = {"label": "A", "ranked": [{"label": "A"}, {"label": "B"}, {"label": "C"}]}
    assert comparator(top)({"label": "B"}, gpu).ok
    assert not comparator(top)({"label": "C"}, gpu).ok


def test_numbers_at_paths_with_their_own_tolerance():
    cfg = Parity(comparator="numbers", paths={"a": 0.1, "b.c": 0.001})
    compare = comparator(cfg)
    assert compare({"a": 1.05, "b": {"c": 2.0}}, {"a": 1.0, "b": {"c": 2.0}}).ok
    result = compare({"a": 1.0, "b": {"c": 2.01}}, {"a": 1.0, "b": {"c": 2.0}})
    assert not result.ok and result.diff["b.c"]["abs_diff"] == pytest.approx(0.01)


def test_text_exact_match():
    cfg = Parity(comparator="text", text_path="generated_text")
    assert comparator(cfg)({"generated_text": "hi"}, {"generated_text": "hi"}).ok
    assert not comparator(cfg)({"generated_text": "hi"}, {"generated_text": "hi!"}).ok


def agree_on_sign(neuron, gpu):  # a user comparator, imported by path in the test below
    return {"ok": (neuron["v"] >= 0) == (gpu["v"] >= 0), "severity": abs(neuron["v"] - gpu["v"])}


def test_a_user_function_by_import_path():
    cfg = Parity(comparator="function", function="tests.toolkit.test_parity:agree_on_sign")
    assert comparator(cfg)({"v": 1}, {"v": 2}).ok
    assert not comparator(cfg)({"v": -1}, {"v": 2}).ok
    with pytest.raises(UserError, match="cannot import"):
        comparator(Parity(comparator="function", function="no.such.module:f"))


def test_an_output_of_the_wrong_shape_disagrees_with_the_reason():
    compare = comparator(Parity(comparator="scores", scores_path="scores"))
    result = safe_compare(compare, {"scores": [1.0]}, {"scores": [1.0, 2.0]})
    assert not result.ok and "neuron gave 1 numbers" in result.diff["error"]
    assert not safe_compare(compare, {"other": 1}, {"scores": [1.0]}).ok


def test_summary_passes_at_the_minimum_agreement():
    cfg = Parity(min_agreement=0.75)
    compare = comparator(Parity(comparator="labels"))
    results = [compare({"label": a}, {"label": "A"}) for a in "AAAB"]
    summary = summarise(results, cfg)
    assert (summary.agreed, summary.agreement, summary.passed) == (3, 0.75, True)
    assert not summarise(results[1:], cfg).passed  # 2/3 < 0.75
    assert not summarise([], cfg).passed


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20))
def test_a_vector_agrees_with_itself(values):
    d = vector_diff(values, values)
    assert d["max_abs_diff"] == 0 and d["max_rel_diff"] == 0
    assert d["cosine"] == pytest.approx(1.0) or not any(values)


# -- the local model -----------------------------------------------------------------------------------


def test_bf16_rounding_keeps_8_bits_of_mantissa():
    import numpy as np

    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 2**-7, 3.14159265], dtype=np.float32)
    assert to_bf16(x).tolist() == [1.0, 1.0, 1.0 + 2**-7, 3.140625]


def test_the_model_is_deterministic_and_the_neuron_flavour_is_close_but_not_equal():
    gpu, gpu_again, neuron = ToyClassifier("gpu"), ToyClassifier("gpu"), ToyClassifier("neuron")
    text = "the support was great and the price fine"
    a, b, c = gpu.predict(text), gpu_again.predict(text), neuron.predict(text)
    assert a == b and a["label"] in LABELS and sum(a["scores"]) == pytest.approx(1)
    assert a["scores"] != c["scores"]
    assert max(abs(x - y) for x, y in zip(a["scores"], c["scores"], strict=True)) < 0.01
    assert [p["label"] for p in answer(gpu, b'{"inputs": ["great", "awful"]}')] == \
           [gpu.predict("great")["label"], gpu.predict("awful")["label"]]
    with pytest.raises(UserError):
        answer(gpu, b'{"inputs": 3}')


# -- hybrid parity: the done-when ----------------------------------------------------------------------


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    path = tmp_path / "hybrid.yaml"
    shutil.copy(EXAMPLE_CONFIG, path)
    return path


def servers(perturb: float = 0.0) -> tuple[ContractServer, ContractServer]:
    no_sleep = lambda _: None  # noqa: E731
    return (ContractServer("neuron", "fixed:0", sleep=no_sleep, model=ToyClassifier("neuron", perturb)),
            ContractServer("gpu", "fixed:0", sleep=no_sleep, model=ToyClassifier("gpu")))


def test_parity_passes_against_the_bf16_flavour_at_the_default_tolerance(config_copy, tmp_path, capsys):
    neuron, gpu = servers()
    with neuron, gpu:
        code = run(["parity", "-c", str(config_copy), "--inputs", str(samples(tmp_path / "s.jsonl")),
                    "--url", f"neuron={neuron.url},gpu={gpu.url}", "--output", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    summary = report["summary"]
    assert summary["compared"] == 60 and summary["agreement"] == 1.0 and summary["passed"]
    assert 0 < summary["aggregate"]["worst_max_abs_diff"] <= Parity().max_abs_diff  # bf16: small, not zero
    assert summary["aggregate"]["min_cosine"] >= Parity().min_cosine


def test_parity_fails_with_exit_1_against_a_perturbed_model_naming_the_worst_inputs(config_copy, tmp_path, capsys):
    neuron, gpu = servers(perturb=0.05)
    with neuron, gpu:
        code = run(["parity", "-c", str(config_copy), "--inputs", str(samples(tmp_path / "s.jsonl")),
                    "--url", f"neuron={neuron.url},gpu={gpu.url}", "--output", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["summary"]["passed"]
    worst = report["worst"]
    assert len(worst) == Parity().worst and not worst[0]["ok"]
    assert worst[0]["diff"]["max_abs_diff"] > Parity().max_abs_diff and "inputs" in worst[0]["input"]
    assert worst[0]["diff"]["max_abs_diff"] >= worst[-1]["diff"]["max_abs_diff"]
    # and for people: the table of worst inputs and the verdict
    neuron, gpu = servers(perturb=0.05)
    with neuron, gpu:
        assert run(["parity", "-c", str(config_copy), "--inputs", str(tmp_path / "s.jsonl"),
                    "--url", f"neuron={neuron.url},gpu={gpu.url}"]) == 1
    out = capsys.readouterr().out
    assert "Worst inputs" in out and "parity: FAIL" in out


def test_labels_comparator_from_the_config_tolerates_the_perturbation_it_is_blind_to(config_copy, tmp_path, capsys):
    data = yaml.safe_load(config_copy.read_text())
    data["parity"] = {"comparator": "labels", "min_agreement": 0.5}
    config_copy.write_text(yaml.safe_dump(data))
    neuron, gpu = servers(perturb=0.05)
    with neuron, gpu:
        code = run(["parity", "-c", str(config_copy), "--inputs", str(samples(tmp_path / "s.jsonl")),
                    "--url", f"neuron={neuron.url},gpu={gpu.url}", "--output", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["comparator"] == "labels" and report["summary"]["agreement"] >= 0.5


def test_the_run_is_bounded_in_count_and_time(example_config, tmp_path):
    bodies = [b'{"inputs": "a"}'] * 10
    calls: list[bytes] = []

    def invoker(body: bytes):
        calls.append(body)
        return {"scores": [1.0]}

    now = [0.0]

    def timer() -> float:
        now[0] += 1.0  # every look at the clock: one second later
        return now[0]

    settings = example_config.parity.model_copy(update={"max_seconds": 4.5})
    report = run_parity(example_config, {"neuron": invoker, "gpu": invoker}, bodies, "url", settings, timer=timer)
    assert report.stopped == "max_seconds" and report.inputs < 10
    from toolkit.parity_run import read_inputs

    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(['{"inputs": "x"}'] * 30) + "\n\n")
    assert len(read_inputs(path, 7)) == 7


def test_a_failing_variant_counts_as_disagreement_not_a_crash(example_config):
    def broken(_: bytes):
        raise RuntimeError("HTTP 500")

    report = run_parity(example_config, {"neuron": broken, "gpu": lambda _: {"scores": [1.0]}},
                        [b'{"inputs": "a"}'], "url")
    assert report.summary.agreed == 0 and report.worst[0].diff["error"]["neuron"] == "RuntimeError: HTTP 500"
    assert report.to_dict()["worst"][0]["severity"] is None and math.isinf(report.worst[0].severity)


@pytest.mark.parametrize(
    ("lines", "args", "message"),
    [
        ("not json\n", [], "not a JSON document"),
        ("\n", [], "no inputs"),
        ('{"inputs": "a"}\n', ["--max-inputs", "0"], "--max-inputs"),
        ('{"inputs": "a"}\n', ["--url", "ftp://x"], "--url"),
    ],
)
def test_bad_input_is_a_one_line_error_with_exit_2(config_copy, tmp_path, capsys, lines, args, message):
    path = tmp_path / "s.jsonl"
    path.write_text(lines)
    code = run(["parity", "-c", str(config_copy), "--inputs", str(path), "--url", "http://127.0.0.1:9", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_parity_config_requires_settings_for_numbers_and_function(example_data):
    from toolkit.config import ConfigError, load_config

    for section in ({"comparator": "numbers"}, {"comparator": "function"}, {"comparatr": "scores"}):
        data = {**example_data, "parity": section}
        path = Path(__file__).parent / "_tmp_parity.yaml"
        try:
            path.write_text(yaml.safe_dump(data))
            with pytest.raises(ConfigError):
                load_config(path)
        finally:
            path.unlink(missing_ok=True)


def test_sagemaker_mode_sends_each_input_to_each_variant_with_target_variant(example_config):
    import io

    import boto3
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from toolkit.parity_run import sagemaker_invokers

    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    body = b'{"inputs": "a"}'
    outputs = {"neuron": b'{"scores": [0.501, 0.499]}', "gpu": b'{"scores": [0.5, 0.5]}'}
    with Stubber(runtime) as stub:
        for variant in ("neuron", "gpu"):
            stub.add_response(
                "invoke_endpoint",
                {"Body": StreamingBody(io.BytesIO(outputs[variant]), len(outputs[variant]))},
                {"EndpointName": example_config.name, "TargetVariant": variant, "Body": body,
                 "ContentType": "application/json", "Accept": "application/json"},
            )
        report = run_parity(example_config, sagemaker_invokers(example_config, runtime), [body], "sagemaker")
        stub.assert_no_pending_responses()
    assert report.summary.passed and report.worst[0].diff["max_abs_diff"] == pytest.approx(0.001)
