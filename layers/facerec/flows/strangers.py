"""Faces of people who will never be enrolled, for calibrating "unknown" on real strangers
(``facerec train --strangers DIR``: flows.train.fit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facerec.core.errors import FaceRecError, ImageError
from facerec.vision.analyser import FaceAnalyser
from facerec.vision.images import read_photo


def stranger_embeddings(
    analyser: FaceAnalyser, folder: Path, on_skip: Callable[[str, str], None]
) -> np.ndarray:
    """float32 (S, D): every face the analyser finds (its crop method) in every photo under
    ``folder`` (any depth, sorted), each read by read_photo inside ``folder``. A file that is
    not a usable photo with at most ``max_faces`` faces goes to ``on_skip(relative path,
    reason)``. FaceRecError when ``folder`` is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FaceRecError(f"{folder} is not a folder of stranger photos")
    vectors = []
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_dir():
            continue
        try:
            _, faces = analyser.analyse_photo(read_photo(path, within=folder))
        except ImageError as error:
            on_skip(relative, str(error))
            continue
        except OSError as error:
            on_skip(relative, f"cannot be read: {error.strerror or error}")
            continue
        vectors += [face.embedding for face in faces]
    dimensions = analyser.describe()["embedding"]["dimensions"]
    return np.array(vectors, dtype=np.float32).reshape(len(vectors), dimensions)
