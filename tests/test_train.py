from __future__ import annotations

import numpy as np
import pytest
import torch

from panet.images import write_image
from panet.train import load_config, train


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "gt"
    for i in range(3):
        write_image(folder / f"{i}.png", rng.integers(0, 256, (40, 36, 3), dtype=np.uint8))
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"""
task: denoise
model: panet-dn-s
model_overrides: {{blocks: 2, features: 8}}
data: {{train: ["{folder}"], val: ["{folder}"], level: [10, 30], patch_size: 12, val_images: 1}}
iterations: 6
batch_size: 2
val_every: 3
checkpoint_every: 2
log_every: 1
out_dir: "{tmp_path / 'run'}"
"""
    )
    return config


def test_resume_reaches_the_same_losses_and_weights(tiny, tmp_path):
    full = train(load_config(tiny, [f"out_dir={tmp_path / 'full'}"]), quiet=True)
    part = load_config(tiny, [f"out_dir={tmp_path / 'split'}"])
    first = train(part, max_steps=4, quiet=True)
    second = train(part, resume=True, quiet=True)
    assert first["step"] == 4 and second["step"] == 6
    assert first["losses"] + second["losses"] == full["losses"]
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    log = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,val_psnr,seconds" and len(log) == 7
    assert any(line.split(",")[3] for line in log[1:])  # validation PSNR recorded


def test_config_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown config key: data.patchsize"):
        load_config(tiny, ["data.patchsize=3"])
    with pytest.raises(ValueError, match="unknown config key: nope"):
        load_config(tiny, ["nope=1"])
    with pytest.raises(ValueError, match="is a sr preset"):
        load_config(tiny, ["model=pa-edsr-s-x2"])
    with pytest.raises(ValueError, match="precision"):
        load_config(tiny, ["precision=fp8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
    cfg = load_config(tiny)
    train(cfg, max_steps=1, quiet=True)
    with pytest.raises(ValueError, match="--resume"):
        train(cfg, quiet=True)


def test_bf16_autocast_step_runs(tiny, tmp_path):
    result = train(load_config(tiny, [f"out_dir={tmp_path / 'bf16'}", "precision=bf16", "iterations=2"]), quiet=True)
    assert len(result["losses"]) == 2 and all(np.isfinite(result["losses"]))
