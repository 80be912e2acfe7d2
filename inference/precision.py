"""Numeric precision and device for the forward pass.

``"fp32"`` runs in float32. ``"bf16"`` runs under ``torch.autocast`` with bfloat16: weights stay fp32 in
memory, convolutions and matmuls run in bf16 (about 2x faster than fp32 channels-last on a CPU with
AVX512-BF16 or AMX; see ``benchmarks/pipeline_benchmark.py``), logits are returned in fp32. ``"auto"``
picks bf16 where the hardware executes it natively and fp32 elsewhere: on a CPU without native bf16,
oneDNN emulates it and it is slower than fp32.
"""

from __future__ import annotations

import torch

from inference.catalog import PRECISIONS, Precision, ResolvedPrecision, is_precision

__all__ = ["PRECISIONS", "Precision", "ResolvedPrecision", "cpu_has_native_bf16", "default_device", "resolve_precision"]


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX) and oneDNN can use them.

    ``torch.backends.cpu.get_cpu_capability()`` only says "AVX512", which Skylake-era CPUs without bf16
    instructions also report, so the instruction sets are checked individually.
    """
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return bool(native and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(requested: str, device: torch.device | None = None) -> ResolvedPrecision:
    """Turn ``"fp32" | "bf16" | "auto"`` into the precision actually used on ``device``."""
    wanted = requested.strip().lower() if isinstance(requested, str) else requested
    if not isinstance(wanted, str) or not is_precision(wanted):
        raise ValueError(f"unknown precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if wanted != "auto":
        return wanted
    device = device or default_device()
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"
