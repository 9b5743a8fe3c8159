"""FaceNet (Inception-ResNet-v1, 20170512-110547, 128-d) embeddings, served by ONNX Runtime
from the network converted at set-up (facerec.vision.convert), as converted (fp32) or
quantized to 8-bit integers (int8).

A model records which network made the embeddings it was trained on (``describe_embedding``)
and every catalog face the ``embedding_stamp`` of its own, so embeddings of two precisions
are never mixed: switching re-embeds the gallery (``facerec reembed``; in the cloud, the
re-index workflow).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from facerec.core.errors import AssetError
from facerec.core.settings import EMBEDDING_SIZE, PRECISIONS
from facerec.core.vectors import l2_normalise
from facerec.vision.runtime import FACENET, ModelFiles

MODEL_ID = "facenet-keras-20170512-110547"
RUNTIME = "onnxruntime"
INPUT_SIZE = 160
INPUT_NAME = "input"


def prewhiten(crops: np.ndarray) -> np.ndarray:
    """Per-image standardisation, uint8 (N, H, W, 3) -> float32 (N, H, W, 3):
    ``(x - mean) / max(std, 1 / sqrt(pixels))``. float32 throughout: NumPy 2 would promote
    the floor to float64, which ONNX Runtime refuses."""
    pixels = crops.astype(np.float32)
    axes = (1, 2, 3)
    mean = pixels.mean(axis=axes, keepdims=True)
    std = pixels.std(axis=axes, keepdims=True)
    floor = np.float32(1.0 / np.sqrt(np.prod(pixels.shape[1:])))
    return (pixels - mean) / np.maximum(std, floor)


def normalised_outputs(
    crops: np.ndarray, batch_size: int, forward: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """uint8 (N, 160, 160, 3) crops -> float32 (N, 128) unit vectors, ``forward`` called on
    at most ``batch_size`` crops at a time."""
    if crops.ndim != 4 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"expected crops of shape (N, 160, 160, 3), got {crops.shape}")
    if len(crops) == 0:
        return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
    outputs = [
        forward(crops[start : start + batch_size]) for start in range(0, len(crops), batch_size)
    ]
    return l2_normalise(np.concatenate(outputs)).astype(np.float32)


def describe_embedding(models: ModelFiles, precision: str) -> dict:
    """What made an embedding, from the manifest (no network loaded): ``{"model_id",
    "weights_sha256", "preprocessing", "dimensions", "runtime", "precision",
    "network_sha256"}``. AssetError if that network was never converted."""
    if precision not in PRECISIONS:
        raise AssetError(f"FaceNet precision is one of {PRECISIONS}; got {precision!r}")
    entry = models.entry(FACENET[precision])
    return {
        "model_id": MODEL_ID,
        "weights_sha256": entry["weights_sha256"],
        "preprocessing": "prewhiten",
        "dimensions": EMBEDDING_SIZE,
        "runtime": RUNTIME,
        "precision": precision,
        "network_sha256": entry["sha256"],
    }


def embedding_stamp(description: dict) -> str:
    """The short name of what made an embedding, stamped on each catalog face: the weights
    and the precision, ``<model_id>@<weights sha256[:12]>`` for fp32 (the Keras model's own
    numbers, to 1e-6) and ``<model_id>+int8@<weights sha256[:12]>`` for the quantized one.
    Not the converted file's hash: converting again (another machine, another run) gives
    other bytes but the same embeddings to within the quantization's rounding."""
    precision = description.get("precision", "fp32")
    suffix = "" if precision == "fp32" else f"+{precision}"
    return f"{description['model_id']}{suffix}@{description['weights_sha256'][:12]}"


def trained_precision(metadata: dict) -> str:
    """The precision of the embeddings a model was trained on (fp32 before precisions were
    recorded: the Keras model's)."""
    return metadata.get("embedding", {}).get("precision", "fp32")


class FaceNetEmbedder:
    """The converted FaceNet at one precision, loaded once (its file checked against the
    manifest first); embeds crops in batches."""

    def __init__(self, models: ModelFiles, precision: str, batch_size: int = 32):
        self.models, self.precision, self.batch_size = models, precision, batch_size
        self.description = describe_embedding(models, precision)
        self.stamp = embedding_stamp(self.description)
        self._session = models.session(FACENET[precision])
        self._output = self._session.get_outputs()[0].name

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, 160, 160, 3) RGB crops -> float32 (N, 128) unit vectors."""
        return normalised_outputs(crops, self.batch_size, self._forward)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {INPUT_NAME: prewhiten(batch)})[0]
