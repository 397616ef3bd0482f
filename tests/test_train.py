from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BENCHMARKS
from panet.data.images import write_image
from panet.train.config import load_config
from panet.train.loop import train


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
out_dir: "{tmp_path / "run"}"
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
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4", "5", "6"]
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
    with pytest.raises(ValueError, match="optim.lr: expected a number, got 'fast'"):
        load_config(tiny, ["optim.lr=fast"])
    with pytest.raises(ValueError, match="iterations: expected an integer, got 1.5"):
        load_config(tiny, ["iterations=1.5"])
    assert load_config(tiny, ["optim.lr=1e-3"]).optim.lr == 0.001  # YAML 1.1 reads 1e-3 as a string
    assert load_config(tiny, ["optim.grad_clip=null", "ema=null"]).ema is None
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


@pytest.mark.parametrize("native", [False, True])
def test_precision_auto_follows_the_cpu_and_the_card_records_it(tiny, tmp_path, monkeypatch, native):
    """auto is bf16 only where the device has native bf16 (an AVX2 CPU emulates it, ~10x slower than fp32)."""
    import json

    import panet.train.loop as train_module

    monkeypatch.setattr(
        train_module,
        "resolve_precision",
        lambda precision, device: (
            "bf16" if native and precision == "auto" else ("fp32" if precision == "auto" else precision)
        ),
    )
    seen = []
    real_autocast = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kwargs):
        seen.append(enabled)
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    out = tmp_path / f"auto-{native}"
    train(load_config(tiny, [f"out_dir={out}", "precision=auto", "iterations=2", "checkpoint_every=2"]), quiet=True)
    assert seen and seen[0] is native
    card = json.loads((out / "card.json").read_text())
    assert card["precision"] == ("bf16" if native else "fp32") and card["config"]["precision"] == "auto"


def test_auto_precision_follows_the_measured_speed_not_the_cpu_flags(monkeypatch):
    import panet.hardware as hardware

    def simulate(native: bool, fp32_seconds: float, bf16_seconds: float) -> str:
        hardware.bf16_speedup.cache_clear()
        monkeypatch.setattr(hardware, "_cpu_bf16", lambda: native)
        monkeypatch.setattr(
            hardware,
            "_time_workload",
            lambda dtype, repeats=3: fp32_seconds if dtype == torch.float32 else bf16_seconds,
        )
        return hardware.resolve_precision("auto", "cpu")

    try:
        assert simulate(False, 1.0, 0.1) == "fp32"  # AVX2 only: emulated bf16, whatever a timing would say
        assert hardware.bf16_speedup("cpu") == 0.0
        assert simulate(True, 1.0, 0.5) == "bf16"  # Zen 4/5-like: 2x
        assert simulate(True, 1.0, 1.9) == "fp32"  # bf16 flags, but measured slower (AMX hidden by a hypervisor)
        assert simulate(True, 1.0, 0.9) == "fp32"  # 1.1x: below BF16_MIN_SPEEDUP
        assert (
            hardware.resolve_precision("fp32", "cpu") == "fp32" and hardware.resolve_precision("bf16", "cpu") == "bf16"
        )
    finally:
        hardware.bf16_speedup.cache_clear()


