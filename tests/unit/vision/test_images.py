"""decode_image on every kind of bad or unusual photo: the exact error (type, code, message) or
the exact RGB uint8 pixels. Every image is generated here, in memory, with Pillow and numpy."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facerec.core.errors import (
    CorruptImage,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    UnsupportedFormat,
)
from facerec.core.settings import DEFAULT_LIMITS, ImageLimits
from facerec.vision.images import decode_image, encode_png

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def quadrants(width: int = 120, height: int = 100) -> np.ndarray:
    """Red, green / blue, white quadrants: colours that survive JPEG and are easy to find."""
    pixels = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    pixels[:h, :w], pixels[:h, w:], pixels[h:, :w], pixels[h:, w:] = RED, GREEN, BLUE, WHITE
    return pixels


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def bilevel_png(width: int, height: int) -> bytes:
    """A valid, fully decodable all-black 1-bit PNG, compressed row block by row block so a
    30000x30000 one (900 MP) is about 100 KB and never exists uncompressed in memory."""
    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = [compressor.compress(row * min(1000, height - top)) for top in range(0, height, 1000)]
    data.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(data))
        + png_chunk(b"IEND", b"")
    )


def pillow_images_created() -> int:
    """How many pixel buffers Pillow's C core has allocated in this process so far."""
    return Image.core.get_stats()["new_count"]


# ---- files that are not usable images ---------------------------------------------------------


def test_empty_bytes_are_an_empty_image():
    with pytest.raises(EmptyImage, match="empty") as caught:
        decode_image(b"")
    assert caught.value.code == "empty_file"


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        b"Name,Photo\nBen Affleck,ben.jpg\n" * 50,
        b"%PDF-1.7\n" + b"0" * 500,
    ],
    ids=["random-bytes", "text-file", "pdf"],
)
def test_bytes_that_are_no_image_are_not_an_image(data):
    with pytest.raises(NotAnImage, match="not an image") as caught:
        decode_image(data)
    assert caught.value.code == "not_an_image"


def test_truncated_jpeg_is_corrupt():
    data = encode(noise(200, 160), "JPEG", quality=90)
    with pytest.raises(CorruptImage, match=r"JPEG.*(corrupt|truncated)") as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.code == "corrupt_image"


def test_truncated_png_is_corrupt():
    data = encode(noise(200, 160), "PNG")
    with pytest.raises(CorruptImage, match=r"PNG.*(corrupt|truncated)") as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.code == "corrupt_image"


def test_jpeg_truncated_inside_its_header_is_corrupt():
    """Cut before the pixel data, Pillow's own OSError("Truncated File Read") comes out of
    Image.open: it must become a CorruptImage, or it crashes the enrolment batch."""
    data = encode(Image.fromarray(quadrants()), "JPEG")
    with pytest.raises(CorruptImage, match=r"(?i)truncated") as caught:
        decode_image(data[:100])
    assert caught.value.code == "corrupt_image"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the odd EXIF tag
