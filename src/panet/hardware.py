"""What the machine can do fast: the one place that asks (training's ``precision: auto``, the attention kernel).

Example:
    >>> import torch
    >>> from panet.hardware import native_bf16
    >>> isinstance(native_bf16(torch.device("cpu")), bool)
    True
"""
from __future__ import annotations

import functools

import torch

__all__ = ["native_bf16", "resolve_precision"]


@functools.lru_cache(maxsize=None)
def _cpu_bf16() -> bool:
    # oneDNN's own test: AVX-512 BW/VL/DQ or AVX-NE-CONVERT. Without them bf16 convolutions and GEMMs are emulated:
    # a bf16 training step measured ~10x slower than fp32 on an AVX2-only CPU (docs/performance.md).
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None and torch.backends.mkldnn.is_available() else False


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 arithmetic natively (so bf16 autocast is a speed-up there, not a slow-down)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_bf16()
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> ``bf16`` where the device has native bf16, else ``fp32``; fp32 and bf16 stay as they are."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision
