"""Where a restore tile's attention spends its time: the factorised path's stages, each alone and all chained.

    python benchmarks/attention_stages.py               # eight 32x32 tiles, bf16 autocast, 2 threads
    python benchmarks/attention_stages.py --size 24 --threads 1

Times one batch of restore tiles through the pyramid-attention block (random weights and features: the work does
not depend on their values) as `panet restore --precision auto` runs it on a CPU with native bf16: the block as a
whole, building the queries and the key/value pyramid, and per sample the split-operand copies, the score GEMM, the
native softmax rows, the native weight rows and the weighted-sum GEMM, each alone (its inputs warm in cache) and
then chained as the block runs them. The gap between the sum of the stages and the chained time is what the N x L
matrices cost in memory traffic between kernels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from timing import best_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _ms(f, repeats: int) -> float:
    return 1e3 * best_seconds(f, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32, help="tile size (default 32, the denoisers' default tile)")
    parser.add_argument("--batch", type=int, default=8, help="tiles per batch (default 8, restore's maximum)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import torch

    from panet.hardware import bf16_matmul_math, cpu_description, split_bf16_scores
    from panet.nn import attention, native
    from panet.nn.attention import PyramidAttention

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    # channels-last, as the resolver converts the networks restore runs
    block = PyramidAttention(64, 2, levels=5).eval().to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 64, args.size, args.size).contiguous(memory_format=torch.channels_last)
    sizes = attention.pyramid_sizes(args.size, args.size, 5)
    split = split_bf16_scores("cpu")
    rows: list[tuple[str, float]] = []
    with torch.no_grad():
        with torch.autocast("cpu", torch.bfloat16):
            rows.append(("the block (as restore runs it)", _ms(lambda: block(x), args.repeats)))
            inputs = (x, sizes, block.query, block.key, block.value, block.softmax_scale, block.norm_eps)
            build = lambda: attention._factorised_inputs(*inputs, torch.float32, torch.bfloat16)  # noqa: E731
            rows.append(("queries, key/value pyramid", _ms(build, args.repeats)))
            queries, keys, values, norm = build()
        width = args.size
        chained = lambda: attention._factorised_forward(  # noqa: E731
            queries, keys, values, norm, width, sizes, torch.bfloat16, split=split
        )
        rows.append(("factorised attention, chained", _ms(chained, args.repeats)))
        n, n_keys = queries.shape[1], keys.shape[1]
        scores, probs = queries.new_empty(n, n_keys), queries.new_empty(n, n_keys)
        low = probs.new_empty(n, n_keys, dtype=torch.bfloat16)
        inv_norm = norm[0].reciprocal()
        q, k = queries[0], keys[0]
        if split:
            buffers = attention._split_buffers(queries, keys)
            split_copies = lambda: (attention._split(q, True, buffers[0]), attention._split(k, False, buffers[1]))  # noqa: E731
            rows.append(("  split-operand copies", args.batch * _ms(split_copies, args.repeats)))
            qs, ks = split_copies()

            def score_gemm():
                with bf16_matmul_math():
                    return torch.mm(qs, ks.t(), out=scores)
        else:
            score_gemm = lambda: torch.mm(q, k.t(), out=scores)  # noqa: E731
        rows.append(
            ("  score GEMM" + (" (split bf16)" if split else " (fp32)"), args.batch * _ms(score_gemm, args.repeats))
        )
        if native.available():
            softmax = lambda: native.softmax_rows(scores, inv_norm, probs, width, sizes)  # noqa: E731
            rows.append(("  softmax rows (native)", args.batch * _ms(softmax, args.repeats)))
            weights = lambda: native.diagonal_rows(probs, low, width, sizes)  # noqa: E731
            rows.append(("  weight rows (native, bf16 out)", args.batch * _ms(weights, args.repeats)))
        out = values.new_empty(n, values.shape[2])
        rows.append(
            ("  weighted-sum GEMM (bf16)", args.batch * _ms(lambda: torch.mm(low, values[0], out=out), args.repeats))
        )
    stages = sum(ms for name, ms in rows if name.startswith("  "))
    print(
        f"CPU: {cpu_description()}; {args.threads} threads; torch {torch.__version__}; native kernels: {native.status()}"
    )
    print(f"{args.batch} tiles of {args.size}x{args.size}, 64 channels, 5 levels, bf16 autocast; ms per batch\n")
    print("| stage | ms |\n|---|---|")
    for name, ms in rows:
        print(f"| {name.strip() if not name.startswith('  ') else '- ' + name.strip()} | {ms:.1f} |")
    print(f"| sum of the factorised stages alone | {stages:.1f} |")


if __name__ == "__main__":
    main()
