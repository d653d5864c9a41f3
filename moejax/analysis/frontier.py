"""What the main job prints about the serving frontier: per model, the dense/MoE cost ratio in $
per million output tokens at a few interactivity levels (``frontier_*`` variables of a sweep with
``grid.batches``), and the MoE's own $/Mtok.

Conventions: the ratio is dense $/Mtok ÷ MoE $/Mtok (> 1: the MoE is cheaper), both on the same
hardware × GPUs, each at its own best partition and batch reaching the level. On the same
hardware the price per GPU-hour cancels, so the ratio is also MoE ÷ dense tokens/s per GPU (the
inverse of the throughput ratio the summary table above it prints).
"""

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
    ``kappa`` and the grid context nearest ``context``: the hardware × GPUs where the MoE's
    $/Mtok is lowest at that level (highest tokens/s per GPU where the dataset has no prices),
    there the dense/MoE cost ratio and the MoE's $/Mtok. Empty when the dataset has no frontier."""
    with xr.open_dataset(path) as ds:
        if "frontier_throughput_per_gpu" not in ds:
            return ""
        k = float(ds.kappa[np.argmin(np.abs(ds.kappa.values - kappa))])
        c = float(ds.context[np.argmin(np.abs(np.log(ds.context.values / context)))])
        axis = ds.interactivity.values
        picks = [float(axis[np.argmin(np.abs(np.log(axis / lev)))]) for lev in levels]
        tput = ds.frontier_throughput_per_gpu.sel(kappa=k, context=c)
        priced = "frontier_cost_per_mtok" in ds and bool(np.isfinite(ds.hw_price_per_gpu_hour.values).all())
        cost = ds.frontier_cost_per_mtok.sel(kappa=k, context=c) if priced else None
        where = "$/Mtok is lowest" if priced else "tok/s/GPU is highest (no prices in the dataset)"
        workload = f" (isl {ds.isl.sel(context=c).item():g}, osl {ds.osl.sel(context=c).item():g})" if "isl" in ds else ""
        lines = [
            (
                f"serving frontier at kappa={k:g}, context {int(c)}{workload}: dense $/Mtok ÷ MoE $/Mtok (> 1: the MoE is "
                f"cheaper), on the hardware x GPUs where the MoE's {where} at that interactivity; cells: ratio "
                "hardware/GPUs MoE $/Mtok"
            )
        ]
        heads, rows = [f">= {p:.3g} tok/s/user" for p in picks], []
        for model in ds.model.values:
            cells = []
            for p in picks:
                moe = tput.sel(model=model, variant="moe", interactivity=p).stack(place=("hardware", "num_gpus"))
                values = np.nan_to_num(moe.values, nan=-1.0)
                if not (values > 0).any():
                    cells.append("MoE cannot reach")
                    continue
                if priced:
                    dollars = cost.sel(model=model, variant="moe", interactivity=p).stack(place=("hardware", "num_gpus")).values
                    best = int(np.nanargmin(np.where(values > 0, dollars, np.nan)))
                else:
                    best = int(np.argmax(values))
                place = moe.place.values[best]
                dense = float(tput.sel(model=model, variant="dense", interactivity=p, hardware=place[0], num_gpus=place[1]))
                ratio = cost_ratio(float(values[best]), np.nan_to_num(dense, nan=0.0))
                money = f" ${dollars[best]:.3g}" if priced else f" ({values[best]:.3g}/GPU)"
                text = f"{ratio:.2f}x" if np.isfinite(ratio) else "dense cannot reach"
                cells.append(f"{text} {place[0]}/{place[1]}{money}")
            rows.append((str(model), cells))
        # columns as wide as their widest cell, two spaces apart: a long cell never runs into its neighbour
        widths = [max(len(h), *(len(r[1][j]) for r in rows)) for j, h in enumerate(heads)]
        name = max(16, *(len(m) + 1 for m, _ in rows))
        lines.append(f"{'model':<{name}}" + "".join(f"  {h:>{w}}" for h, w in zip(heads, widths)))
        lines += [f"{m:<{name}}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths)) for m, cells in rows]
    return "\n".join(lines)


def slo_summary(path: Path, kappa: float = 5.0, context: float = 8192.0) -> str:
    """With workloads and an SLO (``slo_mode`` in the dataset): per model and variant (MoE, dense
    at κ nearest ``kappa``), at the grid context nearest ``context``, on the hardware × GPUs where
    its cheaper mode's $/Mtok is lowest: both modes' $/Mtok under the SLO, the disaggregated
    prefill share and which mode is cheaper. Empty otherwise."""
    with xr.open_dataset(path) as ds:
        if "slo_mode" not in ds or "slo_cost_per_mtok" not in ds:
            return ""
        k = float(ds.kappa[np.argmin(np.abs(ds.kappa.values - kappa))])
        c = float(ds.context[np.argmin(np.abs(np.log(ds.context.values / context)))])
        at = ds.sel(kappa=k, context=c)
        modes = dict(zip(ds.slo_mode.attrs["flag_values"].tolist(), ds.slo_mode.attrs["flag_meanings"].split()))
        lines = [
            f"under the SLO ({ds.slo_status.attrs['long_name'].split('(', 1)[1].split(')')[0]}) at kappa={k:g}, "
            f"isl {at.isl.item():g}, osl {at.osl.item():g}: $/Mtok of each mode on the hardware x GPUs where the "
            "cheaper one is lowest"
        ]
        for model in ds.model.values:
            for variant in ("moe", "dense"):
                one = at.sel(model=model, variant=variant).stack(place=("hardware", "num_gpus"))
                agg = one.slo_cost_per_mtok.values
                dis = one.slo_disaggregated_cost_per_mtok.values
                best = np.fmin(agg, dis)
                label = f"{model} ({'MoE' if variant == 'moe' else f'dense, kappa {k:g}'})"
                if not np.isfinite(best).any():
                    lines.append(f"  {label}: neither mode meets the SLO")
                    continue
                i = int(np.nanargmin(best))
                place, mode = one.place.values[i], modes[int(one.slo_mode.values[i])]
                share = float(one.slo_prefill_share.values[i])
                cells = [f"${v:.3g}" if np.isfinite(v) else "SLO not met" for v in (agg[i], dis[i])]
                share = f" (prefill share {share:.2f})" if np.isfinite(share) else ""
                lines.append(
                    f"  {label} on {place[0]}/{place[1]}: aggregated {cells[0]}, disaggregated {cells[1]}{share} "
                    f"-> {mode} is cheaper"
                )
    return "\n".join(lines)
