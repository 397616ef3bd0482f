"""Conversion from and to the release's checkpoints (release.md section 2): one table of its key layout for both
directions, checked strictly (every key accounted for, every shape as expected).

Nothing here unpickles code: ``.pt`` files are read with ``weights_only=True`` (:func:`panet.zoo.weights.read_torch_file`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from panet.nn.attention import PyramidAttention
from panet.nn.blocks import ResBlock
from panet.nn.model import DIV2K_MEAN, PANet
from panet.zoo.weights import PathLike, _raise_key_errors, read_torch_file

# --------------------------------------------------------------------------
# The release's key layout (release.md section 2), one table for both directions
# --------------------------------------------------------------------------

_PA_NAMES = (("query", "conv_match_L_base"), ("key", "conv_match"), ("value", "conv_assembly"))
# A row maps a release key to one of our parameter names, or to a constant the
# release stores but we derive (escape_NaN, the mean-shift layers).
Row = tuple[str, str | Tensor]


def _pa_rows(release_prefix: str, our_prefix: str, pa: PyramidAttention) -> list[Row]:
    rows: list[Row] = [(f"{release_prefix}escape_NaN", torch.tensor([pa.norm_eps]))]
    for ours, theirs in _PA_NAMES:
        for suffix in ("0.weight", "0.bias", "1.weight"):
            rows.append((f"{release_prefix}{theirs}.{suffix}", f"{our_prefix}{ours}.{suffix}"))
    return rows


def _mean_rows(name: str, mean: Tensor, sign: float) -> list[Row]:
    return [(f"{name}.weight", torch.eye(3).view(3, 3, 1, 1)), (f"{name}.bias", sign * mean)]


def _release_layout(model: nn.Module) -> list[Row]:
    """Release keys in the release's state_dict order, with their source here."""
    if isinstance(model, PyramidAttention):
        return _pa_rows("", "", model)
    if not isinstance(model, PANet):
        raise TypeError(f"no release format for {type(model).__name__}")
    cfg = model.config
    sr = model.scale > 1
    pa = model.attention
    reasons = []
    if pa is None:
        reasons.append("it has no attention block")
    if sr and not (cfg["act"] == "relu" and cfg["mean_shift"] and model.colors == 3):
        reasons.append("PA-EDSR needs act='relu', mean_shift=True and 3 colours")
    if not sr and (cfg["act"] != "prelu" or cfg["mean_shift"]):
        reasons.append("PANet needs act='prelu' and no mean shift")
    if pa is not None and pa.res_scale != (0.1 if sr else 1.0):
        # The release hard-codes it (PAEDSR: 0.1, PANET: the default 1).
        reasons.append(f"its attention res_scale is {pa.res_scale}, the release's is {0.1 if sr else 1.0}")
    if reasons:
        raise ValueError("this network cannot be written in the release's format: " + "; ".join(reasons))
    assert pa is not None and (model.rgb_mean is not None or not sr)  # else a reason above refused it
    mean = model.rgb_mean.flatten().cpu() if model.rgb_mean is not None else torch.tensor(DIV2K_MEAN)
    rows: list[Row] = _mean_rows("sub_mean", mean, -1.0)
    if sr:  # PAEDSR registers its attention twice: as msa and inside body
        rows += _pa_rows("msa.", f"body.{model.attention_index}.", pa)
    rows += _mean_rows("add_mean", mean, 1.0)
    rows += [("head.0.weight", "head.weight"), ("head.0.bias", "head.bias")]
    for i, block in enumerate(model.body):
        if isinstance(block, ResBlock):
            rows += [(f"body.{i}.body.0.{p}", f"body.{i}.conv1.{p}") for p in ("weight", "bias")]
            if cfg["act"] == "prelu":  # one shared slope, listed under every block
                rows.append((f"body.{i}.body.1.weight", "act.weight"))
            rows += [(f"body.{i}.body.2.{p}", f"body.{i}.conv2.{p}") for p in ("weight", "bias")]
        elif isinstance(block, PyramidAttention):
            rows += _pa_rows(f"body.{i}.", f"body.{i}.", block)
        else:
            rows += [(f"body.{i}.{p}", f"body.{i}.{p}") for p in ("weight", "bias")]
    if sr and model.upsample is not None:
        for j, layer in enumerate(model.upsample):
            if isinstance(layer, nn.Conv2d):
                rows += [(f"tail.0.{j}.{p}", f"upsample.{j}.{p}") for p in ("weight", "bias")]
        rows += [("tail.1.weight", "tail.weight"), ("tail.1.bias", "tail.bias")]
    else:
        rows += [("tail.0.weight", "tail.weight"), ("tail.0.bias", "tail.bias")]
    return rows


