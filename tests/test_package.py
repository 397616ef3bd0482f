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


def test_public_names_resolve():
    import panet

    for name in panet.__all__:
        assert getattr(panet, name) is not None
