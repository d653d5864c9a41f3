"""Break-even along the serving frontier: κ*(u), the κ at which the κ-matched dense baseline,
at its own frontier, serves the MoE's frontier throughput per GPU at interactivity level ``u``.

At level ``u`` (tokens/s per user) each model's frontier is its best throughput per GPU over
every (partition, batch) candidate reaching ≥ ``u`` (moejax/engine/frontier.py; batches are
B_max and ``grid.batches``). The dense baseline's frontier is searched afresh at each κ (its own
partition and batch), over the ep = 1 candidates, as ``kappa_star`` does at B_max. "Is the MoE
cheaper?" becomes a curve: at ``u`` the MoE costs less per token than every dense model above
``P_dense(κ*(u)) = κ*·ρ·P_total`` parameters (``dense_equivalent_params_frontier``), the
MoE's dense-equivalent size in the cost sense (Epoch's question, asked per interactivity level).

Solver: per level, the same bracketing bisection on log κ as ``kappa_star`` (same bracket
``[κ_lo, κ_max]``, steps, reasons), all levels of all points at once: each step evaluates every
dense candidate at each level's own midpoint κ (a [level, partition, batch] block per point).

Monotonicity. For a fixed (partition, batch b) candidate a larger κ only adds weights: the step
time grows, so its throughput per GPU (``b·u/GPUs per replica``) and tokens/s per user both
fall, and memory only tightens, so the set of candidates reaching ``u`` shrinks. The frontier
over fixed batches is therefore non-increasing in κ: at most one crossing. The B_max column is
the exception: B_max(κ) falls as κ grows, and a smaller batch steps faster, so a B_max candidate
can climb *into* level ``u`` at a larger κ; on a finite batch set the dense frontier can then
rise with κ (a dense model of every batch between would rule this out). Where that happens the
bisection still keeps ``dense(lo) > MoE ≥ dense(hi)`` at every step, so ``kappa_star_frontier``
is a true crossing (dense ahead just below, behind just above, to the stated precision), though
not necessarily the only one. Measured on ``+grid=quick grid.batches=[1,4,16,64,256]`` (a scan of
97 κ from 0.5 to 64 at all 429 levels the MoE reaches): the dense frontier rises somewhere with
κ at 80 levels (by > 10 % at 23), yet only 2 levels (Mixtral-8x22B, H100, 64k context, 25
tokens/s/user) cross the MoE's frontier more than once. Where the dense baseline stops reaching ``u`` inside the bracket
its frontier drops to 0 there: the crossing is that step, and ``ratio_at_kappa_star_frontier``
(far from 1) shows it.

Reasons per level, as ``kappa_star``'s: found; below_kappa_min (MoE ahead already at κ_lo);
above_kappa_max (dense still ahead at κ_max); moe_infeasible (the MoE cannot reach ``u`` on this
point: its frontier status is not reached); dense_infeasible (the dense baseline cannot reach
``u`` even at κ_lo, its smallest).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..engine.config import SweepConfig
from ..engine.grid import cast, chunks, device_inputs, lift
from ..engine.variables import GRID4, KAPPA_STAR_FRONTIER, REASONS
from ..physics.baseline import dense_size, keep_attention
from ..physics.cost import decode_point
from ..physics.specs import Workload
from .breakeven import attributes, bisect_crossing, kappa_exists, problem

DIMS = (*GRID4, "interactivity")
OUTPUTS = KAPPA_STAR_FRONTIER  # registered in engine/variables.py, in the order the kernel returns them


def candidates(m, hw, parts, pmask, context, columns, acc):
    """[P, K] throughput per GPU (-1 where illegal or infeasible) and tokens/s per user (0 there)
    of every (partition, batch column) candidate; column batch 0 is B_max."""

    def one(p, ok):
        def at(b):
            r = decode_point(m, hw, p, Workload(context=context, batch=b), acc)
            good = ok & r.feasible
            return jnp.where(good, r.throughput_per_gpu, -1.0), jnp.where(good, r.tokens_per_s_per_user, 0.0)

        return jax.vmap(at)(columns)

    return jax.vmap(one)(parts, pmask)


def frontier_at(x, u, level):
    """The frontier at one level: the best throughput per GPU among candidates with tokens/s
    per user ≥ ``level``; 0 where none reaches it. Candidates (x, u) = (10, 5), (30, 2), (-1, 0):
    level 1 → 30, level 4 → 10, level 6 → 0."""
    return jnp.maximum(jnp.max(jnp.where(u >= level, x, -1.0)), 0.0)


def frontier_breakeven_point(m, hw, parts, pmask, context, columns, levels, acc, log_kmin, log_kmax, steps: int):
    """κ*(u) at every level of one point: (kappa_star_frontier [L], reason [L], dense-equivalent
    params [L], exact ratio at κ* [L], MoE frontier [L]). ``parts``/``pmask``: (all, dense) pairs."""
    (parts, dense_parts), (pmask, dense_mask) = parts, pmask
    x, u = candidates(m, hw, parts, pmask, context, columns, acc)
    t_moe = jax.vmap(frontier_at, in_axes=(None, None, 0))(x, u, levels)

    def dense(log_kappa):  # [L] log κ, one per level -> the dense frontier at each level at its own κ
        def one(lk, level):
            dx, du = candidates(keep_attention(m, jnp.exp(lk)), hw, dense_parts, dense_mask, context, columns, acc)
            return frontier_at(dx, du, level)

        return jax.vmap(one)(log_kappa, levels)

    x_lo = jnp.maximum(log_kmin, jnp.log(kappa_exists(m)) + 1e-3) * jnp.ones_like(levels)
    x_hi = jnp.asarray(log_kmax, levels.dtype) * jnp.ones_like(levels)

    x_star, d_star, reason = bisect_crossing(dense, t_moe, x_lo, x_hi, steps)
    found = reason == 0
    k_star = jnp.where(found, jnp.exp(x_star), jnp.nan)
    ratio = jnp.where(found, d_star / jnp.maximum(t_moe, 1e-30), jnp.nan)
    return k_star, reason, dense_size(m, k_star), ratio, jnp.where(t_moe > 0, t_moe, jnp.nan)


@functools.cache
def frontier_breakeven_kernel(steps: int):
    """``f(moe_rows, hardware, tables, masks, contexts, columns, levels, acc, log_kmin, log_kmax)`` over the grid."""
    return jax.jit(lift(functools.partial(frontier_breakeven_point, steps=steps)))


def solve_frontier(cfg: SweepConfig, plan=None) -> tuple[dict, dict, float] | None:
    """κ*(u) for every (MoE model, hardware, num_gpus, context) of ``cfg.grid`` and every level of
    its interactivity axis, on the grid's ``plan`` (built here when not given): (arrays by output
    name, coords, seconds); None when the grid has no frontier (neither ``grid.batches`` nor an SLO)."""
    prob = problem(cfg, plan)
    plan, be = prob.plan, cfg.breakeven
    spec = plan.frontier
    if spec is None:
        return None
    dtype = prob.dtype
    columns, levels = np.asarray(spec.columns), np.asarray(spec.levels)
    kernel = frontier_breakeven_kernel(prob.solver.bisection_steps)
    shared = (
        jnp.asarray(columns, dtype),
        jnp.asarray(levels, dtype),
        cast(plan.accounting, dtype),
        jnp.asarray(np.log(be.kappa_min), dtype),
        jnp.asarray(np.log(be.kappa_max), dtype),
    )
    shape = tuple(prob.inputs.shape[a] for a in ("row", "hardware", "num_gpus", "context")) + (len(levels),)
    out = {name: np.zeros(shape, dtype=np.int8 if name.endswith("reason") else dtype) for name in OUTPUTS}
    # a chunk's work: every candidate at every batch column and level (the dense block per step)
    budget = max(1, cfg.max_chunk_evaluations // (len(columns) * len(levels)))
    start = time.perf_counter()
    for _, axis, positions, sub, trim in chunks(prob.inputs, budget):
        results = kernel(*device_inputs(sub, dtype), *shared)
        index = (slice(None),) * ("row", "hardware", "num_gpus", "context").index(axis) + (positions,)
        for name, values in zip(OUTPUTS, results):
            out[name][index] = trim(values)
    seconds = time.perf_counter() - start
    dense_models = ~prob.sparse  # a dense "MoE" has no κ-matched comparison to make
    out["kappa_star_frontier_reason"][dense_models] = REASONS.index("moe_infeasible")
    for name in OUTPUTS:
        if not name.endswith("reason"):
            out[name][dense_models] = np.nan
    coords = {d: plan.coords[d] for d in GRID4}
    coords["interactivity"] = (levels, {"units": "s-1", "long_name": "output tokens per second per user (level)"})
    out["variable_attrs"] = {
        "kappa_star_frontier": {
            "relative_precision": prob.precision,
            "bisection_steps": prob.solver.bisection_steps,
            "kappa_min": float(be.kappa_min),
            "kappa_max": float(be.kappa_max),
            "batches": columns[1:],
        }
    }
    return out, coords, seconds


def dataset_variables(out: dict) -> dict:
    """name -> (dims, values, attrs) of the κ*(u) variables (flags carry flag_values/meanings)."""
    return {name: (DIMS, out[name], attributes(out, var)) for name, var in OUTPUTS.items()}


def summary_json(out: dict, seconds: float) -> dict:
    reason = out["kappa_star_frontier_reason"]
    return {
        "levels": int(reason.size),
        "found": int((reason == 0).sum()),
        "reasons": {r: int((reason == i).sum()) for i, r in enumerate(REASONS)},
        "seconds": seconds,
    }


REPORT_LEVELS = (1.0, 20.0, 50.0, 200.0)  # tokens/s per user: the bulk end, slow, interactive, fast decode


def report(out: dict, coords: dict, levels=REPORT_LEVELS) -> list[str]:
    """Lines for the command's report: per model, the median κ*(u) over the points where it is
    found at the axis levels nearest ``levels`` (``-`` where none is), with how many were found."""
    axis = coords["interactivity"][0]
    picks = sorted({int(np.argmin(np.abs(np.log(axis / lev)))) for lev in levels})
    head = "".join(f"{f'u>={axis[i]:.3g}':>16}" for i in picks)
    lines = [
        "kappa* along the frontier (median over points where found, found/points; u in tokens/s/user)",
        f"{'model':<18}{head}",
    ]
    for m, model in enumerate(coords["model"][0]):
        cells = []
        for i in picks:
            k, r = out["kappa_star_frontier"][m, ..., i], out["kappa_star_frontier_reason"][m, ..., i]
            found = r == 0
            med = f"{np.median(k[found]):.3g}" if found.any() else "-"
            cells.append(f"{med} ({int(found.sum())}/{r.size})")
        lines.append(f"{model:<18}" + "".join(f"{c:>16}" for c in cells))
    return lines
