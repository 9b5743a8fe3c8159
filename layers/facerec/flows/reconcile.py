"""Reconciliation: find what the event chain should have made and did not, and repair it with
the chain's own steps.

An event can be lost for good (its retries exhausted, its dead letter not replayed) or a run
can stop between two writes. For every labelled face of the catalog this checks that its crop
is stored, that its embedding comes from the current weights, that it has a FaceId in the
collection and a vector in the vector store (the last three only where the deployment has
them), and it finds crops that no catalogued face holds (left by an enrolment that stopped
before recording its photo). Repairs, in this order per crop: re-embed, re-store the vector,
re-index; an orphan crop is deleted (its photo is enrolled again on its next upload or
re-run). A crop Rekognition refused is not a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from facerec.core.errors import FaceRecError
from facerec.flows.chain import StepResult, indexed_crops
from facerec.storage.ports import Stores

GAPS = ("crop", "embedding", "vector", "face_id", "orphan")
REPAIRABLE = ("embedding", "vector", "face_id", "orphan")


@dataclass(frozen=True)
class Gap:
    """A crop key and what is missing for it (names from GAPS)."""

    crop_key: str
    missing: tuple[str, ...]


def find_gaps(stores: Stores, collection_id: str | None = None) -> list[Gap]:
    """Every gap, crop keys sorted. The embedding check needs a catalog that stamps what
    embedded each face (``embedding_model``); the FaceId check needs
    ``collection_id`` and the face-index table; the vector check the vector store."""
    catalog, faces = stores.catalog, stores.faces
    labelled = catalog.faces()
    stored_crops = set(faces.keys())
    catalogued = {face.crop_key for face in catalog.faces(labelled_only=False)}
    stamps = getattr(catalog, "embedding_model", "")
    indexed = refused = None
    if stores.face_index is not None and collection_id is not None:
        indexed = set(indexed_crops(stores.face_index, collection_id).values())
        refused = {
            face.crop_key
            for face in labelled
            if face.crop_key not in indexed
            and (catalog.indexing_state(collection_id, face.crop_key) or {}).get("state")
            == "refused"
        }
    vectors = (
        stores.vectors.stored_faces([face.crop_key for face in labelled])
        if stores.vectors is not None
        else None
    )
    gaps = []
    for face in labelled:
        missing = []
        if face.crop_key not in stored_crops:
            missing.append("crop")
        if stamps and face.embedding_model != stamps:
            missing.append("embedding")
        if vectors is not None and face.crop_key not in vectors:
            missing.append("vector")
        if indexed is not None and face.crop_key not in indexed | refused:
            missing.append("face_id")
        if missing:
            gaps.append(Gap(face.crop_key, tuple(missing)))
    gaps += [Gap(key, ("orphan",)) for key in stored_crops - catalogued if key.endswith(".png")]
    return sorted(gaps, key=lambda gap: gap.crop_key)


def repair(gaps: list[Gap], steps: Mapping[str, Callable[[str], StepResult]]) -> dict:
    """Run ``steps[name](crop_key)`` for each repairable gap that has a step (in REPAIRABLE
    order per crop). Returns counts ``{"found": {gap: n}, "repaired": {gap: n}}`` and
    ``failed`` (``[{"crop_key", "gap", "reason"}]``: a FaceRecError; other errors propagate,
    as a retry may cure them)."""
    found = {name: sum(name in gap.missing for gap in gaps) for name in GAPS}
    repaired = dict.fromkeys(GAPS, 0)
    failed = []
    for gap in gaps:
        for name in REPAIRABLE:
            if name not in gap.missing or name not in steps:
                continue
            try:
                steps[name](gap.crop_key)
            except FaceRecError as error:
                failed.append({"crop_key": gap.crop_key, "gap": name, "reason": str(error)})
                break
            repaired[name] += 1
    return {"found": found, "repaired": repaired, "failed": failed}


def delete_orphan(stores: Stores) -> Callable[[str], StepResult]:
    """The repair of an orphan crop: delete it from the faces store."""

    def step(crop_key: str) -> StepResult:
        stores.faces.delete(crop_key)
        return StepResult("deleted", "no catalogued face held it")

    return step
