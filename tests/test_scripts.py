"""Smoke tests of the scripts that turn shipped weights into documents (with fake, tiny shipped weights)."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import panet
from conftest import ROOT, shared_path

sys.path.insert(0, str(ROOT / "scripts"))


@pytest.fixture
def fake_shipped(tmp_path, monkeypatch):
    import panet.zoo.pretrained as pretrained
    from panet.zoo.weights import save_weights

    for name, preset, task, level in [
        ("tiny-x4", "pa-edsr-s-x4", "sr", 4),
        ("tiny-dn-gray", "panet-dn-gray-s", "denoise", [0, 30]),
        ("tiny-dn-camera", "panet-dn-s", "denoise", [0, 40]),
    ]:
        torch.manual_seed(0)
        model = panet.create_model(preset, blocks=2, features=8, attention_reduction=2)
        save_weights(model, tmp_path / f"{name}.safetensors", metadata={"task": task, "level": json.dumps(level)})
        (tmp_path / f"{name}.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "preset": preset,
                    "task": task,
                    "level": level,
                    "iterations": 0,
                    "seed": 0,
                    "command": "test",
                    **({"config": {"data": {"noise": "camera"}}} if "camera" in name else {}),
                }
            )
        )
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path)
    return tmp_path


def test_results_plan_follows_task_colours_and_range(fake_shipped):
    import results

    from panet.evaluation.paper import benchmark_rows
    from panet.zoo.pretrained import list_weights

    plans = {w.name: benchmark_rows(w) for w in list_weights()}
    assert plans["tiny-x4"] == [("sr", 4, s) for s in ("Set5", "Set14", "B100")]
    # a gray blind denoiser trained for sigma 0..30: the gray sets, only the paper's levels inside its range
    assert plans["tiny-dn-gray"] == [
        ("denoise", 15, "Set12"),
        ("denoise", 25, "Set12"),
        ("denoise", 15, "BSD68"),
        ("denoise", 25, "BSD68"),
    ]
    # a camera-noise denoiser: the camera-noise rows only, not the paper's Gaussian ones
    assert plans["tiny-dn-camera"] == [("denoise", lv, s) for s in ("Kodak24", "CBSD68") for lv in (10, 20, 30)]
    text = results.render()
    assert "## tiny-x4: sr (x4)" in text and "| Set5 x2 ≥ 37.0 dB | not evaluated | 37.00 |  |" in text
    assert "## tiny-dn-camera: denoise (camera noise, σ 0..40)" in text
    # its rows name the noise and are compared with neither the Gaussian baselines nor the paper
    card_path = fake_shipped / "tiny-dn-camera.json"
    card = json.loads(card_path.read_text())
    row = {"task": "denoise", "level": 20, "set": "Kodak24", "psnr": 30.0, "ssim": 0.8, "seconds": 1.0}
    card["eval"] = [{**row, "tiling": "tile32-8", "noise": "camera"}]
    card_path.write_text(json.dumps(card))
    text = results.render()
    assert "| Kodak24 | σ 20 (camera noise) | 30.00 / 0.8000 | tiles 32/8 | none on this noise |  |  |" in text
    assert "| tiny-dn-camera | Kodak24 | σ 20 (camera noise) | 30.00 |" in "\n".join(results.readme_summary())


def test_results_tables_prefer_the_papers_protocol_and_name_the_tiling(fake_shipped):
    import results

    from panet.zoo.pretrained import list_weights

    card_path = fake_shipped / "tiny-x4.json"
    card = json.loads(card_path.read_text())
    row = {"task": "sr", "level": 4, "set": "Set5", "ssim": 0.9, "seconds": 1.0}
    card["eval"] = [
        {**row, "psnr": 31.5, "tiling": "tile32-8"},
        {**row, "psnr": 30.5, "tiling": "legacy"},
        {**row, "set": "Set14", "psnr": 28.0, "tiling": "tile32-8"},
    ]
    card_path.write_text(json.dumps(card))
    assert [(r["set"], r["tiling"]) for r in results.headline_rows(card["eval"])] == [
        ("Set5", "legacy"),
        ("Set14", "tile32-8"),
    ]
    readme = "\n".join(results.readme_summary())
    assert (
        "| tiny-x4 | Set5 | x4 | 30.50 | chop |" in readme and "31.50" not in readme
    )  # the chop row, not the better one
    assert "| tiny-x4 | Set14 | x4 | 28.00 | tiles 32/8 |" in readme
    assert "| Set5 x4 ≥ 31.0 dB | 30.50 (chop) | 31.00 | no |" in readme
    text = results.render()  # docs/results.md keeps every row
    assert "| Set5 | x4 | 31.50 / 0.9000 | tiles 32/8 |" in text and "| Set5 | x4 | 30.50 / 0.9000 | chop |" in text
    assert [w.name for w in list_weights()] == ["tiny-dn-camera", "tiny-dn-gray", "tiny-x4"]


def test_results_card_rows_re_evaluates_exactly_the_cards_rows_with_their_tiling(fake_shipped, tmp_path, monkeypatch):
    import results

    card_path = fake_shipped / "tiny-x4.json"
    row = {"task": "sr", "level": 4, "ssim": 0.9, "seconds": 1.0}
    card = json.loads(card_path.read_text())
    card["eval"] = [
        {**row, "set": "Set5", "psnr": 30.0, "tiling": "legacy"},
        {**row, "set": "Set14", "psnr": 27.0, "tiling": "tile32-8"},
    ]
    card_path.write_text(json.dumps(card))
    calls = []

    def fake_evaluate(weights, task, level, set_name, data_root, tiling, tile, overlap):
        calls.append((weights.name, set_name, tiling, tile, overlap))
        return {"psnr": 31.0, "ssim": 0.95, "seconds": 2.0}

    monkeypatch.setattr(results, "evaluate", fake_evaluate)
    monkeypatch.setattr(results, "replace_block", lambda *a: False)  # leave the real README alone
    out = tmp_path / "results.md"
    monkeypatch.setattr(sys, "argv", ["results.py", "--data-root", "D", "--card-rows", "--output", str(out)])
    results.main()
    # tiny-dn-gray's card lists no rows: nothing evaluated for it, although its plan has four
    assert calls == [("tiny-x4", "Set5", "legacy", 0, 0), ("tiny-x4", "Set14", "tile", 32, 8)]
    card = json.loads(card_path.read_text())
    assert [(r["set"], r["tiling"], r["psnr"]) for r in card["eval"]] == [
        ("Set5", "legacy", 31.0),
        ("Set14", "tile32-8", 31.0),
    ]
    assert card["eval_command"]["tile32-8"].endswith("--only tiny-x4 --tiling tile --tile 32 --tile-overlap 8")
    assert "--card-rows" in out.read_text().splitlines()[2]
    monkeypatch.setattr(sys, "argv", ["results.py", "--data-root", "D", "--card-rows", "--tile", "32"])
    with pytest.raises(SystemExit):
        results.main()
    assert results.parse_tiling_label(results.tiling_label("tile", 48, 12)) == ("tile", 48, 12)


def test_cached_evaluation_resumes_image_by_image_and_reads_a_finished_record(tmp_path, monkeypatch):
    import panet.evaluation.cache as cache
    from panet.data.datasets import EvalPairs

    folder = tmp_path / "Set"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    pairs = EvalPairs(folder, task="denoise", level=25, colors=3)
    record = tmp_path / "out" / "denoise_25_Set_identity.json"
    seen = []

    def restorer(img):
        seen.append(img.shape)
        if len(seen) == 2:
            raise KeyboardInterrupt  # killed while the second image runs
        return img

    with pytest.raises(KeyboardInterrupt):
        cache.cached_evaluation(record, restorer, pairs, set_name="Set", fields={"baseline": "identity"})
    assert not record.exists() and len(list((record.parent / "partial" / record.stem).iterdir())) == 1
    assert [p.stem for p in pairs.files] == ["a", "b", "c"]  # the caller's pairs are left as they were
    seen.clear()
    done = cache.cached_evaluation(record, lambda img: img, pairs, set_name="Set", fields={"baseline": "identity"})
    assert sorted(done["per_image"]) == ["a", "b", "c"] and done["baseline"] == "identity" and done["images"] == 3
    assert not (record.parent / "partial").joinpath(record.stem).exists()
    monkeypatch.setattr(cache, "evaluate_set", None)  # a finished record is read, never recomputed
    assert cache.cached_evaluation(record, restorer, pairs, set_name="Set") == done


def test_results_name_what_restore_runs_where_weights_lose_to_the_baseline(fake_shipped):
    import shutil

    import results

    from panet.zoo.pretrained import list_weights

    if not (results.BASELINE_CACHE / "denoise_15_Set12_bm3d.json").exists():
        pytest.skip("results/baselines has no BM3D Set12 sigma 15 row")
    card_path = fake_shipped / "tiny-dn-gray.json"
    card = json.loads(card_path.read_text())
    row = {"task": "denoise", "set": "Set12", "ssim": 0.5, "seconds": 1.0, "tiling": "tile32-8"}
    card["eval"] = [{**row, "level": 15, "psnr": 20.0}, {**row, "level": 25, "psnr": 40.0}]  # below / above BM3D
    card_path.write_text(json.dumps(card))
    (weights,) = [w for w in list_weights() if w.name == "tiny-dn-gray"]
    assert results.below_baseline_note(weights) == [
        "Below the best classical baseline at Set12 σ 15. At Set12 σ 15 no other shipped weights cover the level.",
        "",
    ]
    # a model for sigma 15 alone ships too: restore runs it there, and the note says so
    shutil.copyfile(fake_shipped / "tiny-dn-gray.safetensors", fake_shipped / "tiny-dn-gray-sigma15.safetensors")
    (fake_shipped / "tiny-dn-gray-sigma15.json").write_text(
        json.dumps({**card, "name": "tiny-dn-gray-sigma15", "level": 15, "eval": []})
    )
    (weights,) = [w for w in list_weights() if w.name == "tiny-dn-gray"]
    assert results.below_baseline_note(weights)[0] == (
        "Below the best classical baseline at Set12 σ 15. At Set12 σ 15 `panet restore` runs `tiny-dn-gray-sigma15` "
        "instead (see its table)."
    )
    assert "Below the best" not in "\n".join(
        results.below_baseline_note(next(w for w in list_weights() if w.name == "tiny-dn-gray-sigma15"))
    )


def test_gallery_writes_one_sheet_per_weights(fake_shipped, tmp_path, monkeypatch):
    import gallery

    data = shared_path("data")
    for f in fake_shipped.glob("tiny-dn-gray.*"):  # its classical column (BM3D) takes seconds
        f.unlink()
    (fake_shipped / "tiny-x4b.safetensors").write_bytes((fake_shipped / "tiny-x4.safetensors").read_bytes())
    card = json.loads((fake_shipped / "tiny-x4.json").read_text())
    (fake_shipped / "tiny-x4b.json").write_text(json.dumps({**card, "name": "tiny-x4b"}))
    out = tmp_path / "docs" / "gallery"
    argv = ["gallery.py", "--data-root", str(data), "--output", str(out), "--crop", "48"]
    monkeypatch.setattr(sys, "argv", argv)
    gallery.main()
    assert sorted(p.name for p in out.iterdir()) == ["tiny-x4.png", "tiny-x4b.png"]
    assert "![tiny-x4](gallery/tiny-x4.png)" in (out.parent / "gallery.md").read_text()
    # --only redraws the named weights and keeps the others' sheets (and their place in gallery.md)
    for sheet in out.iterdir():
        sheet.write_bytes(b"old")
    monkeypatch.setattr(sys, "argv", [*argv, "--only", "tiny-x4"])
    gallery.main()
    assert (out / "tiny-x4.png").read_bytes() != b"old" and (out / "tiny-x4b.png").read_bytes() == b"old"
    text = (out.parent / "gallery.md").read_text()
    assert "## tiny-x4: sr (x4), Set14 " in text and "![tiny-x4b](gallery/tiny-x4b.png)" in text
    # a model trained for one level is shown at that level (its sheet exists, so no BM3D runs here)
    gray = panet.create_model("panet-dn-gray-s", blocks=2, features=8, attention_reduction=2)
    panet.save_weights(
        gray, fake_shipped / "tiny-dn-gray-sigma15.safetensors", metadata={"task": "denoise", "level": "15"}
    )
    (fake_shipped / "tiny-dn-gray-sigma15.json").write_text(
        json.dumps({"name": "tiny-dn-gray-sigma15", "preset": "panet-dn-gray-s", "task": "denoise", "level": 15})
    )
    (out / "tiny-dn-gray-sigma15.png").write_bytes(b"old")
    gallery.main()
    assert "## tiny-dn-gray-sigma15: denoise (σ 15), Set12 01, σ 15" in (out.parent / "gallery.md").read_text()
    monkeypatch.setattr(sys, "argv", [*argv, "--only", "nope"])
    with pytest.raises(SystemExit, match="no shipped weights nope"):
        gallery.main()


def test_train_queue_workers_share_one_list_and_wait_for_init_runs(tmp_path):
    """Two workers given the same list train each recipe once; x3-style recipes wait for the run they start from;
    a lock file left by a dead worker does not block."""
    import subprocess

    import numpy as np

    from panet.data.images import write_image

    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(tmp_path / "gt" / f"{i}.png", rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    (tmp_path / "configs").mkdir()
    common = (
        "task: denoise\nmodel: panet-dn-s\nmodel_overrides: {blocks: 1, features: 8}\n"
        f"data: {{train: ['{tmp_path / 'gt'}'], val: ['{tmp_path / 'gt'}'], level: [10, 30], patch_size: 12, "
        "val_images: 1}\niterations: 2\nbatch_size: 2\nval_every: 10\ncheckpoint_every: 1\nlog_every: 1\n"
    )
    (tmp_path / "configs" / "a.yaml").write_text(common + "out_dir: runs/a\n")
    (tmp_path / "configs" / "b.yaml").write_text(common + "out_dir: runs/b\ninit: runs/a/checkpoint.pt\n")
    (tmp_path / "configs" / "c.yaml").write_text(common + "out_dir: runs/c\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "runs" / "c").mkdir(parents=True)
    (tmp_path / "runs" / "c" / ".queue.lock").write_text(str(dead.pid))
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train_queue.py"),
        "a",
        "b",
        "c",
        "--root",
        str(tmp_path),
        "--poll",
        "0.2",
    ]
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    joined = "\n".join(logs)
    for name in "abc":
        assert joined.count(f"train configs/{name}.yaml") == 1, joined  # trained once, by one of the workers
        state = torch.load(tmp_path / "runs" / name / "checkpoint.pt", weights_only=True)
        assert state["step"] == 2
    runs = tmp_path / "runs"
    assert (runs / "b" / "config.json").stat().st_mtime >= (runs / "a" / "checkpoint.pt").stat().st_mtime  # b after a
    lone = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_queue.py"), "b", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert lone.returncode == 0 and "b: finished" in lone.stdout
    (tmp_path / "configs" / "d.yaml").write_text(common + "out_dir: runs/d\ninit: runs/nowhere/checkpoint.pt\n")
    orphan = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_queue.py"), "d", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert orphan.returncode == 1 and "unfinished and not in this queue" in orphan.stderr


def test_readme_block_replaces_only_its_markers(tmp_path):
    from readme_block import replace_block

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- begin t: generated -->\nold\n<!-- end t -->\noutro\n")
    assert replace_block("t", ["| a |", "| 1 |"], readme)
    assert readme.read_text() == "intro\n<!-- begin t: generated -->\n| a |\n| 1 |\n<!-- end t -->\noutro\n"
    assert not replace_block("other", ["x"], readme)  # no markers: untouched
    assert "x" not in readme.read_text()


def test_attention_finding_follows_the_numbers():
    from attention_levels import finding

    def result(low, high):
        return {
            "weights": "w",
            "set": "S",
            "images": 1,
            "pixels": 2,
            "scales": [1.0, 0.9],
            "uniform": [0.6, 0.4],
            "sigmas": {"10": {"mean": low, "sem": [0.001, 0.001]}, "50": {"mean": high, "sem": [0.001, 0.001]}},
        }

    assert "every coarser level gains" in finding(result([0.7, 0.3], [0.5, 0.5]))[-1]
    assert "no coarser level gains" in finding(result([0.5, 0.5], [0.7, 0.3]))[-1]


def test_ablation_table_puts_variants_side_by_side_and_flags_unequal_runs(tmp_path, monkeypatch):
    import results

    monkeypatch.setattr(results, "ABLATION", tmp_path)
    assert results.ablation_table() == []
    base = {"task": "sr", "level": 2, "set": "Set5", "ssim": 0.95}
    for key, label, psnr, iterations in [
        ("pa", "pyramid attention (5 levels)", 36.5, 1500),
        ("none", "no attention", 36.0, 1500),
    ]:
        (tmp_path / f"sr_Set5_{key}.json").write_text(
            json.dumps({**base, "variant": label, "psnr": psnr, "iterations": iterations, "precision": "bf16"})
        )
    rows = [line for line in results.ablation_table() if line.startswith("| sr")]
    assert rows == ["| sr | x2 | Set5 | 36.50 / 0.9500 (+0.50) | not run yet | 36.00 / 0.9500 | - | 1500 | bf16 |"]
    assert any("seed-to-seed spread has not been measured" in line for line in results.ablation_table())
    (tmp_path / "sr_Set5_nonlocal.json").write_text(
        json.dumps(
            {**base, "variant": "single-scale non-local", "psnr": 36.25, "iterations": 1500, "precision": "bf16"}
        )
    )
    (row,) = [line for line in results.ablation_table() if line.startswith("| sr")]
    assert "| 36.25 / 0.9500 (+0.25) | 36.00 / 0.9500 | +0.25 |" in row  # pyramid - single-scale
    # another seed of one variant: reported as the spread, never mixed into the table's seed-0 row
    (tmp_path / "sr_Set5_none_seed1.json").write_text(
        json.dumps(
            {**base, "variant": "no attention", "psnr": 36.1, "seed": 1, "iterations": 1500, "precision": "bf16"}
        )
    )
    table = results.ablation_table()
    assert [line for line in table if line.startswith("| sr")] == [row]
    assert "* sr x2, Set5, no attention: seeds 0, 1 give 36.00 / 36.10 dB (range 0.10 dB)" in table
    assert not any("difference per seed" in line for line in table)  # only one variant has seed 1
    for key, label, psnr in [
        ("pa", "pyramid attention (5 levels)", 36.3),
        ("nonlocal", "single-scale non-local", 36.35),
    ]:
        (tmp_path / f"sr_Set5_{key}_seed1.json").write_text(
            json.dumps({**base, "variant": label, "psnr": psnr, "seed": 1, "iterations": 1500, "precision": "bf16"})
        )
    table = results.ablation_table()
    assert "sr x2, Set5, every variant trained with seeds 0, 1 (difference per seed; mean):" in table
    assert "* pyramid attention (5 levels) − single-scale non-local: +0.25 / -0.05 dB; mean +0.10 dB" in table
    assert "* pyramid attention (5 levels) − no attention: +0.50 / +0.20 dB; mean +0.35 dB" in table
    (tmp_path / "sr_Set5_none.json").write_text(
        json.dumps({**base, "variant": "no attention", "psnr": 36.0, "iterations": 3000})
    )  # an older fp32 run
    (row,) = [line for line in results.ablation_table() if line.startswith("| sr")]
    assert row.endswith("| 1500, 3000 (differ!) | bf16, fp32 |")


def test_ship_weights_records_what_a_fine_tune_started_from(fake_shipped, tmp_path, monkeypatch):
    import hashlib
    import shutil

    import ship_weights

    monkeypatch.setattr(ship_weights, "DEST", fake_shipped)
    monkeypatch.setattr(ship_weights, "ROOT", tmp_path)
    blind, run = tmp_path / "runs" / "blind", tmp_path / "runs" / "sigma15"
    for folder in (blind, run):
        folder.mkdir(parents=True)
    shutil.copyfile(fake_shipped / "tiny-dn-gray.safetensors", blind / "weights.safetensors")  # the shipped blind model
    torch.manual_seed(1)
    model = panet.create_model("panet-dn-gray-s", blocks=2, features=8, attention_reduction=2)
    panet.save_weights(model, run / "weights.safetensors", metadata={"task": "denoise", "level": "15"})
    card = {
        "preset": "panet-dn-gray-s",
        "task": "denoise",
        "level": 15,
        "iterations": 5,
        "planned_iterations": 5,
        "command": "panet train configs/tiny-dn-gray-sigma15.yaml",
        "config": {"init": "runs/blind/weights.safetensors"},
    }
    (run / "card.json").write_text(json.dumps(card))
    monkeypatch.setattr(sys, "argv", ["ship_weights.py", str(run)])
    ship_weights.main()  # named after its recipe, not its preset (which would overwrite the blind model)
    shipped = json.loads((fake_shipped / "tiny-dn-gray-sigma15.json").read_text())
    digest = hashlib.sha256((blind / "weights.safetensors").read_bytes()).hexdigest()
    assert shipped["name"] == "tiny-dn-gray-sigma15"
    assert shipped["init"] == {"file": "runs/blind/weights.safetensors", "sha256": digest, "shipped_as": "tiny-dn-gray"}
    assert (fake_shipped / "tiny-dn-gray-sigma15.safetensors").read_bytes() == (
        run / "weights.safetensors"
    ).read_bytes()


def test_tiling_choice_is_the_fastest_setting_within_the_tolerance():
    import tiling

    psnr = {
        "legacy": {"A": 30.5},
        "16/4": {"A": 29.90},
        "24/4": {"A": 29.985},
        "32/8": {"A": 30.0},
        "64/16": {"A": 29.99},
        "32/8 bf16": {"A": 31.0},
    }
    speed = {
        "legacy": {"s_per_mp": 1.0},
        "16/4": {"s_per_mp": 10},
        "24/4": {"s_per_mp": 20},
        "32/8": {"s_per_mp": 30},
        "64/16": {"s_per_mp": 90},
    }
    # legacy and the bf16 row are not candidates; 16/4 is fastest but 0.1 dB worse; 24/4 is within 0.02 dB
    assert tiling.choose(psnr, speed) == ("24/4", 30.0)
    psnr["24/4"] = {"A": 29.97}
    assert tiling.choose(psnr, speed)[0] == "32/8"


def test_the_committed_tiling_table_is_what_its_measurements_give():
    """tiling.json (read by panet restore --tile auto) and docs/tiling.md come from the cached measurements in
    results/tiling by scripts/tiling.py's own code, not by hand."""
    import tiling

    weights = tiling.default_weights()
    speeds = json.loads((tiling.CACHE / "speed.json").read_text())
    table, text = tiling.outputs(weights, tiling.cached_psnr(weights), speeds, tiling.COMMAND)
    assert json.loads(tiling.TABLE.read_text()) == table
    assert (ROOT / "docs" / "tiling.md").read_text() == text
    assert set(table["weights"]) == {w.name for w in weights}


