"""Evaluate the shipped weights on every benchmark set of their task; write their cards' eval tables and docs/results.md.

    python scripts/results.py --data-root ../shared/data                  # all shipped weights
    python scripts/results.py --data-root ../shared/data --only pa-edsr-s-x2
    python scripts/results.py --data-root ../shared/data --only panet-dn-s --sets CBSD68 --levels 50   # one row
    python scripts/results.py --render                                    # rebuild docs/results.md from the cache
    python scripts/results.py --data-root ../shared/data --card-rows      # every row the cards list, each with its
                                                                          # own tiling: how docs/results.md is made

Same protocol and seeded degradations as `panet eval` and scripts/baselines.py (one table of sets and levels,
shared with it). Networks run through the release's forward_chop (the paper's protocol: tiles below 6400/6800
pixels) unless --tiling tile; the tiling is recorded with every number. Per-image results are cached in
results/models/ (keyed by the weights' SHA-256), so an interrupted run resumes and changed weights are re-evaluated;
delete results/models/ to recompute every number from scratch (hours on a CPU).
The ablation table comes from results/ablation/*.json (scripts/ablation.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from ablation import EVAL as ABLATION_TASKS  # noqa: E402
from ablation import VARIANTS  # noqa: E402
from baselines import CACHE as BASELINE_CACHE  # noqa: E402
from baselines import plan, record_path  # noqa: E402
from readme_block import replace_block  # noqa: E402

from panet.evaluation.baselines import baseline_label  # noqa: E402
from panet.evaluation.cache import (  # noqa: E402
    evaluate_weights,
    parse_tiling_label,
    record_name,
    tiling_label,
)
from panet.evaluation.paper import benchmark_rows as plan_for  # noqa: E402
from panet.tasks import get_task  # noqa: E402

CACHE = ROOT / "results" / "models"
DEFAULT_TILE, DEFAULT_OVERLAP = 64, 16  # --tiling tile without --tile / --tile-overlap
ABLATION = ROOT / "results" / "ablation"


def level_text(task: str, level) -> str:
    """'x2', 'σ 50', 'q 10', '-'."""
    return get_task(task).format_level(level)


def paper_panet(task: str, set_name: str, level, noise: str | None = None, colors: int | None = None):
    """The paper's PANet / PA-EDSR on a set (release.md section 5): PSNR or (PSNR, SSIM), or None (always for rows
    degraded with another noise model than the paper's, or scored in RGB where the paper scores the luma)."""
    if noise or get_task(task).scores_rgb(colors):
        return None
    return get_task(task).paper_score("panet", set_name, level)


def evaluate(weights, task, level, set_name, data_root, tiling, tile, overlap) -> dict:
    """The weights' record on one set, from results/models/ or evaluated (and cached image by image)."""
    return evaluate_weights(
        weights, task, level, set_name, data_root=data_root, tiling=tiling, tile=tile, overlap=overlap, cache=CACHE
    )


def protocol_text(label: str) -> str:
    """'legacy' -> 'chop' (the release's forward_chop, the paper's protocol); 'tile32-8' -> 'tiles 32/8'."""
    tiling, tile, overlap = parse_tiling_label(label)
    return "chop" if tiling == "legacy" else f"tiles {tile}/{overlap}"


def headline_rows(rows: list[dict]) -> list[dict]:
    """One row per (task, level, set), in order: the paper's protocol (legacy chop) where it was run, else the
    first other tiling."""
    chosen: dict[tuple, dict] = {}
    for r in rows:
        key = (r["task"], r["level"], r["set"])
        if key not in chosen or (r["tiling"] == "legacy" and chosen[key]["tiling"] != "legacy"):
            chosen[key] = r
    return list(chosen.values())


def best_baseline(
    task, level, set_name, noise: str | None = None, colors: int | None = None
) -> tuple[str, dict] | None:
    """The classical baseline with the highest PSNR in results/baselines (the input itself excluded). None for rows
    degraded with another noise model (camera noise): the baselines are scored on the standard degradation.
    ``colors``: the row's, where a luma task's colour rows are scored in RGB (a record's "colors")."""
    if noise:
        return None
    best = None
    rgb = get_task(task).scores_rgb(colors)
    for group_task, _, _, baselines, group_colors in plan():
        if group_task != task or get_task(task).scores_rgb(group_colors) != rgb:
            continue
        # the degraded input counts only where it is the one baseline (the JPEG for artifact removal)
        for b in [b for b in baselines if b != "identity"] or baselines:
            path = record_path(task, level, set_name, b, colors)
            if path.exists():
                r = json.loads(path.read_text())
                if best is None or r["psnr"] > best[1]["psnr"]:
                    best = (baseline_label(b, task), r)
    return best


