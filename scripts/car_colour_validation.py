"""Colour JPEG artifact removal on the colour CAR recipe's validation images, scored in RGB: the colour JPEG itself,
the shipped gray CAR model restoring the luma (what `panet restore --task car` did for colour photos before a
colour model shipped) and colour weights. The validation images are training-set photos that training never sees
(`panet.train.validation`); no benchmark set is used, so the result may decide what ships.

    python scripts/car_colour_validation.py training/panet-car-color-s.safetensors --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="colour CAR weights (.safetensors)")
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "panet-car-color-s.yaml"))
    parser.add_argument("--gray", default="panet-car-s", help="shipped gray CAR weights restoring the luma")
    parser.add_argument("--data-root")
    parser.add_argument("--quality", type=int, help="JPEG quality (default: the recipe's validation level)")
    args = parser.parse_args()

    import numpy as np

    from panet.data.datasets import EvalPairs
    from panet.evaluation.metrics import psnr
    from panet.inference.restore import restore_float
    from panet.train.config import data_folders, load_config
    from panet.train.validation import _val_level
    from panet.zoo.pretrained import load_model
    from panet.zoo.weights import load_weights

    config = load_config(args.recipe)
    if args.data_root:
        config.data.data_root = args.data_root
    quality = args.quality or _val_level(config)
    colour, gray = load_weights(args.weights).eval(), load_model(args.gray).eval()
    run = {"task": "car", "tiling": "legacy", "precision": "fp32"}  # as validation runs
    scores: dict[str, list[float]] = {"colour JPEG": [], f"{args.gray} (luma)": [], Path(args.weights).name: []}
    for folder in data_folders(config.data.val, config.data.data_root):
        pairs = EvalPairs(folder, task="car", level=quality, colors=3, crop=config.data.val_crop)
        pairs.files = pairs.files[: config.data.val_images or None]
        for item in pairs:
            jpeg = item.degraded.astype(np.float32) / 255
            outputs = [item.degraded] + [restore_float(m, jpeg, **run) for m in (gray, colour)]
            for name, out in zip(scores, outputs, strict=True):
                out8 = out if out.dtype == np.uint8 else np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
                scores[name].append(psnr(out8, item.target))
    print(f"q {quality}, {len(scores['colour JPEG'])} validation crops of {config.data.val_crop}, RGB PSNR:")
    for name, values in scores.items():
        print(f"  {name}: {np.mean(values):.2f} dB")


if __name__ == "__main__":
    main()