def test_the_gpu_check_runs_on_cpu_and_finds_every_path_exact(tmp_path):
    """benchmarks/gpu.py is run once when a GPU is lent: its --quick mode checks the whole script on CPU."""
    import subprocess

    out = tmp_path / "gpu.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick", "--output", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    text = out.read_text()
    for title in ("GEMM rates", "Parity", "Attention block", "Training step", "Restore"):
        assert f"## {title}" in text, title
    parity = [line.split("|") for line in text.splitlines() if line.startswith("| (1, 8, 9, 13)")]
    assert {row[2].strip() for row in parity} == {"factorised", "sdpa", "kernel"}
    assert all(float(row[3]) < 1e-10 and float(row[4]) < 1e-10 for row in parity)


def test_real_noise_gallery_shows_each_photo_without_a_score(tmp_path):
    """RNI15 has no ground truth: the sheets put the restorations side by side and the page says so."""
    import real_noise_gallery

    from panet.data.images import write_image
    from panet.zoo.weights import save_weights

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "real_noise" / "RNI15"
    for name in ("Dog", "Boy"):
        write_image(folder / f"{name}.png", rng.integers(0, 256, (40, 36, 3), dtype=np.uint8))
    torch.manual_seed(0)
    camera = tmp_path / "camera.safetensors"
    save_weights(panet.create_model("panet-dn-s", blocks=2, features=8), camera, metadata={"task": "denoise"})
    out = tmp_path / "docs"
    real_noise_gallery.main(
        ["--data-root", str(tmp_path / "data"), "--camera-weights", str(camera), "--crop", "24", "--output", str(out)]
    )
    text = (out / "gallery_real.md").read_text()
    assert "no ground\ntruth, so no PSNR" in text and "dB" not in text
    for name in ("Dog", "Boy"):
        assert f"![{name}](gallery/real/{name}.png)" in text
        sheet = Image.open(out / "gallery" / "real" / f"{name}.png")
        assert sheet.height == 24 + 20 and sheet.width >= 3 * (24 + 6)  # input, Gaussian model, camera model


