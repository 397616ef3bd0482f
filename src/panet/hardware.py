"""What the machine can do fast: the one place that asks (``precision: auto`` in training and restoring, the
attention kernel).

Whether bf16 pays is *measured*, not assumed from the CPU's flags: the same flags (AVX-512 BF16) came with bf16
GEMMs 2x faster than fp32 on AMD Zen 5 and 2x *slower* on an Intel Xeon whose AMX units the hypervisor hid.

Example:
    >>> import torch
    >>> from panet.hardware import native_bf16
    >>> isinstance(native_bf16(torch.device("cpu")), bool)
    True
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
import time
from collections.abc import Iterator

import torch

__all__ = [
    "bf16_matmul_math",
    "bf16_speedup",
    "cpu_description",
    "cpu_model_name",
    "fast_bf16",
    "native_bf16",
    "resolve_precision",
    "split_bf16_scores",
]

# bf16 must run the measured workload at least this much faster than fp32 for ``auto`` to choose it: below
# that, its rounding (a few hundredths of a dB at most, docs/performance.md) buys too little.
BF16_MIN_SPEEDUP = 1.2


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def cpu_model_name() -> str:
    """The CPU's model name as ``lscpu`` prints it (benchmarks name the CPU they ran on)."""
    return _lscpu().get("Model name") or platform.processor() or "unknown CPU"


def cpu_description() -> str:
    """The model name, the bf16 / AMX flags that decide the precision plans, and the CPU count."""
    flags = _lscpu().get("Flags", "").split()
    extras = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{cpu_model_name()} ({', '.join(extras) or 'no bf16 / AMX flags'}), {os.cpu_count()} CPUs"


@functools.cache
def _cpu_bf16() -> bool:
    # oneDNN's own test: AVX-512 BW/VL/DQ or AVX-NE-CONVERT. Without them bf16 convolutions and GEMMs are emulated:
    # a bf16 training step measured ~10x slower than fp32 on an AVX2-only CPU (docs/performance.md).
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None and torch.backends.mkldnn.is_available() else False


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bf16 arithmetic natively (oneDNN's / CUDA's own test; it does not say how fast)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_bf16()
    return False


def _time_workload(dtype: torch.dtype, repeats: int = 3) -> float:
    """Seconds for the shapes a restore spends its time in: a trunk convolution (64 -> 64, 3x3, channels-last, a
    batch of 32x32 tiles) and an attention GEMM (1024 queries x 289 features x 2048 keys), best of ``repeats``."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(dtype=dtype, memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted at run time
    x = torch.randn(4, 64, 32, 32, generator=generator).to(dtype=dtype, memory_format=torch.channels_last)
    a = torch.randn(1024, 289, generator=generator).to(dtype)
    b = torch.randn(289, 2048, generator=generator).to(dtype)
    best = float("inf")
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            conv(x)
            torch.mm(a, b)
            if i:  # the first call pays oneDNN's kernel generation
                best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def bf16_speedup(device_type: str = "cpu") -> float:
    """How many times faster than fp32 this machine runs a restore's kind of work in bf16 (measured once per
    process, in about 0.1 s). 0 where bf16 is not native: it is emulated, and no measurement is needed."""
    if device_type != "cpu":
        return 2.0 if native_bf16(device_type) else 0.0  # CUDA: tensor cores where bf16 is supported at all
    if not native_bf16("cpu"):
        return 0.0
    return _time_workload(torch.float32) / _time_workload(torch.bfloat16)


def fast_bf16(device: torch.device | str) -> bool:
    """Whether bf16 is worth it on ``device``: native, and measured at least :data:`BF16_MIN_SPEEDUP` x fp32."""
    return bf16_speedup(torch.device(device).type) >= BF16_MIN_SPEEDUP


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> ``bf16`` where bf16 is native and measured faster on ``device`` (:func:`fast_bf16`), else
    ``fp32``; fp32, bf16 and fp16 stay as they are."""
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return precision


