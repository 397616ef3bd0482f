"""The one place where the restoration tasks differ.

Each task fixes its image channels, how its metrics are computed (the paper's
MATLAB scripts, release.md section 4.2) and the release's test-time tiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from panet.errors import UnknownNameError

Score = float | tuple[float, float]  # PSNR, or (PSNR, SSIM)


@dataclass(frozen=True)
class Benchmark:
    """One group of the paper's evaluation (release.md sections 4.3 and 5): benchmark sets scored at levels, the
    classical baselines compared there, and the paper's numbers where its tables give them."""

    sets: tuple[str, ...]
    levels: tuple[float | None, ...]  # None: the task has no level (demosaicing)
    colors: int  # the sets' channels: 1 for the gray sets that gray networks are scored on
    baselines: tuple[str, ...]
    # (method, set, level, score): method "panet" (PANet / PA-EDSR) or a baseline's name
    paper: tuple[tuple[str, str, float | None, Score], ...] = ()
    # the task's noise model these rows degrade with ("camera"; None: its standard degradation): weights trained
    # on a noise model are scored on its rows only, the others on the standard ones
    noise: str | None = None

    def paper_score(self, method: str, set_name: str, level: float | None) -> Score | None:
        """The paper's number for ``method`` on ``set_name`` at ``level``, or None where its tables have none."""
        for m, s, lv, score in self.paper:
            if (m, s, lv) == (method, set_name, level):
                return score
        return None


