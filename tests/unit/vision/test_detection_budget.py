"""The detection budget and the face cap (issue 11, item 5): MTCNN scans at most
``DetectorSettings.max_pixels`` (larger photos downscaled, their faces mapped back to the
photo's pixels), photos within it exactly as before, and a photo over the face cap is refused
before any face is cropped or embedded."""

from __future__ import annotations

import copy
import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from facerec.core.errors import TooManyFaces
from facerec.core.settings import DetectorSettings
from facerec.flows.enrol import Enrolment, PhotoInput
from facerec.storage.local import local_stores
from facerec.vision.alignment import align_face
from facerec.vision.analyser import FaceAnalyser
from facerec.vision.detection import Face, scan_size
from facerec.vision.images import decode_image
from tests.support import sample_photos


@pytest.mark.parametrize(
    ("size", "budget", "expected"),
    [
        ((250, 200), 50_000, (250, 200)),  # exactly the budget: as it is
        ((3000, 4000), 12_000_000, (3000, 4000)),
        ((6000, 6000), 2_500_000, (1581, 1581)),
        ((3000, 4000), 2_500_000, (1369, 1825)),
        ((80, 40_000), 2_500_000, (70, 35355)),
        ((1, 10_000), 100, (1, 100)),  # a side is never under 1 px, the budget still holds
        ((10_000, 1), 100, (100, 1)),
    ],
)
def test_scan_size_keeps_photos_within_the_budget_and_shrinks_larger_ones(size, budget, expected):
    height, width = scan_size(size, budget)
    assert (height, width) == expected
    assert height * width <= budget
    if min(expected) > 1 and expected != size:  # the aspect ratio is kept to the pixel
        assert abs(height / width - size[0] / size[1]) < 1 / min(height, width)


def test_the_default_budget_shrinks_a_6000_px_square_and_keeps_a_full_hd_frame():
    budget = DetectorSettings().max_pixels
    assert scan_size((1080, 1920), budget) == (1080, 1920)
    assert scan_size((6000, 6000), budget) == (1581, 1581)


class CountingEmbedder:
    """The real FaceNet embedder, counting the crops it is given (one entry a call); anything
    else is the real one's."""

    def __init__(self, embedder):
        self.real, self.calls = embedder, []

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.calls.append(len(crops))
        return self.real.embed(crops)


