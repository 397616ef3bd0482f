"""Building blocks of the PANet / PA-EDSR trunks (EDSR style)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution with bias and 'same' zero padding (the release's default_conv)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class ResBlock(nn.Module):
    """conv -> act -> conv, scaled by ``res_scale``, plus the identity.

    ``act`` is *not* registered as a submodule: PANet shares one PReLU slope
    across all of its trunk blocks (a quirk its released weights depend on), so
    the owning network registers that activation once.
    """

    _act: nn.Module

    def __init__(self, channels: int, act: nn.Module, res_scale: float = 1.0):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.res_scale = res_scale
        object.__setattr__(self, "_act", act)  # shared, owned by the network

    def forward(self, x: Tensor) -> Tensor:
        res = self.conv2(self._act(self.conv1(x)))
        return x + (res * self.res_scale if self.res_scale != 1 else res)  # x * 1.0 is x: skip the pass


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling: (conv to 4C, PixelShuffle(2)) per factor 2, or conv to 9C + PixelShuffle(3)."""

    def __init__(self, scale: int, channels: int):
        layers: list[nn.Module] = []
        if scale in (2, 4, 8):
            for _ in range(scale.bit_length() - 1):
                layers += [conv3x3(channels, 4 * channels), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv3x3(channels, 9 * channels), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"upscaling factor must be 2, 3, 4 or 8, got {scale}")
        super().__init__(*layers)
