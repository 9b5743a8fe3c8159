"""MTCNN's three-stage cascade (Zhang et al. 2016) in NumPy around the converted P-, R- and
O-Net, numerically as the ``mtcnn`` package 1.0.0 runs it, so both find the same faces.

Photos of one shape go through together: PNet once per pyramid level for the whole batch,
RNet and ONet once each on every candidate patch of the batch.

Candidate rows are float64 (N, 6): (photo index, x1, y1, x2, y2, score) in the scanned photo's
pixels; ONet appends the five landmark x values, then the five y values (N, 16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_NAME = "input"
# RNet's and ONet's input side in px (PNet takes any size of at least CELL px).
PATCH_SIZES = {"mtcnn-rnet": 24, "mtcnn-onet": 48}
CELL = 12  # PNet's window in px
STRIDE = 2  # PNet's heat-map step in px
ROW_WIDTH = 16
PATCH_BATCH = 512  # RNet / ONet patches a call


@dataclass(frozen=True)
class CascadeSettings:
    """The package's defaults: minimum face side in px, pyramid factor, each network's score
    threshold (a candidate needs more) and the suppression overlap thresholds (PNet within a
    level, then across levels, RNet by IoU, ONet by intersection over the smaller box)."""

    min_face_size: int = 20
    scale_factor: float = 0.709
    pnet_threshold: float = 0.6
    rnet_threshold: float = 0.7
    onet_threshold: float = 0.8
    pnet_level_overlap: float = 0.5
    pnet_overlap: float = 0.7
    rnet_overlap: float = 0.7
    onet_overlap: float = 0.7


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 pixels (any shape) -> float32 (pixels - 127.5) / 128, in [-1, 1]."""
    return (images.astype(np.float32) - np.float32(127.5)) / np.float32(128)