def test_jpeg_with_corrupt_exif_never_raises_anything_but_an_image_error():
    """An EXIF block whose TileWidth tag holds text makes Pillow's exif_transpose fail with
    struct.error while it rewrites the EXIF. The photo itself is fine (decoded upright from its
    orientation tag 6) or, at worst, CorruptImage; never an exception the batch does not catch."""

    def entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
        return struct.pack(">HHI", tag, kind, count) + value

    text_offset = 8 + 2 + 2 * 12 + 4
    tiff = (
        b"MM\x00\x2a\x00\x00\x00\x08"
        + struct.pack(">H", 2)
        + entry(0x0142, 2, 8, struct.pack(">I", text_offset))  # TileWidth as ASCII
        + entry(0x0112, 3, 1, struct.pack(">HH", 6, 0))  # Orientation 6
        + b"\0\0\0\0"
        + b"Model X\0"
    )
    data = encode(Image.fromarray(quadrants(120, 100)), "JPEG", exif=b"Exif\0\0" + tiff)
    try:
        pixels = decode_image(data)
    except CorruptImage:
        return
    assert pixels.shape == (120, 100, 3)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about damaged EXIF
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_no_truncation_or_bit_flip_escapes_as_another_exception(fmt):
    """Damaged files of every kind either decode or raise an ImageError (the only error the
    enrolment turns into a per-photo outcome)."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Camera"
    options = {"exif": exif} if fmt == "JPEG" else {}
    data = encode(noise(120, 100), fmt, **options)
    rng = np.random.default_rng(3)
    damaged = [data[:cut] for cut in range(1, min(len(data), 800), 7)]
    for _ in range(300):
        flipped = bytearray(data)
        for position in rng.integers(0, 160, 2):
            flipped[position] = rng.integers(0, 256)
        damaged.append(bytes(flipped))
    escaped = []
    for sample in damaged:
        try:
            decode_image(sample)
        except ImageError:
            pass
        except Exception as error:
            escaped.append(f"{len(sample)} bytes: {type(error).__name__}: {error}")
    assert escaped == []


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("WEBP", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("JPEG2000", {})],
)
def test_formats_other_than_jpeg_and_png_are_unsupported(fmt, options):
    data = encode(Image.fromarray(quadrants()), fmt, **options)
    with pytest.raises(UnsupportedFormat) as caught:
        decode_image(data)
    assert caught.value.code == "unsupported_format"
    assert fmt in str(caught.value)
    assert "JPEG, PNG" in str(caught.value)


def test_mpo_jpeg_from_a_phone_or_camera_is_accepted_as_jpeg():
    """Phones and cameras write MPO: a baseline JPEG with more pictures appended. Pillow names
    it "MPO", every JPEG decoder (and Rekognition) reads its first picture as a JPEG."""
    first = Image.fromarray(quadrants())
    data = encode(first, "MPO", save_all=True, append_images=[first.rotate(180)])
    assert data[:3] == b"\xff\xd8\xff"
    pixels = decode_image(data)
    assert pixels.shape == (100, 120, 3)
    assert np.abs(pixels[25, 30].astype(int) - RED).max() < 40


# ---- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(50, 50), (79, 200), (200, 79), (79, 79)])
def test_a_side_under_80_px_is_too_small(width, height):
    data = encode(noise(width, height), "PNG")
    with pytest.raises(ImageTooSmall) as caught:
        decode_image(data)
    assert caught.value.code == "image_too_small"
    assert f"{width}x{height} px" in str(caught.value)
    assert "at least 80 px" in str(caught.value)


@pytest.mark.parametrize(("width", "height"), [(80, 80), (80, 200), (200, 80)])
def test_80_px_sides_are_accepted(width, height):
    pixels = decode_image(encode(noise(width, height), "PNG"))
    assert pixels.shape == (height, width, 3)
    assert pixels.dtype == np.uint8


def test_the_too_small_check_applies_to_the_upright_photo():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(noise(200, 79), "JPEG", exif=exif)
    with pytest.raises(ImageTooSmall, match="79x200 px"):
        decode_image(data)


def test_more_than_15_mb_is_too_large_before_anything_is_decoded():
    """The default limit is Rekognition's 15 MB; a valid photo padded past it is refused on
    its size alone (cheap to build: the padding is never decoded)."""
    photo = encode(noise(100, 100), "JPEG")
    data = photo + b"\0" * (15 * 2**20 + 1 - len(photo))
    assert DEFAULT_LIMITS.max_bytes == 15 * 2**20
    created = pillow_images_created()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data)
    assert caught.value.code == "image_too_large"
    assert "15.0 MB" in str(caught.value)
    assert "limit is 15 MB" in str(caught.value)
    assert pillow_images_created() == created
    assert decode_image(data[: 15 * 2**20]).shape == (100, 100, 3)


def test_a_custom_byte_limit_is_inclusive():
    data = encode(noise(100, 100), "PNG")
    assert decode_image(data, ImageLimits(max_bytes=len(data))).shape == (100, 100, 3)
    with pytest.raises(ImageTooLarge, match="MB") as caught:
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))
    assert caught.value.code == "image_too_large"


@pytest.mark.parametrize("side", [30000, 10000])
def test_decompression_bomb_is_refused_without_allocating_its_pixels(side):
    """A ~100 KB PNG that decodes to side x side pixels (900 MP and 100 MP): over Pillow's bomb
    thresholds, refused from the header alone, before any pixel buffer exists."""
    data = bilevel_png(side, side)
    assert len(data) < 200_000
    created = pillow_images_created()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data)
    assert pillow_images_created() == created
    assert caught.value.code == "image_too_large"
    assert "decompression bomb" in str(caught.value)
    assert f"{side * side} pixels" in str(caught.value)


def test_more_pixels_than_the_limit_are_refused_from_the_header():
    """6400x6400 = 41 MP: under Pillow's bomb threshold, over the 40 MP limit."""
    data = bilevel_png(6400, 6400)
    created = pillow_images_created()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data)
    assert pillow_images_created() == created
    assert caught.value.code == "image_too_large"
    assert "6400x6400" in str(caught.value)
    assert "limit is 40 MP" in str(caught.value)


def test_a_custom_pixel_limit_is_inclusive():
    data = bilevel_png(300, 300)
    pixels = decode_image(data, ImageLimits(max_pixels=90_000))
    assert pixels.shape == (300, 300, 3)
    assert pixels.max() == 0
    with pytest.raises(ImageTooLarge, match="300x300"):
        decode_image(data, ImageLimits(max_pixels=89_999))


# ---- modes: everything becomes RGB uint8 ------------------------------------------------------


