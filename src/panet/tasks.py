"""The one place where the restoration tasks differ.

Each task fixes its image channels, how its metrics are computed (the paper's
MATLAB scripts, release.md section 4.2) and the release's test-time tiling.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    colors: int  # channels the network sees (1 gray, 3 RGB or zero-filled mosaic)
    y_channel: bool  # score the Y of MATLAB rgb2ycbcr
    shave_scale: bool  # crop `scale` pixels on each side before scoring (SR)
    chop_min_size: int  # the release's forward_chop min_size

    def metric_options(self, scale: int = 1) -> dict:
        """Keyword arguments for panet.metrics.psnr / ssim under this task's protocol."""
        return {"y_channel": self.y_channel, "crop_border": scale if self.shave_scale else 0}


TASKS: dict[str, Task] = {
    "sr": Task("sr", "bicubic super-resolution (x2, x3, x4)", 3, y_channel=True, shave_scale=True, chop_min_size=6400),
    "denoise": Task("denoise", "additive white Gaussian noise removal", 3, y_channel=False, shave_scale=False, chop_min_size=6800),
    "car": Task("car", "JPEG compression artifact removal (gray)", 1, y_channel=False, shave_scale=False, chop_min_size=6400),
    "demosaic": Task("demosaic", "demosaicing of a zero-filled Bayer mosaic", 3, y_channel=False, shave_scale=False, chop_min_size=6400),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
