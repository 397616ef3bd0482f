"""Building blocks of the PANet / PA-EDSR trunks (EDSR style)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from panet.nn import native


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution with bias and 'same' zero padding (the release's default_conv)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class SingleSlopePReLU(nn.PReLU):
    """``nn.PReLU()`` (one slope for every channel; the same parameter and state-dict key) whose backward, in bf16
    training on a CPU, runs in :mod:`panet.nn.native`: PyTorch's PReLU backward took ~9% of a bf16 training step
    of the small recipes (one core of an AMX Xeon), the kernel a twentieth of that. Forward and gradients as
    PyTorch's, the slope's gradient summed in fp32 (PyTorch rounds each element's term to bf16 first)."""

    def __init__(self, init: float = 0.25):
        super().__init__(1, init)

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting():  # exported networks: PyTorch's PReLU
            return F.prelu(x, self.weight)
        return self._eager(x)

    @torch.jit.unused
    def _eager(self, x: Tensor) -> Tensor:
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        if x.requires_grad and x.dtype == torch.bfloat16 and x.device.type == "cpu" and dense and native.available():
            return _SingleSlopePReLU.apply(x, self.weight)
        return F.prelu(x, self.weight)


class _SingleSlopePReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        slope = weight.to(x.dtype)  # as autocast hands F.prelu the slope
        ctx.save_for_backward(x, slope)
        ctx.weight_dtype = weight.dtype
        return F.prelu(x, slope)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, slope = ctx.saved_tensors
        layout = torch.contiguous_format if x.is_contiguous() else torch.channels_last
        grad_x, grad_slope = native.prelu_backward(x, grad.contiguous(memory_format=layout), float(slope))
        return grad_x, grad_slope.reshape(slope.shape).to(ctx.weight_dtype)


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
