"""The qs paper's Table 3 columns for every grid point that pairs an MoE with its κ-matched dense
baseline: ρ, ρκ, B_MoE, B_dense, R_MoE = B_MoE·ρ, R_dense = B_dense, routing factor E/k,
capacity factor B_dense/B_MoE, total reuse gap, and the dense/MoE throughput ratio.

Example (paper Table 3, DeepSeek-V3 on 32 GPUs): ρ = 8/256 = 0.03125, ρκ = 0.156 at κ = 5;
B = 100 / 130 → R_MoE = 3.125, R_dense = 130, routing 32, capacity 1.30, gap 41.6.
"""

from __future__ import annotations

import numpy as np

from ..engine.dataset import create_variable
from ..engine.variables import QS, QS_GRID, REGISTRY
from . import frontier_breakeven
from .breakeven import OUTPUTS, solve, to_dataset
from .validation.sweep_intervals import interval_writer

GRID = QS_GRID  # the columns are registered in engine/variables.py (QS)


def qs_columns(batch, throughput, feasible, n_experts, top_k, kappa) -> dict[str, np.ndarray]:
    """Table 3 columns from the sweep's ``(model, variant, kappa, hardware, num_gpus, context)``
    arrays (variant 0 = MoE, 1 = dense) and per-model ``n_experts``, ``top_k`` and ``kappa``."""
    e, k = np.asarray(n_experts, float), np.asarray(top_k, float)
    rho = k / e
    ok = np.asarray(feasible, bool)
    b_moe, b_dense = np.where(ok[:, 0], batch[:, 0], 0.0), np.where(ok[:, 1], batch[:, 1], 0.0)
    both = ok[:, 0] & ok[:, 1]
    col = (slice(None),) + (None,) * 4
    with np.errstate(divide="ignore", invalid="ignore"):
        capacity = np.where(both, b_dense / b_moe, np.nan)
        ratio = np.where(both, throughput[:, 1] / throughput[:, 0], np.nan)
    return {
        "n_experts": e,
        "top_k": k,
        "rho": rho,
        "rho_kappa": rho[:, None] * np.asarray(kappa, float)[None, :],
        "routing_factor": e / k,
        "b_moe": b_moe,
        "b_dense": b_dense,
        "r_moe": b_moe * rho[col],
        "r_dense": b_dense,
        "capacity_factor": capacity,
        "reuse_gap": (e / k)[col] * capacity,
        "dense_moe_ratio": ratio,
    }


def qs_writer(plan, kappa_star: dict | None = None, kappa_star_frontier: dict | None = None):
    """A function that adds the Table 3 columns of a sweep ``plan`` (an ``engine.plan.SweepPlan``)
    and, if given, the κ* variables (see ``moejax.analysis.breakeven``) and κ*(interactivity)
    (``frontier_breakeven``) to the open netCDF dataset."""

    def derive(nc) -> None:
        float_dtype = str(nc["throughput_per_gpu"].dtype)
        if kappa_star_frontier is not None:
            for name, (_, values, attrs) in frontier_breakeven.dataset_variables(kappa_star_frontier).items():
                create_variable(nc, REGISTRY[name], float_dtype, values, attrs=attrs, nan_fill=False)
        if kappa_star is not None:
            ds = to_dataset(kappa_star, {}, {})
            for name in OUTPUTS:
                create_variable(nc, REGISTRY[name], float_dtype, ds[name].values, attrs=dict(ds[name].attrs), nan_fill=False)
        moe_rows = plan.inputs.rows
        moe = plan.row_map[:, 0, 0]
        cols = qs_columns(
            nc["batch"][:].filled(np.nan),
            nc["throughput_per_gpu"][:].filled(np.nan),
            nc["feasible"][:].filled(0),
            moe_rows.n_experts[moe],
            moe_rows.top_k[moe],
            nc["kappa"][:],
        )
        for name, var in QS.items():
            create_variable(nc, var, float_dtype, np.asarray(cols[name], dtype=float_dtype))

    return derive


def sweep_columns(cfg):
    """The main job's derived columns for ``engine.run.run``: the Table 3 columns, the 80 % prediction
    intervals (``validation.sweep_intervals``), plus κ* when
    ``cfg.breakeven.include`` asks for it (solved once the sweep's parts are written), and with
    ``grid.batches`` κ* along the frontier), on the sweep's own plan."""

    def derive(plan):
        if not cfg.breakeven.include:
            columns = qs_writer(plan)
        else:
            frontier = frontier_breakeven.solve_frontier(cfg, plan)
            columns = qs_writer(plan, solve(cfg, plan)[0], frontier[0] if frontier is not None else None)
        bounds = interval_writer(cfg.grid.accounting, [str(h) for h in plan.coords["hardware"][0]])

        def write(nc) -> None:
            columns(nc)
            bounds(nc)

        return write

    return derive
