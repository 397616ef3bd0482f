"""Where did the pyramid attention take its signal from? Per-level attention maps for one pixel.

    >>> import numpy as np, panet
    >>> from panet.inference.explain import attention_for_pixel
    >>> net = panet.create_model("panet-dn-s")                     # random weights, for the shapes
    >>> image = np.random.default_rng(0).random((40, 48, 3), dtype=np.float32)
    >>> result = attention_for_pixel(net, image, y=20, x=24)
    >>> [round(s, 3) for s in result.shares][:1], len(result.maps)  # doctest: +SKIP
    ([0.21], 5)

The PA block's query is the 3x3 patch of query embeddings centred on the pixel (in the block's feature map,
which is the input's resolution for PANet and the LR resolution for PA-EDSR); the map of level i holds its
softmax weight for every key patch of that level (all levels together sum to 1), and ``shares[i]`` is the mass of
level i. The output pixel itself also receives the pasted patches of its 8 neighbouring queries; the centre query
is the one aligned with it. Attention is computed on ``window`` x ``window`` input pixels around the pixel (the
whole image when smaller), as a tiled restore would see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from panet.nn.attention import PATCH, _resize, pyramid_scales, pyramid_sizes


class _BlockInputCaptured(Exception):
    pass


@dataclass
class PixelAttention:
    shares: list[float]  # attention mass per level (scale 1.0, 0.9, ...)
    maps: list[np.ndarray]  # per level, (h_l, w_l) weights over key patch centres
    scales: list[float]
    window: tuple[int, int, int, int]  # top, left, height, width of the analysed input window
    position: tuple[int, int]  # the pixel inside the window (feature-map coordinates)


def attention_for_pixel(model, image: np.ndarray, *, y: int, x: int, window: int = 128) -> PixelAttention:
    """Attention of ``model``'s PA block for input pixel (``y``, ``x``) of ``image`` (float HxWxC in [0, 1])."""
    block = getattr(model, "attention", None)
    if block is None:
        raise ValueError("this network has no attention block")
    h, w = image.shape[:2]
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"pixel ({x}, {y}) is outside the {w}x{h} image")
    if image.shape[2] != model.colors:
        raise ValueError(f"the network takes {model.colors} channel(s), the image has {image.shape[2]}")
    top, left = max(0, min(y - window // 2, h - window)), max(0, min(x - window // 2, w - window))
    crop = image[top : top + window, left : left + window]
    captured: dict[str, torch.Tensor] = {}

    def capture(module, args):
        captured["x"] = args[0].detach()
        raise _BlockInputCaptured  # the rest of the network (the attention itself included) is not needed

    hook = block.register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float())
    except _BlockInputCaptured:
        pass
    finally:
        hook.remove()
    feats = captured["x"]
    fh, fw = feats.shape[-2:]
    # feature-map coordinates (PA-EDSR's block runs at the input's resolution too: it upsamples after the body)
    py, px = min(y - top, fh - 1), min(x - left, fw - 1)
    with torch.no_grad():
        query = F.unfold(block.query(feats), PATCH, padding=1)[0, :, py * fw + px]  # (C/r * 9,)
        sizes = pyramid_sizes(fh, fw, block.levels)
        scores = []
        for size in sizes:
            keys = F.unfold(block.key(_resize(feats, size)), PATCH, padding=1)[0]  # (C/r * 9, L_i)
            keys = keys / keys.norm(dim=0, keepdim=True).clamp_min(block.norm_eps)
            scores.append(query @ keys)
        flat = torch.cat(scores)
        if block.hard:
            weights = (flat >= flat.max()).float()
            weights = weights / weights.sum()
        else:
            weights = torch.softmax(block.softmax_scale * flat, dim=0)
    maps, shares, start = [], [], 0
    for hl, wl in sizes:
        part = weights[start : start + hl * wl]
        maps.append(part.view(hl, wl).numpy())
        shares.append(float(part.sum()))
        start += hl * wl
    return PixelAttention(
        shares, maps, pyramid_scales(block.levels), (top, left, crop.shape[0], crop.shape[1]), (py, px)
    )


def render(image: np.ndarray, result: PixelAttention, path, *, cell: int = 192) -> None:
    """One panel per level: the analysed window in gray with the level's attention as a heat map (each panel
    scaled to its own maximum), its share of the attention mass, and the pixel marked."""
    from PIL import Image, ImageDraw

    from panet.files import atomic_write

    top, left, hh, ww = result.window
    crop = image[top : top + hh, left : left + ww]
    gray = crop.mean(axis=2) if crop.shape[2] > 1 else crop[:, :, 0]
    zoom = cell / max(hh, ww)
    size = (max(1, round(ww * zoom)), max(1, round(hh * zoom)))
    base = Image.fromarray(np.uint8(np.clip(gray, 0, 1) * 255)).resize(size, Image.Resampling.BILINEAR)
    panels = []
    for scale, share, heat in zip(result.scales, result.shares, result.maps):
        norm = heat / heat.max() if heat.max() > 0 else heat
        heat_img = Image.fromarray(np.uint8(norm * 255)).resize(size, Image.Resampling.BILINEAR)
        h = np.asarray(heat_img, dtype=np.float32) / 255.0
        b = np.asarray(base, dtype=np.float32)[:, :, None] / 255.0 * 0.6
        rgb = np.concatenate([b + 0.8 * h[:, :, None] * np.array([1.0, 0.35, 0.0])], axis=2)
        panel = Image.fromarray(np.uint8(np.clip(rgb, 0, 1) * 255))
        canvas = Image.new("RGB", (size[0], size[1] + 18), (255, 255, 255))
        canvas.paste(panel, (0, 18))
        draw = ImageDraw.Draw(canvas)
        draw.text((2, 2), f"scale {scale:.1f}: {100 * share:.1f}%", fill=(0, 0, 0))
        py, px = result.position
        cx, cy = (px + 0.5) * zoom, 18 + (py + 0.5) * zoom
        draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], outline=(0, 255, 255), width=2)
        panels.append(canvas)
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), panels[0].height), (255, 255, 255))
    offset = 0
    for p in panels:
        sheet.paste(p, (offset, 0))
        offset += p.width + 4
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))
