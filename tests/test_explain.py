from __future__ import annotations

import numpy as np
import pytest
import torch

import panet
from panet.apps.cli import main
from panet.inference.explain import attention_for_pixel
from panet.nn.attention import pyramid_sizes


def _block_input(net, image):
    captured = {}
    hook = net.attention.register_forward_pre_hook(lambda module, args: captured.setdefault("x", args[0]))
    with torch.no_grad():
        net.eval()(torch.from_numpy(image).permute(2, 0, 1)[None])
    hook.remove()
    return captured["x"]


def test_shares_are_the_kernels_attention_mass_per_level():
    """Independent check: the attention kernel, given one-hot "level" values, returns each level's share of the
    centre query's softmax mass; explain's shares (and its maps' sums) must equal it."""
    import torch.nn.functional as F

    from panet.nn.attention import _resize

    torch.manual_seed(0)
    net = panet.create_model("panet-dn-s", blocks=2, features=16)
    image = np.random.default_rng(0).random((30, 36, 3), dtype=np.float32)
    result = attention_for_pixel(net, image, y=10, x=20)
    assert [m.shape for m in result.maps] == pyramid_sizes(30, 36, 5)
    block, feats = net.attention, _block_input(net, image)
    sizes = pyramid_sizes(30, 36, block.levels)
    with torch.no_grad():
        queries = F.unfold(block.query(feats), 3, padding=1).transpose(1, 2)
        keys = torch.cat([F.unfold(block.key(_resize(feats, size)), 3, padding=1) for size in sizes], 2)
        keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(block.norm_eps)
        level_of_key = torch.cat([torch.full((h * w,), i) for i, (h, w) in enumerate(sizes)])
        one_hot = F.one_hot(level_of_key, len(sizes)).T[None].float()  # (1, levels, L)
        mass = panet.patch_attention(queries, keys, one_hot, softmax_scale=block.softmax_scale)[0, 10 * 36 + 20]
    assert result.shares == pytest.approx(mass.tolist(), abs=1e-5)
    assert [float(m.sum()) for m in result.maps] == pytest.approx(result.shares, abs=1e-5)
    assert abs(sum(result.shares) - 1) < 1e-5
    hard = attention_for_pixel(panet.create_model("panet-dn-s", blocks=2, features=16, hard=True), image, y=3, x=3)
    assert abs(sum(hard.shares) - 1) < 1e-5 and sum(int((m > 0).sum()) for m in hard.maps) >= 1


def test_a_pixel_attends_most_to_its_own_patch_when_keys_equal_queries():
    """With identical query and key embeddings and a sharp softmax, the best match of a patch is itself."""
    torch.manual_seed(0)
    net = panet.create_model("panet-dn-s", blocks=2, features=16, softmax_scale=1000.0)
    block = net.attention
    block.key.load_state_dict(block.query.state_dict())
    image = np.random.default_rng(1).random((24, 24, 3), dtype=np.float32)
    result = attention_for_pixel(net, image, y=12, x=9)
    level0 = result.maps[0]
    assert np.unravel_index(level0.argmax(), level0.shape) == (12, 9)


def test_errors_and_command(tmp_path, capsys):
    net = panet.create_model("panet-dn-s", blocks=2, features=16, attention_levels=0)
    with pytest.raises(ValueError, match="no attention block"):
        attention_for_pixel(net, np.zeros((8, 8, 3), np.float32), y=1, x=1)
    with pytest.raises(ValueError, match="outside"):
        attention_for_pixel(panet.create_model("panet-dn-s", blocks=2), np.zeros((8, 8, 3), np.float32), y=9, x=1)
    from panet.data.images import write_image

    write_image(tmp_path / "in.png", np.random.default_rng(2).integers(0, 256, (32, 40, 3), dtype=np.uint8))
    out = tmp_path / "map.png"
    args = [
        "explain",
        str(tmp_path / "in.png"),
        "--at",
        "20,10",
        "-o",
        str(out),
        "--model",
        "panet-dn-s",
        "--random-init",
    ]
    assert main(args) == 0
    assert "scale 0.6" in capsys.readouterr().out and out.exists()
    assert main(args[:3] + ["nope"] + args[4:]) == 2
    assert "--at expects X,Y" in capsys.readouterr().err
