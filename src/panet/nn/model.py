"""PANet and PA-EDSR as one configurable network.

* ``scale == 1``: PANet (denoising, JPEG artifact removal, demosaicing). No mean
  shift, no image-level residual; one PReLU slope shared by all trunk blocks.
* ``scale > 1``: PA-EDSR (bicubic super-resolution). Mean shift in and out,
  ReLU blocks with ``res_scale`` 0.1 and a pixel-shuffle upsampler.

Example:
    >>> import torch
    >>> from panet.nn.model import PANet
    >>> net = PANet(colors=1, features=32, blocks=2)
    >>> net(torch.rand(1, 1, 24, 20)).shape
    torch.Size([1, 1, 24, 20])
"""

from __future__ import annotations

from typing import Literal, cast

import torch
import torch.nn as nn
from torch import Tensor

from panet.nn.attention import PyramidAttention
from panet.nn.blocks import ResBlock, SingleSlopePReLU, Upsampler, conv3x3

# DIV2K RGB mean used by the release's MeanShift layers (rgb_range 1).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class PANet(nn.Module):
    """Residual trunk with one pyramid-attention block in the middle.

    Args:
        colors: image channels in and out (1 gray, 3 colour / zero-filled mosaic).
        scale: 1 for restoration; 2, 3 or 4 for super-resolution (adds the upsampler).
        features: trunk width.
        blocks: residual blocks; the attention sits after ``blocks // 2`` of them.
        res_scale: scale of each residual branch (0.1 in PA-EDSR).
        act: ``"prelu"`` (one slope shared by the whole trunk, as PANet) or ``"relu"``.
        attention_levels: pyramid levels; 1 is a single-scale non-local block,
            0 removes the attention block (for ablations).
        attention_reduction: query/key channels are ``features // attention_reduction``.
        attention_res_scale: identity scale of the attention block (0.1 in PA-EDSR).
        softmax_scale, hard: see :class:`~panet.nn.attention.PyramidAttention`.
        mean_shift: subtract / add the RGB mean around the network (PA-EDSR).
        rgb_mean: the mean used by ``mean_shift`` (on the [0, 1] scale).
    """

    # the name of the shipped weights it was loaded from (their measured tiling and card are found by it), else None
    shipped_name: str | None = None
    # the task it restores, where known: from its preset (create_model), or recorded with its weights
    task: str | None = None

    def __init__(
        self,
        *,
        colors: int = 3,
        scale: int = 1,
        features: int = 64,
        blocks: int = 80,
        res_scale: float = 1.0,
        act: Literal["prelu", "relu"] = "prelu",
        attention_levels: int = 5,
        attention_reduction: int = 2,
        attention_res_scale: float = 1.0,
        softmax_scale: float = 10.0,
        hard: bool = False,
        mean_shift: bool = False,
        rgb_mean: tuple[float, ...] = DIV2K_MEAN,
    ):
        super().__init__()
        # Everything needed to rebuild this network (stored with saved weights).
        self.config = dict(
            colors=colors,
            scale=scale,
            features=features,
            blocks=blocks,
            res_scale=res_scale,
            act=act,
            attention_levels=attention_levels,
            attention_reduction=attention_reduction,
            attention_res_scale=attention_res_scale,
            softmax_scale=softmax_scale,
            hard=hard,
            mean_shift=mean_shift,
            rgb_mean=list(rgb_mean),
        )
        if colors < 1 or features < 1 or blocks < 0:
            raise ValueError("colors and features must be positive and blocks non-negative")
        if act not in ("prelu", "relu"):
            raise ValueError(f"act must be 'prelu' or 'relu', got {act!r}")
        if mean_shift and len(rgb_mean) != colors:
            raise ValueError(f"rgb_mean has {len(rgb_mean)} values for {colors} colours")
        self.colors, self.scale, self.features, self.blocks = colors, scale, features, blocks
        self.attention_index = blocks // 2 if attention_levels > 0 else None
        # One activation module for the whole trunk (see ResBlock).
        self.act = SingleSlopePReLU() if act == "prelu" else nn.ReLU(inplace=True)
        self.head = conv3x3(colors, features)
        body: list[nn.Module] = [ResBlock(features, self.act, res_scale) for _ in range(blocks // 2)]
        if attention_levels > 0:
            body.append(
                PyramidAttention(
                    features,
                    attention_reduction,
                    levels=attention_levels,
                    softmax_scale=softmax_scale,
                    res_scale=attention_res_scale,
                    hard=hard,
                )
            )
        body += [ResBlock(features, self.act, res_scale) for _ in range(blocks - blocks // 2)]
        body.append(conv3x3(features, features))
        self.body = nn.Sequential(*body)
        self.upsample = Upsampler(scale, features) if scale > 1 else None
        self.tail = conv3x3(features, colors)
        if mean_shift:
            self.register_buffer("rgb_mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, colors, 1, 1))
        else:
            self.rgb_mean = None

    @property
    def attention(self) -> PyramidAttention | None:
        return None if self.attention_index is None else cast(PyramidAttention, self.body[self.attention_index])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.colors:
            raise ValueError(f"expected a (B, {self.colors}, H, W) image batch, got shape {tuple(x.shape)}")
        if self.rgb_mean is not None:
            x = x - self.rgb_mean
        h = self.head(x)
        y = self.body(h) + h  # feature-space long skip; no image-level residual
        if self.upsample is not None:
            y = self.upsample(y)
        y = self.tail(y)
        if self.rgb_mean is not None:
            y = y + self.rgb_mean
        return y


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a shared tensor counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
