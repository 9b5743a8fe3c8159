"""MTCNN face detection behind a small class, batched; choosing the labelled face of a photo."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facerec.core.settings import DetectorSettings

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """One detected face. ``box`` is (x1, y1, x2, y2) in pixels of the decoded photo,
    ``landmarks`` a float array (5, 2) of (x, y) in LANDMARK_NAMES order (image left/right)."""

    box: tuple[int, int, int, int]
    confidence: float
    landmarks: np.ndarray

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict:
        return {
            "box": {
                "left": self.box[0],
                "top": self.box[1],
                "width": self.width,
                "height": self.height,
            },
            "confidence": round(self.confidence, 4),
            "landmarks": {
                name: [round(float(x), 1), round(float(y), 1)]
                for name, (x, y) in zip(LANDMARK_NAMES, self.landmarks, strict=True)
            },
        }


class FaceDetector:
    """MTCNN (mtcnn 1.0, TensorFlow), loaded once per instance."""

    def __init__(self, settings: DetectorSettings = DetectorSettings()):
        from mtcnn import MTCNN

        self.settings = settings
        self._mtcnn = MTCNN()
        _compile_networks(self._mtcnn)

    def detect(self, image: np.ndarray) -> list[Face]:
        """uint8 (H, W, 3) RGB -> faces, most confident first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Detect faces in many photos; one list of faces per photo, in input order.

        Only photos of identical shape share an MTCNN call: mtcnn pads a mixed batch to its
        largest photo, which shifts the scale pyramid and can lose a borderline face (a
        sunglasses photo of the sample set scores 0.84 alone and is missed in a mixed batch).
        Within a same-shape batch, a box can still differ by a few pixels from the photo's
        box when detected alone (1 of 64 LFW photos in bench/run.py), never the face count.

        A photo over ``settings.max_pixels`` is scanned downscaled to that budget and its faces
        are mapped back to its own pixels; a call scans at most that many pixels in all (so
        large photos go in smaller batches). Photos within the budget are scanned as they are.
        """
        results: list[list[Face]] = [[] for _ in images]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(index)
        budget = self.settings.max_pixels
        for shape, indices in by_shape.items():
            height, width = scan_size(shape[:2], budget)
            scale = (shape[1] / width, shape[0] / height)
            size = max(1, min(self.settings.batch_size, budget // (height * width)))
            for start in range(0, len(indices), size):
                chunk = indices[start : start + size]
                rows = self._mtcnn.detect_faces(
                    [_resized(images[i], (height, width)) for i in chunk],
                    box_format="xyxy",
                    output_type="numpy",
                    min_face_size=self.settings.min_face_size,
                )
                for row in np.asarray(rows).reshape(-1, 16):
                    face = _face_from_row(row, scale)
                    if (
                        face.confidence >= self.settings.min_confidence
                        and min(face.width, face.height) > 0
                    ):
                        results[chunk[int(row[0])]].append(face)
        for faces in results:
            faces.sort(key=lambda face: face.confidence, reverse=True)
        return results


def scan_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """(height, width) of a photo -> the (height, width) MTCNN scans: the same within
    ``max_pixels`` (at least 1), else downscaled with its aspect ratio kept (to the pixel, but
    for sides that would fall under 1 px) to at most that many pixels."""
    height, width = size
    if height * width <= max_pixels:
        return height, width
    factor = math.sqrt(max_pixels / (height * width))
    scanned_height = max(1, min(math.floor(height * factor), max_pixels))
    return scanned_height, max(1, min(math.floor(width * factor), max_pixels // scanned_height))


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (height, width, 3) (antialiased bilinear); the same array
    when it already has that size."""
    if image.shape[:2] == size:
        return image
    resized = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _compile_networks(mtcnn) -> None:
    """mtcnn 1.0 calls its three networks eagerly; one compiled call per network (any batch
    and photo size) detects about 3.5x faster with the same faces (3,443 LFW photos compared
    in bench/). This replaces each stage's ``_model``: mtcnn is pinned at 1.0.0 for it."""
    import tensorflow as tf

    signature = [tf.TensorSpec([None, None, None, 3], tf.float32)]
    for stage in mtcnn.stages:
        network = stage._model
        stage._model = tf.function(
            lambda x, network=network: network(x, training=False),
            input_signature=signature,
            reduce_retracing=True,
        )


def _face_from_row(row: np.ndarray, scale: tuple[float, float]) -> Face:
    """One mtcnn numpy row -> a Face, its pixels multiplied by ``scale`` (x, y): from the
    scanned photo's pixels to the photo's own (1.0 leaves every value as it was)."""
    sx, sy = scale
    x1, y1, x2, y2 = (
        round(float(value) * factor)
        for value, factor in zip(row[1:5], (sx, sy, sx, sy), strict=True)
    )
    # mtcnn's numpy rows hold the five landmark x values, then the five y values.
    points = np.asarray(row[6:16], dtype=np.float64).reshape(2, 5).T * (sx, sy)
    landmarks = points.astype(np.float32)
    return Face(box=(x1, y1, x2, y2), confidence=float(row[5]), landmarks=landmarks)


def centrality_score(face: Face, image_shape: tuple[int, ...]) -> float:
    """Confidence times closeness of the box centre to the photo centre (1 at the centre, 0 at
    a corner), times the box's share of the photo's area, square-rooted to favour centre."""
    height, width = image_shape[:2]
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    offset = np.hypot((cx - width / 2) / (width / 2), (cy - height / 2) / (height / 2)) / np.sqrt(2)
    area_share = face.width * face.height / float(width * height)
    return face.confidence * (1.0 - offset) * np.sqrt(area_share)


def select_labelled_face(
    faces: Sequence[Face],
    embeddings: np.ndarray,
    references: np.ndarray,
    image_shape: tuple[int, ...],
    min_similarity: float = 0.5,
) -> tuple[int, str]:
    """Pick which face of a labelled photo is the named person.

    ``embeddings`` (F, D) unit vectors of ``faces``; ``references`` (R, D) unit vectors of the
    person's other enrolled faces (R may be 0). The face most similar to the references'
    mean wins if its cosine similarity is at least ``min_similarity``; otherwise the most
    central, confident and large face. Returns (index, rule used: "reference" or "central").
    """
    if len(faces) == 1:
        return 0, "single"
    if len(references):
        centroid = references.mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        similarities = embeddings @ centroid
        best = int(np.argmax(similarities))
        if similarities[best] >= min_similarity:
            return best, "reference"
    scores = [centrality_score(face, image_shape) for face in faces]
    return int(np.argmax(scores)), "central"
