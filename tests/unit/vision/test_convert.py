"""The converted networks: every file hash-checked against the manifest, FaceNet matching
TensorFlow on real crops at both precisions, and serving that never imports TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from facerec.core.errors import AssetError
from facerec.vision.convert import (
    FP32_MIN_COSINE,
    INT8_MIN_COSINE,
    converter,
    cosines,
    sample_crops,
    up_to_date,
)
from facerec.vision.embedding import FaceNetEmbedder, prewhiten
from facerec.vision.runtime import FACENET, MANIFEST, MTCNN, ModelFiles

SERVING_NEVER_IMPORTS = (
    "tensorflow",
    "keras",
    "mtcnn",
    "tf2onnx",
    "h5py",
    "sklearn",
    "scipy",
    "matplotlib",
)


def test_the_manifest_names_every_network_with_its_hash_and_its_converter(assets):
    files = ModelFiles(assets.models)
    manifest = files.manifest()
    assert manifest["converter"] == converter()
    sums = dict(
        reversed(line.split("  "))
        for line in (assets.models / "SHA256SUMS").read_text().splitlines()
    )
    for name in (*MTCNN, *FACENET.values()):
        assert files.verify(name) == manifest["files"][name]["sha256"] == sums[f"{name}.onnx"]
    assert manifest["files"][FACENET["fp32"]]["parity"]["min"] >= FP32_MIN_COSINE
    assert manifest["files"][FACENET["int8"]]["calibration"]["crops"] == "sample-set/train"
    assert up_to_date(files)


def test_a_damaged_or_missing_network_is_refused_with_the_command_that_fixes_it(assets, tmp_path):
    files = ModelFiles(tmp_path)
    with pytest.raises(AssetError, match="make setup"):
        files.manifest()
    shutil.copy(assets.models / MANIFEST, tmp_path)
    with pytest.raises(AssetError, match=r"missing.*make setup"):
        files.session("mtcnn-pnet")
    data = bytearray((assets.models / "mtcnn-pnet.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    files.path("mtcnn-pnet").write_bytes(bytes(data))
    with pytest.raises(AssetError, match="corrupt"):
        files.session("mtcnn-pnet")
    assert not up_to_date(files)
    (tmp_path / MANIFEST).write_text(json.dumps({"files": {}}))
    with pytest.raises(AssetError, match="was not converted"):
        files.verify("facenet-int8")


def test_prewhiten_stays_float32_for_onnx_runtime():
    crops = np.random.default_rng(0).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    whitened = prewhiten(crops)
    assert whitened.dtype == np.float32
    np.testing.assert_allclose(whitened.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    flat = prewhiten(np.full((1, 160, 160, 3), 7, np.uint8))  # no spread: the floor applies
    assert flat.dtype == np.float32 and np.all(flat == 0)


@pytest.mark.model
def test_served_facenet_matches_tensorflow_on_real_crops(assets, sample_set):
    from facerec.vision.facenet_tf import KerasFaceNet

    files = ModelFiles(assets.models)
    crops = sample_crops(files, sample_set / "val")
    reference = KerasFaceNet(assets.weights).embed(crops)
    fp32 = cosines(reference, FaceNetEmbedder(files, "fp32").embed(crops))
    int8 = cosines(reference, FaceNetEmbedder(files, "int8").embed(crops))
    assert fp32["faces"] == len(crops) >= 40
    assert fp32["min"] >= FP32_MIN_COSINE
    assert int8["min"] >= INT8_MIN_COSINE and int8["mean"] >= 0.99


SERVE_PHOTOS = """
import json, sys
from pathlib import Path
import facerec.interfaces.cli, facerec.interfaces.server
from facerec.flows.enrol import read_labelled_folder
from facerec.flows.identify import identify_photo
from facerec.interfaces.local import LocalDeployment
from facerec.vision.analyser import build_analyser
models, folder, workspace = map(Path, sys.argv[1:4])
local = LocalDeployment(workspace, build_analyser(models))
local.enrol(read_labelled_folder(folder, lambda *_: None))
photo = sorted((folder / "madonna").glob("*.jpg"))[0].read_bytes()
result = identify_photo(local.analyser, local.engines, ["nearest"], photo)
loaded = sorted(name for name in {names} if name in sys.modules)
print(json.dumps({{"people": [face["nearest"]["person"] for face in result["faces"]],
                   "loaded": loaded}}))
"""


def test_serving_never_imports_tensorflow(assets, sample_set, tmp_path):
    script = SERVE_PHOTOS.format(names=SERVING_NEVER_IMPORTS)
    folder = str(sample_set / "val")
    command = [sys.executable, "-c", script, str(assets.models), folder, str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer == {"people": ["madonna"], "loaded": []}
