"""Named model presets: ``create_model(name, **overrides)`` and ``list_models()``.

The paper presets reproduce the released configurations (release.md section 1):
``panet-*`` are 80 blocks x 64 features with PA(64, reduction 2); ``pa-edsr-x*``
are 32 blocks x 256 features, res_scale 0.1, PA(256, reduction 8, res_scale 0.1).
The ``-s`` presets are small versions sized for CPU training.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from panet.errors import UnknownNameError
from panet.nn.model import PANet


@dataclass(frozen=True)
class Preset:
    name: str
    task: str  # sr | denoise | car | demosaic
    description: str
    config: dict[str, Any] = field(default_factory=dict)
    paper: bool = False


def _restoration(colors: int, **extra: Any) -> dict[str, Any]:
    return dict(colors=colors, scale=1, act="prelu", res_scale=1.0, attention_reduction=2, **extra)


def _pa_edsr(scale: int, **extra: Any) -> dict[str, Any]:
    cfg = dict(
        colors=3,
        scale=scale,
        act="relu",
        res_scale=0.1,
        attention_res_scale=0.1,
        mean_shift=True,
        attention_reduction=8,
    )
    cfg.update(extra)
    return cfg


_PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    if preset.name in _PRESETS:
        raise ValueError(f"preset {preset.name!r} is already registered")
    _PRESETS[preset.name] = preset
    return preset


_PAPER = dict(features=64, blocks=80)
register(
    Preset(
        "panet-dn", "denoise", "PANet colour denoising (paper: 80 blocks, 64 features)", _restoration(3, **_PAPER), True
    )
)
register(
    Preset(
        "panet-dn-gray", "denoise", "PANet gray denoising (paper config, 1 channel)", _restoration(1, **_PAPER), True
    )
)
register(Preset("panet-car", "car", "PANet JPEG artifact removal, gray (paper)", _restoration(1, **_PAPER), True))
register(
    Preset(
        "panet-demosaic",
        "demosaic",
        "PANet demosaicing of a zero-filled Bayer mosaic (paper)",
        _restoration(3, **_PAPER),
        True,
    )
)
for _s in (2, 3, 4):
    register(
        Preset(
            f"pa-edsr-x{_s}",
            "sr",
            f"PA-EDSR x{_s} super-resolution (paper: 32 blocks, 256 features)",
            _pa_edsr(_s, features=256, blocks=32),
            True,
        )
    )

# Small presets: same architecture, sized to train on a laptop CPU in hours.
# 64 features because the attention, not the trunk, dominates a training step at 24x24 patches:
# doubling the trunk (8 -> 16 blocks) adds ~12% to a step (benchmarks/train_step.py).
_SMALL = dict(features=64, blocks=16)
register(
    Preset(
        "panet-dn-s", "denoise", "small PANet for colour denoising (16 blocks, 64 features)", _restoration(3, **_SMALL)
    )
)
register(
    Preset(
        "panet-dn-gray-s",
        "denoise",
        "small PANet for gray denoising (16 blocks, 64 features)",
        _restoration(1, **_SMALL),
    )
)
register(
    Preset(
        "panet-car-s",
        "car",
        "small PANet for gray JPEG artifact removal (16 blocks, 64 features)",
        _restoration(1, **_SMALL),
    )
)
register(
    Preset(
        "panet-demosaic-s",
        "demosaic",
        "small PANet for demosaicing (16 blocks, 64 features)",
        _restoration(3, **_SMALL),
    )
)
for _s in (2, 3, 4):
    # attention_res_scale 1 (y = attention + x, as in PANet), not the release's 0.1: with 0.1 the untrained
    # attention (a near-uniform average) replaces 90% of the trunk's signal, and trained from scratch on a CPU
    # budget this PA-EDSR learned about half as fast per step as the same network without attention.
    register(
        Preset(
            f"pa-edsr-s-x{_s}",
            "sr",
            f"small PA-EDSR x{_s} (8 blocks, 64 features)",
            _pa_edsr(_s, features=64, blocks=8, attention_reduction=4, attention_res_scale=1.0),
        )
    )


def list_models(pattern: str = "*", *, task: str | None = None, paper: bool | None = None) -> list[str]:
    """Preset names matching a glob ``pattern`` (and optionally a task / paper flag), sorted."""
    return sorted(
        name
        for name, p in _PRESETS.items()
        if fnmatch.fnmatch(name, pattern) and (task is None or p.task == task) and (paper is None or p.paper == paper)
    )


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (its task, description and PANet config); UnknownNameError lists the names."""
    try:
        return _PRESETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def small_preset(task: str, scale: int = 1) -> str:
    """The small (CPU-sized) preset for ``task`` with the task's image channels and, for SR, ``scale``: what a demo
    without trained weights runs."""
    from panet.tasks import get_task

    spec = get_task(task)
    for name in list_models(task=spec.name, paper=False):
        config = _PRESETS[name].config
        if config["colors"] == spec.colors and config["scale"] == (scale if spec.upscales else 1):
            return name
    raise UnknownNameError(f"no small preset for task {task!r} at scale {scale}")


def create_model(name: str, pretrained: bool | str = False, **overrides: Any) -> PANet:
    """Build a preset, with any :class:`~panet.nn.model.PANet` keyword overridden.

    ``pretrained=True`` loads the shipped weights of the preset's own name (``panet-dn-s``: the blind colour
    denoiser); a string names other shipped weights trained with this preset (``"panet-dn-gray-s-sigma15"``).
    Overrides cannot be combined with pretrained weights (the weights would not fit)."""
    preset = get_preset(name)
    if pretrained:
        from panet.zoo.pretrained import list_weights, load_model

        if overrides:
            raise ValueError(f"overrides ({', '.join(overrides)}) cannot be combined with pretrained weights")
        wanted = name if pretrained is True else str(pretrained)
        shipped = {w.name: w for w in list_weights() if w.card.get("preset") == name}
        if wanted not in shipped:
            available = ", ".join(shipped) or "none"
            raise UnknownNameError(f"no shipped weights {wanted!r} for preset {name!r}; available: {available}")
        return load_model(wanted)
    model = PANet(**{**preset.config, **overrides})
    model.task = preset.task
    return model
