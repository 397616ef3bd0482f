"""Which network runs: the one place that turns (task, level, weights or preset, image colours) into a ready network.

The command line, :func:`panet.restore` and the web page all call :func:`resolve_network`; networks are cached
here, once per file (or per random preset and seed), for the whole process.

    >>> from panet.zoo.resolver import choose_network
    >>> choose_network("denoise", 25, colors=3).name  # doctest: +SKIP
    'panet-dn-s'
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from panet.tasks import TASKS, get_task

# Networks kept loaded (the paper's presets hold ~40-170 MB of weights each; the shipped ones ~5 MB).
CACHE_SIZE = 4
_cache: OrderedDict[tuple, Any] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Choice:
    """What would run, before anything is loaded."""

    kind: str  # "shipped" | "file" | "random"
    name: str  # shipped weights' name, the file as given, or the preset
    task: str | None  # the task the network serves (None: weights that do not record it)
    label: str  # for people: 'shipped weights panet-dn-s (σ 0..75)', the file, 'panet-dn-s, RANDOM weights'
    key: tuple  # the cache key: one entry per file (path, size, mtime) or per random preset and seed


@dataclass(frozen=True)
class Network:
    model: Any  # a PANet in eval mode
    choice: Choice

    @property
    def task(self) -> str | None:
        return self.choice.task


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return ("file", str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def choose_network(
    task: str | None,
    level: float | None = None,
    *,
    weights: str | os.PathLike | None = None,
    preset: str | None = None,
    random_init: bool = False,
    colors: int | None = None,
    seed: int = 0,
    noise: str | None = None,
) -> Choice:
    """What runs for a request, without loading it (ValueError names what is wrong).

    * ``weights`` (a shipped name or a .safetensors / release .pt file): those, checked against ``task``;
    * ``preset`` with ``random_init``: the preset, untrained (seeded with ``seed``);
    * otherwise the shipped weights for ``task`` whose training range covers ``level`` (for an image of
      ``colors`` channels, when given), trained on the task's noise model ``noise`` when given ("camera":
      blind weights for real photos); where none ship and ``random_init`` is set, the task's small preset,
      untrained (a demo).
    """
    from panet.zoo.pretrained import find_weights, list_weights, weights_task

    spec = get_task(task) if task is not None else None
    if weights is not None:
        text = str(weights)
        recorded, _ = weights_task(text)
        if spec is not None and recorded and recorded != spec.name:
            raise ValueError(f"{text} are {recorded} weights, not {spec.name}")
        shipped = next((w for w in list_weights() if w.name == text), None)
        if shipped is not None:
            return Choice("shipped", text, recorded, text, _file_key(shipped.file))
        path = Path(text)
        key = _file_key(path) if path.is_file() else ("missing", text)
        return Choice("file", text, task or recorded, text, key)
    if preset is not None:
        from panet.zoo.registry import get_preset

        preset_task = get_preset(preset).task
        if not random_init:
            raise ValueError(f"{preset!r} is a preset; pass --random-init to run it untrained, or --weights NAME|FILE")
        return Choice("random", preset, task or preset_task, f"{preset}, RANDOM weights", ("random", preset, seed))
    if spec is None:
        raise ValueError(f"give a task ({', '.join(TASKS)}) or weights")
    if spec.upscales and level is None:
        raise ValueError(f"task {spec.name!r} needs {spec.level_name} ({spec.level_rule})")
    if noise is not None and noise not in spec.noise_models:
        raise ValueError(f"task {spec.name!r} has no noise model {noise!r}")
    if random_init and not list_weights(task=spec.name):
        from panet.zoo.registry import small_preset

        name = small_preset(spec.name, int(level) if spec.upscales and level is not None else 1)
        return Choice("random", name, spec.name, f"{name}, RANDOM weights", ("random", name, seed))
    w = find_weights(spec.name, level, colors, noise=noise)
    return Choice("shipped", w.name, spec.name, f"shipped weights {w.name} ({w.level_text})", _file_key(w.file))


def _load(choice: Choice):
    from panet.zoo.pretrained import load_model

    if choice.kind == "random":
        import torch

        from panet.zoo.registry import create_model

        torch.manual_seed(choice.key[2])  # the seed is part of a random preset's key
        return create_model(choice.name)
    return load_model(choice.name)


def load_network(choice: Choice) -> Network:
    """The network of a :func:`choose_network` choice, loaded (or taken from the cache) and in eval mode."""
    with _lock:
        model = _cache.get(choice.key)
        if model is None:
            # channels-last is oneDNN's native layout: the trunk's convolutions skip a reorder per call (a 512x512
            # restore of panet-dn-s in bf16 on an AMX Xeon: 5.2 -> 4.8 s); converted once, when loaded
            model = _load(choice).eval().to(memory_format=torch.channels_last)
            _cache[choice.key] = model
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        _cache.move_to_end(choice.key)
    return Network(model, choice)


def resolve_network(
    task: str | None,
    level: float | None = None,
    *,
    weights: str | os.PathLike | None = None,
    preset: str | None = None,
    random_init: bool = False,
    colors: int | None = None,
    seed: int = 0,
    noise: str | None = None,
) -> Network:
    """:func:`choose_network`, loaded (or taken from the cache) and in eval mode."""
    return load_network(
        choose_network(
            task, level, weights=weights, preset=preset, random_init=random_init, colors=colors, seed=seed, noise=noise
        )
    )


def clear_cache() -> None:
    """Forget every loaded network."""
    with _lock:
        _cache.clear()
