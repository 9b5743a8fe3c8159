"""`facerec identify` on many photos: one JSON line per photo as it is answered, in input
order, a bad photo's error on its own line, a progress bar on stderr."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from contextlib import redirect_stdout

import numpy as np
import pytest
from PIL import Image

from facerec.core.errors import FaceRecError
from facerec.flows.identify import identify_photo, identify_photos
from facerec.interfaces.cli import EXIT_BROKEN_PIPE, EXIT_OK, EXIT_PARTIAL, main

pytestmark = pytest.mark.model


def run(workspace, assets, *args) -> list[str]:
    return ["--workspace", str(workspace), "--cache-dir", str(assets.cache_dir), *args]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, assets, sample_set):
    """A workspace with the sample set's train photos ingested and a model trained."""
    workspace = tmp_path_factory.mktemp("identify-many") / "workspace"
    with redirect_stdout(io.StringIO()):
        ingested = main(run(workspace, assets, "ingest", str(sample_set / "train"), "--quiet"))
        assert main(run(workspace, assets, "train")) == EXIT_OK
    assert ingested == EXIT_PARTIAL  # one photo of the train part has no face
    return workspace


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_set):
    """The 25 val photos with a corrupt JPEG and a photo without a face among them."""
    folder = tmp_path_factory.mktemp("bad-photos")
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    faceless = folder / "gradient.png"
    ramp = np.linspace(0, 255, 200, dtype=np.uint8)
    Image.fromarray(np.dstack([np.tile(ramp, (200, 1))] * 3)).save(faceless)
    val = sorted((sample_set / "val").glob("*/*.jpg"))
    assert len(val) == 25
    return [*val[:10], corrupt, *val[10:20], faceless, *val[20:]]


def test_jsonl_prints_one_line_per_photo_in_order_with_the_people_named(
    trained, assets, photos, capsys
):
    code = main(run(trained, assets, "identify", "--jsonl", "--progress", *map(str, photos)))
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]

    assert code == EXIT_PARTIAL
    assert [line["photo"] for line in lines] == [str(photo) for photo in photos]
    by_photo = {line["photo"]: line for line in lines}
    assert by_photo[str(photos[10])]["error"] == "corrupt_image"
    assert (
        by_photo[str(photos[21])]["error"] == "no_face" and "message" in by_photo[str(photos[21])]
    )
    named = [
        any(
            face["facenet"]["person"] == photo.parent.name for face in by_photo[str(photo)]["faces"]
        )
        for photo in photos
        if photo.suffix == ".jpg" and photo.parent.parent.name == "val"
    ]
    assert len(named) == 25 and sum(named) >= 24  # the demo's val accuracy is at least 0.96
    first = next(line for line in lines if "faces" in line)
    assert {"width", "height", "engines", "model_id"} <= first.keys()
    assert "27/27" in captured.err  # the progress bar, on stderr only


def test_text_and_json_answer_the_same_photos_and_no_bar_without_a_terminal(
    trained, assets, photos, capsys
):
    chosen = [str(photo) for photo in photos[9:12]]  # a good photo, the corrupt one, a good one
    assert main(run(trained, assets, "identify", "--json", *chosen)) == EXIT_PARTIAL
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert list(document) == chosen and document[chosen[1]]["error"] == "corrupt_image"
    assert captured.err == ""
    assert main(run(trained, assets, "identify", *chosen)) == EXIT_PARTIAL
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith(f"{chosen[0]}: x=") and "facenet" in text[0]
    assert any(line.startswith(f"{chosen[1]}: corrupt_image: ") for line in text)
    assert text[-1].startswith(f"{chosen[2]}: x=")


def test_a_reader_leaving_early_stops_the_run(trained, assets, photos):
    """`facerec identify --jsonl ... | head -1`: the command ends with 141, not hanging."""
    command = [sys.executable, "-m", "facerec", *run(trained, assets, "identify", "--jsonl")]
    process = subprocess.Popen(
        [*command, *map(str, photos)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = json.loads(process.stdout.readline())
    process.stdout.close()
    assert first["photo"] == str(photos[0])
    assert process.wait(timeout=120) == EXIT_BROKEN_PIPE
    process.stderr.close()


def test_batched_answers_equal_the_one_photo_answers(enrolled, photos):
    """identify_photos (batched, pipelined) answers each photo as identify_photo does."""
    local, _, _ = enrolled
    engines = ("facenet", "nearest")
    data = [photo.read_bytes() for photo in photos]

    def alone(photo: bytes):
        try:
            return identify_photo(local.analyser, local.engines, engines, photo)
        except FaceRecError as error:
            return error.code

    batched = identify_photos(local.analyser, local.engines, engines, data)
    answers = [answer if isinstance(answer, dict) else answer.code for answer in batched]
    assert answers == [alone(photo) for photo in data]
    assert answers[10] == "corrupt_image" and answers[21] == "no_face"


def test_closing_the_answers_early_stops_the_pipeline(enrolled, photos):
    local, _, _ = enrolled
    before = threading.active_count()
    answers = identify_photos(
        local.analyser, local.engines, ("facenet",), (photo.read_bytes() for photo in photos)
    )
    assert next(answers)["faces"]
    answers.close()
    assert threading.active_count() == before
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("pipeline-")]
