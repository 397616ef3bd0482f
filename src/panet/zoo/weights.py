"""The package's weight files: safetensors with the network's config in the metadata, loaded strictly; and the
safe reader of ``.pt`` checkpoints (conversion of the release's checkpoints: :mod:`panet.zoo.release`).

Nothing here unpickles code: ``.pt`` files are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from panet.files import atomic_write
from panet.nn.model import PANet

PathLike = str | os.PathLike
FORMAT = "panet/1"

# --------------------------------------------------------------------------
# Our format: safetensors + the network's config in the metadata
# --------------------------------------------------------------------------


def save_weights(model: PANet, path: PathLike, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``model`` as .safetensors with its config, atomically."""
    from safetensors.torch import save_file

    if not isinstance(model, PANet):
        raise TypeError("save_weights expects a panet.PANet")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(model.config)}
    meta.update(metadata or {})
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_metadata(path: PathLike) -> dict[str, str]:
    return _read_header(Path(path))[0]


def read_torch_file(path: PathLike, *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` made safe for files from anywhere: ``weights_only=True`` (no pickled code runs), and tensor
    data checked before it is materialised. A zip checkpoint is memory-mapped, so a tensor costs memory only once
    used (callers check names and shapes first); compressed tensor records, which ``torch.save`` never writes but a
    crafted file uses to hide gigabytes in a few KB, are refused. Every problem is one ValueError naming the file.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    mmap = zipfile.is_zipfile(path)
    if mmap:
        try:
            with zipfile.ZipFile(path) as archive:
                records = [r for r in archive.infolist() if "/data/" in r.filename]
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None
        packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
        if packed:
            declared = sum(r.file_size for r in records)
            raise ValueError(
                f"{path}: its tensor data is compressed ({len(packed)} records, {declared / 2**20:.0f} MB "
                "unpacked); torch.save never writes that, so panet does not unpack it"
            )
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "weights_only" in text or "Weights only load failed" in text:
            # PyTorch's advice here is to load with weights_only=False, which would run code from the file
            first = "not a PyTorch checkpoint of tensors (panet never loads pickled code)"
        raise ValueError(f"{path}: cannot be read as a weights-only checkpoint ({first})") from None


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(metadata, tensor names and shapes) from a .safetensors header, without reading the tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {}), {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118  # safe_open is not iterable


def _config_from_metadata(meta: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]], path: Path) -> dict:
    """The network config stored with the weights, checked against the tensors before anything is built: a crafted
    ``blocks=1000000`` must not build a million blocks."""
    import inspect

    try:
        config = json.loads(meta["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the config in its metadata is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the config in its metadata is not a mapping")
    known = set(inspect.signature(PANet).parameters)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{path}: unknown network settings in its metadata: {', '.join(map(str, unknown))}")
    for key in ("colors", "scale", "features", "blocks", "attention_levels", "attention_reduction"):
        if key in config and (isinstance(config[key], bool) or not isinstance(config[key], int)):
            raise ValueError(f"{path}: config {key} must be an integer, got {config[key]!r}")
    blocks = len({k.split(".")[1] for k in shapes if k.startswith("body.") and k.endswith(".conv1.weight")})
    head = shapes.get("head.weight")
    expected = {"blocks": blocks, "features": head[0] if head else None, "colors": head[1] if head else None}
    for key, value in expected.items():
        if config.get(key, value) != value:
            raise ValueError(f"{path}: its config says {key}={config[key]!r} but its tensors hold {value}")
    return config


def load_weights(path: PathLike, *, map_location: str | torch.device = "cpu") -> PANet:
    """Rebuild a network saved by :func:`save_weights` (strict). The config in the metadata is checked against the
    tensors' names and shapes (from the file's header) before any network or tensor is made."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        meta, shapes = _read_header(path)
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise ValueError(f"{path}: not a readable .safetensors file ({exc})") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{path}: no panet config in the metadata; for the release's checkpoints use from_official")
    config = _config_from_metadata(meta, shapes, path)
    try:
        with torch.device("meta"):  # shapes only: no memory
            skeleton = PANet(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the config in its metadata does not make a network ({exc})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    _raise_key_errors(
        str(path),
        sorted(set(expected) - set(shapes)),
        sorted(set(shapes) - set(expected)),
        [(k, shapes[k], expected[k]) for k in sorted(set(expected) & set(shapes)) if shapes[k] != expected[k]],
    )
    try:
        tensors = load_file(str(path), device=str(map_location))
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .safetensors file ({exc})") from None
    model = PANet(**config)
    _load_strict(model, tensors, str(path))
    if isinstance(meta.get("task"), str):
        from panet.tasks import TASKS

        model.task = meta["task"] if meta["task"] in TASKS else None
    return model


def _load_strict(model: nn.Module, tensors: Mapping[str, Tensor], origin: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unknown = sorted(set(tensors) - set(expected))
    shapes = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    _raise_key_errors(
        origin, missing, unknown, [(k, tuple(tensors[k].shape), tuple(expected[k].shape)) for k in shapes]
    )
    model.load_state_dict(tensors, strict=True)


def _raise_key_errors(origin: str, missing, unknown, mis_shaped) -> None:
    def show(items):
        items = list(items)
        return ", ".join(map(str, items[:6])) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")

    problems = []
    if missing:
        problems.append(f"missing keys: {show(missing)}")
    if unknown:
        problems.append(f"unknown keys: {show(unknown)}")
    if mis_shaped:
        problems.append("mis-shaped keys: " + show(f"{k} {got} (expected {exp})" for k, got, exp in mis_shaped))
    if problems:
        raise ValueError(f"{origin}: " + "; ".join(problems))
