"""Image folders, benchmark sets by name, and (degraded, target) pairs.

* :func:`find_set` locates a benchmark or training set under a data root
  (``--data-root`` or ``$PANET_DATA``) in the common layouts.
* :class:`TrainPairs` makes random training patches on the fly. Item ``i`` is a
  pure function of ``(seed, i)``, so runs are reproducible with any number of
  DataLoader workers or processes, and a resumed run sees the same data.
* :class:`EvalPairs` gives whole images with deterministic degradations
  (per-image seeds), so two evaluations give identical numbers.

Example:
    >>> from panet.data.datasets import TrainPairs
    >>> pairs = TrainPairs(["../shared/data/train/BSD400"], task="denoise", level=25,
    ...                    patch_size=48, colors=1)                      # doctest: +SKIP
    >>> x, y = pairs[0]                                                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from panet.data.degrade import seed_for
from panet.data.images import IMAGE_SUFFIXES, read_image
from panet.tasks import get_task, to_gray_y

DATA_ENV = "PANET_DATA"
_DIV2K = {"DIV2K": "DIV2K_train_HR", "DIV2K_train": "DIV2K_train_HR", "DIV2K_valid": "DIV2K_valid_HR"}


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    root = root or os.environ.get(DATA_ENV)
    return Path(root) if root else None


def set_candidates(name: str, root: Path) -> list[Path]:
    """Where a set may live under a data root, in the order they are tried."""
    candidates = [
        root / "benchmarks" / name,  # this project's shared layout
        root / "train" / name,
        root / "benchmark" / name / "HR",  # EDSR's benchmark.tar
        root / name / "HR",
        root / name,
    ]
    sub = _DIV2K.get(name)
    if sub:
        candidates += [root / "DIV2K" / sub, root / sub]
    return candidates


def find_set(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of a named set (Set5, BSD68, T91, DIV2K_train, ...), or an error saying where it looked."""
    base = data_root(root)
    if base is None:
        raise FileNotFoundError(f"set {name!r}: no data root (pass --data-root or set ${DATA_ENV})")
    looked = set_candidates(name, base)
    for path in looked:
        if path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            return path
    raise FileNotFoundError(f"set {name!r} not found; looked in: {', '.join(str(p) for p in looked)}")


def _image_size(path: Path) -> tuple[int, int]:
    """Width and height from the header (no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None


def check_downscale(factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"downscale must be a whole number >= 1, got {factor!r}")
    return factor


def shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` made ``factor`` times smaller (MATLAB bicubic, antialiased; 1: unchanged). JPEG photos store their
    colour at half resolution (4:2:0); a 2x smaller copy has colour as sharp as its luma, as demosaicing needs."""
    if check_downscale(factor) == 1:
        return image
    from panet.data.matlab_resize import imresize

    return imresize(image, 1 / factor)


class ImageCache:
    """Decoded uint8 images, read once per process (DataLoader workers each keep their own), ``downscale`` times
    smaller than stored (:func:`shrink`)."""

    def __init__(self, files: Sequence[Path], colors: int | None, downscale: int = 1):
        self.files = list(files)
        self.colors = colors
        self.downscale = downscale
        self._images: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        image = self._images.get(index)
        if image is None:
            image = shrink(read_image(self.files[index], colors=self.colors), self.downscale)
            self._images[index] = image
        return image


