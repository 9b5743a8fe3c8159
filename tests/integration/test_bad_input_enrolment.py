"""One enrolment batch with every kind of bad input beside good photos, through the real MTCNN
and FaceNet: each photo gets exactly one outcome with the exact status and code, the batch
completes, rejected bytes are quarantined with their reason, nothing is written outside the
workspace, and enrolling the batch again changes nothing. Every bad file is derived here from
the sample set's photos or generated with Pillow/numpy."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerec.flows.enrol import PhotoInput, PhotoOutcome
from facerec.storage.local import BUCKETS

pytestmark = pytest.mark.model

FIFTEEN_MB = 15 * 2**20


@dataclass(frozen=True)
class Case:
    """A photo to enrol and the outcome it must get."""

    person: str
    name: str
    data: bytes
    status: str
    code: str = ""
    faces: int = 0

    @property
    def item(self) -> PhotoInput:
        return PhotoInput(self.person, self.name, self.data)

    @property
    def key(self) -> str:
        return unicodedata.normalize("NFC", f"{self.person}/{self.name}")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def quarantined(self) -> str:
        """Its quarantine key without suffix: by hash, in the person's folder unless the
        name is one no folder could carry."""
        if self.code == "invalid_label":
            return self.sha256
        return f"{self.key.split('/')[0]}/{self.sha256}"


def sample(sample_set: Path, split: str, person: str, index: int) -> Path:
    """The index-th photo (sorted by file name) of a person in the sample set."""
    return sorted((sample_set / split / person).iterdir())[index]


def upright(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    """A JPEG whose pixels are stored sideways with the EXIF tag that turns them upright."""
    stored = image.transpose(
        {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif)


def with_lying_header(png: bytes, width: int, height: int) -> bytes:
    """A real PNG whose IHDR claims another size (CRC fixed): a decompression bomb's header."""
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def tiled(paths: list[Path], height: int = 250) -> Image.Image:
    """Photos side by side, each scaled to the same height."""
    images = [upright(path) for path in paths]
    images = [im.resize((round(im.width * height / im.height), height)) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in images), height))
    left = 0
    for image in images:
        canvas.paste(image, (left, 0))
        left += image.width
    return canvas


def three_face_photo(sample_set: Path) -> bytes:
    """madonna, ben_afflek and elton_john val photos side by side, 250 px high: madonna's face
    on the left, ben's in the centre (the one the "central" rule would pick)."""
    paths = [
        sample(sample_set, "val", person, index)
        for person, index in [("madonna", 0), ("ben_afflek", 0), ("elton_john", 1)]
    ]
    return encode(tiled(paths, height=250), "JPEG", quality=95)


def no_face_photo() -> bytes:
    """300x300: a smooth colour gradient with a little noise, nothing like a face."""
    y, x = np.mgrid[0:300, 0:300]
    rng = np.random.default_rng(0)
    pixels = np.stack([x * 255 / 299, y * 255 / 299, np.full_like(x, 128)], axis=-1)
    pixels = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels), "JPEG")


def files_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def bucket_keys(local) -> dict[str, set[str]]:
    return {
        "ingest": set(local.stores.ingest.keys()),
        "faces": set(local.stores.faces.keys()),
        "quarantine": set(local.stores.quarantine.keys()),
    }


def by_key(outcomes: list[PhotoOutcome]) -> dict[str, PhotoOutcome]:
    keyed = {outcome.key: outcome for outcome in outcomes}
    assert len(keyed) == len(outcomes), "a photo got more than one outcome"
    return keyed


TILE_NAME = "tiled-madonna-ben-elton.jpg"


