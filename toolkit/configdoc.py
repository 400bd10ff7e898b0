"""Generate docs/config.md from the config models, so the reference cannot drift from the code.

    python -m toolkit.configdoc > docs/config.md      (tests/toolkit/test_configdoc.py checks it)
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from toolkit.config import HybridConfig

INTRO = """# hybrid.yaml reference

One file drives both the CDK app (`cdk deploy -c config=hybrid.yaml`) and the `hybrid` CLI.
`hybrid validate -c hybrid.yaml` checks it and lists every problem at once, one line each with
the line of its key: `hybrid.yaml:12: slo.p99_latency_ms: ...` (with `--output json`, also as
`{"ok": false, "errors": [{"file", "line", "path", "message"}]}` on stdout).
`hybrid config schema` prints the JSON Schema for editors. A complete example:
[`examples/hybrid.yaml`](../examples/hybrid.yaml).

Conventions: weights are percent of weighted traffic (neuron + gpu = 100); latency in
milliseconds (CloudWatch's ModelLatency is in microseconds: the toolkit converts once);
invocation rates per minute where SageMaker counts per minute (autoscaling targets) and per
second where capacity is meant (`capacity_rps_per_instance`).

Strict on purpose: unknown keys are errors (with a did-you-mean); a key given twice in one
mapping is an error naming both lines (YAML would keep the last silently); `slo.p99_latency_ms`
under 1 ms or over 60 s is taken for a unit slip ("in seconds?" / "in ms?"); a
`model_package_arn` must be in `region` (and in `account` when set); `compile.source_artifact`
and `compile.output_s3_uri` must be `s3://` URIs (the `local` backend also takes a local file).
Images: `model.image` wins; otherwise `image_settings` go to the SageMaker SDK
(`sagemaker-core`, offline), and a small table answers only when the SDK cannot;
`hybrid images -c hybrid.yaml` shows which.

This page is generated from `toolkit/config.py` by `python -m toolkit.configdoc`.

| key | default | meaning |
|---|---|---|
"""


def _submodel(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{value}`"
    if field.default is PydanticUndefined or field.default is None:
        return ""
    return f"`{field.default}`"


def _meaning(field: Any, model: type[BaseModel]) -> str:
    if field.description:
        return field.description
    sub = _submodel(field.annotation)
    if sub is not None and sub.__doc__:
        return sub.__doc__.strip().splitlines()[0]
    return ""


def rows(model: type[BaseModel] = HybridConfig, prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        meaning = _meaning(field, model).replace("|", "\\|")
        out.append(f"| `{key}` | {_default(field)} | {meaning} |")
        sub = _submodel(field.annotation)
        if sub is not None:
            # neuron and gpu share one model: document it once, as variants.<variant>
            if name == "neuron" and prefix == "variants.":
                out[-1] = f"| `variants.<variant>` |  | {sub.__doc__.strip().splitlines()[0]} (`neuron` and `gpu`) |"
                out.extend(rows(sub, "variants.<variant>."))
            elif name == "gpu" and prefix == "variants.":
                out.pop()
            else:
                out.extend(rows(sub, key + "."))
    return out


def render() -> str:
    return INTRO + "\n".join(rows()) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
