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
    "PyramidAttention": "attention",
    "pyramid_attention": "attention",
    "patch_attention": "attention",
    "PANet": "model",
    "count_parameters": "model",
    "create_model": "registry",
    "describe": "descriptor",
    "estimate_sigma": "noise_level",
    "resolve_network": "resolver",
    "list_models": "registry",
    "get_preset": "registry",
    "from_official": "weights",
    "to_official": "weights",
    "save_weights": "weights",
    "load_weights": "weights",
    "forward_chop": "inference",
    "forward_tiled": "inference",
    "forward_ensemble": "inference",
    "forward_reflect_padded": "inference",
    "restore": "restoration",
    "load_model": "pretrained",
    "list_weights": "pretrained",
    "imresize": "matlab_resize",
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
    from .attention import PyramidAttention, patch_attention, pyramid_attention
    from .descriptor import describe
    from .inference import forward_chop, forward_ensemble, forward_reflect_padded, forward_tiled
    from .matlab_resize import imresize
    from .model import PANet, count_parameters
    from .noise_level import estimate_sigma
    from .pretrained import list_weights, load_model
    from .registry import create_model, get_preset, list_models
    from .resolver import resolve_network
    from .restoration import restore
    from .tasks import get_task
    from .weights import from_official, load_weights, save_weights, to_official
