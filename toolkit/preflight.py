"""`hybrid check`: audit a model before any compile is attempted.

Reads the model's Hugging Face `config.json` (architectures, model_type, dtype, max positions) and
compares it with what the Neuron path the config chose can compile, from a table copied from the
optimum-neuron "Supported architectures" documentation (SOURCE, AS_OF below). The assessment is
pure (`assess`); reading the artifact (a local directory, config.json, model.tar.gz or an S3
model.tar.gz) is a thin adapter (`read_model_config`).

Outcomes: a check is ok, a warning (unknown architecture: names what to try; never a guess), or a
failure (a task the table does not list for a known architecture, or a sequence length the model
cannot take). Any failure = exit 1.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from toolkit.config import HybridConfig
from toolkit.errors import AwsError, UserError

SOURCE = ("optimum-neuron documentation, Supported architectures > Inference > Transformers "
          "(https://huggingface.co/docs/optimum-neuron/supported_architectures; "
          "github.com/huggingface/optimum-neuron docs/source/supported_architectures.mdx @ 02ac296)")
AS_OF = "2026-12-03"  # the date the table below was copied from SOURCE

_TEXT = ("feature-extraction", "fill-mask", "multiple-choice", "question-answering", "text-classification",
         "token-classification")
_IMAGE = ("feature-extraction", "image-classification")
_AUDIO = ("feature-extraction", "automatic-speech-recognition", "audio-classification")
_AUDIO_FULL = (*_AUDIO, "audio-frame-classification", "audio-xvector")

# HF model_type -> (the table's architecture name, the tasks it lists for inference on inf2).
SUPPORTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "albert": ("ALBERT", _TEXT),
    "audio-spectrogram-transformer": ("AST", ("feature-extraction", "audio-classification")),
    "bert": ("BERT", _TEXT),
    "beit": ("Beit", _IMAGE),
    "camembert": ("CamemBERT", _TEXT),
    "clip": ("CLIP", _IMAGE),
    "convbert": ("ConvBERT", _TEXT),
    "convnext": ("ConvNext", _IMAGE),
    "convnextv2": ("ConvNextV2", _IMAGE),
    "cvt": ("CvT", _IMAGE),
    "deberta": ("DeBERTa (INF2 only)", _TEXT),
    "deberta-v2": ("DeBERTa-v2 (INF2 only)", _TEXT),
    "deit": ("Deit", _IMAGE),
    "distilbert": ("DistilBERT", _TEXT),
    "donut-swin": ("DonutSwin", ("feature-extraction",)),
    "dpt": ("Dpt", ("feature-extraction",)),
    "electra": ("ELECTRA", _TEXT),
    "esm": ("ESM", ("feature-extraction", "fill-mask", "text-classification", "token-classification")),
    "flaubert": ("FlauBERT", _TEXT),
    "granite": ("Granite", ("text-generation",)),
    "hubert": ("Hubert", _AUDIO),
    "levit": ("Levit", _IMAGE),
    "llama": ("Llama, Llama 2, Llama 3", ("text-generation",)),
    "llama4": ("Llama 4", ("text-generation",)),
    "mixtral": ("Mixtral", ("text-generation",)),
    "mobilebert": ("MobileBERT", _TEXT),
    "mobilenet_v2": ("MobileNetV2", (*_IMAGE, "semantic-segmentation")),
    "mobilevit": ("MobileViT", (*_IMAGE, "semantic-segmentation")),
    "modernbert": ("ModernBERT", ("feature-extraction", "fill-mask", "text-classification", "token-classification")),
    "mpnet": ("MPNet", _TEXT),
    "phi3": ("Phi3", ("text-generation",)),
    "phi": ("Phi", ("feature-extraction", "text-classification", "token-classification")),
    "qwen2": ("Qwen2", ("text-generation",)),
    "qwen3": ("Qwen3", ("feature-extraction", "text-generation")),
    "qwen3_moe": ("Qwen3Moe", ("text-generation",)),
    "roberta": ("RoBERTa", _TEXT),
    "roformer": ("RoFormer", _TEXT),
    "smollm3": ("SmolLM3", ("text-generation",)),
    "swin": ("Swin", _IMAGE),
    "t5": ("T5", ("text2text-generation",)),
    "unispeech": ("UniSpeech", _AUDIO),
    "unispeech-sat": ("UniSpeech-SAT", _AUDIO_FULL),
    "vit": ("ViT", _IMAGE),
    "wav2vec2": ("Wav2Vec2", _AUDIO_FULL),
    "wavlm": ("WavLM", _AUDIO_FULL),
    "whisper": ("Whisper", ("automatic-speech-recognition",)),
    "xlm": ("XLM", _TEXT),
    "xlm-roberta": ("XLM-RoBERTa", _TEXT),
    "yolos": ("Yolos", ("feature-extraction", "object-detection")),
}

# transformers pipeline aliases -> the table's task names
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
                "feature_extraction": "feature-extraction"}
# architecture class suffix -> task (the longest suffix that matches wins)
HEAD_TASKS = {
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForQuestionAnswering": "question-answering",
    "ForMaskedLM": "fill-mask",
    "ForMultipleChoice": "multiple-choice",
    "ForCausalLM": "text-generation",
    "ForImageClassification": "image-classification",
    "ForCTC": "automatic-speech-recognition",
    "ForObjectDetection": "object-detection",
    "ForSemanticSegmentation": "semantic-segmentation",
    "ForAudioClassification": "audio-classification",
    "Model": "feature-extraction",
}
AUDIO_TYPES = {"hubert", "wav2vec2", "wavlm", "unispeech", "unispeech-sat", "audio-spectrogram-transformer"}
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_source_positions")
COMPILABLE_DTYPES = {"float32", "bfloat16", "float16"}
BACKENDS = {
    "neo": "a SageMaker Neo compilation job (neuronx-cc)",
    "container": "the Hugging Face neuronx container (optimum-neuron compiles at start-up)",
    "local": "torch_neuronx.trace on this machine",
}
MAX_CONFIG_BYTES = 1 << 20

Level = Literal["ok", "warning", "failure"]


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    message: str


@dataclass
class CheckReport:
    source: str  # where config.json was read from
    backend: str
    architectures: list[str]
    model_type: str | None
    task: str | None
    table_source: str = SOURCE
    table_as_of: str = AS_OF
    findings: list[Finding] = field(default_factory=list)

    @property
    def verdict(self) -> Level:
        levels = {f.level for f in self.findings}
        return "failure" if "failure" in levels else "warning" if "warning" in levels else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "backend": self.backend, "architectures": self.architectures,
            "model_type": self.model_type, "task": self.task, "verdict": self.verdict,
            "table_source": self.table_source, "table_as_of": self.table_as_of,
            "findings": [f.__dict__ for f in self.findings],
        }


def head_task(architectures: list[str], model_type: str | None) -> str | None:
    """The task an architecture class implies (BertForSequenceClassification -> text-classification)."""
    for arch in architectures:
        if model_type == "whisper" and arch.endswith("ForConditionalGeneration"):
            return "automatic-speech-recognition"
        if model_type == "t5" and arch.endswith("ForConditionalGeneration"):
            return "text2text-generation"
        for suffix in sorted(HEAD_TASKS, key=len, reverse=True):
            if arch.endswith(suffix):
                task = HEAD_TASKS[suffix]
                if task == "text-classification" and model_type in AUDIO_TYPES:
                    return "audio-classification"
                return task
    return None


def configured_task(cfg: HybridConfig) -> str | None:
    """HF_TASK from the neuron (else gpu) variant's environment, if the config sets it."""
    for name in ("neuron", "gpu"):
        env = cfg.variant(name).model.environment or {}
        if env.get("HF_TASK"):
            return TASK_ALIASES.get(env["HF_TASK"], env["HF_TASK"])
    return None


