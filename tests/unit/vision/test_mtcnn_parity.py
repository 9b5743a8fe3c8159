"""The served detector (MTCNN's cascade in NumPy around the converted networks on ONNX Runtime)
finds the faces the ``mtcnn`` package finds on TensorFlow: same count per photo, boxes with
IoU over 0.99, landmarks within 1 px, on every sample-set photo and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facerec.core.errors import AssetError
from facerec.vision.detection import FaceDetector
from facerec.vision.images import decode_image
from facerec.vision.runtime import MTCNN, ModelFiles

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def detector(assets) -> FaceDetector:
    return FaceDetector(ModelFiles(assets.models))


@pytest.fixture(scope="module")
def package():
    from facerec.vision.mtcnn_tf import PackageDetector

    return PackageDetector()


@pytest.fixture(scope="module")
def photos(sample_set) -> list[np.ndarray]:
    """The sample set's 118 photos, decoded, in path order."""
    paths = sorted(sample_set.glob("*/*/*.jpg"))
    assert len(paths) == 118
    return [decode_image(path.read_bytes()) for path in paths]


def box_iou(first: np.ndarray, second: np.ndarray) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    sides = np.minimum(first[2:], second[2:]) - np.maximum(first[:2], second[:2])
    intersection = float(np.prod(np.maximum(sides, 0)))
    areas = np.prod(first[2:] - first[:2]) + np.prod(second[2:] - second[:2])
    return intersection / float(areas - intersection)


def assert_same_rows(ours: np.ndarray, reference: np.ndarray, label) -> list[float]:
    """Rows of one photo (``BatchDetector.scan``) match one to one: returns each pair's IoU."""
    assert len(ours) == len(reference), (label, ours[:, 5], reference[:, 5])
    ious = []
    for row in ours:
        pair = [box_iou(row[1:5], other[1:5]) for other in reference]
        match = reference[int(np.argmax(pair))]
        ious.append(max(pair))
        assert max(pair) > 0.99, (label, row, match)
        assert np.abs(row[6:16] - match[6:16]).max() < 1.0, (label, row, match)
        assert abs(row[5] - match[5]) < 1e-3, (label, row, match)
    return ious


def test_the_sample_set_gives_the_packages_faces(detector, package, photos):
    ious = []
    for index, photo in enumerate(photos):
        ious += assert_same_rows(detector.scan([photo]), package.scan([photo]), index)
    assert len(ious) >= 118  # every photo has its person's face, a few have more


def test_a_batch_of_mixed_shapes_gives_each_photos_faces_alone(detector, package, photos):
    assert len({photo.shape for photo in photos}) > 1
    batched = detector.detect_batch(photos)
    for photo, faces in zip(photos, batched, strict=True):
        alone = detector.detect(photo)
        assert [face.box for face in faces] == [face.box for face in alone]
        for face, same in zip(faces, alone, strict=True):
            assert np.abs(face.landmarks - same.landmarks).max() < 1e-3
            assert abs(face.confidence - same.confidence) < 1e-5
    assert [len(faces) for faces in batched] == [
        len(faces) for faces in package.detect_batch(photos)
    ]


def test_a_flat_gray_photo_has_no_face(detector, package):
    gray = np.full((240, 320, 3), 128, dtype=np.uint8)
    assert detector.detect(gray) == []
    assert len(package.scan([gray])) == 0


@pytest.mark.parametrize("side", [1, 11, 12, 24, 40])
def test_tiny_photos_give_what_the_package_gives(detector, package, photos, side):
    tiny = np.asarray(Image.fromarray(photos[0]).resize((side, side), Image.BILINEAR))
    ours = detector.scan([tiny])
    assert_same_rows(ours, package.scan([tiny]), side)
    assert ours.shape[1] == 16


def test_non_square_photos_give_what_the_package_gives(detector, package, photos):
    photo = photos[0]
    height, width = photo.shape[:2]
    wide = np.full((height, width * 3, 3), 90, dtype=np.uint8)
    wide[:, width : 2 * width] = photo
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))  # the face lies on its side
    strip = photo[height // 4 : height // 4 + 120]
    for label, image in {"wide": wide, "tall": tall, "strip": strip}.items():
        assert_same_rows(detector.scan([image]), package.scan([image]), label)
    wide_faces = detector.detect(wide)
    assert len(wide_faces) >= 1 and width <= wide_faces[0].box[0] < 2 * width


def test_export_writes_checks_and_records_the_three_networks(tmp_path, sample_set):
    from facerec.vision.mtcnn_tf import PARITY_TOLERANCE, export_networks

    files = ModelFiles(tmp_path / "onnx")
    entries = export_networks(files, sample_set)

    assert sorted(entries) == sorted(MTCNN)
    for name in MTCNN:
        entry = files.entry(name)
        assert entry == entries[name] and entry["source"] == "mtcnn==1.0.0"
        assert entry["parity"]["inputs"] >= 18
        assert 0 <= entry["parity"]["max_abs_difference"] <= PARITY_TOLERANCE
        files.verify(name)
    detector = FaceDetector(files)
    assert detector.detect(np.asarray(Image.open(sorted(sample_set.glob("val/*/*.jpg"))[0])))

    with pytest.raises(AssetError, match="no sample photos"):
        export_networks(ModelFiles(tmp_path / "other"), tmp_path / "nowhere")


def test_patches_in_several_calls_give_the_same_faces(detector, photos, monkeypatch):
    from facerec.vision import mtcnn

    shapes = [photo.shape for photo in photos]
    common = max(set(shapes), key=shapes.count)
    batch = [photo for photo in photos if photo.shape == common][:8]
    expected = detector.scan(batch)
    monkeypatch.setattr(mtcnn, "PATCH_BATCH", 3)
    rows = detector.scan(batch)
    assert rows.shape == expected.shape and len(rows) >= 4
    assert np.abs(rows - expected).max() < 1e-3
