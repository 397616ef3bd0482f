from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import panet
from panet.apps.cli import main
from panet.data.images import read_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "kodim23_crop.png"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "panet.apps.cli", *args], capture_output=True, text=True)


def test_models_lists_presets(capsys):
    assert main(["models", "--task", "sr"]) == 0
    out = capsys.readouterr().out
    assert "pa-edsr-x4" in out and "panet-dn" not in out


def test_convert_release_checkpoint(tmp_path):
    source = panet.create_model(
        "pa-edsr-s-x2", features=16, blocks=2, attention_reduction=8, attention_res_scale=0.1
    ).eval()
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


@pytest.fixture
def small_example(tmp_path):
    from panet.data.images import write_image

    path = tmp_path / "small.png"
    write_image(path, read_image(EXAMPLE)[:48, :40])
    return path


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A fake set of shipped weights: a tiny blind gray denoiser and a tiny x2 SR model."""
    import json

    import panet.zoo.pretrained as pretrained
    from panet.zoo.weights import save_weights

    folder = tmp_path / "pretrained"
    for name, preset, task, level in [
        ("dn-gray", "panet-dn-gray-s", "denoise", [0, 50]),
        ("sr-x2", "pa-edsr-s-x2", "sr", 2),
    ]:
        torch.manual_seed(0)
        model = panet.create_model(preset, blocks=2, features=8, attention_reduction=2)
        save_weights(model, folder / f"{name}.safetensors", metadata={"task": task, "level": json.dumps(level)})
        (folder / f"{name}.json").write_text(json.dumps({"name": name, "preset": preset, "task": task, "level": level}))
    monkeypatch.setattr(pretrained, "SHIPPED", folder)
    return folder


def test_restore_picks_shipped_weights_for_task_and_level(shipped, small_example, tmp_path, capsys):
    EXAMPLE = small_example
    out = tmp_path / "out.png"
    assert main(["restore", str(EXAMPLE), "-o", str(out), "--task", "denoise", "--sigma", "25"]) == 0
    assert "using shipped weights dn-gray" in capsys.readouterr().err
    assert read_image(out).shape[2] == 3  # a gray model restores a colour image channel by channel
    assert main(["restore", str(EXAMPLE), "-o", str(out), "--task", "denoise"]) == 2
    assert "exists (use --overwrite)" in capsys.readouterr().err
    assert main(["restore", str(EXAMPLE), "-o", str(out), "--task", "denoise", "--overwrite"]) == 0
    assert main(["restore", str(EXAMPLE), "-o", str(out), "--task", "denoise", "--sigma", "70", "--overwrite"]) == 2
    assert "cover level 70" in capsys.readouterr().err
    assert main(["restore", str(EXAMPLE), "-o", str(out), "--task", "car", "--quality", "10"]) == 2
    assert "no trained weights ship for task 'car'" in capsys.readouterr().err
    assert main(["restore", str(EXAMPLE), "-o", str(out), "--task", "sr", "--overwrite"]) == 2
    assert "needs --scale" in capsys.readouterr().err


def test_restore_folder_and_weights_checks(shipped, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    image = read_image(EXAMPLE)[:24, :30]
    from panet.data.images import write_image

    for name in ("a", "b"):
        write_image(src / f"{name}.png", image)
    (src / "c.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert main(["restore", str(src), "-o", str(out), "--weights", "sr-x2"]) == 2  # c.png fails, the rest is written
    err = capsys.readouterr().err
    assert "c.png" in err and "1 of 3 images failed" in err
    assert read_image(out / "a.png").shape == (48, 60, 3) and (out / "b.png").exists() and not (out / "c.png").exists()
    assert (
        main(["restore", str(src / "a.png"), "-o", str(tmp_path / "x.png"), "--weights", "sr-x2", "--task", "denoise"])
        == 2
    )
    assert "are sr weights, not denoise" in capsys.readouterr().err
    assert (
        main(["restore", str(src / "a.png"), "-o", str(tmp_path / "x.png"), "--weights", "sr-x2", "--scale", "4"]) == 2
    )
    assert "x2, not x4" in capsys.readouterr().err
    file = shipped / "sr-x2.safetensors"
    assert main(["restore", str(src / "a.png"), "-o", str(tmp_path / "y.png"), "--weights", str(file)]) == 0
    assert main(["restore", str(src / "a.png"), "-o", str(tmp_path / "z.png"), "--weights", "nope"]) == 2
    assert "unknown weights 'nope'" in capsys.readouterr().err


def test_load_model_by_name_and_file(shipped):
    from panet.zoo.pretrained import find_weights, list_weights, load_model

    assert [w.name for w in list_weights()] == ["dn-gray", "sr-x2"]
    assert find_weights("denoise", 50).name == "dn-gray" and find_weights("sr", 2).level_text == "x2"
    model = load_model("sr-x2")
    assert model.scale == 2
    assert load_model(shipped / "dn-gray.safetensors").colors == 1


def test_per_level_weights_win_over_blind_ones_at_their_level(shipped):
    import json

    from panet.zoo.pretrained import find_weights
    from panet.zoo.weights import save_weights

    for name, preset, level in [("dn-gray-sigma25", "panet-dn-gray-s", 25), ("dn-colour", "panet-dn-s", [0, 75])]:
        model = panet.create_model(preset, blocks=2, features=8, attention_reduction=2)
        save_weights(model, shipped / f"{name}.safetensors", metadata={"task": "denoise", "level": json.dumps(level)})
        (shipped / f"{name}.json").write_text(
            json.dumps({"name": name, "preset": preset, "task": "denoise", "level": level})
        )
    assert find_weights("denoise", 25, colors=1).name == "dn-gray-sigma25"
    assert find_weights("denoise", 24, colors=1).name == "dn-gray"  # off its level: the blind model
    assert find_weights("denoise", None, colors=1).name == "dn-gray"  # no level: the widest range, the blind one
    assert find_weights("denoise", 25, colors=3).name == "dn-colour"  # the channels matter more than the range
    assert find_weights("denoise", 60, colors=1).name == "dn-colour"  # only the colour model covers 60


def rgba_and_gray16(folder: Path, seed: int) -> tuple[Path, Path]:
    """A random 24x20 RGBA PNG and a 16-bit gray PNG in ``folder``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rgba, gray16 = folder / "rgba.png", folder / "gray16.png"
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), "RGBA").save(rgba)
    Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16)).save(gray16)
    return rgba, gray16


