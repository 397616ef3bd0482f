"""Pyramid attention as fused Triton kernels (issue 21): forward and backward.

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

The backward recomputes the probabilities from the saved log-sum-exp (FlashAttention-2 style) in two kernels,
one over key blocks (key, value and norm gradients) and one over query blocks (query gradients), each writing
unfolded patch gradients that ``F.fold`` sums back onto the maps. Without a GPU the kernels run in Triton's
interpreter (``TRITON_INTERPRET=1`` set before triton is imported, CPU tensors), which is how the
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
# Each program keeps 9 query tiles and 9 value accumulators (about 30k fp32 values at 32 x 32 tiles, C = 64):
# 8 warps give each thread half the registers that 4 would need. Unmeasured on a GPU yet.
NUM_WARPS = 8


def triton_available() -> bool:
    """Whether the fused kernel can run here: triton importable (on CUDA tensors, or on CPU tensors through the
    interpreter)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, DY: tl.constexpr, DX: tl.constexpr):
        """(BLOCK_M, CQ) query pixels at offset (DY, DX) from each query, zero outside the map."""
        yy = y + DY
        xx = x + DX
        ok = m_mask & (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        ptrs = q_ptr + b * s_qb + c[None, :] * s_qc + (yy * width + xx)[:, None]
        return tl.load(ptrs, mask=ok[:, None] & c_mask[None, :], other=0.0)

    @triton.jit
    def _query_tiles(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc):
        """The nine (BLOCK_M, CQ) query tiles of a 3x3 patch, offsets in unfold order (row by row)."""
        return (
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, -1, -1),
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, -1, 0),
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, -1, 1),
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, 0, -1),
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, 0, 0),
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, 0, 1),
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, 1, -1),
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, 1, 0),
            _query_tile(q_ptr, b, y, x, m_mask, c, c_mask, height, width, s_qb, s_qc, 1, 1),
        )

    @triton.jit
    def _key_block(n0, hl, wl, BLOCK_N: tl.constexpr):
        """Keys n0 .. n0 + BLOCK_N of an hl x wl level: (index in the level, in-level mask, row, column)."""
        n = n0 + tl.arange(0, BLOCK_N)
        return n, n < hl * wl, n // wl, n % wl

    @triton.jit
    def _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, DY: tl.constexpr, DX: tl.constexpr):
        """(C, BLOCK_N) key or value pixels of one level at offset (DY, DX), zero outside the level."""
        yy = ly + DY
        xx = lx + DX
        ok = n_mask & (yy >= 0) & (yy < hl) & (xx >= 0) & (xx < wl)
        ptrs = ptr + b * s_b + c[:, None] * s_c + (start + yy * wl + xx)[None, :]
        return tl.load(ptrs, mask=c_mask[:, None] & ok[None, :], other=0.0)

    @triton.jit
    def _level_tiles(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c):
        """The nine (C, BLOCK_N) key or value tiles of a block of 3x3 patches of one level."""
        return (
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, -1, -1),
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, -1, 0),
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, -1, 1),
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, 0, -1),
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, 0, 0),
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, 0, 1),
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, 1, -1),
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, 1, 0),
            _level_tile(ptr, b, start, ly, lx, n_mask, c, c_mask, hl, wl, s_b, s_c, 1, 1),
        )

    @triton.jit
    def _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, OFFSET: tl.constexpr):
        """(ROWS, C) of an unfolded (B, C*9, rows) tensor at offset OFFSET."""
        ptrs = ptr + b * s_b + (c * 9 + OFFSET)[None, :] * s_c + rows[:, None]
        return tl.load(ptrs, mask=row_mask[:, None] & c_mask[None, :], other=0.0)

    @triton.jit
    def _unfolded_tiles(ptr, b, rows, row_mask, c, c_mask, s_b, s_c):
        """The nine (ROWS, C) tiles of an unfolded (B, C*9, rows) tensor (the output's gradient)."""
        return (
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 0),
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 1),
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 2),
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 3),
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 4),
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 5),
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 6),
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 7),
            _unfolded_tile(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, 8),
        )

    @triton.jit
    def _store_unfolded(ptr, b, rows, row_mask, c, c_mask, s_b, s_c, tiles, scale):
        """Store nine (ROWS, C) tiles, each row times ``scale``, into an unfolded (B, C*9, rows) tensor."""
        base = ptr + b * s_b + (c * 9)[None, :] * s_c + rows[:, None]
        mask = row_mask[:, None] & c_mask[None, :]
        tl.store(base + 0 * s_c, tiles[0] * scale[:, None], mask=mask)
        tl.store(base + 1 * s_c, tiles[1] * scale[:, None], mask=mask)
        tl.store(base + 2 * s_c, tiles[2] * scale[:, None], mask=mask)
        tl.store(base + 3 * s_c, tiles[3] * scale[:, None], mask=mask)
        tl.store(base + 4 * s_c, tiles[4] * scale[:, None], mask=mask)
        tl.store(base + 5 * s_c, tiles[5] * scale[:, None], mask=mask)
        tl.store(base + 6 * s_c, tiles[6] * scale[:, None], mask=mask)
        tl.store(base + 7 * s_c, tiles[7] * scale[:, None], mask=mask)
        tl.store(base + 8 * s_c, tiles[8] * scale[:, None], mask=mask)

    @triton.jit
    def _dot(a, b, acc, IEEE: tl.constexpr, LOW: tl.constexpr):
        if LOW is not None:
            return tl.dot(a.to(LOW), b.to(LOW), acc)
        if IEEE:
            return tl.dot(a, b, acc, input_precision="ieee")
        return tl.dot(a, b, acc)

    @triton.jit
    def _patch_dot(lefts, rights, acc, IEEE: tl.constexpr, LOW: tl.constexpr):
        """acc + sum over the nine offsets of lefts[o] @ rights[o]: a score tile of 3x3 patches (queries and keys),
        or dP (the output's gradient and the values)."""
        acc = _dot(lefts[0], rights[0], acc, IEEE, LOW)
        acc = _dot(lefts[1], rights[1], acc, IEEE, LOW)
        acc = _dot(lefts[2], rights[2], acc, IEEE, LOW)
        acc = _dot(lefts[3], rights[3], acc, IEEE, LOW)
        acc = _dot(lefts[4], rights[4], acc, IEEE, LOW)
        acc = _dot(lefts[5], rights[5], acc, IEEE, LOW)
        acc = _dot(lefts[6], rights[6], acc, IEEE, LOW)
        acc = _dot(lefts[7], rights[7], acc, IEEE, LOW)
        return _dot(lefts[8], rights[8], acc, IEEE, LOW)

    @triton.jit
    def _dot_each(left, rights, accs, scale, IEEE: tl.constexpr, LOW: tl.constexpr, TRANS: tl.constexpr):
        """accs[o] * scale + left @ rights[o] (rights[o] transposed with TRANS) for each of the nine offsets."""
        if TRANS:
            return (
                _dot(left, tl.trans(rights[0]), accs[0] * scale, IEEE, LOW),
                _dot(left, tl.trans(rights[1]), accs[1] * scale, IEEE, LOW),
                _dot(left, tl.trans(rights[2]), accs[2] * scale, IEEE, LOW),
                _dot(left, tl.trans(rights[3]), accs[3] * scale, IEEE, LOW),
                _dot(left, tl.trans(rights[4]), accs[4] * scale, IEEE, LOW),
                _dot(left, tl.trans(rights[5]), accs[5] * scale, IEEE, LOW),
                _dot(left, tl.trans(rights[6]), accs[6] * scale, IEEE, LOW),
                _dot(left, tl.trans(rights[7]), accs[7] * scale, IEEE, LOW),
                _dot(left, tl.trans(rights[8]), accs[8] * scale, IEEE, LOW),
            )
        return (
            _dot(left, rights[0], accs[0] * scale, IEEE, LOW),
            _dot(left, rights[1], accs[1] * scale, IEEE, LOW),
            _dot(left, rights[2], accs[2] * scale, IEEE, LOW),
            _dot(left, rights[3], accs[3] * scale, IEEE, LOW),
            _dot(left, rights[4], accs[4] * scale, IEEE, LOW),
            _dot(left, rights[5], accs[5] * scale, IEEE, LOW),
            _dot(left, rights[6], accs[6] * scale, IEEE, LOW),
            _dot(left, rights[7], accs[7] * scale, IEEE, LOW),
            _dot(left, rights[8], accs[8] * scale, IEEE, LOW),
        )

    @triton.jit
    def _zeros9(ROWS: tl.constexpr, C: tl.constexpr):
        z = tl.zeros((ROWS, C), tl.float32)
        return (z, z, z, z, z, z, z, z, z)

    @triton.jit
    def _probabilities(r, norm, stat, m_mask, n_mask, HARD: tl.constexpr):
        """(scores, probabilities) of a tile from its raw patch products ``r``: soft from the log-sum-exp, hard as
        the hits of the row maximum; zero outside the queries and keys."""
        s = r / norm[None, :]
        valid = m_mask[:, None] & n_mask[None, :]
        if HARD:
            p = tl.where(valid & (s == stat[:, None]), 1.0, 0.0)
        else:
            p = tl.where(valid, tl.exp(s - stat[:, None]), 0.0)
        return s, p

    @triton.jit
    def _pyramid_attention_forward(
        q_ptr, k_ptr, v_ptr, norm_ptr, meta_ptr, out_ptr, stat_ptr,
        height, width, n_queries, channels_qk, channels_v,
        s_qb, s_qc, s_kb, s_kc, s_vb, s_vc, s_nb, s_ob, s_oc, s_sb,
        LEVELS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CQ: tl.constexpr, CV: tl.constexpr,
        HARD: tl.constexpr, IEEE: tl.constexpr, LOW: tl.constexpr,
    ):  # fmt: skip
        pid_m = tl.program_id(0)
        b = tl.program_id(1)
        m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        m_mask = m < n_queries
        cq = tl.arange(0, CQ)
        cq_mask = cq < channels_qk
        cv = tl.arange(0, CV)
        cv_mask = cv < channels_v
        qs = _query_tiles(q_ptr, b, m // width, m % width, m_mask, cq, cq_mask, height, width, s_qb, s_qc)
        m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        l_i = tl.zeros((BLOCK_M,), tl.float32)
        acc = _zeros9(BLOCK_M, CV)
        for level in range(LEVELS):
            start = tl.load(meta_ptr + 3 * level)
            hl = tl.load(meta_ptr + 3 * level + 1)
            wl = tl.load(meta_ptr + 3 * level + 2)
            for n0 in range(0, hl * wl, BLOCK_N):
                n, n_mask, ly, lx = _key_block(n0, hl, wl, BLOCK_N)
                ks = _level_tiles(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc)
                s = _patch_dot(qs, ks, tl.zeros((BLOCK_M, BLOCK_N), tl.float32), IEEE, LOW)
                s = s / tl.load(norm_ptr + b * s_nb + start + n, mask=n_mask, other=1.0)[None, :]
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
                vs = _level_tiles(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc)
                acc = _dot_each(p, vs, acc, alpha[:, None], IEEE, LOW, True)
        if HARD:  # the release sums the values of tied maxima; the backward needs the maximum
            scale = tl.full((BLOCK_M,), 1.0, tl.float32)
            tl.store(stat_ptr + b * s_sb + m, m_i, mask=m_mask)
        else:  # the log-sum-exp, from which the backward recomputes the probabilities
            scale = 1.0 / l_i
            tl.store(stat_ptr + b * s_sb + m, m_i + tl.log(l_i), mask=m_mask)
        # unfolded layout (B, C*9, N): channel c, offset o at row c*9 + o, as F.fold reads it
        _store_unfolded(out_ptr, b, m, m_mask, cv, cv_mask, s_ob, s_oc, acc, scale)

    @triton.jit
    def _pyramid_attention_backward_kv(
        q_ptr, k_ptr, v_ptr, norm_ptr, stat_ptr, delta_ptr, do_ptr, blocks_ptr, dk_ptr, dv_ptr, dnorm_ptr,
        height, width, n_queries, channels_qk, channels_v,
        s_qb, s_qc, s_kb, s_kc, s_vb, s_vc, s_nb, s_sb, s_dob, s_doc, s_dkb, s_dkc, s_dvb, s_dvc,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CQ: tl.constexpr, CV: tl.constexpr,
        HARD: tl.constexpr, IEEE: tl.constexpr, LOW: tl.constexpr,
    ):  # fmt: skip
        """One block of keys of one level: its unfolded key and value gradients and its norms' gradient, over
        all queries (the probabilities recomputed tile by tile)."""
        block = tl.program_id(0)
        b = tl.program_id(1)
        start = tl.load(blocks_ptr + 4 * block)
        hl = tl.load(blocks_ptr + 4 * block + 1)
        wl = tl.load(blocks_ptr + 4 * block + 2)
        n, n_mask, ly, lx = _key_block(tl.load(blocks_ptr + 4 * block + 3), hl, wl, BLOCK_N)
        cq = tl.arange(0, CQ)
        cq_mask = cq < channels_qk
        cv = tl.arange(0, CV)
        cv_mask = cv < channels_v
        ks = _level_tiles(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc)
        vs = _level_tiles(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc)
        norm = tl.load(norm_ptr + b * s_nb + start + n, mask=n_mask, other=1.0)
        dv = _zeros9(BLOCK_N, CV)
        dk = _zeros9(BLOCK_N, CQ)
        dnorm = tl.zeros((BLOCK_N,), tl.float32)
        for m0 in range(0, n_queries, BLOCK_M):
            m = m0 + tl.arange(0, BLOCK_M)
            m_mask = m < n_queries
            qs = _query_tiles(q_ptr, b, m // width, m % width, m_mask, cq, cq_mask, height, width, s_qb, s_qc)
            r = _patch_dot(qs, ks, tl.zeros((BLOCK_M, BLOCK_N), tl.float32), IEEE, LOW)
            stat = tl.load(stat_ptr + b * s_sb + m, mask=m_mask, other=0.0)
            s, p = _probabilities(r, norm, stat, m_mask, n_mask, HARD)
            dos = _unfolded_tiles(do_ptr, b, m, m_mask, cv, cv_mask, s_dob, s_doc)
            dv = _dot_each(tl.trans(p), dos, dv, 1.0, IEEE, LOW, False)
            if not HARD:  # one-hot attention passes gradients to the values only
                dp = _patch_dot(dos, vs, tl.zeros((BLOCK_M, BLOCK_N), tl.float32), IEEE, LOW)
                delta = tl.load(delta_ptr + b * s_sb + m, mask=m_mask, other=0.0)
                ds = p * (dp - delta[:, None])
                dnorm -= tl.sum(ds * s, 0) / norm
                dk = _dot_each(tl.trans(ds / norm[None, :]), qs, dk, 1.0, IEEE, LOW, False)
        keys = start + n
        ones = tl.full((BLOCK_N,), 1.0, tl.float32)
        _store_unfolded(dv_ptr, b, keys, n_mask, cv, cv_mask, s_dvb, s_dvc, dv, ones)
        _store_unfolded(dk_ptr, b, keys, n_mask, cq, cq_mask, s_dkb, s_dkc, dk, ones)
        tl.store(dnorm_ptr + b * s_nb + keys, dnorm, mask=n_mask)

    @triton.jit
    def _pyramid_attention_backward_q(
        q_ptr, k_ptr, v_ptr, norm_ptr, meta_ptr, stat_ptr, delta_ptr, do_ptr, dq_ptr,
        height, width, n_queries, channels_qk, channels_v,
        s_qb, s_qc, s_kb, s_kc, s_vb, s_vc, s_nb, s_sb, s_dob, s_doc, s_dqb, s_dqc,
        LEVELS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CQ: tl.constexpr, CV: tl.constexpr,
        IEEE: tl.constexpr, LOW: tl.constexpr,
    ):  # fmt: skip
        """One block of queries: its unfolded query gradient (soft attention), over all keys of all levels."""
        pid_m = tl.program_id(0)
        b = tl.program_id(1)
        m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        m_mask = m < n_queries
        cq = tl.arange(0, CQ)
        cq_mask = cq < channels_qk
        cv = tl.arange(0, CV)
        cv_mask = cv < channels_v
        qs = _query_tiles(q_ptr, b, m // width, m % width, m_mask, cq, cq_mask, height, width, s_qb, s_qc)
        dos = _unfolded_tiles(do_ptr, b, m, m_mask, cv, cv_mask, s_dob, s_doc)
        stat = tl.load(stat_ptr + b * s_sb + m, mask=m_mask, other=0.0)
        delta = tl.load(delta_ptr + b * s_sb + m, mask=m_mask, other=0.0)
        dq = _zeros9(BLOCK_M, CQ)
        for level in range(LEVELS):
            start = tl.load(meta_ptr + 3 * level)
            hl = tl.load(meta_ptr + 3 * level + 1)
            wl = tl.load(meta_ptr + 3 * level + 2)
            for n0 in range(0, hl * wl, BLOCK_N):
                n, n_mask, ly, lx = _key_block(n0, hl, wl, BLOCK_N)
                ks = _level_tiles(k_ptr, b, start, ly, lx, n_mask, cq, cq_mask, hl, wl, s_kb, s_kc)
                r = _patch_dot(qs, ks, tl.zeros((BLOCK_M, BLOCK_N), tl.float32), IEEE, LOW)
                norm = tl.load(norm_ptr + b * s_nb + start + n, mask=n_mask, other=1.0)
                _scores, p = _probabilities(r, norm, stat, m_mask, n_mask, False)
                vs = _level_tiles(v_ptr, b, start, ly, lx, n_mask, cv, cv_mask, hl, wl, s_vb, s_vc)
                dp = _patch_dot(dos, vs, tl.zeros((BLOCK_M, BLOCK_N), tl.float32), IEEE, LOW)
                dq = _dot_each(p * (dp - delta[:, None]) / norm[None, :], ks, dq, 1.0, IEEE, LOW, True)
        _store_unfolded(dq_ptr, b, m, m_mask, cq, cq_mask, s_dqb, s_dqc, dq, tl.full((BLOCK_M,), 1.0, tl.float32))


def _block(size: int) -> int:
    """The power of two (at least 16, tl.dot's minimum) that holds ``size``."""
    return max(16, 1 << max(size - 1, 0).bit_length())


class _FusedAttention(torch.autograd.Function):
    """The kernels as an autograd function: (queries (B, Cq, H, W), keys_t (B, Cq, L), values_t (B, C, L), norm
    (B, L)) -> the unfolded pasted patches (B, C*9, N). The backward recomputes the probabilities (from the
    saved log-sum-exp, FlashAttention-2 style): one pass over key blocks for the key, value and norm gradients,
    one over query blocks for the query gradient; the unfolded patch gradients are folded back to the maps."""

    @staticmethod
    def forward(ctx, queries, keys_t, values_t, norm, meta, blocks, sizes, hard, low, block_m, block_n):
        b, cq, h, w = queries.shape
        cv, n = values_t.shape[1], h * w
        out = torch.empty(b, cv * 9, n, dtype=queries.dtype, device=queries.device)
        stat = torch.empty(b, n, dtype=queries.dtype, device=queries.device)
        _pyramid_attention_forward[(triton.cdiv(n, block_m), b)](
            queries, keys_t, values_t, norm, meta, out, stat,
            h, w, n, cq, cv,
            queries.stride(0), queries.stride(1), keys_t.stride(0), keys_t.stride(1),
            values_t.stride(0), values_t.stride(1), norm.stride(0), out.stride(0), out.stride(1), stat.stride(0),
            LEVELS=len(sizes), BLOCK_M=block_m, BLOCK_N=block_n, CQ=_block(cq), CV=_block(cv),
            HARD=hard, IEEE=low is None, LOW=low, num_warps=NUM_WARPS,
        )  # fmt: skip
        ctx.save_for_backward(queries, keys_t, values_t, norm, meta, blocks, out, stat)
        ctx.sizes, ctx.hard, ctx.low, ctx.block_m, ctx.block_n = sizes, hard, low, block_m, block_n
        return out

    @staticmethod
    def backward(ctx, grad_out):
        queries, keys_t, values_t, norm, meta, blocks, out, stat = ctx.saved_tensors
        b, cq, h, w = queries.shape
        cv, n, n_keys = values_t.shape[1], h * w, keys_t.shape[2]
        grad_out = grad_out.contiguous()
        delta = (grad_out * out).sum(1).contiguous()  # D = sum_o dO_o . O_o per query
        d_keys = torch.empty(b, cq * 9, n_keys, dtype=queries.dtype, device=queries.device)
        d_values = torch.empty(b, cv * 9, n_keys, dtype=queries.dtype, device=queries.device)
        d_norm = torch.empty_like(norm)
        _pyramid_attention_backward_kv[(blocks.shape[0], b)](
            queries, keys_t, values_t, norm, stat, delta, grad_out, blocks, d_keys, d_values, d_norm,
            h, w, n, cq, cv,
            queries.stride(0), queries.stride(1), keys_t.stride(0), keys_t.stride(1),
            values_t.stride(0), values_t.stride(1), norm.stride(0), stat.stride(0),
            grad_out.stride(0), grad_out.stride(1), d_keys.stride(0), d_keys.stride(1),
            d_values.stride(0), d_values.stride(1),
            BLOCK_M=ctx.block_m, BLOCK_N=ctx.block_n, CQ=_block(cq), CV=_block(cv),
            HARD=ctx.hard, IEEE=ctx.low is None, LOW=ctx.low, num_warps=NUM_WARPS,
        )  # fmt: skip
        if ctx.hard:  # one-hot attention: gradients reach the values only
            d_queries = torch.zeros(b, cq * 9, n, dtype=queries.dtype, device=queries.device)
        else:
            d_queries = torch.empty(b, cq * 9, n, dtype=queries.dtype, device=queries.device)
            _pyramid_attention_backward_q[(triton.cdiv(n, ctx.block_m), b)](
                queries, keys_t, values_t, norm, meta, stat, delta, grad_out, d_queries,
                h, w, n, cq, cv,
                queries.stride(0), queries.stride(1), keys_t.stride(0), keys_t.stride(1),
                values_t.stride(0), values_t.stride(1), norm.stride(0), stat.stride(0),
                grad_out.stride(0), grad_out.stride(1), d_queries.stride(0), d_queries.stride(1),
                LEVELS=len(ctx.sizes), BLOCK_M=ctx.block_m, BLOCK_N=ctx.block_n, CQ=_block(cq), CV=_block(cv),
                IEEE=ctx.low is None, LOW=ctx.low, num_warps=NUM_WARPS,
            )  # fmt: skip
        # the gathers are unfolds (zero padding): their adjoint is a fold, level by level
        d_queries_map = F.fold(d_queries, (h, w), PATCH, padding=1)
        d_keys_t, d_values_t = torch.empty_like(keys_t), torch.empty_like(values_t)
        start = 0
        for hl, wl in ctx.sizes:
            part = slice(start, start + hl * wl)
            d_keys_t[:, :, part] = F.fold(d_keys[:, :, part], (hl, wl), PATCH, padding=1).flatten(2)
            d_values_t[:, :, part] = F.fold(d_values[:, :, part], (hl, wl), PATCH, padding=1).flatten(2)
            start += hl * wl
        return d_queries_map, d_keys_t, d_values_t, d_norm, *([None] * 7)


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
    """The attention part of :func:`panet.nn.attention.pyramid_attention` by the fused kernels: the pasted
    (B, C, H, W) map, divided by 4, differentiable (gradients reach the input and every embedding weight).
    ``pyramid``: the levels (x itself, then its resized copies) that keys and values come from. ``low_dtype``
    (bf16/fp16): the kernels' dot products take operands in that dtype (fp32 accumulation); None: exact fp32
    (no TF32). ``block_m`` x ``block_n``: the query x key tile of one program."""
    if triton is None:
        raise RuntimeError("backend 'triton' needs the triton package (pip install 'panet[triton]')")
    h, w = x.shape[-2:]
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
        # key blocks never straddle two levels: (level start, height, width, first key) per block
        blocks = torch.tensor(
            [v for (hl, wl), s in zip(sizes, starts) for n0 in range(0, hl * wl, block_n) for v in (s, hl, wl, n0)],
            dtype=torch.int32,
            device=x.device,
        ).view(-1, 4)
        low = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}.get(low_dtype) if low_dtype else None
        out = _FusedAttention.apply(queries, keys_t, values_t, norm, meta, blocks, sizes, hard, low, block_m, block_n)
        return F.fold(out, (h, w), PATCH, padding=1) / 4
