"""Native row kernels for the factorised pyramid attention on CPU, compiled on first use.

The factorised attention (:mod:`panet.nn.attention`) spends most of its CPU time outside its GEMMs: PyTorch runs
the vertical patch sums and the softmax as about a dozen passes over each sample's whole N x L matrix. The C
kernels in ``native_rows.c`` do the same work one query row at a time while it sits in the L1 cache (1.4-1.6x the
attention's speed on an AMX Xeon, see docs/performance.md). They are compiled with the system's C compiler (``$CC``
or ``cc``) for this CPU (``-march=native``) the first time they are needed, in about a second, into
``$PANET_CACHE`` (default ``~/.cache/panet``) under a name that hashes the source, the compiler and the CPU, so a
home folder shared between machines holds one build per CPU. The OpenMP threads are those of the libgomp that
PyTorch loaded (same soname), so no second thread pool competes with PyTorch's.

Where no compiler works (or ``PANET_NATIVE=0``), :func:`available` is False and the attention keeps its PyTorch
operations, which give the same results to float rounding; :func:`status` says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("native_rows.c")
_MATH = ["-fno-math-errno", "-fno-trapping-math", "-ffinite-math-only", "-fno-signed-zeros"]
# tried in order: the first that compiles is used (the x86-only flag and OpenMP are optional)
FLAG_SETS = (
    ["-O3", "-march=native", "-mprefer-vector-width=512", *_MATH, "-fopenmp"],
    ["-O3", "-march=native", *_MATH, "-fopenmp"],
    ["-O3", "-march=native", *_MATH],
    ["-O3", *_MATH],
)

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_status: str | None = None  # None: not tried yet
_disabled = 0  # depth of disabled() blocks


def _cache_dir() -> Path:
    if os.environ.get("PANET_CACHE"):
        return Path(os.environ["PANET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "panet"


def _cpu_identity() -> str:
    """What -march=native depends on: the machine, and on Linux the CPU's model name and flags."""
    text = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features")):
                text += "\n" + line
            if not line.strip() and text.count("\n") >= 2:
                break  # the first processor's block is enough
    return text


def _compiler() -> str | None:
    name = os.environ.get("CC", "cc")
    return shutil.which(name)


class CompileError(OSError):
    """No flag set compiled the kernels with this compiler."""


