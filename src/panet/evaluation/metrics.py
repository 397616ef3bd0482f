"""PSNR and SSIM as the paper's MATLAB scripts compute them.

Both work on 0-255 values. Inputs may be uint8 numpy images (HxW or HxWxC) or
float tensors in [0, 1] (HxW, CxHxW or 1xCxHxW), which are scaled by 255.

* ``y_channel=True``: the Y of MATLAB ``rgb2ycbcr`` on doubles (16-235, unrounded).
* ``crop_border``: pixels removed on each side first (SR: the scale).
* SSIM: Wang et al. (11x11 Gaussian, sigma 1.5, K = 0.01 / 0.03, L = 255,
  'valid' filtering); RGB images average the per-channel SSIM.

The per-task protocol (which of these options each task uses) is in
:mod:`panet.tasks`.

Example:
    >>> import numpy as np
    >>> from panet.evaluation.metrics import psnr
    >>> a = np.zeros((8, 8), np.uint8); b = a.copy(); b[0, 0] = 255
    >>> round(psnr(a, b), 2)
    18.06
"""

from __future__ import annotations

import math

import numpy as np

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def _as_255(img) -> np.ndarray:
    """HxWxC float64 on the 0-255 scale."""
    import torch  # a dependency; imported here to keep ``import panet.evaluation.metrics`` light

    if isinstance(img, torch.Tensor):
        t = img.detach().to("cpu", torch.float64)
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError("metrics take one image at a time, got a batch")
            t = t[0]
        if t.dim() == 3:
            t = t.permute(1, 2, 0)
        arr = t.numpy() * (1.0 if img.dtype == torch.uint8 else 255.0)
    else:
        a = np.asarray(img)
        if a.dtype == np.uint8:
            arr = a.astype(np.float64)
        elif np.issubdtype(a.dtype, np.floating):
            raise TypeError("floating-point numpy images are ambiguous: pass uint8 arrays or [0, 1] torch tensors")
        else:
            raise TypeError(f"unsupported pixel type {a.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an image, got shape {arr.shape}")
    return arr


def rgb_to_y(img255: np.ndarray) -> np.ndarray:
    """Y of MATLAB rgb2ycbcr for RGB on the 0-255 scale: 16-235, unrounded. HxWx3 -> HxWx1."""
    return (16.0 + img255 @ _Y_WEIGHTS)[:, :, None]


def _prepare(x, y, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_255(x), _as_255(y)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if y_channel:
        if a.shape[2] == 3:
            a, b = rgb_to_y(a), rgb_to_y(b)
        elif a.shape[2] != 1:
            raise ValueError("y_channel needs RGB or gray images")
    if crop_border:
        if 2 * crop_border >= min(a.shape[:2]):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr(x, y, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB (peak 255; MSE over all pixels and channels)."""
    a, b = _prepare(x, y, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(ax**2) / (2 * sigma**2))
    w = np.outer(g, g)
    return w / w.sum()


def _filter_valid(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """2-D correlation, 'valid' region (MATLAB filter2(w, img, 'valid'); w is symmetric)."""
    from numpy.lib.stride_tricks import sliding_window_view

    return np.einsum("ijkl,kl->ij", sliding_window_view(img, window.shape), window, optimize=True)


def _ssim_channel(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(x, y, *, crop_border: int = 0, y_channel: bool = False, window: str = "gaussian") -> float:
    """Structural similarity (Wang et al. 2004), averaged over channels.

    ``window="gaussian"`` (default): the 11x11 Gaussian window (sigma 1.5) of the paper's MATLAB scripts.
    ``window="uniform8"``: an 8x8 uniform window, as the original SSIM paper's block statistics; it reproduces
    the JPEG SSIM values the PANet paper copied from earlier work (see docs/baselines.md).
    """
    if window not in ("gaussian", "uniform8"):
        raise ValueError(f"window must be 'gaussian' or 'uniform8', got {window!r}")
    a, b = _prepare(x, y, crop_border, y_channel)
    size = 11 if window == "gaussian" else 8
    if min(a.shape[:2]) < size:
        raise ValueError(f"SSIM needs at least {size}x{size} pixels, got {a.shape[0]}x{a.shape[1]}")
    kernel = _gaussian_window() if window == "gaussian" else np.full((8, 8), 1 / 64)
    return float(np.mean([_ssim_channel(a[:, :, c], b[:, :, c], kernel) for c in range(a.shape[2])]))
