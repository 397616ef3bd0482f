"""Test-time tiling: the release's recursive ``forward_chop`` and blended overlapping tiles."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from panet.nn.attention import runs_factorised

Model = Callable[[Tensor], Tensor]


def forward_chop(model: Model, x: Tensor, *, shave: int = 10, min_size: int = 6400, scale: int | None = None) -> Tensor:
    """The release's ``forward_chop``, exactly: recursive four-way tiling with overlap.

    The input is cut into four quadrant tiles that overlap by ``shave`` pixels;
    a tile whose area is below ``min_size`` (strict ``<``) is run through
    ``model`` on its own, a larger one is cut again. Each output quadrant comes
    from the part of its tile away from the overlap. For SR (``scale`` > 1; by
    default ``model.scale``) the tile size gets the release's ``size % scale``
    added, which is a multiple of the scale only for x2.

    Because pyramid attention is non-local, the output depends on this tiling;
    the paper's numbers were computed with it (``min_size`` 6800 for colour
    denoising, 6400 otherwise: ``panet.tasks.TASKS[task].chop_min_size``).
    """
    if x.dim() != 4:
        raise ValueError(f"forward_chop expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if shave < 0 or min_size < 1:
        raise ValueError("shave must be >= 0 and min_size >= 1")
    scale = int(getattr(model, "scale", 1) if scale is None else scale)
    return _chop(model, x, shave, min_size, scale)


def _chop(model: Model, x: Tensor, shave: int, min_size: int, scale: int) -> Tensor:
    b, _c, h, w = x.shape
    h_half, w_half = h // 2, w // 2
    h_size, w_size = h_half + shave, w_half + shave
    h_size += h_size % scale
    w_size += w_size % scale
    if h_size > h or w_size > w:
        raise ValueError(
            f"a {h}x{w} input is too small for forward_chop with shave={shave}: "
            f"its tiles ({h_size}x{w_size}) would be larger than the input"
        )
    if h_size * w_size >= min_size and h_size * w_size >= h * w:
        raise ValueError(f"forward_chop cannot shrink a {h}x{w} tile below min_size={min_size} with shave={shave}")
    tiles = [
        x[:, :, 0:h_size, 0:w_size],
        x[:, :, 0:h_size, (w - w_size) : w],
        x[:, :, (h - h_size) : h, 0:w_size],
        x[:, :, (h - h_size) : h, (w - w_size) : w],
    ]
    if h_size * w_size < min_size:
        outs = [model(t) for t in tiles]  # one tile per call, as the release with one GPU
    else:
        outs = [_chop(model, t, shave, min_size, scale) for t in tiles]
    h, w, h_half, w_half, h_size, w_size = (scale * v for v in (h, w, h_half, w_half, h_size, w_size))
    out = outs[0].new_empty(b, outs[0].shape[1], h, w)
    out[:, :, 0:h_half, 0:w_half] = outs[0][:, :, 0:h_half, 0:w_half]
    out[:, :, 0:h_half, w_half:w] = outs[1][:, :, 0:h_half, (w_size - w + w_half) : w_size]
    out[:, :, h_half:h, 0:w_half] = outs[2][:, :, (h_size - h + h_half) : h_size, 0:w_half]
    out[:, :, h_half:h, w_half:w] = outs[3][:, :, (h_size - h + h_half) : h_size, (w_size - w + w_half) : w_size]
    return out


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _ramp(length: int, overlap: int, taper_start: bool, taper_end: bool, device, dtype) -> Tensor:
    """Blend weights along one side of a tile.

    Sides that border another tile get weight 0 on the outer quarter of the
    overlap (where the tile's own zero padding reaches) and ramp linearly to 1
    over the next half; sides on the image border keep weight 1.
    """
    w = torch.ones(length, device=device, dtype=dtype)
    if overlap <= 0:
        return w
    i = torch.arange(length, device=device, dtype=dtype) + 0.5
    rise = lambda d: ((d - overlap / 4) / (overlap / 2)).clamp(0, 1)  # noqa: E731
    if taper_start:
        w = torch.minimum(w, rise(i))
    if taper_end:
        w = torch.minimum(w, rise(length - i))
    return w


# Tiles per network call when the memory budget allows: measured on 2 cores with 24- and 32-pixel tiles of the
# shipped denoiser, 4-8 tiles per call run 1.3x faster per tile than one at a time (the trunk's convolutions
# get enough work), and 16 or 32 no faster than 8.
MAX_TILES_PER_BATCH = 8


def tile_bytes(model, tile: int) -> int:
    """Rough peak memory of one ``tile`` x ``tile`` sample in a forward pass: the pyramid's keys and values (about
    3.3 tile^2 key positions), the queries and the pasted output, the trunk's feature maps; plus the score buffers
    (two fp32 and one bf16 N x L matrix on the small-map path, one score block in the tiled kernel), which batched
    samples share rather than multiply but which are counted per sample here to stay on the safe side."""
    block = getattr(model, "attention", None)
    features = getattr(model, "features", 64)
    trunk = 4 * 8 * features * tile * tile * getattr(model, "scale", 1) ** 2
    if block is None:
        return trunk
    keys = sum(int(tile * (1 - i / 10)) ** 2 for i in range(block.levels))
    n_scores = tile * tile * keys
    if runs_factorised(tile, tile, block.levels, hard=block.hard, max_direct_scores=block.max_direct_scores):  # 1x3
        width, scores = 3 * (block.channels // block.reduction + block.channels), 10 * n_scores
    else:  # the tiled kernel: 3x3 patches
        width, scores = (
            9 * (block.channels // block.reduction + block.channels),
            4 * block.query_block * block.key_block,
        )
    return 4 * keys * width + 4 * tile * tile * width + scores + trunk


def available_memory() -> int:
    """Bytes of memory free for this process now (Linux: MemAvailable; elsewhere a guess of 4 GB)."""
    from panet.hardware import proc_bytes

    available = proc_bytes("/proc/meminfo", "MemAvailable")
    return 4 << 30 if available is None else available


def auto_tiles_per_batch(model, tile: int, memory_budget: int | None = None) -> int:
    """How many tiles go through ``model`` per call: as many as fit in ``memory_budget`` bytes (default: a quarter
    of the free memory, at most 2 GB) by :func:`tile_bytes`, at most :data:`MAX_TILES_PER_BATCH`, at least 1."""
    if memory_budget is None:
        memory_budget = min(2 << 30, available_memory() // 4)
    return max(1, min(MAX_TILES_PER_BATCH, int(memory_budget // max(1, tile_bytes(model, tile)))))


def forward_tiled(
    model: Model,
    x: Tensor,
    *,
    tile: int = 128,
    overlap: int = 16,
    scale: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    tiles_per_batch: int | None = None,
    memory_budget: int | None = None,
) -> Tensor:
    """Run ``model`` on overlapping ``tile`` x ``tile`` windows and blend the seams.

    Memory is bounded by one tile whatever the image size. Each output pixel is
    a weighted mean of the tiles covering it, with weights tapering linearly
    over the overlap. For a local network whose receptive radius is at most
    ``overlap / 4`` the result equals the untiled one; for pyramid attention a
    tile limits where attention can look (larger tiles see more of the image).
    ``progress(done, total)`` is called after each tile (for a progress bar).
    ``tiles_per_batch`` tiles go through the network in one batch (small tiles
    keep the cores busier that way; memory grows with it); by default as many as
    :func:`auto_tiles_per_batch` allows within ``memory_budget`` bytes. The result
    does not depend on the batching (to float rounding).
    """
    if x.dim() != 4:
        raise ValueError(f"forward_tiled expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if tiles_per_batch is None:
        tiles_per_batch = max(1, auto_tiles_per_batch(model, tile, memory_budget) // x.shape[0])
    if tiles_per_batch < 1:
        raise ValueError(f"tiles_per_batch must be >= 1, got {tiles_per_batch}")
    scale = int(getattr(model, "scale", 1) if scale is None else scale)
    b, _, h, w = x.shape
    if h <= tile and w <= tile:
        y = model(x)
        if progress is not None:
            progress(1, 1)
        return y
    stride = tile - overlap
    out: Tensor | None = None
    weight: Tensor | None = None
    starts = [(y0, x0) for y0 in _tile_starts(h, tile, stride) for x0 in _tile_starts(w, tile, stride)]
    done = 0
    for first in range(0, len(starts), tiles_per_batch):
        group = starts[first : first + tiles_per_batch]
        # every tile has the same size (the last ones are aligned to the image's end), so a group stacks
        ys_out = model(torch.cat([x[:, :, y0 : y0 + tile, x0 : x0 + tile] for y0, x0 in group])).split(b)
        for (y0, x0), y in zip(group, ys_out):
            if out is None or weight is None:
                out = y.new_zeros(b, y.shape[1], h * scale, w * scale)
                weight = y.new_zeros(1, 1, h * scale, w * scale)
            th, tw = y.shape[-2:]
            ov = overlap * scale
            rows = _ramp(th, ov, y0 > 0, y0 + tile < h, y.device, y.dtype)
            cols = _ramp(tw, ov, x0 > 0, x0 + tile < w, y.device, y.dtype)
            mask = rows[:, None] * cols[None, :]
            ys, xs = slice(y0 * scale, y0 * scale + th), slice(x0 * scale, x0 * scale + tw)
            out[:, :, ys, xs] += y * mask
            weight[:, :, ys, xs] += mask
            done += 1
            if progress is not None:
                progress(done, len(starts))
    assert out is not None and weight is not None  # at least one tile ran
    return out / weight


def forward_reflect_padded(model: Model, x: Tensor, pad: int, *, scale: int | None = None) -> Tensor:
    """``model`` on ``x`` reflect-padded by ``pad`` pixels on each side, with the padding cropped off the output.

    A reflection keeps a Bayer mosaic's phase (pixel -k mirrors pixel k), so a demosaicer sees each real edge
    pixel as an interior one; an even ``pad`` also keeps the mosaic's top-left colour. On images too small for
    the reflection the padding shrinks, by steps of 2.
    """
    if x.dim() != 4:
        raise ValueError(f"forward_reflect_padded expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    while pad > min(x.shape[-2], x.shape[-1]) - 1:
        pad -= 2
    if pad <= 0:
        return model(x)
    scale = int(getattr(model, "scale", 1) if scale is None else scale)
    y = model(torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect"))
    crop = pad * scale
    return y[..., crop : y.shape[-2] - crop, crop : y.shape[-1] - crop]


def forward_ensemble(model: Model, x: Tensor) -> Tensor:
    """The x8 self-ensemble: the mean of ``model`` over the 8 flips/transposes of ``x``, each undone.

    Not for mosaics: a flip changes the Bayer phase the network was trained on.
    """
    outputs = []
    for transpose in (False, True):
        for dims in ((), (-1,), (-2,), (-2, -1)):
            t = x.transpose(-2, -1) if transpose else x
            t = t.flip(dims) if dims else t
            y = model(t)
            y = y.flip(dims) if dims else y
            outputs.append(y.transpose(-2, -1) if transpose else y)
    return torch.stack(outputs).mean(0)
