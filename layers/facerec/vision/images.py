"""Decode and validate photo bytes into RGB uint8 arrays, with a specific error for bad input.

The limits follow Amazon Rekognition so both engines accept the same photos: JPEG or PNG,
at most 15 MB, at least 80 px on each side.
"""

from __future__ import annotations

import io
import struct
import warnings

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
        raise ImageTooLarge(
            f"the file is {len(data) / 2**20:.1f} MB; "
            f"the limit is {limits.max_bytes / 2**20:.0f} MB"
        )
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
    return image.convert("RGB")


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 array (H, W, 3) -> PNG bytes. Compression level 1: 3x faster than Pillow's
    default (2 ms instead of 6 ms a crop) for files 6 % larger."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
