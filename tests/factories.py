"""Small builders the test files share: labelled face records, unit vectors, and a synthetic
gallery with group photos."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from facerec.core.records import FaceRecord, PhotoRecord
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


# ---- a gallery with group photos (synthetic embeddings, crops as placeholder bytes) -----------

GROUP_PEOPLE = ("Ada", "Bob", "Cy", "Dee", "Eli")


def cluster(rng: np.random.Generator, centre: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` unit vectors near ``centre`` (one person's faces)."""
    return [unit_vector(centre + 0.04 * rng.standard_normal(centre.shape)) for _ in range(count)]


def put_photo(stores, key: str, faces: list[tuple[str | None, np.ndarray]]) -> None:
    """An enrolled photo in ``stores`` (a storage.ports.Stores) with ``faces`` (label or None,
    embedding) and their crops."""
    person = key.split("/")[0]
    records = [
        replace(face_record(key, index, label), embedding=embedding)
        for index, (label, embedding) in enumerate(faces)
    ]
    stores.catalog.put_photo(
        PhotoRecord(key, person, f"sha-{key}", "enrolled", "", len(records), 640, 480), records
    )
    for record in records:
        stores.faces.put(record.crop_key, b"png " + record.crop_key.encode())


def enrol_group(stores, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """GROUP_PEOPLE with six single-face photos each, and group photos whose other faces are
    nobody's label: Ada in Bob's and Cy's photos, a stranger in Bob's, Bob in Ada's. Returns
    each person's centre."""
    centres = {name: unit_vector(rng.standard_normal(EMBEDDING_SIZE)) for name in GROUP_PEOPLE}
    for person in GROUP_PEOPLE:
        for number, embedding in enumerate(cluster(rng, centres[person], 6)):
            put_photo(stores, f"{person}/p{number}.jpg", [(person, embedding)])
    stranger = unit_vector(rng.standard_normal(EMBEDDING_SIZE))
    put_photo(
        stores,
        "Bob/party.jpg",
        [
            ("Bob", cluster(rng, centres["Bob"], 1)[0]),
            (None, cluster(rng, centres["Ada"], 1)[0]),
            (None, stranger),
        ],
    )
    put_photo(
        stores,
        "Cy/trip.jpg",
        [("Cy", cluster(rng, centres["Cy"], 1)[0]), (None, cluster(rng, centres["Ada"], 1)[0])],
    )
    put_photo(
        stores,
        "Ada/group.jpg",
        [("Ada", cluster(rng, centres["Ada"], 1)[0]), (None, cluster(rng, centres["Bob"], 1)[0])],
    )
    return centres
