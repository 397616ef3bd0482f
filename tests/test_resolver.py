"""panet.zoo.resolver: the one place that decides which network runs, and its cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import panet
from panet.tasks import TASKS
from panet.zoo import resolver
from panet.zoo.pretrained import find_weights, list_weights


@pytest.fixture(autouse=True)
def _fresh_cache():
    resolver.clear_cache()
    yield
    resolver.clear_cache()


@pytest.mark.parametrize("task", list(TASKS))
def test_the_shipped_default_is_the_one_that_covers_the_level(task):
    spec = TASKS[task]
    level = spec.default_level
    choice = resolver.choose_network(task, level)
    assert choice.kind == "shipped" and choice.task == task
    assert choice.name == find_weights(task, level).name
    assert choice.label.startswith(f"shipped weights {choice.name} (")


def test_image_colours_choose_between_the_gray_and_the_colour_denoiser():
    colour = resolver.choose_network("denoise", 25, colors=3)
    gray = resolver.choose_network("denoise", 25, colors=1)
    shipped = {w.name: w for w in list_weights(task="denoise")}
    assert shipped[colour.name].colors == 3 and shipped[gray.name].colors == 1


@pytest.mark.parametrize("quality", [10, 25, 40])
def test_colour_jpegs_go_to_a_colour_car_network_and_gray_ones_to_a_gray_one(quality):
    shipped = {w.name: w for w in list_weights(task="car")}
    colour = resolver.choose_network("car", quality, colors=3)
    gray = resolver.choose_network("car", quality, colors=1)
    assert shipped[colour.name].colors == 3 and shipped[gray.name].colors == 1
    # the colour network restores all three channels of a colour JPEG: its chroma changes too (the luma path
    # of a gray network keeps the JPEG's Cb and Cr)
    jpeg = np.random.default_rng(quality).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    out = np.asarray(panet.restore(jpeg, task="car", quality=quality))
    assert out.shape == jpeg.shape

    def chroma(rgb):
        return rgb.astype(np.float64) @ np.array([[-0.168736, 0.5], [-0.331264, -0.418688], [0.5, -0.081312]])

    assert np.abs(chroma(out) - chroma(jpeg)).mean() > 1.0


def test_networks_load_once_and_the_cache_is_bounded():
    first = resolver.resolve_network("denoise", 25, colors=3)
    again = resolver.resolve_network("denoise", 30, colors=3)  # the same file covers both levels
    assert again.model is first.model and not first.model.training
    for scale in (2, 3, 4):
        resolver.resolve_network("sr", scale)
    resolver.resolve_network("car", 10)
    assert len(resolver._cache) == resolver.CACHE_SIZE
    assert resolver.resolve_network("denoise", 25, colors=3).model is not first.model  # evicted, loaded again


def test_random_presets_are_seeded_and_need_random_init():
    with pytest.raises(ValueError, match="is a preset; pass --random-init"):
        resolver.choose_network(None, preset="panet-dn-s")
    a = resolver.resolve_network(None, preset="panet-dn-s", random_init=True, seed=1)
    b = resolver.resolve_network(None, preset="panet-dn-s", random_init=True, seed=2)
    assert a.task == "denoise" and a.choice.label == "panet-dn-s, RANDOM weights"
    assert not torch.equal(a.model.head.weight, b.model.head.weight)
    resolver.clear_cache()
    again = resolver.resolve_network(None, preset="panet-dn-s", random_init=True, seed=1)
    assert torch.equal(a.model.head.weight, again.model.head.weight)


def test_weights_are_checked_against_the_task():
    with pytest.raises(ValueError, match="are denoise weights, not sr"):
        resolver.choose_network("sr", 2, weights="panet-dn-s")
    assert resolver.choose_network(None, weights="panet-dn-s").task == "denoise"  # the card says which
    with pytest.raises(ValueError, match="give a task"):
        resolver.choose_network(None)
    with pytest.raises(ValueError, match="needs scale"):
        resolver.choose_network("sr")


def test_restore_runs_the_resolvers_network():
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    panet.restore(image, task="denoise", sigma=25)
    key = resolver.choose_network("denoise", 25, colors=3).key
    assert list(resolver._cache) == [key]


def test_a_noise_model_picks_weights_trained_on_it_and_only_then(tmp_path, monkeypatch):
    """Weights trained on camera noise (their recipe's data.noise) are chosen for noise="camera" alone: the
    default denoiser stays the Gaussian one, and without such weights the request fails with one clear message."""
    import json
    import subprocess
    import sys

    import panet.zoo.pretrained as pretrained
    from panet.zoo.weights import save_weights

    for name, level, noise in [("dn-gauss", [0, 75], None), ("dn-camera", [0, 40], "camera")]:
        torch.manual_seed(0)
        model = panet.create_model("panet-dn-s", blocks=2, features=8)
        save_weights(model, tmp_path / f"{name}.safetensors", metadata={"task": "denoise", "level": json.dumps(level)})
        card = {"name": name, "preset": "panet-dn-s", "task": "denoise", "level": level, "command": "test"}
        card["config"] = {"data": {"noise": noise}}
        (tmp_path / f"{name}.json").write_text(json.dumps(card))
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path)
    assert resolver.choose_network("denoise", 25, colors=3).name == "dn-gauss"
    assert resolver.choose_network("denoise", None, colors=3, noise="camera").name == "dn-camera"
    with pytest.raises(ValueError, match="no noise model 'camera'"):
        resolver.choose_network("car", 10, noise="camera")
    noisy = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert panet.restore(noisy, task="denoise", noise="camera").shape == noisy.shape
    with pytest.raises(ValueError, match="give no sigma"):
        panet.restore(noisy, task="denoise", noise="camera", sigma=25)
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "none")
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no trained weights ship for task 'denoise' with camera noise yet"):
        find_weights("denoise", None, 3, noise="camera")
    from panet.data.images import write_image

    write_image(tmp_path / "in.png", noisy)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "panet",
            "restore",
            "in.png",
            "-o",
            "out.png",
            "--task",
            "denoise",
            "--noise",
            "camera",
            "--sigma",
            "20",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "leave out --sigma" in run.stderr and "Traceback" not in run.stderr


def test_loaded_networks_run_channels_last_with_the_same_output():
    network = resolver.resolve_network("denoise", 25, colors=3)
    convs = [m.weight for m in network.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    from panet.zoo.pretrained import load_model

    plain = load_model(network.choice.name)  # the same file, loaded plainly
    assert not plain.head.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(network.model(x), plain.eval()(x), rtol=1e-5, atol=1e-5)