def test_grayscale_l_becomes_three_equal_channels():
    gray = np.arange(100 * 120, dtype=np.uint32).reshape(100, 120) % 256
    pixels = decode_image(encode(Image.fromarray(gray.astype(np.uint8)), "PNG"))
    assert pixels.shape == (100, 120, 3)
    assert pixels.dtype == np.uint8
    for channel in range(3):
        assert np.array_equal(pixels[..., channel], gray)


def test_grayscale_jpeg_becomes_rgb():
    gray = np.tile(np.linspace(0, 255, 120).astype(np.uint8), (100, 1))
    pixels = decode_image(encode(Image.fromarray(gray), "JPEG", quality=95))
    assert pixels.shape == (100, 120, 3)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    assert np.abs(pixels[..., 1].astype(int) - gray).max() <= 8


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped():
    deep = (np.arange(100 * 100, dtype=np.uint32).reshape(100, 100) * 6).astype(np.uint16)
    image = Image.fromarray(deep)
    assert image.mode == "I;16"
    pixels = decode_image(encode(image, "PNG"))
    assert pixels.shape == (100, 100, 3)
    assert pixels.dtype == np.uint8
    assert np.abs(pixels[..., 0].astype(int) - deep // 256).max() <= 1
    assert pixels[99, 99, 0] >= 233  # 59994 / 256 = 234; clipping would give 255 everywhere
    assert pixels[50, 50, 0] in (117, 118)  # 30300 / 256 = 118.4


def test_png_alpha_is_composited_on_white():
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[:, :40] = (255, 0, 0, 0)  # fully transparent red
    rgba[:, 40:80] = (0, 0, 0, 128)  # half transparent black
    rgba[:, 80:] = (0, 0, 255, 255)  # opaque blue
    pixels = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert pixels.shape == (100, 120, 3)
    assert pixels[50, 10].tolist() == list(WHITE)
    assert np.abs(pixels[50, 60].astype(int) - 127).max() <= 1
    assert pixels[50, 100].tolist() == list(BLUE)


def test_grayscale_with_alpha_is_composited_on_white():
    la = np.zeros((100, 100, 2), np.uint8)
    la[:, :50] = (0, 0)
    la[:, 50:] = (40, 255)
    pixels = decode_image(encode(Image.fromarray(la, "LA"), "PNG"))
    assert pixels[10, 10].tolist() == list(WHITE)
    assert pixels[10, 90].tolist() == [40, 40, 40]


def test_palette_transparency_is_composited_on_white():
    indices = np.zeros((100, 100), np.uint8)
    indices[:, 50:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([*RED, *GREEN] + [0] * 762)
    data = encode(image, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P"
    pixels = decode_image(data)
    assert pixels.shape == (100, 100, 3)
    assert pixels[10, 10].tolist() == list(WHITE)
    assert pixels[10, 90].tolist() == list(GREEN)


def test_rgb_png_with_a_transparent_colour_key_is_composited_on_white():
    """tRNS on an RGB PNG: pixels of that exact colour are transparent, like alpha 0."""
    pixels = quadrants()
    data = encode(Image.fromarray(pixels), "PNG", transparency=RED)
    decoded = decode_image(data)
    assert decoded[10, 10].tolist() == list(WHITE)
    assert decoded[10, 110].tolist() == list(GREEN)


def test_cmyk_jpeg_becomes_rgb_with_roughly_the_right_colours():
    expected = quadrants()
    data = encode(Image.fromarray(expected).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    pixels = decode_image(data)
    assert pixels.shape == (100, 120, 3)
    assert pixels.dtype == np.uint8
    for y, x in [(25, 30), (25, 90), (75, 30), (75, 90)]:
        assert np.abs(pixels[y, x].astype(int) - expected[y, x]).max() < 40, (y, x)


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [(6, (0, -1)), (8, (-1, 0)), (3, (-1, -1)), (1, (0, 0))],
    ids=["rotate-90-cw", "rotate-90-ccw", "rotate-180", "upright"],
)
def test_exif_orientation_is_applied(orientation, corner):
    """A 120x90 JPEG with a red top-left corner: orientations 6 and 8 turn it to 90x120 and
    move the red corner to the top-right (6) or bottom-left (8)."""
    stored = np.zeros((90, 120, 3), np.uint8)
    stored[:] = BLUE
    stored[:20, :20] = RED
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = decode_image(encode(Image.fromarray(stored), "JPEG", exif=exif, quality=95))
    assert pixels.shape == ((120, 90, 3) if orientation in (6, 8) else (90, 120, 3))
    y, x = corner
    assert np.abs(pixels[y, x].astype(int) - RED).max() < 40
    assert np.abs(pixels[-1 - y, -1 - x].astype(int) - BLUE).max() < 40


def test_encode_png_round_trips_exactly():
    pixels = np.asarray(noise(90, 80, seed=5))
    data = encode_png(pixels)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(decode_image(data), pixels)
