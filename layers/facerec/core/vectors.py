"""Vector arithmetic every layer shares: embeddings are L2-normalised float vectors."""

from __future__ import annotations

import numpy as np


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """(..., D) -> (..., D), each vector along the last axis scaled to unit length (a zero
    vector stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