def build_cases(sample_set: Path) -> list[Case]:
    def photo(split: str, person: str, index: int) -> Path:
        return sample(sample_set, split, person, index)

    def good(person: str, index: int) -> Case:
        path = photo("train", person, index)
        return Case(person, path.name, path.read_bytes(), "enrolled", faces=1)

    def variant(person: str, name: str, data: bytes) -> Case:
        return Case(person, name, data, "enrolled", faces=1)

    def bad(name: str, data: bytes, code: str, person: str = "ben_afflek") -> Case:
        return Case(person, name, data, "rejected", code)

    rgba = upright(photo("train", "ben_afflek", 5)).convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[:20], alpha[-20:], alpha[:, :20], alpha[:, -20:] = 0, 0, 0, 0
    rgba.putalpha(Image.fromarray(alpha))
    palette = upright(photo("train", "madonna", 8)).quantize(255)
    palette.paste(255, (0, 0, palette.width, 15))  # a transparent band along the top
    deep = np.asarray(upright(photo("train", "mindy_kaling", 2)).convert("L"), np.uint16) * 257
    truncated = photo("train", "ben_afflek", 6).read_bytes()
    too_large = photo("train", "ben_afflek", 8).read_bytes()
    face_png = encode(upright(photo("train", "ben_afflek", 9)), "PNG")
    unsupported = upright(photo("train", "madonna", 9))
    return [
        # A photo with three faces, first in the batch: resolved after madonna's single photos.
        Case("madonna", TILE_NAME, three_face_photo(sample_set), "enrolled", faces=3),
        good("ben_afflek", 2),
        good("ben_afflek", 3),
        good("madonna", 1),
        good("madonna", 4),
        good("madonna", 6),
        good("elton_john", 1),
        good("mindy_kaling", 0),
        variant(
            unicodedata.normalize("NFD", "Iñaki Diaz"),
            "iñaki.jpg",
            photo("train", "jerry_seinfeld", 2).read_bytes(),
        ),
        variant(
            "mindy_kaling",
            "grayscale.jpg",
            encode(upright(photo("train", "mindy_kaling", 1)).convert("L"), "JPEG"),
        ),
        variant("mindy_kaling", "grayscale-16-bit.png", encode(Image.fromarray(deep), "PNG")),
        variant(
            "jerry_seinfeld",
            "cmyk.jpg",
            encode(upright(photo("train", "jerry_seinfeld", 3)).convert("CMYK"), "JPEG"),
        ),
        variant(
            "elton_john",
            "exif-orientation-6.jpg",
            with_orientation(upright(photo("train", "elton_john", 2)), 6),
        ),
        variant(
            "ben_afflek",
            "exif-orientation-8.jpg",
            with_orientation(upright(photo("train", "ben_afflek", 4)), 8),
        ),
        variant("ben_afflek", "alpha.png", encode(rgba, "PNG")),
        variant("madonna", "palette.png", encode(palette, "PNG", transparency=255)),
        bad("empty.jpg", b"", "empty_file"),
        bad(
            "random.jpg",
            np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
            "not_an_image",
        ),
        bad("notes.txt", "Ben Affleck, Iñaki Diaz\n".encode() * 40, "not_an_image"),
        bad("truncated.jpg", truncated[: len(truncated) // 2], "corrupt_image"),
        bad("photo.webp", encode(unsupported, "WEBP"), "unsupported_format", "madonna"),
        bad("photo.gif", encode(unsupported, "GIF"), "unsupported_format", "madonna"),
        bad("photo.bmp", encode(unsupported, "BMP"), "unsupported_format", "madonna"),
        bad("photo.tiff", encode(unsupported, "TIFF"), "unsupported_format", "madonna"),
        bad(
            "tiny-50x50.jpg",
            encode(upright(photo("train", "ben_afflek", 7)).resize((50, 50)), "JPEG"),
            "image_too_small",
        ),
        bad(
            "narrow-79x200.png",
            encode(upright(photo("train", "madonna", 10)).resize((79, 200)), "PNG"),
            "image_too_small",
            "madonna",
        ),
        bad("huge.jpg", too_large + b"\0" * (FIFTEEN_MB + 1 - len(too_large)), "image_too_large"),
        bad("bomb.png", with_lying_header(face_png, 30000, 30000), "image_too_large"),
        Case("elton_john", "no-face.jpg", no_face_photo(), "no_face", "no_face"),
        bad(
            "x.jpg",
            photo("train", "mindy_kaling", 3).read_bytes(),
            "invalid_label",
            person="../evil",
        ),
        bad("../../escape.jpg", photo("train", "mindy_kaling", 4).read_bytes(), "invalid_label"),
    ]


def test_a_batch_of_good_and_bad_photos(local, sample_set, tmp_path):
    cases = build_cases(sample_set)
    assert len({case.sha256 for case in cases}) == len(cases)
    workspace = tmp_path / "workspace"
    seen: list[PhotoOutcome] = []

    outcomes = local.enrol([case.item for case in cases], on_outcome=seen.append)

    # Every photo has exactly one outcome, with the exact status, code and face count.
    assert seen == outcomes
    assert len(outcomes) == len(cases)
    outcome_of = by_key(outcomes)
    assert set(outcome_of) == {case.key for case in cases}
    assert {key: (o.status, o.code, o.faces) for key, o in outcome_of.items()} == {
        case.key: (case.status, case.code, case.faces) for case in cases
    }
    assert outcomes[-1].key == f"madonna/{TILE_NAME}"  # several faces: resolved last
    for case in cases:
        outcome = outcome_of[case.key]
        if case.status == "enrolled" and case.faces == 1:
            assert (outcome.labelled_face, outcome.rule) == (0, "single"), case.key
        if case.status != "enrolled":
            assert outcome.reason, case.key

    # Names: NFD "Iñaki Diaz" is stored in NFC; "../evil" and "../../escape.jpg" are refused.
    inaki = unicodedata.normalize("NFC", "Iñaki Diaz")
    assert outcome_of[f"{inaki}/iñaki.jpg"].person == inaki
    assert [face.photo_key for face in local.stores.catalog.faces(inaki)] == [f"{inaki}/iñaki.jpg"]
    assert "may not start with '.'" in outcome_of["../evil/x.jpg"].reason
    assert "photo name" in outcome_of["ben_afflek/../../escape.jpg"].reason

    # The EXIF-rotated photos are stored with their upright size.
    for name, index, person in [
        ("exif-orientation-6.jpg", 2, "elton_john"),
        ("exif-orientation-8.jpg", 4, "ben_afflek"),
    ]:
        original = upright(sample(sample_set, "train", person, index))
        record = local.stores.catalog.get_photo(f"{person}/{name}")
        assert (record.width, record.height) == original.size

    # The tiled photo: madonna's face (the leftmost) is chosen by similarity to her other
    # photos, not by the central rule (which would pick ben in the middle); the other two
    # faces are kept, unlabelled.
    tile = outcome_of[f"madonna/{TILE_NAME}"]
    assert tile.rule == "reference"
    tile_faces = [
        face
        for face in local.stores.catalog.faces(labelled_only=False)
        if face.photo_key == f"madonna/{TILE_NAME}"
    ]
    assert len(tile_faces) == 3
    labelled = [face for face in tile_faces if face.person is not None]
    assert [(face.person, face.index) for face in labelled] == [("madonna", tile.labelled_face)]
    assert (labelled[0].box[0] + labelled[0].box[2]) / 2 < 250
    assert sorted((face.box[0] + face.box[2]) / 2 > 250 for face in tile_faces) == [
        False,
        True,
        True,
    ]
    assert [face.person for face in tile_faces if face.index != tile.labelled_face] == [None, None]

    # The catalog holds every photo with a valid key, with its status; no rows for the others.
    valid = [case for case in cases if case.code != "invalid_label"]
    for case in valid:
        record = local.stores.catalog.get_photo(case.key)
        assert (record.status, record.face_count, record.sha256) == (
            case.status,
            case.faces,
            case.sha256,
        ), case.key
    enrolled = [case for case in cases if case.status == "enrolled"]
    counts = local.stores.catalog.counts()
    assert counts == {
        "people": 6,
        "photos": len(valid),
        "photos_enrolled": len(enrolled),
        "photos_no_face": 1,
        "photos_rejected": len(valid) - len(enrolled) - 1,
        "faces": sum(case.faces for case in enrolled),
        "faces_labelled": len(enrolled),
        "models": 0,
    }

    # Blobs: every upload with a valid key as it was uploaded (enrolled or not: the user's),
    # one crop per face, the refused bytes and their reason.
    keys = bucket_keys(local)
    assert keys["ingest"] == {case.key for case in valid}
    for case in valid:
        assert local.stores.ingest.get(case.key) == case.data
    all_faces = local.stores.catalog.faces(labelled_only=False)
    assert keys["faces"] == {face.crop_key for face in all_faces}
    assert len(keys["faces"]) == len(all_faces)
    refused = [case for case in cases if case.status != "enrolled"]
    assert keys["quarantine"] == {
        f"{case.quarantined}{suffix}" for case in refused for suffix in (".bin", ".json")
    }
    for case in refused:  # in the person's folder, by hash
        assert local.stores.quarantine.get(f"{case.quarantined}.bin") == case.data
        reason = json.loads(local.stores.quarantine.get(f"{case.quarantined}.json"))
        outcome = outcome_of[case.key]
        assert reason == {"key": case.key, "code": case.code, "reason": outcome.reason}

    # Nothing outside the workspace's buckets and catalog.
    allowed = {"catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"}
    for path in files_under(tmp_path):
        top, _, rest = path.partition("/")
        assert top == "workspace", path
        assert rest in allowed or rest.split("/")[0] in BUCKETS, path
    assert not [path for path in files_under(workspace) if "evil" in path or "escape" in path]

    # The same batch again (the Iñaki name now in NFC) changes nothing, and the same bytes
    # under another name are a duplicate.
    before = (local.stores.catalog.counts(), bucket_keys(local), files_under(tmp_path))
    original = cases[1]
    again = [PhotoInput(unicodedata.normalize("NFC", c.person), c.name, c.data) for c in cases]
    copy = Case("elton_john", "copy-of-ben.jpg", original.data, "duplicate")
    second = by_key(local.enrol([*again, copy.item]))

    assert len(second) == len(cases) + 1
    for case in valid:
        assert (second[case.key].status, second[case.key].faces) == ("unchanged", case.faces)
    for case in cases:
        if case.code == "invalid_label":
            assert (second[case.key].status, second[case.key].code) == ("rejected", case.code)
    assert second[copy.key].status == "duplicate"
    assert second[copy.key].faces == 1
    assert original.key in second[copy.key].reason
    assert local.stores.catalog.get_photo(copy.key) is None
    counts, keys, files = before  # only the new upload was added, as uploaded
    keys = {**keys, "ingest": keys["ingest"] | {copy.key}}
    files = sorted([*files, f"workspace/ingest/{copy.key}"])
    assert local.stores.ingest.get(copy.key) == original.data
    assert (local.stores.catalog.counts(), bucket_keys(local), sorted(files_under(tmp_path))) == (
        counts,
        keys,
        files,
    )


def test_same_bytes_twice_in_one_batch_are_enrolled_once(local, sample_set):
    """The duplicate check must also see photos enrolled earlier in the same batch: the same
    bytes under two names (here two people) must not give two labelled faces."""
    data = sample(sample_set, "train", "ben_afflek", 2).read_bytes()
    outcomes = local.enrol(
        [PhotoInput("ben_afflek", "a.jpg", data), PhotoInput("madonna", "copy.jpg", data)]
    )
    outcome_of = by_key(outcomes)
    assert {key: o.status for key, o in outcome_of.items()} == {
        "ben_afflek/a.jpg": "enrolled",
        "madonna/copy.jpg": "duplicate",
    }
    assert "ben_afflek/a.jpg" in outcome_of["madonna/copy.jpg"].reason
    assert local.stores.catalog.counts()["faces"] == 1
    assert local.stores.catalog.faces("madonna") == []
    # both uploads are kept as they came; only one was enrolled
    assert set(local.stores.ingest.keys()) == {"ben_afflek/a.jpg", "madonna/copy.jpg"}


def test_a_jpeg_truncated_inside_its_header_does_not_stop_the_batch(local, sample_set):
    """Cut inside its header, a JPEG makes Pillow raise OSError from Image.open; the photo must
    be rejected as corrupt and the photos around it enrolled."""
    first, second = (sample(sample_set, "train", "mindy_kaling", i) for i in (5, 6))
    cut = first.read_bytes()[:300]
    outcomes = local.enrol(
        [
            PhotoInput("mindy_kaling", "first.jpg", first.read_bytes()),
            PhotoInput("mindy_kaling", "cut.jpg", cut),
            PhotoInput("mindy_kaling", "second.jpg", second.read_bytes()),
        ]
    )
    assert sorted((o.key, o.status, o.code) for o in outcomes) == [
        ("mindy_kaling/cut.jpg", "rejected", "corrupt_image"),
        ("mindy_kaling/first.jpg", "enrolled", ""),
        ("mindy_kaling/second.jpg", "enrolled", ""),
    ]
    assert local.stores.quarantine.get(f"mindy_kaling/{hashlib.sha256(cut).hexdigest()}.bin") == cut


def test_photos_with_the_same_stem_never_share_a_crop(local, sample_set):
    """ "a.jpg" and "a.png" of one person are two photos, but face N of either is named
    "<Person>/a-N.png". The second photo must not overwrite the first one's crop: either each
    keeps its own crop, or the second is refused with a reason naming the first."""
    jpeg = sample(sample_set, "train", "ben_afflek", 2).read_bytes()
    png = encode(upright(sample(sample_set, "train", "ben_afflek", 3)), "PNG")
    outcome_of = by_key(
        local.enrol(
            [PhotoInput("ben_afflek", "a.jpg", jpeg), PhotoInput("ben_afflek", "a.png", png)]
        )
    )
    assert outcome_of["ben_afflek/a.jpg"].status == "enrolled"
    second = outcome_of["ben_afflek/a.png"]
    assert second.status in ("enrolled", "rejected")
    if second.status == "rejected":
        assert "ben_afflek/a.jpg" in second.reason
    faces = local.stores.catalog.faces(labelled_only=False)
    assert len(faces) == (2 if second.status == "enrolled" else 1)
    assert len({face.crop_key for face in faces}) == len(faces)
    assert set(local.stores.faces.keys()) == {face.crop_key for face in faces}
    # Each stored crop is the crop of its own face: embedding it again gives its embedding.
    crops = np.stack(
        [
            np.asarray(Image.open(io.BytesIO(local.stores.faces.get(face.crop_key))))
            for face in faces
        ]
    )
    again = local.analyser.embedder.embed(crops)
    for face, embedding in zip(faces, again, strict=True):
        assert float(face.embedding @ embedding) > 0.99, face.photo_key


def test_more_faces_than_the_limit_are_rejected(tmp_path, assets, analyser, sample_set):
    """With at most 2 faces per photo, the three-face tile is refused as too_many_faces."""
    from dataclasses import replace

    from facerec.interfaces.local import LocalDeployment
    from facerec.vision.analyser import FaceAnalyser

    strict = FaceAnalyser(
        analyser.detector, analyser.embedder, replace(analyser.settings, max_faces=2)
    )
    local = LocalDeployment(tmp_path / "workspace", strict)
    data = three_face_photo(sample_set)
    [outcome] = local.enrol([PhotoInput("madonna", "three.jpg", data)])
    assert (outcome.status, outcome.code, outcome.faces) == ("rejected", "too_many_faces", 0)
    assert "3 faces; at most 2" in outcome.reason
    assert local.stores.catalog.get_photo("madonna/three.jpg").status == "rejected"
    assert local.stores.catalog.counts()["faces"] == 0
    assert list(local.stores.faces.keys()) == []
    assert local.stores.quarantine.get(f"madonna/{hashlib.sha256(data).hexdigest()}.bin") == data
