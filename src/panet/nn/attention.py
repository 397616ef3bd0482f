"""Pyramid Attention (Mei et al., 2020), exact and memory-efficient.

The block matches every 3x3 query patch of a feature map against the 3x3 key
patches of a five-level bicubic pyramid of the same map, takes the softmax of
``softmax_scale`` x dot products with L2-normalised keys over *all* keys of
*all* levels, and pastes the attention-weighted value patches back by
overlap-add (divided by 4, as in the release).

The semantics are the authors' release, float for float (see
``shared/reference/release.md`` section 1.2). What differs is how it is
computed. The release materialises an N x L score matrix per sample
(~170 GB for a 256x256 map). Here small maps (restore tiles, training
patches) take a factorised path: the 3x3 patch sums split into 1x3 row-patch
GEMMs (a third of the work) and shifted adds over each sample's score matrix
(:func:`runs_factorised`). Larger maps run a tiled kernel: queries and keys
in tiles with a fixed per-query softmax stabiliser, memory O(N*d) plus one
bounded tile, and a backward that recomputes the tiles (flash-attention
style) instead of storing them; or, on CUDA, PyTorch's SDPA.

Example:
    >>> import torch
    >>> from panet.nn.attention import PyramidAttention
    >>> block = PyramidAttention(channels=16, reduction=2)
    >>> block(torch.randn(2, 16, 20, 24)).shape
    torch.Size([2, 16, 20, 24])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from panet.hardware import bf16_matmul_math, native_bf16, split_bf16_scores
from panet.nn import native
from panet.nn.blocks import SingleSlopePReLU

__all__ = [
    "PyramidAttention",
    "patch_attention",
    "pyramid_attention",
    "pyramid_scales",
    "pyramid_sizes",
    "runs_factorised",
]

PATCH = 3  # the release's patch size; its transposed conv hard-codes padding 1
# How far a score may exceed its row's running stabiliser before the row is
# rescaled (exp(20) ~ 5e8: sums of millions of such terms stay finite in fp32).
_LAG = 20.0
_LAG_SUM = math.exp(_LAG)


def pyramid_scales(levels: int) -> list[float]:
    """Scales of the release's pyramid: 1 - i/10 for i = 0..levels-1."""
    return [1.0 - i / 10 for i in range(levels)]


def pyramid_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Level sizes as PyTorch 1.1 computed them: floor(s * size) in Python doubles."""
    return [(math.floor(float(height) * s), math.floor(float(width) * s)) for s in pyramid_scales(levels)]


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of (B, C, h, w) maps to ``size``, as ``F.interpolate(x, size, mode="bicubic",
    align_corners=False)``: PyTorch's own weights, applied as two small GEMMs (2.6x faster on the pyramid's
    shapes, and closer to float64: 5e-7 against PyTorch's kernel's 1.5e-5). In the input's dtype, never autocast's.
    An explicit size samples with ratio in/out, which is PyTorch 1.1's scale_factor behaviour (newer versions
    sample with 1/s instead)."""
    if size == tuple(x.shape[-2:]):
        return x
    b, c, h, w = x.shape
    rows = _resize_matrix(h, size[0], x.dtype, x.device)
    columns = _resize_matrix(w, size[1], x.dtype, x.device)
    with torch.autocast(x.device.type, enabled=False):
        return torch.matmul(rows, (x.reshape(-1, w) @ columns.t()).view(b, c, h, size[1]))


