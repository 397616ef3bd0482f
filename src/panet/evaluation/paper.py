"""The paper's evaluation plan applied to weights: which (task, level, set) rows a model is scored on.

The plan itself (sets, levels, baselines and the paper's numbers) is part of each task: ``Task.benchmarks``.
"""

from __future__ import annotations

from typing import Any

from panet.tasks import get_task

Row = tuple[str, float | None, str]  # (task, level, set)


def benchmark_rows(weights: Any) -> list[Row]:
    """(task, level, set) rows for shipped weights (:class:`panet.zoo.pretrained.ShippedWeights`): its task's
    benchmark sets for its colours (gray networks: the gray sets), at the paper's levels within its trained range
    (an SR network: its own scale only); weights trained on a noise model (``weights.noise``, e.g. "camera") get
    that noise model's rows instead of the standard ones."""
    task = get_task(weights.task)
    rows: list[Row] = []
    for benchmark in task.benchmarks:
        if benchmark.colors != weights.colors or benchmark.noise != getattr(weights, "noise", None):
            continue
        for set_name in benchmark.sets:
            for level in benchmark.levels:
                if task.upscales and level != weights.low:
                    continue
                if weights.covers(level):
                    rows.append((task.name, level, set_name))
    return rows
