from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from panet.evaluation.metrics import psnr, rgb_to_y, ssim


def images(shape=(40, 36, 3), seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    noise = rng.normal(0, 12, shape)
    b = np.clip(a + noise, 0, 255).round().astype(np.uint8)
    return a, b


def test_psnr_definition_and_border():
    a, b = images()
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse))
    inner = np.mean((a[4:-4, 4:-4].astype(float) - b[4:-4, 4:-4].astype(float)) ** 2)
    assert psnr(a, b, crop_border=4) == pytest.approx(10 * math.log10(255**2 / inner))
    assert psnr(a, a) == math.inf


def test_y_channel_is_matlab_rgb2ycbcr():
    white, black = np.full((1, 1, 3), 255.0), np.zeros((1, 1, 3))
    assert rgb_to_y(white)[0, 0, 0] == pytest.approx(235.0)
    assert rgb_to_y(black)[0, 0, 0] == pytest.approx(16.0)
    a, b = images()
    ya, yb = rgb_to_y(a.astype(float)), rgb_to_y(b.astype(float))
    expected = 10 * math.log10(255**2 / np.mean((ya - yb) ** 2))
    assert psnr(a, b, y_channel=True) == pytest.approx(expected)


def test_tensors_in_0_1_match_uint8():
    a, b = images()
    ta = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].double() / 255
    assert psnr(ta, tb) == pytest.approx(psnr(a, b), rel=1e-6)
    assert ssim(ta, tb, y_channel=True) == pytest.approx(ssim(a, b, y_channel=True), rel=1e-6)


@pytest.mark.parametrize("shape", [(48, 40), (33, 57, 3)])
def test_ssim_matches_scikit_image(shape):
    metrics = pytest.importorskip("skimage.metrics")
    a, b = images(shape, seed=3)
    ours = ssim(a, b)
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    if len(shape) == 3:
        theirs = metrics.structural_similarity(a, b, channel_axis=2, **kwargs)
    else:
        theirs = metrics.structural_similarity(a, b, **kwargs)
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_ssim_of_identical_images_is_one_and_errors():
    a, _ = images()
    assert ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(a, a[:10])
    with pytest.raises(TypeError, match="ambiguous"):
        psnr(a.astype(float), a.astype(float))
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=20)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:8, :8], a[:8, :8])


def test_ssim_uniform8_window_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (12, 10, 1), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    x, y = a[:, :, 0].astype(float), b[:, :, 0].astype(float)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(12 - 7):
        for j in range(10 - 7):
            p, q = x[i : i + 8, j : j + 8], y[i : i + 8, j : j + 8]
            cov = ((p - p.mean()) * (q - q.mean())).mean()
            values.append(
                (2 * p.mean() * q.mean() + c1)
                * (2 * cov + c2)
                / ((p.mean() ** 2 + q.mean() ** 2 + c1) * (p.var() + q.var() + c2))
            )
    assert abs(ssim(a, b, window="uniform8") - np.mean(values)) < 1e-12
    assert ssim(a, a, window="uniform8") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="window"):
        ssim(a, b, window="box")
