"""Evaluate a network or a classical baseline with the paper's protocol.

Every restorer (network or baseline) maps a degraded uint8 image to a uint8
image. Network outputs are clamped and rounded to 8 bit, as the release saved
its outputs before scoring them with MATLAB. PSNR and SSIM follow the task's
protocol (:mod:`panet.tasks`). Set means are means of per-image values.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from panet.data.datasets import EvalPairs
from panet.evaluation.metrics import psnr, ssim

Restorer = Callable[[np.ndarray], np.ndarray]


@dataclass
class ImageResult:
    set: str
    image: str
    psnr: float
    ssim: float
    seconds: float


def network_restorer(
    model,
    task: str | None,
    *,
    tiling: str = "legacy",
    device: str = "cpu",
    tile: int = 128,
    overlap: int = 16,
    precision: str = "fp32",
) -> Restorer:
    """Wrap a network: uint8 HxWxC in, uint8 out, with the release's tiling by default.

    tiling: ``legacy`` (the release's forward_chop with the task's min_size;
    6400 when no task is given), ``tile`` (overlapping ``tile`` x ``tile``
    windows, blended) or ``none``. The task's ``input_pad`` applies (demosaicing:
    the mosaic is reflect-padded, :mod:`panet.tasks`). ``precision`` as in
    :func:`panet.inference.restore.run_network` (fp32 by default: evaluation does not
    depend on the machine).
    """
    from panet.data.images import to_tensor, to_uint8
    from panet.inference.restore import check_run_options, run_network

    check_run_options(task, tiling=tiling, device=device, precision=precision)  # once, before any image
    model = model.to(device).eval()

    def restore(img: np.ndarray) -> np.ndarray:
        return to_uint8(
            run_network(
                model,
                to_tensor(img).to(device),
                task=task,
                tiling=tiling,
                tile=tile,
                overlap=overlap,
                precision=precision,
            )
        )

    return restore


def evaluate_set(
    restorer: Restorer, pairs: EvalPairs, *, set_name: str, scale: int = 1, progress: Callable[[], None] | None = None
) -> list[ImageResult]:
    options = pairs.task.metric_options(scale)
    results = []
    for item in pairs:
        start = time.perf_counter()
        out = restorer(item.degraded)
        seconds = time.perf_counter() - start
        if out.shape != item.target.shape:
            raise ValueError(f"{set_name}/{item.name}: output {out.shape} but ground truth {item.target.shape}")
        results.append(
            ImageResult(
                set_name, item.name, psnr(out, item.target, **options), ssim(out, item.target, **options), seconds
            )
        )
        if progress:
            progress()
    return results


def summarize(results: Iterable[ImageResult]) -> dict[str, dict[str, float]]:
    """Per-set means of PSNR, SSIM and seconds (in first-seen set order)."""
    by_set: dict[str, list[ImageResult]] = {}
    for r in results:
        by_set.setdefault(r.set, []).append(r)
    return {
        name: {
            "images": len(rs),
            "psnr": float(np.mean([r.psnr for r in rs])),
            "ssim": float(np.mean([r.ssim for r in rs])),
            "seconds": float(np.mean([r.seconds for r in rs])),
        }
        for name, rs in by_set.items()
    }


def format_table(results: Sequence[ImageResult], *, per_image: bool = True) -> str:
    lines = [f"{'set':<10} {'image':<16} {'PSNR':>8} {'SSIM':>7} {'seconds':>8}"]
    if per_image:
        for r in results:
            value = "inf" if math.isinf(r.psnr) else f"{r.psnr:.2f}"
            lines.append(f"{r.set:<10} {r.image:<16} {value:>8} {r.ssim:>7.4f} {r.seconds:>8.3f}")
    for name, s in summarize(results).items():
        lines.append(
            f"{name:<10} {'mean (' + str(s['images']) + ')':<16} {s['psnr']:>8.2f} {s['ssim']:>7.4f} {s['seconds']:>8.3f}"
        )
    return "\n".join(lines)


def write_results(path: str | os.PathLike, results: Sequence[ImageResult], meta: dict) -> None:
    """JSON (meta, per-image, per-set means) or CSV (per image) by suffix, atomically."""
    from panet.files import atomic_write

    path = os.fspath(path)
    if path.endswith(".csv"):

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(ImageResult.__dataclass_fields__))
                writer.writeheader()
                writer.writerows(asdict(r) for r in results)
    else:
        payload = {"meta": meta, "sets": summarize(results), "images": [asdict(r) for r in results]}

        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(payload, f, indent=1)

    atomic_write(path, write)
