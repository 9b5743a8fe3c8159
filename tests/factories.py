"""Small builders the test files share: labelled face records and unit vectors."""

from __future__ import annotations

import numpy as np

from facerec.core.records import FaceRecord
from facerec.core.vectors import l2_normalise

EMBEDDING_SIZE = 128


def unit_vector(values) -> np.ndarray:
    """``values`` (..., D) as float32 vectors of L2 norm 1 along the last axis."""
    vectors = np.asarray(values, dtype=np.float64)
    if not np.linalg.norm(vectors, axis=-1).all():
        raise ValueError("a zero vector has no direction")
    return l2_normalise(vectors).astype(np.float32)


def face_record(
    photo_key: str,
    index: int,
    person: str | None,
    seed: int | np.random.Generator = 0,
    crop_method: str = "aligned",
) -> FaceRecord:
    """Face ``index`` of photo ``photo_key`` (``<person>/<name>.jpg``): face id
    ``<photo_key>#<index>``, crop ``<person>/<name>-<index>.png``, and a unit embedding drawn
    from ``seed`` (a number, or a generator to draw the next one from)."""
    embedding = np.random.default_rng(seed).standard_normal(EMBEDDING_SIZE)
    return FaceRecord(
        face_id=f"{photo_key}#{index}",
        photo_key=photo_key,
        index=index,
        person=person,
        box=(10 + index, 20, 110, 140),
        confidence=0.99 - index / 100,
        crop_key=f"{photo_key.rsplit('.', 1)[0]}-{index}.png",
        crop_method=crop_method,
        embedding=unit_vector(embedding),
    )