class Cascade:
    """The detector over three ONNX Runtime sessions (``pnet``, ``rnet``, ``onet``), each with
    input ``INPUT_NAME`` float32 NHWC normalised pixels; outputs in the networks' order: PNet
    box offsets (B, h, w, 4) and scores (B, h, w, 2), RNet offsets (N, 4) and scores (N, 2),
    ONet offsets (N, 4), landmarks (N, 10) and scores (N, 2)."""

    def __init__(self, pnet, rnet, onet, settings: CascadeSettings = CascadeSettings()):
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.settings = settings

    def detect(self, images: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) RGB photos of one shape -> float64 (N, 16) rows, boxes clipped
        to the photo (landmarks not), grouped by photo, most confident first within one."""
        pixels = normalise(images)
        rows = self._propose(pixels)
        if len(rows):
            rows = self._refine(pixels, rows)
        if len(rows):
            rows = self._output(pixels, rows)
        if not len(rows):
            return np.empty((0, ROW_WIDTH))
        height, width = images.shape[1:3]
        rows[:, [1, 3]] = np.clip(rows[:, [1, 3]], 0, width - 1)
        rows[:, [2, 4]] = np.clip(rows[:, [2, 4]], 0, height - 1)
        return rows

    def _propose(self, pixels: np.ndarray) -> np.ndarray:
        """PNet over the scale pyramid: squared candidate rows (N, 6)."""
        settings = self.settings
        height, width = pixels.shape[1:3]
        scales = pyramid_scales(height, width, settings.min_face_size, settings.scale_factor)
        integral = integral_image(pixels)
        levels = []
        for scale in scales:
            level_height, level_width = (np.asarray([height, width]) * scale).astype(int)
            level = area_resize(integral, level_height, level_width)
            offsets, scores = self.pnet.run(None, {INPUT_NAME: level})
            rows = heat_map_boxes(offsets, scores[..., 1], settings.pnet_threshold)
            rows[:, 1:5] /= scale
            levels.append(suppress(rows, settings.pnet_level_overlap))
        rows = np.concatenate(levels) if levels else np.empty((0, 6))
        return to_squares(suppress(rows, settings.pnet_overlap))

    def _refine(self, pixels: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """RNet on 24 px patches of the candidates: kept, regressed, squared rows (N, 6)."""
        offsets, scores = _on_patches(self.rnet, pixels, rows, PATCH_SIZES["mtcnn-rnet"])
        rows = regress(with_scores(rows, scores), offsets)
        rows = rows[rows[:, 5] > self.settings.rnet_threshold]
        return to_squares(suppress(rows, self.settings.rnet_overlap))

    def _output(self, pixels: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """ONet on 48 px patches: final rows (N, 16) with landmarks."""
        offsets, landmarks, scores = _on_patches(self.onet, pixels, rows, PATCH_SIZES["mtcnn-onet"])
        points = place_landmarks(landmarks, rows)
        rows = np.concatenate([regress(with_scores(rows, scores), offsets), points], axis=1)
        rows = rows[rows[:, 5] > self.settings.onet_threshold]
        return suppress(rows, self.settings.onet_overlap, smaller=True)


def _on_patches(session, pixels: np.ndarray, rows: np.ndarray, side: int) -> list[np.ndarray]:
    """The network's outputs for every row's ``side`` px patch, PATCH_BATCH patches a call
    (bounds the memory of a photo with many candidates)."""
    outputs = [
        session.run(
            None, {INPUT_NAME: cut_patches(pixels, rows[start : start + PATCH_BATCH], side)}
        )
        for start in range(0, len(rows), PATCH_BATCH)
    ]
    return [np.concatenate(parts) for parts in zip(*outputs, strict=True)]


def pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> np.ndarray:
    """The pyramid's scales, largest first: CELL / min_face_size times powers of ``factor``;
    as many levels as the package takes (set by the shorter side; none under about 20 px)."""
    shorter = min(width, height)
    count = round(-((np.log(shorter / CELL) / np.log(factor)) + 1))
    return (CELL / min_face_size) * factor ** np.arange(max(count, 0))


def integral_image(pixels: np.ndarray) -> np.ndarray:
    """float32 (B, H, W, C) -> float64 (B, H + 1, W + 1, C): at (y, x) the sum of the pixels
    above and left of that corner."""
    batch, height, width, channels = pixels.shape
    integral = np.zeros((batch, height + 1, width + 1, channels))
    np.cumsum(np.cumsum(pixels, axis=1, dtype=np.float64), axis=2, out=integral[:, 1:, 1:])
    return integral


def area_resize(integral: np.ndarray, height: int, width: int) -> np.ndarray:
    """A photo's ``integral_image`` -> float32 (B, height, width, C), the photo area resized:
    each new pixel is the mean of the old pixels it covers, a pixel partly covered counted in
    proportion (``tf.image.resize`` with method "area"). The sum up to a point between
    corners is the bilinear interpolation of the integral image (pixels are constant)."""
    row_step = (integral.shape[1] - 1) / height
    column_step = (integral.shape[2] - 1) / width
    sums = _interpolate(integral, np.arange(height + 1) * row_step, axis=1)
    sums = _interpolate(sums, np.arange(width + 1) * column_step, axis=2)
    areas = sums[:, 1:, 1:] - sums[:, :-1, 1:] - sums[:, 1:, :-1] + sums[:, :-1, :-1]
    return (areas / (row_step * column_step)).astype(np.float32)


def _interpolate(values: np.ndarray, points: np.ndarray, axis: int) -> np.ndarray:
    """``values`` linearly interpolated at fractional ``points`` along ``axis``."""
    before = np.minimum(np.floor(points).astype(int), values.shape[axis] - 2)
    shape = [1] * values.ndim
    shape[axis] = -1
    fraction = (points - before).reshape(shape)
    low = np.take(values, before, axis=axis)
    return low + (np.take(values, before + 1, axis=axis) - low) * fraction


def heat_map_boxes(offsets: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """PNet outputs of one level, offsets (B, h, w, 4) and face scores (B, h, w) -> rows (N, 6)
    in the level's pixels: every cell scoring over ``threshold`` is the
    CELL px window at STRIDE * (x, y), moved by its offsets times the window's side - 1."""
    photo, y, x = np.nonzero(scores > threshold)
    moves = offsets[photo, y, x].astype(np.float64) * (CELL - 1)
    left, top = x * STRIDE + 1, y * STRIDE + 1
    right, bottom = x * STRIDE + CELL, y * STRIDE + CELL
    return np.stack(
        [
            photo,
            left + moves[:, 0],
            top + moves[:, 1],
            right + moves[:, 2],
            bottom + moves[:, 3],
            scores[photo, y, x],
        ],
        axis=1,
    )


