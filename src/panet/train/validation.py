"""Validation during training: held-out images of the training folders (never a benchmark set), scored
against the classical baseline of the task."""

from __future__ import annotations

from pathlib import Path

from panet.train.config import TrainConfig, data_folders


def _validation_sets(config: TrainConfig, colors: int):
    """(set name, EvalPairs, SR scale) per validation set: its first ``val_images`` images, centre crops of ``val_crop``."""
    from panet.data.datasets import EvalPairs

    for folder in data_folders(config.data.val, config.data.data_root):
        pairs = EvalPairs(
            folder,
            task=config.task,
            level=_val_level(config),
            colors=colors,
            crop=config.data.val_crop,
            noise=config.data.noise,
            downscale=config.data.downscale,
        )
        pairs.files = pairs.files[: config.data.val_images or None]
        yield folder.name, pairs, int(config.data.level) if pairs.task.upscales else 1


def validation_files(config: TrainConfig) -> list[Path]:
    """The images validation scores. Training never sees them, so a recipe may validate on the first
    ``val_images`` of a training set (a held-out split) instead of on a benchmark set."""
    from panet.data.datasets import find_images

    return [
        f
        for folder in data_folders(config.data.val, config.data.data_root)
        for f in find_images(folder)[: config.data.val_images or None]
    ]


def validate(config: TrainConfig, model, ema: dict | None) -> float | None:
    """Mean PSNR over the validation sets with the task's protocol (EMA weights when enabled)."""
    import copy

    import numpy as np

    from panet.evaluation.evaluate import evaluate_set, network_restorer

    if not config.data.val:
        return None
    net = copy.deepcopy(model)
    if ema is not None:
        net.load_state_dict(ema)
    device = next(model.parameters()).device
    restorer = network_restorer(net, config.task, tiling="legacy", device=device)
    scores = []
    for name, pairs, scale in _validation_sets(config, net.colors):
        scores += [r.psnr for r in evaluate_set(restorer, pairs, set_name=name, scale=scale)]
    return float(np.mean(scores)) if scores else None


def validation_reference(config: TrainConfig, colors: int) -> dict | None:
    """The task's classical baseline (bicubic, BM3D/CBM3D, the JPEG, Menon) on the validation images: the number
    the validation PSNR has to beat. The first baseline of the task whose optional package is installed."""
    import numpy as np

    from panet.evaluation.baselines import make_baseline
    from panet.evaluation.evaluate import evaluate_set
    from panet.tasks import get_task

    if not config.data.val:
        return None
    level = _val_level(config)
    for name in get_task(config.task).references:
        try:
            restorer = make_baseline(name, config.task, level)
        except ImportError:
            continue
        scores = [
            r.psnr
            for set_name, pairs, scale in _validation_sets(config, colors)
            for r in evaluate_set(restorer, pairs, set_name=set_name, scale=scale)
        ]
        return {"baseline": name, "level": level, "psnr": float(np.mean(scores))} if scores else None
    return None


def _val_level(config: TrainConfig):
    level = config.data.level
    if isinstance(level, (list, tuple)):  # blind model: validate at the middle of its range
        return type(level[0])(round((level[0] + level[1]) / 2))
    return level
