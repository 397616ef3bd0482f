"""Image files <-> arrays/tensors (Pillow), written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .weights import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike, *, colors: int | None = None) -> np.ndarray:
    """Read an 8-bit image as uint8 HxWxC (C = 1 or 3), optionally converted to ``colors``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from None
    if colors is None:
        mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
    elif colors in (1, 3):
        mode = "L" if colors == 1 else "RGB"
    else:
        raise ValueError(f"colors must be 1 or 3, got {colors}")
    array = np.array(img.convert(mode))
    return array[:, :, None] if array.ndim == 2 else array


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write uint8 HxW / HxWxC as an image (format from the suffix), atomically."""
    from PIL import Image

    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower(), "PNG")
    image = Image.fromarray(array.astype(np.uint8))
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt))


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 HxWxC -> float (1, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float().div_(255)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float (1, C, H, W) in [0, 1] -> uint8 HxWxC, rounded as the release saves outputs."""
    return tensor[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
