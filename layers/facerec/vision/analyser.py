"""The face analyser: decode, detect (MTCNN), crop or align, embed (FaceNet), in batches.

Photos in, per photo its faces out, each with its crop and embedding; ``describe`` says how,
for a model's metadata. Every flow that needs faces from photos goes through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facerec.core.errors import NoFaceFound, TooManyFaces
from facerec.core.settings import EMBEDDING_SIZE, AnalysisSettings
from facerec.vision.alignment import crop
from facerec.vision.detection import Face, FaceDetector
from facerec.vision.embedding import MODEL_ID, FaceNetEmbedder
from facerec.vision.images import decode_image


@dataclass(frozen=True)
class AnalysedFace:
    """A detected face with its crop, uint8 (160, 160, 3), and embedding, float32 (128,)."""

    face: Face
    crop: np.ndarray = field(repr=False)
    embedding: np.ndarray = field(repr=False)


def describe_analysis(settings: AnalysisSettings, weights_sha256: str) -> dict:
    """How faces were found, cropped and embedded, for a model's metadata; needs no loaded
    model, so the training steps run without TensorFlow."""
    return {
        "embedding": {
            "model_id": MODEL_ID,
            "weights_sha256": weights_sha256,
            "preprocessing": "prewhiten",
            "dimensions": EMBEDDING_SIZE,
        },
        "crop": {
            "method": settings.crop_method,
            "margin": settings.margin,
            "size": settings.crop_size,
        },
        "detector": {"name": "mtcnn", **asdict(settings.detector)},
    }


class FaceAnalyser:
    """Detector and embedder, loaded once; photos in, analysed faces out (batched)."""

    def __init__(
        self, detector: FaceDetector, embedder: FaceNetEmbedder, settings: AnalysisSettings
    ):
        self.detector, self.embedder, self.settings = detector, embedder, settings

    def analyse(self, images: Sequence[np.ndarray]) -> list[list[AnalysedFace] | TooManyFaces]:
        """uint8 RGB photos -> per photo, its faces (most confident first), or TooManyFaces
        for a photo with more than ``settings.max_faces``: its faces are never cropped or
        embedded."""
        detections = self.detector.detect_batch(images)
        cap = self.settings.max_faces
        within = [index for index, faces in enumerate(detections) if len(faces) <= cap]
        analysed = iter(
            self._crop_and_embed([images[i] for i in within], [detections[i] for i in within])
        )
        return [
            next(analysed)
            if len(faces) <= cap
            else TooManyFaces(f"{len(faces)} faces; at most {cap}")
            for faces in detections
        ]

    def _crop_and_embed(
        self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Face]]
    ) -> list[list[AnalysedFace]]:
        """Per photo its detected faces -> per photo its analysed faces (one FaceNet batch)."""
        settings = self.settings
        crops = [
            crop(image, face, settings.crop_method, settings.margin, settings.crop_size)
            for image, faces in zip(images, detections, strict=True)
            for face in faces
        ]
        size = settings.crop_size
        embeddings = self.embedder.embed(
            np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
        )
        results, position = [], 0
        for faces in detections:
            results.append(
                [
                    AnalysedFace(face, crops[position + i], embeddings[position + i])
                    for i, face in enumerate(faces)
                ]
            )
            position += len(faces)
        return results

    def analyse_photo(self, data: bytes) -> tuple[np.ndarray, list[AnalysedFace]]:
        """Photo bytes -> (uint8 RGB image, its faces). Raises ImageError (bad photo),
        NoFaceFound or TooManyFaces; both before any face is cropped or embedded."""
        image = decode_image(data, self.settings.image_limits)
        faces = self.detector.detect(image)
        if not faces:
            raise NoFaceFound("no face found in the photo")
        if len(faces) > self.settings.max_faces:
            raise TooManyFaces(f"{len(faces)} faces; at most {self.settings.max_faces}")
        return image, self._crop_and_embed([image], [faces])[0]

    def describe(self) -> dict:
        """What a model's metadata records about how faces were found, cropped and embedded."""
        return describe_analysis(self.settings, self.embedder.weights_sha256)


def build_analyser(weights: Path, settings: AnalysisSettings = AnalysisSettings()) -> FaceAnalyser:
    """Load MTCNN and FaceNet (the weights are checked against their sha256 first)."""
    return FaceAnalyser(FaceDetector(settings.detector), FaceNetEmbedder(weights), settings)
