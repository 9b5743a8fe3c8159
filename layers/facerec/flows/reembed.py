"""Re-embed the gallery after the embedding network changed (another FaceNet precision):
every face whose stamp is not the catalog's own gets a new embedding from its stored crop.
The cloud does the same per crop in the re-index workflow (flows.chain.embed_crop)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from facerec.storage.ports import BlobStore, CropCatalog
from facerec.vision.embedding import FaceNetEmbedder
from facerec.vision.images import decode_image


def reembed_stale(
    catalog: CropCatalog,
    faces: BlobStore,
    embedder: FaceNetEmbedder,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, int]:
    """Re-embed, in batches of ``embedder.batch_size``, every face (labelled or not) that
    another network embedded; ``on_progress(done, total)`` after each batch. Returns
    ``{"reembedded", "unchanged"}``; a stop part-way leaves each face either done or not."""
    everyone = catalog.faces(labelled_only=False)
    stale = [face for face in everyone if face.embedding_model != catalog.embedding_model]
    for start in range(0, len(stale), embedder.batch_size):
        chunk = stale[start : start + embedder.batch_size]
        crops = np.stack([decode_image(faces.get(face.crop_key)) for face in chunk])
        for face, embedding in zip(chunk, embedder.embed(crops), strict=True):
            catalog.set_embedding(face, embedding)
        on_progress(start + len(chunk), len(stale))
    return {"reembedded": len(stale), "unchanged": len(everyone) - len(stale)}
