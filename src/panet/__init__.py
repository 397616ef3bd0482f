"""panet: Pyramid Attention Networks for image restoration.

Importing ``panet`` is light: submodules load on first use.

    >>> import panet
    >>> net = panet.create_model("panet-dn-s")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "PyramidAttention": "nn.attention",
    "pyramid_attention": "nn.attention",
    "patch_attention": "nn.attention",
    "PANet": "nn.model",
    "count_parameters": "nn.model",
    "create_model": "zoo.registry",
    "describe": "inference.descriptor",
    "estimate_sigma": "data.noise_level",
    "resolve_network": "zoo.resolver",
    "list_models": "zoo.registry",
    "get_preset": "zoo.registry",
    "from_official": "zoo.release",
    "to_official": "zoo.release",
    "save_weights": "zoo.weights",
    "load_weights": "zoo.weights",
    "forward_chop": "inference.tiling",
    "forward_tiled": "inference.tiling",
    "forward_ensemble": "inference.tiling",
    "forward_reflect_padded": "inference.tiling",
    "restore": "inference.restore",
    "load_model": "zoo.pretrained",
    "list_weights": "zoo.pretrained",
    "imresize": "data.matlab_resize",
    "get_task": "tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'panet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover
    from panet.data.matlab_resize import imresize
    from panet.data.noise_level import estimate_sigma
    from panet.inference.descriptor import describe
    from panet.inference.restore import restore
    from panet.inference.tiling import forward_chop, forward_ensemble, forward_reflect_padded, forward_tiled
    from panet.nn.attention import PyramidAttention, patch_attention, pyramid_attention
    from panet.nn.model import PANet, count_parameters
    from panet.tasks import get_task
    from panet.zoo.pretrained import list_weights, load_model
    from panet.zoo.registry import create_model, get_preset, list_models
    from panet.zoo.release import from_official, to_official
    from panet.zoo.resolver import resolve_network
    from panet.zoo.weights import load_weights, save_weights
