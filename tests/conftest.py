from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "official"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/oracle.py


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a message if it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared material not found at {path} (expected ../shared beside the repository)")
    return path


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.pt")) if FIXTURES.is_dir() else []


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
