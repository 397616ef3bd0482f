from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import shared_path
from panet.apps.cli import main
from panet.data.datasets import EvalPairs, TrainPairs, find_set
from panet.data.images import write_image
from panet.evaluation.baselines import make_baseline
from panet.tasks import get_task


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data" / "benchmarks" / "Tiny"
    for i, shape in enumerate([(60, 52, 3), (49, 64, 3), (56, 56, 3)]):
        base = np.linspace(0, 255, shape[0] * shape[1]).reshape(shape[:2])[:, :, None]
        write_image(root / f"im{i}.png", np.clip(base + rng.normal(0, 20, shape), 0, 255).astype(np.uint8))
    return root


def test_find_set_layouts_and_error(tmp_path, folder):
    assert find_set("Tiny", tmp_path / "data") == folder
    hr = tmp_path / "other" / "benchmark" / "Tiny" / "HR"
    hr.mkdir(parents=True)
    write_image(hr / "a.png", np.zeros((8, 8), np.uint8))
    assert find_set("Tiny", tmp_path / "other") == hr
    with pytest.raises(FileNotFoundError, match="looked in"):
        find_set("Nope", tmp_path / "data")


@pytest.mark.parametrize(
    "task, level, colors",
    [("sr", 3, 3), ("denoise", (5, 50), 3), ("denoise", 25, 1), ("car", 20, 1), ("car", 20, 3), ("demosaic", None, 3)],
)
def test_train_pairs_shapes_determinism_and_range(folder, task, level, colors):
    """Pairs have the network's channels: a gray JPEG network trains on the Y of colour photos, a colour one on
    colour JPEGs."""
    pairs = TrainPairs([folder], task=task, level=level, patch_size=16, colors=colors, length=10, seed=3)
    x, y = pairs[4]
    scale = 3 if task == "sr" else 1
    c = colors
    assert x.shape == (c, 16, 16) and y.shape == (c, 16 * scale, 16 * scale)
    assert x.min() >= 0 and x.max() <= 1 and x.dtype == torch.float32
    x2, y2 = TrainPairs([folder], task=task, level=level, patch_size=16, colors=colors, length=10, seed=3)[4]
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(y, pairs[5][1])
    loader = torch.utils.data.DataLoader(pairs, batch_size=5, num_workers=2)
    assert next(iter(loader))[0].shape == (5, c, 16, 16)


def test_demosaic_training_pairs_are_mosaics_of_their_target(folder):
    x, y = TrainPairs([folder], task="demosaic", level=None, patch_size=16, length=4)[1]
    kept = x > 0
    assert torch.equal(x[kept], y[kept])
    assert (x > 0).sum(0).max() <= 1  # at most one sample per pixel


def test_downscaled_photos_are_shrunk_before_patches_and_validation(folder, capsys):
    """downscale 2: patches come from MATLAB-bicubic half-size copies (images then too small are skipped); the
    validation pairs of such a recipe are shrunk the same way; 0, 1.5 and True are refused."""
    from panet.data.datasets import shrink
    from panet.data.images import read_image
    from panet.data.matlab_resize import imresize

    pairs = TrainPairs([folder], task="demosaic", level=None, patch_size=27, length=50, seed=1, downscale=2)
    assert "skipping 2 training image(s) smaller than the 27px patch" in capsys.readouterr().err  # 60x52, 49x64
    half = imresize(read_image(folder / "im2.png", colors=3), 0.5)
    assert half.shape == (28, 28, 3) and np.array_equal(pairs.images[0], half)
    _, target = pairs[0]
    windows = np.lib.stride_tricks.sliding_window_view(half, (27, 27, 3))[:, :, 0]
    patch = (target.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    variants = [patch, patch[:, ::-1], patch[::-1], patch.transpose(1, 0, 2)]
    variants += [v[:, ::-1] for v in variants] + [v[::-1] for v in variants]
    assert any((windows == v).all(axis=(2, 3, 4)).any() for v in variants)  # a crop of the half-size image
    shrunk = list(EvalPairs(folder, task="denoise", level=10, downscale=2))
    assert [item.target.shape for item in shrunk] == [(30, 26, 3), (25, 32, 3), (28, 28, 3)]
    assert shrink(half, 1) is half
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="downscale must be a whole number >= 1"):
            EvalPairs(folder, task="denoise", level=10, downscale=bad)
        with pytest.raises(ValueError, match="downscale must be a whole number >= 1"):
            TrainPairs([folder], task="demosaic", level=None, patch_size=8, downscale=bad)


def test_eval_pairs_are_deterministic_and_scored_with_the_protocol(folder):
    a = list(EvalPairs(folder, task="denoise", level=30))
    b = list(EvalPairs(folder, task="denoise", level=30))
    assert all(np.array_equal(p.degraded, q.degraded) for p, q in zip(a, b))
    assert get_task("sr").metric_options(4) == {"y_channel": True, "crop_border": 4}
    assert get_task("car").metric_options(1) == {"y_channel": False, "crop_border": 0}
    with pytest.raises(ValueError, match="needs a level"):
        EvalPairs(folder, task="car", level=None)


