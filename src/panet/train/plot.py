"""Training curves as a PNG, drawn with Pillow (no plotting library needed).

``plot_log(log.csv, curves.png)``: the training loss (log scale, with a running
mean) and the validation PSNR against the step, side by side; the validation panel
also draws the classical baseline of ``val_reference.json`` (beside the log) in grey.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from panet.files import atomic_write

_W, _H, _PAD = 480, 320, 48


def _read(path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    loss, val = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            if row.get("loss"):
                loss.append((step, float(row["loss"])))
            if row.get("val_psnr"):
                val.append((step, float(row["val_psnr"])))
    return loss, val


def _running_mean(points: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    out, total = [], 0.0
    for i, (step, value) in enumerate(points):
        total += value
        if i >= window:
            total -= points[i - window][1]
        out.append((step, total / min(i + 1, window)))
    return out


def _panel(
    draw,
    left: int,
    title: str,
    series: list[tuple[list[tuple[int, float]], tuple[int, int, int]]],  # (points, RGB colour)
    log_y: bool,
    reference: float | None = None,
) -> None:
    x0, y0, x1, y1 = left + _PAD, _PAD // 2 + 12, left + _W - 12, _H - _PAD // 2 - 8
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    draw.text((x0, 4), title, fill=(0, 0, 0))
    points = [p for s, _ in series for p in s]
    if not points:
        draw.text((x0 + 8, y0 + 8), "no data yet", fill=(90, 90, 90))
        return
    fy = (lambda v: math.log10(max(v, 1e-12))) if log_y else (lambda v: v)
    steps = [p[0] for p in points]
    values = [fy(p[1]) for p in points] + ([fy(reference)] if reference is not None else [])
    smin, smax = min(steps), max(steps)
    vmin, vmax = min(values), max(values)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    margin = 0.05 * (vmax - vmin)  # keeps the extremes (and the reference line) off the frame
    vmin, vmax = vmin - margin, vmax + margin
    if smax == smin:
        smin, smax = smin - 1, smax + 1

    def to_xy(step: int, value: float) -> tuple[float, float]:
        return (x0 + (step - smin) / (smax - smin) * (x1 - x0), y1 - (fy(value) - vmin) / (vmax - vmin) * (y1 - y0))

    if reference is not None:
        y = to_xy(smin, reference)[1]
        draw.line([(x0, y), (x1, y)], fill=(150, 150, 150), width=1)
        draw.text((x1 - 40, y - 12), f"{reference:.2f}", fill=(120, 120, 120))
    for s, colour in series:
        xy = [to_xy(*p) for p in s]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2 if colour != (170, 190, 230) else 1)
        else:
            for x, y in xy:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    label = (lambda v: f"{10**v:.3g}") if log_y else (lambda v: f"{v:.2f}")
    draw.text((left + 2, y0), label(vmax), fill=(0, 0, 0))
    draw.text((left + 2, y1 - 10), label(vmin), fill=(0, 0, 0))
    draw.text((x0, y1 + 4), str(smin), fill=(0, 0, 0))
    draw.text((x1 - 6 * len(str(smax)), y1 + 4), str(smax), fill=(0, 0, 0))


def plot_log(log_csv: str | os.PathLike, png: str | os.PathLike, *, title: str = "") -> None:
    """Draw ``log_csv`` (the train command's log) into ``png`` (written atomically)."""
    from PIL import Image, ImageDraw

    loss, val = _read(Path(log_csv))
    image = Image.new("RGB", (2 * _W, _H), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    smooth = _running_mean(loss, max(1, len(loss) // 20))
    _panel(draw, 0, f"training L1 loss (log scale) {title}", [(loss, (170, 190, 230)), (smooth, (30, 70, 160))], True)
    reference_path = Path(log_csv).with_name("val_reference.json")
    reference = json.loads(reference_path.read_text()) if reference_path.exists() else None
    _panel(
        draw,
        _W,
        "validation PSNR (dB)" + (f"; grey: {reference['baseline']}" if reference else ""),
        [(val, (200, 60, 40))],
        False,
        reference["psnr"] if reference else None,
    )
    atomic_write(Path(png), lambda tmp: image.save(tmp, format="PNG"))
