"""Decode and validate photo bytes into RGB uint8 arrays, with a specific error for bad input.

The limits follow Amazon Rekognition so both engines accept the same photos: JPEG or PNG,
at most 15 MB, at least 80 px on each side.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from facerec.core.errors import (
    CorruptImage,
    EmptyImage,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    UnsupportedFormat,
)
from facerec.core.settings import DEFAULT_LIMITS, ImageLimits


def decode_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Bytes of a JPEG/PNG photo -> uint8 array (H, W, 3), RGB, EXIF orientation applied.

    Grayscale, palette, CMYK and alpha images are converted (alpha composited on white).
    Raises a subclass of ImageError that says what is wrong.
    """
    if not data:
        raise EmptyImage("the file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise _too_large(f"{len(data) / 2**20:.1f} MB", limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise NotAnImage("the file is not an image Pillow can identify") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLarge(f"decompression bomb refused: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:  # a header cut short or malformed
        raise CorruptImage(f"the image header is corrupt or truncated ({error})") from None
    fmt = "JPEG" if image.format == "MPO" else image.format  # MPO: a JPEG with extra frames
    if fmt not in limits.formats:
        raise UnsupportedFormat(
            f"{fmt} images are not supported; use one of {', '.join(limits.formats)}"
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} = {width * height / 1e6:.1f} MP; "
            f"the limit is {limits.max_pixels / 1e6:g} MP"
        )
    try:
        image.load()
        image = _upright(image)
    except (OSError, SyntaxError, ValueError, struct.error) as error:
        raise CorruptImage(f"the {fmt} data is corrupt or truncated ({error})") from None
    if min(image.size) < limits.min_side:
        raise ImageTooSmall(
            f"the image is {image.size[0]}x{image.size[1]} px; "
            f"each side must be at least {limits.min_side} px"
        )
    return np.asarray(_to_rgb(image), dtype=np.uint8)


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_photo(
    path: Path, limits: ImageLimits = DEFAULT_LIMITS, within: Path | None = None
) -> bytes:
    """The bytes of a photo file, read only if it is a regular file of at most
    ``limits.max_bytes`` (never more than that + 1 bytes are read: a device or a file growing
    meanwhile cannot exhaust memory). ``within``: a folder the path must resolve inside.

    Raises NotAnImage for anything else (a FIFO or device, opened without blocking and never
    read; a folder; a symbolic link leaving ``within``) or ImageTooLarge; OSError when the
    file cannot be opened. An empty file is read (decode_image refuses it).
    """
    if within is not None and not Path(path).resolve().is_relative_to(Path(within).resolve()):
        raise NotAnImage("a symbolic link leading outside the folder: not read")
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            kind = next((kind for is_kind, kind in _KINDS if is_kind(status.st_mode)), "special")
            raise NotAnImage(f"{kind}, not a regular file: not read")
        if status.st_size > limits.max_bytes:
            raise _too_large(f"{status.st_size / 2**20:.1f} MB", limits)
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read(limits.max_bytes + 1)
    finally:
        os.close(descriptor)
    if len(data) > limits.max_bytes:
        raise _too_large(f"more than {limits.max_bytes / 2**20:.0f} MB", limits)
    return data


def _too_large(size: str, limits: ImageLimits) -> ImageTooLarge:
    return ImageTooLarge(f"the file is {size}; the limit is {limits.max_bytes / 2**20:.0f} MB")


_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. Unlike ImageOps.exif_transpose this does not rewrite the
    EXIF block, which raises struct.error on odd tags in otherwise good photos."""
    method = _ORIENTATION.get(image.getexif().get(0x0112))
    return image if method is None else image.transpose(method)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "I;16" or image.mode.startswith("I;16"):
        image = image.point(lambda value: value / 256).convert("L")
    return image if image.mode == "RGB" else image.convert("RGB")  # no copy of a large photo


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 array (H, W, 3) -> PNG bytes. Compression level 1: 3x faster than Pillow's
    default (2 ms instead of 6 ms a crop) for files 6 % larger."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
