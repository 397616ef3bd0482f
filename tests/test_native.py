"""The native row kernels of the factorised attention (panet.nn.native): each against the PyTorch operations they
replace, the attention with them against the float64 oracle, and the fallbacks when they cannot be built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from panet.nn import native
from panet.nn.attention import PyramidAttention, _diagonal_row_sum, pyramid_sizes
from panet.nn.reference import reference_module

HAS_COMPILER = shutil.which(os.environ.get("CC", "cc")) is not None
needs_native = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler: the native kernels cannot be built here")

SHAPES = [(9, 13, 5), (17, 12, 5), (20, 7, 3), (7, 9, 1), (32, 32, 5), (1, 6, 2)]


def test_builds_where_a_compiler_exists():
    # where cc exists the kernels must build: a silent fallback would hide a broken kernel and its speed
    if HAS_COMPILER and os.environ.get("PANET_NATIVE", "1") != "0":
        assert native.available(), native.status()
        assert native.status().startswith("on: ")


def _problem(height, width, levels, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sizes = pyramid_sizes(height, width, levels)
    n, n_keys = height * width, sum(h * w for h, w in sizes)
    scores = torch.randn(n, n_keys, generator=generator) * 3
    norm = torch.rand(n_keys, generator=generator) + 0.5
    return scores, norm, sizes


@needs_native
@pytest.mark.parametrize("height, width, levels", SHAPES)
def test_softmax_rows_match_pytorch(height, width, levels):
    scores, norm, sizes = _problem(height, width, levels)
    want = torch.softmax(_diagonal_row_sum(scores.double(), torch.empty_like(scores.double()), width, sizes) / norm, 1)
    got = native.softmax_rows(scores, norm.reciprocal(), torch.empty_like(scores), width, sizes)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-7)


@needs_native
@pytest.mark.parametrize("height, width, levels", SHAPES)
def test_diagonal_rows_match_pytorch_in_fp32_and_bf16(height, width, levels):
    scores, _, sizes = _problem(height, width, levels, seed=1)
    want = _diagonal_row_sum(scores, torch.empty_like(scores), width, sizes)
    assert torch.equal(native.diagonal_rows(scores, torch.empty_like(scores), width, sizes), want)  # same adds
    low = native.diagonal_rows(scores, torch.empty_like(scores, dtype=torch.bfloat16), width, sizes)
    assert torch.equal(low, want.to(torch.bfloat16))  # rounded to nearest even, as torch rounds


@needs_native
@pytest.mark.parametrize("height, width, levels", SHAPES)
@pytest.mark.parametrize("threads", [1, 3])
def test_softmax_backward_rows_match_autograd(height, width, levels, threads, monkeypatch):
    scores, norm, sizes = _problem(height, width, levels, seed=2)
    d_weights = torch.randn(scores.shape, generator=torch.Generator().manual_seed(3))
    s64, n64 = scores.double(), norm.double().requires_grad_()
    s64.requires_grad_()
    probs64 = torch.softmax(_diagonal_row_sum(s64, torch.empty_like(s64), width, sizes) / n64, 1)
    d_probs = _diagonal_row_sum(d_weights.double(), torch.empty_like(s64), width, sizes)
    d_scores64, d_norm64 = torch.autograd.grad(probs64, (s64, n64), d_probs)

    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # the kernels take torch's thread count
    inv = norm.reciprocal()
    probs = native.softmax_rows(scores, inv, torch.empty_like(scores), width, sizes)
    d_scaled, d_norm = torch.empty_like(scores), torch.empty_like(norm)
    native.softmax_backward_rows(scores, inv, probs, d_weights, d_scaled, d_norm, width, sizes)
    # d_scaled is dS / norm; the scores' gradient is its diagonal row sum (the sum is self-adjoint)
    d_scores = _diagonal_row_sum(d_scaled, torch.empty_like(d_scaled), width, sizes)
    scale = d_scores64.abs().max().item()
    torch.testing.assert_close(d_scores.double(), d_scores64, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(d_norm.double(), d_norm64, rtol=1e-4, atol=1e-5 * d_norm64.abs().max().item())
    # bf16 d_weights (a bf16 GEMM's output) are read as they are: the same as widening them first
    low = d_weights.to(torch.bfloat16)
    wide_scaled, wide_norm = torch.empty_like(scores), torch.empty_like(norm)
    native.softmax_backward_rows(scores, inv, probs, low.float(), wide_scaled, wide_norm, width, sizes)
    native.softmax_backward_rows(scores, inv, probs, low, d_scaled, d_norm, width, sizes)
    assert torch.equal(d_scaled, wide_scaled) and torch.equal(d_norm, wide_norm)


@needs_native
def test_bad_shapes_and_dtypes_are_refused():
    scores, norm, sizes = _problem(9, 13, 5)
    with pytest.raises(ValueError, match="does not fit"):
        native.softmax_rows(scores, norm, torch.empty_like(scores), 12, sizes)
    with pytest.raises(ValueError, match="fp32"):
        native.softmax_rows(scores.double(), norm, torch.empty_like(scores), 13, sizes)
    with pytest.raises(ValueError, match="fp32"):
        native.diagonal_rows(scores.t(), torch.empty_like(scores), 13, sizes)  # not contiguous


@needs_native
@pytest.mark.parametrize("batch, height, width, levels", [(0, 9, 13, 5), (1, 17, 12, 5), (2, 20, 7, 3), (2, 9, 9, 1)])
def test_attention_with_native_kernels_matches_the_float64_oracle(batch, height, width, levels):
    torch.manual_seed(0)
    block = PyramidAttention(16, 2, levels=levels)
    with torch.no_grad():
        block.query[0].weight.mul_(3)  # a peaked softmax
    oracle = PyramidAttention(16, 2, levels=levels).double()
    oracle.load_state_dict(block.state_dict())
    x = torch.randn(batch, 16, height, width)
    x64 = x.double().requires_grad_()
    want = reference_module(oracle, x64)
    assert native.available()
    x32 = x.clone().requires_grad_()
    got = block(x32)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    if batch == 0:
        return
    grad = torch.randn_like(x)
    got.backward(grad)
    want.backward(grad.double())
    for name, a, b in [("input", x32.grad, x64.grad)] + [
        (n, p.grad, q.grad) for (n, p), (_, q) in zip(block.named_parameters(), oracle.named_parameters())
    ]:
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5 * b.abs().max().item(), msg=name)


@needs_native
def test_fp16_products_keep_the_pytorch_operations():
    # the kernels write fp32 or bf16 only: fp16 autocast on a CPU takes the PyTorch operations, same results
    torch.manual_seed(2)
    block = PyramidAttention(16, 2)
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        fast = block(x)
        with native.disabled():
            slow = block(x)
    assert torch.equal(fast, slow)


@needs_native
def test_native_and_pytorch_operations_agree_under_bf16_autocast():
    torch.manual_seed(1)
    block = PyramidAttention(32, 2)
    x = torch.randn(2, 32, 24, 20)
    results = []
    for off in (False, True):
        x_in = x.clone().requires_grad_()
        block.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if off:
                with native.disabled():
                    out = block(x_in)
            else:
                out = block(x_in)
        out.float().square().sum().backward()
        # the PReLU slopes' gradients differ by design: PyTorch rounds them to bf16 (see the next test)
        grads = [p.grad.clone() for n, p in block.named_parameters() if not n.endswith(".1.weight")]
        results.append([out.float(), x_in.grad, *grads])
    for a, b in zip(*results):  # bf16 products round differently by a few ulps of bf16 at most
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * b.abs().max().item())


@needs_native
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_single_slope_prelu_backward_matches_pytorch_and_sums_the_slope_exactly(layout):
    from panet.nn.blocks import SingleSlopePReLU

    torch.manual_seed(3)
    x = torch.randn(2, 32, 24, 20).bfloat16().contiguous(memory_format=layout)
    g = torch.randn(2, 32, 24, 20).bfloat16()
    exact = torch.where(x.double() > 0, 0.0, x.double() * g.double()).sum().item()
    runs = {}
    for name in ("native", "pytorch"):
        act = SingleSlopePReLU()
        x_in = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if name == "pytorch":
                with native.disabled():
                    out = act(x_in)
            else:
                out = act(x_in)
        out.backward(g)
        runs[name] = (out.detach(), x_in.grad, act.weight.grad.item())
    (out_n, gx_n, slope_n), (out_p, gx_p, slope_p) = runs["native"], runs["pytorch"]
    assert torch.equal(out_n, out_p) and torch.equal(gx_n, gx_p)  # the same forward and input gradient
    assert slope_n == pytest.approx(exact, rel=1e-5)  # summed in fp32
    assert slope_p == pytest.approx(exact, rel=2**-7)  # PyTorch's, rounded to bf16


def _fresh_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300)


PROBE = (
    "import torch; from panet.nn import native; from panet.nn.attention import PyramidAttention;"
    "print(native.available()); print(native.status());"
    "print(tuple(PyramidAttention(8, 2)(torch.randn(1, 8, 9, 9)).shape))"
)


def test_switched_off_or_without_a_compiler_the_attention_still_runs(tmp_path):
    off = _fresh_python(PROBE, PANET_NATIVE="0", PANET_CACHE=str(tmp_path))
    assert off.returncode == 0, off.stderr
    assert off.stdout.splitlines() == ["False", "off (PANET_NATIVE=0)", "(1, 8, 9, 9)"]
    missing = _fresh_python(PROBE, CC=str(tmp_path / "no-such-compiler"), PANET_CACHE=str(tmp_path))
    assert missing.returncode == 0, missing.stderr
    lines = missing.stdout.splitlines()
    assert lines[0] == "False" and "no C compiler" in lines[1] and lines[2] == "(1, 8, 9, 9)"
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: fatal error: broken on purpose' >&2\nexit 1\n")
    broken.chmod(0o755)
    failed = _fresh_python(PROBE, CC=str(broken), PANET_CACHE=str(tmp_path))
    assert failed.returncode == 0, failed.stderr
    lines = failed.stdout.splitlines()
    assert lines[0] == "False" and "broken on purpose" in lines[1] and lines[2] == "(1, 8, 9, 9)"
    assert not list(tmp_path.glob("native-*.so")) and not list(tmp_path.glob("tmp*"))  # nothing half-written


@needs_native
def test_an_unwritable_cache_folder_builds_in_a_temporary_one(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")  # the cache folder would have to be made inside a file
    done = _fresh_python(PROBE, PANET_CACHE=str(blocked / "cache"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "True" and "panet-native-" in lines[1] and lines[2] == "(1, 8, 9, 9)"


@needs_native
def test_the_build_is_cached_per_source_compiler_and_cpu(tmp_path):
    first = _fresh_python(PROBE, PANET_CACHE=str(tmp_path))
    assert first.returncode == 0, first.stderr
    built = list(tmp_path.glob("native-rows-*.so"))
    assert len(built) == 1 and first.stdout.splitlines()[1] == f"on: {built[0]}"
    stamp = built[0].stat().st_mtime_ns
    second = _fresh_python(PROBE, PANET_CACHE=str(tmp_path))
    assert second.returncode == 0 and second.stdout == first.stdout
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_the_source_ships_with_the_package():
    assert native.SOURCE.is_file()
    package_data = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert "nn/native_rows.c" in package_data.read_text()
