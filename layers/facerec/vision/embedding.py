"""FaceNet (Inception-ResNet-v1, 20170512-110547, 128-d) embeddings in current TensorFlow.

The Keras conversion in ``facenet_keras.h5`` holds 21 Lambda layers with Python 3.6
bytecode that Keras 3 cannot run; each computes ``inputs[0] + inputs[1] * scale``, so
``ScaledResidual`` stands in for them when the file is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facerec.core.settings import EMBEDDING_SIZE
from facerec.core.vectors import l2_normalise
from facerec.vision.assets import verify_weights

MODEL_ID = "facenet-keras-20170512-110547"

INPUT_SIZE = 160


def prewhiten(crops: np.ndarray) -> np.ndarray:
    """Per-image standardisation, uint8 (N, H, W, 3) -> float32 (N, H, W, 3):
    ``(x - mean) / max(std, 1 / sqrt(pixels))``."""
    pixels = crops.astype(np.float32)
    axes = (1, 2, 3)
    mean = pixels.mean(axis=axes, keepdims=True)
    std = pixels.std(axis=axes, keepdims=True)
    floor = 1.0 / np.sqrt(np.prod(pixels.shape[1:]))
    return (pixels - mean) / np.maximum(std, floor)


PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {"prewhiten": prewhiten}


def _scaled_residual_layer():
    import keras

    class ScaledResidual(keras.layers.Layer):
        """``inputs[0] + inputs[1] * scale``: the body of every Lambda layer in the h5 file."""

        def __init__(self, scale: float = 1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = float(scale)

        def call(self, inputs):
            return inputs[0] + inputs[1] * self.scale

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

        @classmethod
        def from_config(cls, config):
            scale = config.get("arguments", {}).get("scale", config.get("scale", 1.0))
            keep = {key: config[key] for key in ("name", "trainable", "dtype") if key in config}
            return cls(scale=scale, **keep)

    return ScaledResidual


class FaceNetEmbedder:
    """Loads the weights once (after checking their sha256) and embeds crops in batches."""

    def __init__(self, weights: Path, batch_size: int = 32, preprocessing: str = "prewhiten"):
        self.weights_sha256 = verify_weights(weights)  # before the slow imports: fail fast
        import keras
        import tensorflow as tf

        self.batch_size = batch_size
        self.preprocessing = preprocessing
        self._preprocess = PREPROCESSING[preprocessing]
        model = keras.models.load_model(
            weights, compile=False, custom_objects={"Lambda": _scaled_residual_layer()}
        )
        signature = tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[signature])
        self.model_id = MODEL_ID

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 (N, 160, 160, 3) RGB crops -> float32 (N, 128) unit vectors."""
        if crops.ndim != 4 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"expected crops of shape (N, 160, 160, 3), got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        outputs = [
            self._forward(self._preprocess(crops[start : start + self.batch_size])).numpy()
            for start in range(0, len(crops), self.batch_size)
        ]
        return l2_normalise(np.concatenate(outputs)).astype(np.float32)
