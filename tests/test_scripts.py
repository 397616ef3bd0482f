"""Smoke tests of the scripts that turn shipped weights into documents (with fake, tiny shipped weights)."""
from __future__ import annotations

import json
import sys

import pytest
import torch

import panet
from conftest import ROOT, shared_path

sys.path.insert(0, str(ROOT / "scripts"))


@pytest.fixture
def fake_shipped(tmp_path, monkeypatch):
    import panet.pretrained as pretrained
    from panet.weights import save_weights

    for name, preset, task, level in [("tiny-x4", "pa-edsr-s-x4", "sr", 4), ("tiny-dn-gray", "panet-dn-gray-s", "denoise", [0, 30])]:
        torch.manual_seed(0)
        model = panet.create_model(preset, blocks=2, features=8, attention_reduction=2)
        save_weights(model, tmp_path / f"{name}.safetensors", metadata={"task": task, "level": json.dumps(level)})
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name, "preset": preset, "task": task, "level": level,
                                                           "iterations": 0, "seed": 0, "command": "test"}))
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path)
    return tmp_path


def test_results_plan_follows_task_colours_and_range(fake_shipped):
    import results
    from panet.pretrained import list_weights

    plans = {w.name: results.plan_for(w) for w in list_weights()}
    assert plans["tiny-x4"] == [("sr", 4, s) for s in ("Set5", "Set14", "B100")]
    # a gray blind denoiser trained for sigma 0..30: the gray sets, only the paper's levels inside its range
    assert plans["tiny-dn-gray"] == [("denoise", 15, "Set12"), ("denoise", 25, "Set12"), ("denoise", 15, "BSD68"),
                                     ("denoise", 25, "BSD68")]
    text = results.render()
    assert "## tiny-x4: sr (x4)" in text and "| Set5 x2 ≥ 37.0 dB | not evaluated | 37.00 |  |" in text


def test_gallery_writes_one_sheet_per_weights(fake_shipped, tmp_path, monkeypatch):
    import gallery

    data = shared_path("data")
    for f in fake_shipped.glob("tiny-dn-gray.*"):  # its classical column (BM3D) takes seconds
        f.unlink()
    out = tmp_path / "docs" / "gallery"
    monkeypatch.setattr(sys, "argv", ["gallery.py", "--data-root", str(data), "--output", str(out), "--crop", "48"])
    gallery.main()
    assert sorted(p.name for p in out.iterdir()) == ["tiny-x4.png"]
    assert "![tiny-x4](gallery/tiny-x4.png)" in (out.parent / "gallery.md").read_text()
