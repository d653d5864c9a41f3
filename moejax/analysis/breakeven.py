"""Break-even quality factor κ*: the κ at which the κ-matched dense baseline (at its best feasible
partition) serves exactly the MoE's throughput per GPU.

The dense baseline's throughput falls as κ grows (more parameters: fewer sequences fit and each
step reads more), so ``g(κ) = T_dense(κ) − T_MoE`` has at most one sign change. Two solvers run
per grid point, vectorised over the whole grid:

- **bisection** on the exact model (integer B_max, full partition search at each κ), bracketing
  ``[κ_lo, κ_max]`` on log κ: this is ``kappa_star``. Its relative precision,
  ``relative_precision(κ_min, κ_max, steps)`` (4.2e-5 with the defaults), is stored in the
  variable's attrs; fewer steps than ``tolerance`` needs are refused.
- **optax** on ``x = log κ`` (``kappa_star_optax``, a diagnostic): Adam with a cosine-decayed
  rate minimises ``(log T_dense(x) − log T_MoE)²``, straight-through: the residual is the exact
  model's, its gradient the relaxed model's (continuous B_max — the floor has no gradient); the
  best partition is re-searched at the current κ each round and held fixed within it (envelope
  theorem). ``agrees`` says whether it lands within ``tolerance`` of the bisection; where the
  dense baseline stops fitting the gradient vanishes and it can stall far away.

``κ_lo`` is ``κ_min`` raised to just above the smallest κ whose keep-attention baseline exists
(``κ·ρ·P_total`` must exceed the kept attention and embeddings). A crossing at or beyond a bound
is never reported as found: ``kappa_star`` is NaN and ``reason`` says where it lies
(``below_kappa_min``: the MoE is ahead already at κ_lo; ``above_kappa_max``: the dense baseline
is still ahead at κ_max) or which side is infeasible.

Example (tests/test_breakeven.py): DeepSeek-V3 in FP8 on 8×B200 at 64k context (the quick grid's
partition space, speed of light): κ* ≈ 30.9, i.e. only a dense model of 30.9 × 8/256 × 671 B
≈ 650 B parameters is as slow as DeepSeek-V3 there — at the paper's κ = 5 the dense baseline is
2.2× faster.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from ..engine.config import SweepConfig
from ..engine.grid import (
    GridInputs,
    best_partition,
    cast,
    chunks,
    device_inputs,
    lift,
    lift_flat,
    partition_table,
)
from ..engine.plan import SweepPlan, build_plan
from ..engine.variables import GRID4, KAPPA_STAR, REASONS
from ..physics import arch
from ..physics.baseline import keep_attention, kept_params
from ..physics.cost import decode_point
from ..physics.specs import Accounting, SpecError, Workload


@dataclasses.dataclass(frozen=True)
class Solver:
    """Static solver settings."""

    bisection_steps: int = 16
    rounds: int = 6
    adam_steps: int = 60
    learning_rate: float = 0.2
    tolerance: float = 1e-3


def kappa_exists(m):
    """Smallest κ whose keep-attention dense baseline has a positive FFN: kept / (ρ·P_total)."""
    total, _ = arch.param_counts(m)
    return kept_params(m) / (m.top_k / m.n_experts * total)


def _dense_tput(m, x, hw, parts, pmask, wl, acc):
    """Best-partition throughput per GPU of the dense baseline at κ = exp(x) (0 if infeasible)."""
    _, score, _ = best_partition(keep_attention(m, jnp.exp(x)), hw, parts, pmask, wl, acc)
    return jnp.maximum(score, 0.0)


def _optax_solve(m, hw, parts, pmask, wl, acc, t_moe, x0, x_lo, x_hi, solver: Solver):
    """log κ with log T_dense(κ) = log T_MoE, by Adam on the squared residual.

    Straight-through: the residual's value is the exact model's (integer B_max), its gradient the
    relaxed model's (continuous B_max), so the exact equation is solved with usable gradients.
    """
    total = solver.rounds * solver.adam_steps
    opt = optax.adam(optax.cosine_decay_schedule(solver.learning_rate, total, alpha=1e-4))
    relaxed = dataclasses.replace(acc, integer_batch=False)

    def log_tput(x, p, accounting):
        d = decode_point(keep_attention(m, jnp.exp(x)), hw, p, wl, accounting).throughput_per_gpu
        return jnp.log(jnp.maximum(d, 1e-30))

    def loss(x, p):
        smooth = log_tput(x, p, relaxed)
        residual = smooth + jax.lax.stop_gradient(log_tput(x, p, acc) - smooth) - jnp.log(t_moe)
        return residual**2

    def one_round(_, carry):
        x, state = carry
        p, _, _ = best_partition(keep_attention(m, jnp.exp(x)), hw, parts, pmask, wl, acc)

        def step(_, c):
            x, state = c
            updates, state = opt.update(jax.grad(loss)(x, p), state)
            return jnp.clip(optax.apply_updates(x, updates), x_lo, x_hi), state

        return jax.lax.fori_loop(0, solver.adam_steps, step, (x, state))

    x, _ = jax.lax.fori_loop(0, solver.rounds, one_round, (x0, opt.init(x0)))
    return x


def bisect_crossing(dense, t_moe, x_lo, x_hi, steps: int):
    """(x*, dense(x*), reason): ``steps`` bisections on x = log κ of the crossing of ``dense(x)``
    (falling in x) with ``t_moe``, inside [x_lo, x_hi]. ``reason`` indexes ``REASONS``; the
    crossing must lie strictly inside the bracket, so a bound is never reported as found.

    One loop with one ``dense`` evaluation per pass (traced and compiled once): pass 0 at x_lo,
    1 at x_hi, then the bisections, and a last pass at the final midpoint x*.
    """

    def step(i, carry):
        lo, hi, d_lo, d_hi, _ = carry
        mid = 0.5 * (lo + hi)
        d = dense(jnp.where(i == 0, x_lo, jnp.where(i == 1, x_hi, mid)))
        ahead = d > t_moe  # dense still faster: the crossing is above mid
        bisecting = (i >= 2) & (i < steps + 2)
        lo, hi = jnp.where(bisecting & ahead, mid, lo), jnp.where(bisecting & ~ahead, mid, hi)
        return lo, hi, jnp.where(i == 0, d, d_lo), jnp.where(i == 1, d, d_hi), d

    zero = jnp.zeros_like(t_moe)  # throughputs may be wider than log κ (float64 model, float32 bracket)
    lo, hi, d_lo, d_hi, d_star = jax.lax.fori_loop(0, steps + 3, step, (x_lo, x_hi, zero, zero, zero))
    reason = jnp.select([t_moe <= 0, x_lo >= x_hi, d_lo <= 0, d_lo <= t_moe, d_hi >= t_moe], [3, 4, 4, 1, 2], 0)
    return 0.5 * (lo + hi), d_star, reason.astype(jnp.int8)


def breakeven_point(m, hw, parts, pmask, context, batch, acc: Accounting, log_kmin, log_kmax, solver: Solver):
    """κ* and diagnostics at one grid point: (kappa_star, kappa_star_optax, exact ratio at κ*,
    agrees, reason, MoE throughput per GPU). κ* is the bisection's (exact model); NaN unless
    ``reason`` is found. ``parts``/``pmask`` are (all candidates, dense-legal candidates) pairs:
    the dense baseline is searched over the ep = 1 candidates only."""
    wl = Workload(context=context, batch=batch)
    (parts, dense_parts), (pmask, dense_mask) = parts, pmask
    t_moe = jnp.maximum(best_partition(m, hw, parts, pmask, wl, acc)[1], 0.0)
    x_lo = jnp.maximum(log_kmin, jnp.log(kappa_exists(m)) + 1e-3)
    x_hi = jnp.asarray(log_kmax, x_lo.dtype)
    dense = functools.partial(_dense_tput, m, hw=hw, parts=dense_parts, pmask=dense_mask, wl=wl, acc=acc)

    x_star, d_star, reason = bisect_crossing(dense, t_moe, x_lo, x_hi, solver.bisection_steps)
    x0 = 0.5 * (x_lo + x_hi)
    x_opt = _optax_solve(m, hw, dense_parts, dense_mask, wl, acc, jnp.maximum(t_moe, 1e-30), x0, x_lo, x_hi, solver)
    k_star, k_opt = jnp.exp(x_star), jnp.exp(x_opt)
    ratio = d_star / jnp.maximum(t_moe, 1e-30)
    found = reason == 0
    agrees = found & (jnp.abs(k_opt / k_star - 1) <= solver.tolerance)
    nan = jnp.nan
    return (jnp.where(found, k_star, nan), jnp.where(found, k_opt, nan), jnp.where(found, ratio, nan), agrees, reason, t_moe)


#: below this many grid points the κ* kernel is lifted flat (``lift_flat``): it compiles in
#: 10 s instead of 17 s but runs at 1.2 ms instead of 0.45 ms per point (bench, 20,160 points,
#: 2-core CPU), so it wins below about 7 s / 0.7 ms ≈ 10,000 points.
FLAT_BELOW = 10_000


@functools.cache
def breakeven_kernel(solver: Solver, flat: bool = False):
    """``f(moe_rows, hardware, tables, masks, contexts, batch, acc, log_kmin, log_kmax)`` over the grid
    (``flat``: lifted by ``lift_flat``, same results, faster to compile, slower to run)."""
    return jax.jit((lift_flat if flat else lift)(functools.partial(breakeven_point, solver=solver)))


def relative_precision(kappa_min: float, kappa_max: float, steps: int) -> float:
    """Bound on |κ*/κ_exact − 1| after ``steps`` bisections of [κ_min, κ_max] on log κ: the
    midpoint of the final bracket is within half its width, exp(log(κ_max/κ_min)/2^(steps+1)) − 1.

    >>> round(relative_precision(0.25, 64.0, 16), 7)   # the defaults: 4.2e-5
    4.23e-05
    """
    return float(np.expm1(np.log(kappa_max / kappa_min) / 2 ** (steps + 1)))


OUTPUTS = KAPPA_STAR  # registered in engine/variables.py, in the order the kernel returns them


@dataclasses.dataclass(frozen=True)
class Problem:
    """A validated κ* problem: the grid's plan, the MoE rows' inputs with the dense (ep = 1)
    candidates, which rows are sparse, the solver settings and the bisection's precision."""

    plan: object
    inputs: GridInputs
    sparse: np.ndarray
    solver: Solver
    precision: float
    dtype: type


