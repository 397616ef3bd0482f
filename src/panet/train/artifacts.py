"""What a run reads and writes besides its loop: checkpoints (atomic, read with ``weights_only=True``), the
initial weights of a fine-tune (with colour folding), and the run's weights with their card."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from panet.files import atomic_write
from panet.train.config import TrainConfig, data_folders
from panet.train.validation import validation_files


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    from panet.zoo.weights import read_torch_file

    state = read_torch_file(path, map_location=device)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a checkpoint written by panet train (no model state in it)")
    return state


def fold_colors(source: dict, target: dict, head: str = "head.", tail: str = "tail.") -> dict:
    """Colour weights made gray: where ``head.*`` / ``tail.*`` of ``source`` have 3 colour channels and
    ``target`` has 1, the head's weights are summed over their inputs (a gray image is R = G = B) and the
    tail's weights and bias averaged over their outputs (the gray of the colour output)."""
    folded = dict(source)
    for key, value in source.items():
        want = target.get(key)
        if want is None or value.shape == want.shape:
            continue
        if key.startswith(head) and value.dim() == 4 and value.shape[1] != want.shape[1] and want.shape[1] == 1:
            folded[key] = value.sum(dim=1, keepdim=True)
        elif key.startswith(tail) and value.shape[0] != want.shape[0] and want.shape[0] == 1:
            folded[key] = value.mean(dim=0, keepdim=True)
    return folded


def load_init_weights(
    model: torch.nn.Module, path: str | os.PathLike, skip: Sequence[str] = (), fold: bool = False
) -> list[str]:
    """Load ``path`` into ``model`` strictly, except keys matching a ``skip`` glob
    (kept as initialised). A checkpoint.pt contributes its EMA weights when it has them.
    ``fold``: colour head/tail weights are folded into a gray model's (:func:`fold_colors`).
    Returns the skipped keys of the model."""
    import fnmatch

    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init weights not found: {path}")
    if path.suffix == ".safetensors":
        try:
            source = load_file(str(path))
        except Exception as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        from panet.zoo.release import from_official
        from panet.zoo.weights import read_torch_file

        state = read_torch_file(path)
        if isinstance(state, dict) and "model" in state:  # a checkpoint of panet train
            source = state.get("ema") or state["model"]
        else:  # the release's state dict: converted (strictly) into this project's names
            try:
                source = from_official(state).state_dict()
            except ValueError as exc:
                raise ValueError(f"{path}: neither a panet train checkpoint nor a release state dict ({exc})") from None
    target = model.state_dict()
    if fold:
        source = fold_colors(source, target)
    skipped = [k for k in target if any(fnmatch.fnmatch(k, pattern) for pattern in skip)]
    source = {k: v for k, v in source.items() if not any(fnmatch.fnmatch(k, pattern) for pattern in skip)}
    missing = sorted(set(target) - set(skipped) - set(source))
    unexpected = sorted(set(source) - set(target))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]} "
            "(init_skip lists keys to leave initialised)"
        )
    wrong = [k for k in source if source[k].shape != target[k].shape]
    if wrong:
        raise ValueError(f"{path}: shape mismatch for {wrong[:5]}")
    model.load_state_dict({**{k: target[k] for k in skipped}, **source}, strict=True)
    return skipped


def write_run_weights(
    config: TrainConfig, model, ema: dict | None, step: int, command: str | None, precision: str | None = None
) -> None:
    """``out_dir/weights.safetensors`` (EMA weights when kept) and ``out_dir/card.json``.
    ``precision``: what the run computed in (``config.precision`` resolved for the device)."""
    import copy
    import datetime

    from panet.data.datasets import find_images
    from panet.zoo.weights import save_weights

    out = Path(config.out_dir)
    net = copy.deepcopy(model).cpu()
    if ema is not None:
        net.load_state_dict(ema)
    folders = data_folders(config.data.train, config.data.data_root)
    card_path = out / "card.json"
    previous = json.loads(card_path.read_text()) if card_path.exists() else {}
    held_out = {p.resolve() for p in validation_files(config)}
    card = {
        "name": config.model,
        "preset": config.model,
        "task": config.task,
        "level": config.data.level,
        "weights": "EMA" if ema is not None else "final",
        "iterations": step,
        "planned_iterations": config.iterations,
        "seed": config.seed,
        "precision": precision or config.precision,
        # images trained on per set: the validation images are left out (validation_files)
        "training_data": {f.name: len([p for p in find_images(f) if p.resolve() not in held_out]) for f in folders},
        "command": previous.get("command") or command,
        "config": dataclasses.asdict(config),
        "torch": torch.__version__,
        "written": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    meta = {"task": config.task, "level": json.dumps(config.data.level), "iterations": str(step)}
    save_weights(net, out / "weights.safetensors", metadata=meta)
    atomic_write(card_path, lambda tmp: Path(tmp).write_text(json.dumps(card, indent=1) + "\n"))
