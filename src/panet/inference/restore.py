"""``panet.restore(image, task=..., ...)``: restore one image given as a numpy array, a PIL image or a tensor.

    >>> import numpy as np, panet
    >>> noisy = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    >>> out = panet.restore(noisy, model=panet.create_model("panet-dn-s"), task="denoise")  # random weights
    >>> out.shape, out.dtype
    ((40, 48, 3), dtype('uint8'))

Images come back as they went in: the same type, dtype (uint8, uint16 or float in [0, 1]) and channel layout.
Alpha is kept (upscaled with bicubic for SR). A colour image given to a gray network is restored channel by
channel, except for JPEG artifact removal, which restores the luma (Y) and keeps the chroma; a gray image given to
a colour network goes through as three equal channels and comes back gray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _network(task: str | None, weights: str | None, model, level: float | None, colors: int | None = None, noise=None):
    """(network, task): ``model`` as given, else what :func:`panet.zoo.resolver.resolve_network` picks."""
    if model is not None:
        return model.eval(), task
    from panet.zoo.resolver import resolve_network

    network = resolve_network(task, level, weights=weights, colors=colors, noise=noise)
    return network.model, network.task


# Where no measurement names a tiling (weights not shipped with panet): the denoiser's choice in docs/tiling.md.
DEFAULT_TILING = (32, 8)


def auto_tiling(model, device: str | torch.device = "cpu") -> tuple[int, int]:
    """(tile, overlap) for ``panet restore --tile auto``: for shipped weights the setting scripts/tiling.py chose
    by measurement (the fastest within 0.02 dB of the best PSNR, docs/tiling.md), else :data:`DEFAULT_TILING`.
    Tiles larger than the networks' training context score *lower*, and the attention's time per pixel grows
    with the tile's area. On CUDA a tile shrinks (to 32 at least) while its estimated memory does not fit in a
    quarter of the free GPU memory."""
    from panet.inference.tiling import tile_bytes
    from panet.zoo.pretrained import measured_tiling

    tile, overlap = measured_tiling(getattr(model, "shipped_name", None)) or DEFAULT_TILING
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        while tile > 32 and tile_bytes(model, tile) > free // 4:
            tile -= 16
        overlap = min(overlap, tile // 4)
    return tile, overlap


def resolve_tiling(
    model, device: str | torch.device = "cpu", tile: int | None = None, overlap: int | None = None
) -> tuple[int, int]:
    """(tile, overlap) from what was asked: None takes :func:`auto_tiling`'s; an explicit tile without an overlap
    overlaps by a quarter of it (at most 16), as the measured settings do."""
    measured = auto_tiling(model, device)
    if tile is None:
        tile = measured[0]
        overlap = measured[1] if overlap is None else overlap
    elif overlap is None:
        overlap = max(2, min(16, tile // 4))
    return tile, overlap


def auto_precision(model, precision: str, device: str | torch.device = "cpu") -> str:
    """``auto`` -> bf16 where the device runs bf16 measurably faster than fp32
    (:func:`panet.hardware.resolve_precision`) and, for shipped weights, scripts/tiling.py measured bf16 to cost at
    most 0.02 dB (docs/tiling.md); else fp32. Other precisions stay as they are."""
    from panet.hardware import resolve_precision
    from panet.zoo.pretrained import measured_bf16_ok

    resolved = resolve_precision(precision, device)
    if precision == "auto" and resolved == "bf16" and measured_bf16_ok(getattr(model, "shipped_name", None)) is False:
        return "fp32"
    return resolved


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU; ValueError for a device name torch does not know or CUDA
    asked for where there is none."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device} is not supported; use cpu, cuda or auto")
    return device


def check_run_options(
    task: str | None,
    *,
    tiling: str = "tile",
    ensemble: bool = False,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
) -> None:
    """Raise ValueError for options that cannot work together (checked once, before any image)."""
    if tiling not in ("tile", "legacy", "none"):
        raise ValueError(f"tiling must be tile, legacy or none, got {tiling!r}")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("fp16 needs CUDA; use bf16 on a CPU")
    from panet.tasks import get_task

    if ensemble and task is not None and get_task(task).mosaic:
        raise ValueError("the x8 ensemble does not apply to demosaicing (a flip changes the Bayer phase)")


def min_input_side(model) -> int:
    """The smallest height / width ``model`` runs on: every level of its attention pyramid must keep a pixel."""
    from panet.nn.attention import pyramid_sizes

    block = getattr(model, "attention", None)
    if block is None:
        return 1
    side = 1
    while min(min(size) for size in pyramid_sizes(side, side, block.levels)) < 1:
        side += 1
    return side


def _pad_to_min_side(run: Callable[[Tensor], Tensor], x: Tensor, side: int, scale: int) -> Tensor:
    """``run`` on ``x`` edge-padded at the bottom / right up to ``side`` pixels, the padding cropped off again (an
    image 1 pixel high is still an image)."""
    h, w = x.shape[-2:]
    if h >= side and w >= side:
        return run(x)
    padded = torch.nn.functional.pad(x, (0, max(0, side - w), 0, max(0, side - h)), mode="replicate")
    return run(padded)[..., : h * scale, : w * scale]


def run_network(
    model,
    x: Tensor,
    *,
    task: str | None,
    tiling: str = "tile",
    tile: int = 64,
    overlap: int = 16,
    ensemble: bool = False,
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
    memory_budget: int | None = None,
) -> Tensor:
    """(1, C, H, W) float in [0, 1] -> network output, tiled, optionally x8-ensembled, under autocast.
    ``progress(done, total)``: called after each tile of each pass (``--tiling tile`` only). Tiles run in batches
    within ``memory_budget`` bytes (default: :func:`panet.inference.tiling.auto_tiles_per_batch`)."""
    from panet.inference.tiling import forward_chop, forward_ensemble, forward_reflect_padded, forward_tiled
    from panet.tasks import get_task

    check_run_options(task, tiling=tiling, ensemble=ensemble, precision=precision, device=x.device)
    precision = auto_precision(model, precision, x.device)
    spec = get_task(task) if task else None
    min_size = spec.chop_min_size if spec else 6400
    pad = spec.input_pad if spec else 0

    def tiled(t: Tensor) -> Tensor:
        if tiling == "legacy":
            return forward_chop(model, t, min_size=min_size) if t.shape[-2] * t.shape[-1] >= min_size else model(t)
        if tiling == "tile":
            return forward_tiled(model, t, tile=tile, overlap=overlap, progress=progress, memory_budget=memory_budget)
        return model(t)

    scale, side = getattr(model, "scale", 1), min_input_side(model)

    def once(t: Tensor) -> Tensor:
        def padded(u: Tensor) -> Tensor:
            return forward_reflect_padded(tiled, u, pad, scale=scale)  # pad 0: tiled(u) itself

        return _pad_to_min_side(padded, t, side, scale)

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    device_type = x.device.type
    with torch.no_grad(), torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        y = forward_ensemble(once, x) if ensemble else once(x)
    return y.float()


def _to_float_hwc(image: Any) -> tuple[np.ndarray, dict]:
    """Any supported image -> float32 HxWxC in [0, 1] and what is needed to give it back in kind.

    Float input must lie in [0, 1] (:func:`panet.data.images.check_float_image`): NaN, infinities and 0-255 data given as
    float are refused, not clipped."""
    from PIL import Image

    from panet.data.images import check_float_image, pil_to_float

    info: dict[str, Any] = {}
    if isinstance(image, Image.Image):
        info["kind"] = "pil"
        array, pil_info = pil_to_float(image)
        info.update(pil_info)
    elif isinstance(image, Tensor):
        info["kind"] = "tensor"
        info["shape"] = tuple(image.shape)
        info["dtype"], info["device"] = image.dtype, image.device
        t = image.detach()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"restore takes one image; got a batch of {t.shape[0]}")
            t = t[0]
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[0] not in (1, 2, 3, 4):
            raise ValueError(
                f"expected a (C, H, W), (1, C, H, W) or (H, W) tensor with C in 1..4, got shape {tuple(image.shape)}"
            )
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"unsupported dtype {image.dtype}: use uint8 or float in [0, 1]")
        array = t.double().permute(1, 2, 0).cpu().numpy()
        if t.is_floating_point():
            array = check_float_image(array)
        else:
            array = array / (65535.0 if image.dtype == torch.int32 else 255.0)
    else:
        a = np.asarray(image)
        info["kind"] = "numpy"
        info["dtype"], info["ndim"] = a.dtype, a.ndim
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
            raise ValueError(f"expected an HxW or HxWxC image with C in 1..4, got shape {a.shape}")
        if a.dtype == np.uint8:
            array = a / 255.0
        elif a.dtype == np.uint16:
            array = a / 65535.0
        elif np.issubdtype(a.dtype, np.floating):
            array = check_float_image(a.astype(np.float64))
        else:
            raise ValueError(f"unsupported dtype {a.dtype}: use uint8, uint16 or float in [0, 1]")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.size == 0:
        raise ValueError(f"empty image (shape {tuple(array.shape)})")
    return array, info


def _from_float_hwc(array: np.ndarray, info: dict):
    from panet.data.images import float_to_pil

    array = np.clip(array, 0.0, 1.0)
    kind = info["kind"]
    if kind == "pil":
        return float_to_pil(array, info)[0]
    if kind == "tensor":
        t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
        if len(info["shape"]) == 2 and t.shape[0] == 1:
            t = t[0]
        elif len(info["shape"]) == 4:
            t = t[None]
        if not info["dtype"].is_floating_point:
            t = torch.round(t * (65535.0 if info["dtype"] == torch.int32 else 255.0))
        return t.to(info["dtype"]).to(info["device"])
    dtype = info["dtype"]
    if dtype == np.uint8:
        out = np.round(array * 255).astype(np.uint8)
    elif dtype == np.uint16:
        out = np.round(array * 65535).astype(np.uint16)
    else:
        out = array.astype(dtype)
    # an HxW image comes back HxW, unless it gained colours (a raw Bayer mosaic, demosaiced)
    return out[:, :, 0] if info["ndim"] == 2 and out.shape[2] == 1 else out


def image_colors(array: np.ndarray) -> int:
    """1 for a gray image, 3 for a colour one, of a float HxWxC array (C = 1..4; a 2nd / 4th channel is alpha)."""
    return 1 if array.shape[2] < 3 else 3


# How many rows / columns of reflection put a mosaic of each Bayer pattern into the GRBG phase the demosaicers
# were trained on: a reflection keeps the colour filter array consistent (pixel -k mirrors pixel k), so one row
# on top turns BGGR into GRBG, one column on the left turns RGGB into GRBG.
_GRBG_SHIFT = {"GRBG": (0, 0), "RGGB": (0, 1), "BGGR": (1, 0), "GBRG": (1, 1)}
MOSAIC_HELP = (
    "demosaicing takes a Bayer mosaic: a 1-channel raw image (its pattern given by --bayer, GRBG by "
    "default) or the 3-channel zero-filled layout (panet.data.degrade.mosaic)"
)


def _demosaic(net: Callable[[np.ndarray], np.ndarray], color: np.ndarray, pattern: str) -> np.ndarray:
    """A raw Bayer image (HxWx1) or a zero-filled mosaic (HxWx3) in ``pattern`` -> the demosaiced RGB image."""
    from panet.data.degrade import BAYER_PATTERNS, bayer_mask
    from panet.data.images import FLOAT_SLACK

    pattern = pattern.upper()
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; choose from {', '.join(BAYER_PATTERNS)}")
    h, w = color.shape[:2]
    mask = bayer_mask(h, w, pattern)
    if color.shape[2] == 1:
        layout = np.where(mask, color, 0).astype(np.float32)
    elif np.abs(color[~mask]).max(initial=0) <= FLOAT_SLACK:
        layout = color
    else:
        raise ValueError(
            f"{MOSAIC_HELP}; this image has colour at every pixel (a photo, or a mosaic of another "
            "pattern or saved lossily)"
        )
    top, left = _GRBG_SHIFT[pattern]
    if min(h, w) > 1:
        shifted = np.pad(layout, ((top, 0), (left, 0), (0, 0)), mode="reflect")
    else:
        shifted = np.pad(layout, ((top, 0), (left, 0), (0, 0)), mode="edge")
    return net(shifted)[top:, left:]


def restore_float(
    model, array: np.ndarray, *, task: str | None, device: str | torch.device = "cpu", bayer: str = "GRBG", **run
) -> np.ndarray:
    """float32 HxWxC (C = 1..4, in [0, 1]) -> restored float32 HxW'xC, adapting channels to the network.

    ``bayer``: for ``task="demosaic"``, the pattern of the input mosaic (a 1-channel raw image or the 3-channel
    zero-filled layout), read from the top-left 2x2 row by row."""
    from panet.data.matlab_resize import imresize
    from panet.tasks import get_task

    spec = get_task(task) if task is not None else None
    channels = array.shape[2]
    alpha = array[:, :, -1:] if channels in (2, 4) else None
    color = array[:, :, : channels - 1] if alpha is not None else array
    scale = getattr(model, "scale", 1)

    def net(a: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(device)
        return run_network(model, x, task=task, **run)[0].permute(1, 2, 0).cpu().numpy()

    if spec is not None and spec.mosaic:
        out = _demosaic(net, color, bayer)
    elif color.shape[2] == model.colors:
        out = net(color)
    elif model.colors == 3:  # gray image, colour network: three equal channels in, their mean out
        out = net(np.repeat(color, 3, axis=2)).mean(axis=2, keepdims=True)
    elif (
        spec is not None and spec.luma
    ):  # colour image, gray JPEG network: restore Y, keep Cb/Cr (JPEG codes them apart)
        out = _restore_luma(net, color)
    else:  # colour image, gray network: channel by channel
        out = np.concatenate([net(color[:, :, c : c + 1]) for c in range(color.shape[2])], axis=2)
    if alpha is not None:
        if scale > 1:
            alpha = np.clip(imresize(alpha.astype(np.float64), scale), 0, 1).astype(np.float32)
        out = np.concatenate([out, alpha], axis=2)
    return out.astype(np.float32)


def _restore_luma(net, rgb: np.ndarray) -> np.ndarray:
    # full-range BT.601 (JPEG's own YCbCr)
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32)
    ycc = rgb @ m.T
    y = net(ycc[:, :, :1])
    ycc = np.concatenate([y, ycc[:, :, 1:]], axis=2)
    return np.clip(ycc @ np.linalg.inv(m).T.astype(np.float32), 0, 1)


def restore(
    image: Any,
    *,
    task: str | None = None,
    weights: str | None = None,
    model=None,
    scale: int | None = None,
    sigma: float | str | None = None,
    quality: int | None = None,
    tiling: str = "tile",
    tile: int | None = None,
    overlap: int | None = None,
    ensemble: bool = False,
    device: str = "cpu",
    precision: str = "auto",
    bayer: str = "GRBG",
    noise: str | None = None,
):
    """Restore ``image`` (numpy HxW[xC] uint8/uint16/float, PIL image, or tensor (C, H, W) / (1, C, H, W)).

    The network: ``model`` (a PANet), ``weights`` (a shipped name or a file), or the shipped default for ``task``
    and its level (``scale`` for SR; ``sigma``/``quality`` choose among shipped denoising/JPEG weights;
    ``sigma="auto"`` estimates it from the image with :func:`panet.estimate_sigma`); ``noise`` asks for weights
    trained on one of the task's other noise models instead (``task="denoise", noise="camera"``: blind weights
    for real photos, no ``sigma``). Tiling as in ``panet restore`` (``tile`` / ``overlap`` None: :func:`auto_tiling`); ``ensemble`` averages the 8
    flips/transposes. ``precision``: ``auto`` runs
    the network under bf16 autocast where this machine has bf16 and measures it faster than fp32
    (:func:`panet.hardware.resolve_precision`), else fp32; the attention's scores stay fp32. ``bayer``: the pattern of a
    mosaic given to ``task="demosaic"`` (a 1-channel raw image or the 3-channel zero-filled layout).
    Bad arguments and images raise ``ValueError``.
    """
    from panet.tasks import get_task

    spec = get_task(task) if task is not None else None
    given = {"scale": scale, "sigma": sigma, "quality": quality}  # the keywords are the tasks' level names
    level = given.get(spec.level_name) if spec is not None and spec.level_name else None
    if spec is not None and spec.upscales and level is None and model is None and weights is None:
        raise ValueError(f"task={task!r} needs {spec.level_name}={spec.level_rule}")
    target = resolve_device(device)
    check_run_options(task, tiling=tiling, ensemble=ensemble, precision=precision, device=target)
    array, info = _to_float_hwc(image)
    if isinstance(level, str):
        if level != "auto" or spec is None or not spec.level_estimable:
            raise ValueError(f"{spec.level_name if spec else 'level'} must be a number, got {level!r}")
        from panet.data.noise_level import estimate_sigma

        level = round(estimate_sigma(array), 1)
    if noise is not None and level is not None:
        raise ValueError(f"noise={noise!r} picks blind weights: give no {spec.level_name if spec else 'level'}")
    net, task = _network(task, weights, model, level, image_colors(array), noise)
    if task is not None and get_task(task).upscales and scale is not None and net.scale != scale:
        raise ValueError(f"the network upscales x{net.scale}, not x{scale}")
    net = net.to(target)
    tile, overlap = resolve_tiling(net, target, tile, overlap)
    out = restore_float(
        net,
        array,
        task=task,
        device=target,
        tiling=tiling,
        tile=tile,
        overlap=overlap,
        ensemble=ensemble,
        precision=precision,
        bayer=bayer,
    )
    return _from_float_hwc(out, info)
