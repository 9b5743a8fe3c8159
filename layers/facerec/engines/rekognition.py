"""Amazon Rekognition as an engine: each face crop searched on its own in a collection.

SearchFacesByImage searches with the largest face of an image only, so every face of a photo
is sent as its own crop; similarity is on Rekognition's 0-100 scale.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from facerec.core.errors import NoFaceFound
from facerec.engines.base import UNKNOWN, Answer, Identification, Probe
from facerec.storage.ports import FaceCollection
from facerec.vision.images import encode_png

REMEMBERED_FACES = 64  # answers kept so one request asking twice for a face pays once


class PeopleLookup(Protocol):
    """FaceId -> person for the given FaceIds that it knows (the face-index table, or an
    evaluation's gallery)."""

    def people(self, face_ids) -> dict[str, str]: ...


class RekognitionEngine:
    """``person`` is the best match's person, "unknown" when its similarity is under
    ``min_similarity`` (0-100), nothing matched or Rekognition found no face in the crop.
    The search asks with FaceMatchThreshold 0 and applies ``min_similarity`` here, so the
    best match under it comes with the same call: it is the answer's ``candidate`` (shown
    beside "unknown"). FaceIds in ``exclude`` never match (the held-out faces of an
    evaluation).

    A face asked again (the same probe object: "rekognition" and "hybrid" in one request) is
    answered from memory: every search is a billed call."""

    name = "rekognition"
    available = True
    reason = ""

    def __init__(
        self,
        collection: FaceCollection,
        people: PeopleLookup,
        min_similarity: float,
        exclude: frozenset[str] = frozenset(),
    ):
        if not 0.0 <= min_similarity <= 100.0:
            raise ValueError(
                f"min_similarity is on Rekognition's 0-100 scale (e.g. 90); got {min_similarity}"
            )
        self.collection, self.lookup = collection, people
        self.min_similarity, self.exclude = min_similarity, exclude
        self._asked: OrderedDict[int, tuple[Probe, Answer]] = OrderedDict()

    def identify(self, faces: Sequence[Probe]) -> Identification:
        """One answer per face: ``similarity`` (None when Rekognition found no face, then
        also ``reason``)."""
        return Identification(
            tuple(self._answer(face) for face in faces),
            {
                "available": True,
                "collection_id": self.collection.collection_id,
                "min_similarity": self.min_similarity,
            },
        )

    def _answer(self, face: Probe) -> Answer:
        remembered = self._asked.get(id(face))
        if remembered is not None and remembered[0] is face:
            return remembered[1]
        answer = self.search(encode_png(face.crop))
        self._asked[id(face)] = (face, answer)  # holding the probe keeps its id unique
        while len(self._asked) > REMEMBERED_FACES:
            self._asked.popitem(last=False)
        return answer

    def search(self, crop: bytes) -> Answer:
        """A PNG or JPEG face crop -> the answer (one SearchFacesByImage call)."""
        try:
            matches = [
                match
                for match in self.collection.search(crop, 0.0, 1 + len(self.exclude))
                if match.face_id not in self.exclude
            ]
        except NoFaceFound as error:
            return Answer(UNKNOWN, None, None, {"similarity": None, "reason": str(error)})
        best = matches[0] if matches else None
        person = self.lookup.people([best.face_id]).get(best.face_id) if best else None
        similarity = round(best.similarity, 4) if best else 0.0
        fields = {"similarity": similarity}
        if best and person is None:
            fields["reason"] = "the matched FaceId is not in the face index table"
        accepted = person is not None and best.similarity >= self.min_similarity
        return Answer(person if accepted else UNKNOWN, similarity, person, fields)

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "collection_id": self.collection.collection_id,
            "face_model_version": self.collection.face_model_version(),
            "min_similarity": self.min_similarity,
        }
