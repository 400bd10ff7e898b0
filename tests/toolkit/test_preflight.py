"""hybrid check: a BERT-class model passes; an unsupported task fails naming the table's source; unknown
architectures warn with what to try; shapes and bad input."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.conftest import EXAMPLE_CONFIG
from toolkit.cli import run
from toolkit.errors import UserError
from toolkit.local.server import patched_mock_aws
from toolkit.preflight import SOURCE, SUPPORTED, assess, head_task, read_model_config

BERT = {  # bert-base-uncased fine-tuned for classification (the example config's model)
    "architectures": ["BertForSequenceClassification"], "model_type": "bert", "max_position_embeddings": 512,
    "torch_dtype": "float32", "hidden_size": 768, "num_hidden_layers": 12, "vocab_size": 30522,
}
WHISPER = {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
           "max_source_positions": 1500, "torch_dtype": "float32"}
GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_positions": 1024}


def tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def check(tmp_path: Path, model_config: dict[str, Any], capsys: pytest.CaptureFixture[str], *extra: str,
          config: Path = EXAMPLE_CONFIG) -> tuple[int, dict[str, Any] | None, str]:
    model = tmp_path / "model.tar.gz"
    tarball(model, {"pytorch_model.bin": b"\0" * 64, "config.json": json.dumps(model_config).encode()})
    code = run(["check", "-c", str(config), "--model", str(model), "--output", "json", *extra])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out else None), captured.err


def test_a_bert_class_model_passes(tmp_path, capsys):
    code, report, err = check(tmp_path, BERT, capsys)
    assert code == 0, err
    assert report["verdict"] == "ok" and report["task"] == "text-classification"
    assert {f["check"] for f in report["findings"]} == {"architecture", "task", "sequence_length", "dtype"}


def test_an_unsupported_architecture_for_the_task_fails_with_the_tables_source(tmp_path, capsys):
    # The example config serves text-classification (HF_TASK); Whisper is listed for speech recognition only.
    code, report, _ = check(tmp_path, WHISPER, capsys)
    assert code == 1
    (failure,) = [f for f in report["findings"] if f["level"] == "failure"]
    assert failure["check"] == "task" and "automatic-speech-recognition" in failure["message"]
    assert SOURCE in failure["message"] and report["table_source"] == SOURCE and report["table_as_of"]


def test_an_unknown_architecture_is_a_warning_naming_what_to_try(tmp_path, capsys):
    code, report, _ = check(tmp_path, GPT2, capsys)
    assert code == 0 and report["verdict"] == "warning"
    (warning,) = [f for f in report["findings"] if f["check"] == "architecture"]
    assert warning["level"] == "warning" and "optimum-cli export neuron" in warning["message"]
    assert "torch_neuronx.trace" in warning["message"]


def test_a_sequence_length_beyond_the_models_positions_fails(tmp_path, capsys):
    code, report, _ = check(tmp_path, {**BERT, "max_position_embeddings": 64}, capsys)
    assert code == 1
    assert any(f["check"] == "sequence_length" and "<= 64" in f["message"] for f in report["findings"])


def test_quantized_weights_warn(example_config):
    report = assess({**BERT, "quantization_config": {"bits": 8}}, example_config, "x")
    assert report.verdict == "warning"


def test_text_output_names_the_table_source(tmp_path, capsys):
    model = tmp_path / "config.json"
    model.write_text(json.dumps(WHISPER))
    code = run(["check", "-c", str(EXAMPLE_CONFIG), "--model", str(model)])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL" in out and "optimum-neuron documentation" in out and "not supported" in out


def test_the_task_comes_from_the_architecture_head_without_hf_task(tmp_path, capsys):
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for name in ("neuron", "gpu"):
        data["variants"][name]["model"]["environment"] = {}
    config = tmp_path / "hybrid.yaml"
    config.write_text(yaml.safe_dump(data))
    code, report, _ = check(tmp_path, {**BERT, "architectures": ["BertForQuestionAnswering"]}, capsys,
                            config=config)
    assert code == 0 and report["task"] == "question-answering"
    assert head_task(["WhisperForConditionalGeneration"], "whisper") == "automatic-speech-recognition"
    assert head_task(["Wav2Vec2ForSequenceClassification"], "wav2vec2") == "audio-classification"


def test_every_table_row_lists_tasks():
    assert all(name and tasks for name, tasks in SUPPORTED.values())


# -- where config.json comes from --------------------------------------------------------------------


def test_reads_config_json_from_a_directory_and_from_s3(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(BERT))
    assert read_model_config(str(tmp_path)) == BERT
    archive = tarball(tmp_path / "m.tar.gz", {"model/config.json": json.dumps(BERT).encode(),
                                              "code/config.json": b"{}"})
    with patched_mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        s3.put_object(Bucket="models", Key="bert/model.tar.gz", Body=archive.read_bytes())
        assert read_model_config("s3://models/bert/model.tar.gz", s3) == BERT
        with pytest.raises(UserError, match="not found"):
            read_model_config("s3://models/missing.tar.gz", s3)


def test_the_config_artifact_is_read_when_no_model_is_given(tmp_path, capsys):
    archive = tarball(tmp_path / "m.tar.gz", {"config.json": json.dumps(BERT).encode()})
    with patched_mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="my-models-bucket")
        s3.put_object(Bucket="my-models-bucket", Key="bert-classifier/neuron/model.tar.gz",
                      Body=archive.read_bytes())
        code = run(["check", "-c", str(EXAMPLE_CONFIG), "--output", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["source"] == "s3://my-models-bucket/bert-classifier/neuron/model.tar.gz"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"weights.bin": b"x"}, "no config.json"),
        ({"config.json": b"{not json"}, "not valid JSON"),
        ({"config.json": b"[1]"}, "JSON object"),
    ],
)
def test_bad_artifacts_are_one_line_errors_with_exit_2(tmp_path, capsys, files, message):
    model = tarball(tmp_path / "m.tar.gz", files)
    code = run(["check", "-c", str(EXAMPLE_CONFIG), "--model", str(model)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_model_path_and_a_non_archive_are_exit_2(tmp_path, capsys):
    assert run(["check", "-c", str(EXAMPLE_CONFIG), "--model", str(tmp_path / "nope")]) == 2
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a tar")
    assert run(["check", "-c", str(EXAMPLE_CONFIG), "--model", str(junk)]) == 2
    assert "not a readable tar" in capsys.readouterr().err
