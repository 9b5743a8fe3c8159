"""Hostile files and names on the local paths (issue 11, findings 4, 5 (reads), 8, 10, 13,
15): nothing hangs, nothing is read whole, nothing outside the ingest folder is copied, and
each problem gets one clear answer while the rest of the batch goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from facerec.interfaces import cli
from facerec.interfaces.cli import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, main


def test_an_ingest_folder_of_hostile_entries_completes_and_copies_nothing_outside(
    local, sample_set, tmp_path
):
    root = tmp_path / "photos"
    ada = root / "Ada"
    ada.mkdir(parents=True)
    photo = sorted((sample_set / "train" / "madonna").glob("*.jpg"))[0]
    shutil.copy(photo, ada / "good.jpg")
    long_name = "a" * 246 + ".jpg"  # 250 characters: its crop's .partial name is too long
    shutil.copy(sorted((sample_set / "train" / "madonna").glob("*.jpg"))[1], ada / long_name)
    os.mkfifo(ada / "fifo.jpg")
    (ada / "passwd.jpg").symlink_to("/etc/passwd")
    (ada / "zero.jpg").symlink_to("/dev/zero")
    (ada / "folder.jpg").mkdir()
    (root / "Linked").symlink_to(sample_set / "train" / "madonna")
    skipped = {}

    outcomes = local.ingest_folder(root, on_skip=lambda path, why: skipped.setdefault(path, why))

    found = {outcome.key: (outcome.status, outcome.code) for outcome in outcomes}
    assert found == {
        "Ada/fifo.jpg": ("rejected", "not_an_image"),
        "Ada/passwd.jpg": ("rejected", "not_an_image"),
        "Ada/zero.jpg": ("rejected", "not_an_image"),
        f"Ada/{long_name}": ("rejected", "invalid_label"),
        "Ada/good.jpg": ("enrolled", ""),
    }
    too_long = next(outcome for outcome in outcomes if outcome.key.endswith(long_name))
    assert "is 250 bytes long in UTF-8; at most 200" in too_long.reason
    assert set(skipped) == {"Ada/folder.jpg", "Linked"}
    assert "not followed" in skipped["Linked"]
    quarantine = local.workspace / "quarantine"
    passwd = open("/etc/passwd", "rb").read()  # noqa: SIM115 - read once, closed by gc
    for path in quarantine.rglob("*"):
        assert passwd not in path.read_bytes(), path
    markers = [json.loads(path.read_text()) for path in quarantine.glob("size-*.json")]
    assert sorted(marker["key"] for marker in markers) == [
        "Ada/fifo.jpg",
        "Ada/passwd.jpg",
        "Ada/zero.jpg",
    ]
    assert all(marker["bytes_copied"] is False for marker in markers)
    assert not (local.workspace / "ingest" / "Ada" / "passwd.jpg").exists()


def test_identify_refuses_fifos_devices_and_huge_files_without_hanging(
    enrolled, assets, sample_set, tmp_path
):
    """In a child process with a timeout: on the code before the fix the FIFO blocks for ever."""
    fifo, zero, big = tmp_path / "fifo.jpg", tmp_path / "zero.jpg", tmp_path / "big.jpg"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    with big.open("wb") as file:
        file.truncate(2 * 2**30)  # sparse: no disk used
    good = sorted((sample_set / "val" / "madonna").glob("*.jpg"))[0]
    command = [sys.executable, "-m", "facerec", "--workspace", str(enrolled[0].workspace)]
    command += ["--cache-dir", str(assets.cache_dir), "identify", "--json"]
    command += [str(fifo), str(zero), str(big), str(good)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    answers = json.loads(result.stdout)
    assert result.returncode == EXIT_PARTIAL, result.stderr
    assert answers[str(fifo)]["error"] == "not_an_image"
    assert "named pipe" in answers[str(fifo)]["message"]
    assert answers[str(zero)]["error"] == "not_an_image"
    assert answers[str(big)] == {
        "error": "image_too_large",
        "message": "the file is 2048.0 MB; the limit is 15 MB",
    }
    assert any(face["facenet"]["person"] == "madonna" for face in answers[str(good)]["faces"])


def test_identify_refuses_a_model_of_other_crops_before_any_photo(
    enrolled, assets, tmp_path, capsys
):
    """The shared model is trained on aligned crops: --crop margin is refused once, exit 1,
    before the models load or a photo is read (the photo here does not even exist)."""
    missing = tmp_path / "absent.jpg"
    for engine in ("facenet", "all"):
        argv = ["--workspace", str(enrolled[0].workspace), "--cache-dir", str(assets.cache_dir)]
        argv += ["--crop", "margin", "identify", "--engine", engine, str(missing)]
        assert main(argv) == EXIT_ERROR
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert "was trained on aligned crops; this run uses --crop margin" in captured.err
        assert "run identify with --crop aligned" in captured.err


def test_forget_of_an_unknown_person_says_nobody_was_found(local, monkeypatch, capsys):
    monkeypatch.setattr(cli.App, "local", property(lambda app: local))
    argv = ["--workspace", str(local.workspace), "forget", "Nobody"]
    assert main(argv) == EXIT_OK  # idempotent: forgetting twice is not an error
    captured = capsys.readouterr()
    assert json.loads(captured.out)["photos"] == 0
    assert captured.err == "nobody named 'Nobody' was found: nothing deleted\n"


def test_a_closed_stdout_ends_quietly_as_sigpipe_would(tmp_path):
    """`facerec status | head -1`, made deterministic: the pipe's reader is gone before the
    first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    argv = [sys.executable, "-m", "facerec", "--workspace", str(tmp_path / "ws"), "status"]
    try:
        result = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert result.stderr == b""
    assert result.returncode == EXIT_BROKEN_PIPE
