"""The weights that ship inside the package: each loads strictly as its preset, matches its card, was trained on
training sets only, and restores a small image to finite values."""

from __future__ import annotations

import json

import pytest
import torch

import panet
from conftest import BENCHMARKS
from panet.zoo.pretrained import list_weights
from panet.zoo.weights import read_metadata

SHIPPED = list_weights()

CARD_KEYS = {"name", "preset", "task", "level", "iterations", "seed", "training_data", "command", "config", "torch"}


def test_every_task_ships_a_default_for_its_levels():
    from panet.tasks import TASKS
    from panet.zoo.pretrained import find_weights

    assert {w.task for w in SHIPPED} == set(TASKS), "a task without shipped weights"
    # every level the command line accepts by default has a network that covers it
    for task, levels in {
        "sr": [2, 3, 4],
        "denoise": [0, 10, 25, 50, 75],
        "car": [10, 20, 30, 40],
        "demosaic": [None],
    }.items():
        for level in levels:
            assert find_weights(task, level).covers(level), (task, level)


@pytest.mark.parametrize("weights", SHIPPED, ids=[w.name for w in SHIPPED])
def test_shipped_weights_match_their_card_and_preset(weights):
    card = weights.card
    assert set(card) >= CARD_KEYS, f"card lacks {sorted(CARD_KEYS - set(card))}"
    assert card["name"] == weights.name and card["task"] == card["config"]["task"] == weights.task
    assert weights.file.stat().st_size < 20 * 2**20  # they live in git
    assert not set(card["training_data"]) & BENCHMARKS, "trained on a benchmark set"
    assert set(card["training_data"]) == {p.rsplit("/", 1)[-1] for p in card["config"]["data"]["train"]}
    if "stage" in card:  # a committed stage of a chained run (scripts/save_stage.py): so far, and it says so
        assert 0 < card["stage_iterations"] <= card["iterations"] <= card["planned_iterations"]
    else:  # a run that finished what its recipe planned
        assert card["iterations"] == card.get("planned_iterations", card["iterations"]) > 0
    meta = read_metadata(weights.file)
    assert meta["task"] == weights.task and json.loads(meta["level"]) == card["level"]
    model = panet.load_weights(weights.file).eval()  # strict: unknown, missing or mis-shaped keys raise
    preset = panet.create_model(card["preset"], **card["config"].get("model_overrides", {}))
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in preset.state_dict().items()}
    for row in card.get("eval", []):
        assert {"set", "psnr", "ssim", "tiling"} <= set(row) and row["set"] in BENCHMARKS
    x = torch.rand(1, model.colors, 20, 22)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, model.colors, 20 * model.scale, 22 * model.scale) and torch.isfinite(y).all()


def test_the_shipped_demosaicer_gets_the_last_row_and_column_of_odd_sized_images_right():
    # Trained on even-sized patches, the network never saw a mosaic ending on a G-R row or G-B column; the task's
    # reflect padding (panet.tasks) turns those edges into interior pixels.
    import torch.nn.functional as F

    from panet.data.degrade import mosaic
    from panet.inference.restore import run_network
    from panet.zoo.pretrained import load_model

    model = load_model("panet-demosaic-s")
    torch.manual_seed(0)
    smooth = F.interpolate(torch.rand(1, 3, 6, 8), size=(41, 57), mode="bicubic", align_corners=True).clamp(0, 1)
    rgb = (smooth[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    x = torch.from_numpy(mosaic(rgb)).permute(2, 0, 1)[None].float() / 255
    target = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255

    def edge_error(y):
        e = (y.clamp(0, 1) - target) ** 2
        return float(torch.cat([e[..., -1, :].flatten(), e[..., :, -1].flatten()]).mean())

    with torch.no_grad():
        unpadded = edge_error(model(x))
    padded = edge_error(run_network(model, x, task="demosaic", tiling="none"))
    assert padded < 0.2 * unpadded, (padded, unpadded)
