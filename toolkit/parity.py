"""Output parity: do neuron and gpu give the same answers to the same inputs?

Pure functions only (outputs in, comparison out), so `hybrid parity` (offline, over a file of
inputs) and the client's online mirroring can share them. A comparator takes the two decoded JSON
outputs of one input and returns a `Comparison`: whether they agree within the config's
tolerances, a severity to rank the worst inputs by, and the diff that explains it. `summarise`
turns many comparisons into the agreement rate and the verdict against `parity.min_agreement`.

JSON paths are dotted keys and list indices: `label`, `0.score`, `predictions[0].scores`.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolkit.config import Parity
from toolkit.errors import UserError

_TOKEN = re.compile(r"[^.\[\]]+|\[(\d+)\]")


@dataclass(frozen=True)
class Comparison:
    ok: bool
    severity: float  # larger = further apart (ranks the worst inputs)
    diff: dict[str, Any] = field(default_factory=dict)


class PathError(ValueError):
    """An output has nothing at the configured JSON path."""


def get_path(data: Any, path: str | None) -> Any:
    """The value at a dotted JSON path (`a.b.0`, `a[0].b`); the whole value for None/''/'$'."""
    if path in (None, "", "$"):
        return data
    value = data
    for match in _TOKEN.finditer(path.removeprefix("$.")):
        key = match.group(1) if match.group(1) is not None else match.group(0)
        if isinstance(value, list):
            try:
                value = value[int(key)]
            except (ValueError, IndexError):
                raise PathError(f"no element {key!r} at {path!r}") from None
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise PathError(f"no key {key!r} at {path!r}")
    return value


def flatten_numbers(value: Any) -> list[float]:
    """Numbers of a scalar, a (nested) list, HF-style [{label, score}] (ordered by label), or the
    numeric leaves of an object in key order (labels and other text inside containers are skipped)."""
    if isinstance(value, bool) or not isinstance(value, int | float | list | dict):
        raise PathError(f"expected numbers, got {type(value).__name__}")
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, list) and value and all(isinstance(v, dict) and "score" in v for v in value):
        return [float(v["score"]) for v in sorted(value, key=lambda v: str(v.get("label")))]
    items = value if isinstance(value, list) else [value[k] for k in sorted(value)]
    return [x for v in items if isinstance(v, int | float | list | dict) and not isinstance(v, bool)
            for x in flatten_numbers(v)]


def vector_diff(neuron: Sequence[float], gpu: Sequence[float]) -> dict[str, float]:
    """max |a-b|, max |a-b|/|b| (0 where both are 0; inf where only b is 0) and cosine similarity."""
    if len(neuron) != len(gpu):
        raise PathError(f"neuron gave {len(neuron)} numbers, gpu {len(gpu)}")
    abs_diffs = [abs(a - b) for a, b in zip(neuron, gpu, strict=True)]
    rel = [d / abs(b) if b else (0.0 if d == 0 else math.inf) for d, b in zip(abs_diffs, gpu, strict=True)]
    dot = sum(a * b for a, b in zip(neuron, gpu, strict=True))
    norms = math.sqrt(sum(a * a for a in neuron)) * math.sqrt(sum(b * b for b in gpu))
    cosine = dot / norms if norms else (1.0 if not any(abs_diffs) else 0.0)
    return {"max_abs_diff": max(abs_diffs, default=0.0), "max_rel_diff": max(rel, default=0.0),
            "cosine": cosine}


def compare_scores(neuron: Any, gpu: Any, cfg: Parity) -> Comparison:
    d = vector_diff(flatten_numbers(get_path(neuron, cfg.scores_path)), flatten_numbers(get_path(gpu, cfg.scores_path)))
    ok = d["max_abs_diff"] <= cfg.max_abs_diff and d["cosine"] >= cfg.min_cosine
    if cfg.max_rel_diff is not None:
        ok = ok and d["max_rel_diff"] <= cfg.max_rel_diff
    return Comparison(ok, d["max_abs_diff"] + (1.0 - d["cosine"]), d)


def compare_labels(neuron: Any, gpu: Any, cfg: Parity) -> Comparison:
    n_label, g_label = get_path(neuron, cfg.label_path), get_path(gpu, cfg.label_path)
    if cfg.top_k > 1 and cfg.top_k_path:
        ranked = get_path(gpu, cfg.top_k_path)
        labels = [r.get("label") if isinstance(r, dict) else r for r in ranked][: cfg.top_k]
        ok = n_label in labels
        return Comparison(ok, 0.0 if ok else 1.0, {"neuron": n_label, "gpu": g_label, "gpu_top_k": labels})
    ok = n_label == g_label
    return Comparison(ok, 0.0 if ok else 1.0, {"neuron": n_label, "gpu": g_label})


def compare_numbers(neuron: Any, gpu: Any, cfg: Parity) -> Comparison:
    diffs: dict[str, Any] = {}
    ok = True
    worst = 0.0
    for path, tolerance in cfg.paths.items():
        a, b = flatten_numbers(get_path(neuron, path)), flatten_numbers(get_path(gpu, path))
        d = vector_diff(a, b)["max_abs_diff"]
        diffs[path] = {"abs_diff": d, "tolerance": tolerance}
        ok = ok and d <= tolerance
        worst = max(worst, d / tolerance if tolerance else (math.inf if d else 0.0))
    return Comparison(ok, worst, diffs)


def compare_text(neuron: Any, gpu: Any, cfg: Parity) -> Comparison:
    a, b = get_path(neuron, cfg.text_path), get_path(gpu, cfg.text_path)
    ok = a == b
    return Comparison(ok, 0.0 if ok else 1.0, {} if ok else {"neuron": a, "gpu": b})


def load_function(spec: str) -> Callable[[Any, Any], Any]:
    module_name, _, attr = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise UserError(f"parity.function {spec!r}: cannot import it ({error})") from None
    if not callable(func):
        raise UserError(f"parity.function {spec!r} is not callable")
    return func


def comparator(cfg: Parity) -> Callable[[Any, Any], Comparison]:
    """The configured comparator as `(neuron_output, gpu_output) -> Comparison`."""
    if cfg.comparator == "function":
        user = load_function(cfg.function or "")

        def compare_user(neuron: Any, gpu: Any) -> Comparison:
            result = user(neuron, gpu)
            if isinstance(result, Comparison):
                return result
            if isinstance(result, Mapping):
                ok = bool(result.get("ok"))
                return Comparison(ok, float(result.get("severity", 0.0 if ok else 1.0)), dict(result))
            return Comparison(bool(result), 0.0 if result else 1.0)

        return compare_user
    table = {"labels": compare_labels, "scores": compare_scores, "numbers": compare_numbers, "text": compare_text}
    chosen = table[cfg.comparator]
    return lambda neuron, gpu: chosen(neuron, gpu, cfg)


def safe_compare(compare: Callable[[Any, Any], Comparison], neuron: Any, gpu: Any) -> Comparison:
    """An output without the configured shape disagrees (with the reason), rather than crashing the run."""
    try:
        return compare(neuron, gpu)
    except (PathError, TypeError, ValueError, KeyError) as error:
        return Comparison(False, math.inf, {"error": str(error)})


@dataclass
class Summary:
    compared: int
    agreed: int
    agreement: float | None
    min_agreement: float
    passed: bool
    aggregate: dict[str, float] = field(default_factory=dict)  # e.g. worst max_abs_diff, min cosine


def summarise(comparisons: Sequence[Comparison], cfg: Parity) -> Summary:
    agreed = sum(c.ok for c in comparisons)
    rate = agreed / len(comparisons) if comparisons else None
    aggregate: dict[str, float] = {}
    for key, pick in (("max_abs_diff", max), ("max_rel_diff", max), ("cosine", min)):
        values = [c.diff[key] for c in comparisons if isinstance(c.diff.get(key), int | float)]
        if values:
            aggregate[("min_" if pick is min else "worst_") + key] = pick(values)
    return Summary(len(comparisons), agreed, rate, cfg.min_agreement, rate is not None and rate >= cfg.min_agreement,
                   aggregate)
