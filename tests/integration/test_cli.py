"""The CLI end to end: commands, output a shell user reads, and exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facerec.interfaces.cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, assets):
    """Run `facerec demo` once in a fresh workspace; return (workspace, exit code, stdout)."""
    workspace = tmp_path_factory.mktemp("cli") / "workspace"
    capture = pytest.MonkeyPatch()
    import io

    stdout = io.StringIO()
    capture.setattr(sys, "stdout", stdout)
    try:
        code = main(["--workspace", str(workspace), "--cache-dir", str(assets.cache_dir), "demo"])
    finally:
        capture.undo()
    return workspace, code, stdout.getvalue()


def run(workspace, assets, *args) -> list[str]:
    return ["--workspace", str(workspace), "--cache-dir", str(assets.cache_dir), *args]


def test_demo_ingests_trains_evaluates_and_identifies(demo_run):
    workspace, code, out = demo_run
    assert code == EXIT_OK
    assert "93 files: 92 enrolled" in out and "1 with no face" in out
    held_out, accuracy = map(float, re.findall(r"Accuracy: \*\*([0-9.]+)\*\*", out))
    assert held_out >= 0.9 and accuracy >= 0.96
    assert "10-fold CV accuracy" in out
    for person in ("ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"):
        answers = rf"/{person}/[^:]+: x=\d+ y=\d+ w=\d+ h=\d+: facenet {person} \(probability "
        assert re.search(answers + rf"[0-9.]+, score [0-9.]+\); nearest {person} ", out), person
    saved = json.loads((workspace / "demo-evaluation.json").read_text())
    assert saved["photos"] == 25 and saved["accuracy"] == accuracy
    report = Path(out.rstrip().splitlines()[-1].removeprefix("report: "))
    assert report.is_file() and report.suffix == ".html"
    numbers = json.loads(report.with_suffix(".json").read_text())
    assert numbers["engines"]["facenet"]["held_out_faces"] == 23
    assert numbers["engines"]["rekognition"]["ran"] is False
    assert "no collection given" in numbers["engines"]["rekognition"]["reason"]


def test_identify_reports_bad_files_and_exits_3(demo_run, assets, tmp_path, capsys, sample_set):
    workspace, _, _ = demo_run
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    good = sorted((sample_set / "val" / "madonna").glob("*.jpg"))[0]
    code = main(run(workspace, assets, "identify", "--json", str(good), str(bad)))
    answers = json.loads(capsys.readouterr().out)
    assert code == EXIT_PARTIAL
    assert answers[str(bad)]["error"] == "not_an_image"
    assert any(face["facenet"]["person"] == "madonna" for face in answers[str(good)]["faces"])


def test_ingest_summary_counts_problems(demo_run, assets, tmp_path, capsys, sample_set):
    workspace, _, _ = demo_run
    folder = tmp_path / "photos"
    (folder / "madonna").mkdir(parents=True)
    shutil.copy(sorted((sample_set / "val" / "madonna").glob("*.jpg"))[1], folder / "madonna")
    (folder / "madonna" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "loose.jpg").write_bytes(b"x")
    code = main(run(workspace, assets, "ingest", str(folder)))
    out = capsys.readouterr().out
    assert code == EXIT_PARTIAL
    assert "3 files: 1 enrolled" in out and "1 rejected, 1 skipped (not a photo in" in out
    assert re.search(r"rejected\s+madonna/broken.jpg", out)


def test_errors_exit_1_with_one_line_message(demo_run, assets, tmp_path, capsys):
    workspace, _, _ = demo_run
    assert main(run(workspace, assets, "ingest", str(tmp_path / "absent"))) == EXIT_ERROR
    assert "is not a folder" in capsys.readouterr().err
    assert main(run(tmp_path / "empty", assets, "train")) == EXIT_ERROR
    assert "no labelled faces enrolled yet" in capsys.readouterr().err
    assert main(run(tmp_path / "empty", assets, "report")) == EXIT_ERROR
    assert "no trained model yet" in capsys.readouterr().err
    copy = tmp_path / "copy"  # the demo's model holds 25 % out; this one holds nothing out
    shutil.copytree(workspace, copy)
    assert main(run(copy, assets, "train", "--test-size", "0")) == EXIT_OK
    capsys.readouterr()
    for command in ("evaluate", "report"):
        assert main(run(copy, assets, command)) == EXIT_ERROR
        assert "trained without a held-out part" in capsys.readouterr().err


def test_switching_precision_is_refused_until_the_gallery_is_reembedded_and_retrained(
    demo_run, assets, tmp_path, capsys
):
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_run[0], workspace)
    photo = str(sorted((assets.sample_set / "val" / "madonna").glob("*.jpg"))[0])
    fp32 = run(workspace, assets, "--precision", "fp32")
    assert main([*fp32, "identify", photo]) == EXIT_ERROR
    error = capsys.readouterr().err
    assert "trained on int8 embeddings; this run uses --precision fp32" in error
    assert "facerec --precision fp32 reembed" in error
    assert main([*fp32, "train"]) == EXIT_ERROR
    assert "re-embed them first (`facerec reembed`" in capsys.readouterr().err

    assert main([*fp32, "reembed", "--quiet"]) == EXIT_OK
    done = json.loads(capsys.readouterr().out)
    assert done["reembedded"] >= 92 and done["unchanged"] == 0
    assert (
        done["embedding_model"].endswith("@6acdd8fb3a3f") and "+int8" not in done["embedding_model"]
    )
    assert main([*fp32, "train"]) == EXIT_OK
    capsys.readouterr()
    assert main([*fp32, "identify", photo]) == EXIT_OK
    assert ": facenet madonna (probability" in capsys.readouterr().out
    assert main(run(workspace, assets, "identify", photo)) == EXIT_ERROR  # int8 now refused
    assert "trained on fp32 embeddings" in capsys.readouterr().err


def test_status_prints_counts(demo_run, assets, capsys):
    workspace, _, _ = demo_run
    assert main(run(workspace, assets, "status")) == EXIT_OK
    counts = json.loads(capsys.readouterr().out.splitlines()[0])
    assert counts["people"] == 5 and counts["photos_no_face"] == 1


def test_fresh_process_missing_networks_and_bad_usage(tmp_path):
    command = [sys.executable, "-m", "facerec", "--cache-dir", str(tmp_path), "identify", "x.jpg"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == EXIT_ERROR
    assert "no converted networks in" in result.stderr and "make setup" in result.stderr
    usage = subprocess.run([sys.executable, "-m", "facerec"], capture_output=True, text=True)
    assert usage.returncode == EXIT_USAGE and "usage: facerec" in usage.stderr


def test_forget_deletes_a_person_everywhere_and_retrains(demo_run, assets, tmp_path, capsys):
    """elton_john has 13 enrolled photos and one quarantined (no face) in the sample set; all
    14 uploads are in the ingest folder."""
    demo_workspace, _, _ = demo_run
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_workspace, workspace)
    (workspace / "demo-evaluation.json").unlink()  # the demo's output file, not a store
    before = json.loads((workspace / "models").glob("*/metadata.json").__next__().read_text())
    assert "elton_john" in before["labels"]
    photo = sorted((assets.sample_set / "val" / "elton_john").glob("*.jpg"))[0]

    assert main(run(workspace, assets, "forget", "elton_john")) == EXIT_OK
    deleted = json.loads(capsys.readouterr().out)

    assert deleted["photos"] >= 14 and deleted["crops"] >= 13 and deleted["quarantined"] == 1
    assert deleted["photo_records"] == deleted["photos"]  # every upload, the faceless one too
    assert deleted["face_records"] >= deleted["photos"]
    assert before["model_id"] in deleted["models"] and deleted["current_model"] is True
    for path in workspace.rglob("*"):  # buckets, catalog and its log: not a byte of the name
        assert not path.is_file() or b"elton_john" not in path.read_bytes(), path
    new = json.loads((workspace / "models" / deleted["retrained"] / "metadata.json").read_text())
    assert sorted(new["labels"]) == ["ben_afflek", "jerry_seinfeld", "madonna", "mindy_kaling"]

    assert main(run(workspace, assets, "identify", "--json", "--engine", "all", str(photo))) == 0
    face = json.loads(capsys.readouterr().out)[str(photo)]["faces"][0]
    assert {face[engine]["person"] for engine in ("facenet", "nearest", "hybrid")} == {"unknown"}

    assert main(run(workspace, assets, "forget", "elton_john")) == EXIT_OK
    again = json.loads(capsys.readouterr().out)
    assert again["models"] == [] and again["current_model"] is False
    assert again["photos"] == again["crops"] == again["quarantined"] == again["face_records"] == 0
    assert main(run(workspace, assets, "forget", "../etc")) == EXIT_ERROR


def test_an_unknown_face_shows_its_closest_candidate_and_train_far_sets_both_engines(
    demo_run, assets, tmp_path, capsys
):
    """A forgotten person's photo is "unknown" to every engine, each showing its closest
    enrolled person beside it; `train --far` moves the nearest engine's threshold too."""
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_run[0], workspace)
    assert main(run(workspace, assets, "forget", "elton_john")) == EXIT_OK
    assert main(run(workspace, assets, "train", "--far", "0.05")) == EXIT_OK
    capsys.readouterr()
    photo = sorted((assets.sample_set / "val" / "elton_john").glob("*.jpg"))[0]

    assert main(run(workspace, assets, "identify", "--json", "--engine", "all", str(photo))) == 0
    result = json.loads(capsys.readouterr().out)[str(photo)]
    face = result["faces"][0]
    for engine in ("facenet", "nearest", "hybrid"):
        answer = face[engine]
        assert answer["person"] == "unknown", engine
        assert answer["candidate"]["person"] != "elton_john", engine
        assert answer["candidate"]["score"] == answer["score"], engine
    assert face["hybrid"]["candidate"] == face["facenet"]["candidate"]
    model_id = result["model_id"]
    meta = json.loads((workspace / "models" / model_id / "metadata.json").read_text())
    assert meta["nearest"]["far_target"] == meta["open_set"]["far_target"] == 0.05
    nearest = result["engines"]["nearest"]
    assert nearest["far_target"] == 0.05
    assert nearest["unknown_threshold"] == round(meta["nearest"]["threshold"], 6)

    assert main(run(workspace, assets, "identify", "--engine", "nearest", str(photo))) == 0
    candidate = face["nearest"]["candidate"]
    line = capsys.readouterr().out.strip().splitlines()[-1]
    expected = f"nearest unknown (score {candidate['score']:.2f}; closest: {candidate['person']} "
    assert line.endswith(expected + f"{candidate['score']:.2f})"), line