def test_restore_keeps_alpha_16_bit_and_gray(shipped, tmp_path, capsys):
    from PIL import Image

    rgba, gray16 = rgba_and_gray16(tmp_path, seed=1)
    out = tmp_path / "out"
    assert main(["restore", str(rgba), str(gray16), "-o", str(out), "--weights", "sr-x2", "--ensemble"]) == 0
    with Image.open(out / "rgba.png") as image:
        assert image.mode == "RGBA" and image.size == (48, 40)
    with Image.open(out / "gray16.png") as image:
        assert image.mode.startswith("I") and np.asarray(image).max() > 255  # still 16-bit
    assert main(["restore", str(tmp_path / "*.png"), "-o", str(tmp_path / "globbed"), "--weights", "dn-gray"]) == 0
    assert sorted(p.name for p in (tmp_path / "globbed").iterdir()) == ["gray16.png", "rgba.png"]
    assert (
        main(["restore", str(rgba), "-o", str(tmp_path / "x.png"), "--weights", "dn-gray", "--precision", "fp16"]) == 2
    )
    assert "needs CUDA" in capsys.readouterr().err


def test_restore_writes_the_format_of_the_suffix(shipped, tmp_path, capsys):
    """.tif is a TIFF (not a PNG under another name), JPEG keeps quality, an unknown suffix fails before any work."""
    from PIL import Image

    rgba, gray16 = rgba_and_gray16(tmp_path, seed=3)
    formats = {"a.tif": ("TIFF", "RGBA"), "a.webp": ("WEBP", "RGBA"), "a.bmp": ("BMP", "RGB"), "a.jpg": ("JPEG", "RGB")}
    for name, (fmt, mode) in formats.items():
        assert main(["restore", str(rgba), "-o", str(tmp_path / name), "--weights", "sr-x2"]) == 0
        with Image.open(tmp_path / name) as image:
            assert (image.format, image.mode, image.size) == (fmt, mode, (48, 40))
    err = capsys.readouterr().err
    assert "JPEG has no alpha channel" in err and "BMP has no alpha channel" in err
    with Image.open(tmp_path / "a.webp") as webp, Image.open(tmp_path / "a.tif") as tif:
        assert np.array_equal(np.asarray(webp), np.asarray(tif))  # lossless WebP
    assert main(["restore", str(gray16), "-o", str(tmp_path / "g.tif"), "--weights", "dn-gray"]) == 0
    with Image.open(tmp_path / "g.tif") as image:
        assert image.mode.startswith("I;16") and np.asarray(image).max() > 255
    assert main(["restore", str(gray16), "-o", str(tmp_path / "g.jpg"), "--weights", "dn-gray"]) == 0
    assert "written at 8 bit" in capsys.readouterr().err
    result = run_cli("restore", str(rgba), "-o", str(tmp_path / "a.xyz"), "--model", "pa-edsr-s-x2", "--random-init")
    assert result.returncode == 2 and "unknown output format '.xyz'" in result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("note: ")]  # the random-init note
    assert "Traceback" not in result.stderr and len(errors) == 1
    assert not (tmp_path / "a.xyz").exists()