@contextlib.contextmanager
def bf16_matmul_math() -> Iterator[None]:
    """fp32 GEMMs on CPU run on the bf16 units inside this block (oneDNN's "fpmath" mode): inputs rounded to bf16,
    products accumulated and returned in fp32. Exact for operands that hold bf16 values already, which is how the
    attention's split scores use it (:func:`split_bf16_scores`); nothing else runs inside it."""
    settings = torch.backends.mkldnn.matmul  # type: ignore[attr-defined]  # set up at run time by torch.backends
    before = settings.fp32_precision
    settings.fp32_precision = "bf16"
    try:
        yield
    finally:
        settings.fp32_precision = before


def _time_score_gemms(repeats: int = 6) -> tuple[float, float]:
    """Seconds for a factorised attention's score GEMM (1024 queries x 96 features x 3072 keys) in fp32 and as the
    three-term bf16 split (3x the features, bf16 math): the best of ``repeats`` alternating runs after two
    warm-ups each (the first calls pay oneDNN's kernel generation and the thread pool's start)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 96, generator=generator)
    b = torch.randn(3072, 96, generator=generator).t()  # keys row by row, as the attention holds them
    a3, b3 = torch.cat([a, a, a], 1), torch.cat([b, b, b], 0)
    out = torch.empty(1024, 3072)
    best = [float("inf"), float("inf")]
    for i in range(repeats + 2):
        for j, (x, y) in enumerate(((a, b), (a3, b3))):
            context = bf16_matmul_math() if j else contextlib.nullcontext()
            with context:
                start = time.perf_counter()
                torch.mm(x, y, out=out)
                seconds = time.perf_counter() - start
            if i >= 2:
                best[j] = min(best[j], seconds)
    return best[0], best[1]


@functools.cache
def split_bf16_speedup(device_type: str = "cpu") -> float:
    """How many times faster than one fp32 GEMM the attention's scores run as three bf16 GEMMs ("bf16x3":
    hi*hi + hi*lo + lo*hi of each operand's bf16 split, fp32 accumulation; about 1e-5 relative error against
    fp32's 1e-6) on this CPU, measured once per process. AMX units run bf16 GEMMs ~6-10x faster than fp32,
    so the split wins ~2-3x there; AVX512-bf16 (2x) loses. 0 off the CPU, where bf16 is not native, or where
    oneDNN's math-mode switch is missing."""
    if device_type != "cpu" or not native_bf16("cpu") or not torch.backends.mkldnn.is_available():
        return 0.0
    if not hasattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision"):
        return 0.0
    fp32, split = _time_score_gemms()
    return fp32 / split


def split_bf16_scores(device: torch.device | str) -> bool:
    """Whether the attention's fp32 scores should run as split bf16 GEMMs on ``device`` when its other products
    run in bf16 anyway (bf16 autocast or the kernel's fast mode; never in fp32 mode, which stays IEEE fp32):
    measured at least :data:`BF16_MIN_SPEEDUP` x one fp32 GEMM (:func:`split_bf16_speedup`)."""
    return split_bf16_speedup(torch.device(device).type) >= BF16_MIN_SPEEDUP


def proc_bytes(path: str, key: str) -> int | None:
    """A ``key: N kB`` field of a Linux /proc file (``/proc/meminfo``, ``/proc/self/status``) in bytes, or None
    where the file or the field is missing."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """This process's resident memory in bytes now (Linux's ``VmRSS``); 0 where /proc is missing."""
    return proc_bytes("/proc/self/status", "VmRSS") or 0


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes: the high-water mark of its own address space (Linux's
    ``VmHWM``). Unlike ``getrusage``'s ``ru_maxrss``, it does not start from the parent's resident size when a big
    process spawns a small one (``execve`` carries the old address space's peak into ``ru_maxrss``). 0 where
    /proc is missing."""
    return proc_bytes("/proc/self/status", "VmHWM") or 0