def assess(model_config: Mapping[str, Any], cfg: HybridConfig, source: str) -> CheckReport:
    """Pure: the findings for one config.json against the config's Neuron path and shapes."""
    architectures = [a for a in model_config.get("architectures") or [] if isinstance(a, str)]
    model_type = model_config.get("model_type") if isinstance(model_config.get("model_type"), str) else None
    backend = cfg.compile.backend
    task = configured_task(cfg) or head_task(architectures, model_type)
    report = CheckReport(source, backend, architectures, model_type, task)
    add = report.findings.append
    how = BACKENDS[backend]
    row = SUPPORTED.get(model_type or "")
    shown = ", ".join(architectures) or model_type or "unknown"
    if model_type is None and not architectures:
        add(Finding("architecture", "warning",
                    "config.json names no model_type or architectures: cannot look the model up; "
                    "try compiling it once with torch_neuronx.trace (compile.backend: local) on an inf2 host"))
    elif row is None:
        add(Finding("architecture", "warning",
                    f"{shown} (model_type {model_type!r}) is not in the supported-architectures table "
                    f"({SOURCE}, as of {AS_OF}); unknown, not unsupported: try "
                    f"`optimum-cli export neuron --model <dir> --task {task or '<task>'} "
                    f"--batch_size {cfg.compile.batch_size} --sequence_length {cfg.compile.sequence_length} <out>` "
                    f"or torch_neuronx.trace (compile.backend: local) on an inf2/trn1 host, and audit custom layers "
                    f"and exotic operations first (they fail first)"))
    else:
        name, tasks = row
        add(Finding("architecture", "ok", f"{name} is supported for inference on inf2 ({SOURCE}, as of {AS_OF})"))
        if task is None:
            add(Finding("task", "warning",
                        f"no task: set HF_TASK in the variant's environment (one of {', '.join(tasks)})"))
        elif task not in tasks:
            add(Finding("task", "failure",
                        f"{name} is listed for {', '.join(tasks)}, not {task!r} ({SOURCE}, as of {AS_OF}): "
                        f"{how} will not compile it for this task"))
        else:
            add(Finding("task", "ok", f"{task} is listed for {name}"))
        if task == "text-generation" and backend != "local":
            add(Finding("task", "warning",
                        "text-generation models are served on inf2 by TGI / vLLM neuron images "
                        "(continuous batching), not by the encoder path of " + how))
    positions = next((model_config[k] for k in POSITION_KEYS if isinstance(model_config.get(k), int)), None)
    length = cfg.compile.sequence_length
    if positions is None:
        add(Finding("sequence_length", "warning",
                    f"config.json gives no {' / '.join(POSITION_KEYS)}: cannot check compile.sequence_length {length}"))
    elif length > positions:
        add(Finding("sequence_length", "failure",
                    f"compile.sequence_length {length} > the model's {positions} positions: "
                    f"set compile.sequence_length <= {positions}"))
    else:
        add(Finding("sequence_length", "ok", f"compile.sequence_length {length} <= {positions} positions"))
    dtype = model_config.get("torch_dtype") or model_config.get("dtype")
    if model_config.get("quantization_config"):
        add(Finding("dtype", "warning",
                    "quantized weights (quantization_config): Neuron compiles fp32/bf16 graphs; "
                    "export from the unquantized checkpoint"))
    elif dtype is None:
        add(Finding("dtype", "ok", "no torch_dtype: weights load as float32 (the compiler casts matmuls to bf16)"))
    elif dtype not in COMPILABLE_DTYPES:
        add(Finding("dtype", "warning", f"torch_dtype {dtype!r}: Neuron compiles float32/bfloat16/float16"))
    else:
        add(Finding("dtype", "ok", f"torch_dtype {dtype}"))
    return report


