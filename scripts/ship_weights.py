"""Ship a training run's weights: copy runs/<name>/weights.safetensors and card.json into the package.

    python scripts/ship_weights.py runs/panet-dn-s [--name panet-dn-s]   # default name: the recipe's
    python scripts/ship_weights.py training/panet-dn-real-s.safetensors  # a chained run's committed stage
    python scripts/results.py --data-root ../shared/data --only panet-dn-s   # then add the eval table

The weights are the run's EMA weights as `panet train` wrote them at its last checkpoint; the card records the
recipe, data, iterations, seed and command. Refuses files over 20 MB (they live in git).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "src" / "panet" / "zoo" / "shipped"
LIMIT = 20 * 2**20


def recipe_path(command: str) -> Path | None:
    """The recipe named in a card's command (``panet train configs/X.yaml``)."""
    return next((ROOT / part for part in command.split() if part.endswith((".yaml", ".yml"))), None)


def recipe_name(command: str) -> str | None:
    """The recipe's file stem (``panet train configs/panet-dn-gray-s-sigma15.yaml`` -> its name): several recipes
    may train one preset (a blind model and one per level), so the preset alone does not name the weights."""
    recipe = recipe_path(command)
    return recipe.stem if recipe else None


def recipe_notes(command: str) -> str:
    """The leading comment block of the recipe named in the card's command."""
    recipe = recipe_path(command)
    if recipe is None or not recipe.is_file():
        return ""
    lines = []
    for line in recipe.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def init_record(path: Path, text: str) -> dict:
    """What a fine-tuned run started from: the init file's SHA-256 and the shipped weights it equals, if any (a
    recipe names a run folder, e.g. runs/panet-dn-gray-s/weights.safetensors; this says which weights that was)."""
    import hashlib

    data = path.read_bytes()
    same = [p.stem for p in sorted(DEST.glob("*.safetensors")) if p.read_bytes() == data]
    return {"file": text, "sha256": hashlib.sha256(data).hexdigest(), "shipped_as": same[0] if same else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "run", help="a run folder with weights.safetensors and card.json, or a stage in training/ (NAME.safetensors)"
    )
    parser.add_argument("--name", help="shipped name (default: the recipe's name, else the card's preset)")
    args = parser.parse_args()
    run = Path(args.run)
    if run.suffix == ".safetensors":  # a stage of a chained run (scripts/save_stage.py): its card beside it
        weights, card_path = run, run.with_suffix(".json")
    else:
        weights, card_path = run / "weights.safetensors", run / "card.json"
    for path in (weights, card_path):
        if not path.is_file():
            sys.exit(f"ship_weights: {path} not found (has the run written a checkpoint?)")
    if weights.stat().st_size > LIMIT:
        sys.exit(f"ship_weights: {weights} is {weights.stat().st_size / 2**20:.1f} MB, over the 20 MB limit")
    card = json.loads(card_path.read_text())
    name = args.name or recipe_name(card.get("command", "")) or card["preset"]
    card["name"] = name
    notes = recipe_notes(card.get("command", ""))
    if notes and run.suffix != ".safetensors":
        card["notes"] = notes  # why the recipe is what it is (blind range or per level, size, data), from its comments
    # a committed stage keeps its own notes: the recipe's comments have moved on to describe the next stage
    init = (card.get("config") or {}).get("init")
    if init and (ROOT / init).is_file() and "init" not in card:
        card["init"] = init_record(ROOT / init, init)
    shipped_card = DEST / f"{name}.json"
    if shipped_card.exists() and (DEST / f"{name}.safetensors").read_bytes() == weights.read_bytes():
        previous = json.loads(shipped_card.read_text())
        card.update({k: previous[k] for k in ("eval", "eval_command") if k in previous})  # same weights: still holds
    else:
        card.pop("eval", None)  # new weights: scripts/results.py evaluates them again
    DEST.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, DEST / f"{name}.safetensors")
    (DEST / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    print(
        f"shipped {name}: {card['iterations']} iterations of {card['planned_iterations']} "
        f"({weights.stat().st_size / 2**20:.2f} MB)"
    )


if __name__ == "__main__":
    main()
