"""How many bytes decoding, converting and resizing one image will hold at once, known before decoding it.

``MAX_IMAGE_PIXELS`` counts pixels, but memory depends on what a pixel costs: Pillow stores every multi-band
8-bit mode (RGB, RGBA, CMYK, LA, YCbCr...) in 4 bytes a pixel, 16-bit greyscale in 2, 32-bit modes in 4;
some decoders hold a second full-size buffer (a progressive JPEG's DCT coefficients, a TIFF strip, the
frame WebP/AVIF decode into); an EXIF rotation copies the image; the conversion to RGB and the resize each
write a new image while the old one is alive. :func:`peak_bytes` adds these up per stage, from what the
header says, and returns the largest stage: the preprocessing refuses an image whose peak would exceed
``MAX_DECODE_BYTES`` instead of finding out by running out of memory. The figures follow the code path of
:mod:`inference.preprocess` (which converts band by band so that a conversion costs only its output);
``tests/inference/test_memory_bounds.py`` checks them against the peak RSS of a real worker-like process.

Approximate decoding (JPEG ``draft``, which decodes at 1/2, 1/4 or 1/8 scale) is deliberately not used: it
changes the pixels compared with torchvision's reference transform, and an over-budget image is refused
with a message naming the setting rather than classified from different pixels without saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, JpegImagePlugin, TiffImagePlugin

#: Pillow's storage per pixel for modes that do not take 4 bytes (every other mode does, see above).
_NARROW_MODES: dict[str, int] = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}

#: Formats decoded through an animation decoder, which holds its RGBA canvas and the previous frame's, and
#: hands the frame over as a Python ``bytes`` copy: three 4-byte buffers besides Pillow's image (measured for
#: WebP in tests/inference/test_memory_bounds.py; AVIF goes through the same kind of decoder).
_FRAME_BUFFER_FORMATS: frozenset[str] = frozenset({"WEBP", "AVIF"})

#: Pixels in one band of the banded conversions (transparency, 16/32-bit greyscale), and what a band's
#: intermediates cost a pixel at most (the integer path: the band, as int64, clipped, shifted, as uint8).
BAND_PIXELS = 1 << 18
_BAND_BYTES_PER_PIXEL = 32

_RGB_BYTES = 4  # an RGB image, as Pillow stores it
_TIFF_BITS_PER_SAMPLE, _TIFF_ROWS_PER_STRIP, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 258, 278, 322, 323


@dataclass(frozen=True)
class DecodeCost:
    """The bytes each stage holds at its peak; ``peak`` is what the process needs on top of its baseline."""

    decode: int
    rotate: int
    convert: int
    resize: int

    @property
    def peak(self) -> int:
        return max(self.decode, self.rotate, self.convert, self.resize)


def stored_bytes_per_pixel(mode: str) -> int:
    return _NARROW_MODES.get(mode, 4)


def conversion_bytes(mode: str, pixels: int, *, transparent: bool) -> int:
    """Bytes the conversion to RGB writes (see ``inference.preprocess.to_rgb``): nothing for RGB, the RGB
    output otherwise, plus the 8-bit greyscale intermediate for the integer modes, plus one band's
    intermediates for the conversions done band by band."""
    if mode == "RGB" and not transparent:
        return 0
    integer = mode.startswith("I")
    banded = integer or transparent or mode in ("RGBA", "LA", "PA", "RGBa", "La")
    band = _BAND_BYTES_PER_PIXEL * min(pixels, BAND_PIXELS) if banded else 0
    return (_RGB_BYTES + (1 if integer else 0)) * pixels + band


def resized_size(size: tuple[int, int], resize_size: int) -> tuple[int, int]:
    """Width and height after scaling the short side to ``resize_size``, computed as torchvision does."""
    width, height = size
    short, long = min(width, height), max(width, height)
    new_long = int(resize_size * long / short)
    return (resize_size, new_long) if width <= height else (new_long, resize_size)


def resize_bytes(size: tuple[int, int], resize_size: int) -> int:
    """The RGB input, Pillow's intermediate (it resamples horizontally first: new width x old height) and the
    output; with ``resize_size`` 0 there is no resize."""
    if resize_size <= 0:
        return 0
    width, height = size
    new_width, new_height = resized_size(size, resize_size)
    return _RGB_BYTES * (width * height + new_width * height + new_width * new_height)


def decoder_buffer_bytes(image: Image.Image) -> int:
    """What the format's decoder holds besides the decoded image, from the header of the opened ``image``."""
    width, height = image.size
    if isinstance(image, JpegImagePlugin.JpegImageFile) and image.info.get("progressive"):
        # libjpeg keeps every DCT coefficient (2 bytes) of every component until the last scan.
        h_max = max(1, *(h for _, h, _, _ in image.layer))  # at least 1: a malformed header is libjpeg's to refuse
        v_max = max(1, *(v for _, _, v, _ in image.layer))
        share = sum(h * v for _, h, v, _ in image.layer) / (h_max * v_max)
        return math.ceil(2 * share * width * height)
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        return _tiff_chunk_bytes(image)
    if image.format in _FRAME_BUFFER_FORMATS:
        return 3 * 4 * width * height
    return 0


def _tiff_chunk_bytes(image: TiffImagePlugin.TiffImageFile) -> int:
    """libtiff decodes a whole strip or tile into a buffer of its own, raw (up to 16 bits a sample) or, for
    JPEG-compressed TIFF, as RGBA; a single-strip TIFF has one strip the size of the image."""
    width, height = image.size
    tags = image.tag_v2
    bits = tags.get(_TIFF_BITS_PER_SAMPLE, 8)
    try:
        bits_per_pixel = sum(int(b) for b in bits) if isinstance(bits, tuple) else int(bits)
        if _TIFF_TILE_WIDTH in tags and _TIFF_TILE_LENGTH in tags:
            chunk_width, chunk_rows = int(tags[_TIFF_TILE_WIDTH]), int(tags[_TIFF_TILE_LENGTH])
        else:
            chunk_width, chunk_rows = width, min(int(tags.get(_TIFF_ROWS_PER_STRIP, height)), height)
    except (TypeError, ValueError):  # a malformed tag: assume the worst, one strip of 16-bit RGBA
        bits_per_pixel, chunk_width, chunk_rows = 64, width, height
    return chunk_rows * max(math.ceil(chunk_width * bits_per_pixel / 8), 4 * chunk_width)


def peak_bytes(image: Image.Image, *, rotates: bool, resize_size: int) -> DecodeCost:
    """Stage by stage, the bytes held while ``image`` (opened, loaded or not) is decoded, rotated by its EXIF
    orientation if ``rotates``, converted to RGB and resized so its short side is ``resize_size``."""
    width, height = image.size
    pixels = width * height
    decoded = stored_bytes_per_pixel(image.mode) * pixels
    transparent = "transparency" in image.info
    return DecodeCost(
        decode=decoded + decoder_buffer_bytes(image),
        rotate=2 * decoded if rotates else decoded,
        convert=decoded + conversion_bytes(image.mode, pixels, transparent=transparent),
        resize=resize_bytes(image.size, resize_size),
    )