def _scores(method: str, set_name: str, levels, scores) -> tuple[tuple[str, str, float | None, Score], ...]:
    return tuple((method, set_name, level, score) for level, score in zip(levels, scores, strict=True))


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
    identity_label: str = "input"  # what the degraded input is called as a baseline ("noisy input", "JPEG")
    # noise models besides the task's standard degradation (make_pair's ``noise``): "camera" is signal-dependent,
    # demosaiced and sometimes JPEG-compressed noise like a real photo's (panet.data.degrade.camera_noise)
    noise_models: tuple[str, ...] = ()
    benchmarks: tuple[Benchmark, ...] = ()  # the paper's evaluation of this task

    def paper_score(self, method: str, set_name: str, level: float | None) -> Score | None:
        """The paper's number for ``method`` ("panet" or a baseline) on ``set_name`` at ``level``, or None."""
        for benchmark in self.benchmarks:
            score = benchmark.paper_score(method, set_name, level)
            if score is not None:
                return score
        return None

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
        """Keyword arguments for panet.evaluation.metrics.psnr / ssim under this task's protocol."""
        return {"y_channel": self.y_channel, "crop_border": scale if self.shave_scale else 0}

    def image_colors(self, colors: int | None) -> int | None:
        """Channels to read this task's images with, given the network's (None: as stored, where any will do)."""
        return colors if self.any_colors else self.colors

    def scores_rgb(self, colors: int | None) -> bool:
        """Whether rows for ``colors`` channels of a luma task are scored in RGB (a colour network's, and the
        baselines beside it), not on the luma the paper scores: their records are named apart."""
        return self.luma and colors == 3

    def on_luma(self, colors: int | None) -> bool:
        """Whether a network with ``colors`` channels (None: unknown, e.g. a baseline) works on the luma of colour
        images: a luma task's gray networks do (and its benchmarks score the Y), its colour networks do not."""
        return self.luma and colors != 3

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

    def make_pair(
        self, target: np.ndarray, level: float | None, *, seed: int = 0, noise: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(degraded input, ground truth) from a uint8 HxWxC ground-truth image, deterministically.

        * sr: the HR image cropped to a multiple of the scale and its MATLAB-bicubic LR;
        * denoise: AWGN of ``sigma`` (0-255 scale), clipped and quantised to 8 bit;
        * car: JPEG at quality ``q`` of the image as given (callers give a gray network the Y of MATLAB
          rgb2ycbcr, rounded, as in the JPEG-deblocking literature: :meth:`on_luma`);
        * demosaic: the 3-channel zero-filled GRBG mosaic.

        ``noise`` picks one of the task's ``noise_models`` instead of its standard degradation (None).
        """
        from panet.data import degrade

        if noise is not None and noise not in self.noise_models:
            raise ValueError(
                f"task {self.name!r} has no noise model {noise!r}"
                + (f"; choose from {', '.join(self.noise_models)}" if self.noise_models else "")
            )
        level = self.check_level(level)
        if target.ndim == 2:
            target = target[:, :, None]
        if self.name == "sr":
            hr, lr = degrade.bicubic_lr(target, int(level))
            return lr, hr
        if self.name == "denoise":
            if noise == "camera":
                return degrade.camera_noise(target, float(level), seed=seed), target
            return degrade.gaussian_noise(target, float(level), seed=seed), target
        if self.name == "car":  # gray (a luma network's Y) or colour, as given; colour JPEG subsamples chroma 4:2:0
            return degrade.jpeg(target, int(level)), target
        if target.shape[2] != 3:
            raise ValueError("demosaicing needs RGB images")
        return degrade.mosaic(target), target


def to_gray_y(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx1 gray image: gray stays; RGB becomes the rounded Y of MATLAB rgb2ycbcr (16-235)."""
    if img.ndim == 2:
        return img[:, :, None]
    if img.shape[2] == 1:
        return img
    from panet.evaluation.metrics import rgb_to_y

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
        benchmarks=(
            Benchmark(
                ("Set5", "Set14", "B100"),
                (2, 3, 4),
                3,
                ("bicubic",),
                paper=_scores("panet", "Set5", (2, 3, 4), ((38.33, 0.9617), (34.84, 0.9306), (32.65, 0.9006)))
                + _scores("panet", "Set14", (2, 3, 4), ((34.22, 0.9224), (30.71, 0.8488), (28.87, 0.7891)))
                + _scores("panet", "B100", (2, 3, 4), ((32.42, 0.9027), (29.33, 0.8119), (27.76, 0.7445))),
            ),
        ),
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
        identity_label="noisy input",
        noise_models=("camera",),
        benchmarks=(
            Benchmark(
                ("Kodak24", "CBSD68"),
                (10, 30, 50, 70),
                3,
                ("identity", "bm3d"),
                paper=_scores("panet", "Kodak24", (10, 30, 50, 70), (37.35, 31.96, 29.65, 28.20))
                + _scores("panet", "CBSD68", (10, 30, 50, 70), (36.50, 30.70, 28.33, 26.89))
                + _scores("bm3d", "Kodak24", (10, 30, 50, 70), (36.57, 30.89, 28.63, 27.27))
                + _scores("bm3d", "CBSD68", (10, 30, 50, 70), (35.91, 29.73, 27.38, 26.00)),
            ),
            Benchmark(("Set12", "BSD68"), (15, 25, 50), 1, ("identity", "bm3d")),
            # not the paper's: camera-like noise of sensor strength 10-30 (panet.data.degrade.camera_noise), for
            # the camera-noise denoiser; no classical baseline is scored on it yet
            Benchmark(("Kodak24", "CBSD68"), (10, 20, 30), 3, (), noise="camera"),
        ),
    ),
    "car": Task(
        "car",
        "JPEG compression artifact removal",
        1,
        y_channel=False,
        shave_scale=False,
        chop_min_size=6400,
        label="JPEG artifacts",
        level_name="quality",
        level_title="JPEG quality",
        level_symbol="q",
        level_range=(1, 100),
        integer_level=True,
        default_level=10,
        luma=True,
        any_colors=True,  # gray networks restore the luma (the paper's protocol); colour ones all three channels
        identity_label="JPEG",
        benchmarks=(
            Benchmark(
                ("LIVE1", "Classic5"),
                (10, 20, 30, 40),
                1,
                ("identity",),
                paper=_scores(
                    "panet",
                    "LIVE1",
                    (10, 20, 30, 40),
                    ((29.69, 0.8250), (32.10, 0.8885), (33.55, 0.9157), (34.55, 0.9305)),
                )
                + _scores(
                    "panet",
                    "Classic5",
                    (10, 20, 30, 40),
                    ((30.03, 0.8195), (32.36, 0.8712), (33.53, 0.8939), (34.38, 0.9068)),
                )
                + _scores(
                    "identity",
                    "LIVE1",
                    (10, 20, 30, 40),
                    ((27.77, 0.7905), (30.07, 0.8683), (31.41, 0.9000), (32.35, 0.9173)),
                )
                + _scores(
                    "identity",
                    "Classic5",
                    (10, 20, 30, 40),
                    ((27.82, 0.7800), (30.12, 0.8541), (31.48, 0.8844), (32.43, 0.9011)),
                ),
            ),
            # not the paper's: colour JPEGs (chroma subsampled 4:2:0) scored in RGB, for colour networks, beside
            # the colour JPEG itself
            Benchmark(("LIVE1",), (10, 20, 30, 40), 3, ("identity",)),
        ),
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
        identity_label="mosaiced input",
        benchmarks=(
            Benchmark(
                ("McMaster", "Kodak24", "CBSD68"),
                (None,),
                3,
                ("identity", "menon", "malvar"),
                paper=(
                    ("panet", "McMaster", None, (40.00, 0.9737)),
                    ("panet", "Kodak24", None, (43.29, 0.9905)),
                    ("panet", "CBSD68", None, (42.86, 0.9933)),
                    ("identity", "McMaster", None, (9.17, 0.1674)),
                    ("identity", "Kodak24", None, (8.56, 0.0682)),
                    ("identity", "CBSD68", None, (8.43, 0.0850)),
                ),
            ),
        ),
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
