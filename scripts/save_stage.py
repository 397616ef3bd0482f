"""Commit a training run's current EMA weights as the next stage of a chained run (training/NAME.*).

    python scripts/save_stage.py runs/panet-dn-s-v2-stage3 panet-dn-s-v2 3 "what this stage did"

Long runs on these CPUs outlive a session, and runs/ does not survive a move to a new machine, so each stage's
weights go into the repository: training/NAME.safetensors (the run's last checkpointed EMA weights), NAME.json
(the run's card with the stage, the steps in all, the validation PSNR per step, the notes, and the earlier stages'
records under ``previous_stages``) and NAME.stageK.log.csv. The next stage's recipe starts from them (``init:``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def save_stage(run: Path, name: str, stage: int, notes: str, out: Path = ROOT / "training") -> dict:
    card = json.loads((run / "card.json").read_text())
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    reference = json.loads((run / "val_reference.json").read_text())
    previous_path = out / f"{name}.json"
    previous = json.loads(previous_path.read_text()) if stage > 1 and previous_path.exists() else None
    if previous and int(previous.get("stage", 0)) != stage - 1:
        # saving a stage twice would count its steps twice and file it as its own predecessor
        raise SystemExit(
            f"{previous_path} holds stage {previous.get('stage')}, not stage {stage - 1}: restore training/{name}.* "
            f"(git checkout) or give the right stage number"
        )
    steps = int(card["iterations"])
    card.update(
        name=name,
        stage=stage,
        iterations=steps + (int(previous["iterations"]) if previous else 0),
        stage_iterations=steps,
        # a later stage's recipe plans the steps still to go: the whole plan adds the steps already done
        planned_iterations=int(card.get("planned_iterations", steps))
        + (int(previous["iterations"]) if previous else 0),
        validation={
            **{f"step {r['step']}": round(float(r["val_psnr"]), 4) for r in rows if r.get("val_psnr")},
            reference["baseline"]: round(reference["psnr"], 4),
        },
        notes=notes,
    )
    if previous:
        # each stage's whole recipe (init, data, schedule, seed): the recipe file itself moves on to the next stage
        own = {
            k: previous[k] for k in ("stage", "iterations", "seed", "validation", "notes", "config") if k in previous
        }
        card["previous_stages"] = [*previous.get("previous_stages", []), own]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "weights.safetensors", out / f"{name}.safetensors")
    shutil.copy(run / "log.csv", out / f"{name}.stage{stage}.log.csv")
    previous_path.write_text(json.dumps(card, indent=1) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run folder (out_dir of the recipe)")
    parser.add_argument("name", help="the chained weights' name: training/NAME.*")
    parser.add_argument("stage", type=int, help="this stage's number (1: the first)")
    parser.add_argument("notes", help="what this stage did, in a sentence or two")
    args = parser.parse_args()
    card = save_stage(args.run, args.name, args.stage, args.notes)
    print(f"{args.name} stage {args.stage}: {card['stage_iterations']} steps ({card['iterations']} in all)")


if __name__ == "__main__":
    main()
