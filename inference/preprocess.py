"""Image bytes -> RGB image -> uint8 crop -> normalised float batch, exactly as torchvision's reference.

The reference transform (``weights.transforms()``) is resize -> centre crop -> float -> normalise. It is
split at the uint8 crop: :func:`crop_uint8` runs in the preprocess step and its output is what gets stored
(4x smaller than float32, and lossless), :func:`normalise` runs batched right before the forward pass. The
split is exact: ``normalise(crop_uint8(img)[None])[0]`` equals ``weights.transforms()(img)`` bit for bit,
because both halves call the same torchvision functionals in the same order.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import functional as F

from inference.catalog import DEFAULT_MAX_DECODE_BYTES
from inference.errors import InvalidImageError
from inference.memory_budget import BAND_PIXELS, peak_bytes, resized_size
from inference.weights import ResolvedWeights

#: Formats Pillow may decode. Pillow knows dozens of exotic formats (some with a history of parser bugs);
#: user uploads only need the common photo formats. "JPEG" also opens MPO, the multi-picture JPEG some
#: cameras write. HEIC (iPhone default) needs a plugin Pillow does not ship: it is reported as such.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF")

#: Colour that transparent pixels are composited onto (see :func:`to_rgb`).
BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)

#: EXIF orientations that ``ImageOps.exif_transpose`` applies (by a copy of the image); 1 is upright.
_TRANSPOSING_ORIENTATIONS = frozenset(range(2, 9))

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"ftyp", "an ISO media file (MP4/MOV or HEIC, which is not supported: convert it to JPEG)"),
    (b"RIFF", "a RIFF container that is not WebP (e.g. WAV/AVI)"),
)


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    resize_size: int = 0,
) -> Image.Image:
    """Decode ``data`` into an RGB ``PIL.Image``, enforcing size limits before any pixel is decoded.

    Order of checks, cheapest first: empty, over ``max_bytes``, not an allowed image format (the message says
    what the bytes look like instead), over ``max_pixels`` according to the *header* (a decompression bomb —
    a few KB of PNG declaring 100k x 100k pixels — is rejected before allocating anything; Pillow's own
    DecompressionBombError/Warning is turned into the same error), the resize to ``resize_size`` (the largest
    of the models' transforms; 0: not checked) over ``max_pixels`` (extreme aspect ratios), the memory the
    decode, conversion and resize will hold over ``max_decode_bytes`` (see :mod:`inference.memory_budget`;
    checked again after decoding, once the EXIF orientation is known), then the actual decode, where truncated or
    corrupt data fails (Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off: a half-grey photo would be classified
    silently). Only the first frame of animated GIF/WebP/TIFF is used. EXIF orientation is applied, as every
    viewer does, so a phone photo is classified upright. Colour modes are handled by :func:`to_rgb`.

    Raises :class:`InvalidImageError` (a ``ValueError``) for every failure.
    """
    if not data:
        raise InvalidImageError("empty image: no bytes were received")
    if len(data) > max_bytes:
        raise InvalidImageError(f"image too large: {len(data)} bytes, the limit is {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            # Turns Pillow's DecompressionBombWarning into an exception. catch_warnings is process-wide in
            # Python < 3.14; if two threads interleave here, the worst that can leak is this same "error"
            # filter, which only makes Pillow stricter.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            _check_pixels(image.size, max_pixels)
            if resize_size:
                check_resize_pixels(image.size, resize_size, max_pixels)
            _check_budget(image, rotates=False, resize_size=resize_size, max_decode_bytes=max_decode_bytes)
            image.load()
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImageError(f"image rejected as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(
            f"not a supported image ({', '.join(ALLOWED_FORMATS)}): {_describe_bytes(data)}"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"corrupt or truncated image data ({exc})") from exc
    try:
        rotates = image.getexif().get(ExifTags.Base.Orientation, 1) in _TRANSPOSING_ORIENTATIONS
        _check_budget(image, rotates=rotates, resize_size=resize_size, max_decode_bytes=max_decode_bytes)
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an image that is upright already
    except InvalidImageError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # malformed EXIF block
        raise InvalidImageError(f"corrupt EXIF metadata ({exc})") from exc
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, the input the ImageNet models were trained on.

    - RGB: unchanged.
    - Transparency (RGBA, LA, PA, or a palette/RGB/L image with a ``transparency`` entry): composited onto
      white. Dropping alpha would expose whatever colour the encoder left under transparent pixels (often
      black or garbage), which changes the prediction; white is what viewers show and what product shots
      with cut-out backgrounds look like.
    - 16-bit and 32-bit integer greyscale (``I;16*``, ``I``): scaled from the 16-bit range to 8 bits.
      Pillow's own ``convert`` clips at 255 instead, which turns a normal 16-bit PNG almost white.
    - Floating-point (``F``): rejected, its value range is not defined by the format.
    - Everything else (L, 1, P, CMYK, YCbCr, LAB, HSV): Pillow's ``convert("RGB")``; greyscale is
      replicated into three channels, as torchvision's ImageNet loader does. CMYK uses Pillow's naive
      conversion (ICC profiles are ignored), slightly off in colour but close enough for classification.
    """
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode == "F":
        raise InvalidImageError("32-bit floating-point images are not supported (their value range is undefined)")
    if image.mode.startswith("I"):
        return _banded(image, "L", _integer_band_to_l).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _banded(image, "RGB", _composite_band_on_background)
    return image.convert("RGB")


def _banded(image: Image.Image, mode: str, convert: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """``convert`` applied to horizontal bands of ``image``, pasted into one new ``mode`` image.

    The conversions are per pixel, so the result is the same as converting the whole image, but only the
    output and one band's intermediates are held instead of several full-size copies (see
    :mod:`inference.memory_budget`).
    """
    width, height = image.size
    output = Image.new(mode, image.size)
    rows = max(1, BAND_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        output.paste(convert(band), (0, top))
    return output


def _integer_band_to_l(band: Image.Image) -> Image.Image:
    """16/32-bit integer greyscale -> 8 bits: the 16-bit range scaled down (``convert`` would clip at 255)."""
    wide = np.asarray(band).astype(np.int64)
    return Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8))


def _composite_band_on_background(band: Image.Image) -> Image.Image:
    rgba = band.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def crop_uint8(image: Image.Image, weights: ResolvedWeights) -> torch.Tensor:
    """Resize (Pillow, antialiased) and centre-crop ``image`` as ``weights.transforms()`` does: uint8 CHW.

    Uses the very functionals torchvision's ``ImageClassification`` preset calls, on the PIL image, so the
    result is identical to the preset's intermediate before its dtype conversion.
    """
    size, interpolation = [weights.resize_size], weights.interpolation
    resized = F.resize(image, size, interpolation, antialias=True)  # type: ignore[arg-type]  # typed Tensor, takes PIL
    cropped = F.center_crop(resized, [weights.crop_size])
    return F.pil_to_tensor(cropped).contiguous()


def check_resize_pixels(size: tuple[int, int], resize_size: int, max_pixels: int) -> None:
    """Refuse an image whose resize (short side to ``resize_size``) would exceed ``max_pixels``.

    ``MAX_IMAGE_PIXELS`` bounds the decoded image, but the resize scales the *long* side too: a 196-byte
    4000x1 PNG becomes 1,024,000x256 pixels (about 1 GB in the worker). The output size is computed as
    torchvision does, from the header's size, before any resize is attempted.
    """
    width, height = size
    new_width, new_height = resized_size(size, resize_size)
    resized = new_width * new_height
    if resized > max_pixels:
        raise InvalidImageError(
            f"extreme aspect ratio: {width}x{height} resized to {resize_size} on the short side would be "
            f"{resized} pixels, the limit is {max_pixels} pixels (MAX_IMAGE_PIXELS)"
        )


def normalise(batch_uint8: torch.Tensor, weights: ResolvedWeights) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> float32 normalised batch, the second half of the reference transform."""
    if batch_uint8.dtype != torch.uint8 or batch_uint8.ndim != 4 or batch_uint8.shape[1] != 3:
        raise ValueError(
            f"expected a uint8 batch of shape [N, 3, H, W], got {batch_uint8.dtype} {tuple(batch_uint8.shape)}"
        )
    floats = F.convert_image_dtype(batch_uint8, torch.float)
    return F.normalize(floats, mean=list(weights.mean), std=list(weights.std))


def _check_budget(image: Image.Image, *, rotates: bool, resize_size: int, max_decode_bytes: int) -> None:
    cost = peak_bytes(image, rotates=rotates, resize_size=resize_size)
    if cost.peak > max_decode_bytes:
        width, height = image.size
        raise InvalidImageError(
            f"image too large to decode: {width}x{height} {image.format} in mode {image.mode}"
            f"{' with an EXIF rotation' if rotates else ''} needs about {cost.peak // 2**20} MiB to decode,"
            f" convert and resize, the limit is {max_decode_bytes // 2**20} MiB (MAX_DECODE_BYTES)"
        )


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InvalidImageError(
            f"image too large: {width}x{height} = {width * height} pixels, the limit is {max_pixels} pixels"
        )


def _describe_bytes(data: bytes) -> str:
    """Say what non-image bytes look like, so the user sees e.g. "an HTML page" instead of a bare refusal."""
    head = data[:64]
    for signature, what in _SIGNATURES:
        if head.startswith(signature) or (signature == b"ftyp" and head[4:8] == signature):
            return f"the data looks like {what}"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "the data looks like an HTML page (was a web page downloaded instead of the image?)"
    if text.startswith((b"<?xml", b"<svg")):
        return "the data looks like XML/SVG (vector images are not supported)"
    if text.startswith((b"{", b"[")):
        return "the data looks like JSON"
    return f"unrecognised data starting with {_quote_start(data[:16])} ({len(data)} bytes)"


def _quote_start(head: bytes) -> str:
    """The first bytes as a person reads them: quoted text when printable, else hex (never a bytes repr)."""
    text = head.decode("utf-8", errors="replace").strip()
    if text and text.isprintable():
        return f'"{text}"'
    return head.hex(" ")
