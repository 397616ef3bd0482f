from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import panet
from panet.apps.cli import main
from panet.inference.export import ExportablePANet, export_model

CASES = [("panet-dn-s", {}), ("panet-car-s", {"hard": True}), ("pa-edsr-s-x3", {})]


@pytest.mark.parametrize("name,extra", CASES)
def test_plain_form_equals_the_network(name, extra):
    torch.manual_seed(0)
    model = panet.create_model(name, blocks=2, features=16, **extra).eval()
    plain = ExportablePANet(model).eval()
    for size in ((24, 30), (17, 21)):
        x = torch.rand(1, model.colors, *size)
        with torch.no_grad():
            torch.testing.assert_close(plain(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,extra", CASES[::2])
def test_torchscript_export_has_dynamic_size(name, extra, tmp_path):
    model = panet.create_model(name, blocks=2, features=16, **extra).eval()
    export_model(model, tmp_path / "m.pt", format="torchscript")
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    for size in ((24, 30), (33, 19)):
        x = torch.rand(1, model.colors, *size)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)


def test_onnx_export_runs_in_onnxruntime_at_any_size(tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra")
    ort = pytest.importorskip("onnxruntime", reason="parity check needs onnxruntime")
    model = panet.create_model("pa-edsr-s-x2", blocks=2, features=16).eval()
    export_model(model, tmp_path / "m.onnx", format="onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    for size in ((24, 30), (29, 17)):
        x = torch.rand(1, 3, *size)
        (y,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(y, model(x).numpy(), rtol=1e-4, atol=1e-5)
    meta = session.get_modelmeta().custom_metadata_map  # the input contract travels with the file
    assert "in [0, 1]" in meta["panet.contract"] and meta["panet.scale"] == "2" and meta["panet.colors"] == "3"


def test_export_command(tmp_path, capsys):
    out = tmp_path / "dn.pt"
    assert (
        main(["export", "--model", "panet-dn-gray-s", "--random-init", "--format", "torchscript", "-o", str(out)]) == 0
    )
    assert torch.jit.load(str(out))(torch.rand(1, 1, 20, 20)).shape == (1, 1, 20, 20)
    extra = {"panet.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["panet.json"])
    assert "float32 NCHW" in meta["panet.contract"] and "[0, 1]" in meta["panet.contract"]
    assert json.loads(meta["panet.config"])["colors"] == 1
    assert "in [0, 1]" in capsys.readouterr().out
    assert (
        main(["export", "--model", "panet-dn-gray-s", "--random-init", "--format", "torchscript", "-o", str(out)]) == 2
    )
    assert "exists" in capsys.readouterr().err
    assert (
        main(["export", "--weights", str(tmp_path / "none.safetensors"), "--format", "onnx", "-o", str(tmp_path / "x")])
        == 2
    )
    assert "not found" in capsys.readouterr().err
