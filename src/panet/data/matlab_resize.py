"""MATLAB's ``imresize(img, scale, 'bicubic')`` in Python.

The SR benchmarks' low-resolution inputs were made with MATLAB. PyTorch's and
Pillow's bicubic differ from it: MATLAB uses Keys' cubic with a = -0.5, widens
the kernel by 1/scale when shrinking (antialiasing), mirrors the border
symmetrically, resizes the height first, and keeps uint8 images uint8 *after
each 1-D pass* (rounding in between). All of that is reproduced here.

Each 1-D pass is a dense (out x in) weight matrix, so the same code serves
numpy arrays and torch tensors.

Example:
    >>> import numpy as np
    >>> from panet.data.matlab_resize import imresize
    >>> imresize(np.zeros((9, 12, 3), np.uint8), 1 / 3).shape
    (3, 4, 3)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Union, overload

import numpy as np

if TYPE_CHECKING:
    import torch

Array = Union[np.ndarray, "torch.Tensor"]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def resize_matrix(in_size: int, out_size: int, scale: float) -> np.ndarray:
    """The (out_size x in_size) float64 matrix of one MATLAB bicubic pass."""
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    x = np.arange(1, out_size + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices
    dist = u[:, None] - idx
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights /= weights.sum(1, keepdims=True)
    # symmetric border: ..., 2, 1, 1, 2, ..., n, n, n-1, ...
    mirror = np.concatenate([np.arange(in_size), np.arange(in_size - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_size)]
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_size), taps), idx.ravel()), weights.ravel())
    return matrix


def output_size(size: int, scale: float) -> int:
    return int(math.ceil(size * scale))


@overload
def imresize(img: np.ndarray, scale: float) -> np.ndarray: ...
@overload
def imresize(img: torch.Tensor, scale: float) -> torch.Tensor: ...
def imresize(img: Array, scale: float) -> Array:
    """Resize like MATLAB ``imresize(img, scale, 'bicubic')``.

    Args:
        img: numpy HxW or HxWxC, or a torch tensor HxW, CxHxW or BxCxHxW.
            uint8 in gives uint8 out (rounded after each 1-D pass, as MATLAB);
            floating point in gives the same dtype out, unrounded.
        scale: the factor, e.g. 1/3 to make an x3 low-resolution image, 2 to enlarge.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    import torch  # a dependency; imported here to keep ``import panet.evaluation.metrics`` light

    if isinstance(img, torch.Tensor):
        return _imresize_torch(img, scale)
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {arr.shape}")
    if not (arr.dtype == np.uint8 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"expected uint8 or floating-point pixels, got {arr.dtype}")
    h, w = arr.shape[:2]
    rows = resize_matrix(h, output_size(h, scale), scale)
    cols = resize_matrix(w, output_size(w, scale), scale)
    x = arr.astype(np.float64)
    x = np.tensordot(rows, x, axes=(1, 0))  # height first
    if arr.dtype == np.uint8:
        x = _round_uint8(x)
    x = np.moveaxis(np.tensordot(cols, x, axes=(1, 1)), 0, 1)
    if arr.dtype == np.uint8:
        return _round_uint8(x).astype(np.uint8)
    return x.astype(arr.dtype)


def _round_uint8(x):
    # MATLAB's conversion to uint8: clip, then round half away from zero.
    return np.floor(np.clip(x, 0, 255) + 0.5)


def _imresize_torch(img, scale: float):
    import torch

    if img.dim() not in (2, 3, 4):
        raise ValueError(f"expected an HxW, CxHxW or BxCxHxW tensor, got shape {tuple(img.shape)}")
    if not (img.dtype == torch.uint8 or img.dtype.is_floating_point):
        raise TypeError(f"expected uint8 or floating-point pixels, got {img.dtype}")
    h, w = img.shape[-2:]
    rows = torch.from_numpy(resize_matrix(h, output_size(h, scale), scale)).to(img.device)
    cols = torch.from_numpy(resize_matrix(w, output_size(w, scale), scale)).to(img.device)
    x = img.to(torch.float64)
    x = torch.matmul(rows, x)  # (..., H', W)
    if img.dtype == torch.uint8:
        x = torch.floor(x.clamp(0, 255) + 0.5)
    x = torch.matmul(x, cols.t())
    if img.dtype == torch.uint8:
        return torch.floor(x.clamp(0, 255) + 0.5).to(torch.uint8)
    return x.to(img.dtype)
