"""panet.estimate_sigma (patch-PCA noise level) and `--sigma auto`."""

from __future__ import annotations

import numpy as np
import pytest

import panet
from panet.apps.cli import main
from panet.data.images import write_image


def smooth_photo(size: int = 96) -> np.ndarray:
    """A smooth colour image kept within 60..190, so that noise up to sigma 25 is hardly clipped."""
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [60 + 130 * (0.5 + 0.5 * np.sin(3 * x + k) * np.cos(2 * y - k)) for k in range(3)]
    return np.stack(channels, axis=2)


@pytest.mark.parametrize("sigma", [5, 10, 25])
def test_the_estimate_finds_the_added_noise(sigma):
    rng = np.random.default_rng(sigma)
    clean = smooth_photo()
    noisy = np.clip(np.round(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)
    assert panet.estimate_sigma(noisy) == pytest.approx(sigma, abs=0.1 * sigma + 0.5)
    assert panet.estimate_sigma(clean.astype(np.uint8)) < 1  # a smooth image reads as (almost) noise-free


def test_every_image_kind_gives_the_same_estimate():
    rng = np.random.default_rng(0)
    noisy = np.clip(np.round(smooth_photo() + rng.normal(0, 15, (96, 96, 3))), 0, 255).astype(np.uint8)
    reference = panet.estimate_sigma(noisy)
    assert panet.estimate_sigma(noisy.astype(np.float32) / 255) == pytest.approx(reference, rel=1e-5)
    assert panet.estimate_sigma(noisy.astype(np.uint16) * 257) == pytest.approx(reference, rel=1e-5)
    alpha = np.concatenate([noisy, np.full((96, 96, 1), 255, np.uint8)], axis=2)
    assert panet.estimate_sigma(alpha) == pytest.approx(reference)  # alpha is ignored
    gray = noisy[:, :, 0]
    assert panet.estimate_sigma(gray) == pytest.approx(panet.estimate_sigma(gray[:, :, None]))


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="larger than 7x7"):
        panet.estimate_sigma(np.zeros((5, 40), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        panet.estimate_sigma(np.full((20, 20), np.nan, np.float32))
    with pytest.raises(ValueError, match="unsupported dtype"):
        panet.estimate_sigma(np.zeros((20, 20), np.int64))


def test_sigma_auto_on_the_command_line_and_in_the_api(tmp_path, capsys):
    rng = np.random.default_rng(1)
    noisy = np.clip(np.round(smooth_photo(48) + rng.normal(0, 20, (48, 48, 3))), 0, 255).astype(np.uint8)
    write_image(tmp_path / "noisy.png", noisy)
    out = tmp_path / "out.png"
    assert main(["restore", str(tmp_path / "noisy.png"), "-o", str(out), "--task", "denoise", "--sigma", "auto"]) == 0
    err = capsys.readouterr().err
    assert "estimated noise sigma" in err and out.exists()
    estimate = float(err.split("estimated noise sigma ")[1].split()[0])
    assert abs(estimate - 20) < 4
    assert main(["restore", str(tmp_path / "noisy.png"), "-o", str(out), "--task", "sr", "--sigma", "auto"]) == 2
    assert "--sigma does not apply to --task sr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--task", "denoise", "--sigma", "auto", "--sets", "Set12"])  # eval adds noise: a number
    restored = panet.restore(noisy, task="denoise", sigma="auto")
    assert restored.shape == noisy.shape and restored.dtype == np.uint8
    with pytest.raises(ValueError, match="must be a number"):
        panet.restore(noisy, task="denoise", sigma="loud")
