"""Training: a typed YAML config, a plain loop, exact resume.

    panet train configs/panet-dn-s.yaml [--resume] [key=value ...]

Reproducibility: training item ``i`` is a pure function of ``(seed, i)``
(:class:`panet.data.TrainPairs`), and step ``t`` uses items ``t*B .. t*B+B-1``.
A checkpoint stores the step, model, optimizer, scheduler, EMA and RNG states,
so a run killed and resumed reaches the same losses as an uninterrupted one.
Checkpoints are written atomically and read with ``weights_only=True``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .weights import atomic_write


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # set names under data_root, or folders
    val: list[str] = field(default_factory=list)
    data_root: str | None = None  # default: $PANET_DATA
    level: Any = None  # SR scale | sigma | quality | [low, high] for a blind model
    patch_size: int = 48  # input patch (SR: LR side)
    workers: int = 0
    val_images: int | None = None  # first N images of each validation set


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [200_000, 400_000, 600_000, 800_000])
    gamma: float = 0.5
    grad_clip: float | None = None


@dataclass
class TrainConfig:
    task: str = "denoise"
    model: str = "panet-dn-s"
    model_overrides: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    iterations: int = 1_000_000
    batch_size: int = 16
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    ema: float | None = 0.999  # decay; None disables
    val_every: int = 1000
    checkpoint_every: int = 500
    log_every: int = 50
    out_dir: str = "runs/default"


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key{'s' if len(unknown) > 1 else ''}: {', '.join(where + k for k in unknown)}")
    kwargs = {}
    for name, value in values.items():
        sub = {"data": DataConfig, "optim": OptimConfig}.get(name) if cls is TrainConfig else None
        kwargs[name] = _build(sub, value, f"{where}{name}.") if sub else value
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML recipe, apply ``key.sub=value`` overrides, and check every key and type."""
    import yaml

    values: dict = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"config not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override must be key=value, got {item!r}")
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key}: {part} is not a section")
        node[leaf] = _parse_value(text)
    config = _build(TrainConfig, values, "")
    _validate(config)
    return config


def _validate(c: TrainConfig) -> None:
    from .registry import get_preset
    from .tasks import get_task

    task = get_task(c.task)
    preset = get_preset(c.model)
    if preset.task != task.name:
        raise ValueError(f"model {c.model} is a {preset.task} preset, but the task is {task.name}")
    if c.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {c.precision!r}")
    for name in ("iterations", "batch_size", "val_every", "checkpoint_every", "log_every"):
        if not isinstance(getattr(c, name), int) or getattr(c, name) < 1:
            raise ValueError(f"{name} must be a positive integer")
    if c.ema is not None and not 0 < c.ema < 1:
        raise ValueError("ema must be in (0, 1) or null")
    if not c.data.train:
        raise ValueError("data.train lists no training sets")


# --------------------------------------------------------------------------
# Loop
# --------------------------------------------------------------------------


def _folders(names: list[str], root: str | None) -> list[Path]:
    from .data import find_set

    return [Path(n) if Path(n).is_dir() else find_set(n, root) for n in names]


class StepSampler(torch.utils.data.Sampler):
    """Indices of steps ``start..stop-1``: step t takes items t*B .. t*B+B-1."""

    def __init__(self, start: int, stop: int, batch_size: int):
        self.start, self.stop, self.batch_size = start, stop, batch_size

    def __iter__(self):
        return iter(range(self.start * self.batch_size, self.stop * self.batch_size))

    def __len__(self) -> int:
        return (self.stop - self.start) * self.batch_size


