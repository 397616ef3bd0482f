"""Bad input, crafted files and failing disks: nothing is lost, nothing hangs, every problem is one line.

Each crafted input is made here, small and fast (docs/security.md lists what these tests promise). The web
server's part (origins, load, timeouts) is in test_serve.py.
"""

from __future__ import annotations

import errno
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import panet
from panet.apps.cli import main
from panet.data.images import read_image_float, write_image, write_image_float

RANDOM = ["--model", "panet-dn-s", "--random-init"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def png_header(width: int, height: int) -> bytes:
    """A valid PNG of a few dozen bytes that declares ``width`` x ``height`` pixels (its data is not there)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def small_png(path: Path, seed: int = 0, size=(12, 14)) -> Path:
    write_image(path, np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))
    return path


# --- 1. no input is ever overwritten ---------------------------------------------------------------------------


def test_a_folder_restored_into_itself_never_overwrites_an_input(tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    small_png(folder / "a.png", 0)
    write_image(folder / "a.jpg", np.full((12, 14, 3), 90, np.uint8))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["restore", str(folder), "-o", str(folder), "--overwrite", *RANDOM]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "a.jpg" in line and "a.png" in line  # the two inputs that map to one output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    (folder / "a.jpg").rename(folder / "b.jpg")  # no collision now, but b.jpg -> d/b.png is new and a.png -> a.png
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["restore", str(folder), "-o", str(folder), "--overwrite", *RANDOM]) == 2
    assert "is an input" in one_error_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # checked before any work: no b.png either

    single = folder / "a.png"
    assert main(["restore", str(single), "-o", str(single), "--overwrite", *RANDOM]) == 2
    assert "is an input" in one_error_line(capsys.readouterr().err)


def test_a_hard_link_or_symlink_to_an_input_is_the_input(tmp_path, capsys):
    import os

    image = small_png(tmp_path / "p.png")
    before = image.read_bytes()
    os.link(image, tmp_path / "hard.png")
    os.symlink(image, tmp_path / "soft.png")
    for other in ("hard.png", "soft.png"):
        assert main(["restore", str(image), "-o", str(tmp_path / other), "--overwrite", *RANDOM]) == 2
        assert "is an input" in one_error_line(capsys.readouterr().err)
    assert image.read_bytes() == before


def test_two_inputs_with_one_output_name_are_an_error_before_any_work(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    small_png(folder / "x.png")
    write_image(folder / "x.bmp", np.zeros((12, 14, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["restore", str(folder), "-o", str(out), *RANDOM]) == 2
    assert "x.bmp" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_other_commands_refuse_to_write_over_their_input(tmp_path, capsys):
    release = tmp_path / "release.pt"
    torch.save(panet.to_official(panet.create_model("panet-dn-s", blocks=2, features=8)), release)
    before = release.read_bytes()
    assert main(["convert", str(release), "-o", str(release), "--overwrite"]) == 2
    assert "is an input" in one_error_line(capsys.readouterr().err) and release.read_bytes() == before
    image = small_png(tmp_path / "p.png", size=(16, 16))
    before = image.read_bytes()
    assert main(["explain", str(image), "--at", "3,3", "-o", str(image), "--overwrite", *RANDOM]) == 2
    assert "is an input" in one_error_line(capsys.readouterr().err) and image.read_bytes() == before


# --- 2. decompression bombs --------------------------------------------------------------------------------------


def test_bombs_fail_per_file_from_their_header_and_the_batch_goes_on(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    small_png(folder / "good.png")
    (folder / "huge.png").write_bytes(png_header(100_000, 100_000))  # 10^10 pixels in ~70 bytes
    (folder / "big.png").write_bytes(png_header(10_000, 10_000))  # 100 MP: over the default limit of 64 MP
    start = time.perf_counter()
    assert main(["restore", str(folder), "-o", str(tmp_path / "out"), *RANDOM]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - start < 60
    assert "2 of 3 images failed" in err and err.count("pixels") >= 2 and "Traceback" not in err
    assert (tmp_path / "out" / "good.png").exists()
    assert not (tmp_path / "out" / "huge.png").exists() and not (tmp_path / "out" / "big.png").exists()


def test_max_pixels_bounds_inputs_and_outputs(tmp_path, capsys):
    image = small_png(tmp_path / "p.png", size=(10, 10))
    assert main(["restore", str(image), "-o", str(tmp_path / "o.png"), *RANDOM, "--max-pixels", "99"]) == 2
    assert "over the limit" in one_error_line(capsys.readouterr().err)
    sr = ["--model", "pa-edsr-s-x2", "--random-init", "--task", "sr", "--scale", "2"]
    assert main(["restore", str(image), "-o", str(tmp_path / "s.png"), *sr, "--max-pixels", "300"]) == 2  # 20x20 out
    assert "x2 output" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "s.png").exists()


def test_open_image_checks_the_declared_size_before_decoding():
    from panet.data.images import open_image

    start = time.perf_counter()
    for data in (png_header(100_000, 100_000), png_header(10_000, 10_000)):
        with pytest.raises(ValueError, match="pixels"):
            open_image(data)
    assert time.perf_counter() - start < 2  # nothing was decoded
    with pytest.raises(ValueError, match="20x20 is 400 pixels, over the limit of 100"):
        open_image(png_header(20, 20), max_pixels=100)


# --- 3. every image kind round-trips or is refused ---------------------------------------------------------------


def test_float_tiffs_round_trip_and_bad_ones_are_refused(tmp_path):
    values = np.linspace(0.2, 0.8, 6 * 7, dtype=np.float32).reshape(6, 7)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    array, info = read_image_float(tmp_path / "f.tif")
    assert info["bits"] == "float" and np.allclose(array[:, :, 0], values)  # not clipped to 0 / 1
    write_image_float(tmp_path / "g.tif", array, info)
    back = Image.open(tmp_path / "g.tif")
    assert back.mode == "F" and np.allclose(np.asarray(back), values)
    notes = write_image_float(tmp_path / "g.png", array, info)
    assert Image.open(tmp_path / "g.png").mode == "I;16" and "16-bit" in notes[0]
    Image.fromarray(values * 255, mode="F").save(tmp_path / "bright.tif")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        read_image_float(tmp_path / "bright.tif")
    values[2, 3] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="NaN"):
        read_image_float(tmp_path / "nan.tif")


def test_animated_images_are_refused_not_cut_to_one_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), (80 * i, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match="animated or multi-page image \\(3 frames\\)"):
        read_image_float(tmp_path / "anim.gif")


def test_palette_transparency_and_16_bit_gray_survive_a_restore(tmp_path):
    palette = Image.new("P", (14, 12))
    palette.putpalette([0, 0, 0, 200, 50, 50] + [0] * 762)
    palette.save(tmp_path / "p.png", transparency=0)
    array, _info = read_image_float(tmp_path / "p.png")
    assert array.shape[2] == 4 and array[..., 3].max() == 0  # alpha kept
    gray16 = Image.fromarray(np.full((12, 14), 3000, np.uint16))
    out = panet.restore(gray16, model=_identity(1), task="denoise")
    assert out.mode == "I;16" and abs(int(np.asarray(out)[0, 0]) - 3000) <= 1


class _Identity(torch.nn.Module):
    scale = 1

    def __init__(self, colors: int):
        super().__init__()
        self.colors = colors

    def forward(self, x):
        return x


def _identity(colors: int) -> torch.nn.Module:
    return _Identity(colors)


def test_the_api_refuses_what_it_would_silently_clip(tmp_path):
    net = _identity(3)
    cases = [
        (np.full((6, 6, 3), np.nan, np.float32), "NaN"),
        (np.full((6, 6, 3), 200.0), "divide by 255"),
        (np.full((6, 6, 3), -0.5), r"\[0, 1\]"),
        (np.zeros((0, 0, 3), np.uint8), "empty image"),
        (np.zeros((0, 5), np.float32), "empty image"),
        (torch.full((3, 4, 4), 7.0), "divide by 255"),
    ]
    for image, message in cases:
        with pytest.raises(ValueError, match=message):
            panet.restore(image, model=net, task="denoise")
    exact = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    assert np.array_equal(panet.restore(exact, model=net, task="denoise"), exact)
    slightly = exact.copy()
    slightly[0, 0, 0] = 1.002  # rounding overshoot within one 8-bit step is clipped
    assert panet.restore(slightly, model=net, task="denoise")[0, 0, 0] == 1.0


def test_one_pixel_high_images_restore():
    net = panet.create_model("panet-dn-s", blocks=2, features=8).eval()
    for shape in [(1, 300, 3), (300, 1, 3), (1, 1, 3), (2, 2, 3)]:
        assert panet.restore(np.zeros(shape, np.uint8), model=net, task="denoise").shape == shape
    sr = panet.create_model("pa-edsr-s-x2", blocks=2, features=8).eval()
    assert panet.restore(np.zeros((1, 5, 3), np.uint8), model=sr, task="sr").shape == (2, 10, 3)


def test_bad_task_and_device_are_value_errors():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown task 'foo'"):
        panet.restore(image, task="foo")
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        panet.restore(image, model=_identity(3), task="denoise", device="bogus")


def test_raw_bayer_mosaics_are_demosaiced_in_any_pattern():
    from panet.data.degrade import mosaic
    from panet.data.images import read_image
    from panet.evaluation.metrics import psnr

    truth = read_image(Path(__file__).resolve().parents[1] / "examples" / "kodim23_crop.png")[:40, :44]
    run = dict(task="demosaic", tile=32, overlap=8)
    scores = {}
    for pattern in ("GRBG", "RGGB", "GBRG"):
        zero_filled = mosaic(truth, pattern)
        raw = zero_filled.sum(axis=2).astype(np.uint8)  # what a sensor gives: one value per pixel
        out = panet.restore(raw, bayer=pattern, **run)
        assert out.shape == truth.shape
        assert np.array_equal(out, panet.restore(zero_filled, bayer=pattern, **run))
        scores[pattern] = psnr(out, truth)
    assert min(scores.values()) > 35 and max(scores.values()) - min(scores.values()) < 2, scores
    wrong = panet.restore(mosaic(truth, "GRBG").sum(axis=2).astype(np.uint8), bayer="RGGB", **run)
    assert psnr(wrong, truth) < scores["GRBG"] - 5  # the pattern matters: it is not ignored
    with pytest.raises(ValueError, match="Bayer mosaic"):
        panet.restore(truth, **run)  # a photo is not a mosaic


# --- 5. crafted weights ------------------------------------------------------------------------------------------


def _tiny_weights(path: Path, **config_changes) -> Path:
    from safetensors.torch import save_file

    model = panet.create_model("panet-dn-s", blocks=2, features=8)
    config = {**model.config, **config_changes}
    meta = {"format": "panet/1", "config": json.dumps(config)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return path


def test_crafted_safetensors_metadata_is_checked_before_building(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="blocks=1000000 but its tensors hold 2") as err:
        panet.load_weights(_tiny_weights(tmp_path / "a.safetensors", blocks=1_000_000))
    assert "a.safetensors" in str(err.value) and time.perf_counter() - start < 5
    with pytest.raises(ValueError, match="features=100000"):
        panet.load_weights(_tiny_weights(tmp_path / "b.safetensors", features=100_000))
    with pytest.raises(ValueError, match="c.safetensors: unknown network settings"):
        panet.load_weights(_tiny_weights(tmp_path / "c.safetensors", evil=1))
    bad = _tiny_weights(tmp_path / "d.safetensors")
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(bad)), str(bad), metadata={"format": "panet/1", "config": "{not json"})
    with pytest.raises(ValueError, match="d.safetensors: the config in its metadata is not valid JSON"):
        panet.load_weights(bad)
    assert panet.load_weights(_tiny_weights(tmp_path / "ok.safetensors")).blocks == 2


def test_compressed_checkpoints_are_refused_before_unpacking(tmp_path):
    import zipfile

    state = panet.to_official(panet.create_model("panet-dn-s", blocks=2, features=8))
    state["padding"] = torch.zeros(8 * 2**20)  # 32 MB of zeros: a few KB once deflated
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for record in src.infolist():
            dst.writestr(record.filename, src.read(record.filename))
    assert packed.stat().st_size < 2**20
    with pytest.raises(ValueError, match="packed.pt: its tensor data is compressed"):
        panet.from_official(packed)
    with pytest.raises(ValueError, match="unknown keys: padding"):  # stored records are mapped, then checked
        panet.from_official(plain)


def test_random_bytes_as_a_checkpoint_never_suggest_unsafe_loading(tmp_path):
    bad = tmp_path / "random.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    result = subprocess.run(
        [sys.executable, "-m", "panet.apps.cli", "convert", str(bad), "-o", str(tmp_path / "o.st")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "random.pt" in line and "weights_only=False" not in line and "weights_only` set to" not in line


# --- 6. one line, non-zero exit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "level must be an integer in 1..10"),
        ("-1", "level must be an integer in 1..10"),
        ("abc", "expected a number"),
    ],
)
def test_convert_release_arguments_are_checked(tmp_path, capsys, value, message):
    release = tmp_path / "release.pt"
    torch.save(panet.to_official(panet.create_model("panet-dn-s", blocks=2, features=8)), release)
    assert (
        main(["convert", str(release), "-o", str(tmp_path / "o.safetensors"), "--release-arg", f"level={value}"]) == 2
    )
    assert message in one_error_line(capsys.readouterr().err)
    with pytest.raises(ValueError, match="level must be"):
        panet.from_official(release, level=0)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_a_full_disk_or_read_only_folder_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch, error):
    import os

    import panet.files

    def failing_replace(src, dst):
        raise OSError(error, os.strerror(error), str(dst))

    config = _train_config(tmp_path)  # its images are written before the disk "fills up"
    monkeypatch.setattr(panet.files.os, "replace", failing_replace)
    release = tmp_path / "release.pt"
    torch.save(panet.to_official(panet.create_model("panet-dn-s", blocks=2, features=8)), release)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(release), "-o", str(out / "m.safetensors")]) == 1
    assert os.strerror(error) in one_error_line(capsys.readouterr().err)
    assert (
        main(["export", "--model", "panet-dn-s", "--random-init", "--format", "torchscript", "-o", str(out / "m.pt")])
        == 1
    )
    assert os.strerror(error) in one_error_line(capsys.readouterr().err)
    assert list(out.iterdir()) == []  # no output, no temporary file
    assert main(["train", str(config), f"out_dir={out / 'run'}", "--quiet"]) == 1
    assert os.strerror(error) in one_error_line(capsys.readouterr().err)
    assert list(out.iterdir()) == []  # the run failed before its first checkpoint: no run folder either


def _train_config(tmp_path: Path) -> Path:
    folder = tmp_path / "gt"
    for i in range(2):
        small_png(folder / f"{i}.png", i, size=(30, 28))
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""
task: denoise
model: panet-dn-s
model_overrides: {{blocks: 2, features: 8}}
data: {{train: ["{folder}"], level: [10, 30], patch_size: 12}}
iterations: 2
batch_size: 2
checkpoint_every: 1
out_dir: "{tmp_path / "run"}"
""")
    return config


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.patch_size=0", "data.patch_size must be at least"),
        ("optim.betas=3", "optim.betas must be two numbers"),
        ("data.level=abc", "data.level must be a number"),
        ("init=missing.pt", "init weights not found"),
    ],
)
def test_train_refuses_bad_settings_in_one_line_and_leaves_no_run_folder(tmp_path, capsys, override, message):
    config = _train_config(tmp_path)
    assert main(["train", str(config), override, "--quiet"]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch):
    from panet.train.config import load_config
    from panet.train.loop import train

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(torch.nn.functional, "l1_loss", broken)
    with pytest.raises(RuntimeError, match="boom"):
        train(load_config(_train_config(tmp_path)), quiet=True)
    assert not (tmp_path / "run").exists()