def problem(cfg: SweepConfig, plan: SweepPlan | None = None) -> Problem:
    """Resolve the validated ``cfg.grid`` and ``cfg.breakeven`` (one-line ``SpecError``s where the
    grid cannot have a κ*) on the sweep's ``plan`` (built here when not given)."""
    plan = build_plan(cfg.grid, False) if plan is None else plan
    moe = plan.row_map[:, 0, 0]
    sparse = plan.inputs.rows.n_experts[moe] > 1
    if not sparse.any():
        raise SpecError(f"grid.models = {list(cfg.grid.models)} is invalid: kappa* needs at least one MoE model (n_experts > 1)")
    space = cfg.grid.partitions.space()
    dense_table, dense_mask = partition_table([int(n) for n in cfg.grid.num_gpus], dataclasses.replace(space, ep=(1,)))
    inputs = dataclasses.replace(plan.inputs.take("row", moe), dense_partitions=dense_table, dense_partition_mask=dense_mask)
    be = cfg.breakeven
    precision = relative_precision(be.kappa_min, be.kappa_max, int(be.bisection_steps))
    if precision > be.tolerance:
        need = int(np.ceil(np.log2(np.log(be.kappa_max / be.kappa_min) / np.log1p(be.tolerance)))) - 1
        raise SpecError(
            f"breakeven.bisection_steps = {be.bisection_steps} is invalid: brackets kappa* only to {precision:.2g} "
            f"(relative); at least {need} for tolerance = {be.tolerance} on [{be.kappa_min}, {be.kappa_max}]"
        )
    solver = Solver(int(be.bisection_steps), int(be.rounds), int(be.adam_steps), float(be.learning_rate), float(be.tolerance))
    dtype = np.float64 if cfg.precision == "float64" else np.float32
    return Problem(plan, inputs, sparse, solver, precision, dtype)