def test_torchrun_two_cpu_processes_match_one_process(tiny, tmp_path):
    """DDP (gloo, 2 processes, batch 2 each) makes the same updates as 1 process with batch 4."""
    import os
    import subprocess
    import sys

    overrides = ["batch_size=4", "iterations=3", "val_every=100", "device=cpu"]
    single = load_config(tiny, [*overrides, f"out_dir={tmp_path / 'one'}"])
    train(single, quiet=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "panet",
        "train",
        str(tiny),
        "--quiet",
        *overrides,
        f"out_dir={tmp_path / 'two'}",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 3
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    log_one = [line.split(",")[1] for line in (tmp_path / "one" / "log.csv").read_text().splitlines()[1:]]
    log_two = [line.split(",")[1] for line in (tmp_path / "two" / "log.csv").read_text().splitlines()[1:]]
    assert len(log_one) == len(log_two) == 3
    for u, v in zip(log_one, log_two):  # rank 0 logs the loss averaged over both processes
        assert abs(float(u) - float(v)) < 1e-4


def test_step_sampler_shares_the_global_batch():
    from panet.train.loop import StepSampler

    whole = list(StepSampler(2, 4, 4))
    parts = [list(StepSampler(2, 4, 4, rank, 2)) for rank in range(2)]
    assert whole == [8, 9, 10, 11, 12, 13, 14, 15]
    assert parts == [[8, 9, 12, 13], [10, 11, 14, 15]]
    with pytest.raises(ValueError, match="not divisible"):
        StepSampler(0, 1, 3, 0, 2)


def test_init_from_weights_skips_only_what_is_listed(tmp_path):
    from panet import create_model
    from panet.train.artifacts import load_init_weights
    from panet.zoo.weights import save_weights

    x2 = create_model("pa-edsr-s-x2", blocks=2, features=8, attention_reduction=2)
    save_weights(x2, tmp_path / "x2.safetensors")
    x4 = create_model("pa-edsr-s-x4", blocks=2, features=8, attention_reduction=2)
    with pytest.raises(ValueError, match="does not fit"):
        load_init_weights(x4, tmp_path / "x2.safetensors")
    skipped = load_init_weights(x4, tmp_path / "x2.safetensors", ["upsample.*"])
    assert skipped and all(k.startswith("upsample.") for k in skipped)
    for key, value in x2.state_dict().items():
        if not key.startswith("upsample."):
            assert torch.equal(x4.state_dict()[key], value), key


def test_gray_model_folded_from_colour_weights_runs_as_the_colour_one_on_gray(tmp_path):
    from panet import create_model
    from panet.train.artifacts import load_init_weights
    from panet.zoo.weights import save_weights

    torch.manual_seed(0)
    colour = create_model("panet-dn-s", blocks=2, features=8, attention_reduction=2).eval()
    save_weights(colour, tmp_path / "colour.safetensors")
    gray = create_model("panet-dn-gray-s", blocks=2, features=8, attention_reduction=2).eval()
    with pytest.raises(ValueError, match="shape mismatch"):
        load_init_weights(gray, tmp_path / "colour.safetensors")
    assert load_init_weights(gray, tmp_path / "colour.safetensors", fold=True) == []
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        expected = colour(x.expand(1, 3, 20, 20)).mean(dim=1, keepdim=True)
        torch.testing.assert_close(gray(x), expected, rtol=1e-4, atol=1e-5)


def test_curves_png_is_written(tiny, tmp_path):
    from PIL import Image

    train(load_config(tiny, [f"out_dir={tmp_path / 'plot'}", "iterations=3"]), quiet=True)
    with Image.open(tmp_path / "plot" / "curves.png") as image:
        assert image.size == (960, 320)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours = {tuple(p) for p in pixels}
    # the smoothed loss curve (dark blue) and the validation PSNR (red) are drawn, each in its own panel
    assert (30, 70, 160) in colours and (200, 60, 40) in colours
    left = np.asarray(Image.open(tmp_path / "plot" / "curves.png").convert("RGB"))[:, :480].reshape(-1, 3)
    assert not ((left == (200, 60, 40)).all(1)).any(), "validation drawn in the loss panel"


def test_validation_reference_is_the_classical_baseline_on_the_validation_images(tiny, tmp_path):
    import json

    from panet.data.datasets import find_images
    from panet.data.degrade import jpeg
    from panet.data.images import read_image
    from panet.evaluation.metrics import psnr
    from panet.tasks import to_gray_y

    run = tmp_path / "car"
    train(
        load_config(tiny, [f"out_dir={run}", "iterations=1", "task=car", "model=panet-car-s", "data.level=20"]),
        quiet=True,
    )
    reference = json.loads((run / "val_reference.json").read_text())
    first = find_images(tmp_path / "gt")[0]  # val_images: 1
    gray = to_gray_y(read_image(first))
    assert reference["baseline"] == "identity" and reference["level"] == 20  # CAR: the JPEG itself
    assert reference["psnr"] == pytest.approx(psnr(jpeg(gray, 20), gray))


def test_resume_after_a_crash_past_the_checkpoint_and_with_a_new_schedule(tiny, tmp_path):
    import shutil

    config = load_config(tiny, [f"out_dir={tmp_path / 'crash'}", "checkpoint_every=2"])
    train(config, max_steps=2, quiet=True)
    saved = tmp_path / "saved.pt"
    shutil.copy(tmp_path / "crash" / "checkpoint.pt", saved)
    train(config, resume=True, max_steps=1, quiet=True)  # step 3 is logged, then "the process dies"
    shutil.copy(saved, tmp_path / "crash" / "checkpoint.pt")
    edited = load_config(tiny, [f"out_dir={tmp_path / 'crash'}", "optim.milestones=[3]", "optim.lr=0.5"])
    train(edited, resume=True, quiet=True)
    rows = [r.split(",") for r in (tmp_path / "crash" / "log.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "6"]  # step 3 once, not twice
    # the optimizer's lr came from the checkpoint (1e-4); the edited milestone at step 3 halves it
    assert [float(r[2]) for r in rows[2:]] == [5e-5] * 4


def test_resume_after_a_kill_before_the_log_header_reached_the_disk(tiny, tmp_path):
    """A run killed right after it started can leave an empty log.csv (its header still in a buffer): resuming
    writes the header back, so the log and the curves stay readable (a headerless log made plotting fail)."""
    config = load_config(tiny, [f"out_dir={tmp_path / 'killed'}", "checkpoint_every=2"])
    train(config, max_steps=2, quiet=True)
    log = tmp_path / "killed" / "log.csv"
    log.write_text("")  # what the kill left
    train(config, resume=True, max_steps=2, quiet=True)
    lines = log.read_text().splitlines()
    assert lines[0] == "step,loss,lr,val_psnr,seconds" and [r.split(",")[0] for r in lines[1:]] == ["3", "4"]
    log.write_text("\n".join(lines[1:]) + "\n")  # rows without a header
    train(config, resume=True, max_steps=1, quiet=True)
    lines = log.read_text().splitlines()
    assert lines[0] == "step,loss,lr,val_psnr,seconds" and [r.split(",")[0] for r in lines[1:]] == ["3", "4", "5"]


def test_run_writes_ema_weights_and_a_card(tiny, tmp_path):
    import json

    from panet.apps.cli import main
    from panet.zoo.weights import load_weights, read_metadata

    out = tmp_path / "carded"
    assert main(["train", str(tiny), "--quiet", "iterations=2", f"out_dir={out}"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["iterations"] == 2 and card["task"] == "denoise" and card["level"] == [10, 30]
    # 3 images, the first held out for validation (val_images: 1)
    assert card["command"].startswith("panet train ") and card["training_data"] == {"gt": 2}
    assert card["weights"] == "EMA" and card["config"]["seed"] == 0
    model = load_weights(out / "weights.safetensors")
    ema = torch.load(out / "checkpoint.pt", weights_only=True)["ema"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, ema[key]), key
    assert read_metadata(out / "weights.safetensors")["task"] == "denoise"


RECIPES = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_builds_and_trains_on_training_sets_only(recipe):
    """Each shipped recipe is a valid config whose model builds, whose init weights (when they are in the repo) fit
    it, and which never trains on a benchmark set."""
    import panet
    from panet.train.artifacts import load_init_weights

    root = recipe.parents[1]
    config = load_config(recipe)
    model = panet.create_model(config.model, **config.model_overrides)
    assert not set(config.data.train) & BENCHMARKS, config.data.train
    init = root / config.init if config.init else None
    if init is not None and init.parts[len(root.parts)] == "runs":
        # another recipe's output (its checkpoint or EMA weights): that recipe must exist; the file only where trained
        assert init.parent in {root / load_config(r).out_dir for r in RECIPES}, init
        if init.suffix == ".safetensors" and init.is_file():
            load_init_weights(model, init, config.init_skip, config.init_fold_colors)
    elif init is not None:  # in the repo
        assert init.is_file(), init
        load_init_weights(model, init, config.init_skip, config.init_fold_colors)


def test_training_never_sees_the_validation_images(tmp_path):
    from panet.data.datasets import TrainPairs
    from panet.train.validation import validation_files

    folder = tmp_path / "split"
    write_image(folder / "a.png", np.zeros((20, 20, 3), np.uint8))  # the first image: held out below
    write_image(folder / "b.png", np.full((20, 20, 3), 255, np.uint8))
    config = tmp_path / "split.yaml"
    config.write_text(f'data: {{train: ["{folder}"], val: ["{folder}"], level: 5, patch_size: 8, val_images: 1}}\n')
    held_out = validation_files(load_config(config))
    assert [f.name for f in held_out] == ["a.png"]
    pairs = TrainPairs([folder], task="denoise", level=5, patch_size=8, length=20, exclude=held_out)
    assert all(bool((pairs[i][1] == 1).all()) for i in range(len(pairs)))  # never a patch of a.png
    with pytest.raises(ValueError, match="held out for validation"):
        TrainPairs([folder], task="denoise", level=5, patch_size=8, exclude=find_all(folder))


def find_all(folder):
    from panet.data.datasets import find_images

    return find_images(folder)


def test_a_denoiser_trains_on_camera_noise_when_the_recipe_says_so(tiny, tmp_path):
    """data.noise: camera trains (and validates) on camera-like noise; a task without that noise model refuses."""
    from panet.data.datasets import TrainPairs

    with pytest.raises(ValueError, match="data.noise 'poisson' is not a noise model of task 'denoise'"):
        load_config(tiny, ["data.noise=poisson"])
    with pytest.raises(ValueError, match="data.downscale must be a whole number >= 1, got 0"):
        load_config(tiny, ["data.downscale=0"])
    config = load_config(tiny, ["data.noise=camera", f"out_dir={tmp_path / 'camera'}"])
    assert config.data.noise == "camera"
    summary = train(config, max_steps=3, quiet=True)
    assert summary is not None
    import json

    card = json.loads((tmp_path / "camera" / "card.json").read_text())
    assert card["config"]["data"]["noise"] == "camera"
    pairs = TrainPairs(config.data.train, task="denoise", level=20, patch_size=12, length=4, noise="camera")
    noisy, clean = pairs[0]
    assert noisy.shape == clean.shape == (3, 12, 12)
    with pytest.raises(ValueError, match="no noise model"):
        TrainPairs(config.data.train, task="car", level=10, patch_size=12, colors=1, noise="camera")


def test_split_bf16_scores_follow_the_measured_speed(monkeypatch):
    """Split bf16 scores (three bf16 GEMMs for one fp32 one) pay only where bf16 GEMMs are several times faster
    (AMX); a 2x machine (AVX512-bf16) and an emulated one keep fp32 GEMMs."""
    import panet.hardware as hardware

    def simulate(native: bool, fp32_seconds: float, split_seconds: float) -> bool:
        hardware.split_bf16_speedup.cache_clear()
        monkeypatch.setattr(hardware, "_cpu_bf16", lambda: native)
        monkeypatch.setattr(hardware, "_time_score_gemms", lambda repeats=6: (fp32_seconds, split_seconds))
        return hardware.split_bf16_scores("cpu")

    try:
        assert simulate(True, 1.0, 0.4)  # AMX-like
        assert not simulate(True, 1.0, 1.5)  # Zen 4/5-like: three bf16 GEMMs at 2x lose to one fp32 GEMM
        assert not simulate(False, 1.0, 0.1)  # no native bf16: never measured
        assert hardware.split_bf16_speedup("cpu") == 0.0
    finally:
        hardware.split_bf16_speedup.cache_clear()
    hardware.split_bf16_speedup.cache_clear()
    assert hardware.split_bf16_speedup("cpu") >= 0.0  # the real measurement runs


def test_training_layout_is_channels_last_and_saved_weights_are_plain(tmp_path):
    from panet import create_model
    from panet.train.loop import place_batch, place_model
    from panet.zoo.weights import load_weights, save_weights

    model = place_model(create_model("panet-dn-s", blocks=2, features=8), "cpu")
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x = place_batch(torch.rand(2, 3, 12, 12), "cpu")
    assert x.is_contiguous(memory_format=torch.channels_last)
    plain = create_model("panet-dn-s", blocks=2, features=8)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():  # the same network in either layout
        torch.testing.assert_close(model(x), plain(x.contiguous()), rtol=1e-5, atol=1e-5)
    save_weights(model, tmp_path / "w.safetensors")
    loaded = load_weights(tmp_path / "w.safetensors")
    for (name, a), (_, b) in zip(loaded.state_dict().items(), plain.state_dict().items()):
        assert a.is_contiguous() and torch.equal(a, b), name
