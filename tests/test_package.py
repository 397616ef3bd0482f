from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, panet; "
        "heavy = [m for m in ('panet.cli', 'panet.weights', 'panet.attention', 'panet.model', 'torch') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_public_names_are_the_documented_objects_of_their_modules():
    import importlib

    import pytest

    import panet

    assert panet.__all__ == sorted(panet._EXPORTS)
    for name, module in panet._EXPORTS.items():
        value = getattr(panet, name)
        assert value is getattr(importlib.import_module(f"panet.{module}"), name), name  # not a stale copy
        assert value.__module__ == f"panet.{module}", f"{name} is defined in {value.__module__}, not panet.{module}"
        assert (value.__doc__ or "").strip(), f"panet.{name} has no docstring"
        assert name in dir(panet)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        panet.nope  # noqa: B018


def test_ci_fails_loudly_without_the_shared_material(tmp_path):
    """With CI=true and no ../shared, the release-fixture tests must error, not skip or vanish."""
    import os
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "CI": "true", "PANET_SHARED": str(tmp_path / "missing")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests / "test_fixtures.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tests.parent,
    )
    assert run.returncode != 0 and "CI=true needs ../shared" in run.stdout + run.stderr, run.stdout[-2000:]
    env["CI"] = "false"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests / "test_fixtures.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tests.parent,
    )
    assert run.returncode == 0 and "skipped" in run.stdout, run.stdout[-2000:]
