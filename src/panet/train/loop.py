"""Training: a typed YAML config, a plain loop, exact resume.

    panet train configs/panet-dn-s.yaml [--resume] [key=value ...]

Reproducibility: training item ``i`` is a pure function of ``(seed, i)``
(:class:`panet.data.datasets.TrainPairs`), and step ``t`` uses items ``t*B .. t*B+B-1``.
A checkpoint stores the step, model, optimizer, scheduler, EMA and RNG states,
so a run killed and resumed reaches the same losses as an uninterrupted one.
Checkpoints are written atomically and read with ``weights_only=True``.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

from panet.files import atomic_write, remove_stale_temp_files
from panet.hardware import native_bf16, resolve_precision
from panet.train.artifacts import load_checkpoint, load_init_weights, save_checkpoint, write_run_weights
from panet.train.config import TrainConfig, data_folders
from panet.train.validation import validate, validation_files, validation_reference

# what a run writes into its out_dir atomically
# Training runs channels-last: oneDNN's native layout, so the convolutions and their gradients skip a reorder per
# call (panet-dn-s under bf16 autocast on an AMX Xeon: 1.19x per step at 24x24 on one core, 1.1x at 32x32 on two).
# The attention takes either layout; weights are saved contiguous.
MEMORY_FORMAT = torch.channels_last


def place_model(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """The network on ``device`` in the training layout (:data:`MEMORY_FORMAT`)."""
    return model.to(device).to(memory_format=MEMORY_FORMAT)  # type: ignore[call-overload]  # typeshed lacks it


def place_batch(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A (B, C, H, W) batch on ``device`` in the training layout."""
    return x.to(device, non_blocking=True, memory_format=MEMORY_FORMAT)


LOG_COLUMNS = ("step", "loss", "lr", "val_psnr", "seconds")
RUN_FILES = ("checkpoint.pt", "weights.safetensors", "card.json", "log.csv", "val_reference.json", "curves.png")


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


def _device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device cuda requested but CUDA is not available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


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

    from panet.data.datasets import TrainPairs
    from panet.train.plot import plot_log
    from panet.zoo.registry import create_model

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
    place_model(model, device)
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
        state = load_checkpoint(ckpt_path, device)
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
        data_folders(config.data.train, config.data.data_root),
        task=config.task,
        level=config.data.level,
        patch_size=config.data.patch_size,
        colors=model.colors,
        length=config.iterations * config.batch_size,
        seed=config.seed,
        exclude=validation_files(config),
        noise=config.data.noise,
        downscale=config.data.downscale,
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
        header = ",".join(LOG_COLUMNS)
        if log_path.exists():  # drop rows past the checkpoint: they will be logged again
            rows = [r for r in log_path.read_text().splitlines() if r.strip()]
            # a run killed before its header reached the disk left an empty log (or rows without a header)
            body = rows[1:] if rows and rows[0] == header else rows
            kept = [header] + [r for r in body if int(r.split(",")[0]) <= step]
            atomic_write(log_path, lambda tmp: Path(tmp).write_text("\n".join(kept) + "\n"))
        new_log = not log_path.exists()
        log = open(log_path, "a", newline="")
        writer = csv.writer(log)
        if new_log:
            writer.writerow(LOG_COLUMNS)
            log.flush()
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
            x, y = place_batch(x, device), place_batch(y, device)
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
                save_checkpoint(
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
