"""The ``mtcnn`` package (1.0.0, TensorFlow): the source of the three converted networks and the
reference the served detector is checked against. Used at set-up, by reference tests and
benchmarks; serving never imports it (facerec.vision.detection runs the converted files).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facerec.core.errors import AssetError
from facerec.core.settings import DetectorSettings
from facerec.vision.assets import AssetPaths
from facerec.vision.detection import BatchDetector
from facerec.vision.mtcnn import INPUT_NAME, PATCH_SIZES, normalise
from facerec.vision.runtime import MTCNN, ModelFiles, inference_session

SOURCE = "mtcnn==1.0.0"
OPSET = 17
# Largest difference allowed between an ONNX output and TensorFlow's on the same input.
PARITY_TOLERANCE = 1e-4


class PackageDetector(BatchDetector):
    """The ``mtcnn`` package's detector behind FaceDetector's ``detect`` / ``detect_batch``, its
    three networks compiled once (see ``compile_networks``)."""

    def __init__(self, settings: DetectorSettings = DetectorSettings()):
        from mtcnn import MTCNN as PackageMTCNN

        super().__init__(settings)
        self.mtcnn = PackageMTCNN()
        compile_networks(self.mtcnn)

    def scan(self, images: Sequence[np.ndarray]) -> np.ndarray:
        rows = self.mtcnn.detect_faces(
            list(images),
            box_format="xyxy",
            output_type="numpy",
            min_face_size=self.settings.min_face_size,
        )
        return np.asarray(rows, dtype=np.float64).reshape(-1, 16)


def compile_networks(mtcnn) -> None:
    """mtcnn 1.0 calls its three networks eagerly; one compiled call per network (any batch
    and photo size) detects about 3.5x faster with the same faces. This replaces each
    stage's ``_model``: mtcnn is pinned at 1.0.0 for it."""
    import tensorflow as tf

    signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_NAME)]
    for stage in mtcnn.stages:
        network = stage._model
        stage._model = tf.function(
            lambda x, network=network: network(x, training=False),
            input_signature=signature,
            reduce_retracing=True,
        )


def export_networks(files: ModelFiles, sample_set: Path | None = None) -> dict[str, dict]:
    """Convert the package's P-, R- and O-Net to ONNX (opset 17; input ``INPUT_NAME`` float32
    NHWC pixels normalised by ``normalise``, any batch; PNet any height and width) into
    ``files``, check each against TensorFlow on pyramid levels and patches cut from the sample
    set's photos (``sample_set``, by default the one beside ``files.root``), and record it in
    the manifest. Returns each network's manifest entry; AssetError if one disagrees."""
    import tensorflow as tf
    import tf2onnx
    from mtcnn import MTCNN as PackageMTCNN

    photos = _parity_photos(sample_set or AssetPaths(files.root.parent).sample_set)
    inputs = {
        "mtcnn-pnet": _pyramid_levels(photos),
        "mtcnn-rnet": _patches(photos, PATCH_SIZES["mtcnn-rnet"]),
        "mtcnn-onet": _patches(photos, PATCH_SIZES["mtcnn-onet"]),
    }
    files.root.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, stage in zip(MTCNN, PackageMTCNN().stages, strict=True):
        side = PATCH_SIZES.get(name)
        signature = (tf.TensorSpec([None, side, side, 3], tf.float32, name=INPUT_NAME),)
        forward = tf.function(
            lambda x, network=stage._model: network(x, training=False),
            input_signature=signature,
        )
        path = files.path(name)
        tf2onnx.convert.from_function(
            forward, input_signature=signature, opset=OPSET, output_path=str(path)
        )
        session = inference_session(path)
        difference = 0.0
        for batch in inputs[name]:
            expected = [output.numpy() for output in forward(tf.constant(batch))]
            actual = session.run(None, {INPUT_NAME: batch})
            for reference, converted in zip(expected, actual, strict=True):
                difference = max(difference, float(np.abs(reference - converted).max()))
        if difference > PARITY_TOLERANCE:
            raise AssetError(
                f"{path.name} differs from TensorFlow by {difference:.2e} "
                f"(at most {PARITY_TOLERANCE:.0e}); delete it and run `make setup`"
            )
        parity = {
            "max_abs_difference": difference,
            "inputs": int(sum(len(batch) for batch in inputs[name])),
            "tolerance": PARITY_TOLERANCE,
        }
        entries[name] = files.record(name, source=SOURCE, opset=OPSET, parity=parity)
    return entries


def _parity_photos(sample_set: Path, count: int = 6) -> list[np.ndarray]:
    """uint8 (H, W, 3) RGB photos: the first of each person of the sample set's ``val``."""
    from PIL import Image

    paths = sorted(sample_set.glob("val/*/*.jpg"))
    if not paths:
        raise AssetError(f"no sample photos in {sample_set}; run `make setup`")
    chosen = paths[:: max(1, len(paths) // count)][:count]
    return [np.asarray(Image.open(path).convert("RGB")) for path in chosen]


def _pyramid_levels(photos: list[np.ndarray]) -> list[np.ndarray]:
    """Each photo normalised and area-resized as the package's pyramid does, at 3 scales:
    float32 (1, h, w, 3) batches."""
    import tensorflow as tf

    levels = []
    for photo in photos:
        for scale in (0.6, 0.3, 0.15):
            size = (np.asarray(photo.shape[:2]) * scale).astype(int)
            level = tf.image.resize(normalise(photo[None]), size, method="area")
            levels.append(np.asarray(level, dtype=np.float32))
    return levels


def _patches(photos: list[np.ndarray], side: int, per_photo: int = 24) -> list[np.ndarray]:
    """Square boxes at seeded random places and sizes (some past the border) cut and resized
    to ``side`` px as the package's patches (``tf.image.crop_and_resize``): float32
    (per_photo, side, side, 3) batches."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    batches = []
    for photo in photos:
        height, width = photo.shape[:2]
        sides = rng.uniform(0.1, 0.8, per_photo) * min(height, width)
        x1 = rng.uniform(-0.1, 0.9, per_photo) * width
        y1 = rng.uniform(-0.1, 0.9, per_photo) * height
        boxes = np.stack([y1 / height, x1 / width, (y1 + sides) / height, (x1 + sides) / width])
        patches = tf.image.crop_and_resize(
            normalise(photo[None]),
            boxes.T.astype(np.float32),
            np.zeros(per_photo, dtype=np.int32),
            (side, side),
        )
        batches.append(np.asarray(patches, dtype=np.float32))
    return batches
