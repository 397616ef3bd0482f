"""Choose `panet restore`'s tiling by measurement: PSNR per shipped model, speed and memory per architecture.

    python scripts/tiling.py --data-root ../shared/data               # every task's default weights
    python scripts/tiling.py --data-root ../shared/data --only panet-dn-s --speed-only

Pyramid attention is non-local: a query compares itself with every key patch of the tile it runs in, so the
tiling changes the output, and the attention's cost per pixel grows with the tile's area. For each task's default
shipped weights this scores every tile / overlap setting of GRID on centre crops of two benchmark sets (the
paper's protocol for the task), and times each setting once per network architecture on a synthetic image (time
and memory do not depend on the trained values, only on the shapes), with the machine's `--precision auto`.

The default of each weights is the fastest setting whose mean PSNR is within TOLERANCE dB of the best setting's.
The choice goes to src/panet/pretrained/tiling.json (read by `panet restore --tile auto`), the tables to
docs/tiling.md. Per-weights PSNR results are cached in results/tiling/ (delete a file to measure it again).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# (tile, overlap) in input pixels
GRID = [(16, 4), (24, 4), (24, 8), (32, 4), (32, 8), (40, 8), (48, 8), (48, 16), (64, 16)]
TOLERANCE = 0.02  # dB
# per task: the two benchmark sets, the level scored, and the centre crop (ground-truth pixels)
PLAN = {
    "sr": (("Set5", "Set14"), None, 96),  # level: the weights' own scale; crop: LR pixels (HR: 96 x scale)
    "denoise": (("Kodak24", "CBSD68"), 50, 160),
    "denoise-gray": (("Set12", "BSD68"), 25, 160),
    "car": (("LIVE1", "Classic5"), 10, 160),
    "demosaic": (("McMaster", "Kodak24"), None, 160),
}
IMAGES = 3  # first images of each set
TABLE = ROOT / "src" / "panet" / "pretrained" / "tiling.json"
CACHE = ROOT / "results" / "tiling"


def default_weights() -> list:
    """Each task's default shipped weights: what `panet restore --task T` runs without a level (blind models),
    and every SR scale."""
    from panet.pretrained import find_weights, list_weights

    chosen = [w for w in list_weights(task="sr")]
    chosen += [find_weights("denoise", None, 3), find_weights("denoise", None, 1), find_weights("car", None, 1),
               find_weights("demosaic")]
    return list({w.name: w for w in chosen}.values())


def plan_for(weights) -> tuple[tuple[str, str], float | None, int]:
    if weights.task == "denoise" and weights.colors == 1:
        return PLAN["denoise-gray"]
    sets, level, crop = PLAN[weights.task]
    if weights.task == "sr":
        return sets, weights.low, crop * int(weights.low)
    return sets, level, crop


def label(tile: int, overlap: int) -> str:
    return f"{tile}/{overlap}"


def score_weights(weights, data_root: str | None) -> dict:
    """Mean PSNR per set and setting (cached per weights file content)."""
    import hashlib

    import torch

    from panet.data import EvalPairs, find_set
    from panet.evaluate import network_restorer
    from panet.metrics import psnr
    from panet.tasks import get_task
    from panet.weights import load_weights

    sets, level, crop = plan_for(weights)
    digest = hashlib.sha256(weights.file.read_bytes()).hexdigest()[:16]
    cache = CACHE / f"{weights.name}.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("sha256") == digest and cached.get("grid") == [list(g) for g in GRID]:
            return cached
    model = load_weights(weights.file).eval()
    options = get_task(weights.task).metric_options(int(level) if weights.task == "sr" else 1)
    result = {"weights": weights.name, "sha256": digest, "grid": [list(g) for g in GRID], "sets": list(sets),
              "level": level, "crop": crop, "images": IMAGES, "psnr": {}}
    for set_name in sets:
        pairs = EvalPairs(find_set(set_name, data_root), task=weights.task, level=level, colors=model.colors, crop=crop)
        pairs.files = pairs.files[:IMAGES]
        items = list(pairs)
        for tiling, tile, overlap in [("legacy", 0, 0)] + [("tile", t, o) for t, o in GRID]:
            restorer = network_restorer(model, weights.task, tiling=tiling, tile=tile or 64, overlap=overlap or 16)
            with torch.no_grad():
                scores = [psnr(restorer(item.degraded), item.target, **options) for item in items]
            key = "legacy" if tiling == "legacy" else label(tile, overlap)
            result["psnr"].setdefault(key, {})[set_name] = float(np.mean(scores))
            print(f"{weights.name} {set_name} {key}: {result['psnr'][key][set_name]:.3f}", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=1) + "\n")
    return result


class PeakMemory:
    """Peak resident memory above the level at the start, sampled every few milliseconds (Linux /proc)."""

    def __init__(self):
        self.peak = self.base = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _watch(self):
        while not self._stop.wait(0.003):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def time_architecture(weights, size: int = 256, repeats: int = 2) -> dict:
    """Seconds per megapixel (of input) and peak extra memory of each setting, on a synthetic size x size image."""
    import torch

    from panet.hardware import resolve_precision
    from panet.restoration import run_network
    from panet.weights import load_weights

    model = load_weights(weights.file).eval()
    precision = resolve_precision("auto", "cpu")
    x = torch.rand(1, model.colors, size, size, generator=torch.Generator().manual_seed(0))
    rows = {}
    for tiling, tile, overlap in [("legacy", 64, 16)] + [("tile", t, o) for t, o in GRID]:
        run = dict(task=weights.task, tiling=tiling, tile=tile, overlap=overlap, precision=precision)
        run_network(model, x[..., :64, :64], **run)  # warm-up: oneDNN kernel generation
        best, peak = float("inf"), 0
        for _ in range(repeats):
            with PeakMemory() as memory:
                start = time.perf_counter()
                run_network(model, x, **run)
                best = min(best, time.perf_counter() - start)
            peak = max(peak, memory.extra)
        key = "legacy" if tiling == "legacy" else label(tile, overlap)
        rows[key] = {"s_per_mp": best / (size * size / 1e6), "peak_mb": peak / 2**20}
        print(f"{weights.name} ({'x%d' % model.scale if model.scale > 1 else model.colors} ch) {key}: "
              f"{rows[key]['s_per_mp']:.1f} s/MP, {rows[key]['peak_mb']:.0f} MB", flush=True)
    return {"precision": precision, "size": size, "rows": rows}


def choose(psnr: dict, speed: dict) -> tuple[str, float]:
    """The fastest setting within TOLERANCE dB of the best mean PSNR; (its label, the best mean)."""
    means = {k: float(np.mean(list(v.values()))) for k, v in psnr.items() if k != "legacy"}
    best = max(means.values())
    candidates = [k for k, m in means.items() if m >= best - TOLERANCE]
    return min(candidates, key=lambda k: speed[k]["s_per_mp"]), best


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def render(entries: list[dict], command: str) -> str:
    lines = ["# Tiling: chosen by measurement", "",
             f"Generated by `{command}` on {entries[0]['speed']['cpu']} ({entries[0]['speed']['threads']} threads, "
             f"precision {entries[0]['speed']['precision']}).", "",
             "Pyramid attention is non-local: a query compares itself with every key patch of the tile it runs in, "
             "so the tiling changes the output, and the attention's cost per pixel grows with the tile's area. For "
             f"each task's default weights, every tile / overlap setting is scored on centre crops of the first "
             f"{IMAGES} images of two benchmark sets (the task's protocol), and timed on a synthetic image (time and "
             "memory depend on the network's shapes, not on its trained values). `panet restore --tile auto` uses "
             f"the fastest setting within {TOLERANCE} dB of the best mean PSNR (marked **bold**; "
             "src/panet/pretrained/tiling.json). `--tiling legacy` is the paper's protocol (the release's chop).",
             ""]
    for e in entries:
        sets = e["psnr"]["sets"]
        lines += [f"## {e['weights']} ({e['task']}{'' if e['psnr']['level'] is None else ', level %g' % e['psnr']['level']}, "
                  f"crops {e['psnr']['crop']})", "",
                  f"| tiling | {' | '.join(sets)} | mean | s / MP | peak MB |", "|---|" + "---|" * (len(sets) + 3)]
        for key, scores in e["psnr"]["psnr"].items():
            speed = e["speed"]["rows"][key]
            name = "legacy (release chop)" if key == "legacy" else f"tiles {key}"
            mean = float(np.mean([scores[s] for s in sets]))
            cells = [f"{scores[s]:.2f}" for s in sets] + [f"{mean:.3f}", f"{speed['s_per_mp']:.1f}", f"{speed['peak_mb']:.0f}"]
            row = f"| {name} | " + " | ".join(cells) + " |"
            lines.append(row.replace(f"| {name} |", f"| **{name}** |") if key == e["chosen"] else row)
        legacy = e["speed"]["rows"]["legacy"]["s_per_mp"] / e["speed"]["rows"][e["chosen"]]["s_per_mp"]
        lines += ["", f"Chosen: tiles {e['chosen']}, {legacy:.1f}x faster than the legacy protocol here.", ""]
    return "\n".join(lines)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root")
    parser.add_argument("--only", help="comma-separated shipped weights names (default: every task's default)")
    parser.add_argument("--psnr-only", action="store_true", help="score (and cache) only; write nothing else")
    args = parser.parse_args()
    from panet.pretrained import list_weights

    chosen = default_weights()
    if args.only:
        names = args.only.split(",")
        chosen = [w for w in list_weights() if w.name in names]
    psnr = {w.name: score_weights(w, args.data_root) for w in chosen}
    if args.psnr_only:
        return
    speeds: dict[tuple, dict] = {}
    entries = []
    for w in chosen:
        from panet.weights import read_metadata

        config = json.loads(read_metadata(w.file)["config"])
        arch = tuple(sorted((k, json.dumps(v)) for k, v in config.items()))
        if arch not in speeds:
            speeds[arch] = {**time_architecture(w), "cpu": cpu_name(), "threads": torch.get_num_threads()}
        best_key, best = choose(psnr[w.name]["psnr"], speeds[arch]["rows"])
        entries.append({"weights": w.name, "task": w.task, "psnr": psnr[w.name], "speed": speeds[arch],
                        "chosen": best_key, "best_mean": best})
    table = json.loads(TABLE.read_text()) if TABLE.exists() else {"weights": {}}
    command = "python scripts/tiling.py" + (f" --only {args.only}" if args.only else "") + " --data-root DATA"
    for e in entries:
        tile, overlap = (int(v) for v in e["chosen"].split("/"))
        table["weights"][e["weights"]] = {"tile": tile, "overlap": overlap}
    table["rule"] = f"fastest tile/overlap within {TOLERANCE} dB of the best mean PSNR (scripts/tiling.py)"
    TABLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    (ROOT / "docs" / "tiling.md").write_text(render(entries, command) + "\n")
    print(f"wrote {TABLE.relative_to(ROOT)} and docs/tiling.md")


if __name__ == "__main__":
    main()