def test_the_default_cache_is_the_one_make_setup_fills(monkeypatch):
    """`make setup` puts the weights and sample photos in <repo>/.cache; the CLI looks there
    when neither --cache-dir nor FACEREC_CACHE_DIR says otherwise."""
    from facerec.interfaces.cli import build_parser

    monkeypatch.delenv("FACEREC_CACHE_DIR", raising=False)
    makefile = Path(__file__).resolve().parents[2] / "Makefile"
    assert "CACHE := .cache" in makefile.read_text()
    args = build_parser().parse_args(["status"])
    assert args.cache_dir == makefile.parent / ".cache"


def test_train_strangers_calibrates_unknown_on_the_faces_in_a_folder(
    assets, sample_set, tmp_path, capsys
):
    """3 of the 5 sample people enrolled, the other 2's photos as strangers: `train
    --strangers DIR --far 0.25` calibrates both engines on every face found there (at least
    ceil(10 / 0.25) = 40); a folder with fewer faces is refused in one line, exit 1."""
    enrolled, strangers, few = tmp_path / "enrol", tmp_path / "strangers", tmp_path / "few"
    for person in ("ben_afflek", "elton_john", "jerry_seinfeld"):
        shutil.copytree(sample_set / "train" / person, enrolled / person)
    for part in ("train", "val"):
        for person in ("madonna", "mindy_kaling"):
            shutil.copytree(sample_set / part / person, strangers / part / person)
    shutil.copytree(sample_set / "val" / "madonna", few)
    workspace = tmp_path / "workspace"
    # EXIT_PARTIAL: one of elton_john's photos has no face.
    assert main(run(workspace, assets, "ingest", str(enrolled), "--quiet")) == EXIT_PARTIAL
    capsys.readouterr()

    args = ("train", "--test-size", "0", "--far", "0.25", "--strangers")
    assert main(run(workspace, assets, *args, str(strangers))) == EXIT_OK
    out = capsys.readouterr().out
    model_id = re.search(r"model (\S+):", out).group(1)
    meta = json.loads((workspace / "models" / model_id / "metadata.json").read_text())
    assert meta["labels"] == ["ben_afflek", "elton_john", "jerry_seinfeld"]
    faces = meta["open_set"]["impostor_scores"]
    assert 40 <= faces <= 60  # 51 photos, about one face each
    for engine in ("open_set", "nearest"):
        assert meta[engine]["method"] == "held-out strangers", engine
        assert meta[engine]["impostor_scores"] == faces, engine
        assert meta[engine]["far_target"] == 0.25, engine
    assert f"0.25 false-accept rate on {faces} held-out strangers scores" in out

    assert main(run(workspace, assets, *args, str(few))) == EXIT_ERROR
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "stranger faces found" in error and "needs at least 40" in error
    assert main(run(workspace, assets, *args, str(tmp_path / "missing"))) == EXIT_ERROR
    assert "missing is not a folder of stranger photos" in capsys.readouterr().err
    from facerec.storage.local import local_stores

    assert local_stores(workspace).catalog.current_model().model_id == model_id  # kept


