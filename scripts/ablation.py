"""Ablation: the same small network with pyramid attention, single-scale non-local attention, or none.

    python scripts/ablation.py --data-root ../shared/data                 # both tasks, all three variants
    python scripts/ablation.py --data-root ../shared/data --task sr --variants pa,none
    python scripts/ablation.py --data-root ../shared/data --task dn --variants none --seed 1   # seed-to-seed spread

Each variant is trained by the project's own command (`panet train configs/ablation-<task>.yaml
model_overrides.attention_levels=L out_dir=runs/ablation-<task>-<variant>`, resumed when a checkpoint exists),
then its EMA weights are evaluated like the shipped ones (the release's forward_chop) and written to
results/ablation/<task>_<set>_<variant>.json; `python scripts/results.py --render` puts the table in docs/results.md.
--seed N (N != 0) repeats a variant with another training seed (runs/ablation-<task>-<variant>-seedN,
results/ablation/<task>_<set>_<variant>_seedN.json): the table shows the spread over seeds, the scale against which
the differences between variants are to be read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = {
    "pa": (5, "pyramid attention (5 levels)"),
    "nonlocal": (1, "single-scale non-local"),
    "none": (0, "no attention"),
}
EVAL = {"dn": ("denoise", 50, ["Kodak24"]), "sr": ("sr", 2, ["Set5", "Set14"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--task", choices=sorted(EVAL), action="append")
    parser.add_argument("--variants", default="pa,nonlocal,none")
    parser.add_argument("--seed", type=int, default=0, help="training seed (0: the table's main runs)")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    out = ROOT / "results" / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    for key in args.task or sorted(EVAL):
        task, level, sets = EVAL[key]
        config = ROOT / "configs" / f"ablation-{key}.yaml"
        for variant in args.variants.split(","):
            levels, label = VARIANTS[variant]
            suffix = f"-seed{args.seed}" if args.seed else ""
            run = ROOT / "runs" / f"ablation-{key}-{variant}{suffix}"
            cmd = [
                sys.executable,
                "-m",
                "panet",
                "train",
                str(config),
                f"model_overrides.attention_levels={levels}",
                f"out_dir={run}",
                f"data.data_root={args.data_root}",
                f"seed={args.seed}",
            ]
            if (run / "checkpoint.pt").exists():
                cmd.append("--resume")
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, env={**os.environ})
            if args.train_only:
                continue
            evaluate(task, level, sets, variant, label, run, out, args, suffix.replace("-", "_"))


def evaluate(task, level, sets, variant, label, run, out, args, suffix="") -> None:
    """Score the run's EMA weights like the shipped ones, through the per-image cache of results/models/ (keyed by
    the weights' SHA-256): an interrupted evaluation resumes, a finished one is not repeated, a retrained one is."""
    from panet.evaluation.cache import evaluate_weights
    from panet.zoo.pretrained import ShippedWeights

    card = json.loads((run / "card.json").read_text())
    weights = ShippedWeights(run.name, task, None, None, run / "weights.safetensors", card)
    for set_name in sets:
        mean = evaluate_weights(
            weights,
            task,
            level,
            set_name,
            data_root=args.data_root,
            tiling="legacy",
            tile=64,
            overlap=16,
            cache=ROOT / "results" / "models",
        )
        record = {
            "task": task,
            "level": level,
            "set": set_name,
            "variant": label,
            "seed": card.get("seed", 0),
            "iterations": card["iterations"],
            "precision": card.get("precision", "fp32"),
            **{k: mean[k] for k in ("tiling", "images", "psnr", "ssim", "seconds")},
        }
        (out / f"{task}_{set_name}_{variant}{suffix}.json").write_text(json.dumps(record, indent=1))
        print(f"{task} {level} {set_name} {label}: {mean['psnr']:.2f} / {mean['ssim']:.4f}", flush=True)


if __name__ == "__main__":
    main()