def _build(compiler: str, folder: Path) -> Path:
    """The compiled library (cached in ``folder``); CompileError when no flag set compiles, OSError when
    ``folder`` cannot be written."""
    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(source + version.encode() + _cpu_identity().encode() + repr(FLAG_SETS).encode())
    target = folder / f"native-rows-{key.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for flags in FLAG_SETS:
        handle, temporary = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(handle)
        try:
            done = subprocess.run(
                [compiler, *flags, "-shared", "-fPIC", "-o", temporary, str(SOURCE)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode == 0:
                os.replace(temporary, target)  # atomic: a concurrent process sees no half-written library
                return target
            errors.append(done.stderr.strip().splitlines()[-1:] or ["?"])
        finally:
            if os.path.exists(temporary):  # a failed or interrupted build leaves nothing behind
                os.unlink(temporary)
    raise CompileError(f"{compiler} could not compile {SOURCE.name}: {errors[-1][0]}")


def _declare(library: ctypes.CDLL) -> None:
    pointer, number = ctypes.c_void_p, ctypes.c_int
    shape: list[type] = [number] * 4 + [pointer, pointer, number]  # height, width, keys, levels, sizes, threads
    library.panet_softmax_rows.argtypes = [pointer, pointer, pointer, *shape]
    library.panet_diagonal_rows.argtypes = [pointer, pointer, number, *shape]
    library.panet_softmax_backward_rows.argtypes = [
        pointer,
        pointer,
        pointer,
        pointer,
        number,
        pointer,
        pointer,
        *shape,
    ]
    library.panet_prelu_backward_bf16.argtypes = [
        pointer,
        pointer,
        ctypes.c_float,
        pointer,
        pointer,
        ctypes.c_long,
        number,
    ]
    for name in (
        "panet_softmax_rows",
        "panet_diagonal_rows",
        "panet_softmax_backward_rows",
        "panet_prelu_backward_bf16",
    ):
        getattr(library, name).restype = number


def _load() -> ctypes.CDLL | None:
    global _library, _status
    with _lock:
        if _status is not None:
            return _library
        if os.environ.get("PANET_NATIVE", "1") == "0":
            _status = "off (PANET_NATIVE=0)"
            return None
        compiler = _compiler()
        if compiler is None:
            _status = f"off: no C compiler ({os.environ.get('CC', 'cc')}) found"
            return None
        try:
            try:
                path = _build(compiler, _cache_dir())
            except CompileError:
                raise
            except OSError:  # the cache folder cannot be written (read-only home): a private temporary one
                path = _build(compiler, Path(tempfile.mkdtemp(prefix="panet-native-")))
            library = ctypes.CDLL(str(path))
            _declare(library)
        except (OSError, subprocess.SubprocessError, AttributeError) as error:
            _status = f"off: {error}"
            return None
        _library, _status = library, f"on: {path}"
        return library


def available() -> bool:
    """Whether the native kernels are built and loaded (building them on the first call) and not disabled."""
    return _disabled == 0 and _load() is not None


def status() -> str:
    """'on: <library>' or 'off: <why>' (builds on the first call)."""
    _load()
    return str(_status) + (" (disabled in this block)" if _disabled else "")


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Inside this block the attention uses its PyTorch operations (tests compare the two)."""
    global _disabled
    _disabled += 1
    try:
        yield
    finally:
        _disabled -= 1


def _layout(matrix: Tensor, width: int, sizes: Sequence[tuple[int, int]]):
    n, n_keys = matrix.shape
    if n % width or sum(h * w for h, w in sizes) != n_keys:
        raise ValueError(f"a {n} x {n_keys} matrix does not fit width {width} and levels {list(sizes)}")
    heights = (ctypes.c_int * len(sizes))(*(h for h, _ in sizes))
    widths = (ctypes.c_int * len(sizes))(*(w for _, w in sizes))
    return n // width, width, n_keys, len(sizes), heights, widths, torch.get_num_threads()


def _check(*tensors: Tensor, bf16: Tensor | None = None) -> None:
    """Contiguous CPU fp32 tensors (``bf16``: one that may also be bf16)."""
    for t in (*tensors, *(() if bf16 is None else (bf16,))):
        allowed = (torch.float32, torch.bfloat16) if t is bf16 else (torch.float32,)
        if t.device.type != "cpu" or not t.is_contiguous() or t.dtype not in allowed:
            raise ValueError(f"native kernels take contiguous CPU fp32 tensors, got {t.dtype} on {t.device}")


def _call(name: str, *args) -> None:
    library = _load()
    if library is None:
        raise RuntimeError(f"native kernels unavailable: {_status}")
    code = getattr(library, name)(*args)
    if code:
        raise RuntimeError(f"{name} failed (code {code})")


def softmax_rows(scores: Tensor, inv_norm: Tensor, out: Tensor, width: int, sizes) -> Tensor:
    """``out = softmax(diag(scores) * inv_norm, dim=1)``: (N, L) fp32, ``inv_norm`` (L,), ``diag`` the vertical
    3-row sum of :func:`panet.nn.attention._diagonal_row_sum`."""
    _check(scores, inv_norm, out)
    _call("panet_softmax_rows", scores.data_ptr(), inv_norm.data_ptr(), out.data_ptr(), *_layout(scores, width, sizes))
    return out


def diagonal_rows(src: Tensor, out: Tensor, width: int, sizes) -> Tensor:
    """``out = diag(src)`` for an (N, L) fp32 ``src``, into fp32 or (rounded to nearest even) bf16 ``out``."""
    _check(src, bf16=out)
    bf16 = int(out.dtype == torch.bfloat16)
    _call("panet_diagonal_rows", src.data_ptr(), out.data_ptr(), bf16, *_layout(src, width, sizes))
    return out


def softmax_backward_rows(
    scores: Tensor, inv_norm: Tensor, probs: Tensor, d_weights: Tensor, d_scaled: Tensor, d_norm: Tensor, width, sizes
) -> None:
    """The softmax's backward pass for ``probs = softmax(S)``, ``S = diag(scores) * inv_norm``, given
    ``d_weights`` (fp32 or bf16) whose ``diag`` is dL/dP: writes ``d_scaled = dS * inv_norm`` (N, L) and
    ``d_norm`` (L,), the gradient for the norms that divide S."""
    _check(scores, inv_norm, probs, d_scaled, d_norm, bf16=d_weights)
    if d_weights.shape != scores.shape:
        raise ValueError(f"d_weights {tuple(d_weights.shape)} and scores {tuple(scores.shape)} differ")
    bf16 = int(d_weights.dtype == torch.bfloat16)
    pointers = [t.data_ptr() for t in (scores, inv_norm, probs, d_weights)]
    outputs = [t.data_ptr() for t in (d_scaled, d_norm)]
    _call("panet_softmax_backward_rows", *pointers, bf16, *outputs, *_layout(scores, width, sizes))


def prelu_backward(x: Tensor, grad: Tensor, slope: float) -> tuple[Tensor, Tensor]:
    """The gradients of ``F.prelu(x, w)`` for one slope ``w`` shared by every element, for bf16 CPU tensors of
    the same layout (dense, equal strides): ``grad_x`` (bf16, ``x``'s layout) and the slope's gradient (fp32, 0-d),
    summed in fp32."""
    if x.dtype != torch.bfloat16 or grad.dtype != torch.bfloat16 or x.device.type != "cpu":
        raise ValueError("prelu_backward takes bf16 CPU tensors")
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    if x.shape != grad.shape or x.stride() != grad.stride() or not dense:
        raise ValueError("prelu_backward takes x and grad of one dense layout")
    grad_x = torch.empty_like(x)
    grad_slope = torch.zeros((), dtype=torch.float32)
    pointers = (x.data_ptr(), grad.data_ptr(), float(slope), grad_x.data_ptr(), grad_slope.data_ptr())
    _call("panet_prelu_backward_bf16", *pointers, x.numel(), torch.get_num_threads())
    return grad_x, grad_slope