def overlaps(boxes: np.ndarray, smaller: bool = False) -> np.ndarray:
    """(N, 4) boxes (x1, y1, x2, y2) -> (N, N) intersection over union, or over the smaller
    box's area; NaN for two empty boxes."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    low = np.maximum(boxes[None, :, :2], boxes[:, None, :2])
    high = np.minimum(boxes[None, :, 2:], boxes[:, None, 2:])
    sides = np.maximum(0, high - low)
    intersections = sides[..., 0] * sides[..., 1]
    if smaller:
        denominators = np.minimum(areas[:, None], areas[None, :])
    else:
        denominators = areas[:, None] + areas[None, :] - intersections
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersections / denominators


def suppress(rows: np.ndarray, threshold: float, smaller: bool = False) -> np.ndarray:
    """Non-maximum suppression per photo: its rows sorted by score, highest first, a row goes
    if it overlaps (``overlaps`` > ``threshold``) any earlier one, whether or not that one was
    kept itself. The kept rows, grouped by photo index, in that order.

    Equal scores are ordered as the package orders them (NumPy's default sort, reversed);
    sorting each photo's rows apart gives a photo in a batch the order it has alone.
    """
    kept = []
    for photo in np.unique(rows[:, 0]):
        group = rows[rows[:, 0] == photo]
        group = group[np.argsort(group[:, 5])[::-1]]
        beaten = np.triu(overlaps(group[:, 1:5], smaller) > threshold, k=1).any(axis=0)
        kept.append(group[~beaten])
    return np.concatenate(kept) if kept else rows[:0]


def to_squares(rows: np.ndarray) -> np.ndarray:
    """Each box grown along its shorter side to a square about the same centre."""
    squares = rows.copy()
    width = rows[:, 3] - rows[:, 1]
    height = rows[:, 4] - rows[:, 2]
    side = np.maximum(width, height)
    squares[:, 1] = rows[:, 1] + width * 0.5 - side * 0.5
    squares[:, 2] = rows[:, 2] + height * 0.5 - side * 0.5
    squares[:, 3] = squares[:, 1] + side
    squares[:, 4] = squares[:, 2] + side
    return squares


def with_scores(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows (N, 6+) with column 5 replaced by the network's face scores (N, 2)."""
    rows = rows.copy()
    rows[:, 5] = scores[:, 1]
    return rows


def regress(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each box's corners moved by ``offsets`` (N, 4) times the box's side + 1 (float32)."""
    rows = rows.copy()
    width = rows[:, 3] - rows[:, 1] + 1
    height = rows[:, 4] - rows[:, 2] + 1
    sides = np.stack([width, height, width, height], axis=1).astype(np.float32)
    rows[:, 1:5] += offsets.astype(np.float32) * sides
    return rows


def place_landmarks(landmarks: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """ONet's landmarks (N, 10), five x then five y as fractions of the box's side + 1 ->
    pixels (N, 10) (stored as float32)."""
    width = rows[:, 3:4] - rows[:, 1:2] + 1
    height = rows[:, 4:5] - rows[:, 2:3] + 1
    xs = width * landmarks[:, :5] + rows[:, 1:2] - 1
    ys = height * landmarks[:, 5:] + rows[:, 2:3] - 1
    return np.concatenate([xs, ys], axis=1).astype(np.float32).astype(np.float64)


def cut_patches(pixels: np.ndarray, rows: np.ndarray, side: int) -> np.ndarray:
    """Each row's box cut from its photo (float32 (B, H, W, 3)) and bilinearly resized to
    ``side`` px: float32 (N, side, side, 3), 0 where the box passes the photo's border.

    As ``tf.image.crop_and_resize`` with boxes divided by the photo's size: the patch's
    first and last samples fall on (x1, y1) and (x2, y2) times (size - 1) / size.
    """
    height, width = pixels.shape[1:3]
    boxes = (rows[:, 1:5] / np.asarray([width, height, width, height])).astype(np.float32)
    photo = rows[:, 0].astype(int)
    ys, y_inside = _sample_points(boxes[:, 1], boxes[:, 3], height, side)
    xs, x_inside = _sample_points(boxes[:, 0], boxes[:, 2], width, side)
    top = np.floor(ys).astype(int)
    left = np.floor(xs).astype(int)
    bottom = np.minimum(np.ceil(ys).astype(int), height - 1)
    right = np.minimum(np.ceil(xs).astype(int), width - 1)
    top, left = np.clip(top, 0, height - 1), np.clip(left, 0, width - 1)
    y_weight = (ys - np.floor(ys))[:, :, None, None]
    x_weight = (xs - np.floor(xs))[:, None, :, None]
    flat = pixels.reshape(-1, 3)
    top_rows = ((photo[:, None] * height + top) * width)[:, :, None]
    bottom_rows = ((photo[:, None] * height + bottom) * width)[:, :, None]
    upper_left = flat.take(top_rows + left[:, None, :], axis=0)
    upper_right = flat.take(top_rows + right[:, None, :], axis=0)
    lower_left = flat.take(bottom_rows + left[:, None, :], axis=0)
    lower_right = flat.take(bottom_rows + right[:, None, :], axis=0)
    upper = upper_left + (upper_right - upper_left) * x_weight
    lower = lower_left + (lower_right - lower_left) * x_weight
    patches = upper + (lower - upper) * y_weight
    inside = y_inside[:, :, None, None] & x_inside[:, None, :, None]
    return np.where(inside, patches, np.float32(0))


def _sample_points(
    start: np.ndarray, end: np.ndarray, size: int, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """float32 (N,) box edges as fractions of ``size`` -> float32 (N, side) sample positions in
    pixels and whether each lies within the photo."""
    last = np.float32(size - 1)
    step = (end - start) * last / np.float32(side - 1)
    points = start[:, None] * last + np.arange(side, dtype=np.float32)[None, :] * step[:, None]
    return points, (points >= 0) & (points <= last)