# The targets for CPU-trained models: (task, set, level, absolute PSNR | (baseline, margin in dB))
TARGETS = [
    ("sr", "Set5", 2, 37.0),
    ("sr", "Set5", 4, 31.0),
    ("denoise", "CBSD68", 50, ("bm3d", 0.3)),
    ("car", "LIVE1", 10, ("identity", 1.2)),
    ("demosaic", "McMaster", None, ("menon", 1.5)),
]


# Issue 22's targets for weights v2, in the paper's protocol: (task, set, level, PSNR, the blind model only)
TARGETS_V2 = [
    ("denoise", "CBSD68", 50, 27.9, False),
    ("denoise", "Kodak24", 50, 29.0, False),
    ("sr", "Set5", 2, 37.6, False),
    ("sr", "Set5", 4, 31.5, False),
    ("demosaic", "McMaster", None, 38.5, False),
    ("car", "LIVE1", 10, 29.4, True),
]


def row_level_text(row: dict) -> str:
    """A card row's level, naming its noise model where it is not the task's standard one: 'σ 20 (camera noise)'."""
    text = level_text(row["task"], row["level"])
    if get_task(row["task"]).scores_rgb(row.get("colors")):
        text += " (colour, RGB)"
    return f"{text} ({row['noise']} noise)" if row.get("noise") else text


def place_text(task: str, set_name: str, level) -> str:
    """'Set12 σ 15', 'Set5 x2'; a task without levels (demosaicing): the set alone."""
    return set_name if level is None else f"{set_name} {level_text(task, level)}"


def target_row(shipped, task: str, set_name: str, level, blind: bool = False) -> dict | None:
    """The card row a target is judged on: from the weights `panet restore` picks at the level (a model trained for
    the level alone before a blind one; ``blind``: the widest-range model only), in the paper's protocol where it
    was evaluated so. Never an RGB row of a luma task or a row under another noise model (not the paper's)."""
    candidates = sorted(
        (w for w in shipped if w.task == task and not w.noise and not get_task(task).scores_rgb(w.colors)),
        key=lambda w: w.range_width,
        reverse=blind,
    )
    for w in candidates[:1] if blind else candidates:
        for r in headline_rows(w.card.get("eval", [])):
            if r["task"] == task and r["set"] == set_name and r["level"] == level and not r.get("noise"):
                return r
    return None


def targets_table(shipped) -> list[str]:
    rows = ["## Targets", "", "| target | ours | needed | met |", "|---|---|---|---|"]
    for task, set_name, level, goal in TARGETS:
        where = place_text(task, set_name, level)
        ours = target_row(shipped, task, set_name, level)
        if isinstance(goal, tuple):
            path = BASELINE_CACHE / record_name(task, level, set_name, goal[0])
            base = json.loads(path.read_text())["psnr"] if path.exists() else None
            needed = None if base is None else base + goal[1]
            label = f"{where}: {baseline_label(goal[0], task)} + {goal[1]} dB"
        else:
            needed, label = goal, f"{where} ≥ {goal} dB"
        met = "" if ours is None or needed is None else ("yes" if ours["psnr"] >= needed else "no")
        ours_text = "not evaluated" if ours is None else f"{ours['psnr']:.2f} ({protocol_text(ours['tiling'])})"
        needed_text = "baseline not run" if needed is None else f"{needed:.2f}"
        rows.append(f"| {label} | {ours_text} | {needed_text} | {met} |")
    return rows + [""]


