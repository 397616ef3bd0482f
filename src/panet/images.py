"""Image files <-> arrays/tensors (Pillow), written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .weights import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: str | os.PathLike):
    """Decode an image file (EXIF orientation applied), or raise one clear error naming the file."""
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
    return img


def read_image(path: str | os.PathLike, *, colors: int | None = None) -> np.ndarray:
    """Read an 8-bit image as uint8 HxWxC (C = 1 or 3), optionally converted to ``colors``."""
    img = _open(path)
    if colors is None:
        mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
    elif colors in (1, 3):
        mode = "L" if colors == 1 else "RGB"
    else:
        raise ValueError(f"colors must be 1 or 3, got {colors}")
    array = np.array(img.convert(mode))
    return array[:, :, None] if array.ndim == 2 else array


def read_image_float(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read an image as float32 HxWxC in [0, 1], keeping alpha and 16-bit gray; ``info`` says how to write it back.

    ``info["notice"]`` is set when something had to be converted (16-bit colour PNGs are read at 8 bit: Pillow
    decodes them so).
    """
    path, img = Path(path), _open(path)
    info: dict = {"bits": 8}
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        raw = np.asarray(img, dtype=np.float64)
        sixteen = img.mode.startswith("I;16") or raw.max() > 255
        info["bits"] = 16 if sixteen else 8
        array = (raw / (65535.0 if sixteen else 255.0))[:, :, None]
    else:
        if img.mode in ("RGB", "RGBA") and path.suffix.lower() == ".png" and _png_bit_depth(path) == 16:
            info["notice"] = f"{path.name}: 16-bit colour PNG read at 8 bit"
        has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        gray = img.mode in ("1", "L", "LA")
        mode = ("LA" if has_alpha else "L") if gray else ("RGBA" if has_alpha else "RGB")
        array = np.asarray(img.convert(mode), dtype=np.float64) / 255.0
        if array.ndim == 2:
            array = array[:, :, None]
    return array.astype(np.float32), info


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(25)
    return header[24] if len(header) == 25 and header[12:16] == b"IHDR" else 8


# Output formats by suffix. Restored images are saved so that the file adds no loss of its own where it can:
# JPEG at quality 95 without chroma subsampling, WebP lossless (exact: colours under transparent pixels kept).
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
                  ".webp": "WEBP"}
_SAVE_OPTIONS = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"lossless": True, "exact": True}}
_SIXTEEN_BIT = ("PNG", "TIFF")  # formats Pillow writes 16-bit gray to
_ALPHA = ("PNG", "TIFF", "WEBP")  # Pillow reads a 32-bit BMP back as RGB


def output_format(path: str | os.PathLike) -> str:
    """Pillow's format name for an output path's suffix; ValueError for a suffix we do not write."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        known = ", ".join(sorted(set(OUTPUT_FORMATS)))
        raise ValueError(f"{path}: unknown output format {suffix or '(no suffix)'!r}; use one of {known}")
    return OUTPUT_FORMATS[suffix]


def write_image_float(path: str | os.PathLike, array: np.ndarray, info: dict | None = None) -> list[str]:
    """Write float HxWxC in [0, 1] as read by :func:`read_image_float`, atomically, in the format of the suffix.

    16-bit gray stays 16-bit in PNG and TIFF; alpha is kept where the format has it. Returns notices of what the
    format could not keep (alpha in JPEG, 16 bit in an 8-bit format).
    """
    from PIL import Image

    fmt = output_format(path)
    notes: list[str] = []
    array = np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0)
    if (info or {}).get("bits") == 16 and array.shape[2] == 1:
        if fmt in _SIXTEEN_BIT:
            image = Image.fromarray(np.round(array[:, :, 0] * 65535).astype(np.uint16))
            atomic_write(path, lambda tmp: image.save(tmp, format=fmt))
            return notes
        notes.append(f"{Path(path).name}: {fmt} has no 16-bit gray; written at 8 bit (use .png or .tif to keep 16)")
    data = np.round(array * 255).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    image = Image.fromarray(data[:, :, 0] if data.shape[2] == 1 else data, mode=mode)
    if mode in ("LA", "RGBA") and fmt not in _ALPHA:
        image = image.convert(mode[:-1] if mode == "LA" else "RGB")
        notes.append(f"{Path(path).name}: {fmt} has no alpha channel; alpha dropped (use .png to keep it)")
    elif mode == "LA" and fmt == "WEBP":  # no gray+alpha mode there: RGBA keeps both
        image = image.convert("RGBA")
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {})))
    return notes


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write uint8 HxW / HxWxC as an image (format from the suffix, as :func:`output_format`), atomically."""
    from PIL import Image

    fmt = output_format(path)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    image = Image.fromarray(array.astype(np.uint8))
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {})))


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 HxWxC -> float (1, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).permute(2, 0, 1)[None].float().div_(255)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float (1, C, H, W) in [0, 1] -> uint8 HxWxC, rounded as the release saves outputs."""
    return tensor[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
