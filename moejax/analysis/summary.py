"""The end-of-run summary of a sweep dataset: what the main job prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr


def summary(path: Path) -> str:
    """Per model: the MoE's best throughput per GPU and where; at the shortest and longest context,
    the dense/MoE throughput ratio (κ nearest 5) on the hardware and cluster where the MoE does
    best at that context, and what bounds the MoE there."""
    with xr.open_dataset(path) as ds:
        kappa = float(ds.kappa[np.argmin(np.abs(ds.kappa.values - 5.0))])
        tput = ds.throughput_per_gpu.sel(kappa=kappa)
        meanings = ds.bound.attrs["flag_meanings"].split()
        short, long = ds.context.values[0], ds.context.values[-1]
        lines = [f"dense/MoE throughput ratio at kappa={kappa:g}, on the hardware x GPUs where the MoE does best at that context",
                 f"{'model':<16} {'best MoE tok/s/GPU':>18}  {'at':<24} {f'{int(short)} tok':>26} {f'{int(long)} tok':>26}"]
        for model in ds.model.values:
            moe = tput.sel(model=model, variant="moe")
            if not bool((moe > 0).any()):
                lines.append(f"{model:<16} {'infeasible everywhere':>18}")
                continue
            best = moe.where(moe == moe.max(), drop=True)
            at = f"{best.hardware.values[0]} x{best.num_gpus.values[0]} @ {int(best.context.values[0])}"
            cells = []
            for c in (short, long):
                m = moe.sel(context=c).stack(place=("hardware", "num_gpus"))
                if not bool((m > 0).any()):
                    cells.append("MoE infeasible")
                    continue
                place = m.place.values[int(np.argmax(m.values))]
                where = dict(zip(("hardware", "num_gpus"), place), context=c)
                dense = float(tput.sel(model=model, variant="dense", **where))
                bound = meanings[int(ds.bound.sel(model=model, variant="moe", kappa=kappa, **where))]
                cells.append(f"{dense / float(m.max()):.2f}x {place[0]}/{place[1]} {bound}")
            lines.append(f"{model:<16} {float(moe.max()):>18.4g}  {at:<24} {cells[0]:>26} {cells[1]:>26}")
        if not bool(ds.feasible.any()):
            lines.append("warning: no point of this grid is feasible")
    return "\n".join(lines)
