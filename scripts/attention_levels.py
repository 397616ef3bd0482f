"""Does heavier corruption move the pyramid attention to coarser levels? (the paper's claim, tested)

    python scripts/attention_levels.py --weights panet-dn-s --set Kodak24 --data-root ../shared/data

For a (blind) denoiser: for each of --images images and --pixels random pixels per image (fixed seeds), the share
of attention mass on each pyramid level (panet.inference.explain.attention_for_pixel, the window `panet restore` tiles
would see) at each --sigmas; prints the mean shares with their standard error and writes them as JSON
(results/attention_levels.json) and a bar chart (docs/attention_levels.png). "uniform" is the share each level
would get from attention spread evenly over all key patches (levels differ in size), the baseline to compare with.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> None:
    from PIL import Image, ImageDraw

    from panet.data.datasets import EvalPairs, find_set
    from panet.inference.explain import attention_for_pixel
    from panet.zoo.pretrained import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="a denoiser: shipped name or file")
    parser.add_argument("--set", default="Kodak24")
    parser.add_argument("--sigmas", default="10,50")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--pixels", type=int, default=16)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--data-root")
    parser.add_argument("--json", default=str(ROOT / "results" / "attention_levels.json"))
    parser.add_argument("--png", default=str(ROOT / "docs" / "attention_levels.png"))
    parser.add_argument("--no-readme", dest="readme", action="store_false", help="do not update README.md's block")
    args = parser.parse_args()
    model = load_model(args.weights).eval()
    rows = {}
    for sigma in [float(s) for s in args.sigmas.split(",")]:
        pairs = EvalPairs(find_set(args.set, args.data_root), task="denoise", level=sigma, colors=model.colors)
        pairs.files = pairs.files[: args.images]
        shares = []
        for k, item in enumerate(pairs):
            noisy = item.degraded.astype(np.float32) / 255.0
            rng = np.random.default_rng(k)  # the same pixels at every sigma
            h, w = noisy.shape[:2]
            for y, x in zip(rng.integers(0, h, args.pixels), rng.integers(0, w, args.pixels)):
                explained = attention_for_pixel(model, noisy, y=int(y), x=int(x), window=args.window)
                shares.append(explained.shares)
                keys = np.array([m.size for m in explained.maps], dtype=float)
        shares = np.array(shares)
        rows[f"{sigma:g}"] = {
            "mean": shares.mean(0).tolist(),
            "sem": (shares.std(0, ddof=1) / np.sqrt(len(shares))).tolist(),
            "samples": len(shares),
        }
        print(
            f"sigma {sigma:g}: "
            + "  ".join(f"{m:.3f}±{s:.3f}" for m, s in zip(rows[f"{sigma:g}"]["mean"], rows[f"{sigma:g}"]["sem"])),
            flush=True,
        )
    uniform = (keys / keys.sum()).tolist()  # the shares of attention spread evenly over all key patches
    print("uniform:  " + "  ".join(f"{u:.3f}" for u in uniform))
    result = {
        "weights": str(args.weights),
        "set": args.set,
        "images": args.images,
        "pixels": args.pixels,
        "window": args.window,
        "uniform": uniform,
        "scales": [1.0, 0.9, 0.8, 0.7, 0.6][: len(shares[0])],
        "sigmas": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    # bar chart: one group per level, one bar per sigma
    width, height, pad = 520, 260, 40
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    colours = [(60, 110, 200), (210, 80, 40), (60, 160, 80), (150, 80, 170)]
    levels = len(result["scales"])
    top = max(max(r["mean"]) for r in rows.values()) * 1.15
    group = (width - 2 * pad) / levels
    bar = group / (len(rows) + 1)
    for li, scale in enumerate(result["scales"]):
        for si, r in enumerate(rows.values()):
            x0 = pad + li * group + si * bar
            y0 = height - pad - r["mean"][li] / top * (height - 2 * pad)
            draw.rectangle([x0, y0, x0 + bar - 2, height - pad], fill=colours[si % len(colours)])
        draw.text((pad + li * group, height - pad + 6), f"scale {scale:.1f}", fill=(0, 0, 0))
        yu = height - pad - uniform[li] / top * (height - 2 * pad)  # what evenly spread attention would give
        draw.line([pad + li * group - 2, yu, pad + li * group + len(rows) * bar, yu], fill=(0, 0, 0), width=2)
    for tick in np.arange(0.0, top, 0.1):
        yt = height - pad - tick / top * (height - 2 * pad)
        draw.line([pad - 4, yt, pad - 1, yt], fill=(0, 0, 0))
        draw.text((4, yt - 6), f"{100 * tick:.0f}%", fill=(0, 0, 0))
    for si, sigma in enumerate(rows):
        draw.rectangle([pad + si * 90, 8, pad + si * 90 + 10, 18], fill=colours[si % len(colours)])
        draw.text((pad + si * 90 + 14, 7), f"sigma {sigma}", fill=(0, 0, 0))
    draw.line([pad + len(rows) * 90, 13, pad + len(rows) * 90 + 12, 13], fill=(0, 0, 0), width=2)
    draw.text((pad + len(rows) * 90 + 16, 7), "uniform", fill=(0, 0, 0))
    draw.text((width - 170, 7), "share of attention mass", fill=(0, 0, 0))
    image.save(args.png)
    print(f"wrote {args.json} and {args.png}")
    if args.readme:
        from readme_block import replace_block

        if replace_block("attention-levels", finding(result)):
            print("updated the attention-levels block in README.md")


def finding(result: dict) -> list[str]:
    """The README's table and one sentence, both from the measured shares (lowest and highest sigma compared)."""
    sigmas = list(result["sigmas"])
    low, high = sigmas[0], sigmas[-1]
    lo, hi = result["sigmas"][low]["mean"], result["sigmas"][high]["mean"]
    # standard error of each level's change (the pixels are the same at both sigmas; independent errors assumed)
    sem = [(a**2 + b**2) ** 0.5 for a, b in zip(result["sigmas"][low]["sem"], result["sigmas"][high]["sem"])]
    lines = ["| level | uniform | " + " | ".join(f"σ {s}" for s in sigmas) + " |", "|---|---|" + "---|" * len(sigmas)]
    for i, scale in enumerate(result["scales"]):
        lines.append(
            f"| scale {scale:.1f} | {100 * result['uniform'][i]:.1f}% | "
            + " | ".join(f"{100 * result['sigmas'][s]['mean'][i]:.1f}%" for s in sigmas)
            + " |"
        )
    coarser = [i for i in range(1, len(lo)) if hi[i] - lo[i] > 2 * sem[i]]
    gaining = ", ".join(f"{result['scales'][i]:.1f}" for i in coarser)
    moved = (
        "every coarser level gains"
        if len(coarser) == len(lo) - 1
        else (
            f"the levels at scale {gaining} gain"
            if coarser
            else "no coarser level gains by more than two standard errors"
        )
    )
    lines += [
        "",
        f"Measured on {result['images']} {result['set']} images x {result['pixels']} pixels with "
        f"`{result['weights']}`: the full-resolution level's share of the attention goes from "
        f"{100 * lo[0]:.1f}% at σ {low} to {100 * hi[0]:.1f}% at σ {high}, and {moved} "
        f"(each change's standard error is at most {100 * max(sem):.1f} points).",
    ]
    return lines


if __name__ == "__main__":
    main()
