"""Identify every face in photos with the engines asked for, composed by name.

The order: decode and validate, detect, crop, embed (the analyser), then each engine answers
every face. An engine that is not available here says why in its summary; when none of the
engines asked for is available the request fails before any work. ``identify_photo`` answers
one photo (the API); ``identify_photos`` many, in batches through the analyser's pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from facerec.core.errors import FaceRecError, ImageError, NoFaceFound
from facerec.engines.base import Engine, Identification
from facerec.vision.analyser import AnalysedFace, FaceAnalyser
from facerec.vision.images import decode_image
from facerec.vision.pipeline import batches, each, pipelined


def identify_photo(
    analyser: FaceAnalyser, engines: Mapping[str, Engine], names: Sequence[str], data: bytes
) -> dict:
    """Photo bytes -> ``{"width", "height", "faces", "engines", "model_id"?}``: every face
    with its box and, per engine in ``names``, its answer (``Answer.to_dict``); per engine
    its summary. Raises ImageError, NoFaceFound, TooManyFaces, ModelNotFound and, when no
    engine asked for is available, EngineUnavailable."""
    chosen = _chosen(engines, names)
    image, analysed = analyser.analyse_photo(data)
    found = {name: engine.identify(analysed) for name, engine in chosen.items() if engine.available}
    return _result(image.shape, analysed, chosen, found)


def identify_photos(
    analyser: FaceAnalyser,
    engines: Mapping[str, Engine],
    names: Sequence[str],
    photos: Iterable[bytes | Exception],
) -> Iterator[dict | Exception]:
    """Photo bytes (or the error that kept a photo from being read, passed on as it is) ->
    per photo, in order, ``identify_photo``'s result or its error (ImageError, NoFaceFound,
    TooManyFaces, or an engine's FaceRecError such as ModelNotFound): a photo's error never
    stops the others.

    Photos go through the analyser in batches of ``settings.detector.batch_size`` (decode and
    MTCNN in one thread, FaceNet in another, overlapped); the engines then answer photo by
    photo, as ``identify_photo`` does. EngineUnavailable, before any work, when
    no engine asked for is available. Close the iterator to stop early: it stops the
    pipeline's threads (the source is read in one of them)."""
    chosen = _chosen(engines, names)
    limits = analyser.settings.image_limits
    decode = each(lambda data: decode_image(data, limits), (ImageError,))
    analysed = pipelined(
        batches(photos, analyser.settings.detector.batch_size),
        (lambda batch: analyser.detect(decode(batch)), analyser.embed),
    )
    return _answered(analysed, chosen)


def _answered(analysed: Iterator[list], chosen: Mapping[str, Engine]) -> Iterator:
    try:
        for batch in analysed:
            yield from _identify_batch(batch, chosen)
    finally:
        analysed.close()


def _chosen(engines: Mapping[str, Engine], names: Sequence[str]) -> dict[str, Engine]:
    """The engines asked for; EngineUnavailable when none of them is available."""
    chosen = {name: engines[name] for name in names}
    if not any(engine.available for engine in chosen.values()):
        next(iter(chosen.values())).identify([])  # raises EngineUnavailable, before any work
    return chosen


def _identify_batch(
    batch: Sequence[tuple[np.ndarray, list[AnalysedFace]] | Exception],
    chosen: Mapping[str, Engine],
) -> list[dict | Exception]:
    """The analyser's output for a batch of photos -> per photo its result or error. Each
    available engine answers each photo's faces on their own (an engine's summary, such as
    hybrid's ``routed`` count, is the photo's); an engine's FaceRecError is that photo's."""
    outcomes: list[dict | Exception] = []
    for item in batch:
        if isinstance(item, Exception):
            outcomes.append(item)
            continue
        image, analysed = item
        if not analysed:
            outcomes.append(NoFaceFound("no face found in the photo"))
            continue
        try:
            found = {
                name: engine.identify(analysed)
                for name, engine in chosen.items()
                if engine.available
            }
        except FaceRecError as error:
            outcomes.append(error)
            continue
        outcomes.append(_result(image.shape, analysed, chosen, found))
    return outcomes


def _result(
    shape: tuple[int, ...],
    analysed: Sequence[AnalysedFace],
    chosen: Mapping[str, Engine],
    found: Mapping[str, Identification],
) -> dict:
    """One photo's answer: its size, its faces with each engine's answer, each engine's
    summary (or why it is not available) and the model that answered."""
    faces = [item.face.to_dict() for item in analysed]
    result: dict = {"width": shape[1], "height": shape[0], "engines": {}}
    for name, engine in chosen.items():
        if not engine.available:
            result["engines"][name] = {"available": False, "reason": engine.reason}
            continue
        identification = found[name]
        result["engines"][name] = identification.summary
        if identification.model_id is not None:
            result.setdefault("model_id", identification.model_id)
        for face, answer in zip(faces, identification.answers, strict=True):
            if answer is not None:
                face[name] = answer.to_dict()
    result["faces"] = faces
    return result