def test_save_stage_chains_the_runs_cards(tmp_path):
    """A stage's weights, card and log go into training/; the next stage's card counts all steps and keeps the
    earlier stage's record."""
    import save_stage

    out = tmp_path / "training"
    for stage, steps, psnr in ((1, 200, 28.1), (2, 300, 28.3)):
        run = tmp_path / f"run{stage}"
        run.mkdir()
        (run / "card.json").write_text(json.dumps({"iterations": steps, "seed": stage}))
        (run / "log.csv").write_text(f"step,loss,lr,val_psnr,seconds\n100,0.1,0.0001,,1\n{steps},0.1,0.0001,{psnr},2\n")
        (run / "val_reference.json").write_text(json.dumps({"baseline": "bm3d", "level": 38, "psnr": 27.6}))
        (run / "weights.safetensors").write_bytes(f"weights {stage}".encode())
        card = save_stage.save_stage(run, "demo", stage, f"stage {stage}", out=out)
    assert card["iterations"] == 500 and card["stage_iterations"] == 300 and card["stage"] == 2
    assert card["validation"] == {"step 300": 28.3, "bm3d": 27.6}
    assert card["previous_stages"] == [
        {"stage": 1, "iterations": 200, "seed": 1, "validation": {"step 200": 28.1, "bm3d": 27.6}, "notes": "stage 1"}
    ]
    assert (out / "demo.safetensors").read_bytes() == b"weights 2" and (out / "demo.stage1.log.csv").exists()
    with pytest.raises(SystemExit, match="holds stage 2, not stage 1"):  # stage 2 saved a second time
        save_stage.save_stage(run, "demo", 2, "again", out=out)
    assert json.loads((out / "demo.json").read_text())["iterations"] == 500  # untouched


