from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from inference.preprocess import crop_uint8, decode_image
from inference.tensor_io import FLAG_DELTA_ZLIB, decode_tensor, encode_tensor
from inference.weights import resolve_weights

pytestmark = pytest.mark.unit

KEY = "r256-c224-bilinear"


@pytest.fixture(scope="module")
def photo_crop(photos: list[Path]) -> torch.Tensor:
    weights = resolve_weights("resnet18", "random")
    return crop_uint8(decode_image(photos[0].read_bytes(), max_bytes=1 << 24, max_pixels=1 << 24), weights)


def test_photo_crop_round_trips_compressed(photo_crop: torch.Tensor) -> None:
    data = encode_tensor(photo_crop, KEY)
    assert data[5] & FLAG_DELTA_ZLIB and len(data) < 0.9 * photo_crop.numel()
    tensor, key = decode_tensor(data)
    assert key == KEY and tensor.dtype == torch.uint8 and torch.equal(tensor, photo_crop)


def test_noise_is_stored_raw_and_round_trips() -> None:
    noise = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = encode_tensor(noise, "k")
    assert data[5] == 0
    tensor, key = decode_tensor(data)
    assert key == "k" and torch.equal(tensor, noise)


def test_non_contiguous_input_round_trips(photo_crop: torch.Tensor) -> None:
    flipped = photo_crop.flip(-1)
    assert torch.equal(decode_tensor(encode_tensor(flipped, KEY))[0], flipped)


@pytest.mark.parametrize(
    "tensor", [torch.zeros(3, 4, 4), torch.zeros(1, 3, 4, 4, dtype=torch.uint8)], ids=["float", "batched"]
)
def test_encode_rejects_non_uint8_chw(tensor: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="uint8 CHW"):
        encode_tensor(tensor, KEY)


def _corrupt_payload(data: bytes) -> bytes:
    return data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: b"", "not an encoded image tensor"),
        (lambda d: b"\xff\xd8\xff\xe0\x00\x10JFIF", "not an encoded image tensor"),
        (lambda d: d[:4] + b"\x09" + d[5:], "format version 9"),
        (lambda d: d[:-100], "truncated"),
        (lambda d: d + b"\x00", "trailing bytes"),
        (_corrupt_payload, "corrupted"),
        (lambda d: d[:8] + struct.pack(">I", 4) + d[12:], "corrupted"),
    ],
    ids=["empty", "jpeg", "version", "truncated", "trailing", "payload-bitflip", "wrong-shape"],
)
def test_decode_rejects_bad_bytes(mutate, match: str, photo_crop: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=match):
        decode_tensor(mutate(encode_tensor(photo_crop, KEY)))


def test_bitflip_in_raw_payload_is_caught_by_checksum() -> None:
    noise = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="checksum mismatch"):
        decode_tensor(_corrupt_payload(encode_tensor(noise, KEY)))