@functools.lru_cache(maxsize=256)
def _resize_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n_out, n_in): PyTorch's bicubic (align_corners=False) weights along one axis, computed in float64 by
    resizing the unit vectors (bicubic resizing is separable: each output is a row weights x column weights sum)."""
    basis = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, n_in, 1)
    weights = F.interpolate(basis, size=(n_out, 1), mode="bicubic", align_corners=False)[:, 0, :, 0].t()
    return weights.to(dtype=dtype, device=device).contiguous()


# --------------------------------------------------------------------------
# Tiled kernel
# --------------------------------------------------------------------------


def _onednn_available(t: Tensor) -> bool:
    return (
        t.device.type == "cpu"
        and t.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def _splits_scores(dtype: torch.dtype, pv_dtype: torch.dtype | None, device: torch.device) -> bool:
    """Whether fp32 scores run as split bf16 GEMMs (:func:`_split`): only where the other products run in
    bf16 anyway (autocast or the fast mode; plain fp32 stays IEEE fp32) and the CPU measured it faster
    (:func:`panet.hardware.split_bf16_scores`: AMX)."""
    return dtype == torch.float32 and pv_dtype == torch.bfloat16 and device.type == "cpu" and split_bf16_scores(device)


def _split(x: Tensor, queries: bool, out: Tensor | None = None) -> Tensor:
    """(n, d) fp32 -> (n, 3d): [hi, hi, lo] for queries, [hi, lo, hi] for keys, where hi is x with its mantissa cut
    to bf16's 8 bits (exactly a bf16 value) and lo = x - hi (exact in fp32; bf16 math rounds it). One GEMM of the
    two under :func:`panet.hardware.bf16_matmul_math` then sums hi.hi + hi.lo + lo.hi in fp32, the product to ~1e-5
    relative (fp32: ~1e-6); only lo.lo is dropped. ``out``: a reused (n, 3d) buffer (fresh 10-30 MB buffers per
    sample cost more in page faults than the split GEMM saves)."""
    n, d = x.shape
    parts = (out if out is not None else x.new_empty(n, 3 * d)).view(n, 3, d)
    hi, second, third = parts.unbind(1)
    torch.bitwise_and(x.view(torch.int32), -65536, out=hi.view(torch.int32))
    torch.sub(x, hi, out=third if queries else second)
    (second if queries else third).copy_(hi)
    return parts.view(n, 3 * d)


class _Gemm:
    """``x @ w.T`` for a weight tile reused across many query blocks.

    On CPU fp32 the weight is pre-packed once for oneDNN, which runs these
    shapes faster than MKL's ``mm`` (the AVX-512 path; see performance.md).
    Elsewhere it is a plain ``mm``.
    """

    __slots__ = ("packed", "w")

    def __init__(self, w: Tensor, rows_hint: int, onednn: bool):
        self.w = w
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), rows_hint) if onednn else None

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, None, "none", [], "")
        return torch.mm(x, self.w.t())


def _soft_forward(q: Tensor, scale: float, kt: Tensor, vt: Tensor, qb: int, kb: int, pv_dtype, out: Tensor) -> Tensor:
    """Softmax attention of one sample: writes the (N, dv) output into ``out``, returns the (N,) log-sum-exp.

    q (N, dk) queries (any strides), scale the softmax scale, kt (dk, L) keys and vt (dv, L) values, both
    transposed (the layout F.unfold returns).
    Online softmax over key tiles. Each row's stabiliser m rides in the score
    GEMM as an extra feature ([qs, -m] . [k, 1] = score - m) and is raised only
    when a tile exceeds it by more than _LAG, so most tiles need no rescaling
    pass; exponents stay <= _LAG, far from fp32 overflow, and m is always an
    observed score, so the dominant terms never underflow.
    Only the first key tile takes a row maximum (to set m). Later tiles are
    exponentiated in place straight away: a tile whose row sums stay below
    exp(_LAG) cannot hold a score above m + _LAG (a sum bounds each of its
    terms), so only a block that fails that check (rare) recomputes its scores
    and takes the maximum. The result is the same as taking the maximum of
    every tile. Row sums are of the fp32 exponentials, also when the weighted
    sum runs in low precision.
    """
    n, n_keys, _dv = q.shape[0], kt.shape[1], vt.shape[0]
    onednn = _onednn_available(q)
    low_precision = pv_dtype is not None and pv_dtype != q.dtype
    # [scale * q, -m]: the scaled queries are written straight into the GEMM operand (no separate copy)
    qa = q.new_empty(n, q.shape[1] + 1)
    torch.mul(q, scale, out=qa[:, :-1])
    qa[:, -1] = 0
    ones = q.new_ones(min(kb, n_keys), 1)
    acc = out.zero_()
    rowsum = q.new_zeros(n)
    p_dtype = pv_dtype if low_precision else q.dtype
    # low precision: exp runs in place on the fp32 scores, then one copy narrows them into this reused buffer
    p_buffer = torch.empty(min(qb, n) * min(kb, n_keys), dtype=p_dtype, device=q.device) if low_precision else None
    for k0 in range(0, n_keys, kb):
        k1 = min(k0 + kb, n_keys)
        score = _Gemm(torch.cat([kt[:, k0:k1].t(), ones[: k1 - k0]], 1), qb, onednn)
        v_tile = vt[:, k0:k1].to(p_dtype)
        # oneDNN packs bf16 weights only on CPUs with native bf16 (not on AVX2-only ones): else torch.mm
        packable = not low_precision or (pv_dtype == torch.bfloat16 and native_bf16(q.device))
        value = _Gemm(v_tile, qb, onednn and packable)
        for q0 in range(0, n, qb):
            q1 = min(q0 + qb, n)
            s = score(qa[q0:q1])
            settled = False
            if k0 > 0:
                tile_sum = s.exp_().sum(1)
                settled = not bool((tile_sum > _LAG_SUM).any())
                if not settled:  # rare: some score may exceed m + _LAG, check properly
                    s = score(qa[q0:q1])  # exp overwrote the scores: the same GEMM gives them back exactly
            if not settled:
                top = s.amax(1)
                if k0 == 0:
                    shift = top
                else:  # raise m only where a score passed it by more than _LAG (a zero shift changes nothing)
                    shift = torch.where(top > _LAG, top, torch.zeros_like(top))
                    factor = torch.exp(-shift)
                    acc[q0:q1] *= factor[:, None]
                    rowsum[q0:q1] *= factor
                s.sub_(shift[:, None])
                qa[q0:q1, -1] -= shift
                tile_sum = s.exp_().sum(1)
            rowsum[q0:q1] += tile_sum
            if low_precision:
                p = p_buffer[: s.numel()].view(s.shape)  # type: ignore[index]  # allocated when low_precision
                p.copy_(s)
                acc[q0:q1] += value(p).to(acc.dtype)
            else:
                acc[q0:q1] += value(s)
    acc.div_(rowsum[:, None])
    return rowsum.log_().sub_(qa[:, -1])


def _row_max(qs: Tensor, kt: Tensor, qb: int, kb: int) -> Tensor:
    """max_l qs.k_l per row, tile by tile (plain GEMM, reproducible by _hard_hits)."""
    best = qs.new_full((qs.shape[0],), -math.inf)
    for k0 in range(0, kt.shape[1], kb):
        for q0 in range(0, qs.shape[0], qb):
            q1 = min(q0 + qb, qs.shape[0])
            k_tile = kt[:, k0 : k0 + kb].to(qs.dtype)
            torch.maximum(best[q0:q1], torch.mm(qs[q0:q1], k_tile).amax(1), out=best[q0:q1])
    return best


def _hard_forward(qs: Tensor, kt: Tensor, vt: Tensor, qb: int, kb: int) -> tuple[Tensor, Tensor]:
    """One-hot (multi-hot on exact ties) attention, the release's ``average=False``."""
    # Maximum and hits use the same plain GEMM on the same tiles, so the
    # comparison sees bit-identical scores.
    best = _row_max(qs, kt, qb, kb)
    out = qs.new_zeros(qs.shape[0], vt.shape[0])
    for k0 in range(0, kt.shape[1], kb):
        k1 = min(k0 + kb, kt.shape[1])
        for q0 in range(0, qs.shape[0], qb):
            q1 = min(q0 + qb, qs.shape[0])
            out[q0:q1].addmm_(_hard_hits(qs[q0:q1], kt[:, k0:k1], best[q0:q1]), vt[:, k0:k1].t().to(qs.dtype))
    return out, best


def _hard_hits(qs: Tensor, kt_tile: Tensor, best: Tensor) -> Tensor:
    return (torch.mm(qs, kt_tile.to(qs.dtype)) >= best[:, None]).to(qs.dtype)


