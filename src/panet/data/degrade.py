"""Degradations, seeded and deterministic: noise, JPEG, Bayer mosaic, bicubic downscaling.

All functions take uint8 numpy images (HxW or HxWxC) and return new arrays; a
given seed always gives the same result.

Example:
    >>> import numpy as np
    >>> from panet.data.degrade import gaussian_noise, mosaic
    >>> img = np.full((4, 4, 3), 128, np.uint8)
    >>> gaussian_noise(img, 25, seed=0).dtype
    dtype('uint8')
    >>> mosaic(img)[0, 0].tolist()  # GRBG: green at the top-left
    [0, 128, 0]
"""

from __future__ import annotations

import io
import zlib

import numpy as np

from panet.data.matlab_resize import imresize

BAYER_PATTERNS = ("GRBG", "RGGB", "GBRG", "BGGR")
_CHANNEL = {"R": 0, "G": 1, "B": 2}


def seed_for(name: str, base: int = 0) -> int:
    """A stable per-image seed (the same on every machine and Python version)."""
    return (zlib.crc32(name.encode("utf-8")) + 1_000_003 * base) % 2**32


def _check_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise TypeError(f"expected a uint8 HxW or HxWxC image, got {img.dtype} with shape {img.shape}")
    return img


def gaussian_noise(img: np.ndarray, sigma: float, *, seed: int, clip: bool = True, quantize: bool = True) -> np.ndarray:
    """Additive white Gaussian noise with standard deviation ``sigma`` on the 0-255 scale.

    ``clip`` and ``quantize`` (the default) give what a noisy 8-bit PNG holds, as
    the release's stored test inputs did; with ``quantize=False`` the result is
    float64 on the 0-255 scale.
    """
    img = _check_uint8(img)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noisy = img.astype(np.float64) + np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    if clip or quantize:
        noisy = np.clip(noisy, 0, 255)
    if quantize:
        return np.floor(noisy + 0.5).astype(np.uint8)
    return noisy


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode with Pillow's JPEG at ``quality`` (1-95 useful) and decode again.

    Gray images (HxW or HxWx1) are coded as gray, as in the paper; colour as RGB
    with Pillow's default 4:2:0 chroma subsampling.
    """
    from PIL import Image

    img = _check_uint8(img)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    gray = img.ndim == 2 or img.shape[2] == 1
    pil = Image.fromarray(img.reshape(img.shape[:2]) if gray else img, mode="L" if gray else "RGB")
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.array(decoded.convert("L" if gray else "RGB"))
    return out.reshape(img.shape)


def bayer_mask(height: int, width: int, pattern: str = "GRBG") -> np.ndarray:
    """HxWx3 boolean mask of the samples a Bayer sensor keeps; ``pattern`` reads the top-left 2x2 row by row."""
    pattern = pattern.upper()
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; choose from {', '.join(BAYER_PATTERNS)}")
    mask = np.zeros((height, width, 3), dtype=bool)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        mask[dy::2, dx::2, _CHANNEL[colour]] = True
    return mask


def mosaic(img: np.ndarray, pattern: str = "GRBG") -> np.ndarray:
    """The 3-channel zero-filled Bayer mosaic the release's demosaicing network takes (GRBG by default)."""
    img = _check_uint8(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"mosaic needs an RGB image, got shape {img.shape}")
    return np.where(bayer_mask(img.shape[0], img.shape[1], pattern), img, 0).astype(np.uint8)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom / right so that height and width are multiples of ``scale``."""
    h, w = img.shape[:2]
    if h < scale or w < scale:
        raise ValueError(f"a {h}x{w} image is smaller than the scale {scale}")
    return img[: h - h % scale, : w - w % scale]


def bicubic_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The SR benchmark pair: (HR cropped to a multiple of ``scale``, its MATLAB-bicubic LR)."""
    hr = modcrop(_check_uint8(hr), int(scale))
    return hr, imresize(hr, 1 / int(scale))
