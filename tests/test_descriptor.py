"""create_model(name, pretrained=...) and the per-model descriptor."""

from __future__ import annotations

import pytest
import torch

import panet
from panet.errors import UnknownNameError
from panet.inference.restore import resolve_tiling
from panet.nn.attention import pyramid_sizes
from panet.zoo.pretrained import list_weights, measured_tiling


def test_pretrained_loads_the_shipped_weights_of_the_preset():
    model = panet.create_model("panet-dn-s", pretrained=True)
    shipped = panet.load_model("panet-dn-s")
    assert model.shipped_name == "panet-dn-s" and model.task == "denoise"
    for key, value in shipped.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    fine = panet.create_model("panet-dn-gray-s", pretrained="panet-dn-gray-s-sigma15")
    assert fine.shipped_name == "panet-dn-gray-s-sigma15" and fine.colors == 1


def test_pretrained_refuses_what_cannot_be_loaded():
    with pytest.raises(UnknownNameError, match="available: .*panet-dn-s"):
        panet.create_model("panet-dn-s", pretrained="pa-edsr-s-x2")  # shipped, but for another preset
    with pytest.raises(UnknownNameError, match="available: none"):
        panet.create_model("panet-dn", pretrained=True)  # the paper's preset: no weights ship for it
    with pytest.raises(ValueError, match="cannot be combined"):
        panet.create_model("panet-dn-s", pretrained=True, blocks=4)
    assert panet.create_model("panet-dn-s", blocks=2).task == "denoise"  # untrained, but it knows its task


@pytest.mark.parametrize("weights", list_weights(), ids=[w.name for w in list_weights()])
def test_every_shipped_model_is_described(weights):
    model = panet.load_model(weights.name)
    info = panet.describe(model)
    assert info.task == weights.task and info.shipped_name == weights.name
    assert info.colors == model.colors and info.scale == model.scale
    # what `panet restore` runs: the measured setting where scripts/tiling.py measured these weights
    assert info.tiling == resolve_tiling(model, "cpu")
    assert measured_tiling(weights.name) in (None, info.tiling)
    assert info.parameters == sum(p.numel() for p in model.parameters())
    # the smallest side keeps a pixel at every pyramid level, one less does not
    assert min(min(s) for s in pyramid_sizes(info.min_size, info.min_size, 5)) >= 1
    assert min(min(s) for s in pyramid_sizes(info.min_size - 1, info.min_size - 1, 5)) < 1
    if weights.card.get("level") is not None and weights.task != "sr":
        assert info.level is not None and info.level[0] <= info.level[1]


def test_a_random_preset_is_described_by_its_preset():
    info = panet.describe(panet.create_model("pa-edsr-s-x3"))
    assert (info.task, info.scale, info.colors, info.shipped_name, info.level) == ("sr", 3, 3, None, None)
