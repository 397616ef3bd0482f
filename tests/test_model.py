from __future__ import annotations

import pytest
import torch

import panet
from panet.nn.model import count_parameters

# release.md section 1.3 / 1.4: unique parameters of the release's networks. The
# release also counts its two MeanShift convs (2 x (3x3 + 3) = 24 frozen
# parameters); PANet never calls them and PA-EDSR's are constants, which we keep
# as a buffer, so our counts are 24 lower.
RELEASE_PARAMETERS = {
    "panet-dn": 5_957_279,
    "panet-demosaic": 5_957_279,
    "panet-car": 5_954_973,
    "pa-edsr-x2": 40_811_870,
    "pa-edsr-x3": 43_762_270,
    "pa-edsr-x4": 43_172_190,
}
MEAN_SHIFT_PARAMETERS = 24


@pytest.mark.parametrize("name", panet.list_models())
def test_every_preset_builds_and_runs(name):
    model = panet.create_model(name).eval()
    x = torch.rand(1, model.colors, 12, 10)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, model.colors, 12 * model.scale, 10 * model.scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(RELEASE_PARAMETERS))
def test_paper_parameter_counts_match_release(name):
    assert count_parameters(panet.create_model(name)) == RELEASE_PARAMETERS[name] - MEAN_SHIFT_PARAMETERS


def test_paper_architecture_details():
    dn = panet.create_model("panet-dn")
    assert dn.attention_index == 40 and len(dn.body) == 82
    assert (dn.attention.channels, dn.attention.reduction, dn.attention.levels) == (64, 2, 5)
    sr = panet.create_model("pa-edsr-x4")
    assert sr.attention_index == 16 and len(sr.body) == 34
    assert (sr.attention.channels, sr.attention.reduction, sr.attention.res_scale) == (256, 8, 0.1)


def test_trunk_prelu_is_shared_within_a_network_not_across_networks():
    a = panet.create_model("panet-dn-s")
    b = panet.create_model("panet-dn-s")
    prelus = [m for m in a.modules() if isinstance(m, torch.nn.PReLU)]
    # one trunk slope + three embedding slopes in the attention block
    assert len({id(m) for m in prelus}) == 4
    with torch.no_grad():
        a.act.weight.fill_(0.5)
    assert b.act.weight.item() == pytest.approx(0.25)
    assert all(block._act is a.act for block in a.body if isinstance(block, panet.nn.model.ResBlock))


def test_no_image_level_residual_and_pa_edsr_mean_shift():
    net = panet.PANet(colors=3, features=8, blocks=2)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    assert torch.equal(net(torch.rand(1, 3, 8, 8)), torch.zeros(1, 3, 8, 8))
    sr = panet.PANet(colors=3, scale=2, features=8, blocks=2, act="relu", mean_shift=True)
    with torch.no_grad():
        for p in sr.parameters():
            p.zero_()
    out = sr(torch.rand(1, 3, 8, 8))
    torch.testing.assert_close(out, sr.rgb_mean.expand(1, 3, 16, 16))


def test_ablation_variants():
    none = panet.create_model("panet-dn-s", attention_levels=0)
    assert none.attention is None
    single = panet.create_model("panet-dn-s", attention_levels=1)
    assert single.attention.levels == 1
    x = torch.rand(2, 3, 10, 10)
    assert none(x).shape == single(x).shape == x.shape


def test_batch_zero_and_odd_sizes():
    net = panet.create_model("pa-edsr-s-x3").eval()
    with torch.no_grad():
        assert net(torch.rand(0, 3, 7, 9)).shape == (0, 3, 21, 27)
        assert net(torch.rand(2, 3, 7, 9)).shape == (2, 3, 21, 27)


def test_errors():
    with pytest.raises(KeyError, match="unknown model"):
        panet.create_model("panet-nope")
    with pytest.raises(TypeError):
        panet.create_model("panet-dn-s", not_an_argument=1)
    with pytest.raises(ValueError, match="upscaling factor"):
        panet.PANet(scale=5)
    net = panet.create_model("panet-car-s")
    with pytest.raises(ValueError, match="expected a"):
        net(torch.rand(1, 3, 16, 16))


def test_list_models_filters():
    assert "panet-dn" in panet.list_models(paper=True)
    assert "panet-dn-s" not in panet.list_models(paper=True)
    assert set(panet.list_models(task="sr")) >= {"pa-edsr-x2", "pa-edsr-s-x4"}
    assert panet.list_models("pa-edsr-x*") == ["pa-edsr-x2", "pa-edsr-x3", "pa-edsr-x4"]
