"""Image files and encoded images <-> arrays, the one place panet decodes and encodes pictures.

Every image is opened by :func:`open_image`, which checks the size its header declares against a pixel limit
*before* decoding (a 69-byte PNG can declare 10^10 pixels), refuses animated and multi-page files, and turns every
decoding problem into one ``ValueError`` naming the file. The float reading / writing pair keeps what an image is:
alpha, 16-bit gray and 32-bit float gray round-trip; what a format cannot keep is reported, never dropped silently.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from panet.files import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# The largest image (input or output) panet decodes or makes by default: 64 megapixels, above any phone or
# consumer camera photo. Decoding and restoring one costs a few GB; `panet restore --max-pixels` and the
# ``max_pixels`` arguments change it. Pillow itself refuses anything above 2 x Image.MAX_IMAGE_PIXELS (179 MP).
DEFAULT_MAX_PIXELS = 64_000_000

# Float images must lie in [0, 1]; values up to one 8-bit step outside are rounding and are clipped. Anything
# further out is refused rather than clipped: 0-255 data passed as float would otherwise come back white.
FLOAT_SLACK = 1 / 255

Source = str | os.PathLike | bytes | IO[bytes]


def _name(source: Source) -> str:
    return "image" if isinstance(source, (bytes, bytearray)) or hasattr(source, "read") else str(source)


def check_pixels(height: int, width: int, max_pixels: int | None, what: str = "image") -> None:
    """ValueError when ``height x width`` exceeds ``max_pixels`` (None: no limit)."""
    if max_pixels is not None and height * width > max_pixels:
        raise ValueError(f"{what} {width}x{height} is {height * width:,} pixels, over the limit of {max_pixels:,}")


def open_image(source: Source, *, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """Decode an image file (a path, bytes or a binary file object) with its EXIF orientation applied.

    The size the header declares is checked against ``max_pixels`` before any pixel is decoded; animated and
    multi-page images are refused. Every problem is one ``ValueError`` (``FileNotFoundError`` for a missing path)
    whose message names the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = _name(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        if path.stat().st_size == 0:
            raise ValueError(f"{path}: empty file")
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise ValueError("empty file")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # our own limit below is the one that speaks; Pillow's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
        try:
            width, height = img.size
            check_pixels(height, width, max_pixels, f"{name}:")  # before a single pixel is decoded
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise ValueError(
                    f"{name}: an animated or multi-page image ({frames} frames); panet restores still "
                    "images: save the frame you want as a PNG"
                )
            # Pillow decodes 16-bit colour PNGs to 8 bit; the IHDR chunk says what was there (read before decoding)
            depth = _png_bit_depth(img) if img.format == "PNG" else None
            oriented = ImageOps.exif_transpose(img)
            oriented.load()
            if depth is not None:
                oriented.info["png_bit_depth"] = depth
        finally:
            img.close()
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ValueError(
            f"{name}: the image declares more than {limit:,} pixels, which Pillow refuses to decode (a "
            "possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise ValueError(f"{name}: not a readable image (unknown format, or a damaged file)") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"{name}: not a readable image ({exc})") from None
    except ValueError:
        raise
    except Exception as exc:  # Pillow's decoders raise further types on crafted files (struct.error, IndexError)
        raise ValueError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from None
    return oriented


def read_image(source: Source, *, colors: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an 8-bit image as uint8 HxWxC (C = 1 or 3), optionally converted to ``colors``."""
    img = open_image(source, max_pixels=max_pixels)
    if colors is None:
        mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
    elif colors in (1, 3):
        mode = "L" if colors == 1 else "RGB"
    else:
        raise ValueError(f"colors must be 1 or 3, got {colors}")
    array = np.array(img.convert(mode))
    return array[:, :, None] if array.ndim == 2 else array


def check_float_image(array: np.ndarray, name: str = "image") -> np.ndarray:
    """``array`` clipped to [0, 1], or ValueError for NaN / infinite values or values clearly outside [0, 1]."""
    if array.size == 0:
        raise ValueError(f"{name}: empty image (shape {array.shape})")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
        hint = "; for 0-255 data divide by 255" if high > 1 + FLOAT_SLACK and low >= -FLOAT_SLACK else ""
        raise ValueError(f"{name}: float values must lie in [0, 1], got [{low:.4g}, {high:.4g}]{hint}")
    return np.clip(array, 0.0, 1.0)


def pil_to_float(img, name: str = "image") -> tuple[np.ndarray, dict[str, Any]]:
    """A PIL image -> float32 HxWxC in [0, 1] (C = 1..4, a 2nd / 4th channel is alpha) and ``info`` on how to give
    it back: ``info["bits"]`` is 8, 16 (16-bit gray) or ``"float"`` (32-bit float gray); ``info["notice"]`` says
    what had to be converted."""
    info: dict[str, Any] = {"bits": 8}
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        raw = np.asarray(img, dtype=np.float64)
        if raw.size and (raw.min() < 0 or raw.max() > 65535):
            raise ValueError(f"{name}: 32-bit integer pixels outside 0..65535 ({raw.min():g}..{raw.max():g})")
        sixteen = mode.startswith("I;16") or (raw.size and raw.max() > 255)
        info["bits"] = 16 if sixteen else 8
        array = (raw / (65535.0 if sixteen else 255.0))[:, :, None]
    elif mode == "F":
        array = check_float_image(np.asarray(img, dtype=np.float64), name)[:, :, None]
        info["bits"] = "float"
    else:
        if mode in ("RGB", "RGBA") and img.info.get("png_bit_depth") == 16:
            info["notice"] = f"{name}: 16-bit colour PNG read at 8 bit"
        elif mode == "CMYK":
            info["notice"] = f"{name}: CMYK image converted to RGB"
        has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
        gray = mode in ("1", "L", "LA", "La")
        target = ("LA" if has_alpha else "L") if gray else ("RGBA" if has_alpha else "RGB")
        array = np.asarray(img.convert(target), dtype=np.float64) / 255.0
        if array.ndim == 2:
            array = array[:, :, None]
    if array.size == 0:
        raise ValueError(f"{name}: empty image ({img.width}x{img.height})")
    return array.astype(np.float32), info


def read_image_float(source: Source, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, dict]:
    """Read an image as float32 HxWxC in [0, 1], keeping alpha, 16-bit gray and float gray (see
    :func:`pil_to_float`); ``info`` says how :func:`write_image_float` writes it back."""
    return pil_to_float(open_image(source, max_pixels=max_pixels), _name(source))


def _png_bit_depth(img) -> int:
    fp = getattr(img, "fp", None)
    if fp is None:
        return 8
    position = fp.tell()
    try:
        fp.seek(0)
        header = fp.read(25)
    finally:
        fp.seek(position)
    return header[24] if len(header) == 25 and header[12:16] == b"IHDR" else 8


# Output formats by suffix. Restored images are saved so that the file adds no loss of its own where it can:
# JPEG at quality 95 without chroma subsampling, WebP lossless (exact: colours under transparent pixels kept).
OUTPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"lossless": True, "exact": True},
}
_SIXTEEN_BIT = ("PNG", "TIFF")  # formats Pillow writes 16-bit gray to
_ALPHA = ("PNG", "TIFF", "WEBP")  # Pillow reads a 32-bit BMP back as RGB


def output_format(path: str | os.PathLike) -> str:
    """Pillow's format name for an output path's suffix; ValueError for a suffix we do not write."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        known = ", ".join(sorted(set(OUTPUT_FORMATS)))
        raise ValueError(f"{path}: unknown output format {suffix or '(no suffix)'!r}; use one of {known}")
    return OUTPUT_FORMATS[suffix]


def float_to_pil(array: np.ndarray, info: dict | None = None, fmt: str | None = None, name: str = "image"):
    """float HxWxC in [0, 1] -> (PIL image, notices), as :func:`pil_to_float` read it: 16-bit and float gray stay
    so where ``fmt`` (a Pillow format name; None: any) can hold them. Notices say what ``fmt`` could not keep."""
    from PIL import Image

    notes: list[str] = []
    array = np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0)
    bits = (info or {}).get("bits", 8)
    if bits == "float" and array.shape[2] == 1:
        if fmt in (None, "TIFF"):
            return Image.fromarray(array[:, :, 0].astype(np.float32), mode="F"), notes
        bits = 16
        notes.append(
            f"{name}: {fmt} has no float pixels; written as 16-bit gray (use .tif to keep float)"
            if fmt in _SIXTEEN_BIT
            else ""
        )
    if bits == 16 and array.shape[2] == 1:
        if fmt is None or fmt in _SIXTEEN_BIT:
            return Image.fromarray(np.round(array[:, :, 0] * 65535).astype(np.uint16)), [n for n in notes if n]
        notes.append(f"{name}: {fmt} has no 16-bit gray; written at 8 bit (use .png or .tif to keep 16)")
    data = np.round(array * 255).astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    image = Image.fromarray(data[:, :, 0] if data.shape[2] == 1 else data, mode=mode)
    if fmt is not None and mode in ("LA", "RGBA") and fmt not in _ALPHA:
        image = image.convert(mode[:-1] if mode == "LA" else "RGB")
        notes.append(f"{name}: {fmt} has no alpha channel; alpha dropped (use .png to keep it)")
    elif mode == "LA" and fmt == "WEBP":  # no gray+alpha mode there: RGBA keeps both
        image = image.convert("RGBA")
    return image, [n for n in notes if n]


def encode_image_float(
    array: np.ndarray, info: dict | None = None, fmt: str = "PNG", name: str = "image"
) -> tuple[bytes, list[str]]:
    """float HxWxC in [0, 1] -> the encoded file's bytes in Pillow format ``fmt``, and notices (as
    :func:`float_to_pil`)."""
    image, notes = float_to_pil(array, info, fmt, name)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))
    return buffer.getvalue(), notes


def write_image_float(path: str | os.PathLike, array: np.ndarray, info: dict | None = None) -> list[str]:
    """Write float HxWxC in [0, 1] as read by :func:`read_image_float`, atomically, in the format of the suffix.

    16-bit gray stays 16-bit in PNG and TIFF, float gray stays float in TIFF; alpha is kept where the format has
    it. Returns notices of what the format could not keep (alpha in JPEG, 16 bit in an 8-bit format).
    """
    fmt = output_format(path)
    data, notes = encode_image_float(array, info, fmt, Path(path).name)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
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