class _PatchAttention(torch.autograd.Function):
    """Keys and values may be narrower than the queries (bf16 from autocast convolutions): they are widened tile by
    tile, exactly, instead of as whole (B, C*9, L) copies; their gradients are accumulated in the queries' dtype and
    returned in their own."""

    @staticmethod
    def forward(ctx, q, kt, vt, softmax_scale, hard, qb, kb, pv_dtype):
        # Even query blocks (576 queries: 2 x 288, not 512 + 64): a thin last block runs its GEMMs far below peak.
        n = q.shape[1]
        if n:
            qb = math.ceil(n / math.ceil(n / qb))
        low = pv_dtype if pv_dtype is not None and pv_dtype != q.dtype and not hard else None
        # The values only ever enter low-precision products: convert them once, and keep the narrow copy.
        v_used = vt.to(low) if low is not None else vt
        # written sample by sample in place (stacking per-sample results would hold the output twice)
        out = q.new_empty(q.shape[0], n, vt.shape[1])
        stat = q.new_empty(q.shape[0], n)
        for b in range(q.shape[0]):
            if hard:
                o, stat[b] = _hard_forward(q[b] * softmax_scale, kt[b], v_used[b], qb, kb)
                out[b] = o
            else:
                stat[b] = _soft_forward(q[b], softmax_scale, kt[b], v_used[b], qb, kb, pv_dtype, out[b])
        # the queries are saved unscaled (scaling again in backward is cheap; inference then never holds a copy)
        ctx.save_for_backward(q, kt, v_used, out, stat)
        ctx.softmax_scale, ctx.hard, ctx.qb, ctx.kb = softmax_scale, hard, qb, kb
        ctx.low_dtype, ctx.value_dtype = low, vt.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, kt, vt, out, stat = ctx.saved_tensors
        qs = (q * ctx.softmax_scale).contiguous()
        qb, kb, hard = ctx.qb, ctx.kb, ctx.hard
        grad_out = grad_out.contiguous()
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        dvt = torch.empty(vt.shape, dtype=ctx.value_dtype, device=vt.device)
        dq = dkt = None
        if hard:
            for b in range(qs.shape[0]):
                dv = qs.new_zeros(vt.shape[1:])
                _hard_backward(qs[b], kt[b], stat[b], grad_out[b], dv, qb, kb)
                dvt[b] = dv
        else:
            dq, dkt = torch.zeros_like(qs), torch.empty_like(kt)
            # D_i = sum_l P_il dP_il = dO_i . O_i (the flash-attention identity)
            delta = (grad_out * out).sum(-1)
            for b in range(qs.shape[0]):
                # every key column of dkt[b] and dvt[b] is written exactly once (sums stay in the compute dtype)
                _soft_backward(
                    qs[b], kt[b], vt[b], stat[b], grad_out[b], delta[b], dq[b], dkt[b], dvt[b], qb, kb, ctx.low_dtype
                )
            dq.mul_(ctx.softmax_scale)
        return (dq if need_q else None, dkt if need_k else None, dvt if need_v else None, None, None, None, None, None)


_SUM_CHUNK = 1 << 22  # elements of the kept low-precision P (and dS) tiles in _soft_backward_low: 8 MB each in bf16


def _soft_backward(qs, kt, vt, lse, g, delta, dq, dkt, dvt, qb: int, kb: int, low_dtype=None) -> None:
    """Gradients of one sample, recomputing each probability tile (written into dq, dkt, dvt).

    With P = exp(qs.k - lse): dV = P^T dO, dS = P * (dO V^T - D), dQ = dS K, dK = dS^T qs
    (the softmax scale is applied to dQ by the caller and is already inside qs).
    ``low_dtype`` (e.g. bf16): the four products other than the score recomputation run in that
    dtype; scores, exp, D and accumulation stay in the input dtype.
    """
    if low_dtype is not None:
        return _soft_backward_low(qs, kt, vt, lse, g, delta, dq, dkt, dvt, qb, kb, low_dtype)
    n, n_keys = qs.shape[0], kt.shape[1]
    onednn = _onednn_available(qs)
    qa = torch.cat([qs, -lse[:, None]], 1)  # [qs, -lse] . [k, 1] = log P
    ga = torch.cat([g, -delta[:, None]], 1)  # [dO, -D] . [v, 1] = dP - D
    g_t, qs_t = g.t(), qs.t()
    ones = qs.new_ones(min(kb, n_keys), 1)
    for k0 in range(0, n_keys, kb):
        k1 = min(k0 + kb, n_keys)
        k_tile = kt[:, k0:k1]
        log_p = _Gemm(torch.cat([k_tile.t(), ones[: k1 - k0]], 1), qb, onednn)
        dp_minus_d = _Gemm(torch.cat([vt[:, k0:k1].t(), ones[: k1 - k0]], 1), qb, onednn)
        to_dq = _Gemm(k_tile.to(qs.dtype), qb, onednn)
        dv_tile = qs.new_zeros(vt.shape[0], k1 - k0)
        dk_tile = qs.new_zeros(kt.shape[0], k1 - k0)
        for q0 in range(0, n, qb):
            q1 = min(q0 + qb, n)
            p = log_p(qa[q0:q1]).exp_()
            dv_tile.addmm_(g_t[:, q0:q1], p)
            ds = p.mul_(dp_minus_d(ga[q0:q1]))
            dq[q0:q1] += to_dq(ds)
            dk_tile.addmm_(qs_t[:, q0:q1], ds)
        dvt[:, k0:k1] = dv_tile
        dkt[:, k0:k1] = dk_tile