def targets_v2_table(shipped) -> list[str]:
    """Issue 22's targets for weights v2 (the paper's protocol; CAR with the blind model)."""
    rows = [
        "## Targets of weights v2 (issue 22)",
        "",
        "| target | ours | met |",
        "|---|---|---|",
    ]
    for task, set_name, level, goal, blind in TARGETS_V2:
        ours = target_row(shipped, task, set_name, level, blind)
        label = f"{place_text(task, set_name, level)} ≥ {goal} dB" + (" (blind model)" if blind else "")
        ours_text = "not evaluated" if ours is None else f"{ours['psnr']:.2f} ({protocol_text(ours['tiling'])})"
        met = ""
        if ours is not None:
            met = ("yes" if ours["psnr"] >= goal else "no") + (
                "" if ours["tiling"] == "legacy" else " (not the paper's protocol)"
            )
        rows.append(f"| {label} | {ours_text} | {met} |")
    return rows + [""]


def fmt(pair) -> str:
    if pair is None:
        return ""
    return f"{pair[0]:.2f} / {pair[1]:.4f}" if isinstance(pair, tuple) else f"{pair:.2f}"


def readme_summary() -> list[str]:
    """The README's table: each shipped weights' rows against the best classical baseline (and the targets)."""
    from panet.zoo.pretrained import list_weights

    shipped = list_weights()
    out = [
        "| weights | set | level | ours PSNR | tiling | best classical | Δ | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in shipped:
        for row in headline_rows(w.card.get("eval", [])):
            task, level, set_name = row["task"], row["level"], row["set"]
            base = best_baseline(task, level, set_name, row.get("noise"), row.get("colors"))
            paper = paper_panet(task, set_name, level, row.get("noise"), row.get("colors"))
            paper = paper[0] if isinstance(paper, tuple) else paper
            out.append(
                f"| {w.name} | {set_name} | {row_level_text(row)} | {row['psnr']:.2f} | "
                f"{protocol_text(row['tiling'])} | "
                + (
                    f"{base[0]} {base[1]['psnr']:.2f} | {row['psnr'] - base[1]['psnr']:+.2f}"
                    if base
                    else ("none on this noise | " if row.get("noise") else "not run | ")
                )
                + f" | {'' if paper is None else f'{paper:.2f}'} |"
            )
    if len(out) == 2:
        out.append("| (none evaluated yet) | | | | | | | |")
    return out + ["", *targets_table(shipped)[2:]]


def below_baseline_note(weights) -> list[str]:
    """Where these weights lose to the best classical baseline, say so and name what `panet restore` runs there
    (find_weights: weights trained for that level alone come before a blind model)."""
    from panet.zoo.pretrained import find_weights

    losing = []
    for row in weights.card.get("eval", []):
        base = best_baseline(row["task"], row["level"], row["set"], row.get("noise"), row.get("colors"))
        if base is not None and row["psnr"] < base[1]["psnr"]:
            losing.append(row)
    if not losing:
        return []

    def places(rows) -> str:
        return ", ".join(place_text(r["task"], r["set"], r["level"]) for r in rows)

    mine, elsewhere = [], {}
    for r in losing:
        pick = find_weights(r["task"], r["level"], colors=weights.colors)
        if pick.name == weights.name:
            mine.append(r)
        else:
            elsewhere.setdefault(pick.name, []).append(r)
    text = [f"Below the best classical baseline at {places(losing)}."]
    for name, rows in elsewhere.items():
        text.append(f"At {places(rows)} `panet restore` runs `{name}` instead (see its table).")
    if mine:
        text.append(
            f"At {places(mine)} no other shipped weights cover {'the level' if mine[0]['level'] is not None else 'the task'}."
        )
    return [" ".join(text), ""]


def render() -> str:
    from panet import __version__
    from panet.zoo.pretrained import list_weights, task_text

    out = [
        "# Results of the shipped weights",
        "",
        "Generated by `python scripts/results.py --data-root ../shared/data --card-rows` (per-image cache in "
        "`results/models/`; delete it to recompute every number). "
        f"panet {__version__}.",
        "Protocol as in `docs/baselines.md` (same seeded degradations, PSNR / SSIM per image, set means). The tiling",
        'column says how the network ran: "chop" is the release\'s `forward_chop` (the paper\'s protocol), "tiles T/O"',
        "is `panet restore`'s blended tiling with T-pixel tiles overlapping by O (`--tiling tile --tile T",
        "--tile-overlap O`); the attention looks within a tile ([tiling.md](tiling.md)). Demosaicing mosaics are reflect-padded",
        "by 4 pixels first, which keeps the Bayer phase (`panet.tasks`; on odd-sized images it lifts the last row and column).",
        '"Best classical" is the best of the classical',
        'baselines of `docs/baselines.md` (for CAR: the JPEG itself). "Paper" is PANet / PA-EDSR as published,',
        "trained on DIV2K for 1M iterations with 80 (PA-EDSR: 32 x 256) blocks; ours are small CPU-trained models.",
        "",
    ]
    shipped = list_weights()
    out += targets_table(shipped)
    out += targets_v2_table(shipped)
    if not shipped:
        out += ["No weights ship yet.", ""]
    for w in shipped:
        card = w.card
        init = card.get("init")
        start = f" from `{init.get('shipped_as') or init['file']}`" if init else ""
        out += [
            f"## {w.name}: {task_text(w)}",
            "",
            f"`{card.get('preset')}`, {card.get('iterations', '?')} iterations{start} on "
            f"{', '.join(f'{k} ({v} images)' for k, v in card.get('training_data', {}).items())}, seed {card.get('seed')}: "
            f"`{card.get('command')}`",
            "",
            "| set | level | ours PSNR / SSIM | tiling | best classical | Δ PSNR | paper |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in card.get("eval", []):
            task, level, set_name = row["task"], row["level"], row["set"]
            base = best_baseline(task, level, set_name, row.get("noise"), row.get("colors"))
            base_txt = (
                f"{base[0]}: {base[1]['psnr']:.2f} / {base[1]['ssim']:.4f}"
                if base
                else ("none on this noise" if row.get("noise") else "not run yet")
            )
            delta = f"{row['psnr'] - base[1]['psnr']:+.2f}" if base else ""
            paper = paper_panet(task, set_name, level, row.get("noise"), row.get("colors"))
            out.append(
                f"| {set_name} | {row_level_text(row)} | {row['psnr']:.2f} / {row['ssim']:.4f} | "
                f"{protocol_text(row['tiling'])} | {base_txt} | {delta} | {fmt(paper)} |"
            )
        out.append("")
        out += below_baseline_note(w)
    out += ablation_table()
    return "\n".join(out)


def ablation_table() -> list[str]:
    """Markdown lines of the ablation: one row per (task, set), one column per attention variant, and the
    gain of each attention over none; a row mixing runs of different length or precision says so."""
    records = [json.loads(p.read_text()) for p in sorted(ABLATION.glob("*.json"))] if ABLATION.is_dir() else []
    if not records:
        return []
    variants = [label for _, label in VARIANTS.values()]
    no_attention = VARIANTS["none"][1]
    rows: dict[tuple, dict] = {}
    seeds: dict[tuple, dict] = {}  # (task, level, set, variant) -> {seed: psnr}
    for r in records:
        seeds.setdefault((r["task"], r["level"], r["set"], r["variant"]), {})[r.get("seed", 0)] = r["psnr"]
        if r.get("seed", 0) == 0:
            rows.setdefault((r["task"], r["level"], r["set"]), {})[r["variant"]] = r
    out = [
        "## Ablation: pyramid attention vs single-scale non-local vs none",
        "",
        "Same small network, data, seed and schedule; only the attention block differs "
        '(`scripts/ablation.py`). PSNR / SSIM; in brackets, the gain over no attention; "pyramid − single-scale" '
        "is the PSNR gain of the pyramid over single-scale attention.",
        "",
        "| task | level | set | " + " | ".join(variants) + " | pyramid − single-scale | iterations | precision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    pyramid, single = VARIANTS["pa"][1], VARIANTS["nonlocal"][1]
    for (task, level, set_name), by_variant in sorted(rows.items()):
        none = by_variant.get(no_attention)
        cells = []
        for v in variants:
            r = by_variant.get(v)
            if r is None:
                cells.append("not run yet")
                continue
            gain = f" ({r['psnr'] - none['psnr']:+.2f})" if none is not None and r is not none else ""
            cells.append(f"{r['psnr']:.2f} / {r['ssim']:.4f}{gain}")
        if pyramid in by_variant and single in by_variant:
            cells.append(f"{by_variant[pyramid]['psnr'] - by_variant[single]['psnr']:+.2f}")
        else:
            cells.append("-")
        runs = {(r["iterations"], r.get("precision", "fp32")) for r in by_variant.values()}
        iterations = ", ".join(str(i) for i in sorted({i for i, _ in runs}))
        precision = ", ".join(sorted({p for _, p in runs}))
        note = " (differ!)" if len(runs) > 1 else ""
        out.append(
            f"| {task} | {level_text(task, level)} | {set_name} | "
            + " | ".join(cells)
            + f" | {iterations}{note} | {precision} |"
        )
    out += [
        "",
        "The networks, from the recipes (`configs/ablation-<task>.yaml`; the attention variant is "
        "`model_overrides.attention_levels` 5, 1 or 0):",
        "",
    ]
    for key, (task, _level, sets) in sorted(ABLATION_TASKS.items()):
        if any(t == task for t, _, _ in rows):
            out.append(
                f"* {task}: {recipe_summary(ROOT / 'configs' / f'ablation-{key}.yaml')}; evaluated with the "
                f"release's forward_chop on {', '.join(sets)}."
            )
    repeated = {k: v for k, v in sorted(seeds.items()) if len(v) > 1}
    if not repeated:
        out += [
            "",
            "One training run (seed 0) per variant; the seed-to-seed spread has not been measured, so small "
            "differences between variants are not resolved.",
            "",
        ]
        return out
    out += [
        "",
        "The table's runs use seed 0. Repeating a variant with other training seeds (`--seed N`) shows how far "
        "the seed alone moves a result, the scale for the differences above:",
        "",
    ]
    for (task, level, set_name, variant), by_seed in repeated.items():
        values = [by_seed[k] for k in sorted(by_seed)]
        out.append(
            f"* {task} {level_text(task, level)}, {set_name}, {variant}: seeds "
            f"{', '.join(str(k) for k in sorted(by_seed))} give {' / '.join(f'{v:.2f}' for v in values)} dB "
            f"(range {max(values) - min(values):.2f} dB)"
        )
    out += seed_paired_differences(seeds)
    out.append("")
    return out


def seed_paired_differences(seeds: dict[tuple, dict]) -> list[str]:
    """For each (task, level, set) whose three variants were all trained with the same seeds (two or more): the
    differences between variants per seed (the seed fixes the data order and the degradations) and their mean."""
    labels = {key: label for key, (_, label) in VARIANTS.items()}
    pairs = [("pa", "nonlocal"), ("pa", "none"), ("nonlocal", "none")]
    lines = []
    for task, level, set_name in sorted({k[:3] for k in seeds}):
        by_variant = {key: seeds.get((task, level, set_name, label), {}) for key, label in labels.items()}
        common = sorted(set.intersection(*(set(v) for v in by_variant.values())))
        if len(common) < 2:
            continue
        lines += [
            "",
            f"{task} {level_text(task, level)}, {set_name}, every variant trained with seeds "
            f"{', '.join(str(k) for k in common)} (difference per seed; mean):",
            "",
        ]
        for a, b in pairs:
            diffs = [by_variant[a][k] - by_variant[b][k] for k in common]
            lines.append(
                f"* {labels[a]} − {labels[b]}: {' / '.join(f'{d:+.2f}' for d in diffs)} dB; "
                f"mean {sum(diffs) / len(diffs):+.2f} dB"
            )
    return lines


def recipe_summary(path: Path) -> str:
    """'preset panet-dn-s with blocks 8, features 32; trained on T91, 24x24 input patches, batch 16, 1500 steps'."""
    from panet.train.config import load_config

    recipe = load_config(path)
    overrides = {k: v for k, v in recipe.model_overrides.items() if k != "attention_levels"}
    model = f"preset `{recipe.model}`" + (
        " with " + ", ".join(f"{k} {v}" for k, v in sorted(overrides.items())) if overrides else ""
    )
    data = recipe.data
    return (
        f"{model}; trained on {', '.join(data.train)}, {data.patch_size}x{data.patch_size} input patches, "
        f"batch {recipe.batch_size}, {recipe.iterations} steps, lr {recipe.optim.lr:g}"
    )


def update_card(weights, rows: list[dict]) -> None:
    """Put freshly evaluated rows into the card's eval table (replacing the same set, level and tiling; other rows
    stay) and record, per tiling in the table, the command that evaluates it."""
    card_path = weights.file.with_suffix(".json")
    card = json.loads(card_path.read_text())
    fresh = {(r["task"], r["level"], r["set"], r["tiling"]) for r in rows}
    kept = [r for r in card.get("eval", []) if (r["task"], r["level"], r["set"], r["tiling"]) not in fresh]
    order = {key: i for i, key in enumerate(plan_for(weights))}
    card["eval"] = sorted(kept + rows, key=lambda r: (order.get((r["task"], r["level"], r["set"]), 1e9), r["tiling"]))
    # one command per tiling in the table (each row says its tiling); older cards kept a single string
    commands = card.get("eval_command", {})
    commands = commands if isinstance(commands, dict) else {"legacy": commands}
    for label in {r["tiling"] for r in rows}:
        tiling, tile, overlap = parse_tiling_label(label)
        commands[label] = f"python scripts/results.py --data-root DATA --only {weights.name} --tiling {tiling}" + (
            f" --tile {tile} --tile-overlap {overlap}" if tiling == "tile" else ""
        )
    card["eval_command"] = {k: commands[k] for k in sorted(commands) if any(r["tiling"] == k for r in card["eval"])}
    card_path.write_text(json.dumps(card, indent=1) + "\n")


def main() -> None:
    from panet.zoo.pretrained import list_weights

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root")
    parser.add_argument("--only", help="comma-separated weights names")
    parser.add_argument(
        "--tiling",
        choices=["legacy", "tile"],
        help="legacy (default): the release's forward_chop, as the paper evaluated; tile: blended tiles",
    )
    parser.add_argument("--tile", type=int, help=f"with --tiling tile (default {DEFAULT_TILE})")
    parser.add_argument("--tile-overlap", type=int, help=f"with --tiling tile (default {DEFAULT_OVERLAP})")
    parser.add_argument("--sets", help="comma-separated benchmark sets (default: every set of the task)")
    parser.add_argument("--levels", help="comma-separated levels, e.g. 50 (default: the paper's levels in range)")
    parser.add_argument("--render", action="store_true", help="only rebuild docs/results.md")
    parser.add_argument(
        "--card-rows",
        action="store_true",
        help="evaluate exactly the rows the cards list, each with the tiling it records (with --only, "
        "--sets, --levels: those of them); how docs/results.md is made",
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "results.md"))
    args = parser.parse_args()
    if args.card_rows and (args.tiling, args.tile, args.tile_overlap) != (None, None, None):
        parser.error("--card-rows takes each row's tiling from the card: leave out --tiling, --tile, --tile-overlap")
    if not args.render:
        if not args.data_root:
            parser.error("--data-root is required (or --render)")
        for w in list_weights():
            if args.only and w.name not in args.only.split(","):
                continue
            if args.card_rows:
                jobs = [(r["task"], r["level"], r["set"], r["tiling"]) for r in w.card.get("eval", [])]
            else:
                label = tiling_label(
                    args.tiling or "legacy",
                    DEFAULT_TILE if args.tile is None else args.tile,
                    DEFAULT_OVERLAP if args.tile_overlap is None else args.tile_overlap,
                )
                jobs = [(task, level, set_name, label) for task, level, set_name in plan_for(w)]
            rows = []
            for task, level, set_name, label in jobs:
                if args.sets and set_name not in args.sets.split(","):
                    continue
                if args.levels and (level is None or f"{level:g}" not in args.levels.split(",")):
                    continue
                r = evaluate(w, task, level, set_name, args.data_root, *parse_tiling_label(label))
                print(
                    f"{w.name} {task} {level} {set_name} ({label}): {r['psnr']:.2f} / {r['ssim']:.4f} "
                    f"({r['seconds']:.1f} s/img)",
                    flush=True,
                )
                rows.append(
                    {
                        "task": task,
                        "level": level,
                        "set": set_name,
                        "psnr": round(r["psnr"], 4),
                        "ssim": round(r["ssim"], 5),
                        "seconds": round(r["seconds"], 3),
                        "tiling": label,
                        **({"noise": w.noise} if w.noise else {}),
                        **({"colors": w.colors} if get_task(task).scores_rgb(w.colors) else {}),
                    }
                )
            update_card(w, rows)
    Path(args.output).write_text(render() + "\n")
    print(f"wrote {args.output}")
    if replace_block("results", readme_summary()):
        print("updated the results table in README.md")


if __name__ == "__main__":
    main()