def test_restore_api_round_trips_types(shipped):
    from PIL import Image

    net = panet.create_model("panet-dn-s", blocks=2, features=8, attention_reduction=2)
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (20, 22, 3), dtype=np.uint8)
    assert panet.restore(a, model=net, task="denoise").dtype == np.uint8
    assert panet.restore(a[:, :, 0], model=net, task="denoise").shape == (20, 22)
    assert panet.restore(Image.fromarray(a), model=net, task="denoise").size == (22, 20)
    t = torch.rand(1, 3, 20, 22)
    assert panet.restore(t, model=net, task="denoise").shape == t.shape
    assert panet.restore(a, weights="sr-x2").shape == (40, 44, 3)
    with pytest.raises(ValueError, match="needs scale"):
        panet.restore(a, task="sr")
    with pytest.raises(ValueError, match="Bayer phase"):
        panet.restore(a, model=net, task="demosaic", ensemble=True)


def test_ensemble_of_an_equivariant_model_is_the_model():
    from panet.inference.tiling import forward_ensemble

    x = torch.rand(1, 3, 10, 12)
    torch.testing.assert_close(forward_ensemble(lambda t: t * 2, x), x * 2)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    y = forward_ensemble(conv, x)  # a non-symmetric kernel: the ensemble differs from one pass
    assert y.shape == x.shape and not torch.allclose(y, conv(x))


def test_models_lists_shipped_weights(shipped, capsys):
    import json

    assert main(["models", "--task", "sr"]) == 0
    out = capsys.readouterr().out
    assert "shipped weights" in out and "sr-x2" in out and "dn-gray" not in out
    card = json.loads((shipped / "dn-gray.json").read_text())
    card["eval"] = [{"set": "BSD68", "level": 25, "psnr": 29.5}, {"set": "BSD68", "level": 50, "psnr": 26.25}]
    (shipped / "dn-gray.json").write_text(json.dumps(card))
    assert main(["models", "--task", "denoise"]) == 0
    assert "BSD68 σ25 29.50, BSD68 σ50 26.25" in capsys.readouterr().out  # a blind model's rows name their level


def test_auto_tile_and_memory_estimate():
    import json

    from panet.inference.restore import DEFAULT_TILING, auto_tiling, resolve_tiling
    from panet.inference.tiling import tile_bytes
    from panet.zoo.pretrained import SHIPPED, load_model

    net = panet.create_model("panet-dn-s")
    assert auto_tiling(net, "cpu") == DEFAULT_TILING  # weights panet did not ship: no measurement to go by
    measured = json.loads((SHIPPED / "tiling.json").read_text())["weights"]
    for name, choice in measured.items():  # shipped weights: what scripts/tiling.py measured for them
        assert auto_tiling(load_model(name), "cpu") == (choice["tile"], choice["overlap"])
    assert resolve_tiling(net, "cpu", 48) == (48, 12) and resolve_tiling(net, "cpu", 48, 4) == (48, 4)
    small, large = tile_bytes(net, 64), tile_bytes(net, 128)
    assert 3 < large / small < 5  # unfolded keys and values grow with the tile's area
    assert tile_bytes(panet.create_model("pa-edsr-x2"), 128) > 3 * large  # 256 features vs 64


