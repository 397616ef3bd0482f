"""The one-shot GPU check (issue 21): run it once whenever a CUDA machine is lent; under 8 minutes on an H100/H200.

    python benchmarks/gpu.py --output docs/performance-gpu.md             # on the GPU machine
    python benchmarks/gpu.py --device cpu --quick --output /tmp/gpu.md    # the same script on CPU, tiny sizes (tests)

In one run, on one device, it prints and writes as markdown:

1. the device and its own GEMM rates (bf16, fp16, TF32, fp32 at 8192^3 on CUDA), measured first;
2. parity: every attention path (factorised, SDPA, the tiled kernel) against the materialised release formulation
   in float64 on small odd shapes, forward and gradients, on this device;
3. the attention block forward and forward+backward at 64^2..512^2 features (C = 64, reduction 2, 5 levels, batch
   1), per path: milliseconds, peak memory and TFLOP/s of the release's work (2 N L (9 C/r + 9 C) forward, 2.5x
   that with the backward) against the GEMM rates; "release" materialises the N x L scores as the authors' code
   does (only where that fits in memory);
4. the paper's PANet training step (80 blocks, batch 16, 48x48 patches) with each backend, fp32 and bf16 autocast;
5. the shipped default denoiser restoring a 12-megapixel photo (4000x3000, synthetic) with `panet.restore`.

A configuration that would exceed its time or memory is skipped with the reason; nothing else is left out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from panet.nn.attention import PyramidAttention, pyramid_sizes  # noqa: E402
from panet.nn.reference import reference_module  # noqa: E402

PATHS = {  # name -> PyramidAttention settings
    "factorised": {"backend": "auto", "max_direct_scores": 1 << 62},
    "sdpa": {"backend": "sdpa"},
    "kernel": {"backend": "kernel"},
}
# The fused Triton kernels: on CUDA when triton imports (on CPU they need the interpreter). They compute in fp32
# (or bf16 operands under autocast) also for float64 inputs.
FUSED = {"triton": {"backend": "triton"}}


def paths(device: torch.device) -> dict[str, dict]:
    from panet.nn.triton_attention import triton_available

    return {**PATHS, **(FUSED if device.type == "cuda" and triton_available() else {})}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 3) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def gemm_rates(device: torch.device, size: int) -> dict[str, float]:
    """TFLOP/s of a size^3 matmul per dtype on this device (TF32: fp32 with TF32 allowed)."""
    rates = {}
    kinds = [("bf16", torch.bfloat16, False), ("fp32", torch.float32, False)]
    if device.type == "cuda":
        kinds += [("fp16", torch.float16, False), ("tf32", torch.float32, True)]
    for name, dtype, tf32 in kinds:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            seconds = timed(lambda a=a, b=b: a @ b, device)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
        rates[name] = 2 * size**3 / seconds / 1e12
    return rates


def block_for(path: str, device: torch.device, dtype=torch.float32, *, channels: int = 64, levels: int = 5):
    torch.manual_seed(0)
    block = PyramidAttention(channels, 2, levels=levels, **{**PATHS, **FUSED}[path])
    return block.to(device=device, dtype=dtype)


def parity(device: torch.device, shapes) -> list[str]:
    """Max |difference| of each path against the materialised float64 formulation, forward and input gradient."""
    lines = [
        "| shape (B, C, H, W), levels | path | forward max abs diff | gradient max rel diff |",
        "|---|---|---|---|",
    ]
    for shape, levels in shapes:
        x = torch.randn(*shape, device=device, dtype=torch.float64)
        reference = block_for("kernel", device, torch.float64, channels=shape[1], levels=levels)
        xr = x.clone().requires_grad_(True)
        ref = reference_module(reference, xr)
        grad = torch.randn_like(ref)
        (ref_grad,) = torch.autograd.grad(ref, xr, grad)
        for path in paths(device):
            block = block_for(path, device, torch.float64, channels=shape[1], levels=levels)
            block.load_state_dict(reference.state_dict())
            xp = x.clone().requires_grad_(True)
            out = block(xp)
            (g,) = torch.autograd.grad(out, xp, grad)
            forward = (out - ref).abs().max().item()
            backward = ((g - ref_grad).norm() / ref_grad.norm()).item()
            lines.append(f"| {tuple(shape)}, {levels} | {path} | {forward:.1e} | {backward:.1e} |")
    return lines


def release_flops(side: int, channels: int = 64, reduction: int = 2, levels: int = 5) -> float:
    keys = sum(h * w for h, w in pyramid_sizes(side, side, levels))
    return 2.0 * side * side * keys * 9 * (channels // reduction + channels)


def attention_table(device: torch.device, sides, rates, budget_s: float) -> list[str]:
    lines = [
        "| features | path | precision | forward ms | fwd+bwd ms | peak MB | TFLOP/s (fwd) | % of its GEMM rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 8 << 30
    for side in sides:
        flops = release_flops(side)
        keys = sum(h * w for h, w in pyramid_sizes(side, side, 5))
        for path in ("release", *paths(device)):
            if path == "release" and 4 * side * side * keys * 3 > memory // 2:
                lines.append(
                    f"| {side}^2 | release | fp32 | skipped: N x L scores need {12 * side**2 * keys / 2**30:.0f} GB | | | | |"
                )
                continue
            if path == "factorised" and 4 * side * side * keys * 5 > memory // 2:
                lines.append(f"| {side}^2 | factorised | - | skipped: its whole N x L matrices do not fit | | | | |")
                continue
            for precision in ("fp32", "bf16"):
                block = block_for("kernel" if path == "release" else path, device)
                x = torch.randn(1, 64, side, side, device=device)

                def forward(block=block, x=x, path=path, precision=precision):
                    with (
                        torch.no_grad(),
                        torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
                    ):
                        return reference_module(block, x) if path == "release" else block(x)

                def both(block=block, x=x, path=path, precision=precision):
                    xg = x.clone().requires_grad_(True)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                        out = reference_module(block, xg) if path == "release" else block(xg)
                    out.float().sum().backward()

                start = time.perf_counter()
                forward()
                sync(device)
                first = time.perf_counter() - start
                if first * 10 > budget_s:  # 2 forwards and 2 forward+backward passes (about 3.5x each) to time
                    lines.append(
                        f"| {side}^2 | {path} | {precision} | skipped: about {first * 10:.0f} s to time "
                        f"(one forward {first:.1f} s) | | | | |"
                    )
                    continue
                peak_reset(device)
                t_forward = timed(forward, device, repeats=2)
                t_both = timed(both, device, repeats=2)
                peak = peak_mb(device)
                tflops = flops / t_forward / 1e12
                rate = rates["bf16" if precision == "bf16" else ("tf32" if "tf32" in rates else "fp32")]
                lines.append(
                    f"| {side}^2 | {path} | {precision} | {t_forward * 1e3:.1f} | {t_both * 1e3:.1f} | "
                    f"{'-' if peak is None else f'{peak:.0f}'} | {tflops:.2f} | {tflops / rate:.0%} |"
                )
    return lines


def training_table(device: torch.device, preset: str, batch: int, patch: int, budget_s: float) -> list[str]:
    import panet

    lines = ["| model | batch x patch | backend | precision | s / step |", "|---|---|---|---|---|"]
    for backend in ("auto", "sdpa", "kernel", *(["triton"] if "triton" in paths(device) else [])):
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = panet.create_model(preset).to(device)
            model.attention.backend = backend
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
            x = torch.rand(batch, model.colors, patch, patch, device=device)
            y = torch.rand(batch, model.colors, patch * model.scale, patch * model.scale, device=device)

            def step(model=model, optimizer=optimizer, x=x, y=y, precision=precision):
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss = (model(x).float() - y).abs().mean()
                loss.backward()
                optimizer.step()

            start = time.perf_counter()
            step()
            sync(device)
            if time.perf_counter() - start > budget_s:
                lines.append(
                    f"| {preset} | {batch} x {patch}^2 | {backend} | {precision} | skipped: over {budget_s:.0f} s |"
                )
                continue
            lines.append(f"| {preset} | {batch} x {patch}^2 | {backend} | {precision} | {timed(step, device, 2):.3f} |")
    return lines


def restore_line(device: torch.device, height: int, width: int) -> list[str]:
    import numpy as np

    import panet

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    start = time.perf_counter()
    out = panet.restore(image, task="denoise", sigma=25, device=str(device))
    sync(device)
    seconds = time.perf_counter() - start
    assert out.shape == image.shape
    return [
        f"Restoring a {width}x{height} photo ({height * width / 1e6:.1f} MP) with the shipped default denoiser: {seconds:.1f} s."
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script itself (CPU, tests)")
    parser.add_argument("--output", help="also write the markdown here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here (use --device cpu --quick to check the script)")
    torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32 unless a row says otherwise
    torch.backends.cudnn.allow_tf32 = False
    quick = args.quick
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    started = time.perf_counter()
    out = [
        "# Performance on a GPU",
        "",
        f"Generated by `python benchmarks/gpu.py{' --quick' if quick else ''}` on {name}, torch {torch.__version__}.",
        "",
    ]

    def section(title: str, lines: list[str]) -> None:
        out.extend([f"## {title}", "", *lines, ""])
        print("\n".join([f"## {title}", *lines]), flush=True)

    rates = gemm_rates(device, 256 if quick else 8192)
    section("GEMM rates of this device", [f"* {k}: {v:.1f} TFLOP/s" for k, v in rates.items()])
    shapes = [((1, 8, 9, 13), 3)] if quick else [((1, 16, 9, 13), 5), ((2, 16, 17, 12), 4), ((1, 16, 20, 7), 1)]
    section("Parity with the release's formulation (float64)", parity(device, shapes))
    sides = (16, 24) if quick else (64, 96, 128, 256, 512)
    section("Attention block, batch 1, C = 64", attention_table(device, sides, rates, budget_s=30 if quick else 45))
    preset, batch, patch = ("panet-dn-s", 2, 16) if quick else ("panet-dn", 16, 48)
    section("Training step", training_table(device, preset, batch, patch, budget_s=30 if quick else 60))
    height, width = (64, 48) if quick else (3000, 4000)
    section("Restore", restore_line(device, height, width))
    out.append(f"The whole run took {time.perf_counter() - started:.0f} s.")
    if args.output:
        Path(args.output).write_text("\n".join(out) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
