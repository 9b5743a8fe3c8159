"""read_photo and read_labelled_folder on hostile files: FIFOs, devices, links leading out of
the folder, huge and sparse files, folders named like photos. Each read runs in a child
process with a timeout and an address-space limit, so a regression fails instead of hanging
the suite or exhausting the machine's memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from facerec.core.errors import ImageTooLarge, NotAnImage
from facerec.core.settings import ImageLimits
from facerec.flows.enrol import read_labelled_folder
from facerec.vision.images import read_photo

CHILD = """
import json, sys
from pathlib import Path
from facerec.core.errors import ImageError
from facerec.vision.images import read_photo
within = Path(sys.argv[2]) if len(sys.argv) > 2 else None
try:
    print(json.dumps({"bytes": len(read_photo(Path(sys.argv[1]), within=within))}))
except ImageError as error:
    print(json.dumps({"code": error.code, "message": str(error)}))
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


def read_in_child(path: Path, within: Path | None = None) -> dict:
    """read_photo(path) in a child process: at most 2 GB of address space, 20 s."""
    argv = [sys.executable, "-c", CHILD, str(path), *([str(within)] if within else [])]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=_limit_memory,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    answer = read_in_child(fifo)
    assert answer["code"] == "not_an_image" and "named pipe (FIFO)" in answer["message"]


def test_a_device_directly_or_through_a_link_is_never_read(tmp_path):
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    for path in (Path("/dev/zero"), link):
        answer = read_in_child(path)
        assert answer["code"] == "not_an_image", path
        assert "character device" in answer["message"]


def test_a_sparse_2_gb_file_is_refused_from_its_size(tmp_path):
    big = tmp_path / "big.jpg"
    with big.open("wb") as file:
        file.truncate(2 * 2**30)  # sparse: no disk used
    answer = read_in_child(big)
    assert answer["code"] == "image_too_large"
    assert answer["message"] == "the file is 2048.0 MB; the limit is 15 MB"


def test_a_link_leading_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("root:x:0:0")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "x.jpg").symlink_to(outside)
    answer = read_in_child(folder / "x.jpg", within=folder)
    assert answer["code"] == "not_an_image" and "outside the folder" in answer["message"]
    assert read_in_child(folder / "x.jpg") == {"bytes": 10}  # named directly: allowed


def test_reads_at_most_the_limit_plus_one_byte(tmp_path):
    limits = ImageLimits(max_bytes=10)
    exact, over = tmp_path / "exact.jpg", tmp_path / "over.jpg"
    exact.write_bytes(b"a" * 10)
    over.write_bytes(b"a" * 11)
    assert read_photo(exact, limits) == b"a" * 10
    with pytest.raises(ImageTooLarge, match=r"the file is 0\.0 MB"):
        read_photo(over, limits)
    with pytest.raises(NotAnImage, match="a folder, not a regular file"):
        read_photo(tmp_path, limits)


def test_a_file_growing_after_its_size_was_checked_is_cut_at_the_limit(tmp_path):
    """A file that grows between fstat and read (or lies about its size, as /proc files do)
    is read to the limit + 1 byte only."""
    limits = ImageLimits(max_bytes=10)
    with pytest.raises(ImageTooLarge, match="more than"):
        read_photo(Path("/proc/self/status"), limits)  # st_size 0, content > 10 bytes


def test_read_labelled_folder_reports_every_file_it_does_not_yield(tmp_path):
    root = tmp_path / "photos"
    ada = root / "Ada"
    ada.mkdir(parents=True)
    (ada / "good.jpg").write_bytes(b"jpeg")
    os.mkfifo(ada / "fifo.jpg")
    (ada / "passwd.jpg").symlink_to("/etc/passwd")
    (ada / "zero.jpg").symlink_to("/dev/zero")
    (ada / "folder.jpg").mkdir()
    (ada / "folder.jpg" / "inner.jpg").write_bytes(b"jpeg")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "y.jpg").write_bytes(b"jpeg")
    (root / "Linked").symlink_to(elsewhere)
    (root / "loose.jpg").write_bytes(b"jpeg")
    skipped, refused = {}, {}

    photos = list(
        read_labelled_folder(
            root,
            lambda path, reason: skipped.setdefault(path, reason),
            lambda person, name, error: refused.setdefault(f"{person}/{name}", error),
        )
    )

    assert [(photo.person, photo.name, photo.data) for photo in photos] == [
        ("Ada", "good.jpg", b"jpeg")
    ]
    assert {key: type(error) for key, error in refused.items()} == {
        "Ada/fifo.jpg": NotAnImage,
        "Ada/passwd.jpg": NotAnImage,
        "Ada/zero.jpg": NotAnImage,
    }
    assert "outside the folder" in str(refused["Ada/passwd.jpg"])
    assert skipped == {
        "Ada/folder.jpg": "a folder (or a link to one), not a photo: not read",
        "Linked": "a symbolic link to a folder: person folders are not followed",
        "loose.jpg": "not inside a person folder: expected DIR/<Person>/<photo>",
    }


def test_read_labelled_folder_without_on_refused_reports_refusals_as_skips(tmp_path):
    (tmp_path / "Ada").mkdir()
    os.mkfifo(tmp_path / "Ada" / "x.jpg")
    skipped = []
    assert list(read_labelled_folder(tmp_path, lambda *skip: skipped.append(skip))) == []
    assert skipped == [("Ada/x.jpg", "a named pipe (FIFO), not a regular file: not read")]
