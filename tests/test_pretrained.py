"""The weights that ship inside the package: each loads strictly as its preset, matches its card, was trained on
training sets only, and restores a small image to finite values."""
from __future__ import annotations

import json

import pytest
import torch

import panet
from panet.pretrained import list_weights
from panet.weights import read_metadata

SHIPPED = list_weights()
BENCHMARKS = {"Set5", "Set14", "B100", "Urban100", "Manga109", "Kodak24", "CBSD68", "BSD68", "McMaster", "LIVE1",
              "Classic5", "Set12"}
CARD_KEYS = {"name", "preset", "task", "level", "iterations", "seed", "training_data", "command", "config", "torch"}


def test_the_package_ships_weights():
    assert SHIPPED, "no weights in src/panet/pretrained"


@pytest.mark.parametrize("weights", SHIPPED, ids=[w.name for w in SHIPPED])
def test_shipped_weights_match_their_card_and_preset(weights):
    card = weights.card
    assert CARD_KEYS <= set(card), f"card lacks {sorted(CARD_KEYS - set(card))}"
    assert card["name"] == weights.name and card["task"] == card["config"]["task"] == weights.task
    assert weights.file.stat().st_size < 20 * 2**20  # they live in git
    assert not set(card["training_data"]) & BENCHMARKS, "trained on a benchmark set"
    assert set(card["training_data"]) == {p.rsplit("/", 1)[-1] for p in card["config"]["data"]["train"]}
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
