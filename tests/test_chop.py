from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import panet


class Identity(torch.nn.Module):
    scale = 1

    def forward(self, x):
        return x.clone()


class Nearest(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape[-2:]))
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


def test_chop_of_a_local_model_is_seamless():
    x = torch.rand(2, 3, 97, 130)
    assert torch.equal(panet.forward_chop(Identity(), x, min_size=1000), x)
    for scale in (2, 3, 4):
        model = Nearest(scale)
        out = panet.forward_chop(model, x, min_size=1500)
        assert torch.equal(out, F.interpolate(x, scale_factor=scale, mode="nearest"))


def test_release_tile_sizes_strict_less_and_sr_remainder():
    # 100x100, shave 10: tiles 60x60 = 3600 area; min_size 3600 is not < so it recurses once more
    model = Nearest(1)
    panet.forward_chop(model, torch.rand(1, 1, 100, 100), min_size=3601, scale=1)
    assert set(model.calls) == {(60, 60)} and len(model.calls) == 4
    model = Nearest(1)
    panet.forward_chop(model, torch.rand(1, 1, 100, 100), min_size=3600, scale=1)
    assert set(model.calls) == {(40, 40)} and len(model.calls) == 16
    # SR x3: h_size = 25 + 10 = 35, plus 35 % 3 = 2 -> 37 (not a multiple of 3)
    model = Nearest(3)
    panet.forward_chop(model, torch.rand(1, 3, 50, 50), min_size=6400)
    assert set(model.calls) == {(37, 37)}


def test_too_small_inputs_give_a_clear_error():
    with pytest.raises(ValueError, match="too small for forward_chop"):
        panet.forward_chop(Identity(), torch.rand(1, 3, 15, 40))
    with pytest.raises(ValueError, match="cannot shrink"):
        panet.forward_chop(Identity(), torch.rand(1, 3, 20, 20), min_size=100)
    with pytest.raises(ValueError, match="expects"):
        panet.forward_chop(Identity(), torch.rand(3, 20, 20))


def test_forward_tiled_is_seamless_for_local_models():
    x = torch.rand(2, 3, 70, 93)
    assert torch.allclose(panet.forward_tiled(Identity(), x, tile=32, overlap=8), x, atol=1e-6)
    out = panet.forward_tiled(Nearest(2), x, tile=40, overlap=10)
    assert torch.allclose(out, F.interpolate(x, scale_factor=2, mode="nearest"), atol=1e-6)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        full, tiled = conv(x), panet.forward_tiled(conv, x, tile=32, overlap=12, scale=1)
    # receptive radius 1 px <= overlap / 4: the blend is exact
    assert torch.allclose(full, tiled, atol=1e-5)
    with pytest.raises(ValueError, match="overlap"):
        panet.forward_tiled(Identity(), x, tile=16, overlap=16)


def test_forward_tiled_reports_each_tile():
    calls = []
    x = torch.rand(1, 3, 70, 93)
    panet.forward_tiled(Identity(), x, tile=32, overlap=8, progress=lambda done, total: calls.append((done, total)))
    # starts every 24 px plus one flush with the far edge: 3 x 4 tiles
    assert calls == [(i, 12) for i in range(1, 13)]
    calls.clear()
    panet.forward_tiled(Identity(), x[:, :, :20, :20], tile=32, overlap=8, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]


def test_forward_tiled_batches_tiles_without_changing_the_result():
    torch.manual_seed(0)
    net = panet.create_model("panet-dn-s", blocks=2, features=8).eval()
    x = torch.rand(2, 3, 45, 58)
    calls, batch_sizes = [], []

    def model(t):
        batch_sizes.append(t.shape[0])
        return net(t)

    with torch.no_grad():
        one = panet.forward_tiled(net, x, tile=24, overlap=6)
        grouped = panet.forward_tiled(
            model, x, tile=24, overlap=6, tiles_per_batch=4, progress=lambda done, total: calls.append((done, total))
        )
    assert torch.allclose(one, grouped, atol=1e-5)
    # 3 x 3 tiles of 2 images: groups of 4, 4 and 1 tiles
    assert batch_sizes == [8, 8, 2]
    assert calls == [(i, 9) for i in range(1, 10)]
    with pytest.raises(ValueError, match="tiles_per_batch"):
        panet.forward_tiled(net, x, tile=24, overlap=6, tiles_per_batch=0)


def test_the_memory_budget_bounds_the_tile_batch():
    from panet.inference.tiling import MAX_TILES_PER_BATCH, auto_tiles_per_batch, tile_bytes

    torch.manual_seed(0)
    net = panet.create_model("panet-dn-s", blocks=2, features=8).eval()
    sizes = []
    net.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    x = torch.rand(1, 3, 60, 70)
    per_tile = tile_bytes(net, 24)
    assert auto_tiles_per_batch(net, 24, memory_budget=3 * per_tile + 1) == 3
    assert auto_tiles_per_batch(net, 24, memory_budget=1) == 1
    assert auto_tiles_per_batch(net, 24, memory_budget=10**12) == MAX_TILES_PER_BATCH
    with torch.no_grad():
        one = panet.forward_tiled(net, x, tile=24, overlap=6, tiles_per_batch=1)
        sizes.clear()
        budgeted = panet.forward_tiled(net, x, tile=24, overlap=6, memory_budget=3 * per_tile + 1)
    assert sizes == [3, 3, 3, 3]  # 3 x 4 tiles, at most 3 per call
    torch.testing.assert_close(budgeted, one, rtol=1e-5, atol=1e-5)


def test_reflect_padding_keeps_the_bayer_phase_and_crops_back():
    from panet.data.degrade import mosaic

    rgb = (torch.rand(31, 45, 3) * 255).to(torch.uint8).numpy()
    x = torch.from_numpy(mosaic(rgb)).permute(2, 0, 1)[None].float()
    seen = []

    def model(t):
        seen.append(t)
        return t.clone()

    assert torch.equal(panet.forward_reflect_padded(model, x, 4), x)
    # the padded mosaic is the GRBG mosaic of the reflected image: the network sees a valid mosaic
    padded_rgb = F.pad(torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), (4, 4, 4, 4), mode="reflect")
    expected = torch.from_numpy(mosaic(padded_rgb[0].permute(1, 2, 0).to(torch.uint8).numpy())).permute(2, 0, 1)[None]
    assert seen[0].shape[-2:] == (39, 53) and torch.equal(seen[0], expected.float())
    # SR-style outputs are cropped by pad * scale; tiny inputs shrink the padding by steps of 2
    assert torch.equal(panet.forward_reflect_padded(Nearest(2), x, 4), F.interpolate(x, scale_factor=2, mode="nearest"))
    tiny = torch.rand(1, 3, 2, 5)
    seen.clear()
    assert torch.equal(panet.forward_reflect_padded(model, tiny, 4), tiny) and seen[0].shape[-2:] == (2, 5)
    with pytest.raises(ValueError, match="pad"):
        panet.forward_reflect_padded(model, x, -1)


def test_demosaicing_runs_on_a_reflect_padded_mosaic():
    from panet.inference.restore import run_network

    shapes = []

    def model(t):
        shapes.append(tuple(t.shape[-2:]))
        return t.clone()

    x = torch.rand(1, 3, 21, 33)
    for tiling in ("none", "tile", "legacy"):
        shapes.clear()
        assert torch.equal(run_network(model, x, task="demosaic", tiling=tiling, tile=64), x)
        assert shapes == [(29, 41)], tiling
        shapes.clear()
        run_network(model, x, task="denoise", tiling=tiling, tile=64)
        assert shapes == [(21, 33)], tiling
