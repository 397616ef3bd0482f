"""Choose `panet restore`'s tiling by measurement: PSNR per shipped model, speed and memory per architecture.

    python scripts/tiling.py --data-root ../shared/data            # score what is not cached, then write
    python scripts/tiling.py --data-root ../shared/data --speed    # time every setting again (idle machine!)

Pyramid attention is non-local: a query compares itself with every key patch of the tile it runs in, so the
tiling changes the output, and the attention's cost per pixel grows with the tile's area. For each task's default
shipped weights this scores every tile / overlap setting of GRID on centre crops of two benchmark sets (the
paper's protocol for the task), and times each setting once per network architecture on a synthetic image (time
and memory do not depend on the trained values, only on the shapes), with the machine's `--precision auto`.

The default of each weights is the fastest setting whose mean PSNR is within TOLERANCE dB of the best setting's.
The choice goes to src/panet/zoo/shipped/tiling.json (read by `panet restore --tile auto`), the tables to
docs/tiling.md. PSNR results and speeds are cached in results/tiling/ (delete a file to measure it again); the
tests check that the committed tiling.json and docs/tiling.md are what these caches give.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# (tile, overlap) in input pixels
GRID = [(16, 4), (24, 4), (24, 8), (32, 4), (32, 8), (40, 8), (48, 8), (48, 16), (64, 16)]
TOLERANCE = 0.02  # dB
BF16_CHECK = (32, 8)  # the setting also scored under bf16 autocast (what --precision auto runs where bf16 is fast)
# per task: the two benchmark sets, the level scored, and the centre crop (ground-truth pixels)
PLAN = {
    "sr": (("Set5", "Set14"), None, 96),  # level: the weights' own scale; crop: LR pixels (HR: 96 x scale)
    "denoise": (("Kodak24", "CBSD68"), 50, 160),
    "denoise-gray": (("Set12", "BSD68"), 25, 160),
    "car": (("LIVE1", "Classic5"), 10, 160),
    "car-color": (("LIVE1", "Kodak24"), 10, 160),  # colour JPEGs, scored in RGB (Classic5 is gray)
    "demosaic": (("McMaster", "Kodak24"), None, 160),
}
IMAGES = 3  # first images of each set
TABLE = ROOT / "src" / "panet" / "zoo" / "shipped" / "tiling.json"
CACHE = ROOT / "results" / "tiling"


def default_weights() -> list:
    """Each task's default shipped weights: what `panet restore --task T` runs without a level (blind models),
    and every SR scale."""
    from panet.zoo.pretrained import find_weights, list_weights

    chosen = [w for w in list_weights(task="sr")]
    chosen += [
        find_weights("denoise", None, 3),
        find_weights("denoise", None, 1),
        find_weights("car", None, 1),
        find_weights("car", None, 3),
        find_weights("demosaic"),
    ]
    return list({w.name: w for w in chosen}.values())


def plan_for(weights) -> tuple[tuple[str, str], float | None, int]:
    if weights.task == "denoise" and weights.colors == 1:
        return PLAN["denoise-gray"]
    if weights.task == "car" and weights.colors == 3:
        return PLAN["car-color"]
    sets, level, crop = PLAN[weights.task]
    if weights.task == "sr":
        return sets, weights.low, crop * int(weights.low)
    return sets, level, crop


def label(tile: int, overlap: int) -> str:
    return f"{tile}/{overlap}"


def score_weights(weights, data_root: str | None) -> dict:
    """Mean PSNR per set and setting, cached per weights file content: only settings missing from the cache are
    scored."""
    import hashlib

    import torch

    from panet.data.datasets import EvalPairs, find_set
    from panet.evaluation.evaluate import network_restorer
    from panet.evaluation.metrics import psnr
    from panet.tasks import get_task
    from panet.zoo.weights import load_weights

    sets, level, crop = plan_for(weights)
    digest = hashlib.sha256(weights.file.read_bytes()).hexdigest()[:16]
    cache = CACHE / f"{weights.name}.json"
    result = {
        "weights": weights.name,
        "sha256": digest,
        "sets": list(sets),
        "level": level,
        "crop": crop,
        "images": IMAGES,
        "psnr": {},
    }
    if cache.exists():
        cached = json.loads(cache.read_text())
        if all(cached.get(k) == result[k] for k in ("sha256", "sets", "level", "crop", "images")):
            result["psnr"] = cached["psnr"]
    model = load_weights(weights.file).eval()
    task = get_task(weights.task)
    options = task.metric_options(int(level) if weights.task == "sr" else 1)
    if task.scores_rgb(model.colors):  # a luma task's colour network: scored in RGB, as its card's rows
        options["y_channel"] = False
    runs = [("legacy", 0, 0, "fp32")] + [("tile", t, o, "fp32") for t, o in GRID] + [("tile", *BF16_CHECK, "bf16")]
    for set_name in sets:
        items = None
        for tiling, tile, overlap, precision in runs:
            key = "legacy" if tiling == "legacy" else label(tile, overlap) + (" bf16" if precision == "bf16" else "")
            if set_name in result["psnr"].get(key, {}):
                continue
            if items is None:
                pairs = EvalPairs(
                    find_set(set_name, data_root), task=weights.task, level=level, colors=model.colors, crop=crop
                )
                pairs.files = pairs.files[:IMAGES]
                items = list(pairs)
            restorer = network_restorer(
                model, weights.task, tiling=tiling, tile=tile or 64, overlap=overlap or 16, precision=precision
            )
            with torch.no_grad():
                scores = [psnr(restorer(item.degraded), item.target, **options) for item in items]
            result["psnr"].setdefault(key, {})[set_name] = float(np.mean(scores))
            print(f"{weights.name} {set_name} {key}: {result['psnr'][key][set_name]:.3f}", flush=True)
            CACHE.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(result, indent=1) + "\n")
    return result


def time_one(spec: dict) -> dict:
    """One setting in this (fresh) process: best seconds of ``repeats`` restores after a warm-up, and the peak RSS
    above the RSS after setup."""
    import torch

    from panet.hardware import peak_rss_bytes, rss_bytes
    from panet.inference.restore import run_network
    from panet.zoo.weights import load_weights

    model = load_weights(spec["file"]).eval()
    size = spec["size"]
    x = torch.rand(1, model.colors, size, size, generator=torch.Generator().manual_seed(0))
    run = dict(
        task=spec["task"],
        tiling=spec["tiling"],
        tile=spec["tile"],
        overlap=spec["overlap"],
        precision=spec["precision"],
    )
    run_network(model, x[..., :64, :64], **run)  # warm-up: oneDNN kernel generation
    base = rss_bytes()
    best = float("inf")
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        run_network(model, x, **run)
        best = min(best, time.perf_counter() - start)
    peak = peak_rss_bytes() - base
    return {"s_per_mp": best / (size * size / 1e6), "peak_mb": max(peak, 0) / 2**20}


def time_architecture(weights, size: int = 256, repeats: int = 2) -> dict:
    """Seconds per megapixel (of input) and peak extra memory of each setting, on a synthetic size x size image,
    each setting in a fresh process (so that its peak memory is its own)."""
    from panet.hardware import resolve_precision

    precision = resolve_precision("auto", "cpu")
    rows = {}
    for tiling, tile, overlap in [("legacy", 64, 16)] + [("tile", t, o) for t, o in GRID]:
        spec = {
            "file": str(weights.file),
            "task": weights.task,
            "tiling": tiling,
            "tile": tile,
            "overlap": overlap,
            "precision": precision,
            "size": size,
            "repeats": repeats,
        }
        done = subprocess.run(
            [sys.executable, __file__, "--time-one", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        key = "legacy" if tiling == "legacy" else label(tile, overlap)
        rows[key] = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{weights.name} ({architecture_label(weights)}) {key}: {rows[key]['s_per_mp']:.1f} s/MP, "
            f"{rows[key]['peak_mb']:.0f} MB",
            flush=True,
        )
    return {"precision": precision, "size": size, "rows": rows}


def architecture_label(weights) -> str:
    from panet.zoo.weights import read_metadata

    config = json.loads(read_metadata(weights.file)["config"])
    return f"x{config['scale']}" if config["scale"] > 1 else f"{config['colors']} channel{'s' * (config['colors'] > 1)}"


def choose(psnr: dict, speed: dict) -> tuple[str, float]:
    """The fastest setting within TOLERANCE dB of the best mean PSNR; (its label, the best mean)."""
    means = {k: float(np.mean(list(v.values()))) for k, v in psnr.items() if k != "legacy" and "bf16" not in k}
    best = max(means.values())
    candidates = [k for k, m in means.items() if m >= best - TOLERANCE]
    return min(candidates, key=lambda k: speed[k]["s_per_mp"]), best


def render(entries: list[dict], command: str) -> str:
    lines = [
        "# Tiling: chosen by measurement",
        "",
        f"Generated by `{command}` on {entries[0]['speed']['cpu']} ({entries[0]['speed']['threads']} threads, "
        f"precision {entries[0]['speed']['precision']}).",
        "",
        "Pyramid attention is non-local: a query compares itself with every key patch of the tile it runs in, "
        "so the tiling changes the output, and the attention's cost per pixel grows with the tile's area. For "
        f"each task's default weights, every tile / overlap setting is scored on centre crops of the first "
        f"{IMAGES} images of two benchmark sets (the task's protocol, fp32), and timed on a synthetic 256x256 "
        "image, each setting in a fresh process after a warm-up, best of two (time and memory depend on the "
        "network's shapes, not on its trained values; peak MB is the peak RSS above the RSS after setup). The "
        "32/8 bf16 row is the same setting under bf16 autocast, what `--precision auto` runs on a machine where "
        "bf16 is fast. `panet restore --tile auto` uses "
        f"the fastest setting within {TOLERANCE} dB of the best mean PSNR (marked **bold**; "
        "src/panet/zoo/shipped/tiling.json). `--tiling legacy` is the paper's protocol (the release's chop).",
        "",
    ]
    for e in entries:
        sets = e["psnr"]["sets"]
        level = "" if e["psnr"]["level"] is None else f", level {e['psnr']['level']:g}"
        lines += [
            f"## {e['weights']} ({e['task']}{level}, crops {e['psnr']['crop']})",
            "",
            f"| tiling | {' | '.join(sets)} | mean | s / MP | peak MB |",
            "|---|" + "---|" * (len(sets) + 3),
        ]
        for key, scores in e["psnr"]["psnr"].items():
            speed = e["speed"]["rows"].get(key)
            name = "legacy (release chop)" if key == "legacy" else f"tiles {key}"
            mean = float(np.mean([scores[s] for s in sets]))
            timing = (
                [f"{speed['s_per_mp']:.1f}", f"{speed['peak_mb']:.0f}"]
                if speed
                else ["(bf16 is slower here)" if e["speed"]["precision"] == "fp32" else "-", "-"]
            )
            cells = [f"{scores[s]:.2f}" for s in sets] + [f"{mean:.3f}", *timing]
            row = f"| {name} | " + " | ".join(cells) + " |"
            lines.append(row.replace(f"| {name} |", f"| **{name}** |") if key == e["chosen"] else row)
        legacy = e["speed"]["rows"]["legacy"]["s_per_mp"] / e["speed"]["rows"][e["chosen"]]["s_per_mp"]
        check = label(*BF16_CHECK)
        cost = float(np.mean([e["psnr"]["psnr"][check][s] - e["psnr"]["psnr"][check + " bf16"][s] for s in sets]))
        verdict = (
            "so `--precision auto` may run it in bf16 where bf16 is fast"
            if cost <= TOLERANCE
            else "more than the tolerance, so `--precision auto` keeps this model in fp32"
        )
        lines += [
            "",
            f"Chosen: tiles {e['chosen']}, {legacy:.1f}x faster than the legacy protocol here. bf16 costs "
            f"{cost:+.3f} dB at tiles {check}: {verdict}.",
            "",
        ]
    return "\n".join(lines)


def architecture(weights) -> str:
    """A label for the network shapes of ``weights`` (time and memory depend on nothing else)."""
    from panet.zoo.weights import read_metadata

    config = json.loads(read_metadata(weights.file)["config"])
    return ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(config.items()))


def measured_speeds(weights_list: list, remeasure: bool) -> dict:
    """Speed rows per architecture, cached in results/tiling/speed.json (measured where missing or asked)."""
    import torch

    from panet.hardware import cpu_model_name

    path = CACHE / "speed.json"
    speeds = json.loads(path.read_text()) if path.exists() and not remeasure else {}
    for w in weights_list:
        arch = architecture(w)
        if arch not in speeds:
            speeds[arch] = {**time_architecture(w), "cpu": cpu_model_name(), "threads": torch.get_num_threads()}
            CACHE.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(speeds, indent=1, sort_keys=True) + "\n")
    return speeds


def outputs(weights_list: list, psnr: dict, speeds: dict, command: str) -> tuple[dict, str]:
    """(tiling.json's content, docs/tiling.md's text) from the measurements: what main() writes, and what the
    tests check the committed files against."""
    entries, table = [], {"weights": {}}
    for w in weights_list:
        speed = speeds[architecture(w)]
        best_key, best = choose(psnr[w.name]["psnr"], speed["rows"])
        entries.append(
            {
                "weights": w.name,
                "task": w.task,
                "psnr": psnr[w.name],
                "speed": speed,
                "chosen": best_key,
                "best_mean": best,
            }
        )
        tile, overlap = (int(v) for v in best_key.split("/"))
        scores = psnr[w.name]["psnr"]
        check = label(*BF16_CHECK)
        bf16_cost = float(np.mean(list(scores[check].values())) - np.mean(list(scores[check + " bf16"].values())))
        table["weights"][w.name] = {"tile": tile, "overlap": overlap, "bf16": bf16_cost <= TOLERANCE}
    table["rule"] = (
        f"tile/overlap: the fastest within {TOLERANCE} dB of the best mean PSNR; bf16: whether bf16 "
        f"autocast costs at most {TOLERANCE} dB at tiles {label(*BF16_CHECK)} (scripts/tiling.py)"
    )
    return table, render(entries, command) + "\n"


def cached_psnr(weights_list: list) -> dict:
    return {w.name: json.loads((CACHE / f"{w.name}.json").read_text()) for w in weights_list}


COMMAND = "python scripts/tiling.py --data-root DATA"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root")
    parser.add_argument("--psnr-only", action="store_true", help="score (and cache) only; write nothing else")
    parser.add_argument("--speed", action="store_true", help="measure the speeds again (on an idle machine)")
    parser.add_argument("--time-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_one:
        print(json.dumps(time_one(json.loads(args.time_one))))
        return
    chosen = default_weights()
    psnr = {w.name: score_weights(w, args.data_root) for w in chosen}
    if args.psnr_only:
        return
    table, text = outputs(chosen, psnr, measured_speeds(chosen, args.speed), COMMAND)
    TABLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    (ROOT / "docs" / "tiling.md").write_text(text)
    print(f"wrote {TABLE.relative_to(ROOT)} and docs/tiling.md")


if __name__ == "__main__":
    main()
