"""Benchmark evaluation cached image by image, so that a long run (hours on a CPU) resumes where it stopped.

A configuration's record is one JSON file; while it runs, each image's result is a file of its own beside it
(``partial/<name>/<image>.json``), so a killed run loses at most the image in progress.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from panet.evaluation.evaluate import ImageResult, evaluate_set, summarize
from panet.files import atomic_write


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    text = json.dumps(data, indent=indent)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def cached_evaluation(
    record_path: Path,
    restorer: Callable[[np.ndarray], np.ndarray],
    pairs: Any,
    *,
    set_name: str,
    scale: int = 1,
    fields: Mapping[str, Any] | None = None,
) -> dict:
    """Evaluate ``restorer`` on ``pairs`` (:class:`panet.data.datasets.EvalPairs`), or read the result.

    Returns (and writes to ``record_path``) ``fields`` + the set's mean PSNR / SSIM / seconds + ``per_image``
    ([PSNR, SSIM] by image name). ``record_path``'s name identifies the configuration: put in it everything that
    changes the result (weights digest, level, set, tiling).
    """
    if record_path.exists():
        return json.loads(record_path.read_text())
    partial = record_path.parent / "partial" / record_path.stem
    partial.mkdir(parents=True, exist_ok=True)
    results = []
    files = list(pairs.files)
    try:
        for path in files:
            done = partial / f"{path.stem}.json"
            if not done.exists():
                pairs.files = [path]
                (result,) = evaluate_set(restorer, pairs, set_name=set_name, scale=scale)
                _write_json(done, result.__dict__)
            results.append(ImageResult(**json.loads(done.read_text())))
    finally:
        pairs.files = files
    record = {
        **(fields or {}),
        **summarize(results)[set_name],
        "per_image": {r.image: [round(r.psnr, 4), round(r.ssim, 5)] for r in results},
    }
    _write_json(record_path, record, indent=1)
    for f in partial.iterdir():
        f.unlink()
    partial.rmdir()
    return record


def record_name(task: str, level: float | None, set_name: str, method: str) -> str:
    """A configuration's file name: ``denoise_50_Kodak24_bm3d.json``, ``sr_2_Set5_tile32-8.json``."""
    return f"{task}_{'none' if level is None else level}_{set_name}_{method}.json"


def baseline_method(task: str, baseline: str, colors: int | None) -> str:
    """A baseline's name in its record: 'identity', or 'identity-rgb' where a luma task's colour rows score it in
    RGB (the colour JPEG itself) rather than on the luma (:meth:`panet.tasks.Task.scores_rgb`)."""
    from panet.tasks import get_task

    return f"{baseline}-rgb" if get_task(task).scores_rgb(colors) else baseline


def tiling_label(tiling: str, tile: int, overlap: int) -> str:
    """'legacy' (the release's chop), or 'tile32-8' for tiles of 32 overlapping by 8."""
    return "legacy" if tiling == "legacy" else f"tile{tile}-{overlap}"


def parse_tiling_label(label: str) -> tuple[str, int, int]:
    """Inverse of :func:`tiling_label`: 'legacy' or 'tile32-8' -> (tiling, tile, overlap)."""
    if label == "legacy":
        return "legacy", 0, 0
    tile, overlap = label.removeprefix("tile").split("-")
    return "tile", int(tile), int(overlap)


def evaluate_weights(
    weights: Any,
    task: str,
    level: float | None,
    set_name: str,
    *,
    data_root: str | None,
    tiling: str,
    tile: int,
    overlap: int,
    cache: Path,
) -> dict:
    """The record of weights (:class:`panet.zoo.pretrained.ShippedWeights`) on one benchmark set at ``level`` with
    a tiling, evaluated under the task's protocol or read from ``cache``. The file name holds the weights' SHA-256
    (retrained weights are evaluated again) and the task's input padding, which changes the outputs. Weights
    trained on a noise model of the task (``weights.noise``) are scored under that noise model."""
    import hashlib

    from panet.data.datasets import EvalPairs, find_set
    from panet.evaluation.evaluate import network_restorer
    from panet.tasks import get_task
    from panet.zoo.weights import load_weights

    digest = hashlib.sha256(Path(weights.file).read_bytes()).hexdigest()[:16]
    spec = get_task(task)
    digest += f"_pad{spec.input_pad}" if spec.input_pad else ""
    noise = getattr(weights, "noise", None)
    label = tiling_label(tiling, tile, overlap)
    method = f"{noise}-{label}" if noise else label
    record_path = cache / f"{weights.name}_{digest}_{record_name(task, level, set_name, method)}"
    if record_path.exists():
        return json.loads(record_path.read_text())
    model = load_weights(weights.file)
    restorer = network_restorer(model, task, tiling=tiling, tile=tile, overlap=overlap)
    pairs = EvalPairs(find_set(set_name, data_root), task=task, level=level, colors=model.colors, noise=noise)
    scale = int(level) if spec.upscales and level is not None else 1
    fields = {"weights": weights.name, "sha256": digest, "task": task, "level": level, "set": set_name, "tiling": label}
    if noise:
        fields["noise"] = noise
    if spec.scores_rgb(model.colors):
        fields["colors"] = model.colors  # scored in RGB, beside the baselines' RGB records
    return cached_evaluation(record_path, restorer, pairs, set_name=set_name, scale=scale, fields=fields)
