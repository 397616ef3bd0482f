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
    label: str = ""  # a short name for people (the web page's task menu)
    references: tuple[str, ...] = ("identity",)  # classical baselines to compare against, best first
    baselines: tuple[str, ...] = ("identity",)  # every classical baseline that applies (panet eval --baseline)
    # Pixels of reflection added on each side of the network's input and cropped off its output. A
    # demosaicer trained on even-sized patches has only seen mosaics that end on a B-G row and an R-G
    # column; an odd-sized image ends on the other phase, and its last row and column came out up to
    # 5 dB worse (CBSD68, 481x321). A reflection keeps the Bayer phase (pixel -k mirrors pixel k), so
    # the real edges become interior pixels.
    input_pad: int = 0
    # The degradation level: its keyword (``panet.restore(scale=...)``, ``--scale``, ``?scale=`` on the web page),
    # None for a task without one; what it is called in messages, how it is written beside a number, the values
    # it may take (choices, else an inclusive range), whether it is an integer, and the web page's default.
    level_name: str | None = None
    level_title: str = ""
    level_symbol: str = ""
    level_choices: tuple[int, ...] = ()
    level_range: tuple[float, float] = (0.0, 0.0)
    integer_level: bool = False
    default_level: float | None = None
    upscales: bool = False  # the level is the output's scale factor (SR)
    level_estimable: bool = False  # the level can be measured from the image (``--sigma auto``: estimate_sigma)
    any_colors: bool = False  # gray and colour networks both exist; otherwise images are read with ``colors``
    luma: bool = False  # works on the luma: colour ground truth becomes Y, a colour image restores Y, keeps chroma
    mosaic: bool = False  # the input is a Bayer mosaic (no flips: the x8 ensemble would change the phase)

    @property
    def level_rule(self) -> str:
        """The values the level may take, in words: '2, 3 or 4', 'in 0..255 (0-255 scale)', 'an integer in 1..100'."""
        if self.level_choices:
            *rest, last = (str(c) for c in self.level_choices)
            return f"{', '.join(rest)} or {last}"
        low, high = (f"{v:g}" for v in self.level_range)
        return f"an integer in {low}..{high}" if self.integer_level else f"in {low}..{high} ({low}-{high} scale)"

    @property
    def level_flag(self) -> str:
        """How the command line asks for the level: '--scale 2|3|4', '--sigma (0-255 scale)', ..., or 'none'."""
        if self.level_name is None:
            return "none"
        if self.level_choices:
            return f"--{self.level_name} {'|'.join(map(str, self.level_choices))}"
        low, high = (f"{v:g}" for v in self.level_range)
        return (
            f"--{self.level_name} {low}..{high}" if self.integer_level else f"--{self.level_name} ({low}-{high} scale)"
        )

    def format_level(self, low: float | None, high: float | None = None) -> str:
        """A level or a trained range as documents write it: 'x2', 'σ 25', 'σ 0..75', 'q 10'; '-' for none."""
        if low is None or self.level_name is None:
            return "-"
        if self.upscales:
            return f"x{low:g}"
        if high is None or high == low:
            return f"{self.level_symbol} {low:g}"
        return f"{self.level_symbol} {low:g}..{high:g}"

    def metric_options(self, scale: int = 1) -> dict:
        """Keyword arguments for panet.metrics.psnr / ssim under this task's protocol."""
        return {"y_channel": self.y_channel, "crop_border": scale if self.shave_scale else 0}

    def image_colors(self, colors: int | None) -> int | None:
        """Channels to read this task's images with, given the network's (None: as stored, where any will do)."""
        return colors if self.any_colors else self.colors

    def check_level(self, level: float | None) -> float:
        """Validate the degradation level: SR scale, noise sigma (0-255), JPEG quality; demosaicing has none."""
        if self.level_name is None:
            return 0
        if level is None:
            raise ValueError(f"task {self.name!r} needs a level ({self.level_flag})")
        if self.level_choices:
            allowed = level in self.level_choices
        else:
            low, high = self.level_range
            allowed = low <= level <= high and (not self.integer_level or float(level).is_integer())
        if not allowed:
            raise ValueError(f"{self.level_title} must be {self.level_rule}, got {level}")
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
        label="super-resolution",
        references=("bicubic",),
        baselines=("bicubic",),
        level_name="scale",
        level_title="SR scale",
        level_symbol="x",
        level_choices=(2, 3, 4),
        integer_level=True,
        default_level=2,
        upscales=True,
    ),
    "denoise": Task(
        "denoise",
        "additive white Gaussian noise removal",
        3,
        y_channel=False,
        shave_scale=False,
        chop_min_size=6800,
        label="denoising",
        references=("bm3d", "identity"),
        baselines=("bm3d", "identity"),
        level_name="sigma",
        level_title="noise sigma",
        level_estimable=True,
        level_symbol="σ",
        level_range=(0, 255),
        default_level=25,
        any_colors=True,
    ),
    "car": Task(
        "car",
        "JPEG compression artifact removal (gray)",
        1,
        y_channel=False,
        shave_scale=False,
        chop_min_size=6400,
        label="JPEG artifacts (gray)",
        level_name="quality",
        level_title="JPEG quality",
        level_symbol="q",
        level_range=(1, 100),
        integer_level=True,
        default_level=10,
        luma=True,
    ),
    "demosaic": Task(
        "demosaic",
        "demosaicing of a zero-filled Bayer mosaic",
        3,
        y_channel=False,
        shave_scale=False,
        chop_min_size=6400,
        label="demosaicing (GRBG mosaic)",
        references=("menon", "identity"),
        baselines=("menon", "malvar", "identity"),
        input_pad=4,
        mosaic=True,
    ),
}


def level_names() -> list[str]:
    """The level keywords of all tasks (scale, sigma, quality), in table order."""
    return [t.level_name for t in TASKS.values() if t.level_name]


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name`` (sr, denoise, car, demosaic); UnknownNameError lists the names."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownNameError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