def solve(cfg: SweepConfig, plan: SweepPlan | None = None) -> tuple[dict, dict, float]:
    """κ* for every (MoE model, hardware, num_gpus, context) of ``cfg.grid`` on its ``plan`` (built
    here when not given): (arrays by output name, coords, seconds)."""
    prob = problem(cfg, plan)
    plan, inputs, sparse, solver, precision, dtype = (
        prob.plan,
        prob.inputs,
        prob.sparse,
        prob.solver,
        prob.precision,
        prob.dtype,
    )
    be = cfg.breakeven
    shared = (
        jnp.asarray(plan.batch, dtype),
        cast(plan.accounting, dtype),
        jnp.asarray(np.log(be.kappa_min), dtype),
        jnp.asarray(np.log(be.kappa_max), dtype),
    )
    shape = tuple(inputs.shape[a] for a in ("row", "hardware", "num_gpus", "context"))
    out = {name: np.zeros(shape, dtype=bool if name == "agrees" else np.int8 if name == "reason" else dtype) for name in OUTPUTS}
    start = time.perf_counter()
    kernel = breakeven_kernel(solver, flat=math.prod(inputs.shape.values()) < FLAT_BELOW)  # compiled once for all chunks
    for _, axis, positions, sub, trim in chunks(inputs, cfg.max_chunk_evaluations):
        results = kernel(*device_inputs(sub, dtype), *shared)
        index = (slice(None),) * ("row", "hardware", "num_gpus", "context").index(axis) + (positions,)
        for name, values in zip(OUTPUTS, results):
            out[name][index] = trim(values)
    seconds = time.perf_counter() - start
    dense_models = ~sparse  # a dense "MoE" has no κ-matched comparison to make
    out["reason"][dense_models] = REASONS.index("moe_infeasible")
    for name in ("kappa_star", "kappa_star_optax", "ratio_at_kappa_star"):
        out[name][dense_models] = np.nan
    out["agrees"][dense_models] = False
    coords = {d: plan.coords[d] for d in GRID4}
    out["variable_attrs"] = {
        "kappa_star": {
            "relative_precision": precision,
            "bisection_steps": int(be.bisection_steps),
            "kappa_min": float(be.kappa_min),
            "kappa_max": float(be.kappa_max),
        },
        "agrees": {"tolerance": float(be.tolerance)},
    }
    return out, coords, seconds


