"""Classical baselines, evaluated exactly like the networks.

Each baseline maps a degraded uint8 HxWxC image to a restored uint8 image:

* ``bicubic`` (SR): MATLAB bicubic upscaling of the LR image.
* ``identity``: the degraded input itself (the JPEG, the noisy or the mosaiced image).
* ``bm3d`` (denoising): BM3D on gray images, CBM3D on colour (PyPI ``bm3d``, extra ``baselines``).
* ``menon`` / ``malvar`` (demosaicing): Menon 2007 and Malvar 2004 (PyPI
  ``colour-demosaicing``, extra ``baselines``), on the GRBG mosaic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from panet.data.degrade import bayer_mask
from panet.data.matlab_resize import imresize
from panet.errors import UnknownNameError

Restorer = Callable[[np.ndarray], np.ndarray]
BASELINES = ("bicubic", "identity", "bm3d", "menon", "malvar")  # which tasks each serves: Task.baselines
_LABELS = {"bicubic": "bicubic (MATLAB)", "bm3d": "BM3D / CBM3D", "menon": "Menon 2007", "malvar": "Malvar 2004"}


def baseline_label(name: str, task: str) -> str:
    """What documents call baseline ``name`` on ``task``: 'BM3D / CBM3D', 'noisy input', 'JPEG', ..."""
    from panet.tasks import get_task

    if name not in BASELINES:
        raise UnknownNameError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return get_task(task).identity_label if name == "identity" else _LABELS[name]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(x, 0, 255) + 0.5).astype(np.uint8)


def _optional(module: str, extra_name: str):
    import importlib
    import warnings

    try:
        with warnings.catch_warnings():  # colour-science warns about matplotlib on import
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"this baseline needs the optional package {extra_name!r}: pip install {extra_name}"
        ) from None


def make_baseline(name: str, task: str, level: float | None) -> Restorer:
    """A restorer for baseline ``name`` on ``task`` at ``level`` (SR scale, sigma, quality)."""
    if name not in BASELINES:
        raise UnknownNameError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    from panet.tasks import get_task

    spec = get_task(task)
    if name not in spec.baselines:
        raise ValueError(f"baseline {name!r} does not apply to task {task!r}; choose from {', '.join(spec.baselines)}")
    if name == "identity":
        return lambda img: img
    if name == "bicubic":
        if level is None:
            raise ValueError("the bicubic baseline needs the SR scale")
        scale = int(level)
        return lambda img: imresize(img, scale)
    if name == "bm3d":
        if level is None:
            raise ValueError("the BM3D baseline needs the noise sigma")
        bm3d = _optional("bm3d", "bm3d")
        sigma = float(level) / 255.0

        def denoise(img: np.ndarray) -> np.ndarray:
            x = img.astype(np.float64) / 255.0
            if img.shape[2] == 3:
                out = bm3d.bm3d_rgb(x, sigma)
            else:
                out = bm3d.bm3d(x[:, :, 0], sigma)[:, :, None]
            return _to_uint8(np.asarray(out) * 255.0)

        return denoise
    demosaicing = _optional("colour_demosaicing", "colour-demosaicing")
    algorithm = {
        "menon": demosaicing.demosaicing_CFA_Bayer_Menon2007,
        "malvar": demosaicing.demosaicing_CFA_Bayer_Malvar2004,
    }[name]

    def demosaic(img: np.ndarray) -> np.ndarray:
        # The zero-filled mosaic holds one sample per pixel: summing the channels gives the CFA.
        mask = bayer_mask(img.shape[0], img.shape[1], "GRBG")
        cfa = np.where(mask, img, 0).sum(axis=2).astype(np.float64) / 255.0
        return _to_uint8(np.asarray(algorithm(cfa, "GRBG")) * 255.0)

    return demosaic
