"""Training: a typed YAML config, a plain loop, exact resume.

    panet train configs/panet-dn-s.yaml [--resume] [key=value ...]

Reproducibility: training item ``i`` is a pure function of ``(seed, i)``
(:class:`panet.data.TrainPairs`), and step ``t`` uses items ``t*B .. t*B+B-1``.
A checkpoint stores the step, model, optimizer, scheduler, EMA and RNG states,
so a run killed and resumed reaches the same losses as an uninterrupted one.
Checkpoints are written atomically and read with ``weights_only=True``.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
import os
import sys
import time
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write, remove_stale_temp_files
from .hardware import native_bf16, resolve_precision

# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------


MIN_PATCH = 8  # the smallest training patch side (input pixels)
# what a run writes into its out_dir atomically
RUN_FILES = ("checkpoint.pt", "weights.safetensors", "card.json", "log.csv", "val_reference.json", "curves.png")


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
    from .registry import get_preset
    from .tasks import get_task

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


# --------------------------------------------------------------------------
# Loop
# --------------------------------------------------------------------------


def _folders(names: list[str], root: str | None) -> list[Path]:
    from .data import find_set

    return [Path(n) if Path(n).is_dir() else find_set(n, root) for n in names]


class StepSampler(torch.utils.data.Sampler):
    """Item indices of steps ``start..stop-1`` for one of ``world`` processes.

    Step t uses the global batch of items t*B .. t*B+B-1 and rank r takes its
    contiguous share, so N processes see exactly the items (and, DDP averaging
    the gradients of equal shares, make exactly the updates) of one process with
    the same global batch. This replaces ``DistributedSampler``, whose epoch
    shuffling and padding would break that equivalence and exact resume.
    """

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world} processes")
        self.start, self.stop, self.batch_size, self.rank, self.world = start, stop, batch_size, rank, world
        self.share = batch_size // world

    def __iter__(self):
        for t in range(self.start, self.stop):
            first = t * self.batch_size + self.rank * self.share
            yield from range(first, first + self.share)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.share


def _save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    from .weights import read_torch_file

    state = read_torch_file(path, map_location=device)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a checkpoint written by panet train (no model state in it)")
    return state


def _device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device cuda requested but CUDA is not available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


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
        from .weights import from_official, read_torch_file

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

    from .data import find_images
    from .weights import save_weights

    out = Path(config.out_dir)
    net = copy.deepcopy(model).cpu()
    if ema is not None:
        net.load_state_dict(ema)
    folders = _folders(config.data.train, config.data.data_root)
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


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    quiet: bool = False,
    command: str | None = None,
) -> dict:
    """Run (or resume) training. ``max_steps`` stops early (for tests / time-boxed sessions).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) each process trains on its share of every
    global batch with DistributedDataParallel (nccl on CUDA, gloo on CPU); rank 0
    validates, logs and writes checkpoints.

    Returns {"step", "losses" (this call's, averaged over processes), "out_dir"}.
    """
    import shutil

    out = Path(config.out_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0
    fresh = main_process and not out.exists()
    if main_process and out.is_dir():
        # kill -9 during a checkpoint write leaves atomic_write's temporary file; nothing else writes here now
        remove_stale_temp_files(out, list(RUN_FILES))
    try:
        return _train(config, resume=resume, max_steps=max_steps, quiet=quiet, command=command)
    except Exception:
        # a run that failed before its first checkpoint leaves nothing behind (not even the folder it created)
        if fresh and out.is_dir() and not (out / "checkpoint.pt").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train(config: TrainConfig, *, resume: bool, max_steps: int | None, quiet: bool, command: str | None) -> dict:
    import torch.distributed as dist
    from tqdm import tqdm

    from .data import TrainPairs
    from .plot import plot_log
    from .registry import create_model

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = _device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {world} processes")
    main_process = rank == 0
    out = Path(config.out_dir)
    ckpt_path = out / "checkpoint.pt"
    if not resume and ckpt_path.exists():
        raise ValueError(f"{ckpt_path} exists: pass --resume to continue it, or choose another out_dir")
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"nothing to resume: {ckpt_path} does not exist")
    torch.manual_seed(config.seed)
    model = create_model(config.model, **config.model_overrides)
    if config.init and not resume:
        load_init_weights(model, config.init, config.init_skip, config.init_fold_colors)
    model.to(device)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.optim.lr,
        betas=(config.optim.betas[0], config.optim.betas[1]),
        eps=config.optim.eps,
        weight_decay=config.optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.optim.milestones, config.optim.gamma)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if config.ema else None
    step = 0
    if resume:
        state = _load_checkpoint(ckpt_path, device)
        if state["config"] != dataclasses.asdict(config) and main_process:
            changed = sorted(k for k in state["config"] if state["config"][k] != dataclasses.asdict(config).get(k))
            print(f"note: resuming with a changed config ({', '.join(changed)})", file=sys.stderr)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # the recipe, not the checkpoint, decides the schedule from here on (it may have been edited)
        scheduler.milestones = collections.Counter(config.optim.milestones)
        scheduler.gamma = config.optim.gamma
        if ema is not None and state.get("ema") is not None:
            ema = state["ema"]
        torch.set_rng_state(state["torch_rng"].cpu())
        step = int(state["step"])
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    dataset = TrainPairs(
        _folders(config.data.train, config.data.data_root),
        task=config.task,
        level=config.data.level,
        patch_size=config.data.patch_size,
        colors=model.colors,
        length=config.iterations * config.batch_size,
        seed=config.seed,
        exclude=validation_files(config),
    )
    stop = config.iterations if max_steps is None else min(config.iterations, step + max_steps)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size // world,
        sampler=StepSampler(step, stop, config.batch_size, rank, world),
        num_workers=config.data.workers,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
    )
    log = writer = board = None
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
        log_path = out / "log.csv"
        if log_path.exists():  # drop rows past the checkpoint: they will be logged again
            rows = log_path.read_text().splitlines()
            kept = rows[:1] + [r for r in rows[1:] if int(r.split(",")[0]) <= step]
            atomic_write(log_path, lambda tmp: Path(tmp).write_text("\n".join(kept) + "\n"))
        new_log = not log_path.exists()
        log = open(log_path, "a", newline="")
        writer = csv.writer(log)
        if new_log:
            writer.writerow(["step", "loss", "lr", "val_psnr", "seconds"])
        reference_path = out / "val_reference.json"
        if config.data.val and not reference_path.exists():
            reference = validation_reference(config, model.colors)
            if reference is not None:
                atomic_write(reference_path, lambda tmp: Path(tmp).write_text(json.dumps(reference) + "\n"))
                if not quiet:
                    print(
                        f"validation reference: {reference['baseline']} gives {reference['psnr']:.2f} dB on the "
                        "validation images",
                        file=sys.stderr,
                        flush=True,
                    )
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError(
                    "tensorboard: true needs the tensorboard package (pip install 'panet[tensorboard]')"
                ) from None
            board = SummaryWriter(str(out / "tensorboard"))
    precision = resolve_precision(config.precision, device)
    if main_process and not quiet:
        if config.precision == "auto":
            print(f"precision auto: {precision} on this {device.type}", file=sys.stderr, flush=True)
        elif precision == "bf16" and not native_bf16(device):
            print(
                f"note: this {device.type} has no native bf16, so bf16 autocast is emulated (a training step "
                "measured ~10x slower than fp32 on an AVX2 CPU); precision: auto picks fp32 here",
                file=sys.stderr,
                flush=True,
            )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    losses: list[float] = []
    model.train()
    start_time = time.perf_counter()
    # a bar on a terminal; in a log file (nohup) one line per log_every steps instead
    show_bar = main_process and not quiet and sys.stderr.isatty()
    bar = tqdm(total=config.iterations, initial=step, desc="train", unit="it", disable=not show_bar, file=sys.stderr)
    first_step = step
    try:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast:
                loss = torch.nn.functional.l1_loss(net(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if ema is not None:
                # warm-up: early on the average would be mostly the random initialisation
                decay = min(config.ema or 0.0, (1 + step) / (10 + step))
                with torch.no_grad():
                    for k, v in model.state_dict().items():
                        if v.dtype.is_floating_point:
                            ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                        else:
                            ema[k].copy_(v)
            loss = loss.detach()
            if world > 1:
                dist.all_reduce(loss)
                loss /= world
            losses.append(loss.item())
            if not main_process or writer is None or log is None:  # the main process logs
                continue
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            val = None
            if step % config.val_every == 0 or step == config.iterations:
                val = validate(config, model, ema)
                model.train()
                bar.set_postfix(loss=f"{losses[-1]:.4f}", psnr=f"{val:.2f}" if val is not None else "-")
            elapsed = time.perf_counter() - start_time
            if step % config.log_every == 0 or val is not None:
                lr = scheduler.get_last_lr()[0]
                writer.writerow([step, f"{losses[-1]:.6f}", lr, "" if val is None else f"{val:.4f}", f"{elapsed:.1f}"])
                log.flush()
                if board is not None:
                    board.add_scalar("loss", losses[-1], step)
                    board.add_scalar("lr", lr, step)
                    if val is not None:
                        board.add_scalar("val_psnr", val, step)
                if not show_bar and not quiet:
                    rate = elapsed / (step - first_step)
                    eta = rate * (config.iterations - step)
                    print(
                        f"step {step}/{config.iterations} loss {losses[-1]:.4f} lr {lr:.3g} {rate:.2f} s/it "
                        f"eta {eta / 3600:.1f} h" + ("" if val is None else f" val PSNR {val:.2f}"),
                        file=sys.stderr,
                        flush=True,
                    )
            if val is not None:
                plot_log(out / "log.csv", out / "curves.png", title=f"{config.model} {config.task} {config.data.level}")
            if step % config.checkpoint_every == 0 or step == stop:
                _save_checkpoint(
                    ckpt_path,
                    {
                        "step": step,
                        "config": dataclasses.asdict(config),
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "ema": ema,
                        "torch_rng": torch.get_rng_state(),
                    },
                )
                write_run_weights(config, model, ema, step, command, precision)
        if main_process and step > first_step:
            plot_log(out / "log.csv", out / "curves.png", title=f"{config.model} {config.task} {config.data.level}")
        if world > 1:
            dist.barrier()  # every rank is done with collectives before any tears down
    finally:
        bar.close()
        if log is not None:
            log.close()
        if board is not None:
            board.close()
        if world > 1 and dist.is_initialized():
            # Drop DDP (and the loader) before the process group: tearing DDP down after
            # destroy_process_group could hang at exit (seen with gloo, 1 run in 3).
            del net, loader
            import gc

            gc.collect()
            dist.destroy_process_group()
    return {"step": step, "losses": losses, "out_dir": str(out)}


def _validation_sets(config: TrainConfig, colors: int):
    """(set name, EvalPairs, SR scale) per validation set: its first ``val_images`` images, centre crops of ``val_crop``."""
    from .data import EvalPairs

    for folder in _folders(config.data.val, config.data.data_root):
        pairs = EvalPairs(folder, task=config.task, level=_val_level(config), colors=colors, crop=config.data.val_crop)
        pairs.files = pairs.files[: config.data.val_images or None]
        yield folder.name, pairs, int(config.data.level) if pairs.task.upscales else 1


def validation_files(config: TrainConfig) -> list[Path]:
    """The images validation scores. Training never sees them, so a recipe may validate on the first
    ``val_images`` of a training set (a held-out split) instead of on a benchmark set."""
    from .data import find_images

    return [
        f
        for folder in _folders(config.data.val, config.data.data_root)
        for f in find_images(folder)[: config.data.val_images or None]
    ]


def validate(config: TrainConfig, model, ema: dict | None) -> float | None:
    """Mean PSNR over the validation sets with the task's protocol (EMA weights when enabled)."""
    import copy

    import numpy as np

    from .evaluate import evaluate_set, network_restorer

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

    from .baselines import make_baseline
    from .evaluate import evaluate_set
    from .tasks import get_task

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
