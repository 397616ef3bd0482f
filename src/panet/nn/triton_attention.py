"""Pyramid attention as one fused Triton kernel (issue 21): the forward pass, for inference.

One program takes a block of query pixels of one sample and streams every key of every pyramid level past them:

* it gathers the 3x3 query patch and each 3x3 key and value patch straight from the embedded feature maps, with the
  release's zero padding, so keys and values never exist at 9x their size (no unfold);
* scores are the sum of nine (pixel, channel) dot products per patch pair, divided by the key patch's norm (a box
  sum of squared norms, computed beforehand like the factorised path), with an online softmax over all levels;
  in exact mode in fp32 (``input_precision="ieee"``: no TF32), else with bf16/fp16 operands;
* the value is accumulated as 9 offsets x C channels, one accumulator per offset, written out as the unfolded
  (B, C*9, N) patches that ``F.fold`` pastes back (the release's overlap-add, divided by 4).

Hard attention (the release's ``average=False``) keeps, instead of a softmax, the running maximum and the sum of
the values that reach it (multi-hot on exact ties).

No backward yet: :func:`triton_pyramid_attention` refuses inputs that need gradients. Without a GPU the kernel
runs in Triton's interpreter (``TRITON_INTERPRET=1`` set before triton is imported, CPU tensors), which is how the
tests check it against the float64 oracle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # the optional "triton" extra
    triton = None
    tl = None

__all__ = ["triton_available", "triton_pyramid_attention"]

PATCH = 3


def triton_available() -> bool:
    """Whether the fused kernel can run here: triton importable (on CUDA tensors, or on CPU tensors through the
    interpreter)."""
    return triton is not None


if triton is not None:
    # The nine offsets' lines stay one per line: split as the formatter would, they are unreadable.
    # fmt: off

    @triton.jit
    def _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, DY: tl.constexpr, DX: tl.constexpr):
        """(BLOCK_M, CQ) query pixels at offset (DY, DX) from each query, zero outside the map."""
        yy = y + DY
        xx = x + DX
        ok = m_mask & (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        ptrs = q_ptr + b * s_qb + c[None, :] * s_qc + (yy * width + xx)[:, None]
        return tl.load(ptrs, mask=ok[:, None] & c_mask[None, :], other=0.0)

    @triton.jit
    def _level_tile(
        ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, DY: tl.constexpr, DX: tl.constexpr, KEYS: tl.constexpr
    ):
        """Key (CQ, BLOCK_N) or value (BLOCK_N, C) pixels of one level at offset (DY, DX), zero outside the level."""
        yy = ly + DY
        xx = lx + DX
        ok = n_mask & (yy >= 0) & (yy < hl) & (xx >= 0) & (xx < wl)
        pixel = start + yy * wl + xx
        if KEYS:
            return tl.load(ptr + b * s_b + c[:, None] * s_c + pixel[None, :], mask=c_mask[:, None] & ok[None, :], other=0.0)
        return tl.load(ptr + b * s_b + c[None, :] * s_c + pixel[:, None], mask=ok[:, None] & c_mask[None, :], other=0.0)

    @triton.jit
    def _dot(a, b, acc, IEEE: tl.constexpr, LOW: tl.constexpr):
        if LOW is not None:
            return tl.dot(a.to(LOW), b.to(LOW), acc)
        if IEEE:
            return tl.dot(a, b, acc, input_precision="ieee")
        return tl.dot(a, b, acc)

    @triton.jit
    def _pyramid_attention_forward(
        q_ptr, k_ptr, v_ptr, norm_ptr, meta_ptr, out_ptr,
        height, width, n_queries, channels_qk, channels_v,
        s_qb, s_qc, s_kb, s_kc, s_vb, s_vc, s_nb, s_ob, s_oc,
        LEVELS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CQ: tl.constexpr, CV: tl.constexpr,
        HARD: tl.constexpr, IEEE: tl.constexpr, LOW: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        b = tl.program_id(1)
        m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        m_mask = m < n_queries
        y = m // width
        x = m % width
        cq = tl.arange(0, CQ)
        cq_mask = cq < channels_qk
        cv = tl.arange(0, CV)
        cv_mask = cv < channels_v
        # the nine query tiles, gathered once
        q0 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, -1, -1)
        q1 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, -1, 0)
        q2 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, -1, 1)
        q3 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, 0, -1)
        q4 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, 0, 0)
        q5 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, 0, 1)
        q6 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, 1, -1)
        q7 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, 1, 0)
        q8 = _query_tile(q_ptr, b, y, x, m_mask, cq, cq_mask, height, width, s_qb, s_qc, 1, 1)
        m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        l_i = tl.zeros((BLOCK_M,), tl.float32)
        a0 = tl.zeros((BLOCK_M, CV), tl.float32)
        a1 = tl.zeros((BLOCK_M, CV), tl.float32)
        a2 = tl.zeros((BLOCK_M, CV), tl.float32)
        a3 = tl.zeros((BLOCK_M, CV), tl.float32)
        a4 = tl.zeros((BLOCK_M, CV), tl.float32)
        a5 = tl.zeros((BLOCK_M, CV), tl.float32)
        a6 = tl.zeros((BLOCK_M, CV), tl.float32)
        a7 = tl.zeros((BLOCK_M, CV), tl.float32)
        a8 = tl.zeros((BLOCK_M, CV), tl.float32)
        for level in range(LEVELS):
            start = tl.load(meta_ptr + 3 * level)
            hl = tl.load(meta_ptr + 3 * level + 1)
            wl = tl.load(meta_ptr + 3 * level + 2)
            for n0 in range(0, hl * wl, BLOCK_N):
                n = n0 + tl.arange(0, BLOCK_N)
                n_mask = n < hl * wl
                ly = n // wl
                lx = n % wl
                s = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
                s = _dot(q0, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, -1, -1, True), s, IEEE, LOW)
                s = _dot(q1, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, -1, 0, True), s, IEEE, LOW)
                s = _dot(q2, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, -1, 1, True), s, IEEE, LOW)
                s = _dot(q3, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, 0, -1, True), s, IEEE, LOW)
                s = _dot(q4, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, 0, 0, True), s, IEEE, LOW)
                s = _dot(q5, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, 0, 1, True), s, IEEE, LOW)
                s = _dot(q6, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, 1, -1, True), s, IEEE, LOW)
                s = _dot(q7, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, 1, 0, True), s, IEEE, LOW)
                s = _dot(q8, _level_tile(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc, 1, 1, True), s, IEEE, LOW)
                norm = tl.load(norm_ptr + b * s_nb + start + n, mask=n_mask, other=1.0)
                s = s / norm[None, :]
                s = tl.where(n_mask[None, :], s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))
                if HARD:  # keep the values at the running maximum (restart where it rose)
                    alpha = (m_i == m_new).to(tl.float32)
                    p = (s == m_new[:, None]).to(tl.float32)
                else:
                    alpha = tl.exp(m_i - m_new)
                    p = tl.exp(s - m_new[:, None])
                l_i = l_i * alpha + tl.sum(p, 1)
                m_i = m_new
                a0 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, -1, -1, False), a0 * alpha[:, None], IEEE, LOW)
                a1 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, -1, 0, False), a1 * alpha[:, None], IEEE, LOW)
                a2 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, -1, 1, False), a2 * alpha[:, None], IEEE, LOW)
                a3 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, 0, -1, False), a3 * alpha[:, None], IEEE, LOW)
                a4 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, 0, 0, False), a4 * alpha[:, None], IEEE, LOW)
                a5 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, 0, 1, False), a5 * alpha[:, None], IEEE, LOW)
                a6 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, 1, -1, False), a6 * alpha[:, None], IEEE, LOW)
                a7 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, 1, 0, False), a7 * alpha[:, None], IEEE, LOW)
                a8 = _dot(p, _level_tile(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc, 1, 1, False), a8 * alpha[:, None], IEEE, LOW)
        if HARD:  # the release sums the values of tied maxima
            scale = tl.full((BLOCK_M,), 1.0, tl.float32)
        else:
            scale = 1.0 / l_i
        # unfolded layout (B, C*9, N): channel c, offset o at row c*9 + o, as F.fold reads it
        base = out_ptr + b * s_ob + (cv * 9)[None, :] * s_oc + m[:, None]
        mask = m_mask[:, None] & cv_mask[None, :]
        tl.store(base + 0 * s_oc, a0 * scale[:, None], mask=mask)
        tl.store(base + 1 * s_oc, a1 * scale[:, None], mask=mask)
        tl.store(base + 2 * s_oc, a2 * scale[:, None], mask=mask)
        tl.store(base + 3 * s_oc, a3 * scale[:, None], mask=mask)
        tl.store(base + 4 * s_oc, a4 * scale[:, None], mask=mask)
        tl.store(base + 5 * s_oc, a5 * scale[:, None], mask=mask)
        tl.store(base + 6 * s_oc, a6 * scale[:, None], mask=mask)
        tl.store(base + 7 * s_oc, a7 * scale[:, None], mask=mask)
        tl.store(base + 8 * s_oc, a8 * scale[:, None], mask=mask)

    # fmt: on


def _block(size: int) -> int:
    """The power of two (at least 16, tl.dot's minimum) that holds ``size``."""
    return max(16, 1 << max(size - 1, 0).bit_length())


def triton_pyramid_attention(
    x: Tensor,
    pyramid: list[Tensor],
    embed_query: Callable[[Tensor], Tensor],
    embed_key: Callable[[Tensor], Tensor],
    embed_value: Callable[[Tensor], Tensor],
    *,
    softmax_scale: float,
    norm_eps: float,
    hard: bool = False,
    low_dtype: torch.dtype | None = None,
    block_m: int = 32,
    block_n: int = 32,
) -> Tensor:
    """The attention part of :func:`panet.nn.attention.pyramid_attention` by the fused kernel: the pasted
    (B, C, H, W) map, divided by 4. ``pyramid``: the levels (x itself, then its resized copies) that keys and
    values come from. ``low_dtype`` (bf16/fp16): the kernel's
    dot products take operands in that dtype (fp32 accumulation); None: exact fp32 (no TF32)."""
    if triton is None:
        raise RuntimeError("backend 'triton' needs the triton package (pip install 'panet[triton]')")
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in _parameters(embed_query))):
        raise NotImplementedError("backend 'triton' has no backward yet: use it for inference (torch.no_grad())")
    b, _, h, w = x.shape
    sizes = [(level.shape[-2], level.shape[-1]) for level in pyramid]
    dtype = torch.float32
    with torch.autocast(x.device.type, enabled=False):
        queries = (embed_query(x).to(dtype) * softmax_scale).contiguous()
        keys, values, norms = [], [], []
        for level in pyramid:
            level = level.to(dtype)
            k = embed_key(level).to(dtype)
            squared = F.avg_pool2d(k.square().sum(1, keepdim=True), PATCH, 1, 1, count_include_pad=True) * 9
            norms.append(squared.sqrt().clamp_min(norm_eps).flatten(1))
            keys.append(k.flatten(2))
            values.append(embed_value(level).to(dtype).flatten(2))
        keys_t = torch.cat(keys, 2).contiguous()  # (B, Cq, L): levels side by side, row-major
        values_t = torch.cat(values, 2).contiguous()  # (B, C, L)
        norm = torch.cat(norms, 1).contiguous()  # (B, L)
        starts = [0]
        for hl, wl in sizes[:-1]:
            starts.append(starts[-1] + hl * wl)
        meta = torch.tensor(
            [v for (hl, wl), s in zip(sizes, starts) for v in (s, hl, wl)], dtype=torch.int32, device=x.device
        )
        cq, cv, n = queries.shape[1], values_t.shape[1], h * w
        out = torch.empty(b, cv * 9, n, dtype=dtype, device=x.device)
        low = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}.get(low_dtype) if low_dtype else None
        grid = (triton.cdiv(n, block_m), b)
        _pyramid_attention_forward[grid](
            queries, keys_t, values_t, norm, meta, out,
            h, w, n, cq, cv,
            queries.stride(0), queries.stride(1), keys_t.stride(0), keys_t.stride(1),
            values_t.stride(0), values_t.stride(1), norm.stride(0), out.stride(0), out.stride(1),
            LEVELS=len(sizes), BLOCK_M=block_m, BLOCK_N=block_n, CQ=_block(cq), CV=_block(cv),
            HARD=hard, IEEE=low is None, LOW=low,
        )  # fmt: skip
        return F.fold(out, (h, w), PATCH, padding=1) / 4


def _parameters(module) -> list[Tensor]:
    return list(module.parameters()) if isinstance(module, torch.nn.Module) else []