def attributes(out: dict, var) -> dict:
    """The attributes of registered variable ``var`` as ``solve`` computed it: the registry's
    (long_name first), then the run's (``out["variable_attrs"]``: precision, bracket, tolerance)."""
    return {"long_name": var.long_name, **var.attrs(), **out.get("variable_attrs", {}).get(var.name, {})}


def to_dataset(out: dict, coords: dict, attrs: dict) -> xr.Dataset:
    """The ``solve`` arrays as a CF dataset (flag variables carry flag_values/flag_meanings)."""
    data = {}
    for name, var in OUTPUTS.items():
        values = out[name].astype(np.int8) if name == "agrees" else out[name]
        data[name] = (GRID4, values, attributes(out, var))
    return xr.Dataset(data, coords={d: (d, v, a) for d, (v, a) in coords.items()}, attrs=attrs)


def summary_json(out: dict, seconds: float) -> dict:
    reason = out["reason"]
    found = reason == 0
    k = out["kappa_star"][found]
    return {
        "points": int(reason.size),
        "found": int(found.sum()),
        "agree": int(out["agrees"].sum()),
        "flagged": int(found.sum() - out["agrees"].sum()),
        "median_kappa_star": float(np.median(k)) if k.size else None,
        "reasons": {r: int((reason == i).sum()) for i, r in enumerate(REASONS)},
        "seconds": seconds,
    }
