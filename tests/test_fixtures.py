"""Every reference output of the release, reproduced through from_official (and forward_chop)."""

from __future__ import annotations

import pytest
import torch

import panet
from conftest import fixture_files, shared_path

FILES = fixture_files()


def release_kwargs(config):
    if config["kind"] == "pyramid_attention":
        return {
            k: config[k]
            for k in ("level", "res_scale", "channel", "reduction", "ksize", "stride", "softmax_scale", "average")
        }
    pa = config["pa"]
    return {
        "level": pa["level"],
        "softmax_scale": pa["softmax_scale"],
        "average": pa["average"],
        "res_scale": config["res_scale"],
    }


def test_fixtures_present():
    shared_path("fixtures", "official")
    assert len(FILES) == 15


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_release_fixture(path):
    case = torch.load(path, weights_only=True)
    config = case["config"]
    model = panet.from_official(case["state_dict"], **release_kwargs(config))
    with torch.no_grad():
        if config["forward"] == "forward_chop":
            out = panet.forward_chop(
                model, case["input"], shave=config["chop"]["shave"], min_size=config["chop"]["min_size"]
            )
        else:
            out = model(case["input"])
    assert out.shape == case["output"].shape
    assert torch.allclose(out, case["output"], rtol=1e-4, atol=2e-4), (out - case["output"]).abs().max()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_to_official_round_trip_is_exact(path):
    """Export gives back the release's state dict: same keys, order, shapes and values."""
    case = torch.load(path, weights_only=True)
    model = panet.from_official(case["state_dict"], **release_kwargs(case["config"]))
    exported = panet.to_official(model)
    assert list(exported) == list(case["state_dict"])
    for key, value in case["state_dict"].items():
        assert torch.equal(exported[key], value), key


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_inferred_architecture(path):
    case = torch.load(path, weights_only=True)
    config = case["config"]
    model = panet.from_official(case["state_dict"], **release_kwargs(config))
    if config["kind"] == "pyramid_attention":
        assert (model.channels, model.reduction, model.levels) == (
            config["channel"],
            config["reduction"],
            config["level"],
        )
        assert model.hard == (not config["average"])
        return
    assert model.blocks == config["n_resblocks_built"]
    assert model.attention_index == config["pa_body_index"]
    assert model.colors == config["n_colors"] and model.features == config["n_feats"]
    assert model.scale == (config["scale"] if config["kind"] == "paedsr" else 1)
    assert model.attention.reduction == config["pa"]["reduction"]
