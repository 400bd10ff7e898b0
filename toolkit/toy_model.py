"""A small deterministic model for the local world: a text classifier over hashed tokens (numpy).

No downloaded weights: the weights come from a fixed seed, so every process gets the same model.
`flavour="gpu"` runs in float32. `flavour="neuron"` rounds weights and activations to bfloat16 at
each matmul, as the Neuron compiler does by default (`--auto-cast matmult`), so its scores differ
from gpu's by small amounts ("small differences due to precision are normal"). `perturb` adds
seeded noise of that scale to the neuron flavour's weights: a model that really disagrees.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from toolkit.errors import UserError

LABELS = ("NEGATIVE", "NEUTRAL", "POSITIVE")
BUCKETS = 4096
HIDDEN = 64
SEED = 20261203
_WORD = re.compile(r"[a-z0-9']+")


def _numpy() -> Any:
    try:
        import numpy
    except ModuleNotFoundError:
        raise UserError("the local model needs numpy: pip install 'sagemaker-hybrid-routing[local]'") from None
    return numpy


def to_bf16(x: Any) -> Any:
    """Round float32 values to the nearest bfloat16 (round half to even), kept as float32."""
    np = _numpy()
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


class ToyClassifier:
    def __init__(self, flavour: str = "gpu", perturb: float = 0.0) -> None:
        if flavour not in ("gpu", "neuron"):
            raise UserError(f"model flavour must be gpu or neuron, got {flavour!r}")
        if perturb < 0:
            raise UserError(f"perturb must be >= 0, got {perturb}")
        np = _numpy()
        rng = np.random.default_rng(SEED)
        self.embed = rng.normal(0.0, 1.0, (BUCKETS, HIDDEN)).astype(np.float32)
        self.w1 = rng.normal(0.0, 1.0 / np.sqrt(HIDDEN), (HIDDEN, HIDDEN)).astype(np.float32)
        self.w2 = rng.normal(0.0, 1.5 / np.sqrt(HIDDEN), (HIDDEN, len(LABELS))).astype(np.float32)
        self.flavour = flavour
        if perturb:
            noise = np.random.default_rng(SEED + 1)
            self.w1 = self.w1 + noise.normal(0.0, perturb, self.w1.shape).astype(np.float32)
            self.w2 = self.w2 + noise.normal(0.0, perturb, self.w2.shape).astype(np.float32)

    @staticmethod
    def tokens(text: str) -> list[int]:
        # crc32, not hash(): Python salts str hashes per process, the model must not change.
        return [zlib.crc32(word.encode()) % BUCKETS for word in _WORD.findall(text.lower())] or [0]

    def _matmul(self, a: Any, b: Any) -> Any:
        np = _numpy()
        if self.flavour == "neuron":
            return to_bf16(np.matmul(to_bf16(a), to_bf16(b)))
        return np.matmul(a, b)

    def predict(self, text: str) -> dict[str, Any]:
        np = _numpy()
        x = self.embed[self.tokens(text)].mean(axis=0)
        h = np.tanh(self._matmul(x, self.w1))
        logits = self._matmul(h, self.w2).astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = int(np.argmax(probs))
        return {"label": LABELS[top], "score": float(probs[top]),
                "scores": [float(p) for p in probs], "labels": list(LABELS)}


def answer(model: ToyClassifier, body: bytes) -> Any:
    """The reply to one request body: `{"inputs": text}` -> one prediction; a list of texts -> a list."""
    import json

    try:
        data = json.loads(body) if body else {}
    except ValueError:
        raise UserError("body is not JSON") from None
    inputs = data.get("inputs") if isinstance(data, dict) else data
    if isinstance(inputs, str):
        return model.predict(inputs)
    if isinstance(inputs, list) and all(isinstance(t, str) for t in inputs):
        return [model.predict(t) for t in inputs]
    raise UserError('expected {"inputs": "text"} or {"inputs": ["text", ...]}')