def _augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random horizontal flip, vertical flip and transpose (each p = 0.5) on every array."""
    hflip, vflip, transpose = rng.random(3) < 0.5
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        if transpose:
            a = a.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(a))
    return out


def to_chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255)


@dataclass
class Level:
    """A fixed degradation level, or a range sampled uniformly per patch (blind models)."""

    low: float
    high: float

    @classmethod
    def parse(cls, level: float | Sequence[float] | None) -> Level:
        if level is None:
            return cls(0, 0)
        if isinstance(level, (int, float)):
            return cls(float(level), float(level))
        low, high = (float(v) for v in level)
        if low > high:
            raise ValueError(f"level range {low}..{high} is empty")
        return cls(low, high)

    def sample(self, rng: np.random.Generator, integer: bool) -> float:
        if self.low == self.high:
            return self.low
        if integer:
            return float(rng.integers(int(self.low), int(self.high) + 1))
        return float(rng.uniform(self.low, self.high))


class TrainPairs(torch.utils.data.Dataset):
    """Random (degraded, target) training patches from folders of ground-truth images.

    Args:
        folders: folders of ground-truth images (PNG, JPEG, BMP, TIFF; gray or colour).
        task: ``sr``, ``denoise``, ``car`` or ``demosaic``.
        level: SR scale, noise sigma or JPEG quality; a (low, high) pair samples a
            level per patch (sigma uniformly, quality as an integer).
        patch_size: size of the *input* patch (SR: the LR patch; the target is
            ``scale`` times larger), 48 in the paper.
        colors: channels the model sees (1 or 3). A gray CAR network trains on the Y of colour photos, a colour
            one on colour JPEGs (4:2:0).
        length: items per epoch (any number: patches are drawn at random).
        seed: item ``i`` depends only on ``(seed, i)``.
        exclude: image files never to train on (the validation images, when validation uses a training set).
        noise: one of the task's ``noise_models`` instead of its standard degradation (``"camera"`` for denoising).
        downscale: shrink every image this many times first (:func:`shrink`; 1: as stored).
    """

    def __init__(
        self,
        folders: Sequence[str | os.PathLike],
        *,
        task: str,
        level: float | Sequence[float] | None,
        patch_size: int = 48,
        colors: int = 3,
        length: int = 16000,
        seed: int = 0,
        augment: bool = True,
        exclude: Sequence[str | os.PathLike] = (),
        noise: str | None = None,
        downscale: int = 1,
    ):
        self.task = get_task(task)
        self.noise = noise
        if noise is not None and noise not in self.task.noise_models:
            raise ValueError(f"task {task!r} has no noise model {noise!r}")
        check_downscale(downscale)
        self.level = Level.parse(level)
        self.task.check_level(self.level.low)
        self.task.check_level(self.level.high)
        if self.task.upscales and self.level.low != self.level.high:
            raise ValueError("SR trains one scale per model")
        if self.task.mosaic and colors != 3:
            raise ValueError("demosaicing needs colors=3")
        held_out = {Path(f).resolve() for f in exclude}
        files = [f for folder in folders for f in find_images(folder) if f.resolve() not in held_out]
        if not files:
            raise ValueError("every training image is held out for validation")
        self.scale = int(self.level.low) if self.task.upscales else 1
        need = patch_size * self.scale
        small = [f for f in files if min(_image_size(f)) // downscale < need]
        if small:
            files = [f for f in files if f not in set(small)]
            if not files:
                raise ValueError(f"every training image is smaller than the {need}px patch")
            print(
                f"note: skipping {len(small)} training image(s) smaller than the {need}px patch "
                f"({', '.join(f.name for f in small[:3])}{', ...' if len(small) > 3 else ''})",
                file=sys.stderr,
            )
        self.colors = self.task.image_colors(colors)
        # a luma task's gray network reads colour photos as stored and takes their Y (to_gray_y), as the JPEG
        # literature does
        self.luma = self.task.on_luma(self.colors)
        self.images = ImageCache(files, None if self.luma else self.colors, downscale)
        self.patch_size, self.length, self.seed, self.augment = patch_size, length, seed, augment
        self._lr_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length

    def _ground_truth(self, index: int) -> np.ndarray:
        image = self.images[index]
        return to_gray_y(image) if self.luma else image

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(i)])
        index = int(rng.integers(len(self.images)))
        p = self.patch_size
        if self.task.upscales:
            # LR of the whole image (as the benchmark LR is made), then aligned crops
            if index not in self._lr_cache:
                self._lr_cache[index] = self.task.make_pair(self._ground_truth(index), self.scale)
            lr, hr = self._lr_cache[index]
            y0, x0 = int(rng.integers(lr.shape[0] - p + 1)), int(rng.integers(lr.shape[1] - p + 1))
            s = self.scale
            pair = [lr[y0 : y0 + p, x0 : x0 + p], hr[s * y0 : s * (y0 + p), s * x0 : s * (x0 + p)]]
            if self.augment:
                pair = _augment(pair, rng)
            return to_chw(pair[0]), to_chw(pair[1])
        target = self._ground_truth(index)
        y0, x0 = int(rng.integers(target.shape[0] - p + 1)), int(rng.integers(target.shape[1] - p + 1))
        patch = target[y0 : y0 + p, x0 : x0 + p]
        if self.augment:
            (patch,) = _augment([patch], rng)
        level = self.level.sample(rng, integer=self.task.integer_level)
        degraded, target = self.task.make_pair(patch, level or None, seed=int(rng.integers(2**32)), noise=self.noise)
        return to_chw(degraded), to_chw(target)


@dataclass
class EvalItem:
    name: str
    degraded: np.ndarray  # uint8 HxWxC
    target: np.ndarray  # uint8 HxWxC


class EvalPairs:
    """Whole benchmark images with deterministic degradations (the seed of each image comes from its name)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        task: str,
        level: float | None,
        colors: int | None = 3,
        seed: int = 0,
        crop: int | None = None,
        noise: str | None = None,
        downscale: int = 1,
    ):
        """``colors``: channels to read the images with (None: as stored). SR and
        demosaicing always use RGB; CAR scores the Y of colour images for a gray
        network or a baseline (the paper's protocol), RGB for a colour network. ``crop``: evaluate only the
        centre ``crop`` x ``crop`` of each ground truth (cheap validation during
        training; the attention is quadratic in the image area). ``noise``: one of
        the task's ``noise_models`` instead of its standard degradation. ``downscale``: shrink each ground truth
        this many times first (:func:`shrink`; validation of a recipe that trains on shrunk photos)."""
        self.task = get_task(task)
        if noise is not None and noise not in self.task.noise_models:
            raise ValueError(f"task {task!r} has no noise model {noise!r}")
        self.noise = noise
        self.level = self.task.check_level(level)
        self.files = find_images(folder)
        self.colors = self.task.image_colors(colors)
        self.seed = seed
        if crop is not None and crop < 1:
            raise ValueError(f"crop must be a positive size, got {crop}")
        self.crop = crop
        self.downscale = check_downscale(downscale)

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[EvalItem]:
        for path in self.files:
            luma = self.task.on_luma(self.colors)
            image = shrink(read_image(path, colors=None if luma else self.colors), self.downscale)
            image = to_gray_y(image) if luma else image
            if self.crop:
                h, w = image.shape[:2]
                top, left = max(0, (h - self.crop) // 2), max(0, (w - self.crop) // 2)
                image = image[top : top + self.crop, left : left + self.crop]
            degraded, target = self.task.make_pair(
                image, self.level or None, seed=seed_for(path.name, self.seed), noise=self.noise
            )
            yield EvalItem(path.stem, degraded, target)