def test_train_classifier_ovr_fits_and_serves_one_svm_per_person(
    demo_run, assets, tmp_path, capsys
):
    """`train --classifier ovr` reaches TrainOptions: the model is one-vs-rest SVMs, chosen
    by name, cross-validated on its calibration folds, and identify answers with it; a
    classifier not offered is a usage error."""
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_run[0], workspace)
    args = ("train", "--classifier", "ovr", "--test-size", "0")
    assert main(run(workspace, assets, *args)) == EXIT_OK
    out = capsys.readouterr().out
    assert "3-fold CV accuracy" in out  # OneVsRestSVM's folds, not the SVC's 10
    model_id = re.search(r"model (\S+):", out).group(1)
    meta = json.loads((workspace / "models" / model_id / "metadata.json").read_text())
    assert meta["classifier"]["kind"] == "one-vs-rest SVMs"
    assert meta["classifier"]["choice"] == "ovr"

    photo = sorted((assets.sample_set / "val" / "madonna").glob("*.jpg"))[0]
    assert main(run(workspace, assets, "identify", "--json", str(photo))) == EXIT_OK
    result = json.loads(capsys.readouterr().out)[str(photo)]
    assert result["model_id"] == model_id
    assert result["faces"][0]["facenet"]["person"] == "madonna"

    with pytest.raises(SystemExit) as usage:
        main(run(workspace, assets, "train", "--classifier", "knn"))
    assert usage.value.code == EXIT_USAGE
    assert "invalid choice: 'knn'" in capsys.readouterr().err