def test_train_starts_from_a_release_checkpoint(tmp_path):
    from panet.train.config import load_config
    from panet.train.loop import train

    source = panet.create_model("panet-dn-s", blocks=2, features=8)
    release = tmp_path / "release.pt"
    torch.save(panet.to_official(source), release)
    config = load_config(_train_config(tmp_path), [f"init={release}", "iterations=1"])
    assert train(config, quiet=True)["step"] == 1


def test_stale_temporary_checkpoints_are_removed_at_the_next_start(tmp_path):
    from panet.train.config import load_config
    from panet.train.loop import train

    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".checkpoint.pt.x1y2z3.tmp", run / ".weights.safetensors.abc.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (run / "keep.tmp").write_text("not ours")
    train(load_config(_train_config(tmp_path), ["iterations=1"]), quiet=True)
    assert not any(p.exists() for p in stale) and (run / "keep.tmp").exists()


def test_serve_rejects_a_port_out_of_range_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "panet.apps.cli", "serve", "--port", "70000"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "0..65535" in one_error_line(result.stderr)


# --- 7. small things ---------------------------------------------------------------------------------------------


def test_several_inputs_with_a_file_name_as_output_are_an_error(tmp_path, capsys):
    a, b = small_png(tmp_path / "a.png"), small_png(tmp_path / "b.png", 1)
    assert main(["restore", str(a), str(b), "-o", str(tmp_path / "out.png"), *RANDOM]) == 2
    assert "looks like a file name" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out.png").exists()


def test_tile_options_are_checked_once_before_loading_anything(tmp_path, capsys, monkeypatch):
    import panet.zoo.registry

    built = []
    monkeypatch.setattr(panet.zoo.registry, "PANet", lambda **kw: built.append(kw))
    inputs = [str(small_png(tmp_path / f"{i}.png", i)) for i in range(3)]
    for flags, message in [
        (["--tile", "3"], "--tile must be at least 8"),
        (["--tile", "32", "--tile-overlap", "40"], "--tile-overlap must be"),
    ]:
        assert main(["restore", *inputs, "-o", str(tmp_path / "out"), *RANDOM, *flags]) == 2
        assert message in one_error_line(capsys.readouterr().err)
    assert built == [] and not (tmp_path / "out").exists()
