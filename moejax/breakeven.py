"""Break-even κ* over a grid: ``python -m moejax.breakeven +grid=quick``.

Writes ``breakeven.nc`` (dims model, hardware, num_gpus, context) into the Hydra run directory
(or ``out=PATH``), prints a summary, and ends with one JSON line. Solver: moejax.analysis.breakeven.
With ``grid.batches`` (the serving frontier) it also writes κ* at each interactivity level,
``kappa_star_frontier`` and ``dense_equivalent_params_frontier`` (dim ``interactivity`` added;
moejax.analysis.frontier_breakeven), and the JSON line gains ``frontier``.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from .analysis import frontier_breakeven as fb
from .analysis.breakeven import REASONS, solve, summary_json, to_dataset
from .catalogue import CONF_DIR
from .cli import grid_job, one_line_errors
from .engine.config import SweepConfig
from .engine.dataset import disk_full_is_one_line, publish, temp_name
from .engine.interrupts import deferred
from .engine.plan import build_plan, grid_accounting, partition_space_json, partition_space_note
from .schema import register
from .version import __version__

register()


def run(cfg: SweepConfig, out_path: Path) -> str:
    """Solve κ* (and κ*(u) along the frontier) over the grid on one plan, write ``out_path``; the report."""
    plan = build_plan(cfg.grid, False)
    out, coords, seconds = solve(cfg, plan)
    be = cfg.breakeven
    acc = grid_accounting(cfg.grid.accounting)
    attrs = {
        "title": f"moejax break-even kappa*: grid {cfg.grid.name}",
        "Conventions": "CF-1.10",
        "source": f"moejax {__version__}",
        "kappa_min": be.kappa_min,
        "kappa_max": be.kappa_max,
        "tolerance": be.tolerance,
        "bisection_steps": be.bisection_steps,
        "kappa_star_relative_precision": out["variable_attrs"]["kappa_star"]["relative_precision"],
        "partition_space": partition_space_json(cfg.grid),
        "dense_baseline_family": "keep-attention",
        "accounting_mode": acc.mode,
        "expert_traffic": acc.expert_traffic,
        "roofline": acc.roofline,
    }
    ds = to_dataset(out, coords, attrs)
    frontier = fb.solve_frontier(cfg, plan)  # None without grid.batches
    if frontier is not None:
        ds = ds.assign_coords(interactivity=(("interactivity",), *frontier[1]["interactivity"]))
        ds = ds.assign({name: v for name, v in fb.dataset_variables(frontier[0]).items()})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out_path)
    try:
        with disk_full_is_one_line("out", out_path, ds.nbytes), deferred():  # no signal raises inside HDF5
            ds.to_netcdf(tmp, engine="netcdf4")
        publish(tmp, out_path, bool(cfg.overwrite))
    finally:
        tmp.unlink(missing_ok=True)
    result = summary_json(out, seconds)
    if frontier is not None:
        result["frontier"] = fb.summary_json(frontier[0], frontier[2])
    lines = [
        f"wrote {out_path}",
        *filter(None, [partition_space_note(attrs["partition_space"])]),
        f"{'model':<18} {'median kappa*':>14} {'found':>7} {'optax off':>9}  no crossing",
    ]
    for i, model in enumerate(coords["model"][0]):
        r, k = out["reason"][i], out["kappa_star"][i]
        found = r == 0
        med = f"{np.median(k[found]):.3g}" if found.any() else "-"
        others = ", ".join(f"{REASONS[j]} {int((r == j).sum())}" for j in range(1, len(REASONS)) if (r == j).any())
        lines.append(f"{model:<18} {med:>14} {int(found.sum()):>7} {int(found.sum() - out['agrees'][i].sum()):>9}  {others}")
    if frontier is not None:
        lines += fb.report(frontier[0], frontier[1])
    lines.append(json.dumps(result))
    return "\n".join(lines)


@one_line_errors
@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    grid_job(cfg, "breakeven.nc", run, kappa_star=True)


if __name__ == "__main__":
    main()
