"""How noisy is a photo? ``estimate_sigma(image)``: the standard deviation of additive white Gaussian noise.

The estimator is the patch-PCA method of Chen, Zhu and Heng (ICCV 2015, "An efficient statistical method for image
noise level estimation"). The covariance of an image's small patches has eigenvalues that are the noise variance
plus the signal's variance along each direction; natural images leave most directions nearly empty, so the small
eigenvalues are noise alone. Among the eigenvalues sorted from small to large, the method keeps the longest run
whose mean is also its median (noise eigenvalues scatter symmetrically around sigma^2; a signal eigenvalue drags the
mean above the median) and returns the square root of that mean.

    >>> import numpy as np
    >>> from panet.data.noise_level import estimate_sigma
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0, 255, 96), (96, 1))
    >>> noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    >>> 17 < estimate_sigma(noisy) < 23
    True

Gray images use their one channel; a colour image is estimated on each channel and the mean is returned (the
Gaussian models here add the same sigma to R, G and B). Values are on the 0-255 scale.
"""

from __future__ import annotations

import numpy as np

PATCH = 7  # patch side: 49 directions per channel, enough for a stable tail of noise-only eigenvalues
MAX_PATCHES = 200_000  # a regular subsample beyond this: the covariance needs far fewer samples than a photo has


def _channel_sigma(channel: np.ndarray, patch: int) -> float:
    windows = np.lib.stride_tricks.sliding_window_view(channel, (patch, patch))  # (h-p+1, w-p+1, p, p)
    step = max(1, int(np.ceil(np.sqrt(windows.shape[0] * windows.shape[1] / MAX_PATCHES))))
    samples = windows[::step, ::step].reshape(-1, patch * patch)
    samples = samples - samples.mean(axis=0)
    covariance = samples.T @ samples / len(samples)
    eigenvalues = np.clip(np.linalg.eigvalsh(covariance), 0, None)  # ascending
    # the longest prefix of the smallest eigenvalues whose mean splits it evenly (mean == median)
    for count in range(len(eigenvalues), 0, -1):
        head = eigenvalues[:count]
        mean = head.mean()
        if np.count_nonzero(head > mean) == np.count_nonzero(head < mean):
            return float(np.sqrt(mean))
    return float(np.sqrt(eigenvalues[0]))


def estimate_sigma(image, *, patch: int = PATCH) -> float:
    """The noise sigma of ``image`` (uint8 / uint16 / float in [0, 1], HxW or HxWxC; alpha is ignored) on the 0-255
    scale. Needs at least ``patch + 1`` pixels per side; raises ValueError otherwise."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an HxW or HxWxC image with C in 1..4, got shape {array.shape}")
    if array.dtype == np.uint8:
        scaled = array.astype(np.float64)
    elif array.dtype == np.uint16:
        scaled = array.astype(np.float64) / 257.0
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("the image holds NaN or infinite values")
        scaled = array.astype(np.float64) * 255.0
    else:
        raise ValueError(f"unsupported dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")
    colour = scaled[:, :, : 3 if scaled.shape[2] >= 3 else 1]  # drop alpha
    if min(colour.shape[:2]) <= patch:
        raise ValueError(
            f"estimating the noise needs an image larger than {patch}x{patch}, got {colour.shape[1]}x{colour.shape[0]}"
        )
    return float(np.mean([_channel_sigma(colour[:, :, c], patch) for c in range(colour.shape[2])]))
