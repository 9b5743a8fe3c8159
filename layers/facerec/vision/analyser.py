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
from facerec.core.settings import AnalysisSettings
from facerec.vision.alignment import crop
from facerec.vision.detection import Face, FaceDetector, by_shape
from facerec.vision.embedding import RUNTIME, FaceNetEmbedder, describe_embedding
from facerec.vision.images import decode_image
from facerec.vision.pipeline import batches, pipelined
from facerec.vision.runtime import ModelFiles


@dataclass(frozen=True)
class AnalysedFace:
    """A detected face with its crop, uint8 (160, 160, 3), and embedding, float32 (128,)."""

    face: Face
    crop: np.ndarray = field(repr=False)
    embedding: np.ndarray = field(repr=False)


def describe_analysis(settings: AnalysisSettings, models: ModelFiles) -> dict:
    """How faces were found, cropped and embedded, for a model's metadata; reads the models'
    manifest only (no network is loaded), so the training steps run without them."""
    return {
        "embedding": describe_embedding(models, settings.precision),
        "crop": {
            "method": settings.crop_method,
            "margin": settings.margin,
            "size": settings.crop_size,
        },
        "detector": {"name": "mtcnn", "runtime": RUNTIME, **asdict(settings.detector)},
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
        embedded. Batches of ``settings.detector.batch_size`` photos, ordered so that photos
        of one shape are together (they share MTCNN calls); FaceNet embeds one batch while
        MTCNN detects the next (``pipelined``)."""
        in_shape_order = [index for indices in by_shape(images).values() for index in indices]
        groups = list(batches(in_shape_order, self.settings.detector.batch_size))
        results: list = [None] * len(images)
        analysed = pipelined(
            ([images[i] for i in group] for group in groups), (self.detect, self.embed)
        )
        for group, batch in zip(groups, analysed, strict=True):
            for index, item in zip(group, batch, strict=True):
                results[index] = item if isinstance(item, TooManyFaces) else item[1]
        return results

    def detect(
        self, images: Sequence[np.ndarray | Exception]
    ) -> list[tuple[np.ndarray, list[Face]] | Exception]:
        """Per photo (uint8 RGB image, its faces), in one MTCNN batch; a photo that is
        already an exception (its error) stays as it is, one with more than
        ``settings.max_faces`` faces becomes TooManyFaces."""
        valid = [n for n, image in enumerate(images) if not isinstance(image, Exception)]
        detections = iter(self.detector.detect_batch([images[n] for n in valid]))
        cap = self.settings.max_faces
        results: list = list(images)
        for n in valid:
            faces = next(detections)
            results[n] = (
                (images[n], faces)
                if len(faces) <= cap
                else TooManyFaces(f"{len(faces)} faces; at most {cap}")
            )
        return results

    def embed(
        self, detected: Sequence[tuple[np.ndarray, list[Face]] | Exception]
    ) -> list[tuple[np.ndarray, list[AnalysedFace]] | Exception]:
        """``detect``'s output -> per photo (image, its analysed faces), in one FaceNet
        batch; errors stay in their place."""
        valid = [n for n, item in enumerate(detected) if not isinstance(item, Exception)]
        analysed = iter(
            self.crop_and_embed([detected[n][0] for n in valid], [detected[n][1] for n in valid])
        )
        results: list = list(detected)
        for n in valid:
            results[n] = (detected[n][0], next(analysed))
        return results

    def crop_and_embed(
        self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Face]]
    ) -> list[list[AnalysedFace]]:
        """Per photo its detected faces -> per photo its analysed faces (one FaceNet batch)."""
        settings = self.settings
        crops = [
            crop(image, face, settings.crop_method, settings.margin, settings.crop_size)
            for image, faces in zip(images, detections, strict=True)
            for face in faces
        ]
        embeddings = self.embedder.embed(np.stack(crops)) if crops else []  # none: no call
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
        return image, self.crop_and_embed([image], [faces])[0]

    def describe(self) -> dict:
        """What a model's metadata records about how faces were found, cropped and embedded."""
        return describe_analysis(self.settings, self.embedder.models)


def build_analyser(models: Path, settings: AnalysisSettings = AnalysisSettings()) -> FaceAnalyser:
    """Load MTCNN and FaceNet at ``settings.precision`` from the converted networks in
    ``models`` (each file checked against the manifest's sha256 first)."""
    files = ModelFiles(models)
    return FaceAnalyser(
        FaceDetector(files, settings.detector),
        FaceNetEmbedder(files, settings.precision),
        settings,
    )