def to_official(model: nn.Module) -> OrderedDict[str, Tensor]:
    """The release's state dict for ``model`` (a PANet / PA-EDSR network or a PyramidAttention)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, source in _release_layout(model):
        out[key] = (params[source] if isinstance(source, str) else source).detach().cpu().clone()
    return out


# --------------------------------------------------------------------------
# Reading the release's checkpoints
# --------------------------------------------------------------------------

_RELEASE_KWARGS = {
    "level",
    "res_scale",
    "channel",
    "reduction",
    "ksize",
    "stride",
    "softmax_scale",
    "average",
    "rgb_range",
}


def _check_release_kwargs(kwargs: Mapping[str, Any]) -> None:
    """ValueError for release arguments the release itself could not have run with."""
    import math

    def number(name: str) -> float:
        value = kwargs[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"release argument {name} must be a finite number, got {value!r}")
        return float(value)

    if "level" in kwargs and (not float(number("level")).is_integer() or not 1 <= number("level") <= 10):
        raise ValueError(
            f"release argument level must be an integer in 1..10 (pyramid levels), got {kwargs['level']!r}"
        )
    if "softmax_scale" in kwargs and number("softmax_scale") <= 0:
        raise ValueError(f"release argument softmax_scale must be positive, got {kwargs['softmax_scale']!r}")
    for name in ("res_scale", "rgb_range", "channel", "reduction", "ksize", "stride"):
        if name in kwargs:
            number(name)
    if "average" in kwargs and not isinstance(kwargs["average"], bool):
        raise ValueError(f"release argument average must be true or false, got {kwargs['average']!r}")


def _read_state_dict(source: Mapping[str, Tensor] | PathLike) -> dict[str, Tensor]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            try:
                obj: Any = load_file(str(path))
            except Exception as exc:
                raise ValueError(f"{path}: not a readable .safetensors file ({exc})") from None
        else:
            obj = read_torch_file(path)
    else:
        obj = source
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # e.g. the reference fixtures
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError("expected a state dict (a mapping of names to tensors)")
    return dict(obj)


def _int_keys(sd: Mapping[str, Tensor], prefix: str) -> list[int]:
    return sorted(
        {
            int(k[len(prefix) :].split(".")[0])
            for k in sd
            if k.startswith(prefix) and k[len(prefix) :].split(".")[0].isdigit()
        }
    )


def _pa_config(sd: Mapping[str, Tensor], prefix: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    w = sd[f"{prefix}conv_match_L_base.0.weight"]
    channel, inner = int(w.shape[1]), int(w.shape[0])
    if inner < 1 or channel % inner:
        raise ValueError(f"{prefix}conv_match_L_base.0.weight has shape {tuple(w.shape)}: not C/r x C")
    reduction = channel // inner
    for name, inferred in (("channel", channel), ("reduction", reduction)):
        if name in kwargs and int(kwargs[name]) != inferred:
            raise ValueError(f"{name}={kwargs[name]} was given but the checkpoint has {name} {inferred}")
    eps = sd.get(f"{prefix}escape_NaN")
    return dict(
        channels=channel,
        reduction=reduction,
        levels=int(kwargs.get("level", 5)),
        softmax_scale=float(kwargs.get("softmax_scale", 10)),
        hard=not bool(kwargs.get("average", True)),
        norm_eps=float(eps.flatten()[0]) if eps is not None and eps.numel() else 1e-4,
    )


def _network_for(sd: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> nn.Module:
    if "conv_match_L_base.0.weight" in sd:
        cfg = _pa_config(sd, "", kwargs)
        return PyramidAttention(**cfg, res_scale=float(kwargs.get("res_scale", 1)))
    if "head.0.weight" not in sd:
        raise ValueError("not a state dict of the release: no head.0.weight and no conv_match_L_base.* keys")
    head = sd["head.0.weight"]
    features, colors = int(head.shape[0]), int(head.shape[1])
    body = _int_keys(sd, "body.")
    attention = [i for i in body if f"body.{i}.conv_match_L_base.0.weight" in sd]
    if len(attention) != 1:
        raise ValueError(f"expected exactly one attention block in body, found {len(attention)}")
    p = attention[0]
    # Residual blocks are the entries with a first conv; anything else that is
    # not in the layout is reported by the strict key check below.
    blocks = sum(f"body.{i}.body.0.weight" in sd for i in body)
    if p != blocks // 2 or blocks % 2:
        raise ValueError(f"attention at body.{p} with {blocks} residual blocks: not the release's layout")
    sr = "msa.conv_match_L_base.0.weight" in sd
    pa = _pa_config(sd, f"body.{p}.", kwargs)
    if pa["channels"] != features:
        raise ValueError(f"attention has {pa['channels']} channels but the trunk has {features}")
    if float(kwargs.get("rgb_range", 1)) != 1:
        raise ValueError("only rgb_range=1 checkpoints are supported (the paper's setting)")
    common = dict(
        colors=colors,
        features=features,
        blocks=blocks,
        attention_levels=pa["levels"],
        attention_reduction=pa["reduction"],
        softmax_scale=pa["softmax_scale"],
        hard=pa["hard"],
    )
    if not sr:
        model = PANet(**common, scale=1, act="prelu", res_scale=float(kwargs.get("res_scale", 1)))
    else:
        up = _int_keys(sd, "tail.0.")
        first = sd.get("tail.0.0.weight")
        if first is None:
            raise ValueError("PA-EDSR checkpoint without tail.0.0.weight")
        if up == [0, 2] and first.shape[0] == 4 * features:
            scale = 4
        elif up == [0] and first.shape[0] in (4 * features, 9 * features):
            scale = 2 if first.shape[0] == 4 * features else 3
        else:
            raise ValueError(
                f"cannot infer the upscaling factor from tail.0.* keys {up} and shape {tuple(first.shape)}"
            )
        sub, add, weight = sd.get("sub_mean.bias"), sd.get("add_mean.bias"), sd.get("sub_mean.weight")
        mean = [round(v, 7) for v in (-sub).tolist()] if sub is not None and sub.numel() == 3 else list(DIV2K_MEAN)
        if sub is not None and add is not None and add.shape == sub.shape and not torch.allclose(add, -sub):
            raise ValueError("add_mean.bias is not -sub_mean.bias: not the release's MeanShift pair")
        if weight is not None and weight.numel() == 9 and not torch.equal(weight.flatten(), torch.eye(3).flatten()):
            raise ValueError("sub_mean.weight is not the identity (rgb_std != 1 is not supported)")
        model = PANet(
            **common,
            scale=scale,
            act="relu",
            res_scale=float(kwargs.get("res_scale", 0.1)),
            attention_res_scale=0.1,
            mean_shift=True,
            rgb_mean=tuple(mean),
        )
    assert model.attention is not None  # every release network has its attention block
    model.attention.norm_eps = pa["norm_eps"]
    return model


def from_official(state_dict_or_path: Mapping[str, Tensor] | PathLike, **release_kwargs: Any) -> nn.Module:
    """Build the project module matching a release checkpoint and load it (strict).

    The architecture (attention block alone, PANet or PA-EDSR; depth, widths,
    colours, SR scale, attention channels and reduction) is read from the keys
    and shapes. ``release_kwargs`` carry what a state dict cannot hold, under the
    release's names: ``level``, ``res_scale``, ``channel``, ``reduction``,
    ``ksize``, ``stride``, ``softmax_scale``, ``average`` (and ``rgb_range``).
    """
    unknown = set(release_kwargs) - _RELEASE_KWARGS
    if unknown:
        raise TypeError(f"unknown release arguments: {', '.join(sorted(unknown))}")
    _check_release_kwargs(release_kwargs)
    if int(release_kwargs.get("ksize", 3)) != 3 or int(release_kwargs.get("stride", 1)) != 1:
        raise ValueError("the release's attention only works with ksize=3 and stride=1")
    sd = _read_state_dict(state_dict_or_path)
    origin = str(state_dict_or_path) if isinstance(state_dict_or_path, (str, os.PathLike)) else "state dict"
    model = _network_for(sd, release_kwargs)
    layout = _release_layout(model)
    params = dict(model.named_parameters(remove_duplicate=False))
    expected = {k: (params[s] if isinstance(s, str) else s).shape for k, s in layout}
    _raise_key_errors(
        origin,
        sorted(set(expected) - set(sd)),
        sorted(set(sd) - set(expected)),
        [(k, tuple(sd[k].shape), tuple(expected[k])) for k in expected if k in sd and sd[k].shape != expected[k]],
    )
    values: dict[str, tuple[str, Tensor]] = {}
    for key, source in layout:
        if not isinstance(source, str):
            continue
        if source in values and not torch.equal(values[source][1], sd[key]):
            # The release stores these as one tensor (shared PReLU, msa == body.<i>).
            raise ValueError(f"{origin}: {key} differs from {values[source][0]}, which the release shares")
        values.setdefault(source, (key, sd[key]))
    own = {name for name, _ in model.named_parameters()}
    assert own == set(values), f"layout does not cover {own ^ set(values)}"  # internal consistency
    with torch.no_grad():
        for source, (_, tensor) in values.items():
            params[source].copy_(tensor)
    return model.eval()
