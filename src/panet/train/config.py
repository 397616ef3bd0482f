"""The training config: typed dataclasses read from YAML plus ``key=value`` overrides, checked before a run."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_PATCH = 8  # the smallest training patch side (input pixels)


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # set names under data_root, or folders
    val: list[str] = field(default_factory=list)  # validation sets; the images validated on are never trained on
    data_root: str | None = None  # default: $PANET_DATA
    level: Any = None  # SR scale | sigma | quality | [low, high] for a blind model
    patch_size: int = 48  # input patch (SR: LR side)
    workers: int = 0
    val_images: int | None = None  # first N images of each validation set
    val_crop: int | None = None  # validate on centre crops of this size (full images: null)
    noise: str | None = None  # one of the task's noise models instead of its standard one ("camera": denoise)
    downscale: int = 1  # shrink training and validation photos this many times first (2: JPEGs' 4:2:0 colour sharp)


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
    precision: str = "fp32"  # fp32 | bf16 (autocast) | auto (bf16 where the device has native bf16, else fp32)
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    init: str | None = None  # start from these weights (.safetensors or a checkpoint.pt), e.g. SR x4 from x2
    init_skip: list[str] = field(default_factory=list)  # glob patterns of keys left freshly initialised
    # gray model from colour init weights: the first conv's colour inputs are summed and the last conv's
    # colour outputs averaged, so the gray network starts as the colour one run on a gray image
    init_fold_colors: bool = False
    ema: float | None = 0.999  # decay (warmed up as min(ema, (1+t)/(10+t))); None disables
    val_every: int = 1000
    checkpoint_every: int = 500
    log_every: int = 50
    tensorboard: bool = False  # needs the `tensorboard` extra
    out_dir: str = "runs/default"


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown config key{'s' if len(unknown) > 1 else ''}: {', '.join(where + k for k in unknown)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        sub = {"data": DataConfig, "optim": OptimConfig}.get(name) if cls is TrainConfig else None
        kwargs[name] = _build(sub, value, f"{where}{name}.") if sub else _check_type(value, hints[name], where + name)
    return cls(**kwargs)


def _check_type(value: Any, hint: Any, key: str) -> Any:
    """Scalars must have their field's type. YAML reads ``1e-3`` (no dot) as a string: numbers in strings become floats."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for kind, name in ((float, "a number"), (int, "an integer"), (bool, "true or false"), (str, "a string")):
        if kind not in options:
            continue
        if kind is float and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        raise ValueError(f"{key}: expected {name}{' or null' if type(None) in options else ''}, got {value!r}")
    return value  # lists, dicts, Any: checked where they are used


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> TrainConfig:
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
    from panet.tasks import get_task
    from panet.zoo.registry import get_preset

    task = get_task(c.task)
    preset = get_preset(c.model)
    if preset.task != task.name:
        raise ValueError(f"model {c.model} is a {preset.task} preset, but the task is {task.name}")
    if c.precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be fp32, bf16 or auto, got {c.precision!r}")
    if c.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {c.device!r}")
    if c.init_skip and not c.init:
        raise ValueError("init_skip is set but init is not")
    if c.init_fold_colors and not c.init:
        raise ValueError("init_fold_colors is set but init is not")
    for name in ("iterations", "batch_size", "val_every", "checkpoint_every", "log_every"):
        if not isinstance(getattr(c, name), int) or getattr(c, name) < 1:
            raise ValueError(f"{name} must be a positive integer")
    if c.ema is not None and not 0 < c.ema < 1:
        raise ValueError("ema must be in (0, 1) or null")
    _validate_data(c, task)
    _validate_optim(c.optim)
    if not isinstance(c.model_overrides, dict):
        raise ValueError(f"model_overrides must be a mapping of network settings, got {c.model_overrides!r}")
    if not isinstance(c.init_skip, list) or not all(isinstance(p, str) for p in c.init_skip):
        raise ValueError(f"init_skip must be a list of key patterns, got {c.init_skip!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate_data(c: TrainConfig, task) -> None:
    d = c.data
    for name in ("train", "val"):
        names = getattr(d, name)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"data.{name} must be a list of set names or folders, got {names!r}")
    if not d.train:
        raise ValueError("data.train lists no training sets")
    # the smallest level of the attention pyramid (scale 0.6) must keep a few pixels of a patch
    if d.patch_size < MIN_PATCH:
        raise ValueError(f"data.patch_size must be at least {MIN_PATCH}, got {d.patch_size}")
    for name in ("val_images", "val_crop"):
        value = getattr(d, name)
        if value is not None and value < 1:
            raise ValueError(f"data.{name} must be positive or null, got {value}")
    if d.workers < 0:
        raise ValueError(f"data.workers must be >= 0, got {d.workers}")
    if isinstance(d.downscale, bool) or not isinstance(d.downscale, int) or d.downscale < 1:
        raise ValueError(f"data.downscale must be a whole number >= 1, got {d.downscale!r}")
    if d.noise is not None and d.noise not in task.noise_models:
        choices = ", ".join(task.noise_models) or "none"
        raise ValueError(f"data.noise {d.noise!r} is not a noise model of task {task.name!r} (choose from: {choices})")
    level = d.level
    if task.level_name is None:
        return
    if isinstance(level, list) and len(level) == 2 and all(_is_number(v) for v in level):
        if level[0] > level[1]:
            raise ValueError(f"data.level [low, high] needs low <= high, got {level}")
        for value in level:
            task.check_level(value)
    elif _is_number(level):
        task.check_level(level)
    else:
        raise ValueError(f"data.level must be a number or [low, high] for {task.name}, got {level!r}")


def _validate_optim(o: OptimConfig) -> None:
    betas = o.betas
    if not isinstance(betas, (list, tuple)) or len(betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in betas):
        raise ValueError(f"optim.betas must be two numbers in [0, 1), e.g. [0.9, 0.999]; got {betas!r}")
    for name, positive in (("lr", True), ("eps", True), ("gamma", True), ("weight_decay", False)):
        value = getattr(o, name)
        if not _is_number(value) or value < 0 or (positive and value == 0):
            raise ValueError(
                f"optim.{name} must be a {'positive' if positive else 'non-negative'} number, got {value!r}"
            )
    if not isinstance(o.milestones, list) or not all(
        isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in o.milestones
    ):
        raise ValueError(f"optim.milestones must be a list of positive step numbers, got {o.milestones!r}")
    if o.grad_clip is not None and not (_is_number(o.grad_clip) and o.grad_clip > 0):
        raise ValueError(f"optim.grad_clip must be positive or null, got {o.grad_clip!r}")


def data_folders(names: list[str], root: str | None) -> list[Path]:
    from panet.data.datasets import find_set

    return [Path(n) if Path(n).is_dir() else find_set(n, root) for n in names]
