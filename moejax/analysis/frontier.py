"""What the main job prints about the serving frontier: the dense/MoE cost ratio at a few
interactivity levels (``frontier_*`` variables of a sweep with ``grid.batches``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

LEVELS = (20.0, 50.0, 200.0)  # tokens/s per user: slow, interactive, fast decode


def cost_ratio(moe: float, dense: float) -> float:
    """Dense/MoE cost per output token on the same GPUs (cost per token ∝ 1/throughput per GPU):
    ``moe / dense`` throughput per GPU. MoE 300 tok/s/GPU, dense 100: the dense model costs 3x."""
    return moe / dense if dense > 0 else np.inf


def frontier_summary(path: Path, levels=LEVELS, kappa: float = 5.0, context: float = 8192.0) -> str:
    """Per model, at each of ``levels`` (the nearest level of the interactivity axis), κ nearest
    ``kappa`` and the grid context nearest ``context``: the hardware × GPUs where the MoE's frontier
    is highest at that level, and there the dense/MoE cost ratio (both at their own best partition
    and batch reaching the level). Empty when the dataset has no frontier."""
    with xr.open_dataset(path) as ds:
        if "frontier_throughput_per_gpu" not in ds:
            return ""
        k = float(ds.kappa[np.argmin(np.abs(ds.kappa.values - kappa))])
        c = float(ds.context[np.argmin(np.abs(np.log(ds.context.values / context)))])
        axis = ds.interactivity.values
        picks = [float(axis[np.argmin(np.abs(np.log(axis / lev)))]) for lev in levels]
        tput = ds.frontier_throughput_per_gpu.sel(kappa=k, context=c)
        head = "".join(f"{f'>= {p:.3g} tok/s/user':>34}" for p in picks)
        title = (f"dense/MoE cost ratio (MoE/dense tok/s/GPU) at kappa={k:g}, context {int(c)}, on the hardware x GPUs "
                 "where the MoE does best at that interactivity")
        lines = [title, f"{'model':<16}{head}"]
        for model in ds.model.values:
            cells = []
            for p in picks:
                moe = tput.sel(model=model, variant="moe", interactivity=p).stack(place=("hardware", "num_gpus"))
                values = np.nan_to_num(moe.values, nan=-1.0)
                if not (values > 0).any():
                    cells.append("MoE cannot reach")
                    continue
                place = moe.place.values[int(np.argmax(values))]
                dense = float(tput.sel(model=model, variant="dense", interactivity=p, hardware=place[0], num_gpus=place[1]))
                ratio = cost_ratio(float(values.max()), np.nan_to_num(dense, nan=0.0))
                cells.append(f"{ratio:.2f}x {place[0]}/{place[1]} ({values.max():.3g}/GPU)")
            lines.append(f"{model:<16}" + "".join(f"{cell:>34}" for cell in cells))
    return "\n".join(lines)
