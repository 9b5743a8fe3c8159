"""Identify every face in a photo with the engines asked for, composed by name.

The order: decode and validate, detect, crop, embed (the analyser), then each engine answers
every face. An engine that is not available here says why in its summary; when none of the
engines asked for is available the request fails before any work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from facerec.engines.base import Engine
from facerec.vision.analyser import FaceAnalyser


def identify_photo(
    analyser: FaceAnalyser, engines: Mapping[str, Engine], names: Sequence[str], data: bytes
) -> dict:
    """Photo bytes -> ``{"width", "height", "faces", "engines", "model_id"?}``: every face
    with its box and, per engine in ``names``, its answer (``Answer.to_dict``); per engine
    its summary. Raises ImageError, NoFaceFound, TooManyFaces, ModelNotFound and, when no
    engine asked for is available, EngineUnavailable."""
    chosen = {name: engines[name] for name in names}
    if not any(engine.available for engine in chosen.values()):
        next(iter(chosen.values())).identify([])  # raises EngineUnavailable, before any work
    image, analysed = analyser.analyse_photo(data)
    faces = [item.face.to_dict() for item in analysed]
    result: dict = {"width": image.shape[1], "height": image.shape[0], "engines": {}}
    for name, engine in chosen.items():
        if not engine.available:
            result["engines"][name] = {"available": False, "reason": engine.reason}
            continue
        found = engine.identify(analysed)
        result["engines"][name] = found.summary
        if found.model_id is not None:
            result.setdefault("model_id", found.model_id)
        for face, answer in zip(faces, found.answers, strict=True):
            if answer is not None:
                face[name] = answer.to_dict()
    result["faces"] = faces
    return result
