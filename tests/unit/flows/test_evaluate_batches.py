"""Held-out faces asked in batches (flows.evaluate.run_engine's batch_size): the same answers
as face by face, a batch's time shared by its faces, and a batch that raises asked again
face by face so only the face that fails is refused."""

from __future__ import annotations

import pytest

from facerec.core.errors import NoFaceFound
from facerec.engines.facenet import FaceNetEngine
from facerec.engines.nearest import NearestEngine
from facerec.flows.evaluate import run_engine
from tests.unit.analysis.test_comparison import HELD_OUT, HELD_OUT_IDS, nearest_model


def without_seconds(answers: dict) -> dict:
    return {
        face_id: {k: v for k, v in a.items() if k != "seconds"} for face_id, a in answers.items()
    }


@pytest.mark.parametrize("batch_size", [2, 3, 256])
@pytest.mark.parametrize(
    "engine_of", [lambda m: FaceNetEngine(lambda: m), lambda m: NearestEngine(lambda: m.open_set)]
)
def test_batches_answer_as_face_by_face(batch_size, engine_of):
    engine = engine_of(nearest_model(HELD_OUT_IDS))
    one, batched = run_engine(engine, HELD_OUT), run_engine(engine, HELD_OUT, batch_size=batch_size)
    assert without_seconds(batched.answers) == without_seconds(one.answers)
    assert list(batched.answers) == list(one.answers)  # held-out order kept
    assert f"up to {batch_size} stored embeddings" in batched.describe["timed"]
    seconds = [batched.answers[face.face_id]["seconds"] for face in HELD_OUT]
    assert len(set(seconds[:batch_size])) == 1 and seconds[0] > 0  # one batch, one share


class RefusingOne:
    """The FaceNet engine, but a face with ``refused`` id raises NoFaceFound, as a whole batch
    holding it does; counts the calls."""

    def __init__(self, engine, refused: str):
        self.engine, self.refused, self.calls = engine, refused, []
        self.name, self.available, self.reason = engine.name, True, ""

    def identify(self, faces):
        self.calls.append([face.face_id for face in faces])
        if any(face.face_id == self.refused for face in faces):
            raise NoFaceFound("no face in this crop")
        return self.engine.identify(faces)

    def describe(self):
        return self.engine.describe()


def test_a_batch_that_raises_is_asked_again_face_by_face():
    model = nearest_model(HELD_OUT_IDS)
    refused = HELD_OUT[1].face_id
    engine = RefusingOne(FaceNetEngine(lambda: model), refused)
    run = run_engine(engine, HELD_OUT, batch_size=3)
    assert run.answers[refused]["reason"] == "no face in this crop"
    assert run.answers[refused]["person"] is None
    one = without_seconds(run_engine(FaceNetEngine(lambda: model), HELD_OUT).answers)
    others = {k: v for k, v in without_seconds(run.answers).items() if k != refused}
    assert others == {k: v for k, v in one.items() if k != refused}
    ids = [face.face_id for face in HELD_OUT]
    # the first batch failed, then each of its faces alone; the second batch answered at once
    assert engine.calls == [ids[:3], [ids[0]], [ids[1]], [ids[2]], ids[3:]]
