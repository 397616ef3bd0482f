"""Training speed: iterations per second of the recipes in configs/ and of the paper's PANet.

    python benchmarks/train_step.py            # small recipes + paper PANet (batch 16, 48x48), fp32 and bf16
    python benchmarks/train_step.py --quick    # small recipes only, fp32 and bf16
    python benchmarks/train_step.py --threads 1
    python benchmarks/train_step.py --only panet-dn-s,pa-edsr-s-x2 --precision bf16 --threads 1
    python benchmarks/train_step.py --only panet-dn-s --patches 24,48     # a recipe at other patch sizes

One training step = forward, L1 loss, backward, Adam step, on random data of the recipe's batch and patch
size (data loading is not timed: TrainPairs serves a batch in a few ms). CPU always; CUDA too when present.
Each row is the median of --steps timed steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def recipes(quick: bool) -> list[tuple[str, str, int, int, dict]]:
    """(label, model, patch, batch, overrides): every non-paper recipe in configs/, then the paper's PANet."""
    import yaml

    rows = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        c = yaml.safe_load(path.read_text())
        if path.stem.startswith("paper-"):
            continue
        rows.append(
            (
                path.stem,
                c["model"],
                c.get("data", {}).get("patch_size", 48),
                c.get("batch_size", 16),
                c.get("model_overrides", {}),
            )
        )
    if not quick:
        rows.append(("paper PANet (panet-dn)", "panet-dn", 48, 16, {}))
    return rows


def time_steps(
    model_name: str, overrides: dict, patch: int, batch: int, precision: str, device: str, steps: int
) -> float:
    import torch

    from panet import create_model
    from panet.train.loop import place_batch, place_model

    torch.manual_seed(0)
    model = place_model(create_model(model_name, **overrides), device).train()  # as panet train places it
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    s = model.scale
    x = place_batch(torch.rand(batch, model.colors, patch, patch), device)
    y = place_batch(torch.rand(batch, model.colors, patch * s, patch * s), device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")
    times = []
    for i in range(steps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss = torch.nn.functional.l1_loss(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", help="comma-separated recipe names (configs/NAME.yaml) to time")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="time only this precision")
    parser.add_argument("--patches", help="comma-separated patch sizes to time each recipe at (default: its own)")
    args = parser.parse_args()
    rows = recipes(args.quick)
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {label for label, *_ in rows})
        if unknown:
            parser.error(f"unknown recipe(s) {', '.join(unknown)}; see configs/")
        rows = [row for row in rows if row[0] in wanted]
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ", no CUDA")
    )
    print(
        f"{'recipe':<26} {'model':<14} {'patch':>5} {'batch':>5} {'device':>6} {'precision':>9} {'s/it':>8} {'it/s':>8}"
    )
    patches = [int(p) for p in args.patches.split(",")] if args.patches else [None]
    rows = [
        (label, model, p or patch, batch, overrides) for label, model, patch, batch, overrides in rows for p in patches
    ]
    for label, model, patch, batch, overrides in rows:
        for device in devices:
            for precision in [args.precision] if args.precision else ["fp32", "bf16"]:
                seconds = time_steps(model, overrides, patch, batch, precision, device, args.steps)
                print(
                    f"{label:<26} {model:<14} {patch:>5} {batch:>5} {device:>6} {precision:>9} {seconds:>8.3f} "
                    f"{1 / seconds:>8.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