def test_auto_precision_keeps_a_model_in_fp32_where_bf16_cost_it_psnr(monkeypatch):
    import panet.hardware as hardware
    import panet.zoo.pretrained as pretrained
    from panet.inference.restore import auto_precision

    net = panet.create_model("panet-dn-s", blocks=2, features=8)
    net.shipped_name = "some-model"
    monkeypatch.setattr(
        hardware, "resolve_precision", lambda precision, device: "bf16" if precision == "auto" else precision
    )
    monkeypatch.setattr(pretrained, "_measured", lambda name: {"tile": 32, "overlap": 8, "bf16": False})
    assert auto_precision(net, "auto") == "fp32"  # measured: bf16 costs this model more than 0.02 dB
    assert auto_precision(net, "bf16") == "bf16"  # asked for explicitly
    monkeypatch.setattr(pretrained, "_measured", lambda name: {"tile": 32, "overlap": 8, "bf16": True})
    assert auto_precision(net, "auto") == "bf16"
    monkeypatch.setattr(pretrained, "_measured", lambda name: None)
    assert auto_precision(net, "auto") == "bf16"  # nothing measured: the machine decides


def test_bundled_noisy_example_is_reproducible():
    """examples/README.md says how the noisy example was made; the file must be exactly that."""
    from panet.data.degrade import gaussian_noise, seed_for

    clean = read_image(EXAMPLE)
    bundled = read_image(ROOT / "examples" / "kodim23_crop_noisy30.png")
    assert np.array_equal(bundled, gaussian_noise(clean, 30, seed=seed_for("kodim23_crop")))


def test_default_weights_follow_the_image_colours(shipped, tmp_path, capsys, monkeypatch):
    """With a gray and a colour denoiser shipped, a colour photo goes to the colour one (not to the gray one channel
    by channel, although 'dn-gray' sorts first), a gray photo to the gray one; per image within one batch."""
    import json

    from panet.data.images import write_image
    from panet.zoo.weights import save_weights

    torch.manual_seed(0)
    save_weights(
        panet.create_model("panet-dn-s", blocks=2, features=8, attention_reduction=2),
        shipped / "dn-rgb.safetensors",
        metadata={"task": "denoise", "level": "[0, 50]"},
    )
    (shipped / "dn-rgb.json").write_text(
        json.dumps({"name": "dn-rgb", "preset": "panet-dn-s", "task": "denoise", "level": [0, 50]})
    )
    colour = read_image(EXAMPLE)[:20, :24]
    write_image(tmp_path / "colour.png", colour)
    write_image(tmp_path / "gray.png", colour[:, :, :1])
    from panet.zoo import weights as weights_module

    loaded: list[str] = []
    real_load = weights_module.load_weights

    def counting_load(path, **kwargs):
        loaded.append(Path(path).stem)
        return real_load(path, **kwargs)

    monkeypatch.setattr(weights_module, "load_weights", counting_load)
    write_image(tmp_path / "colour2.png", colour[::-1])
    assert (
        main(
            [
                "restore",
                *(str(tmp_path / f) for f in ("colour.png", "gray.png", "colour2.png")),
                "-o",
                str(tmp_path / "out"),
                "--task",
                "denoise",
            ]
        )
        == 0
    )
    assert sorted(loaded) == ["dn-gray", "dn-rgb"]  # each file loaded once, however many images use it
    err = capsys.readouterr().err
    assert "using shipped weights dn-rgb" in err and "using shipped weights dn-gray" in err
    assert read_image(tmp_path / "out" / "colour.png").shape[2] == 3
    assert read_image(tmp_path / "out" / "gray.png").shape[2] == 1
    assert main(["restore", str(tmp_path / "colour.png"), "-o", str(tmp_path / "c.png"), "--task", "denoise"]) == 0
    err = capsys.readouterr().err
    assert "dn-rgb" in err and "dn-gray" not in err
    rgb = panet.restore(colour, task="denoise")
    assert np.array_equal(rgb, panet.restore(colour, weights="dn-rgb"))
    assert np.array_equal(
        panet.restore(colour[:, :, 0], task="denoise"), panet.restore(colour[:, :, 0], weights="dn-gray")
    )


