"""The pyramid-attention block written plainly, as the release computes it: materialised N x L scores.

Written independently of :mod:`panet.nn.attention`: the pyramid uses the release's own call (``scale_factor``
with ``recompute_scale_factor=True``), scores are one full matrix, the softmax is ``torch.softmax``. It needs
O(N L) memory (about 170 GB for a 256x256 map), so it is for reading and checking: the oracle of the tests and the
baseline of ``benchmarks/attention.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_pyramid_attention(
    x, query, key, value, *, levels=5, softmax_scale=10.0, res_scale=1.0, hard=False, norm_eps=1e-4
):
    """``attention(x) + res_scale * x`` with the embeddings ``query``, ``key``, ``value`` (see
    :func:`panet.pyramid_attention` for the arguments)."""
    _b, _c, h, w = x.shape
    q = F.unfold(query(x), 3, padding=1)  # (B, dk, N)
    keys, values = [], []
    for i in range(levels):
        s = 1 - i / 10
        ref = (
            x
            if i == 0
            else F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False, recompute_scale_factor=True)
        )
        keys.append(F.unfold(key(ref), 3, padding=1))
        values.append(F.unfold(value(ref), 3, padding=1))
    k = torch.cat(keys, 2)  # (B, dk, L)
    v = torch.cat(values, 2)  # (B, dv, L)
    k = k / torch.clamp(k.norm(dim=1, keepdim=True), min=norm_eps)
    scores = torch.einsum("bdn,bdl->bnl", q, k) * softmax_scale  # (B, N, L) materialised
    attn = torch.softmax(scores, dim=2)
    if hard:
        attn = (attn == attn.amax(dim=2, keepdim=True)).to(x.dtype)
    out = torch.einsum("bnl,bdl->bdn", attn, v)
    return F.fold(out, (h, w), 3, padding=1) / 4 + res_scale * x


def reference_module(module, x):
    """Run the reference with the weights (and settings) of a :class:`panet.PyramidAttention`."""
    return reference_pyramid_attention(
        x,
        module.query,
        module.key,
        module.value,
        levels=module.levels,
        softmax_scale=module.softmax_scale,
        res_scale=module.res_scale,
        hard=module.hard,
        norm_eps=module.norm_eps,
    )