def _soft_backward_low(qs, kt, vt, lse, g, delta, dq, dkt, dvt, qb: int, kb: int, low) -> None:
    """_soft_backward with dV, dP, dQ and dK as ``low``-precision GEMMs (about 2x faster in bf16 on a CPU with
    bf16 units); the exponent of each recomputed score still comes from a full-precision GEMM.

    dV and dK sum over queries: the low-precision P and dS tiles of up to ``_SUM_CHUNK`` elements are kept so
    that each is one long GEMM (accumulating in fp32 inside, rounding once) instead of one per query block.
    """
    n, n_keys = qs.shape[0], kt.shape[1]
    onednn = _onednn_available(qs)
    qa = torch.cat([qs, -lse[:, None]], 1)  # [qs, -lse] . [k, 1] = log P
    g_low = g.to(low)
    g_low_t, qs_low_t = g_low.t(), qs.t().to(low)
    ones = qs.new_ones(min(kb, n_keys), 1)
    chunk = max(qb, _SUM_CHUNK // min(kb, n_keys) // qb * qb)
    for k0 in range(0, n_keys, kb):
        k1 = min(k0 + kb, n_keys)
        log_p = _Gemm(torch.cat([kt[:, k0:k1].t(), ones[: k1 - k0]], 1), qb, onednn)
        v_low = vt[:, k0:k1].to(low)
        k_low_t = kt[:, k0:k1].t().to(low)
        dv_sum = dk_sum = None
        for c0 in range(0, n, chunk):
            c1 = min(c0 + chunk, n)
            p_low = torch.empty(c1 - c0, k1 - k0, dtype=low, device=qs.device)
            ds_low = torch.empty_like(p_low)
            for q0 in range(c0, c1, qb):
                q1 = min(q0 + qb, c1)
                p = log_p(qa[q0:q1]).exp_()
                p_low[q0 - c0 : q1 - c0] = p
                dp = torch.mm(g_low[q0:q1], v_low).to(qs.dtype).sub_(delta[q0:q1, None])  # dP - D, D in full precision
                torch.mul(p, dp, out=ds_low[q0 - c0 : q1 - c0])
                dq[q0:q1] += torch.mm(ds_low[q0 - c0 : q1 - c0], k_low_t)
            dv = torch.mm(g_low_t[:, c0:c1], p_low)
            dk = torch.mm(qs_low_t[:, c0:c1], ds_low)
            if c1 == n and c0 == 0:
                dv_sum, dk_sum = dv, dk
            elif dv_sum is None:
                dv_sum, dk_sum = dv.to(qs.dtype), dk.to(qs.dtype)
            else:
                dv_sum += dv
                dk_sum += dk  # type: ignore[operator]  # set with dv_sum
        dvt[:, k0:k1] = dv_sum
        dkt[:, k0:k1] = dk_sum


def _hard_backward(qs, kt, best, g, dvt, qb: int, kb: int) -> None:
    """One-hot attention: only the values get gradients (dV = hits^T dO)."""
    for k0 in range(0, kt.shape[1], kb):
        k1 = min(k0 + kb, kt.shape[1])
        for q0 in range(0, qs.shape[0], qb):
            q1 = min(q0 + qb, qs.shape[0])
            dvt[:, k0:k1].addmm_(g[q0:q1].t(), _hard_hits(qs[q0:q1], kt[:, k0:k1], best[q0:q1]))


@torch.compiler.disable
def _patch_attention_kernel(q, kt, vt, softmax_scale, hard, qb, kb, pv_dtype):
    return _PatchAttention.apply(q, kt, vt, softmax_scale, hard, qb, kb, pv_dtype)


def _widens_exactly(src: torch.dtype, dst: torch.dtype) -> bool:
    return dst == torch.float32 and src in (torch.bfloat16, torch.float16)


def patch_attention(
    queries: Tensor,
    keys_t: Tensor,
    values_t: Tensor,
    *,
    softmax_scale: float = 10.0,
    hard: bool = False,
    query_block: int = 512,
    key_block: int = 2048,
    pv_dtype: torch.dtype | None = None,
) -> Tensor:
    """softmax(softmax_scale * Q K^T) V, computed in tiles, never materialising N x L.

    Args:
        queries: (B, N, dk).
        keys_t: (B, dk, L): keys *transposed* (the layout ``F.unfold`` returns),
            already normalised as the caller wants them.
        values_t: (B, dv, L): values, transposed likewise.
        hard: one-hot attention on the maximum score (ties give multi-hot), as the
            release's ``average=False``; gradients then reach the values only.
        query_block, key_block: tile size; peak extra memory is about
            ``4 * query_block * key_block`` bytes plus the packed tiles.
        pv_dtype: dtype of the attention-weighted sum and of the backward's products
            other than the score recomputation (e.g. ``torch.bfloat16``: the opt-in
            fast mode). Scores, softmax and accumulation stay in the input dtype.
            Under autocast it defaults to the autocast dtype.

    Returns:
        (B, N, dv) in the input dtype; under autocast in float32, with scores and
        softmax in float32 and the other products in the autocast dtype.
    """
    if queries.dim() != 3 or keys_t.dim() != 3 or values_t.dim() != 3:
        raise ValueError("patch_attention expects queries (B,N,dk), keys_t (B,dk,L), values_t (B,dv,L)")
    b = queries.shape[0]
    if (
        keys_t.shape[0] != b
        or values_t.shape[0] != b
        or keys_t.shape[1] != queries.shape[2]
        or values_t.shape[2] != keys_t.shape[2]
    ):
        raise ValueError(
            f"shape mismatch: queries {tuple(queries.shape)}, keys_t {tuple(keys_t.shape)}, values_t {tuple(values_t.shape)}"
        )
    if query_block < 1 or key_block < 1:
        raise ValueError("query_block and key_block must be positive")
    dtype = queries.dtype
    if torch.is_autocast_enabled(queries.device.type):
        # exp() of bf16/fp16 scores would err by percents: scores stay fp32, the
        # products that only weigh or sum take the autocast dtype.
        dtype = torch.float32
        if pv_dtype is None:
            pv_dtype = torch.get_autocast_dtype(queries.device.type)
    if not dtype.is_floating_point:
        raise TypeError(f"patch_attention needs floating-point inputs, got {dtype}")
    with torch.autocast(queries.device.type, enabled=False):
        # bf16/fp16 keys and values (autocast convolutions) widen to fp32 exactly: the kernel does it tile by tile
        q = queries.to(dtype)  # any strides: the kernel copies each sample once, scaled, into its GEMM operand
        kt, vt = (
            t.contiguous() if _widens_exactly(t.dtype, dtype) else t.to(dtype).contiguous() for t in (keys_t, values_t)
        )
        return _patch_attention_kernel(
            q, kt, vt, float(softmax_scale), bool(hard), int(query_block), int(key_block), pv_dtype
        )


# --------------------------------------------------------------------------
# The block
# --------------------------------------------------------------------------


def _pyramid_keys_values(x: Tensor, sizes, embed_key, embed_value) -> tuple[Tensor, Tensor]:
    """Unfolded keys and values of all levels, (B, C*9, L) each."""
    levels = (_resize(x, size) for size in sizes)
    if torch.is_grad_enabled():
        # Training: one cat. Slice-assigning into a buffer would make autograd clone the whole
        # (B, C*9, L) gradient once per level in the backward pass.
        pairs = [
            (F.unfold(embed_key(level), PATCH, padding=1), F.unfold(embed_value(level), PATCH, padding=1))
            for level in levels
        ]
        return torch.cat([k for k, _ in pairs], 2), torch.cat([v for _, v in pairs], 2)
    # Inference: straight into one buffer each (a list + cat would hold both copies at once).
    n_keys = sum(hl * wl for hl, wl in sizes)
    buffers: tuple[Tensor, Tensor] | None = None
    start = 0
    for level in levels:
        k_level = F.unfold(embed_key(level), PATCH, padding=1)
        v_level = F.unfold(embed_value(level), PATCH, padding=1)
        if buffers is None:
            buffers = (
                k_level.new_empty(x.shape[0], k_level.shape[1], n_keys),
                v_level.new_empty(x.shape[0], v_level.shape[1], n_keys),
            )
        keys_t, values_t = buffers
        keys_t[:, :, start : start + k_level.shape[2]] = k_level
        values_t[:, :, start : start + v_level.shape[2]] = v_level
        start += k_level.shape[2]
        del k_level, v_level
    assert buffers is not None  # a pyramid has at least one level
    return buffers


# The factorised path computes each sample's whole N x L score matrix (up to five such buffers at a time, forward and
# backward) for maps with at most this many scores. With PyTorch's operations: 64 MB in fp32, maps up to about
# 41x41 (AMD Zen 4, 2 threads: at inference 2x faster than the tiled kernel at 36x36 and 1.5x at 40x40, in training
# 2-2.5x at 24x24-32x32; at 48x48 no faster, its passes over the matrices leave the cache). With the native row
# kernels (panet.nn.native), which pass over each matrix row by row in the cache: 128 MB, maps up to about 57x57
# (Intel Xeon with AMX, 2 threads, bf16 autocast, batch of 16: a training step of the block 1.8x faster than the
# kernel at 48x48, 1.4x at 56x56; at inference 1.5x at 64x64, even at 96x96). Larger maps keep the tiled kernel,
# whose memory stays bounded.
DIRECT_SCORES = 1 << 24
NATIVE_DIRECT_SCORES = 1 << 25


def direct_scores_limit(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> int:
    """The default ``max_direct_scores`` for maps on ``device`` whose scores are computed in ``dtype`` (fp32 under
    autocast): :data:`NATIVE_DIRECT_SCORES` where the native row kernels run (CPU, fp32), else
    :data:`DIRECT_SCORES`."""
    if torch.device(device).type == "cpu" and dtype == torch.float32 and native.available():
        return NATIVE_DIRECT_SCORES
    return DIRECT_SCORES


def runs_factorised(
    height: int,
    width: int,
    levels: int,
    *,
    hard: bool = False,
    max_direct_scores: int | None = None,
) -> bool:
    """Whether :func:`pyramid_attention` on a ``height`` x ``width`` map takes the factorised path (1x3 row-patch
    GEMMs over each sample's whole score matrix) rather than the tiled kernel (3x3 patches): soft attention on maps
    whose N x L score matrix has at most ``max_direct_scores`` elements (None: :func:`direct_scores_limit` of an
    fp32 map on the CPU), at inference and in training alike."""
    limit = direct_scores_limit() if max_direct_scores is None else max_direct_scores
    n_keys = sum(hl * wl for hl, wl in pyramid_sizes(height, width, levels))
    return not hard and height * width * n_keys <= limit


def _row_patches(t: Tensor, out: Tensor | None = None) -> Tensor:
    """(B, C, h, w) -> (B, h*w, 3C): each pixel's horizontal 1x3 neighbourhood (offsets -1, 0, +1; feature
    i*C + c), zero padded. Channels-last and padded by a column on each side, the three pixels of a row patch lie
    side by side in memory, so the patches are a view of overlapping windows and take one copy (into ``out``, a
    (B, h*w, 3C) slice, when given: no concatenation of the levels afterwards)."""
    b, c, h, w = t.shape
    padded = F.pad(t.permute(0, 2, 3, 1), (0, 0, 1, 1))
    if torch.is_grad_enabled() and t.requires_grad:
        # autograd's backward of an overlapping as_strided view is 1.5-4x slower than a concatenation's
        return torch.cat([padded[:, :, i : i + w] for i in range(PATCH)], -1).flatten(1, 2)
    windows = padded.contiguous().as_strided((b, h, w, PATCH * c), (h * (w + 2) * c, (w + 2) * c, c, 1))
    if out is None:
        return windows.reshape(b, h * w, PATCH * c)
    out.view(b, h, w, PATCH * c).copy_(windows)
    return out


def _diagonal_row_sum(src: Tensor, dst: Tensor, width: int, sizes) -> Tensor:
    """``dst[(y, x), (ly, lx)] = sum_d src[(y+d, x), (ly+d, lx)]`` over d in -1..1 for each level's block of key
    columns, zero outside the rows of ``src`` and the level: the vertical half of a 3x3 patch sum.

    src, dst: (..., rows * width, L) score-like matrices (a batch of them or one), queries in row-major (y, x)
    order, keys as the levels' row-major maps side by side.
    """
    dst.copy_(src)
    rows = src.shape[-2] // width
    start = 0
    for hl, wl in sizes:
        a = src[..., start : start + hl * wl].unflatten(-1, (hl, wl)).unflatten(-3, (rows, width))
        d = dst[..., start : start + hl * wl].unflatten(-1, (hl, wl)).unflatten(-3, (rows, width))
        d[..., 1:, :, 1:, :].add_(a[..., :-1, :, :-1, :])
        d[..., :-1, :, :-1, :].add_(a[..., 1:, :, 1:, :])
        start += hl * wl
    return dst


def _factorised_inputs(x: Tensor, sizes, embed_query, embed_key, embed_value, softmax_scale, norm_eps, dtype, pv_dtype):
    """Row patches of the scaled queries (B, N, 3C/r), of all levels' keys (B, L, 3C/r) and values (B, L, 3C), and
    each key patch's norm (B, L). The norm is a 3x3 box sum of per-pixel squared norms (the unfold's zero padding),
    not a reduction over 9x wider unfolded keys. In training out-of-place throughout (autograd needs every step);
    at inference each level's patches are copied straight into their slice of the all-levels matrices."""
    queries = _row_patches(embed_query(x).to(dtype)) * softmax_scale
    levels = [_resize(x, size) for size in sizes]
    embedded = [(embed_key(level).to(dtype), embed_value(level).to(pv_dtype or dtype)) for level in levels]
    norms = []
    for k, _ in embedded:
        squared = F.avg_pool2d(k.square().sum(1, keepdim=True), PATCH, 1, 1, count_include_pad=True) * (PATCH * PATCH)
        norms.append(squared.sqrt().clamp_min(norm_eps).flatten(1))
    if torch.is_grad_enabled():
        keys = torch.cat([_row_patches(k) for k, _ in embedded], 1)
        values = torch.cat([_row_patches(v) for _, v in embedded], 1)
    else:
        b, n_keys = x.shape[0], sum(hl * wl for hl, wl in sizes)
        k0, v0 = embedded[0]
        keys = k0.new_empty(b, n_keys, PATCH * k0.shape[1])
        values = v0.new_empty(b, n_keys, PATCH * v0.shape[1])
        start = 0
        for (hl, wl), (k, v) in zip(sizes, embedded):
            _row_patches(k, keys[:, start : start + hl * wl])
            _row_patches(v, values[:, start : start + hl * wl])
            start += hl * wl
    return queries, keys, values, torch.cat(norms, 1)


def _split_buffers(queries: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
    """Reused (N, 3d) and (L, 3d) buffers for one sample's split operands (queries and keys: (B, N|L, d))."""
    return queries.new_empty(queries.shape[1], 3 * queries.shape[2]), keys.new_empty(keys.shape[1], 3 * keys.shape[2])


def _scores(
    queries: Tensor, keys: Tensor, onednn: bool, out: Tensor | None, split: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """One sample's (N, L) row-patch scores; with ``split`` buffers (N, 3d) and (L, 3d), as a GEMM of split
    operands (:func:`_split`) on the bf16 units."""
    if split is not None:
        q, k = _split(queries, True, split[0]), _split(keys, False, split[1])
        with bf16_matmul_math():
            return torch.mm(q, k.t(), out=out)
    if onednn:  # oneDNN with the keys packed: 1.3x MKL's mm on these shapes (AMD Zen 4)
        return _Gemm(keys, queries.shape[0], True)(queries)
    return torch.mm(queries, keys.t(), out=out)


def _factorised_forward(
    queries, keys, values, norm, width: int, sizes, pv_dtype, batched: bool | None = None, split: bool = False
):
    """(B, N, 3C) sums of value row patches weighted by the vertically summed probabilities.

    On a CPU sample by sample, so that one sample's matrices stay in the cache; elsewhere (``batched``, default:
    off the CPU) the whole batch at once, in a few large kernels instead of many small launches.
    """
    if batched is None:
        batched = queries.device.type != "cpu"
    if batched:
        all_scores = torch.bmm(queries, keys.transpose(1, 2))
        all_probs = _diagonal_row_sum(all_scores, torch.empty_like(all_scores), width, sizes).div_(norm[:, None, :])
        torch.ops.aten._softmax.out(all_probs, 2, False, out=all_scores)
        weights = _diagonal_row_sum(all_scores, all_probs, width, sizes)
        return torch.bmm(weights.to(pv_dtype) if pv_dtype is not None else weights, values).to(queries.dtype)
    b, n = queries.shape[:2]
    n_keys = keys.shape[1]
    onednn = _onednn_available(queries)
    pasted = queries.new_empty(b, n, values.shape[2])
    scores = None if onednn and not split else queries.new_empty(n, n_keys)  # oneDNN returns its own
    probs = queries.new_empty(n, n_keys)
    low = probs.new_empty(n, n_keys, dtype=pv_dtype) if pv_dtype is not None else None
    split_buffers = _split_buffers(queries, keys) if split else None
    rows_native = _runs_native(queries, pv_dtype)
    inv_norm = norm.reciprocal() if rows_native else None
    for i in range(b):
        scores = _scores(queries[i], keys[i], onednn, scores, split_buffers)
        if inv_norm is not None:  # the same sums and softmax, row by row in the L1 cache
            native.softmax_rows(scores, inv_norm[i], probs, width, sizes)
            weights = native.diagonal_rows(probs, low if low is not None else scores, width, sizes)
        else:
            _diagonal_row_sum(scores, probs, width, sizes).div_(norm[i])
            torch.ops.aten._softmax.out(probs, 1, False, out=scores)
            weights = _diagonal_row_sum(scores, probs, width, sizes)
            if low is not None:
                weights = low.copy_(weights)
        pasted[i] = torch.mm(weights, values[i])
    return pasted


def _runs_native(t: Tensor, low: torch.dtype | None) -> bool:
    """Whether the factorised path's sums and softmax run in :mod:`panet.nn.native`'s kernels (CPU fp32 scores,
    products in fp32 or bf16, where they compiled) rather than as PyTorch passes over whole matrices."""
    return t.device.type == "cpu" and t.dtype == torch.float32 and low in (None, torch.bfloat16) and native.available()


class _FactorisedAttention(torch.autograd.Function):
    """The factorised attention with a backward that recomputes each sample's probabilities (nothing N x L is
    kept between the passes). With R the diagonal row sum (self-adjoint), S = R(Q K^T) / n, P = softmax(S),
    out = R(P) V: dV = R(P)^T dO, dP = R(dO V^T), dS = P * (dP - rowsum(P dP)), dn = -colsum(dS * S) / n,
    dQ = R(dS / n) K, dK = R(dS / n)^T Q."""

    @staticmethod
    def forward(ctx, queries, keys, values, norm, width, sizes, pv_dtype, split):
        ctx.save_for_backward(queries, keys, values, norm)
        ctx.width, ctx.sizes, ctx.pv_dtype, ctx.split = width, sizes, pv_dtype, split
        return _factorised_forward(queries, keys, values, norm, width, sizes, pv_dtype, split=split)

    @staticmethod
    def backward(ctx, grad):
        queries, keys, values, norm = ctx.saved_tensors
        width, sizes, low = ctx.width, ctx.sizes, ctx.pv_dtype
        dtype = queries.dtype
        onednn = _onednn_available(queries)
        grad = grad.contiguous()
        dq, dk, dv, dn = (
            torch.empty_like(queries),
            torch.empty_like(keys),
            torch.empty_like(values),
            torch.empty_like(norm),
        )
        split_buffers = _split_buffers(queries, keys) if ctx.split else None
        if _runs_native(queries, low):
            _native_backward(queries, keys, values, norm, grad, width, sizes, low, split_buffers, (dq, dk, dv, dn))
            return dq, dk, dv, dn, None, None, None, None
        probs = torch.empty(queries.shape[1], keys.shape[1], dtype=dtype, device=queries.device)
        scores = torch.empty_like(probs) if ctx.split or not onednn else None
        work = torch.empty_like(probs)
        for i in range(queries.shape[0]):
            scores = _scores(queries[i], keys[i], onednn, scores, split_buffers)
            s = _diagonal_row_sum(scores, probs, width, sizes).div_(norm[i])  # probs holds S for now
            p = torch.softmax(s, 1)
            g = grad[i].to(low or dtype)
            d_weights = torch.mm(g, values[i].t()).to(dtype)  # dW = dO V^T
            weights = _diagonal_row_sum(p, scores, width, sizes)  # R(P), into the score buffer
            dv[i] = torch.mm(weights.to(low or dtype).t(), g)
            d_probs = _diagonal_row_sum(d_weights, work, width, sizes)
            del d_weights
            ds = torch._softmax_backward_data(d_probs, p, 1, dtype)
            del p
            dn[i] = s.mul_(ds).sum(0).div_(norm[i]).neg_()
            d_scores = _diagonal_row_sum(ds.div_(norm[i]), work, width, sizes).to(low or dtype)
            del ds
            dq[i] = torch.mm(d_scores, keys[i].to(low or dtype))
            dk[i] = torch.mm(d_scores.t(), queries[i].to(low or dtype))
        return dq, dk, dv, dn, None, None, None, None


def _native_backward(queries, keys, values, norm, grad, width: int, sizes, low, split_buffers, grads) -> None:
    """:class:`_FactorisedAttention`'s backward with the row kernels of :mod:`panet.nn.native` (CPU fp32): the
    same products, with the sums, softmax and its backward done row by row in the cache."""
    dq, dk, dv, dn = grads
    n, n_keys = queries.shape[1], keys.shape[1]
    scores = queries.new_empty(n, n_keys)
    probs, work = torch.empty_like(scores), torch.empty_like(scores)
    d_weights = scores.new_empty(n, n_keys, dtype=low or scores.dtype)  # read by the kernel in the GEMM's dtype
    low_work = scores.new_empty(n, n_keys, dtype=low) if low is not None else None
    inv_norm = norm.reciprocal()
    for i in range(queries.shape[0]):
        r = _scores(queries[i], keys[i], False, scores, split_buffers)
        native.softmax_rows(r, inv_norm[i], probs, width, sizes)
        g = grad[i].to(low) if low is not None else grad[i]
        torch.mm(g, values[i].t(), out=d_weights)  # dW = dO V^T
        weights = native.diagonal_rows(probs, low_work if low_work is not None else work, width, sizes)  # R(P)
        dv[i] = torch.mm(weights.t(), g)
        native.softmax_backward_rows(r, inv_norm[i], probs, d_weights, work, dn[i], width, sizes)
        d_scores = native.diagonal_rows(work, low_work if low_work is not None else probs, width, sizes)
        dq[i] = torch.mm(d_scores, keys[i].to(d_scores.dtype))
        dk[i] = torch.mm(d_scores.t(), queries[i].to(d_scores.dtype))


def _row_overlap_add(pasted: Tensor, height: int, width: int) -> Tensor:
    """(B, N, 3C) sums per row patch -> (B, C, H, W): each pixel adds the parts of the row patches left of, on and
    right of it."""
    g = pasted.view(pasted.shape[0], height, width, PATCH, -1)
    if torch.is_grad_enabled() and pasted.requires_grad:
        centre = g[:, :, :, 1]
        out = centre + F.pad(g[:, :, 1:, 0], (0, 0, 0, 1)) + F.pad(g[:, :, :-1, 2], (0, 0, 1, 0))
    else:
        out = g[:, :, :, 1].clone()
        out[:, :, :-1] += g[:, :, 1:, 0]
        out[:, :, 1:] += g[:, :, :-1, 2]
    return out.permute(0, 3, 1, 2)


def _factorised_attention(
    x: Tensor, sizes, embed_query, embed_key, embed_value, softmax_scale: float, norm_eps: float, pv_dtype
) -> Tensor:
    """Pyramid attention with the 3x3 patches factorised: the (B, C, H, W) pasted map before the /4.

    A 3x3 patch score is a sum over 3 vertical offsets d of 1x3 row-patch scores at (query row y+d, key row ly+d),
    so the score GEMM runs on 1x3 row patches (3x narrower than 3x3 patches) and the vertical sum is a shifted add
    over the score matrix (:func:`_diagonal_row_sum`). The overlap-add of 3x3 value patches is the same sum applied
    to the probabilities, then a GEMM with 1x3 value row patches (3x narrower) and a horizontal overlap-add of the
    result. A third of the patch GEMMs' work, the release's result to float rounding; but the shifted adds and the
    softmax pass over each sample's whole N x L matrix, so this pays while that stays small.

    Scores, softmax and sums are fp32 (or the input's dtype; the scores as split bf16 GEMMs where
    :func:`_splits_scores`); the weighted sum (and in training the backward's products) runs in ``pv_dtype`` when
    given (or the autocast dtype), accumulating in fp32.
    """
    _, _, h, w = x.shape
    autocast = torch.is_autocast_enabled(x.device.type)
    dtype = torch.float32 if autocast else x.dtype  # scores never in the autocast dtype (see patch_attention)
    if pv_dtype is None and autocast:
        pv_dtype = torch.get_autocast_dtype(x.device.type)
    if pv_dtype == dtype:
        pv_dtype = None
    inputs = _factorised_inputs(x, sizes, embed_query, embed_key, embed_value, softmax_scale, norm_eps, dtype, pv_dtype)
    queries, keys, values, norm = inputs
    split = _splits_scores(dtype, pv_dtype, x.device)
    with torch.autocast(x.device.type, enabled=False):
        if torch.is_grad_enabled():
            pasted = _FactorisedAttention.apply(queries, keys, values, norm, w, tuple(sizes), pv_dtype, split)
        else:
            pasted = _factorised_forward(queries, keys, values, norm, w, sizes, pv_dtype, split=split)
        return _row_overlap_add(pasted, h, w)


BACKENDS = ("auto", "kernel", "sdpa", "triton")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _sdpa_attention(queries: Tensor, keys_t: Tensor, values_t: Tensor, softmax_scale: float) -> Tensor:
    """softmax(scale Q K^T) V by ``torch.nn.functional.scaled_dot_product_attention`` (one head), in the queries'
    dtype with autocast off (the scores' exponent needs fp32). (B, N, dk), (B, dk, L), (B, dv, L) -> (B, N, dv)."""
    dtype = torch.float32 if torch.is_autocast_enabled(queries.device.type) else queries.dtype
    with torch.autocast(queries.device.type, enabled=False):
        q, k, v = (t.to(dtype)[:, None] for t in (queries, keys_t.transpose(1, 2), values_t.transpose(1, 2)))
        return F.scaled_dot_product_attention(q, k, v, scale=softmax_scale)[:, 0]


def pyramid_attention(
    x: Tensor,
    embed_query: Callable[[Tensor], Tensor],
    embed_key: Callable[[Tensor], Tensor],
    embed_value: Callable[[Tensor], Tensor],
    *,
    levels: int = 5,
    softmax_scale: float = 10.0,
    res_scale: float = 1.0,
    hard: bool = False,
    norm_eps: float = 1e-4,
    query_block: int = 512,
    key_block: int = 2048,
    pv_dtype: torch.dtype | None = None,
    max_direct_scores: int | None = None,
    backend: str = "auto",
) -> Tensor:
    """Functional pyramid attention: ``attention(x) + res_scale * x``.

    ``embed_*`` map (B, C, h, w) feature maps to query / key / value embeddings
    (in the release: 1x1 conv + PReLU; C -> C/r, C -> C/r, C -> C). The pyramid
    is built from ``x`` itself and the key and value embeddings are applied to
    every level after resizing, as the release does.

    Soft attention on a feature map whose N x L score matrix has at most ``max_direct_scores`` elements (None:
    :func:`direct_scores_limit`, maps up to about 41x41 or, with the native row kernels, 57x57: restore tiles and
    training patches) takes the factorised path: a third of the GEMM work, each
    sample's matrix whole (see :func:`runs_factorised`). Larger maps and hard attention run the tiled kernel (:func:`patch_attention`), whose
    memory stays bounded at any size. Both agree to float rounding; limits of 0 always run the kernel.

    ``backend`` chooses what runs the maps the factorised path does not take: "auto" is PyTorch's
    ``scaled_dot_product_attention`` on CUDA (its memory-efficient kernel accepts the 288 / 576-wide patches and
    never stores N x L) and the tiled kernel elsewhere; "kernel" and "sdpa" force one of them for every map (soft
    attention only for "sdpa"). SDPA gets 3x3 patches unfolded (9x the feature maps) and runs in the queries'
    dtype: fp32 scores, also under autocast. "triton" runs every map through the fused kernel of
    :mod:`panet.nn.triton_attention` (CUDA, or CPU tensors in Triton's interpreter; forward and backward, but
    not chosen by "auto" until a GPU has measured it).
    """
    _check_backend(backend)
    if backend == "sdpa" and hard:
        raise ValueError("backend 'sdpa' computes soft attention only; hard attention runs the tiled kernel")
    if x.dim() != 4:
        raise ValueError(f"pyramid_attention expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    sizes = pyramid_sizes(h, w, levels)
    if levels < 1 or min(min(s) for s in sizes) < 1:
        raise ValueError(
            f"a {h}x{w} feature map is too small for {levels} pyramid levels (the smallest level is empty)"
        )
    if b == 0:
        return x * res_scale
    if backend == "triton":
        from panet.nn.triton_attention import triton_pyramid_attention

        low = pv_dtype
        if low is None and torch.is_autocast_enabled(x.device.type):
            low = torch.get_autocast_dtype(x.device.type)
        pasted = triton_pyramid_attention(
            x, [_resize(x, size) for size in sizes], embed_query, embed_key, embed_value, softmax_scale=softmax_scale, norm_eps=norm_eps, hard=hard,
            low_dtype=low if low in (torch.bfloat16, torch.float16) else None,
        )  # fmt: skip
        return pasted + res_scale * x
    if max_direct_scores is None:
        max_direct_scores = direct_scores_limit(
            x.device, torch.float32 if torch.is_autocast_enabled(x.device.type) else x.dtype
        )
    if backend == "auto" and runs_factorised(h, w, levels, hard=hard, max_direct_scores=max_direct_scores):
        pasted = _factorised_attention(x, sizes, embed_query, embed_key, embed_value, softmax_scale, norm_eps, pv_dtype)
        if torch.is_grad_enabled():
            return (pasted / 4 + res_scale * x).contiguous()
        out = pasted.div_(4).add_(x, alpha=res_scale)
        if torch.is_autocast_enabled(x.device.type) and x.dtype == torch.get_autocast_dtype(x.device.type):
            out = out.to(x.dtype)  # inference: the trunk's second half keeps the first half's bf16 stream
        # in the input's layout: channels-last where the trunk runs so (no reorder before the next convolution)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    queries = F.unfold(embed_query(x), PATCH, padding=1).transpose(1, 2)
    keys_t, values_t = _pyramid_keys_values(x, sizes, embed_key, embed_value)
    norm = keys_t.norm(dim=1, keepdim=True).clamp_min(norm_eps)
    if torch.is_grad_enabled() and keys_t.requires_grad:
        keys_t = keys_t / norm
    else:
        keys_t.div_(norm)  # inference: normalise in place
    if backend == "sdpa" or (backend == "auto" and x.device.type == "cuda" and not hard):
        out = _sdpa_attention(queries, keys_t, values_t, softmax_scale)
    else:
        out = patch_attention(
            queries,
            keys_t,
            values_t,
            softmax_scale=softmax_scale,
            hard=hard,
            query_block=query_block,
            key_block=key_block,
            pv_dtype=pv_dtype,
        )
    del queries, keys_t, values_t  # at inference the fold below must not coexist with them (autograd keeps its own)
    # Overlap-add of the pasted patches; the release divides by 4 (not 9) and
    # its trained weights depend on that constant.
    pasted = F.fold(out.transpose(1, 2), (h, w), PATCH, padding=1) / 4
    return pasted + res_scale * x


class ConvPReLU(nn.Sequential):
    """1x1 convolution with bias, then a PReLU with one slope: the release's embedding."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.Conv2d(in_channels, out_channels, 1), SingleSlopePReLU())


class PyramidAttention(nn.Module):
    """The PA block. Output = attention(x) + res_scale * x.

    Args:
        channels: input channels C.
        reduction: query/key embeddings have C // reduction channels.
        levels: pyramid levels at scales 1.0, 0.9, ..., 1 - (levels-1)/10.
        softmax_scale: multiplies the scores before the softmax.
        res_scale: multiplies the identity path (PA-EDSR uses 0.1).
        hard: one-hot attention on the best match (the release's ``average=False``).
        norm_eps: keys are divided by max(||k||, norm_eps).
        query_block, key_block: tile size of the kernel (memory / speed trade-off).
        max_direct_scores: maps with at most this many scores (N x L) take the factorised path instead of the
            tiled kernel, at inference and in training (see :func:`runs_factorised`; 0: never; None: as measured
            fastest, :func:`direct_scores_limit`).
        backend: what runs the other maps: "auto" (SDPA on CUDA, the tiled kernel elsewhere), "kernel", "sdpa" or
            "triton" (every map, the fused Triton kernels)
            (see :func:`pyramid_attention`). Not part of the weights: change it on a loaded model freely.
        fast: compute the attention-weighted sum, and in training the backward's
            products other than the scores, in bfloat16 (about 1.3-1.5x faster forward
            and 2x faster backward on CPUs with bf16 GEMMs; ~1e-3 relative error on
            the block output). Under bf16 autocast this is what happens anyway. On a
            CPU without native bf16 (``panet.hardware.native_bf16``: AVX2 only) bf16 is
            emulated and this is slower than fp32.
    """

    def __init__(
        self,
        channels: int = 64,
        reduction: int = 2,
        *,
        levels: int = 5,
        softmax_scale: float = 10.0,
        res_scale: float = 1.0,
        hard: bool = False,
        norm_eps: float = 1e-4,
        query_block: int = 512,
        key_block: int = 2048,
        fast: bool = False,
        max_direct_scores: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        if channels < 1 or reduction < 1 or channels % reduction:
            raise ValueError(f"channels ({channels}) must be a positive multiple of reduction ({reduction})")
        if not 1 <= levels <= 10:
            raise ValueError(f"levels must be in 1..10, got {levels}")
        self.channels, self.reduction, self.levels = channels, reduction, levels
        self.softmax_scale, self.res_scale, self.hard, self.norm_eps = softmax_scale, res_scale, hard, norm_eps
        self.query_block, self.key_block, self.fast = query_block, key_block, fast
        _check_backend(backend)
        self.max_direct_scores, self.backend = max_direct_scores, backend
        self.query = ConvPReLU(channels, channels // reduction)
        self.key = ConvPReLU(channels, channels // reduction)
        self.value = ConvPReLU(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"PyramidAttention({self.channels}) expects (B, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        return pyramid_attention(
            x,
            self.query,
            self.key,
            self.value,
            levels=self.levels,
            softmax_scale=self.softmax_scale,
            res_scale=self.res_scale,
            hard=self.hard,
            norm_eps=self.norm_eps,
            query_block=self.query_block,
            key_block=self.key_block,
            pv_dtype=torch.bfloat16 if self.fast else None,
            max_direct_scores=self.max_direct_scores,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, reduction={self.reduction}, levels={self.levels}, "
            f"softmax_scale={self.softmax_scale}, res_scale={self.res_scale}, hard={self.hard}"
        )