def test_tile_bar_restarts_for_each_pass():
    from panet.apps.cli import _TileBar

    with _TileBar(show=True) as tiles:
        for _ in range(2):  # e.g. a colour image on a gray network: one pass per channel
            for done in range(1, 11):
                tiles.update(done, 10)
        assert (tiles.bar.n, tiles.bar.total) == (10, 10)


def test_version_and_train_data_root(tmp_path, capsys):
    import panet

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"panet {panet.__version__}"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{train: [T91], level: 25, patch_size: 8}}\niterations: 1\nout_dir: {tmp_path / 'run'}\n")
    # the named set is looked up under --data-root: an empty root names where it looked
    assert main(["train", str(recipe), "--data-root", str(tmp_path / "empty-root"), "--quiet"]) != 0
    assert str(tmp_path / "empty-root") in capsys.readouterr().err


def test_eval_scores_on_camera_noise_when_asked(tmp_path):
    """panet eval --noise camera degrades the ground truth with camera-like noise (a task without it refuses)."""
    import subprocess
    import sys

    from panet.data.images import write_image

    folder = tmp_path / "gt"
    write_image(folder / "a.png", np.random.default_rng(0).integers(0, 256, (24, 28, 3), dtype=np.uint8))
    base = [sys.executable, "-m", "panet", "eval", "--data", str(folder), "--baseline", "identity"]
    gaussian = subprocess.run([*base, "--task", "denoise", "--sigma", "20"], capture_output=True, text=True)
    camera = subprocess.run(
        [*base, "--task", "denoise", "--sigma", "20", "--noise", "camera"], capture_output=True, text=True
    )
    assert gaussian.returncode == 0 and camera.returncode == 0, camera.stderr
    assert gaussian.stdout != camera.stdout  # another degradation, another score
    car = subprocess.run(
        [*base, "--task", "car", "--quality", "20", "--noise", "camera"], capture_output=True, text=True
    )
    assert car.returncode == 2 and "has no noise model 'camera'" in car.stderr and "Traceback" not in car.stderr


def test_eval_measures_a_precision_when_asked(tmp_path):
    """panet eval --precision bf16 scores the network as restore runs it under bf16 autocast: close to fp32, not
    bit-identical (the default, fp32, does not depend on the machine); a precision it does not know is refused."""
    from panet.data.images import write_image
    from panet.zoo.weights import save_weights

    folder = tmp_path / "gt"
    write_image(folder / "a.png", np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8))
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_weights(panet.create_model("panet-dn-s", blocks=2, features=16), weights, metadata={"task": "denoise"})
    base = ["eval", "--weights", str(weights), "--data", str(folder), "--sigma", "30", "--tiling", "tile"]
    runs = {
        p: run_cli(
            *base, "--tile", "24", "--tile-overlap", "8", "--precision", p, "--json", str(tmp_path / f"{p}.json")
        )
        for p in ("fp32", "bf16")
    }
    assert all(r.returncode == 0 for r in runs.values()), runs["bf16"].stderr
    fp32, bf16 = (json.loads((tmp_path / f"{p}.json").read_text())["sets"]["gt"]["psnr"] for p in ("fp32", "bf16"))
    assert fp32 != bf16 and abs(fp32 - bf16) < 0.5
    bad = run_cli(*base, "--precision", "fp8")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="no /proc (VmHWM is Linux's)")
def test_peak_memory_is_the_process_own_and_not_inherited_from_its_parent():
    """panet.hardware.peak_rss_bytes, which the benchmarks report: it grows with what this process touches, and a
    child spawned by a big parent starts near its own size (getrusage's ru_maxrss would start at the parent's)."""
    import os
    import subprocess
    import sys

    from panet.hardware import peak_rss_bytes

    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    block = bytearray(64 * 2**20)  # zero-filled: touched, so resident
    assert peak_rss_bytes() >= resident + 60 * 2**20
    child = "from panet.hardware import peak_rss_bytes; print(peak_rss_bytes())"
    child_peak = int(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout)
    assert 0 < child_peak < peak_rss_bytes()
    del block
