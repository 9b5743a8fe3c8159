"""Face crops for FaceNet: the thesis's margin crop and a 5-landmark similarity alignment.

Both return uint8 (size, size, 3) RGB. ``crop`` picks one by name; the name is recorded in
the model's metadata so identify crops exactly as training did.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from facerec.core.settings import CROP_METHODS
from facerec.vision.detection import Face

# Where the five landmarks (image-left eye, image-right eye, nose, mouth left, mouth right)
# land in a 160x160 crop: the median landmark positions in the 32 px margin crops of 690
# photos (the sample set's train part and 600 LFW photos), made left-right symmetric with the
# eyes level. The aligned crop frames a face as the margin crop does, but upright and centred.
TEMPLATE_160 = np.array(
    [[56.3, 66.8], [103.7, 66.8], [80.0, 89.4], [59.5, 108.4], [100.5, 108.4]], dtype=np.float64
)


def crop_with_margin(
    image: np.ndarray, face: Face, margin: int = 32, size: int = 160
) -> np.ndarray:
    """Box plus ``margin`` px in total (half per side), clipped to the photo, resized."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = face.box
    half = margin // 2
    left, top = max(x1 - half, 0), max(y1 - half, 0)
    right, bottom = min(x2 + half, width), min(y2 + half, height)
    patch = Image.fromarray(image[top:bottom, left:right])
    return np.asarray(patch.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``source`` (N, 2)
    onto ``target`` (N, 2) (Umeyama, 1991). Returns a 2x3 matrix A with target ~ A @ [x, y, 1]."""
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    centred_s, centred_t = source - mean_s, target - mean_t
    covariance = centred_t.T @ centred_s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / centred_s.var(axis=0).sum()
    translation = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image: np.ndarray, face: Face, size: int = 160) -> np.ndarray:
    """Warp the photo so the face's landmarks fall on TEMPLATE_160 (scaled to ``size``)."""
    template = TEMPLATE_160 * (size / 160.0)
    # Pillow's AFFINE maps each output pixel to its input position: template -> photo.
    output_to_input = similarity_transform(template, face.landmarks.astype(np.float64))
    warped = Image.fromarray(image).transform(
        (size, size),
        Image.Transform.AFFINE,
        data=tuple(output_to_input.ravel()),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(warped, dtype=np.uint8)


def crop(
    image: np.ndarray, face: Face, method: str, margin: int = 32, size: int = 160
) -> np.ndarray:
    """The crop FaceNet embeds, by method name (one of CROP_METHODS)."""
    if method == "margin":
        return crop_with_margin(image, face, margin=margin, size=size)
    if method == "aligned":
        return align_face(image, face, size=size)
    raise ValueError(f"unknown crop method {method!r}; expected one of {CROP_METHODS}")
