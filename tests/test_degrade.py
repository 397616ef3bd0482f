from __future__ import annotations

import numpy as np
import pytest

from panet.data.degrade import bayer_mask, bicubic_lr, gaussian_noise, jpeg, modcrop, mosaic, seed_for
from panet.evaluation.metrics import psnr


def image(shape=(64, 48, 3), seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, shape[0] * shape[1]).reshape(shape[:2])
    img = base[:, :, None] + rng.normal(0, 10, shape) if len(shape) == 3 else base + rng.normal(0, 10, shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def test_noise_is_seeded_and_has_the_right_level():
    img = np.full((200, 200, 3), 128, np.uint8)
    a = gaussian_noise(img, 25, seed=1)
    assert np.array_equal(a, gaussian_noise(img, 25, seed=1))
    assert not np.array_equal(a, gaussian_noise(img, 25, seed=2))
    assert a.dtype == np.uint8
    assert np.std(a.astype(float) - 128) == pytest.approx(25, rel=0.02)
    raw = gaussian_noise(img, 25, seed=1, clip=False, quantize=False)
    assert raw.dtype == np.float64 and np.array_equal(np.floor(np.clip(raw, 0, 255) + 0.5).astype(np.uint8), a)
    assert seed_for("kodim01.png") == seed_for("kodim01.png") != seed_for("kodim02.png")


def test_jpeg_gray_and_colour():
    gray = image((64, 48))
    low, high = jpeg(gray, 10), jpeg(gray, 90)
    assert low.shape == gray.shape and low.dtype == np.uint8
    assert psnr(gray, low) < psnr(gray, high)
    assert np.array_equal(jpeg(gray, 10), low)  # deterministic
    colour = image()
    assert jpeg(colour, 20).shape == colour.shape
    assert jpeg(gray[:, :, None], 30).shape == (64, 48, 1)


def test_mosaic_patterns():
    img = image()
    m = mosaic(img)
    assert m.shape == img.shape
    assert m[0, 0].tolist() == [0, img[0, 0, 1], 0]  # G
    assert m[0, 1].tolist() == [img[0, 1, 0], 0, 0]  # R
    assert m[1, 0].tolist() == [0, 0, img[1, 0, 2]]  # B
    for pattern in ("RGGB", "GBRG", "BGGR", "grbg"):
        mask = bayer_mask(4, 4, pattern)
        assert mask.sum(2).max() == 1 and mask[:, :, 1].sum() == 8
    with pytest.raises(ValueError):
        bayer_mask(2, 2, "RRGB")


def test_bicubic_lr_crops_to_a_multiple_of_the_scale():
    hr = image((65, 50, 3))
    cropped, lr = bicubic_lr(hr, 3)
    assert cropped.shape == (63, 48, 3) and lr.shape == (21, 16, 3)
    with pytest.raises(ValueError):
        modcrop(hr[:2], 3)


def test_bad_inputs():
    with pytest.raises(TypeError):
        gaussian_noise(np.zeros((4, 4), np.float32), 10, seed=0)
    with pytest.raises(ValueError):
        jpeg(image(), 0)
    with pytest.raises(ValueError):
        mosaic(image((8, 8)))


def _residual_stats(noisy: np.ndarray, clean: np.ndarray) -> tuple[float, float, float]:
    """(std, correlation with the right-hand neighbour, correlation between the R and B residuals)."""
    r = noisy.astype(np.float64) - clean.astype(np.float64)
    horizontal = np.corrcoef(r[:, :-1, 1].ravel(), r[:, 1:, 1].ravel())[0, 1]
    channels = np.corrcoef(r[:, :, 0].ravel(), r[:, :, 2].ravel())[0, 1]
    return float(r.std()), float(horizontal), float(channels)


def test_camera_noise_is_seeded_correlated_and_scales_with_sigma():
    from panet.data.degrade import camera_noise

    clean = np.full((128, 128, 3), 120, np.uint8)
    a, b = camera_noise(clean, 20, seed=1), camera_noise(clean, 20, seed=1)
    assert a.dtype == np.uint8 and a.shape == clean.shape and np.array_equal(a, b)
    assert not np.array_equal(a, camera_noise(clean, 20, seed=2))
    weak, strong = (camera_noise(clean, s, seed=3, jpeg_probability=0) for s in (5, 30))
    assert 2.0 < _residual_stats(weak, clean)[0] < _residual_stats(strong, clean)[0]
    # demosaicing spreads each sensor sample's noise over its neighbours and channels; white noise has neither
    _, horizontal, channels = _residual_stats(strong, clean)
    _, white_h, white_c = _residual_stats(gaussian_noise(clean, 20, seed=3), clean)
    assert horizontal > 0.2 and channels > 0.06 and abs(white_h) < 0.04 and abs(white_c) < 0.04
    assert np.array_equal(camera_noise(clean, 0, seed=4, jpeg_probability=0), clean)


def test_camera_noise_is_a_noise_model_of_denoising_only():
    from panet.data.degrade import camera_noise
    from panet.tasks import get_task

    clean = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    noisy, target = get_task("denoise").make_pair(clean, 25, seed=5, noise="camera")
    assert np.array_equal(noisy, camera_noise(clean, 25, seed=5)) and np.array_equal(target, clean)
    with pytest.raises(ValueError, match="noise model"):
        get_task("car").make_pair(clean, 10, seed=5, noise="camera")
    with pytest.raises(ValueError, match="RGB"):
        camera_noise(clean[:, :, :1], 10, seed=0)
    with pytest.raises(ValueError, match="sigma"):
        camera_noise(clean, float("nan"), seed=0)