def face_tile(analyser, sample_set, count: int = 150, cell: int = 80) -> bytes:
    """A JPEG of ``count`` sample faces (aligned crops of 20 photos, repeated; ``cell`` px),
    15 a row."""
    paths = sample_photos(sample_set, "val", per_person=4)
    images = [decode_image(path.read_bytes()) for path in paths]
    crops = [face.crop for faces in analyser.analyse(images) for face in faces]
    columns = 15
    rows = -(-count // columns)
    tile = Image.new("RGB", (columns * cell, rows * cell))
    for index in range(count):
        row, column = divmod(index, columns)
        face = Image.fromarray(crops[index % len(crops)]).resize((cell, cell))
        tile.paste(face, (column * cell, row * cell))
    buffer = io.BytesIO()
    tile.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_photo_over_the_face_cap_is_refused_before_any_face_is_embedded(analyser, sample_set):
    embedder = CountingEmbedder(analyser.embedder)
    counted = FaceAnalyser(analyser.detector, embedder, analyser.settings)
    tile = face_tile(analyser, sample_set)

    with pytest.raises(TooManyFaces) as caught:
        counted.analyse_photo(tile)

    found = int(str(caught.value).split()[0])
    assert found > analyser.settings.max_faces == 100
    assert str(caught.value) == f"{found} faces; at most 100"
    assert embedder.calls == []  # not one face was embedded
    one = sample_photos(sample_set, "val", per_person=1)[0].read_bytes()
    _, faces = counted.analyse_photo(one)  # the counter counts: a photo within the cap
    assert embedder.calls == [len(faces)]


def raw_mtcnn_faces(detector, image: np.ndarray) -> list[Face]:
    """The faces as the code before the detection budget built them from MTCNN's rows."""
    rows = detector.scan([image])
    faces = [
        Face(
            box=tuple(round(float(value)) for value in row[1:5]),
            confidence=float(row[5]),
            landmarks=np.asarray(row[6:16], dtype=np.float32).reshape(2, 5).T,
        )
        for row in rows
    ]
    settings = detector.settings
    faces = [
        face
        for face in faces
        if face.confidence >= settings.min_confidence and min(face.width, face.height) > 0
    ]
    return sorted(faces, key=lambda face: face.confidence, reverse=True)


def test_photos_within_the_budget_give_byte_identical_aligned_crops(analyser, sample_set):
    compared = 0
    for path in sample_photos(sample_set, "val"):
        image = decode_image(path.read_bytes())
        assert image.shape[0] * image.shape[1] <= analyser.detector.settings.max_pixels
        expected = raw_mtcnn_faces(analyser.detector, image)
        faces = analyser.analyse([image])[0]
        assert [face.face.box for face in faces] == [face.box for face in expected], path
        for face, reference in zip(faces, expected, strict=True):
            assert face.face.landmarks.tobytes() == reference.landmarks.tobytes()
            assert face.crop.tobytes() == align_face(image, reference).tobytes()
            compared += 1
    assert compared >= 25


@pytest.fixture
def spied_detector(analyser, monkeypatch):
    """A copy of the loaded detector (same networks) whose scanned photos' shapes are recorded
    a list per scan; set its ``settings`` for a small budget."""
    detector = copy.copy(analyser.detector)
    calls: list[list[tuple[int, ...]]] = []
    real = analyser.detector.scan

    def scan(images):
        calls.append([image.shape for image in images])
        return real(images)

    monkeypatch.setattr(detector, "scan", scan)
    detector.calls = calls
    return detector


def test_a_photo_over_the_budget_is_scanned_downscaled_and_its_faces_mapped_back(
    analyser, sample_set, spied_detector
):
    path = sample_photos(sample_set, "val", per_person=1)[0]
    small = decode_image(path.read_bytes())
    height, width = small.shape[:2]
    large = np.asarray(Image.fromarray(small).resize((width * 4, height * 4), Image.BICUBIC))
    spied_detector.settings = replace(spied_detector.settings, max_pixels=height * width)
    budgeted = FaceAnalyser(spied_detector, analyser.embedder, analyser.settings)

    faces = budgeted.analyse([large])[0]
    reference = analyser.analyse([small])[0]

    assert spied_detector.calls == [[(height, width, 3)]]  # the detector never saw the large photo
    assert len(faces) == len(reference) >= 1
    for face, seen in zip(faces, reference, strict=True):
        expected_box = np.array(seen.face.box) * 4
        assert np.abs(np.array(face.face.box) - expected_box).max() <= 8, (face, seen)
        assert np.abs(face.face.landmarks - seen.face.landmarks * 4).max() <= 8
        assert float(face.embedding @ seen.embedding) > 0.9  # cut from the large photo


def test_large_photos_share_a_scan_only_within_the_budget(analyser, spied_detector):
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (400, 400, 3), dtype=np.uint8) for _ in range(3)]
    photos.append(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
    spied_detector.settings = replace(spied_detector.settings, max_pixels=350_000)

    spied_detector.detect_batch(photos)

    assert spied_detector.calls == [[(400, 400, 3)] * 2, [(400, 400, 3)], [(100, 100, 3)]]


def test_ingest_refuses_a_photo_over_the_face_cap_without_embedding_its_faces(
    analyser, sample_set, tmp_path
):
    """The batch path (enrolment) as well: the tile is refused, the photo beside it in the
    same batch is enrolled, and only that photo's faces reach FaceNet."""
    embedder = CountingEmbedder(analyser.embedder)
    counted = FaceAnalyser(analyser.detector, embedder, analyser.settings)
    one = sample_photos(sample_set, "val", per_person=1)[0]
    items = [
        PhotoInput("madonna", "crowd.jpg", face_tile(analyser, sample_set)),
        PhotoInput(one.parent.name, one.name, one.read_bytes()),
    ]
    stores = local_stores(tmp_path / "workspace")

    crowd, single = Enrolment(counted, stores).enrol(items)

    assert (crowd.status, crowd.code) == ("rejected", "too_many_faces")
    assert single.status == "enrolled"
    assert embedder.calls == [single.faces]  # not one crowd face, no empty call
    assert stores.catalog.get_photo("madonna/crowd.jpg").status == "rejected"
