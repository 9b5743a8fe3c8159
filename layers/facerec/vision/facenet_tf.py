"""The thesis's Keras FaceNet on TensorFlow: the source of the converted network and the
reference it is checked against. Used at set-up, by reference tests and benchmarks; serving
never imports it (facerec.vision.embedding runs the converted file).

The Keras conversion in ``facenet_keras.h5`` holds 21 Lambda layers with Python 3.6
bytecode that Keras 3 cannot run; each computes ``inputs[0] + inputs[1] * scale``, so
``ScaledResidual`` stands in for them when the file is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facerec.vision.assets import verify_weights
from facerec.vision.embedding import INPUT_NAME, INPUT_SIZE, normalised_outputs, prewhiten


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


class KerasFaceNet:
    """The Keras model, loaded once after checking the weights' sha256; ``embed`` as the
    served embedder's (uint8 (N, 160, 160, 3) -> float32 (N, 128) unit vectors)."""

    def __init__(self, weights: Path, batch_size: int = 32):
        verify_weights(weights)  # before the slow imports: fail fast
        import keras
        import tensorflow as tf

        self.batch_size = batch_size
        model = keras.models.load_model(
            weights, compile=False, custom_objects={"Lambda": _scaled_residual_layer()}
        )
        self.signature = (
            tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name=INPUT_NAME),
        )
        self.forward = tf.function(
            lambda x: model(x, training=False), input_signature=self.signature
        )

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return normalised_outputs(
            crops, self.batch_size, lambda batch: self.forward(prewhiten(batch)).numpy()
        )

    def export(self, path: Path, opset: int) -> None:
        """Write the network as ONNX (tf2onnx): input ``INPUT_NAME`` float32 (N, 160, 160, 3)
        prewhitened, output float32 (N, 128) before normalisation."""
        import tf2onnx

        tf2onnx.convert.from_function(
            self.forward, input_signature=self.signature, opset=opset, output_path=str(path)
        )
