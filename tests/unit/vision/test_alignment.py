"""Crop geometry: the margin crop and the 5-landmark similarity alignment."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.vision.alignment import (
    TEMPLATE_160,
    align_face,
    crop,
    crop_with_margin,
    similarity_transform,
)
from facerec.vision.detection import Face


def test_similarity_transform_recovers_rotation_scale_and_shift():
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = scale * TEMPLATE_160 @ rotation.T + shift
    matrix = similarity_transform(TEMPLATE_160, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_alignment_puts_a_marked_eye_on_the_template():
    # A photo of a rotated "face": a bright dot where the image-left eye is.
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = 1.5 * TEMPLATE_160 @ rotation.T + np.array([60.0, 20.0])
    image = np.zeros((400, 400, 3), np.uint8)
    x, y = np.round(landmarks[0]).astype(int)
    image[y - 3 : y + 4, x - 3 : x + 4] = 255
    face = Face(box=(60, 20, 300, 300), confidence=1.0, landmarks=landmarks.astype(np.float32))
    aligned = align_face(image, face)
    assert aligned.shape == (160, 160, 3) and aligned.dtype == np.uint8
    ys, xs = np.nonzero(aligned[..., 0] > 128)
    assert abs(xs.mean() - TEMPLATE_160[0, 0]) < 1.5 and abs(ys.mean() - TEMPLATE_160[0, 1]) < 1.5


def test_template_has_level_eyes_and_is_symmetric():
    assert TEMPLATE_160[0, 1] == TEMPLATE_160[1, 1]
    assert TEMPLATE_160[0, 0] + TEMPLATE_160[1, 0] == pytest.approx(160.0)


def test_margin_crop_is_clipped_to_the_photo():
    image = np.arange(100 * 120 * 3, dtype=np.uint8).reshape(100, 120, 3)
    face = Face(box=(0, 0, 50, 60), confidence=1.0, landmarks=np.zeros((5, 2), np.float32))
    assert crop_with_margin(image, face).shape == (160, 160, 3)
    with pytest.raises(ValueError, match=r"unknown crop method 'stretched'"):
        crop(image, face, "stretched")
