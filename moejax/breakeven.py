"""Break-even κ* over a grid: ``python -m moejax.breakeven +grid=quick``.

Writes ``breakeven.nc`` (dims model, hardware, num_gpus, context) into the Hydra run directory
(or ``out=PATH``), prints a summary, and ends with one JSON line. Solver: moejax.analysis.breakeven.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import hydra
import jax.numpy as jnp
import numpy as np
import xarray as xr
from omegaconf import DictConfig

from . import __version__
from .analysis.breakeven import REASONS, Solver, breakeven_kernel
from .config import validate_breakeven, validate_grid
from .grid import PartitionSpace, cast, chunks, device_inputs, partition_table
from .specs import SpecError
from .sweep import build_plan, grid_job

GRID4 = ("model", "hardware", "num_gpus", "context")
OUTPUTS = {  # name -> (units, long_name)
    "kappa_star": ("1", "break-even quality factor: the kappa-matched dense baseline serves the MoE's throughput "
                        "(optax solve; NaN where there is no crossing, see reason)"),
    "kappa_star_bisection": ("1", "kappa* by bracketing bisection on the exact model (cross-check)"),
    "ratio_at_kappa_star": ("1", "exact dense/MoE throughput ratio at kappa_star"),
    "agrees": (None, "optax and bisection agree within the tolerance"),
    "reason": (None, "why kappa_star is or is not defined"),
    "moe_throughput_per_gpu": ("s-1", "MoE decode tokens per second per GPU at its best partition"),
}


def solve(cfg: DictConfig) -> tuple[dict, dict, float]:
    """κ* for every (MoE model, hardware, num_gpus, context) of ``cfg.grid``:
    (arrays by output name, coords, seconds)."""
    validate_grid(cfg.grid, cfg.precision)
    validate_breakeven(cfg.breakeven)
    plan = build_plan(cfg.grid, False)
    moe = plan.row_map[:, 0, 0]
    sparse = plan.inputs.rows.n_experts[moe] > 1
    if not sparse.any():
        raise SpecError(f"grid.models = {list(cfg.grid.models)} is invalid: kappa* needs at least one MoE model (n_experts > 1)")
    space = PartitionSpace(**{k: tuple(v) for k, v in cfg.grid.partitions.items()})
    dense_table, dense_mask = partition_table([int(n) for n in cfg.grid.num_gpus], dataclasses.replace(space, ep=(1,)))
    inputs = dataclasses.replace(plan.inputs.take("row", moe), dense_partitions=dense_table, dense_partition_mask=dense_mask)
    be = cfg.breakeven
    solver = Solver(int(be.bisection_steps), int(be.rounds), int(be.adam_steps), float(be.learning_rate), float(be.tolerance))
    kernel = breakeven_kernel(solver)
    dtype = np.float64 if cfg.precision == "float64" else np.float32
    shared = (jnp.asarray(plan.batch, dtype), cast(plan.accounting, dtype), jnp.asarray(np.log(be.kappa_min), dtype),
              jnp.asarray(np.log(be.kappa_max), dtype))
    shape = tuple(inputs.shape[a] for a in ("row", "hardware", "num_gpus", "context"))
    out = {name: np.zeros(shape, dtype=bool if name == "agrees" else np.int8 if name == "reason" else dtype) for name in OUTPUTS}
    start = time.perf_counter()
    for _, axis, positions, sub, trim in chunks(inputs, cfg.max_chunk_evaluations):
        results = kernel(*device_inputs(sub, dtype), *shared)
        index = (slice(None),) * ("row", "hardware", "num_gpus", "context").index(axis) + (positions,)
        for name, values in zip(OUTPUTS, results):
            out[name][index] = trim(values)
    seconds = time.perf_counter() - start
    dense_models = ~sparse  # a dense "MoE" has no κ-matched comparison to make
    out["reason"][dense_models] = REASONS.index("moe_infeasible")
    for name in ("kappa_star", "kappa_star_bisection", "ratio_at_kappa_star"):
        out[name][dense_models] = np.nan
    out["agrees"][dense_models] = False
    coords = {d: plan.coords[d] for d in GRID4}
    return out, coords, seconds


def to_dataset(out: dict, coords: dict, attrs: dict) -> xr.Dataset:
    data = {}
    for name, (units, long_name) in OUTPUTS.items():
        a = {"long_name": long_name}
        if name == "reason":
            a.update(flag_values=np.arange(len(REASONS), dtype=np.int8), flag_meanings=" ".join(REASONS))
        elif name == "agrees":
            a.update(flag_values=np.array([0, 1], np.int8), flag_meanings="flagged agrees")
        else:
            a["units"] = units
        values = out[name].astype(np.int8) if name == "agrees" else out[name]
        data[name] = (GRID4, values, a)
    return xr.Dataset(data, coords={d: (d, v, a) for d, (v, a) in coords.items()}, attrs=attrs)


def summary_json(out: dict, seconds: float) -> dict:
    reason = out["reason"]
    found = reason == 0
    k = out["kappa_star"][found]
    return {"points": int(reason.size), "found": int(found.sum()), "agree": int(out["agrees"].sum()),
            "flagged": int(found.sum() - out["agrees"].sum()),
            "median_kappa_star": float(np.median(k)) if k.size else None,
            "reasons": {r: int((reason == i).sum()) for i, r in enumerate(REASONS)}, "seconds": seconds}


def run(cfg: DictConfig, out_path: Path) -> str:
    out, coords, seconds = solve(cfg)
    be = cfg.breakeven
    attrs = {"title": f"moejax break-even kappa*: grid {cfg.grid.name}", "Conventions": "CF-1.10",
             "source": f"moejax {__version__}", "kappa_min": be.kappa_min, "kappa_max": be.kappa_max,
             "tolerance": be.tolerance, "dense_baseline_family": "keep-attention",
             "expert_traffic": cfg.grid.accounting.expert_traffic, "roofline": cfg.grid.accounting.roofline}
    ds = to_dataset(out, coords, attrs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, out_path)
    result = summary_json(out, seconds)
    lines = [f"wrote {out_path}", f"{'model':<18} {'median kappa*':>14} {'found':>7} {'flagged':>8}  no crossing"]
    for i, model in enumerate(coords["model"][0]):
        r, k = out["reason"][i], out["kappa_star"][i]
        found = r == 0
        med = f"{np.median(k[found]):.3g}" if found.any() else "-"
        others = ", ".join(f"{REASONS[j]} {int((r == j).sum())}" for j in range(1, len(REASONS)) if (r == j).any())
        lines.append(f"{model:<18} {med:>14} {int(found.sum()):>7} {int(found.sum() - out['agrees'][i].sum()):>8}  {others}")
    lines.append(json.dumps(result))
    return "\n".join(lines)


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    grid_job(cfg, "breakeven.nc", run)


if __name__ == "__main__":
    main()
