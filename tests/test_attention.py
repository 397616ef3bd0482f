from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from panet.nn.attention import PyramidAttention, patch_attention, pyramid_sizes
from panet.nn.reference import reference_module


def make_block(channels=16, reduction=2, *, dtype=torch.float32, sharpen=1.0, **kwargs):
    kwargs.setdefault("max_direct_scores", 0)  # the tiled kernel (the factorised path is tested apart)
    block = PyramidAttention(channels, reduction, **kwargs).to(dtype)
    with torch.no_grad():  # larger query weights: a peaked softmax exercises the stabiliser
        block.query[0].weight.mul_(sharpen)
    return block


@pytest.mark.parametrize(
    "batch, channels, reduction, height, width, levels",
    [(1, 16, 2, 12, 12, 5), (2, 8, 4, 13, 11, 3), (1, 12, 3, 7, 17, 4), (2, 4, 1, 9, 6, 1), (1, 16, 8, 5, 23, 5)],
)
def test_matches_materialised_oracle_float64(batch, channels, reduction, height, width, levels):
    block = make_block(channels, reduction, levels=levels, dtype=torch.float64, sharpen=3.0)
    x = torch.randn(batch, channels, height, width, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_module(block, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "batch, channels, reduction, height, width, levels",
    [(1, 16, 2, 12, 12, 5), (2, 8, 4, 13, 11, 3), (1, 12, 3, 7, 17, 4), (2, 4, 1, 9, 6, 1), (1, 16, 8, 5, 23, 5)],
)
def test_small_map_inference_path_matches_the_oracle(batch, channels, reduction, height, width, levels):
    block = make_block(channels, reduction, levels=levels, dtype=torch.float64, sharpen=3.0, max_direct_scores=1 << 22)
    x = torch.randn(batch, channels, height, width, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_module(block, x), rtol=1e-10, atol=1e-10)


def test_small_map_path_and_kernel_agree_on_a_restore_tile(monkeypatch):
    import panet.nn.attention as attention

    direct = PyramidAttention(64, 2)
    kernel = PyramidAttention(64, 2, max_direct_scores=0)
    kernel.load_state_dict(direct.state_dict())
    x = torch.randn(3, 64, 32, 32)
    with torch.no_grad():
        expected = kernel(x)
        monkeypatch.setattr(attention, "_patch_attention_kernel", None)  # the direct path must not need it
        torch.testing.assert_close(direct(x), expected, rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 embeddings and P.V, fp32 scores: ~1e-2 here
            assert (direct(x).float() - expected).abs().max() < 0.1


def assert_matches_the_oracle_with_gradients(block, shape, levels):
    """``block`` (float64) against the materialised reference with its weights: the output to 1e-10, the
    gradients of the input and of every parameter to 1e-9. Returns (input, reference output)."""
    batch, channels, height, width = shape
    ref_block = make_block(channels, block.reduction, levels=levels, dtype=torch.float64)
    ref_block.load_state_dict(block.state_dict())
    x = torch.randn(batch, channels, height, width, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, ref = block(x), reference_module(ref_block, x_ref)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-9)
    for (name, p), (_, q) in zip(block.named_parameters(), ref_block.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-9, msg=name)
    return x, ref


@pytest.mark.parametrize(
    "batch, channels, reduction, height, width, levels",
    [(2, 16, 2, 12, 12, 5), (1, 8, 4, 13, 11, 3), (2, 4, 1, 9, 6, 1), (1, 16, 8, 5, 23, 5)],
)
def test_factorised_training_path_gradients_match_the_oracle(batch, channels, reduction, height, width, levels):
    block = make_block(channels, reduction, levels=levels, dtype=torch.float64, sharpen=3.0, max_direct_scores=1 << 22)
    assert_matches_the_oracle_with_gradients(block, (batch, channels, height, width), levels)


def test_factorised_training_path_gradcheck_float64():
    block = make_block(4, 2, levels=3, dtype=torch.float64, sharpen=2.0, max_direct_scores=1 << 22)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: block(inp), (x,), eps=1e-6, atol=1e-6)
    names = [n for n, _ in block.named_parameters()]
    weights = tuple(p.detach().clone().requires_grad_(True) for p in block.parameters())

    def by_weights(*ws):
        return torch.func.functional_call(block, dict(zip(names, ws)), (x.detach(),))

    assert torch.autograd.gradcheck(by_weights, weights, eps=1e-6, atol=1e-6)


def test_factorised_and_kernel_training_agree_in_bf16_autocast():
    """Under bf16 autocast both paths run the weighted sum and the backward's products in bf16: close, not equal."""
    fact = PyramidAttention(32, 2)
    kernel = PyramidAttention(32, 2, max_direct_scores=0)
    kernel.load_state_dict(fact.state_dict())
    x = torch.randn(2, 32, 20, 18)
    grads = []
    for block, autocast in ((kernel, False), (fact, True), (kernel, True)):
        inp = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = block(inp)
        assert out.dtype == torch.float32
        out.float().square().mean().backward()
        grads.append(torch.cat([inp.grad.flatten(), *(p.grad.flatten() for p in block.parameters())]))
        block.zero_grad()
    exact, low_fact, low_kernel = grads
    for low in (low_fact, low_kernel):
        assert 0 < ((low - exact).norm() / exact.norm()).item() < 2e-2


@pytest.mark.parametrize(
    "batch, channels, reduction, height, width, levels",
    [(2, 8, 2, 9, 13, 5), (1, 8, 4, 17, 12, 3), (2, 4, 1, 20, 7, 1)],
)
def test_sdpa_backend_matches_the_oracle_forward_and_backward(batch, channels, reduction, height, width, levels):
    """backend="sdpa" (what "auto" runs on CUDA for maps the factorised path does not take) is the release's
    attention: PyTorch's scaled_dot_product_attention on the unfolded patches, fp64 here."""
    block = make_block(channels, reduction, levels=levels, dtype=torch.float64, sharpen=3.0, backend="sdpa")
    x, ref = assert_matches_the_oracle_with_gradients(block, (batch, channels, height, width), levels)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 scores under autocast too
        low = block.float()(x.detach().float())
    assert low.dtype == torch.float32 and (low - ref.detach().float()).abs().max() < 0.05 * ref.abs().max()


def test_backend_choices_are_checked():
    with pytest.raises(ValueError, match="backend"):
        PyramidAttention(8, 2, backend="flash")
    block = make_block(8, 2, hard=True, backend="sdpa")
    with pytest.raises(ValueError, match="soft attention only"), torch.no_grad():
        block(torch.randn(1, 8, 9, 9))


def test_matches_oracle_float32_with_res_scale_and_softmax_scale():
    block = make_block(32, 8, softmax_scale=5.0, res_scale=0.1, sharpen=2.0)
    x = torch.randn(2, 32, 14, 10)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_module(block, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("blocks", [(1, 1), (7, 13), (64, 5), (5, 4096)])
def test_tile_size_does_not_change_the_result(blocks):
    x = torch.randn(2, 16, 9, 7) if blocks[0] * blocks[1] < 10 else torch.randn(2, 16, 15, 13)
    big = make_block(sharpen=4.0)
    small = make_block(query_block=blocks[0], key_block=blocks[1])
    small.load_state_dict(big.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(small(x), big(x), rtol=1e-5, atol=1e-5)


def test_extreme_logits_neither_overflow_nor_underflow():
    # Scores of several hundred: the online stabiliser must rescale, in both directions.
    block = make_block(8, 2, dtype=torch.float64, softmax_scale=200.0, sharpen=10.0, key_block=17, query_block=9)
    x = torch.randn(1, 8, 11, 9, dtype=torch.float64) * 3
    with torch.no_grad():
        out, ref = block(x), reference_module(block, x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-8, atol=1e-8)
    block32 = make_block(8, 2, softmax_scale=200.0, key_block=17, query_block=9)
    block32.load_state_dict({k: v.float() for k, v in block.state_dict().items()})
    with torch.no_grad():
        torch.testing.assert_close(block32(x.float()), ref.float(), rtol=1e-3, atol=1e-3)


def test_batch_sizes_0_1_2_and_sample_independence():
    block = make_block()
    x = torch.randn(2, 16, 10, 9)
    with torch.no_grad():
        both = block(x)
        first = block(x[:1])
        empty = block(x[:0])
    assert empty.shape == (0, 16, 10, 9)
    torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-6)


def test_hard_attention_matches_oracle_and_only_values_get_gradients():
    block = make_block(16, 2, hard=True, dtype=torch.float64, key_block=50)
    x = torch.randn(2, 16, 9, 8, dtype=torch.float64, requires_grad=True)
    out = block(x)
    ref_block = make_block(16, 2, hard=True, dtype=torch.float64)
    ref_block.load_state_dict(block.state_dict())
    x_ref = x.detach().clone().requires_grad_(True)
    ref = reference_module(ref_block, x_ref)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    for (name, p), (_, p_ref) in zip(block.named_parameters(), ref_block.named_parameters()):
        g, g_ref = p.grad, p_ref.grad
        if name.startswith(("query", "key")):
            assert g is None or not g.any(), name  # the one-hot map has no gradient
            assert g_ref is None or not g_ref.any()
        else:
            torch.testing.assert_close(g, g_ref, msg=name)


def test_gradcheck_float64():
    block = make_block(4, 2, levels=3, dtype=torch.float64, query_block=7, key_block=11, sharpen=2.0)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    params = [p for p in block.parameters()]

    def fn(inp, *weights):
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
        return block(inp)

    # gradcheck of the input, and of every parameter through torch.func.functional_call
    assert torch.autograd.gradcheck(lambda inp: block(inp), (x,), eps=1e-6, atol=1e-6)
    names = [n for n, _ in block.named_parameters()]
    weights = tuple(p.detach().clone().requires_grad_(True) for p in params)

    def by_weights(*ws):
        return torch.func.functional_call(block, dict(zip(names, ws)), (x.detach(),))

    assert torch.autograd.gradcheck(by_weights, weights, eps=1e-6, atol=1e-6)


def test_gradients_match_oracle_float32():
    block = make_block(16, 2, sharpen=2.0, query_block=32, key_block=100)
    ref_block = make_block(16, 2)
    ref_block.load_state_dict(block.state_dict())
    ref_block.double()
    x = torch.randn(2, 16, 12, 10, requires_grad=True)
    x_ref = x.detach().double().requires_grad_(True)
    grad = torch.randn(2, 16, 12, 10)
    block(x).backward(grad)
    reference_module(ref_block, x_ref).backward(grad.double())

    def close(got, want, name):  # fp32 against the float64 oracle, relative to the gradient's size
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5 * want.abs().max().item(), msg=name)

    close(x.grad, x_ref.grad, "input")
    for (name, p), (_, q) in zip(block.named_parameters(), ref_block.named_parameters()):
        close(p.grad, q.grad, name)


def test_autocast_bf16_parity():
    block = make_block(16, 2)
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        ref = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block(x)
    assert out.dtype == torch.float32  # the attention kernel itself runs in fp32
    torch.testing.assert_close(out, ref, rtol=0, atol=0.05 * ref.abs().max().item())


def attention_inputs(batch, queries, dk, keys, dv, *, query_scale=1.0):
    """Seeded (q, kt, vt, output gradient) for patch_attention, all requiring gradients."""
    torch.manual_seed(0)
    q = (torch.randn(batch, queries, dk) * query_scale).requires_grad_(True)
    kt = torch.nn.functional.normalize(torch.randn(batch, dk, keys), dim=1).requires_grad_(True)
    vt = torch.randn(batch, dv, keys, requires_grad=True)
    return q, kt, vt, torch.randn(batch, queries, dv)


@pytest.mark.parametrize("blocks", [(512, 2048), (7, 13)])
def test_low_precision_backward_is_close_to_exact(blocks):
    """Under bf16 autocast (or fast=True) the backward's products other than the scores run in bf16."""
    q, kt, vt, grad = attention_inputs(2, 40, 18, 70, 36, query_scale=0.5)
    grads = []
    for dtype in (None, torch.bfloat16):
        out = patch_attention(q, kt, vt, pv_dtype=dtype, query_block=blocks[0], key_block=blocks[1])
        grads.append(torch.autograd.grad(out, (q, kt, vt), grad))
    for exact, low in zip(*grads):
        rel = ((low - exact).norm() / exact.norm()).item()
        assert 0 < rel < 1e-2  # bf16 rounding, not a different gradient


def test_autocast_runs_the_kernel_with_bf16_products_and_fp32_scores():
    q, kt, vt, grad = attention_inputs(1, 30, 18, 50, 36)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = patch_attention(q, kt, vt)
    explicit = patch_attention(q, kt, vt, pv_dtype=torch.bfloat16)
    exact = patch_attention(q, kt, vt)
    assert amp.dtype == torch.float32
    torch.testing.assert_close(amp, explicit, rtol=0, atol=0)
    assert not torch.equal(amp, exact)
    for a, e in zip(torch.autograd.grad(amp, (q, kt, vt), grad), torch.autograd.grad(explicit, (q, kt, vt), grad)):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


def test_bf16_keys_and_values_widen_exactly():
    """Autocast hands the kernel bf16 keys and values: they are widened tile by tile, which must equal widening
    them up front, and their gradients come back in bf16."""
    torch.manual_seed(0)
    q = torch.randn(2, 30, 18, requires_grad=True)
    kt = torch.nn.functional.normalize(torch.randn(2, 18, 50), dim=1).bfloat16().requires_grad_(True)
    vt = torch.randn(2, 36, 50).bfloat16().requires_grad_(True)
    kt32, vt32 = (t.detach().float().requires_grad_(True) for t in (kt, vt))
    grad = torch.randn(2, 30, 36)
    for pv_dtype in (None, torch.bfloat16):
        narrow = patch_attention(q, kt, vt, pv_dtype=pv_dtype)
        wide = patch_attention(q, kt32, vt32, pv_dtype=pv_dtype)
        assert narrow.dtype == torch.float32
        torch.testing.assert_close(narrow, wide, rtol=0, atol=0)
        g_narrow = torch.autograd.grad(narrow, (q, kt, vt), grad)
        g_wide = torch.autograd.grad(wide, (q, kt32, vt32), grad)
        assert [g.dtype for g in g_narrow] == [torch.float32, torch.bfloat16, torch.bfloat16]
        torch.testing.assert_close(g_narrow[0], g_wide[0], rtol=0, atol=0)
        for a, b in zip(g_narrow[1:], g_wide[1:]):
            torch.testing.assert_close(a, b.bfloat16(), rtol=0, atol=0)


def test_low_precision_backward_sums_over_query_chunks(monkeypatch):
    """dV and dK are long GEMMs over kept bf16 tiles; above _SUM_CHUNK elements they are summed chunk by chunk."""
    import panet.nn.attention as attention

    q, kt, vt, grad = attention_inputs(1, 64, 18, 40, 36, query_scale=0.5)

    def grads():
        out = patch_attention(q, kt, vt, pv_dtype=torch.bfloat16, query_block=8, key_block=16)
        return torch.autograd.grad(out, (q, kt, vt), grad)

    whole = grads()
    monkeypatch.setattr(attention, "_SUM_CHUNK", 16 * 8)  # one query block per chunk: 8 chunks
    chunked = grads()
    torch.testing.assert_close(chunked[0], whole[0], rtol=0, atol=0)  # dQ does not depend on the chunking
    for a, b in zip(chunked[1:], whole[1:]):
        assert 0 < ((a - b).norm() / b.norm()).item() < 1e-2  # bf16 rounding of partial sums, not another gradient


def test_fast_mode_bf16_weighted_sum_is_close():
    block = make_block(16, 2, sharpen=2.0)
    fast = make_block(16, 2, fast=True)
    fast.load_state_dict(block.state_dict())
    x = torch.randn(1, 16, 16, 14)
    with torch.no_grad():
        ref, out = block(x), fast(x)
    rel = (out - ref).abs().max() / ref.abs().max()
    assert 0 < rel < 1e-2


@pytest.mark.parametrize("native", [False, True])
def test_bf16_weighted_sum_on_cpus_with_and_without_native_bf16(monkeypatch, native):
    """oneDNN packs bf16 weights only on CPUs with native bf16 (AVX-512 BW/VL/DQ); an AVX2 CPU raised a RuntimeError
    there. Without native bf16 the weighted sum falls back to torch.mm in bf16, with the same rounding."""
    import panet.nn.attention as attention
    from panet.hardware import native_bf16

    if native and not native_bf16("cpu"):
        pytest.skip("this CPU has no native bf16 (oneDNN cannot pack bf16 weights here)")
    monkeypatch.setattr(attention, "native_bf16", lambda device: native)
    q, kt, vt, grad = attention_inputs(1, 30, 18, 50, 36, query_scale=0.5)
    exact = patch_attention(q, kt, vt)
    low = patch_attention(q, kt, vt, pv_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    assert 0 < ((low - exact).norm() / exact.norm()).item() < 1e-2
    for a, e in zip(torch.autograd.grad(low, (q, kt, vt), grad), torch.autograd.grad(exact, (q, kt, vt), grad)):
        assert ((a - e).norm() / e.norm()).item() < 1e-2


def test_torch_compile_parity():
    block = make_block(8, 2)
    x = torch.randn(1, 8, 9, 10)
    compiled = torch.compile(block, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), block(x), rtol=1e-5, atol=1e-6)
    out = compiled(x.requires_grad_(True))
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.slow
def test_torch_compile_inductor_forward_and_backward():
    block = make_block(8, 2)
    x = torch.randn(1, 8, 9, 10, requires_grad=True)
    compiled = torch.compile(block)
    out = compiled(x)
    torch.testing.assert_close(out, block(x), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    block(x_ref).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)


def test_pyramid_sizes_use_python_double_floor():
    # 0.7 * 10 = 7.000000000000001 and 0.9 * 12 = 10.8 in doubles
    assert pyramid_sizes(12, 10, 5) == [(12, 10), (10, 9), (9, 8), (8, 7), (7, 6)]


def test_expected_errors():
    block = make_block(16, 2)
    with pytest.raises(ValueError, match="expects"):
        block(torch.randn(1, 8, 10, 10))
    with pytest.raises(ValueError, match="too small"):
        block(torch.randn(1, 16, 1, 10))
    with pytest.raises(ValueError, match="multiple"):
        PyramidAttention(10, 3)
    with pytest.raises(ValueError, match="levels"):
        PyramidAttention(8, 2, levels=0)
    with pytest.raises(ValueError, match="shape mismatch"):
        patch_attention(torch.randn(1, 4, 3), torch.randn(1, 2, 5), torch.randn(1, 2, 5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "tiles",
    [
        # the second tile sums past e^20 with no score 20 above the stabiliser (0, from the first tile): the check must
        # recompute that tile's scores and keep the stabiliser
        [[0.0] * 4, [19.5] * 4, [-5.0, 1.0, 2.0, 0.5]],
        # scores ~1000 (exp overflows even float64) must raise the stabiliser; then a tile far below it
        [[0.0] * 4, [19.5] * 4, [1000.0, 999.0, 3.0, 1000.5], [-30.0] * 4],
    ],
)
def test_stabiliser_paths_of_the_tiled_softmax(dtype, tiles):
    # One query and 1-d keys, so each score is the key itself; tiles of 4 keys.
    scores = torch.tensor([x for tile in tiles for x in tile], dtype=dtype)
    q = torch.ones(1, 1, 1, dtype=dtype)
    vt = torch.randn(1, 3, scores.numel(), dtype=dtype)
    out = patch_attention(q, scores.view(1, 1, -1), vt, softmax_scale=1.0, key_block=4, query_block=1)
    torch.testing.assert_close(out[0, 0], torch.softmax(scores, 0) @ vt[0].t())


@pytest.mark.parametrize("pv_dtype", [None, torch.bfloat16])
def test_factorised_forward_batched_as_on_a_gpu_equals_sample_by_sample(pv_dtype):
    """Off the CPU the factorised forward runs the batch at once (bmm); on the CPU sample by sample: same result."""
    from panet.nn.attention import _factorised_forward, _factorised_inputs

    block = PyramidAttention(16, 2)
    x = torch.randn(3, 16, 13, 11)
    sizes = pyramid_sizes(13, 11, 5)
    with torch.no_grad():
        inputs = _factorised_inputs(x, sizes, block.query, block.key, block.value, 10.0, 1e-4, torch.float32, pv_dtype)
        queries, keys, values, norm = inputs
        one = _factorised_forward(queries, keys, values, norm, 11, sizes, pv_dtype, batched=False)
        batch = _factorised_forward(queries, keys, values, norm, 11, sizes, pv_dtype, batched=True)
    tolerance = 1e-5 if pv_dtype is None else 2e-2
    torch.testing.assert_close(batch, one, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pv_dtype", [None, torch.bfloat16])
def test_factorised_inputs_at_inference_equal_the_autograd_ones(channels_last, pv_dtype):
    """At inference each level's row patches are copied straight into the all-levels matrices (a view of
    overlapping windows); in training they are concatenated out of place. Bit for bit the same, in either layout,
    and equal to the patches built by unfold."""
    from panet.nn.attention import _factorised_inputs, _row_patches

    torch.manual_seed(0)
    block = PyramidAttention(16, 2)
    x = torch.randn(2, 16, 9, 7)
    if channels_last:
        block, x = block.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    sizes = pyramid_sizes(9, 7, 4)
    args = (x, sizes, block.query, block.key, block.value, 10.0, 1e-4, torch.float32, pv_dtype)
    with torch.no_grad():
        fast = _factorised_inputs(*args)
    with torch.enable_grad():
        slow = _factorised_inputs(*args)
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype and torch.equal(a, b.detach())
    t = torch.randn(2, 5, 4, 6)
    unfolded = F.unfold(t, (1, 3), padding=(0, 1)).view(2, 5, 3, 24).permute(0, 3, 2, 1).reshape(2, 24, 15)
    assert torch.equal(_row_patches(t), unfolded)
    assert torch.equal(_row_patches(t.requires_grad_()), unfolded)  # the concatenation autograd differentiates


@pytest.mark.parametrize("channels_last", [False, True])
def test_block_output_at_inference_keeps_the_trunks_dtype_and_layout(channels_last):
    """Under bf16 autocast at inference the block hands the trunk's second half a bf16 map in the input's layout
    (no fp32 stream, no reorder before the next convolution); with autograd on it stays fp32 and contiguous. The
    values agree with the fp32 result to bf16 rounding."""
    torch.manual_seed(0)
    block = PyramidAttention(16, 2).eval()
    x = torch.randn(2, 16, 12, 10)
    if channels_last:
        block, x = block.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        low = x.to(torch.bfloat16)
        with torch.no_grad():
            out = block(low)
        trained = block(low)
    assert out.dtype == torch.bfloat16 and trained.dtype == torch.float32
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=layout) and trained.is_contiguous()
    torch.testing.assert_close(out.float(), trained.detach(), rtol=1e-2, atol=1e-2)


def test_split_bf16_scores_are_fp32_accurate_where_plain_bf16_is_not():
    """The split score GEMM (three bf16 products under oneDNN's bf16 math, fp32 accumulation) errs ~1e-5 relative;
    one bf16 product of the same operands errs ~1e-3: the split is what gives the accuracy."""
    from panet.hardware import bf16_matmul_math
    from panet.nn.attention import _scores, _split

    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(200, 96, generator=generator), torch.randn(300, 96, generator=generator)
    exact = q.double() @ k.double().t()
    split = _scores(q, k, onednn=False, out=torch.empty(200, 300), split=(torch.empty(200, 288), torch.empty(300, 288)))
    assert split.dtype == torch.float32
    scale = exact.abs().max().item()
    assert (split.double() - exact).abs().max().item() < 5e-5 * scale
    one_bf16 = (q.bfloat16() @ k.bfloat16().t()).double()
    assert (one_bf16 - exact).abs().max().item() > 1e-3 * scale
    # the high parts hold bf16 values exactly (bf16 math rounds only the low parts)
    high = _split(q, True)[:, :96]
    assert torch.equal(high, high.bfloat16().float()) and not torch.equal(q, high)
    with bf16_matmul_math():  # the same GEMM as one product of the split operands
        assert torch.equal(_split(q, True) @ _split(k, False).t(), split)


@pytest.mark.parametrize("grad", [False, True])
def test_factorised_path_with_split_scores_matches_the_plain_bf16_path(monkeypatch, grad):
    """Forcing the split scores on (AMX machines choose them by measurement) leaves the fast mode's results as they
    are, to the bf16 rounding of the weighted sum; fp32 mode never splits."""
    import panet.nn.attention as attention

    block = PyramidAttention(16, 2, fast=True)
    x = torch.randn(2, 16, 14, 11)
    results = []
    for split in (False, True):
        monkeypatch.setattr(attention, "split_bf16_scores", lambda device, split=split: split)
        inp = x.clone().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            out = block(inp)
        if grad:
            out.square().mean().backward()
            out = torch.cat([inp.grad.flatten(), *(p.grad.flatten() for p in block.parameters())])
            block.zero_grad()
        results.append(out.detach())
    plain, split = results
    assert ((split - plain).norm() / plain.norm()).item() < 5e-3
    assert not attention._splits_scores(torch.float32, None, x.device)  # fp32 mode: IEEE fp32 scores
    assert not attention._splits_scores(torch.float64, torch.bfloat16, x.device)
