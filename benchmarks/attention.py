"""Pyramid attention: time, peak memory and GFLOP/s of panet's tiled block vs the materialised reference.

    python benchmarks/attention.py                 # the full table (several minutes on 2 cores)
    python benchmarks/attention.py --quick         # 48 and 96 only, no training step
    python benchmarks/attention.py --markdown docs/performance-table.md

Every configuration runs in a fresh subprocess, so its peak memory (peak RSS above the RSS after setup) is its
own and allocator settings apply per run. "ref" is the plain formulation from src/panet/nn/reference.py: N x L scores
materialised, torch.softmax, einsum. "ref+THP" is the same with THP_MEM_ALLOC_ENABLE=1, which makes PyTorch's
CPU allocator use huge pages and so cheapens the reference's page faults. Our block runs with the same setting
in each pair. FLOPs = 2 * N * L * (C/r*9 + C*9). The GEMM rate is the best fp32 rate of torch.mm and oneDNN,
measured in this run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
C, REDUCTION, LEVELS = 64, 2, 5


def n_keys(h: int, w: int) -> int:
    return sum(math.floor(h * (1 - i / 10)) * math.floor(w * (1 - i / 10)) for i in range(LEVELS))


def flops(batch: int, size: int) -> float:
    return 2.0 * batch * size * size * n_keys(size, size) * (C // REDUCTION * 9 + C * 9)


def reference_bytes(batch: int, size: int) -> float:
    # scores + softmax + one more N x L temporary, fp32
    return 3 * 4.0 * batch * size * size * n_keys(size, size)


# ---------------------------------------------------------------- worker side


def worker(spec: dict) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from panet.hardware import peak_rss_bytes, rss_bytes
    from panet.nn.attention import PyramidAttention
    from panet.nn.reference import reference_module

    torch.manual_seed(0)
    if spec["impl"] == "gemm":
        return {"gflops": gemm_rate()}
    block = PyramidAttention(C, REDUCTION, fast=spec["impl"] == "fast")
    x = torch.randn(spec["batch"], C, spec["size"], spec["size"])
    train = spec["mode"] == "train"
    if train:
        x.requires_grad_(True)

    def run():
        if spec["impl"] == "ref":
            out = reference_module(block, x)
        else:
            out = block(x)
        if train:
            out.backward(torch.ones_like(out))
            x.grad = None
            block.zero_grad(set_to_none=True)
        return out

    base = rss_bytes()
    ctx = torch.enable_grad() if train else torch.no_grad()
    with ctx:
        t0 = time.perf_counter()
        out = run()
        first = time.perf_counter() - t0
        peak = peak_rss_bytes() - base
        # the first call also pays one-off costs (oneDNN kernel generation, first-touch page faults): it is a
        # warm-up, timed only where a configuration runs once
        times = [first] if spec["repeat"] == 1 else []
        for _ in range(spec["repeat"] - len(times)):
            t0 = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t0)
    result = {"time": statistics.median(times), "peak_bytes": peak}
    if spec.get("compare_exact"):
        exact = PyramidAttention(C, REDUCTION)
        exact.load_state_dict(block.state_dict())
        with torch.no_grad():
            ref = exact(x)
            out = out.detach()
        err = (out - ref).abs().max().item()
        mse = ((out - ref) ** 2).mean().item()
        span = (ref.max() - ref.min()).item()
        result.update(
            max_abs_err=err, rel_err=err / ref.abs().max().item(), psnr_vs_exact=10 * math.log10(span**2 / mse)
        )
    return result


def gemm_rate() -> float:
    import torch

    best = 0.0
    a, b = torch.randn(2048, 1024), torch.randn(1024, 2048)
    w = b.t().contiguous()
    candidates = [lambda: torch.mm(a, b)]
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 2048)
        candidates.append(lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""))
    for fn in candidates:
        fn()
        ts = []
        for _ in range(7):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        best = max(best, 2 * 2048 * 1024 * 2048 / min(ts) / 1e9)
    return best


# ---------------------------------------------------------------- parent side


def measure(spec: dict, thp: bool, timeout: float) -> dict | None:
    env = dict(os.environ)
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    if thp:
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        print(
            f"  [{spec}] failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}",
            file=sys.stderr,
        )
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def repeats(size: int, repeat: int) -> int:
    """Timed runs per configuration, after an untimed warm-up run (none above 128x128, where one run takes a minute):
    a 48x48 forward takes ~0.1 s, so the median of 3 swung by ~30% between processes."""
    return repeat * 5 if size <= 64 else repeat if size <= 128 else 1


def fmt_time(t: float | None) -> str:
    return "-" if t is None else (f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s")


def fmt_mem(b: float | None) -> str:
    return "-" if b is None else (f"{b / 2**20:.0f} MB" if b < 2**30 else f"{b / 2**30:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="48,64,96,128,256")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="sizes 48 and 96, no training step")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--max-ref-gb", type=float, default=18.0, help="skip the reference above this estimated memory")
    parser.add_argument("--markdown", help="also write the tables as markdown to this file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    sizes = [48, 96] if args.quick else [int(s) for s in args.sizes.split(",")]
    import torch

    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    rate = measure({"impl": "gemm"}, False, 300)["gflops"]
    emit(f"torch {torch.__version__}, {torch.get_num_threads()} threads, C={C}, reduction {REDUCTION}, {LEVELS} levels")
    emit(f"machine fp32 GEMM rate (best of torch.mm / oneDNN, this run): {rate:.0f} GFLOP/s")
    emit()
    emit(
        "Forward, batch 1 (median of the timed runs after one untimed warm-up run, a single cold run at 256x256; "
        "memory = peak RSS above setup):"
    )
    emit()
    emit(
        "| feature map | keys L | ours | ours GFLOP/s (% of GEMM) | ours peak | ref | ref peak | ref+THP | ours+THP | speed-up vs ref / ref+THP | memory ours/ref |"
    )
    emit("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        fl = flops(1, size)
        spec = {"impl": "ours", "batch": 1, "size": size, "mode": "fwd", "repeat": repeats(size, args.repeat)}
        ours = measure(spec, False, 1800)
        ours_thp = measure(spec, True, 1800)
        fits = reference_bytes(1, size) < args.max_ref_gb * 2**30
        ref = measure({**spec, "impl": "ref"}, False, 1800) if fits else None
        ref_thp = measure({**spec, "impl": "ref"}, True, 1800) if fits else None
        g = fl / ours["time"] / 1e9
        speed = (
            f"{ref['time'] / ours['time']:.2f}x / {ref_thp['time'] / ours_thp['time']:.2f}x"
            if ref and ref_thp
            else f"ref needs ~{reference_bytes(1, size) / 2**30:.0f} GB"
        )
        mem_ratio = f"1/{ref['peak_bytes'] / max(ours['peak_bytes'], 1):.0f}" if ref else "-"
        emit(
            f"| {size}x{size} | {n_keys(size, size):,} | {fmt_time(ours['time'])} | {g:.0f} ({100 * g / rate:.0f}%) | "
            f"{fmt_mem(ours['peak_bytes'])} | {fmt_time(ref and ref['time'])} | {fmt_mem(ref and ref['peak_bytes'])} | "
            f"{fmt_time(ref_thp and ref_thp['time'])} | {fmt_time(ours_thp['time'])} | {speed} | {mem_ratio} |"
        )
    if not (args.quick or args.no_train):
        emit()
        emit("Training step of the block (forward + backward), batch 16, 48x48:")
        emit()
        emit("| | time | peak memory | GFLOP/s (fwd+bwd = 3.33x fwd FLOPs) |")
        emit("|---|---|---|---|")
        spec = {"impl": "ours", "batch": 16, "size": 48, "mode": "train", "repeat": args.repeat}
        results = {
            "ours": measure(spec, False, 1800),
            "ours+THP": measure(spec, True, 1800),
            "ref": measure({**spec, "impl": "ref"}, False, 1800),
            "ref+THP": measure({**spec, "impl": "ref"}, True, 1800),
        }
        # backward = recompute scores + 4 GEMMs: 2*N*L*(3*288 + 2*576)... counted as forward + 2x forward
        fl = flops(16, 48) * (1 + 7 / 3)
        for name, r in results.items():
            emit(f"| {name} | {fmt_time(r['time'])} | {fmt_mem(r['peak_bytes'])} | {fl / r['time'] / 1e9:.0f} |")
        emit()
        emit(
            f"ours vs ref: {results['ref']['time'] / results['ours']['time']:.2f}x faster, "
            f"memory {results['ours']['peak_bytes'] / results['ref']['peak_bytes']:.2f} of ref; "
            f"with THP: {results['ref+THP']['time'] / results['ours+THP']['time']:.2f}x, "
            f"memory {results['ours+THP']['peak_bytes'] / results['ref+THP']['peak_bytes']:.2f}"
        )
    emit()
    emit("Opt-in fast mode (attention-weighted sum in bf16; scores and softmax fp32), forward, batch 1:")
    emit()
    emit("| feature map | exact | fast | speed-up | max abs err | rel err | PSNR fast vs exact (dB) |")
    emit("|---|---|---|---|---|---|---|")
    for size in [s for s in sizes if s in (48, 96, 128)]:
        spec = {"impl": "ours", "batch": 1, "size": size, "mode": "fwd", "repeat": repeats(size, args.repeat)}
        exact = measure(spec, False, 1800)
        fast = measure({**spec, "impl": "fast", "compare_exact": True}, False, 1800)
        emit(
            f"| {size}x{size} | {fmt_time(exact['time'])} | {fmt_time(fast['time'])} | {exact['time'] / fast['time']:.2f}x | "
            f"{fast['max_abs_err']:.2e} | {fast['rel_err']:.2e} | {fast['psnr_vs_exact']:.1f} |"
        )
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