def test_camera_noise_weights_are_scored_under_camera_noise(fake_shipped, tmp_path):
    """evaluate_weights degrades with the weights' own noise model and keeps its records apart."""
    from panet.evaluation.cache import evaluate_weights
    from panet.zoo.pretrained import list_weights

    root = tmp_path / "data"
    (root / "Tiny").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(root / "Tiny" / f"im{i}.png")
    weights = {w.name: w for w in list_weights()}
    camera = weights["tiny-dn-camera"]
    run = {"data_root": str(root), "tiling": "tile", "tile": 32, "overlap": 8, "cache": tmp_path / "cache"}
    record = evaluate_weights(camera, "denoise", 20, "Tiny", **run)
    assert record["noise"] == "camera"
    names = [p.name for p in (tmp_path / "cache").glob("*.json")]
    assert len(names) == 1 and "denoise_20_Tiny_camera-tile32-8" in names[0]
    # the same network file scored as a Gaussian denoiser: another degradation, another record
    gaussian = dataclasses.replace(camera, card={k: v for k, v in camera.card.items() if k != "config"})
    assert gaussian.noise is None
    plain = evaluate_weights(gaussian, "denoise", 20, "Tiny", **run)
    assert "noise" not in plain and plain["psnr"] != record["psnr"]


def test_v2_targets_judge_the_model_restore_runs_or_the_blind_one(fake_shipped):
    """Issue 22's targets: a per-level model where `panet restore` would run it, the widest-range model where the
    target says blind; never a row under another noise model."""
    import shutil

    import results

    from panet.zoo.pretrained import list_weights

    row = {"task": "denoise", "set": "Set12", "level": 15, "ssim": 0.5, "seconds": 1.0, "tiling": "legacy"}
    blind = json.loads((fake_shipped / "tiny-dn-gray.json").read_text())
    (fake_shipped / "tiny-dn-gray.json").write_text(json.dumps({**blind, "eval": [{**row, "psnr": 30.0}]}))
    shutil.copyfile(fake_shipped / "tiny-dn-gray.safetensors", fake_shipped / "tiny-dn-gray-sigma15.safetensors")
    (fake_shipped / "tiny-dn-gray-sigma15.json").write_text(
        json.dumps({**blind, "name": "tiny-dn-gray-sigma15", "level": 15, "eval": [{**row, "psnr": 31.0}]})
    )
    camera = json.loads((fake_shipped / "tiny-dn-camera.json").read_text())
    (fake_shipped / "tiny-dn-camera.json").write_text(json.dumps({**camera, "eval": [{**row, "psnr": 40.0}]}))
    shipped = list_weights()
    assert results.target_row(shipped, "denoise", "Set12", 15)["psnr"] == 31.0
    assert results.target_row(shipped, "denoise", "Set12", 15, blind=True)["psnr"] == 30.0
    assert results.target_row(shipped, "denoise", "Set12", 25) is None


def test_the_gemm_blocks_benchmark_calls_mkl_correctly(tmp_path):
    """benchmarks/gemm_blocks.py calls MKL's bf16 GEMM through ctypes: where torch exports it, its products must match
    torch's (a wrong signature would give garbage or crash), and the table has a row per GEMM and block size."""
    import subprocess

    out = tmp_path / "gemm.md"
    command = [sys.executable, str(ROOT / "benchmarks" / "gemm_blocks.py"), "--rows", "32", "--markdown", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [
        line.split("|")[1:-1]
        for line in out.read_text().splitlines()
        if line.startswith("| scores") or line.startswith("| weighted")
    ]
    assert len(rows) == 2
    for row in rows:
        assert row[1].strip() == "32" and float(row[2]) > 0
        if row[3].strip() != "-":  # MKL exported by this torch build
            assert float(row[3]) > 0 and float(row[4]) < 1e-5
