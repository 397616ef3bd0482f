from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import pytest
import torch

import panet
from conftest import shared_path

KEY_LISTS = {
    "panet-dn": "panet_dn_rgb_and_demosaic_nrb80_nf64.txt",
    "panet-car": "panet_car_gray_nrb80_nf64.txt",
    "pa-edsr-x2": "paedsr_x2_nrb32_nf256.txt",
    "pa-edsr-x3": "paedsr_x3_nrb32_nf256.txt",
    "pa-edsr-x4": "paedsr_x4_nrb32_nf256.txt",
}


@pytest.mark.parametrize("name", sorted(KEY_LISTS))
def test_paper_presets_export_the_release_key_list_exactly(name):
    listing = shared_path("reference", "release_state_dict_keys", KEY_LISTS[name]).read_text().split("\n")
    expected = [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in listing if line.strip()]
    exported = panet.to_official(panet.create_model(name))
    assert [(k, str(tuple(v.shape))) for k, v in exported.items()] == expected


@pytest.mark.parametrize("name", ["panet-dn", "pa-edsr-x3"])
def test_paper_presets_round_trip_through_the_release_format(name):
    model = panet.create_model(name)
    back = panet.from_official(panet.to_official(model))
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def small_release_state():
    return panet.to_official(panet.PANet(colors=3, features=16, blocks=2, attention_reduction=2))


def test_strict_loading_names_missing_unknown_and_misshaped_keys():
    sd = small_release_state()
    broken = OrderedDict(sd)
    del broken["head.0.bias"]
    broken["body.9.extra"] = torch.zeros(1)
    broken["tail.0.weight"] = torch.zeros(3, 16, 5, 5)
    with pytest.raises(ValueError) as info:
        panet.from_official(broken)
    message = str(info.value)
    assert "missing keys: head.0.bias" in message
    assert "unknown keys: body.9.extra" in message
    assert "tail.0.weight (3, 16, 5, 5) (expected (3, 16, 3, 3))" in message


def test_shared_tensors_must_agree():
    sd = small_release_state()
    sd["body.0.body.1.weight"] = sd["body.0.body.1.weight"] + 1
    with pytest.raises(ValueError, match="shares"):
        panet.from_official(sd)
    sr = panet.to_official(panet.create_model("pa-edsr-s-x2", features=16, blocks=2, attention_res_scale=0.1))
    sr["msa.conv_match.0.bias"] = sr["msa.conv_match.0.bias"] + 1
    with pytest.raises(ValueError, match="msa.conv_match.0.bias differs|body.1.conv_match.0.bias differs"):
        panet.from_official(sr)


def test_release_kwargs_are_checked():
    sd = small_release_state()
    with pytest.raises(TypeError, match="unknown release arguments"):
        panet.from_official(sd, n_feats=64)
    with pytest.raises(ValueError, match="ksize=3"):
        panet.from_official(sd, ksize=5)
    with pytest.raises(ValueError, match="reduction=4"):
        panet.from_official(sd, reduction=4)
    assert panet.from_official(sd, level=3, softmax_scale=5, average=False).attention.hard


def test_export_refuses_what_the_release_cannot_express():
    with pytest.raises(ValueError, match="attention res_scale"):
        panet.to_official(panet.create_model("pa-edsr-s-x2", attention_res_scale=1.0))
    with pytest.raises(ValueError, match="no attention block"):
        panet.to_official(panet.create_model("panet-dn-s", attention_levels=0))
    with pytest.raises(ValueError, match="act='prelu'"):
        panet.to_official(panet.create_model("panet-dn-s", act="relu"))


def test_not_a_release_state_dict():
    with pytest.raises(ValueError, match="not a state dict of the release"):
        panet.from_official({"weight": torch.zeros(1)})


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_paths_load_weights_only_and_never_run_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "release.pt"
    torch.save(small_release_state(), good)
    assert isinstance(panet.from_official(good), panet.PANet)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"head.0.weight": _Payload()}, f)
    with pytest.raises(ValueError, match="weights-only"):
        panet.from_official(evil)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    with pytest.raises(FileNotFoundError):
        panet.from_official(tmp_path / "missing.pt")


def test_safetensors_round_trip_is_atomic_and_strict(tmp_path):
    model = panet.create_model("pa-edsr-s-x2").eval()
    path = tmp_path / "m.safetensors"
    panet.save_weights(model, path, metadata={"note": "test"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    loaded = panet.load_weights(path).eval()
    x = torch.rand(1, 3, 9, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable"):
        panet.load_weights(path)


def test_atomic_write_gives_the_mode_a_plain_open_would(tmp_path):
    """mkstemp's temporary file is private (0600); the written file must not be (restored images, weights)."""
    from panet.zoo.weights import atomic_write

    umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        atomic_write(fresh, lambda tmp: open(tmp, "w").write("a"))
        assert fresh.stat().st_mode & 0o777 == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o640)
        atomic_write(kept, lambda tmp: open(tmp, "w").write("new"))
        assert kept.read_text() == "new" and kept.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)
