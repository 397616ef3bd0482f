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


# sRGB's transfer curve (IEC 61966-2-1), to take an 8-bit photo back to linear sensor values and forth
def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def _bilinear_demosaic(raw: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HxWx3 from a zero-filled HxWx3 mosaic: each missing sample is the mean of the kept ones in its 3x3
    neighbourhood (reflected at the borders)."""
    out = np.empty_like(raw)
    for c in range(3):
        values = np.pad(raw[:, :, c] * mask[:, :, c], 1, mode="reflect")
        counts = np.pad(mask[:, :, c].astype(raw.dtype), 1, mode="reflect")
        h, w = raw.shape[:2]
        total = sum(values[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
        number = sum(counts[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
        out[:, :, c] = np.where(mask[:, :, c], raw[:, :, c], total / np.maximum(number, 1))
    return out


# A typical camera's colour matrix (camera RGB -> linear sRGB; rows sum to 1, so grey stays grey): it mixes the
# sensor's per-channel noise into every output channel, as a camera's processing does.
_CAMERA_TO_SRGB = np.array([[1.70, -0.60, -0.10], [-0.20, 1.50, -0.30], [0.05, -0.55, 1.50]])


def camera_noise(img: np.ndarray, sigma: float, *, seed: int, jpeg_probability: float = 0.5) -> np.ndarray:
    """Noise like a camera's, for training a denoiser of real photos: signal-dependent, correlated, compressed.

    The noise is made where a camera makes it: the 8-bit RGB image goes back to linear light (inverse sRGB curve)
    and to the sensor's colours (inverse of a typical colour matrix); each site of a GRBG Bayer sensor gets
    Poisson-Gaussian noise (variance ``a * x + b^2`` for the site's value x; the share of shot noise drawn at random
    per image). That noise is demosaiced bilinearly (correlating neighbouring pixels), mixed by the colour matrix
    (correlating the channels) and added to the linear image, which goes through the sRGB curve again and, with
    probability ``jpeg_probability``, through JPEG at a quality in 70..95. The image content itself is not
    demosaiced, so the only difference from ``img`` is the noise (and JPEG). ``sigma`` sets the strength: the
    standard deviation of a sensor site's noise at mid-grey, on the 0-255 scale of the output. Deterministic for a
    given seed.
    """
    img = _check_uint8(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"camera noise needs an RGB image (HxWx3), got shape {img.shape}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    rng = np.random.default_rng(seed)
    linear = _srgb_to_linear(img.astype(np.float64) / 255.0)
    sensor = np.clip(linear @ np.linalg.inv(_CAMERA_TO_SRGB).T, 0.0, None)
    mid = float(_srgb_to_linear(np.array(0.5)))
    slope = float((_linear_to_srgb(np.array(mid + 1e-4)) - _linear_to_srgb(np.array(mid))) / 1e-4)
    variance = (sigma / 255.0 / slope) ** 2  # at mid-grey, in linear units
    shot = rng.uniform(0.2, 0.9)
    a, b2 = shot * variance / mid, (1 - shot) * variance
    mask = bayer_mask(img.shape[0], img.shape[1], "GRBG")
    sites = rng.normal(0.0, 1.0, linear.shape) * np.sqrt(a * sensor + b2) * mask
    noise = _bilinear_demosaic(sites, mask) @ _CAMERA_TO_SRGB.T
    noisy = np.floor(_linear_to_srgb(linear + noise) * 255.0 + 0.5).astype(np.uint8)
    if rng.uniform() < jpeg_probability:
        noisy = jpeg(noisy, int(rng.integers(70, 96)))
    return noisy
