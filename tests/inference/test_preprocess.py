from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.errors import InvalidImageError
from inference.preprocess import crop_uint8, decode_image, normalise
from inference.weights import ResolvedWeights, resolve_weights
from tests.fixtures.checkpoints import CANONICAL_FILES

from .conftest import MAX_BYTES, MAX_PIXELS

pytestmark = pytest.mark.unit


def _decode(data: bytes, **limits: int) -> Image.Image:
    return decode_image(
        data, max_bytes=limits.get("max_bytes", MAX_BYTES), max_pixels=limits.get("max_pixels", MAX_PIXELS)
    )


def _encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose header claims ``width x height`` pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module", params=list(CANONICAL_FILES), ids=lambda p: f"{p[0]}-{p[1]}")
def weights(request: pytest.FixtureRequest) -> ResolvedWeights:
    model, name = request.param
    return resolve_weights(model, name, allow_download=False)


def test_uint8_crop_then_normalise_equals_reference_transform(weights: ResolvedWeights, photos: list[Path]) -> None:
    reference = weights.transforms()
    for photo in photos:
        crop = crop_uint8(_decode(photo.read_bytes()), weights)
        assert crop.dtype == torch.uint8 and crop.shape == (3, weights.crop_size, weights.crop_size)
        expected = reference(Image.open(photo).convert("RGB"))
        assert torch.equal(normalise(crop[None], weights)[0], expected), photo.name


def test_normalise_rejects_float_input() -> None:
    weights = resolve_weights("resnet18", "IMAGENET1K_V1", allow_download=False)
    with pytest.raises(ValueError, match="uint8 batch"):
        normalise(torch.zeros(1, 3, 224, 224), weights)


def test_photos_decode_to_rgb_with_their_size(photos: list[Path]) -> None:
    for photo in photos:
        image = _decode(photo.read_bytes())
        assert image.mode == "RGB" and image.size == Image.open(photo).size


def test_grayscale_is_replicated_to_three_channels() -> None:
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, mode="L")
    rgb = np.asarray(_decode(_encode(gray, "PNG")))
    assert rgb.shape == (8, 8, 3)
    for channel in range(3):
        assert np.array_equal(rgb[..., channel], np.asarray(gray))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_composited_onto_white(mode: str) -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(0, 0, 0, 255), (0, 0, 0, 0), (0, 0, 0, 128)])  # opaque black, transparent, half
    pixels = [tuple(p) for p in np.asarray(_decode(_encode(rgba.convert(mode), "PNG")))[0].tolist()]
    assert pixels[0] == (0, 0, 0) and pixels[1] == (255, 255, 255)
    assert all(126 <= value <= 128 for value in pixels[2])


def test_palette_with_transparent_index_becomes_white() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putdata([0, 1])
    data = _encode(palette, "PNG", transparency=0)
    assert _decode(data).getpixel((0, 0)) == (255, 255, 255) and _decode(data).getpixel((1, 0)) == (255, 0, 0)


def test_palette_without_transparency_uses_its_colours() -> None:
    palette = Image.new("P", (1, 1))
    palette.putpalette([10, 200, 30] + [0] * 765)
    assert _decode(_encode(palette, "GIF")).getpixel((0, 0)) == (10, 200, 30)


def test_cmyk_jpeg_is_converted() -> None:
    red = _decode(_encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)).getpixel((8, 8))
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    wide = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    data = _encode(wide, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert np.asarray(_decode(data))[0, :, 0].tolist() == [0, 128, 255]


def test_float_images_are_rejected() -> None:
    data = _encode(Image.new("F", (4, 4), 0.5), "TIFF")
    with pytest.raises(InvalidImageError, match="floating-point"):
        _decode(data)


def test_exif_orientation_is_applied() -> None:
    """Orientation 6 means "rotate 90 degrees clockwise to display": the left half ends up on top."""
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = _decode(_encode(stored, "JPEG", quality=95, exif=exif))
    assert upright.size == (20, 40)
    top, bottom = upright.getpixel((10, 5)), upright.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty image"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML page"),
        (b"%PDF-1.7 ...", "PDF document"),
        (b'{"error": "forbidden"}', "JSON"),
        (b"\x00\x01\x02 random bytes", "unrecognised data"),
    ],
)
def test_non_images_say_what_they_are(data: bytes, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        _decode(data)


@pytest.mark.parametrize(
    "data,shown",
    [
        (b"hello\n", 'unrecognised data starting with "hello" (6 bytes)'),
        (b"\x00\x01\x02", "unrecognised data starting with 00 01 02 (3 bytes)"),
    ],
)
def test_unrecognised_bytes_are_shown_readably_not_as_a_python_repr(data: bytes, shown: str) -> None:
    with pytest.raises(InvalidImageError) as refused:
        _decode(data)
    assert str(refused.value).endswith(shown) and "b'" not in str(refused.value)


def test_truncated_jpeg(photos: list[Path]) -> None:
    data = photos[0].read_bytes()
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        _decode(data[: len(data) // 2])


def test_over_max_bytes(photos: list[Path]) -> None:
    data = photos[0].read_bytes()
    with pytest.raises(InvalidImageError, match=f"{len(data)} bytes, the limit is 1000 bytes"):
        _decode(data, max_bytes=1000)


def test_over_max_pixels(photos: list[Path]) -> None:
    with pytest.raises(InvalidImageError, match="pixels, the limit is 10000 pixels"):
        _decode(photos[0].read_bytes(), max_pixels=10_000)


@pytest.mark.parametrize(
    "width,height,max_pixels,match",
    [
        (7_000, 7_000, MAX_PIXELS, "7000x7000 = 49000000 pixels"),  # our header check
        (10_000, 10_000, 10**9, "decompression bomb"),  # Pillow's DecompressionBombWarning
        (100_000, 100_000, 10**11, "decompression bomb"),  # Pillow's DecompressionBombError
    ],
)
def test_decompression_bomb_is_rejected_before_decoding(width: int, height: int, max_pixels: int, match: str) -> None:
    data = _png_declaring(width, height)
    assert len(data) < 100
    started = time.monotonic()
    with pytest.raises(InvalidImageError, match=match):
        _decode(data, max_pixels=max_pixels)
    assert time.monotonic() - started < 1.0
