from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PANET_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "official"
# In CI the shared material must be there: the release-parity evidence may never disappear as silent skips.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the test modules import helpers from this file


# The benchmark sets: evaluation only, never training data or model selection.
BENCHMARKS = {"Set5", "Set14", "B100", "Urban100", "Manga109", "Kodak24", "CBSD68", "BSD68", "McMaster", "LIVE1",
              "Classic5", "Set12"}  # fmt: skip


def shared_path(*parts: str) -> Path:
    """A path under ../shared; where it is absent the test skips with a message, or fails when CI=true."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"shared material not found at {path} (expected ../shared beside the repository)"
        if IN_CI:
            pytest.fail(message + "; CI=true, so this is an error, not a skip")
        pytest.skip(message)
    return path


def fixture_files() -> list[Path]:
    """The release's reference outputs; with CI=true their absence stops the collection (an empty
    parametrisation would otherwise pass silently)."""
    if not FIXTURES.is_dir():
        if IN_CI:
            raise RuntimeError(f"release fixtures not found at {FIXTURES}; CI=true needs ../shared")
        return []
    return sorted(FIXTURES.glob("*.pt"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
