"""The main job, timed: `panet restore`'s default denoiser on a 512x512 and a 1024x1024 noisy photo.

    python benchmarks/restore.py --data-root ../shared/data            # full table (about 15 min on 2 cores)
    python benchmarks/restore.py --data-root ../shared/data --sizes 512 --modes default,legacy
    python benchmarks/restore.py --data-root ../shared/data --markdown docs/performance-restore.md

Modes: "default" is `panet restore --task denoise` as shipped (its measured tiling, tile batches, --precision
auto); "fp32" and "bf16" are the default tiling with that precision forced; "legacy" is `--tiling legacy`, the
paper's protocol (the release's recursive chop, one tile at a time, fp32). The 512x512 photo is a crop of Kodak24
kodim01; the 1024x1024 one is four 512x512 Kodak24 crops side by side (the set has no larger photo). Noise is
Gaussian, sigma 25, seeded.

Each configuration runs in a fresh subprocess after one untimed warm-up restore of a 64x64 crop: its peak memory
is the peak RSS above the RSS after setup. FLOPs are counted exactly from the shapes each layer sees (forward
hooks: every convolution, and 2 N L (9 C/r + 9 C) per pyramid-attention call, the release's 3x3 patch GEMMs), so
"GFLOP/s" is the release's work of the whole restore per second, compared with the machine's fp32 and bf16 GEMM
rates measured in the same run (2048^3, the faster of torch.mm and oneDNN's packed GEMM, best of 5). On the
factorised small-map path the attention executes a third of that work (1x3 row patches: 2 N L (3 C/r + 3 C)), so
"executed GFLOP/s" counts what ran, against the GEMM rate of the precision it ran in. The 12 MP column extrapolates the seconds
per pixel of the largest size.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGMA = 25


def photo(data_root: Path, size: int):
    """(clean, noisy) uint8 size x size x 3."""
    import numpy as np

    from panet.data.degrade import gaussian_noise
    from panet.data.images import read_image

    names = ["kodim01", "kodim02", "kodim03", "kodim05"]
    crops = [read_image(data_root / "benchmarks" / "Kodak24" / f"{n}.png")[:512, :512] for n in names]
    if size <= 512:
        clean = crops[0][:size, :size]
    else:
        grid = np.concatenate([np.concatenate(crops[:2], 1), np.concatenate(crops[2:], 1)], 0)
        clean = np.tile(grid, (size // 1024 + 1, size // 1024 + 1, 1))[:size, :size]
    return clean, gaussian_noise(clean, SIGMA, seed=size)


class FlopCount:
    """FLOPs of a network's forward passes, from the shapes its layers see: ``total`` counts the attention as the
    release computes it (3x3 patch GEMMs), ``executed`` as this run computed it (1x3 row patches on the factorised
    small-map path)."""

    def __init__(self, model):
        import torch

        from panet.nn.attention import PyramidAttention, pyramid_sizes, runs_factorised

        self.total = self.executed = 0.0

        def conv(module, args, out):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            self.total += 2.0 * out.numel() * k
            self.executed += 2.0 * out.numel() * k

        def attention(module, args):
            b, c, h, w = args[0].shape
            keys = sum(hl * wl for hl, wl in pyramid_sizes(h, w, module.levels))
            work = 2.0 * b * h * w * keys * (c // module.reduction + c)
            factorised = runs_factorised(
                h, w, module.levels, hard=module.hard, max_direct_scores=module.max_direct_scores
            )
            self.total += 9 * work
            self.executed += (3 if factorised else 9) * work

        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(conv)
            elif isinstance(m, PyramidAttention):
                m.register_forward_pre_hook(attention)


def worker(spec: dict) -> dict:
    import torch

    from panet.evaluation.metrics import psnr
    from panet.hardware import peak_rss_bytes, resolve_precision, rss_bytes
    from panet.inference.restore import resolve_tiling, run_network
    from panet.zoo.resolver import resolve_network

    clean, noisy = photo(Path(spec["data_root"]), spec["size"])
    model = resolve_network("denoise", None, colors=3).model  # as panet restore loads it
    counter = FlopCount(model)
    tile, overlap = resolve_tiling(model, "cpu")
    mode = spec["mode"]
    run = dict(
        task="denoise",
        tiling="legacy" if mode == "legacy" else "tile",
        tile=tile,
        overlap=overlap,
        precision={"default": "auto", "legacy": "fp32"}.get(mode, mode),
    )
    x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float().div(255)
    run_network(model, x[..., :64, :64], **run)  # warm-up: oneDNN kernel generation, first-touch memory
    counter.total = counter.executed = 0.0
    base = rss_bytes()
    start = time.perf_counter()
    y = run_network(model, x, **run)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes() - base
    out = (y[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return {
        "seconds": seconds,
        "peak": max(peak, 0),
        "psnr": psnr(out, clean),
        "flops": counter.total,
        "executed_flops": counter.executed,
        "precision": resolve_precision(run["precision"], "cpu"),
        "tiling": "legacy chop" if mode == "legacy" else f"tiles {tile}/{overlap}",
        "threads": torch.get_num_threads(),
    }


def gemm_rates() -> dict:
    import torch

    rates = {}
    onednn = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
        paths = [functools.partial(torch.mm, a, b)]
        if onednn:  # the attention's own GEMM path; on AMD CPUs MKL's fp32 mm runs well below it
            packed = torch.ops.mkldnn._reorder_linear_weight(b, 2048)
            paths.append(functools.partial(torch.ops.mkldnn._linear_pointwise, a, packed, None, "none", [], ""))
        for run in paths:
            run()
        best = min(_timed(run) for run in paths for _ in range(5))
        rates[name] = 2 * 2048**3 / best / 1e9
    return rates


def _timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--modes", default="default,fp32,bf16,legacy")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from panet.hardware import bf16_speedup, cpu_description, resolve_precision

    rates = gemm_rates()
    auto = resolve_precision("auto", "cpu")
    header = (
        f"CPU: {cpu_description()}. GEMM (2048^3, the faster of torch.mm and oneDNN): fp32 {rates['fp32']:.0f} GFLOP/s, bf16 "
        f"{rates['bf16']:.0f} GFLOP/s. bf16 / fp32 on a restore's shapes: {bf16_speedup('cpu'):.2f}x, so "
        f"--precision auto runs {auto}."
    )
    print(header, flush=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for mode in args.modes.split(","):
            spec = {"size": size, "mode": mode, "data_root": args.data_root}
            result = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(spec)],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )
            if result.returncode:
                print(result.stderr, file=sys.stderr)
                continue
            r = json.loads(result.stdout.strip().splitlines()[-1])
            rate = r["flops"] / r["seconds"] / 1e9
            r.update(
                size=size,
                mode=mode,
                rate=rate,
                executed_rate=r["executed_flops"] / r["seconds"] / 1e9,
                mp_per_min=size * size / 1e6 / r["seconds"] * 60,
                twelve_mp=r["seconds"] * 12e6 / (size * size),
            )
            rows.append(r)
            print(
                f"{size}x{size} {mode:8s} {r['tiling']:12s} {r['precision']}: {r['seconds']:7.1f} s, "
                f"{r['mp_per_min']:.2f} MP/min, {r['peak'] / 2**20:5.0f} MB, {r['psnr']:.2f} dB, {rate:.0f} GFLOP/s "
                f"({rate / rates['fp32']:.0%} of fp32 GEMM, {rate / rates['bf16']:.0%} of bf16)",
                flush=True,
            )
    lines = [
        "| photo | mode | tiling | precision | seconds | MP / min | peak MB | PSNR (dB) | GFLOP/s | % fp32 GEMM "
        "| % bf16 GEMM | executed GFLOP/s | executed, % of its precision's GEMM | 12 MP (extrapolated) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']}x{r['size']} | {r['mode']} | {r['tiling']} | {r['precision']} | {r['seconds']:.1f} | "
            f"{r['mp_per_min']:.2f} | {r['peak'] / 2**20:.0f} | {r['psnr']:.2f} | {r['rate']:.0f} | "
            f"{r['rate'] / rates['fp32']:.0%} | {r['rate'] / rates['bf16']:.0%} | {r['executed_rate']:.0f} | "
            f"{r['executed_rate'] / rates[r['precision']]:.0%} | {r['twelve_mp'] / 60:.1f} min |"
        )
    for size in sorted({r["size"] for r in rows}):
        by_mode = {r["mode"]: r for r in rows if r["size"] == size}
        if "default" in by_mode and "legacy" in by_mode:
            d, legacy = by_mode["default"], by_mode["legacy"]
            lines.append("")
            lines.append(
                f"{size}x{size}: default {legacy['seconds'] / d['seconds']:.1f}x faster than legacy, PSNR "
                f"{d['psnr'] - legacy['psnr']:+.2f} dB."
            )
    table = "\n".join([header, "", *lines])
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
