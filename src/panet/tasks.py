"""The one place where the restoration tasks differ.

Each task fixes its image channels, how its metrics are computed (the paper's
MATLAB scripts, release.md section 4.2) and the release's test-time tiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UnknownNameError


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    colors: int  # channels the network sees (1 gray, 3 RGB or zero-filled mosaic)
    y_channel: bool  # score the Y of MATLAB rgb2ycbcr
    shave_scale: bool  # crop `scale` pixels on each side before scoring (SR)
    chop_min_size: int  # the release's forward_chop min_size
    references: tuple[str, ...] = ("identity",)  # classical baselines to compare against, best first
    # Pixels of reflection added on each side of the network's input and cropped off its output. A
    # demosaicer trained on even-sized patches has only seen mosaics that end on a B-G row and an R-G
    # column; an odd-sized image ends on the other phase, and its last row and column came out up to
    # 5 dB worse (CBSD68, 481x321). A reflection keeps the Bayer phase (pixel -k mirrors pixel k), so
    # the real edges become interior pixels.
    input_pad: int = 0

    def metric_options(self, scale: int = 1) -> dict:
        """Keyword arguments for panet.metrics.psnr / ssim under this task's protocol."""
        return {"y_channel": self.y_channel, "crop_border": scale if self.shave_scale else 0}

    def check_level(self, level: float | None) -> float:
        """Validate the degradation level: SR scale, noise sigma (0-255), JPEG quality; demosaicing has none."""
        if self.name == "demosaic":
            return 0
        if level is None:
            raise ValueError(f"task {self.name!r} needs a level ({LEVEL_NAMES[self.name]})")
        if self.name == "sr" and level not in (2, 3, 4):
            raise ValueError(f"SR scale must be 2, 3 or 4, got {level}")
        if self.name == "denoise" and not 0 <= level <= 255:
            raise ValueError(f"noise sigma must be in 0..255 (0-255 scale), got {level}")
        if self.name == "car" and not (1 <= level <= 100 and float(level).is_integer()):
            raise ValueError(f"JPEG quality must be an integer in 1..100, got {level}")
        return level

    def make_pair(self, target: np.ndarray, level: float | None, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(degraded input, ground truth) from a uint8 HxWxC ground-truth image, deterministically.

        * sr: the HR image cropped to a multiple of the scale and its MATLAB-bicubic LR;
        * denoise: AWGN of ``sigma`` (0-255 scale), clipped and quantised to 8 bit;
        * car: JPEG at quality ``q`` of the gray image (RGB images are turned into
          the Y of MATLAB rgb2ycbcr, rounded, as in the JPEG-deblocking literature);
        * demosaic: the 3-channel zero-filled GRBG mosaic.
        """
        from . import degrade

        level = self.check_level(level)
        if target.ndim == 2:
            target = target[:, :, None]
        if self.name == "sr":
            hr, lr = degrade.bicubic_lr(target, int(level))
            return lr, hr
        if self.name == "denoise":
            return degrade.gaussian_noise(target, float(level), seed=seed), target
        if self.name == "car":
            gray = to_gray_y(target)
            return degrade.jpeg(gray, int(level)), gray
        if target.shape[2] != 3:
            raise ValueError("demosaicing needs RGB images")
        return degrade.mosaic(target), target


# The level argument of each task, as the command line names it.
LEVEL_NAMES = {"sr": "--scale 2|3|4", "denoise": "--sigma (0-255 scale)", "car": "--quality 1..100", "demosaic": "none"}


def to_gray_y(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx1 gray image: gray stays; RGB becomes the rounded Y of MATLAB rgb2ycbcr (16-235)."""
    if img.ndim == 2:
        return img[:, :, None]
    if img.shape[2] == 1:
        return img
    from .metrics import rgb_to_y

    return np.floor(rgb_to_y(img.astype(np.float64)) + 0.5).astype(np.uint8)


TASKS: dict[str, Task] = {
    "sr": Task(
        "sr",
        "bicubic super-resolution (x2, x3, x4)",
        3,
        y_channel=True,
        shave_scale=True,
        chop_min_size=6400,
        references=("bicubic",),
    ),
    "denoise": Task(
        "denoise",
        "additive white Gaussian noise removal",
        3,
        y_channel=False,
        shave_scale=False,
        chop_min_size=6800,
        references=("bm3d", "identity"),
    ),
    "car": Task(
        "car", "JPEG compression artifact removal (gray)", 1, y_channel=False, shave_scale=False, chop_min_size=6400
    ),
    "demosaic": Task(
        "demosaic",
        "demosaicing of a zero-filled Bayer mosaic",
        3,
        y_channel=False,
        shave_scale=False,
        chop_min_size=6400,
        references=("menon", "identity"),
        input_pad=4,
    ),
}


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name`` (sr, denoise, car, demosaic); UnknownNameError lists the names."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownNameError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
