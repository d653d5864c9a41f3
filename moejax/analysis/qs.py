"""The qs paper's Table 3 columns for every grid point that pairs an MoE with its κ-matched dense
baseline: ρ, ρκ, B_MoE, B_dense, R_MoE = B_MoE·ρ, R_dense = B_dense, routing factor E/k,
capacity factor B_dense/B_MoE, total reuse gap, and the dense/MoE throughput ratio.

Example (paper Table 3, DeepSeek-V3 on 32 GPUs): ρ = 8/256 = 0.03125, ρκ = 0.156 at κ = 5;
B = 100 / 130 → R_MoE = 3.125, R_dense = 130, routing 32, capacity 1.30, gap 41.6.
"""

from __future__ import annotations

import numpy as np

from . import frontier_breakeven
from .breakeven import GRID4, OUTPUTS, solve, to_dataset

GRID = ("model", "kappa", "hardware", "num_gpus", "context")
# name -> (dims, units, long_name)
QS_VARIABLES = {
    "n_experts": (("model",), "1", "routed experts per MoE layer, E"),
    "top_k": (("model",), "1", "experts chosen per token, k"),
    "rho": (("model",), "1", "sparsity rho = k/E"),
    "rho_kappa": (("model", "kappa"), "1", "qs product rho*kappa: below 1 the MoE moves more FFN weight bytes per token"),
    "routing_factor": (("model",), "1", "routing factor E/k"),
    "b_moe": (GRID, "1", "MoE batch B_MoE at its best partition (0 where infeasible)"),
    "b_dense": (GRID, "1", "dense-baseline batch B_dense at its best partition (0 where infeasible)"),
    "r_moe": (GRID, "1", "MoE weight reuse R_MoE = B_MoE*rho"),
    "r_dense": (GRID, "1", "dense weight reuse R_dense = B_dense"),
    "capacity_factor": (GRID, "1", "capacity factor B_dense/B_MoE (NaN unless both are feasible)"),
    "reuse_gap": (GRID, "1", "total reuse gap R_dense/R_MoE = routing x capacity (NaN unless both are feasible)"),
    "dense_moe_ratio": (GRID, "1", "dense over MoE throughput per GPU (NaN unless both are feasible)"),
}


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
        "n_experts": e, "top_k": k, "rho": rho,
        "rho_kappa": rho[:, None] * np.asarray(kappa, float)[None, :],
        "routing_factor": e / k,
        "b_moe": b_moe, "b_dense": b_dense,
        "r_moe": b_moe * rho[col], "r_dense": b_dense,
        "capacity_factor": capacity, "reuse_gap": (e / k)[col] * capacity,
        "dense_moe_ratio": ratio,
    }


def qs_writer(plan, kappa_star: dict | None = None, kappa_star_frontier: dict | None = None):
    """A function that adds the Table 3 columns of a sweep ``plan`` (an ``engine.plan.SweepPlan``)
    and, if given, the κ* variables (see ``moejax.analysis.breakeven``) and κ*(interactivity)
    (``frontier_breakeven``) to the open netCDF dataset."""
    def derive(nc) -> None:
        if kappa_star_frontier is not None:
            for name, (dims, values, attrs) in frontier_breakeven.dataset_variables(kappa_star_frontier).items():
                var = nc.createVariable(name, values.dtype, dims, zlib=True, complevel=4)
                var[:] = values
                var.setncatts(attrs)
        if kappa_star is not None:
            ds = to_dataset(kappa_star, {}, {})
            for name in OUTPUTS:
                var = nc.createVariable(name, ds[name].dtype, GRID4, zlib=True, complevel=4)
                var[:] = ds[name].values
                var.setncatts({k: v for k, v in ds[name].attrs.items()})
        moe_rows = plan.inputs.rows
        moe = plan.row_map[:, 0, 0]
        cols = qs_columns(nc["batch"][:].filled(np.nan), nc["throughput_per_gpu"][:].filled(np.nan),
                          nc["feasible"][:].filled(0), moe_rows.n_experts[moe], moe_rows.top_k[moe], nc["kappa"][:])
        for name, (dims, units, long_name) in QS_VARIABLES.items():
            values = np.asarray(cols[name], dtype=nc["throughput_per_gpu"].dtype)
            var = nc.createVariable(name, values.dtype, dims, zlib=True, complevel=4, fill_value=np.nan)
            var[:] = values
            var.setncatts({"units": units, "long_name": long_name})
    return derive


def sweep_columns(cfg):
    """The main job's derived columns for ``engine.run.run``: the Table 3 columns, plus κ* when
    ``cfg.breakeven.include`` asks for it (solved once the sweep's parts are written), and with
    ``grid.batches`` κ* along the frontier."""
    def derive(plan):
        if not cfg.breakeven.include:
            return qs_writer(plan)
        frontier = frontier_breakeven.solve_frontier(cfg)
        return qs_writer(plan, solve(cfg)[0], frontier[0] if frontier is not None else None)
    return derive
