"""The converted networks (ONNX) and the runtime that serves them (ONNX Runtime, CPU).

``make setup`` converts the Keras FaceNet and MTCNN's three networks once
(``facerec.vision.convert``) into one folder with a ``manifest.json`` that records each
file's sha256 and how it was made; serving code loads them from there, hash checked, and
never imports TensorFlow.

Threads: ONNX Runtime's workers spin while they wait for work by default, and OpenBLAS
(NumPy) starts a thread per core; on a busy 2-core machine both made detection about twice
slower, so spinning is off and BLAS keeps to one thread in a serving process.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from facerec.core.errors import AssetError
from facerec.vision.assets import sha256_of

MANIFEST = "manifest.json"
FIX_COMMAND = "make setup"
# The networks in a models folder, by name: ``<name>.onnx``.
FACENET = {"fp32": "facenet-fp32", "int8": "facenet-int8"}
MTCNN = ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")


@dataclass(frozen=True)
class ModelFiles:
    """A folder of converted networks, ``<name>.onnx``, and its ``manifest.json``:
    ``{"files": {name: {"sha256", "bytes", ...}}, ...}``."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / f"{name}.onnx"

    def manifest(self) -> dict:
        """The manifest, or AssetError naming the command that makes it."""
        try:
            document = json.loads((self.root / MANIFEST).read_text())
            if not isinstance(document.get("files"), dict):
                raise ValueError("no files")
            return document
        except (OSError, ValueError, AttributeError):
            raise AssetError(
                f"no converted networks in {self.root} (missing or damaged {MANIFEST}); "
                f"run `{FIX_COMMAND}` to convert them"
            ) from None

    def entry(self, name: str) -> dict:
        """The manifest's record of one network (AssetError if it was never converted)."""
        entry = self.manifest()["files"].get(name)
        if entry is None:
            raise AssetError(f"{name} was not converted into {self.root}; run `{FIX_COMMAND}`")
        return entry

    def verify(self, name: str) -> str:
        """The file's sha256 after checking it against the manifest, or AssetError."""
        expected = self.entry(name)["sha256"]
        path = self.path(name)
        if not path.is_file():
            raise AssetError(f"{path} is missing; run `{FIX_COMMAND}` to convert it again")
        actual = sha256_of(path)
        if actual != expected:
            raise AssetError(
                f"{path} is corrupt (sha256 {actual[:12]}..., the manifest says "
                f"{expected[:12]}...); delete it and run `{FIX_COMMAND}`"
            )
        return actual

    def record(self, name: str, **details) -> dict:
        """Add (or replace) one converted file in the manifest, with its sha256 and size and
        ``details`` (JSON values); returns its entry."""
        path = self.path(name)
        document = self._document()
        entry = {"sha256": sha256_of(path), "bytes": path.stat().st_size, **details}
        document["files"][name] = entry
        self.write_manifest(document)
        return entry

    def annotate(self, name: str, **details) -> dict:
        """Add ``details`` (JSON values) to a recorded file's entry (its hash is kept, not
        computed again); returns the entry."""
        document = self._document()
        entry = document["files"][name]
        entry.update(details)
        self.write_manifest(document)
        return entry

    def write_manifest(self, document: dict) -> None:
        """Replace the manifest with ``document`` (written beside it, then renamed)."""
        temporary = self.root / f".{MANIFEST}.partial"
        temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, self.root / MANIFEST)

    def _document(self) -> dict:
        try:
            return self.manifest()
        except AssetError:
            return {"files": {}}

    def session(self, name: str, threads: int = 0):
        """An ONNX Runtime CPU session for one network, its file checked first."""
        self.verify(name)
        return inference_session(self.path(name), threads)


@cache
def limit_blas_threads() -> None:
    """Keep NumPy's BLAS to one thread in this process (once; see the module docstring)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def inference_session(path: Path, threads: int = 0):
    """ONNX Runtime session on the CPU for ``path``: graph optimisations on, one operator at a
    time with ``threads`` intra-op threads (0: one per core), worker threads not spinning."""
    import onnxruntime as ort

    limit_blas_threads()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
