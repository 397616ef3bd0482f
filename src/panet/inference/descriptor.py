"""What a loaded network is and needs, in one record (in the manner of spandrel's model descriptors).

>>> import panet
>>> from panet.inference.descriptor import describe
>>> info = describe(panet.create_model("pa-edsr-s-x2"))
>>> info.task, info.scale, info.colors, info.min_size
('sr', 2, 3, 2)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    task: str | None  # what the network restores (None: unknown, e.g. a bare PANet)
    scale: int  # output / input size
    colors: int  # image channels in and out (1 gray, 3 colour or a zero-filled mosaic)
    min_size: int  # the smallest input height / width (every pyramid level keeps a pixel); smaller is padded
    tiling: tuple[int, int]  # (tile, overlap) that `panet restore` uses by default on a CPU
    precisions: tuple[str, ...]  # what `--precision` may ask for on this machine's CPU
    bf16_measured_ok: bool | None  # for shipped weights: bf16 cost at most 0.02 dB (None: not measured)
    shipped_name: str | None  # the shipped weights it came from
    level: tuple[float, float] | None  # the level range the weights were trained for, when known
    parameters: int


def describe(model) -> ModelInfo:
    """The :class:`ModelInfo` of a PANet (shipped weights are recognised by the name they were loaded under)."""
    from panet.inference.restore import auto_tiling, min_input_side
    from panet.nn.model import count_parameters
    from panet.zoo.pretrained import level_range, list_weights, measured_bf16_ok

    name = getattr(model, "shipped_name", None)
    shipped = next((w for w in list_weights() if w.name == name), None) if name else None
    task = shipped.task if shipped else model.task
    low, high = level_range(shipped.card.get("level")) if shipped else (None, None)
    return ModelInfo(
        task=task,
        scale=int(model.scale),
        colors=int(model.colors),
        min_size=min_input_side(model),
        tiling=auto_tiling(model, "cpu"),
        precisions=("auto", "fp32", "bf16"),  # fp16 needs CUDA (check_run_options says so)
        bf16_measured_ok=measured_bf16_ok(name),
        shipped_name=name,
        level=(low, high) if low is not None and high is not None else None,
        parameters=count_parameters(model),
    )
