"""Weights that ship with panet, each with a JSON card; ``load_model(name_or_path)``.

Shipped files live in the package (``panet/zoo/shipped/<name>.safetensors`` and
``<name>.json``) so that a plain ``pip install`` has them. ``panet train`` writes
both for every run (``out_dir/weights.safetensors`` with the EMA weights and
``out_dir/card.json``); shipping copies them here and adds the evaluation table
(``scripts/results.py``).

    >>> from panet.zoo.pretrained import list_weights
    >>> [w.name for w in list_weights(task="sr")]  # doctest: +SKIP
    ['pa-edsr-s-x2', 'pa-edsr-s-x3', 'pa-edsr-s-x4']
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).resolve().parent / "shipped"


@dataclass(frozen=True)
class ShippedWeights:
    name: str
    task: str
    low: float | None  # level range the weights were trained for (SR: the scale; demosaic: None)
    high: float | None
    file: Path
    card: dict[str, Any]

    def covers(self, level: float | None) -> bool:
        """Trained for ``level`` (None: no level asked for, any weights of the task do)."""
        if level is None or self.low is None or self.high is None:
            return True
        return self.low <= level <= self.high

    @property
    def range_width(self) -> float:
        """How wide a level range the weights were trained for: 0 for one level (or no level), 75 for σ 0..75."""
        return 0.0 if self.low is None or self.high is None else self.high - self.low

    @property
    def noise(self) -> str | None:
        """The noise model the weights were trained on besides the task's standard one ("camera"), from the
        card's recipe (``data.noise``); None: the task's standard degradation."""
        config = self.card.get("config")
        data = config.get("data") if isinstance(config, dict) else None
        noise = data.get("noise") if isinstance(data, dict) else None
        return noise if isinstance(noise, str) else None

    @property
    def colors(self) -> int | None:
        """Image channels the network takes (1 gray, 3 colour): the config saved in the weights file itself."""
        from panet.zoo.weights import read_metadata

        try:
            return int(json.loads(read_metadata(self.file)["config"])["colors"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def level_text(self) -> str:
        """The trained level or range as documents write it ('x2', 'σ 0..75', '-')."""
        from panet.tasks import get_task

        return get_task(self.task).format_level(self.low, self.high)


def task_text(weights: ShippedWeights) -> str:
    """'sr (x2)', 'denoise (σ 0..75)', 'denoise (camera noise, σ 0..40)', or just 'demosaic' (no level): how
    documents head a model's section."""
    noise = f"{weights.noise} noise" if weights.noise else None
    parts = [p for p in (noise, None if weights.low is None else weights.level_text) if p]
    return f"{weights.task} ({', '.join(parts)})" if parts else weights.task


def level_range(level: Any) -> tuple[float | None, float | None]:
    if level is None:
        return None, None
    if isinstance(level, (list, tuple)):
        return float(level[0]), float(level[1])
    return float(level), float(level)


def list_weights(*, task: str | None = None, folder: str | os.PathLike | None = None) -> list[ShippedWeights]:
    """Shipped weights (those with both a .safetensors file and a card), sorted by name."""
    folder = Path(folder) if folder else SHIPPED
    found = []
    for card_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        file = card_path.with_suffix(".safetensors")
        if not file.is_file():
            continue
        card = json.loads(card_path.read_text())
        low, high = level_range(card.get("level"))
        if task is None or card["task"] == task:
            found.append(ShippedWeights(card_path.stem, card["task"], low, high, file, card))
    return found


def find_weights(
    task: str, level: float | None = None, colors: int | None = None, *, noise: str | None = None
) -> ShippedWeights:
    """The shipped weights for ``task`` whose training range covers ``level``; with ``colors`` (1 or 3, the
    image's), weights for that many channels are preferred (a colour photo goes to the colour denoiser, not to the
    gray one channel by channel), then the narrowest range (a model trained for σ 15 alone over the blind one;
    with no level, the widest). ``noise``: weights trained on that noise model of the task ("camera"; they are
    blind, ``level`` is not asked for); None: on the task's standard degradation."""
    from panet.tasks import get_task

    spec = get_task(task)
    task = spec.name
    if noise is not None and noise not in spec.noise_models:
        choices = ", ".join(spec.noise_models) or "none"
        raise ValueError(f"task {task!r} has no noise model {noise!r} (noise models: {choices})")
    candidates = [w for w in list_weights(task=task) if w.noise == noise]
    if noise is not None:
        level = None
    if not candidates:
        raise ValueError(f"no trained weights ship for task {task!r}{f' with {noise} noise' if noise else ''} yet")
    covering = [w for w in candidates if w.covers(level)]
    if covering:

        def preference(w: ShippedWeights) -> tuple[bool, float]:
            # at a given level the specialist; with no level the model for the widest range
            return (colors is not None and w.colors != colors, w.range_width if level is not None else -w.range_width)

        return min(covering, key=preference)  # min is stable: ties keep the name order
    ranges = ", ".join(f"{w.name} ({w.level_text})" for w in candidates)
    raise ValueError(f"no shipped {task} weights cover level {level:g}; available: {ranges}")


def _measured(name: str | None) -> dict | None:
    """What scripts/tiling.py measured for the shipped weights ``name`` (tiling.json beside them), or None."""
    table = SHIPPED / "tiling.json"
    if name is None or not table.is_file():
        return None
    return json.loads(table.read_text()).get("weights", {}).get(name)


def measured_tiling(name: str | None) -> tuple[int, int] | None:
    """(tile, overlap) that scripts/tiling.py measured best for the shipped weights ``name``, or None."""
    entry = _measured(name)
    return (int(entry["tile"]), int(entry["overlap"])) if entry else None


def measured_bf16_ok(name: str | None) -> bool | None:
    """Whether bf16 autocast cost the shipped weights ``name`` at most 0.02 dB when scripts/tiling.py measured it;
    None when nothing was measured."""
    entry = _measured(name)
    return None if entry is None or "bf16" not in entry else bool(entry["bf16"])


def _load_shipped(w: ShippedWeights, map_location: str = "cpu"):
    """The network of shipped weights, tagged with their name (their tiling and card are looked up by it)."""
    from panet.zoo.weights import load_weights

    model = load_weights(w.file, map_location=map_location)
    model.shipped_name, model.task = w.name, w.task
    return model


def load_model(name_or_path: str | os.PathLike, *, map_location: str = "cpu"):
    """A network from shipped weights (by name), a panet .safetensors file, or a release .pt checkpoint."""
    from panet.zoo.release import from_official
    from panet.zoo.weights import load_weights

    text = str(name_or_path)
    for w in list_weights():
        if w.name == text:
            return _load_shipped(w, map_location)
    path = Path(text)
    if path.suffix == ".safetensors":
        return load_weights(path, map_location=map_location)
    if path.suffix in (".pt", ".pth"):
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return from_official(path)
    names = [w.name for w in list_weights()]
    raise ValueError(
        f"unknown weights {text!r}: not a shipped name ({', '.join(names) or 'none yet'}) nor a .safetensors / .pt file"
    )


def weights_task(name_or_path: str) -> tuple[str | None, Any]:
    """(task, level) recorded with shipped or panet-written weights; (None, None) when unknown."""
    from panet.zoo.weights import read_metadata

    for w in list_weights():
        if w.name == name_or_path:
            return w.task, w.card.get("level")
    if str(name_or_path).endswith(".safetensors") and Path(name_or_path).is_file():
        try:
            meta = read_metadata(name_or_path)
        except Exception:
            return None, None
        return meta.get("task"), json.loads(meta["level"]) if "level" in meta else None
    return None, None
