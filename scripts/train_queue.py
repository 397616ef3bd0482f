"""Run training recipes one after another on one CPU core, resuming each from its checkpoint.

    nohup python scripts/train_queue.py --core 0 pa-edsr-s-x2 pa-edsr-s-x3 pa-edsr-s-x4 > runs/queue0.log 2>&1 &
    nohup python scripts/train_queue.py --core 1 panet-dn-s panet-dn-gray-s panet-car-s panet-demosaic-s > runs/queue1.log 2>&1 &

A session on a 2-core machine ends after a few hours and kills its processes; rerunning the same command resumes
where the checkpoints stopped (a finished run is skipped). Each recipe runs as `panet train configs/NAME.yaml
[--resume]` with one thread pinned to --core, so two queues share the machine without slowing each other.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from panet.train import _load_checkpoint, load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="names of configs/*.yaml")
    parser.add_argument("--core", type=int, help="pin to this CPU core (Linux)")
    parser.add_argument("--data-root", default=os.environ.get("PANET_DATA", str(ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PANET_DATA": args.data_root}
    for name in args.recipes:
        path = ROOT / "configs" / f"{name}.yaml"
        config = load_config(path)
        checkpoint = ROOT / config.out_dir / "checkpoint.pt"
        if checkpoint.exists() and _load_checkpoint(checkpoint)["step"] >= config.iterations:
            print(f"{name}: finished ({config.iterations} iterations)", flush=True)
            continue
        cmd = [sys.executable, "-m", "panet", "train", str(path.relative_to(ROOT))] + (["--resume"] if checkpoint.exists() else [])
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
