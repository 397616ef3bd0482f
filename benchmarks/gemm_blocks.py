"""Would a fused CPU attention kernel keep its GEMMs fast? bf16 GEMM rates on one core, by rows per call.

    python benchmarks/gemm_blocks.py
    python benchmarks/gemm_blocks.py --markdown table.md

A fused kernel (scores -> row sums and softmax -> weighted sum, one block of query rows at a time while it is in
cache) would call a GEMM per block of query rows from C. The only bf16 GEMM that the CPU build of torch exports
for C code is MKL's ``cblas_gemm_bf16bf16f32`` (libtorch_cpu.so; there is no bf16 pack/compute pair to pack the
keys once). This prints its rate on a 32x32 restore tile's shapes (the split score GEMM: rows x 3278 keys x 288;
the weighted sum: rows x 192 x 3278 keys) for blocks of 32-1024 query rows, beside ``torch.mm`` (oneDNN) on the
same shapes, one thread each. The fused kernel pays only if a block's GEMM runs near the whole tile's rate.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path

from timing import best_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
KEYS, SCORE_WIDTH, VALUE_WIDTH = 3278, 288, 192  # a 32x32 tile: 5 levels of keys; split 1x3 row patches


def _mkl_gemm():
    import torch

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        gemm = lib.cblas_gemm_bf16bf16f32
    except (OSError, AttributeError):
        return None
    gemm.restype = None
    gemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    gemm.argtypes += [ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
    return gemm


def measure(rows: int, n: int, k: int, b_transposed: bool, gemm) -> dict:
    import torch

    a = torch.randn(rows, k).bfloat16()
    b = torch.randn(n, k).bfloat16() if b_transposed else torch.randn(k, n).bfloat16()
    c = torch.empty(rows, n)
    flops = 2.0 * rows * n * k
    bt = b.t() if b_transposed else b
    out = {"rows": rows, "n": n, "k": k, "torch": flops / best_seconds(lambda: torch.mm(a, bt), 30) / 1e9}
    if gemm is not None:
        ldb = k if b_transposed else n
        call = (ROW_MAJOR, NO_TRANS, TRANS if b_transposed else NO_TRANS, rows, n, k, 1.0, a.data_ptr(), k)
        out["mkl"] = flops / best_seconds(lambda: gemm(*call, b.data_ptr(), ldb, 0.0, c.data_ptr(), n), 30) / 1e9
        expected = a.float() @ bt.float()
        out["mkl_error"] = float((c - expected).abs().max() / expected.abs().max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="32,64,128,256,1024")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    import torch

    from panet.hardware import cpu_description

    torch.set_num_threads(1)
    gemm = _mkl_gemm()
    lines = [
        f"CPU: {cpu_description()}; one thread; torch {torch.__version__}; MKL cblas_gemm_bf16bf16f32 "
        f"{'found' if gemm is not None else 'not exported by this torch build'}.",
        "",
        "| GEMM | query rows per call | torch.mm GFLOP/s | MKL GFLOP/s | MKL max error / max |",
        "|---|---|---|---|---|",
    ]
    for rows in (int(r) for r in args.rows.split(",")):
        for name, n, k, transposed in (
            (f"scores: rows x {KEYS} x {SCORE_WIDTH}", KEYS, SCORE_WIDTH, True),
            (f"weighted sum: rows x {VALUE_WIDTH} x {KEYS}", VALUE_WIDTH, KEYS, False),
        ):
            r = measure(rows, n, k, transposed, gemm)
            mkl = f"{r['mkl']:.0f} | {r['mkl_error']:.1e}" if "mkl" in r else "- | -"
            lines.append(f"| {name} | {rows} | {r['torch']:.0f} | {mkl} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
