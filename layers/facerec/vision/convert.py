"""Convert the networks once, at set-up, and accept them only if they match TensorFlow.

``python -m facerec.vision.convert --cache-dir .cache`` (``make setup``) fetches and checks
the weights and the sample set (facerec.vision.assets), then writes ``<cache>/onnx/``:

- ``mtcnn-{pnet,rnet,onet}.onnx``: MTCNN's three networks from the ``mtcnn`` wheel
  (facerec.vision.mtcnn_tf checks each against TensorFlow);
- ``facenet-fp32.onnx``: the Keras FaceNet, accepted only if every embedding of the sample
  set's real crops has a cosine of at least ``FP32_MIN_COSINE`` to its TensorFlow twin;
- ``facenet-int8.onnx``: ONNX Runtime's static quantization of it (per-channel int8
  weights, uint8 activations, QDQ), calibrated on the crops of the sample set's ``train/``
  photos, which no benchmark uses; its cosines to TensorFlow are recorded, and it is
  refused under ``INT8_MIN_COSINE`` (a broken quantization, not a tolerance: whether int8 is
  the default is decided on LFW by bench/run.py);
- ``manifest.json`` (each file's sha256, size, source and parity figures, the converter's
  versions) and ``SHA256SUMS`` (the same hashes for ``sha256sum --check``).

Nothing is converted again while the manifest names this conversion and every file matches
its hash. The new folder is built beside the old one and swapped in whole.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

from facerec.core.errors import AssetError, FaceRecError
from facerec.core.settings import CROP_METHODS, AnalysisSettings
from facerec.vision.assets import WEIGHTS_SHA256, AssetPaths, ensure_assets
from facerec.vision.runtime import FACENET, MTCNN, ModelFiles

OPSET = 17
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.97
# Bump when the conversion changes, so every cache converts again.
CONVERSION = 1
CONVERTER_PACKAGES = ("tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "mtcnn")


def converter() -> dict:
    """What this conversion is: its number, opset and the packages' versions."""
    return {
        "conversion": CONVERSION,
        "opset": OPSET,
        **{name: version(name) for name in CONVERTER_PACKAGES},
    }


def up_to_date(files: ModelFiles) -> bool:
    """Whether ``files`` holds this very conversion, every file intact."""
    try:
        manifest = files.manifest()
        if manifest.get("converter") != converter():
            return False
        for name in (*MTCNN, *FACENET.values()):
            files.verify(name)
    except AssetError:
        return False
    return True


def sample_crops(files: ModelFiles, folder: Path) -> np.ndarray:
    """The sample set's photos in ``folder`` (``<Person>/*.jpg``) -> uint8 (N, 160, 160, 3):
    each face the converted MTCNN finds, cut by every crop method."""
    from facerec.vision.alignment import crop
    from facerec.vision.detection import FaceDetector
    from facerec.vision.images import decode_image

    settings = AnalysisSettings()
    detector = FaceDetector(files, settings.detector)
    images = [decode_image(path.read_bytes()) for path in sorted(folder.glob("*/*.jpg"))]
    crops = [
        crop(image, face, method, settings.margin, settings.crop_size)
        for image, faces in zip(images, detector.detect_batch(images), strict=True)
        for face in faces
        for method in CROP_METHODS
    ]
    if not crops:
        raise AssetError(f"no face found in {folder}: the sample set is damaged")
    return np.stack(crops)


def cosines(reference: np.ndarray, served: np.ndarray) -> dict:
    """Row-wise cosine of two (N, D) unit-vector arrays: ``{"min", "mean", "faces"}``."""
    values = np.sum(reference * served, axis=1)
    return {"min": float(values.min()), "mean": float(values.mean()), "faces": len(values)}


def quantize(source: Path, target: Path, calibration: np.ndarray) -> None:
    """Static int8 quantization of the fp32 FaceNet (QDQ, per-channel int8 weights, uint8
    activations, min-max ranges over ``calibration``, prewhitened (N, 160, 160, 3))."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from facerec.vision.embedding import INPUT_NAME

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(np.array_split(calibration, max(1, len(calibration) // 16)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    prepared = target.with_suffix(".prepared.onnx")
    quant_pre_process(str(source), str(prepared))
    quantize_static(
        str(prepared),
        str(target),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    prepared.unlink()


def convert(paths: AssetPaths, log=print) -> ModelFiles:
    """Convert and check every network into ``paths.models`` unless it is up to date."""
    from facerec.vision.embedding import FaceNetEmbedder, prewhiten
    from facerec.vision.facenet_tf import KerasFaceNet
    from facerec.vision.mtcnn_tf import export_networks

    current = ModelFiles(paths.models)
    if up_to_date(current):
        log(f"networks: up to date in {current.root}")
        return current
    log("networks: converting MTCNN and FaceNet to ONNX (about a minute) ...")
    staging = ModelFiles(paths.cache_dir / "onnx.partial")
    shutil.rmtree(staging.root, ignore_errors=True)
    staging.root.mkdir(parents=True)
    export_networks(staging)

    keras = KerasFaceNet(paths.weights)
    keras.export(staging.path(FACENET["fp32"]), OPSET)
    source = {"source": "facenet_keras.h5", "weights_sha256": WEIGHTS_SHA256}
    staging.record(FACENET["fp32"], **source)
    parity = paths.sample_set / "val"
    crops = sample_crops(staging, parity)
    reference = keras.embed(crops)
    fp32 = cosines(reference, FaceNetEmbedder(staging, "fp32").embed(crops))
    if fp32["min"] < FP32_MIN_COSINE:
        raise AssetError(
            f"the converted FaceNet does not match TensorFlow on the sample set's crops "
            f"(lowest cosine {fp32['min']:.6f} < {FP32_MIN_COSINE})"
        )
    staging.annotate(FACENET["fp32"], parity={"crops": "sample-set/val", **fp32})

    calibration = sample_crops(staging, paths.sample_set / "train")
    quantize(staging.path(FACENET["fp32"]), staging.path(FACENET["int8"]), prewhiten(calibration))
    staging.record(FACENET["int8"], **source)
    int8 = cosines(reference, FaceNetEmbedder(staging, "int8").embed(crops))
    if int8["min"] < INT8_MIN_COSINE:
        raise AssetError(
            f"the int8 FaceNet is far from TensorFlow on the sample set's crops (lowest "
            f"cosine {int8['min']:.4f} < {INT8_MIN_COSINE}): the quantization is broken"
        )
    staging.annotate(
        FACENET["int8"],
        calibration={"crops": "sample-set/train", "faces": len(calibration)},
        parity={"crops": "sample-set/val", **int8},
    )
    finish(staging, current)
    log(
        f"networks: converted into {current.root}; FaceNet fp32 cosine to TensorFlow >= "
        f"{fp32['min']:.6f}, int8 >= {int8['min']:.4f} ({fp32['faces']} real crops)"
    )
    return current


def finish(staging: ModelFiles, current: ModelFiles) -> None:
    """Record the converter, write SHA256SUMS and swap the staged folder in."""
    manifest = {**staging.manifest(), "converter": converter()}
    staging.write_manifest(manifest)
    lines = [f"{entry['sha256']}  {name}.onnx" for name, entry in sorted(manifest["files"].items())]
    (staging.root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    old = current.root.with_name(current.root.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if current.root.exists():
        os.replace(current.root, old)
    os.replace(staging.root, current.root)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        convert(ensure_assets(AssetPaths(args.cache_dir)))
    except FaceRecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