def test_eval_cli_baseline_and_random_network_json(tmp_path, folder, capsys):
    out = tmp_path / "r.json"
    args = ["eval", "--task", "sr", "--scale", "2", "--sets", "Tiny", "--data-root", str(tmp_path / "data"), "--quiet"]
    assert main(args + ["--baseline", "bicubic", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["sets"]["Tiny"]["images"] == 3 and len(data["images"]) == 3
    assert main(args + ["--model", "pa-edsr-s-x2", "--random-init", "--tiling", "none"]) == 0
    assert "Tiny" in capsys.readouterr().out
    assert main(["eval", "--task", "sr", "--sigma", "3", "--baseline", "bicubic", "--data", str(folder)]) == 2
    assert main(["eval", "--task", "denoise", "--sigma", "10", "--baseline", "bicubic", "--data", str(folder)]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--task", "car", "--quality", "10", "--baseline", "identity", "--data", str(empty)]) == 2


def test_eval_takes_task_and_scale_from_the_weights(tmp_path, folder, capsys):
    from panet import create_model, save_weights

    weights = tmp_path / "x2.safetensors"
    save_weights(create_model("pa-edsr-s-x2", features=8, blocks=1), weights, metadata={"task": "sr", "level": "2"})
    data = ["--data", str(folder), "--tiling", "none", "--quiet", "--means-only"]
    assert main(["eval", "--weights", str(weights), *data]) == 0
    assert "task sr, level 2" in capsys.readouterr().out
    assert main(["eval", "--task", "denoise", "--sigma", "10", "--weights", str(weights), *data]) == 2
    assert "are sr weights, not denoise" in capsys.readouterr().err
    bare = tmp_path / "bare.safetensors"
    save_weights(create_model("panet-dn-s", features=8, blocks=1), bare)
    assert main(["eval", "--weights", str(bare), *data]) == 2
    assert "does not record its task" in capsys.readouterr().err


def test_paper_rows_reproduced_by_identity_baselines():
    """The degraded inputs themselves give the paper's JPEG and mosaiced rows (Tables 2 and 3)."""
    from panet.evaluation.evaluate import evaluate_set, summarize

    kodak = shared_path("data", "benchmarks", "Kodak24")
    mean = summarize(
        evaluate_set(
            make_baseline("identity", "demosaic", None), EvalPairs(kodak, task="demosaic", level=None), set_name="K"
        )
    )["K"]
    assert mean["psnr"] == pytest.approx(8.56, abs=0.005) and mean["ssim"] == pytest.approx(0.0682, abs=5e-5)
    classic = shared_path("data", "benchmarks", "Classic5")
    mean = summarize(
        evaluate_set(make_baseline("identity", "car", 10), EvalPairs(classic, task="car", level=10), set_name="C")
    )["C"]
    assert mean["psnr"] == pytest.approx(27.82, abs=0.05)


def test_the_papers_plan_is_consistent_with_the_task_table():
    """Every benchmark group of a task names known sets, levels the task accepts and baselines that apply to it;
    the paper's numbers are looked up by method, set and level."""
    from conftest import BENCHMARKS
    from panet.evaluation.baselines import baseline_label
    from panet.tasks import TASKS

    for task in TASKS.values():
        assert task.benchmarks, task.name
        for group in task.benchmarks:
            assert set(group.sets) <= set(BENCHMARKS), group.sets
            assert set(group.baselines) <= set(task.baselines), (task.name, group.baselines)
            assert group.noise is None or group.noise in task.noise_models, (task.name, group.noise)
            for level in group.levels:
                task.check_level(level)
            for method, set_name, level, _ in group.paper:
                assert method == "panet" or method in group.baselines
                assert set_name in group.sets and level in group.levels
            assert all(baseline_label(b, task.name) for b in group.baselines)
    assert TASKS["denoise"].paper_score("bm3d", "CBSD68", 50) == 27.38
    assert TASKS["sr"].paper_score("panet", "Set5", 2) == (38.33, 0.9617)
    assert TASKS["sr"].paper_score("panet", "Set5", 5) is None
    assert baseline_label("identity", "car") == "JPEG"


def test_jpeg_pairs_follow_the_networks_colours(folder):
    """A gray JPEG network is scored on the Y of colour images (the paper's protocol), a colour one on colour
    JPEGs; restore gives a colour network the colour image itself."""
    import panet

    (gray,) = list(EvalPairs(folder, task="car", level=10, colors=1))[:1]
    (colour,) = list(EvalPairs(folder, task="car", level=10, colors=3))[:1]
    (baseline,) = list(EvalPairs(folder, task="car", level=10, colors=None))[:1]
    assert gray.target.shape[2] == 1 and colour.target.shape[2] == 3 and baseline.target.shape[2] == 1
    assert colour.degraded.shape == colour.target.shape and not np.array_equal(colour.degraded, colour.target)
    model = panet.create_model("panet-car-s", colors=3, blocks=2, features=8)
    restored = panet.restore(colour.degraded, model=model, task="car")
    assert restored.shape == colour.degraded.shape