def _save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def train(config: TrainConfig, *, resume: bool = False, max_steps: int | None = None, quiet: bool = False) -> dict:
    """Run (or resume) training. ``max_steps`` stops early (for tests / time-boxed sessions).

    Returns {"step", "losses" (this call's), "out_dir"}.
    """
    from tqdm import tqdm

    from .data import TrainPairs
    from .registry import create_model

    out = Path(config.out_dir)
    ckpt_path = out / "checkpoint.pt"
    if not resume and ckpt_path.exists():
        raise ValueError(f"{ckpt_path} exists: pass --resume to continue it, or choose another out_dir")
    torch.manual_seed(config.seed)
    model = create_model(config.model, **config.model_overrides)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, betas=tuple(config.optim.betas), eps=config.optim.eps,
        weight_decay=config.optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.optim.milestones, config.optim.gamma)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if config.ema else None
    step = 0
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"nothing to resume: {ckpt_path} does not exist")
        state = _load_checkpoint(ckpt_path)
        if state["config"] != dataclasses.asdict(config):
            changed = sorted(k for k in state["config"] if state["config"][k] != dataclasses.asdict(config).get(k))
            print(f"note: resuming with a changed config ({', '.join(changed)})", file=sys.stderr)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema = state["ema"]
        torch.set_rng_state(state["torch_rng"])
        step = int(state["step"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    level = config.data.level
    dataset = TrainPairs(
        _folders(config.data.train, config.data.data_root), task=config.task, level=level, patch_size=config.data.patch_size,
        colors=model.colors, length=config.iterations * config.batch_size, seed=config.seed,
    )
    stop = config.iterations if max_steps is None else min(config.iterations, step + max_steps)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, sampler=StepSampler(step, stop, config.batch_size),
        num_workers=config.data.workers, persistent_workers=False,
    )
    log_path = out / "log.csv"
    new_log = not log_path.exists()
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "loss", "lr", "val_psnr", "seconds"])
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16")
    losses: list[float] = []
    model.train()
    start_time = time.perf_counter()
    bar = tqdm(total=stop - step, desc="train", unit="it", disable=quiet or None, file=sys.stderr)
    try:
        for x, y in loader:
            with autocast:
                loss = torch.nn.functional.l1_loss(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if ema is not None:
                with torch.no_grad():
                    for k, v in model.state_dict().items():
                        if v.dtype.is_floating_point:
                            ema[k].mul_(config.ema).add_(v.detach(), alpha=1 - config.ema)
                        else:
                            ema[k].copy_(v)
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            val = None
            if step % config.val_every == 0 or step == config.iterations:
                val = validate(config, model, ema)
                model.train()
                bar.set_postfix(loss=f"{losses[-1]:.4f}", psnr=f"{val:.2f}" if val is not None else "-")
            if step % config.log_every == 0 or val is not None:
                writer.writerow([step, f"{losses[-1]:.6f}", scheduler.get_last_lr()[0], "" if val is None else f"{val:.4f}",
                                 f"{time.perf_counter() - start_time:.1f}"])
                log.flush()
            if step % config.checkpoint_every == 0 or step == stop:
                _save_checkpoint(ckpt_path, {
                    "step": step, "config": dataclasses.asdict(config), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "ema": ema,
                    "torch_rng": torch.get_rng_state(),
                })
    finally:
        bar.close()
        log.close()
    return {"step": step, "losses": losses, "out_dir": str(out)}


def validate(config: TrainConfig, model, ema: dict | None) -> float | None:
    """Mean PSNR over the validation sets with the task's protocol (EMA weights when enabled)."""
    import copy

    import numpy as np

    from .data import EvalPairs
    from .evaluate import evaluate_set, network_restorer

    if not config.data.val:
        return None
    net = copy.deepcopy(model)
    if ema is not None:
        net.load_state_dict(ema)
    restorer = network_restorer(net, config.task, tiling="legacy")
    scores = []
    for folder in _folders(config.data.val, config.data.data_root):
        pairs = EvalPairs(folder, task=config.task, level=_val_level(config), colors=net.colors)
        if config.data.val_images:
            pairs.files = pairs.files[: config.data.val_images]
        scale = int(config.data.level) if config.task == "sr" else 1
        scores += [r.psnr for r in evaluate_set(restorer, pairs, set_name=folder.name, scale=scale)]
    return float(np.mean(scores)) if scores else None


def _val_level(config: TrainConfig):
    level = config.data.level
    if isinstance(level, (list, tuple)):  # blind model: validate at the middle of its range
        return type(level[0])(round((level[0] + level[1]) / 2))
    return level
