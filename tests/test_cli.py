from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import panet
from panet.cli import main
from panet.images import read_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "kodim23_crop.png"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "panet.cli", *args], capture_output=True, text=True)


def test_models_lists_presets(capsys):
    assert main(["models", "--task", "sr"]) == 0
    out = capsys.readouterr().out
    assert "pa-edsr-x4" in out and "panet-dn" not in out


def test_convert_release_checkpoint(tmp_path):
    source = panet.create_model("pa-edsr-s-x2", features=16, blocks=2, attention_reduction=8).eval()
    release = tmp_path / "release.pt"
    torch.save(panet.to_official(source), release)
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(release), "-o", str(out)]) == 0
    loaded = panet.load_weights(out).eval()
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    assert main(["convert", str(release), "-o", str(out)]) == 2  # exists, no --overwrite


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "checkpoint not found"),
        (lambda p: p.write_bytes(b""), "cannot be read"),
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "cannot be read"),
        (lambda p: torch.save({"weight": torch.zeros(2)}, p), "not a state dict of the release"),
    ],
)
def test_convert_bad_input_is_one_line_and_exit_2(tmp_path, make, message):
    bad = tmp_path / "bad.pt"
    make(bad)
    result = run_cli("convert", str(bad), "-o", str(tmp_path / "out.safetensors"))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.safetensors").exists()


def test_restore_with_random_weights_writes_a_png(tmp_path):
    out = tmp_path / "restored.png"
    result = run_cli("restore", str(EXAMPLE), "-o", str(out), "--model", "panet-dn-s", "--random-init")
    assert result.returncode == 0, result.stderr
    assert "RANDOM weights" in result.stderr
    restored = read_image(out)
    assert restored.shape == read_image(EXAMPLE).shape and restored.dtype == np.uint8


def test_restore_refuses_untrained_without_flag_and_bad_files(tmp_path):
    result = run_cli("restore", str(EXAMPLE), "-o", str(tmp_path / "x.png"), "--model", "panet-dn-s")
    assert result.returncode == 2 and "--random-init" in result.stderr
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_cli("restore", str(broken), "-o", str(tmp_path / "y.png"), "--model", "panet-dn-s", "--random-init")
    assert result.returncode == 2 and "not a readable image" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "y.png").exists()