# ------------------------------------------------------------------------------------------------
# Reading config.json from the artifact (adapter)


def model_location(cfg: HybridConfig, override: str | None) -> str:
    """Where the model to audit lives: --model, else compile.source_artifact, else a variant's artifact."""
    if override:
        return override
    for candidate in (cfg.compile.source_artifact, cfg.variants.neuron.model.artifact, cfg.variants.gpu.model.artifact):
        if candidate:
            return candidate
    raise UserError("no model artifact in the config (model packages cannot be read): pass --model PATH|s3://...")


def _config_from_tar(fileobj: Any, where: str) -> dict[str, Any]:
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as archive:  # streamed: stops at config.json
            for member in archive:
                path = PurePosixPath(member.name)
                if path.name == "config.json" and member.isfile() and len(path.parts) <= 3 and "code" not in path.parts:
                    if member.size > MAX_CONFIG_BYTES:
                        raise UserError(f"{where}: {member.name} is larger than 1 MB: not a model config")
                    extracted = archive.extractfile(member)
                    return _parse(extracted.read() if extracted else b"", f"{where}:{member.name}")
    except tarfile.TarError as error:
        raise UserError(f"{where}: not a readable tar archive ({error}); pass --model with a config.json") from None
    raise UserError(f"{where}: no config.json in the archive (not a Hugging Face model?); pass --model PATH/config.json")


def _parse(data: bytes, where: str) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError as error:
        raise UserError(f"{where}: config.json is not valid JSON ({error})") from None
    if not isinstance(parsed, dict):
        raise UserError(f"{where}: config.json must be a JSON object")
    return parsed


def read_model_config(location: str, s3_client: Any = None) -> dict[str, Any]:
    """config.json from a directory, the file itself, a .tar.gz, or s3://bucket/key of a model.tar.gz."""
    if location.startswith("s3://"):
        return _read_s3(location, s3_client)
    path = Path(location)
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise UserError(f"{location}: no config.json in this directory (not a Hugging Face model?)")
    if not path.is_file():
        raise UserError(f"--model {location}: file not found")
    if path.suffix == ".json":
        return _parse(path.read_bytes(), str(path))
    with path.open("rb") as handle:
        return _config_from_tar(handle, str(path))


def _read_s3(uri: str, s3_client: Any) -> dict[str, Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise UserError(f"{uri}: expected s3://bucket/key")
    client = s3_client or boto3.client("s3")
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        if key.endswith(".json"):
            return _parse(body.read(MAX_CONFIG_BYTES + 1), uri)
        return _config_from_tar(_Reader(body), uri)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchBucket", "404"):
            raise UserError(f"{uri}: not found ({code}); fix the artifact URI or pass --model") from None
        raise AwsError(f"GetObject {uri}: {error}") from None
    except BotoCoreError as error:
        raise AwsError(f"GetObject {uri}: {error}") from None


class _Reader(io.RawIOBase):
    """A file object over a botocore StreamingBody, for tarfile's stream mode."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self.body.read(None if size is None or size < 0 else size)
