"""Image resource bounds (issue 11): the memory one image may claim, estimated before decoding and measured.

The unit tests check the budget decision per mode and size; the slow test runs the preprocessing code path of
a worker (``decode_image`` with the activity's limits, then ``crop_uint8`` for both ResNet transforms) in a
fresh process per input and checks that its peak RSS grows by less than ``RSS_BOUND`` over its own RSS after
the imports, for the worst inputs that fit the default limits. The inputs are generated here (flat colour
compresses to a few KB in PNG/TIFF, JPEG keeps them to a few MB).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.catalog import DEFAULT_MAX_DECODE_BYTES
from inference.errors import InvalidImageError
from inference.memory_budget import BAND_PIXELS, peak_bytes
from inference.preprocess import decode_image
from settings import SettingsError, settings_from

from .conftest import MAX_BYTES, MAX_PIXELS

pytestmark = pytest.mark.unit

MIB = 2**20
#: What the README promises: preprocessing one image within the default limits raises a worker's peak RSS by
#: less than this (``MAX_DECODE_BYTES`` plus room for the input bytes, allocator slack and the tensors).
RSS_BOUND = DEFAULT_MAX_DECODE_BYTES + 64 * MIB
#: What the estimate leaves out: the input bytes, torch's and Pillow's first-call allocations, allocator slack.
ESTIMATE_SLACK = 32 * MIB
RESIZE = 256  # the larger of the ResNet transforms' resize sizes (232 for the V2 weights)


def _encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, rows: int | None = None) -> bytes:
    """A flat-colour PNG of any size and depth, written row by row (Pillow cannot write 16-bit RGBA); with
    ``rows``, only that many rows of data follow the header (a bomb: a huge size declared in a few bytes)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\0" + b"\x80" * (width * channels * bit_depth // 8)
    compressor = zlib.compressobj(1)
    body = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _rotated_jpeg(width: int, height: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: exif_transpose copies the image
    return _encode(Image.new("RGB", (width, height), (90, 120, 150)), "JPEG", quality=50, exif=exif)


def _decode(data: bytes, max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> Image.Image:
    return decode_image(
        data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, max_decode_bytes=max_decode_bytes, resize_size=RESIZE
    )


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(
    ("mode", "per_pixel", "banded"),
    [
        ("RGB", 4, False),
        ("L", 1 + 4, False),
        ("P", 1 + 4, False),
        ("CMYK", 4 + 4, False),
        ("RGBA", 4 + 4, True),
        ("LA", 4 + 4, True),
        ("I;16", 2 + 5, True),
        ("I", 4 + 5, True),
    ],
)
def test_conversion_stage_counts_pillow_storage_and_the_rgb_output(mode: str, per_pixel: int, banded: bool) -> None:
    image = Image.new(mode, (1000, 500))
    band = 32 * BAND_PIXELS if banded else 0
    assert peak_bytes(image, rotates=False, resize_size=0).convert == per_pixel * 500_000 + band


def test_palette_with_transparency_is_converted_band_by_band() -> None:
    image = Image.new("P", (1000, 500))
    image.info["transparency"] = 0
    assert peak_bytes(image, rotates=False, resize_size=0).convert == 5 * 500_000 + 32 * BAND_PIXELS


def test_exif_rotation_doubles_the_decoded_image() -> None:
    image = Image.new("RGB", (1000, 500))
    assert peak_bytes(image, rotates=True, resize_size=0).rotate == 2 * 4 * 500_000
    assert peak_bytes(image, rotates=False, resize_size=0).rotate == 4 * 500_000


def test_progressive_jpeg_counts_its_coefficient_buffer() -> None:
    rgb = Image.new("RGB", (800, 600), (1, 2, 3))
    baseline = _open(_encode(rgb, "JPEG", subsampling=0))
    progressive = _open(_encode(rgb, "JPEG", subsampling=0, progressive=True))
    subsampled = _open(_encode(rgb, "JPEG", subsampling=2, progressive=True))
    assert peak_bytes(baseline, rotates=False, resize_size=0).decode == 4 * 480_000
    assert peak_bytes(progressive, rotates=False, resize_size=0).decode == (4 + 6) * 480_000  # 3 full components
    assert peak_bytes(subsampled, rotates=False, resize_size=0).decode == (4 + 3) * 480_000  # 4:2:0: 1.5


def test_progressive_jpeg_with_zero_sampling_factors_is_refused_as_corrupt() -> None:
    """The estimate reads the header before libjpeg validates it: a malformed one must not crash it."""
    data = bytearray(_encode(Image.new("RGB", (64, 48)), "JPEG", progressive=True))
    start = data.index(b"\xff\xc2")  # SOF2: marker, length, precision, height, width, count, then 3 bytes a component
    for component in range(3):
        data[start + 11 + 3 * component] = 0
    with pytest.raises(InvalidImageError, match="corrupt"):
        _decode(bytes(data))


def test_single_strip_tiff_counts_its_strip() -> None:
    single = _open(_encode(Image.new("CMYK", (300, 200)), "TIFF", compression="tiff_lzw", strip_size=2**30))
    assert peak_bytes(single, rotates=False, resize_size=0).decode == (4 + 4) * 60_000
    striped = _open(_encode(Image.new("CMYK", (300, 200)), "TIFF", compression="tiff_lzw", strip_size=12_000))
    assert peak_bytes(striped, rotates=False, resize_size=0).decode == 4 * 60_000 + 12_000


def test_resize_stage_counts_input_intermediate_and_output() -> None:
    image = Image.new("RGB", (1000, 500))  # -> 512x256, the horizontal pass first: 512x500
    assert peak_bytes(image, rotates=False, resize_size=256).resize == 4 * (500_000 + 512 * 500 + 512 * 256)


@pytest.mark.parametrize(
    ("make", "rotates"),
    [
        (lambda: _encode(Image.new("RGB", (2000, 1000)), "JPEG"), False),
        (lambda: _png(2000, 1000, bit_depth=16, colour_type=6), False),
        (lambda: _png(2000, 1000, bit_depth=16, colour_type=0), False),
        (lambda: _encode(Image.new("CMYK", (2000, 1000)), "JPEG"), False),
        (lambda: _rotated_jpeg(2000, 1000), True),
    ],
    ids=["rgb-jpeg", "rgba-16bit-png", "grey-16bit-png", "cmyk-jpeg", "rotated-jpeg"],
)
def test_image_fits_a_budget_of_its_estimate_and_is_refused_one_byte_below(
    make: Callable[[], bytes], rotates: bool
) -> None:
    data = make()
    estimate = peak_bytes(_open(data), rotates=rotates, resize_size=RESIZE).peak
    assert _decode(data, max_decode_bytes=estimate).mode == "RGB"
    with pytest.raises(InvalidImageError, match=r"too large to decode.*MAX_DECODE_BYTES"):
        _decode(data, max_decode_bytes=estimate - 1)


def test_rotation_found_after_decoding_is_checked_before_the_copy() -> None:
    """4000x2000 RGB needs 32 MB upright (plus the resize) and 64 MB rotated: a 48 MiB budget tells them apart."""
    upright = _encode(Image.new("RGB", (4000, 2000)), "JPEG", quality=50)
    assert _decode(upright, max_decode_bytes=48 * MIB).size == (4000, 2000)
    with pytest.raises(InvalidImageError, match="with an EXIF rotation"):
        _decode(_rotated_jpeg(4000, 2000), max_decode_bytes=48 * MIB)


def test_banded_conversions_equal_whole_image_conversions() -> None:
    """Converting band by band (to bound memory) gives the pixels converting the whole image gives: images of
    several bands, with a different value in every row so that a misplaced band shows."""
    gradient = Image.linear_gradient("L").resize((1500, 900))
    flipped = gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    rgba = Image.merge("RGBA", (gradient, gradient.rotate(90), flipped, gradient))
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    assert _decode(_encode(rgba, "PNG")).tobytes() == Image.alpha_composite(white, rgba).convert("RGB").tobytes()
    palette = gradient.convert("P")
    palette.info["transparency"] = 7
    expected = Image.alpha_composite(white, palette.convert("RGBA")).convert("RGB")
    assert _decode(_encode(palette, "PNG", transparency=7)).tobytes() == expected.tobytes()
    wide = (np.arange(1500 * 900, dtype=np.uint32).reshape(900, 1500) * 47 % 65536).astype(np.uint16)
    grey = np.asarray(_decode(_encode(Image.fromarray(wide), "PNG")))
    assert np.array_equal(grey[..., 1], (wide >> 8).astype(np.uint8))


def test_the_budget_is_a_setting_with_a_safe_default() -> None:
    assert settings_from({}).max_decode_bytes == DEFAULT_MAX_DECODE_BYTES
    assert settings_from({"MAX_DECODE_BYTES": "1048576"}).max_decode_bytes == 2**20
    with pytest.raises(SettingsError, match="MAX_DECODE_BYTES"):
        settings_from({"MAX_DECODE_BYTES": "0"})


# --- peak RSS of a worker-like process -------------------------------------------------------------------

#: A fresh interpreter imports what a worker imports once, then forks one child per input (a forked child's
#: ``ru_maxrss`` is its own: it starts at the RSS it shares with the parent, the RSS after the imports).
_WORKER = """
import json, os, resource, sys
from inference.errors import InvalidImageError
from inference.preprocess import crop_uint8, decode_image
from inference.weights import resolve_weights
specs = (("resnet18", "IMAGENET1K_V1"), ("resnet50", "IMAGENET1K_V2"))
weights = [resolve_weights(model, spec, check_file=False) for model, spec in specs]
for path in sys.argv[2:]:
    if os.fork():
        os.wait()
        continue
    data = open(path, "rb").read()
    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        image = decode_image(data, max_bytes=20971520, max_pixels=40000000, max_decode_bytes=int(sys.argv[1]),
                             resize_size=max(w.resize_size for w in weights))
        outcome = f"ok {image.size} {[tuple(crop_uint8(image, w).shape) for w in weights]}"
    except InvalidImageError as exc:
        outcome = f"refused: {exc}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"increase": (peak - after_imports) * 1024, "outcome": outcome}), flush=True)
    os._exit(0)
"""


def _multi_frame_gif() -> bytes:
    frames = [Image.new("P", (6000, 6000), colour) for colour in (1, 2, 3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def _multi_frame_tiff() -> bytes:
    frames = [Image.new("CMYK", (5000, 5000), (colour, 0, 0, 0)) for colour in (10, 20)]
    return _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="tiff_adobe_deflate")


#: name -> (input, what must happen): the worst inputs within the default limits, and just outside them.
WORST_INPUTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "largest-rgb-jpeg-rotated": (lambda: _rotated_jpeg(7745, 5164), "ok"),
    "cmyk-jpeg-40mp": (lambda: _encode(Image.new("CMYK", (7745, 5164)), "JPEG", quality=50), "ok"),
    "progressive-jpeg-40mp": (
        lambda: _encode(Image.new("RGB", (7745, 5164)), "JPEG", quality=50, progressive=True, subsampling=0),
        "ok",
    ),
    "rgba-16bit-png-40mp": (lambda: _png(7745, 5164, bit_depth=16, colour_type=6), "ok"),
    "grey-16bit-png-40mp": (lambda: _png(7745, 5164, bit_depth=16, colour_type=0), "ok"),
    "la-png-40mp": (lambda: _png(7745, 5164, bit_depth=8, colour_type=4), "ok"),
    # 39062x64 resizes to 156248x256 = 40.0 MP (the MAX_IMAGE_PIXELS limit), 39100x64 to 40.04 MP.
    "aspect-inside": (lambda: _png(39_062, 64), "ok"),
    "aspect-outside": (lambda: _png(39_100, 64), "extreme aspect ratio"),
    "aspect-at-both-limits": (lambda: _png(156_250, 256), "MAX_DECODE_BYTES"),  # 40 MP, resized 40 MP
    "rgba-webp-20mp": (lambda: _encode(Image.new("RGBA", (5477, 3652), (9, 80, 200, 100)), "WEBP"), "ok"),
    "rgba-webp-40mp": (lambda: _encode(Image.new("RGBA", (7745, 5164)), "WEBP"), "MAX_DECODE_BYTES"),
    "multi-frame-gif": (_multi_frame_gif, "ok"),
    "multi-frame-cmyk-tiff": (_multi_frame_tiff, "ok"),
    "png-bomb": (lambda: _png(100_000, 100_000, rows=1), "decompression bomb"),
}


@pytest.mark.slow
def test_peak_rss_of_a_worker_stays_under_the_bound(tmp_path: Path) -> None:
    paths = []
    for name, (make, _) in WORST_INPUTS.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(make())
        assert paths[-1].stat().st_size < MAX_BYTES, name
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(DEFAULT_MAX_DECODE_BYTES), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    results = dict(zip(WORST_INPUTS, map(json.loads, done.stdout.splitlines()), strict=True))
    for name, (_, expected) in WORST_INPUTS.items():
        assert expected in results[name]["outcome"], (name, results[name])
    print({name: f"{result['increase'] / MIB:.0f} MiB" for name, result in results.items()})
    assert max(result["increase"] for result in results.values()) < RSS_BOUND, results
    for path in paths:  # and the estimate the decision is made from is what the process really needs
        if results[path.name]["outcome"].startswith("ok"):
            image = _open(path.read_bytes())
            rotates = image.getexif().get(0x0112, 1) != 1
            estimate = peak_bytes(image, rotates=rotates, resize_size=RESIZE).peak
            assert results[path.name]["increase"] < estimate + ESTIMATE_SLACK, (path.name, estimate, results)
