"""Latency-root mode: for each MoE of a design set and each serving regime, the dense size of a
named family whose step time equals the MoE's (``jax.lax.custom_root``), then
``log(Q/P) = log c + b·log k − a·log E`` by least squares (closed form and optax)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ...physics import arch
from ...physics.baseline import epoch_cube_root, kept_params
from ...physics.cost import decode_point, prefill_point
from ...physics.specs import (
    Accounting,
    HardwareSpec,
    ModelSpec,
    Partition,
    SpecError,
    Workload,
    pytree_spec,
    replace,
    static_field,
)
from .components import check_design_rank, design_matrix

FAMILIES = ("epoch-cube-root", "keep-attention")
PHASES = ("decode", "prefill")
UNBOUNDED_HBM = 1e30  # bytes: memory feasibility is not part of the fit (times do not use hbm_bytes)
BRACKET = 12.0  # the root is searched in log Q ∈ [u0 − 12, u0 + 12] (a factor e^12 ≈ 1.6e5 each way)
ITERATIONS = 64  # safeguarded Newton steps (bisection alone would reach 24/2^64 in log Q)
CUBE_ROOT_STEPS = 8  # Newton steps inside epoch_cube_root: converged to 1 ulp for sizes 1e3..1e17 (tested)


@pytree_spec
class Regime:
    """One serving regime: phase (static), and the partition, workload and accounting (leaves).

    ``partition.ep`` is an upper bound: an MoE of E experts uses ``ep = min(ep, E)``.
    """

    partition: Partition
    workload: Workload
    accounting: Accounting
    name: str = static_field("regime")
    phase: str = static_field("decode")

    def __post_init__(self):
        if self.phase not in PHASES:
            raise SpecError(f"regime {self.name}: phase = {self.phase!r} is invalid: allowed {', '.join(PHASES)}")


def moe_design(total, n_experts, top_k, anchor: ModelSpec) -> ModelSpec:
    """MoE of ``total`` params shaped like Epoch assumes: depth, d_model, heads and attention of
    the cube-root dense model of its active size ``P·k/E`` (anchored on ``anchor``), every layer
    MoE with E routed experts whose width makes the total exactly ``P``:
    ``d_ff_expert = (P − L·(P_attn + d·E) − P_emb) / (L·E·m·d)`` (router ``d·E`` only if E > 1).

    P = 1e12, E = 16, k = 2 from Llama-3-405B: the active-size dense model (125e9) has s = 0.67253,
    84.74 layers, d_model 11,018.7, d_ff 35,810.8; d_ff_expert = 21,761.2, more than d_ff/k = 17,905
    because attention and embeddings are shared, not split over experts (active 145.2e9 > P·k/E).
    E = k = 1 gives back ``epoch_cube_root(P)`` with its FFN as a single expert.
    """
    base = epoch_cube_root(total * top_k / n_experts, anchor, CUBE_ROOT_STEPS)
    layers, d = base.n_layers, base.d_model
    router = jnp.where(n_experts > 1, d * n_experts, 0.0)
    pool = total - layers * (arch.decoder_attn_params(base) + router) - arch.embedding_params(base)
    d_ff_expert = pool / (layers * n_experts * base.ffn_matrices * d)
    return replace(
        base,
        n_dense_layers=0.0 * layers,
        d_ff=0.0 * d,
        n_experts=n_experts * 1.0,
        top_k=top_k * 1.0,
        d_ff_expert=d_ff_expert,
        shared_d_ff=0.0 * d,
    )


def family_offset(moe: ModelSpec, family: str):
    """Params a dense model of the family has before its scaled part (the root variable is
    ``log(Q − offset)``): 0 for epoch-cube-root, the kept attention + embeddings for keep-attention.
    Keep-attention of the (1e12, 16, 2) design: ``L·P_attn + 2·V·d`` = 84.74 · 2.125·11,018.7² + 2·128,256·11,018.7
    = 84.74 · 0.25800e9 + 2.8264e9 = 24.689e9."""
    return kept_params(moe) if family == "keep-attention" else 0.0 * moe.d_model


def family_model(size, moe: ModelSpec, anchor: ModelSpec, family: str) -> ModelSpec:
    """Dense model of ``size`` params in the named family: ``epoch-cube-root`` (Epoch: depth,
    width, heads ∝ size^(1/3) from ``anchor``) or ``keep-attention`` (the MoE's depth and
    attention, one dense FFN of width ``(size − kept)/(L·m·d)``). Keep-attention of the
    (1e12, 16, 2) design at 300e9: d_ff = (300e9 − 24.689e9)/(84.74 · 3 · 11,018.7) = 98,286."""
    if family == "epoch-cube-root":
        return epoch_cube_root(size, anchor, CUBE_ROOT_STEPS)
    d_ff = (size - kept_params(moe)) / (moe.n_layers * moe.ffn_matrices * moe.d_model)
    return replace(
        moe,
        d_ff=d_ff,
        n_dense_layers=moe.n_layers,
        n_experts=1.0 + 0.0 * d_ff,
        top_k=1.0 + 0.0 * d_ff,
        d_ff_expert=0.0 * d_ff,
        shared_d_ff=0.0 * d_ff,
    )


def step_time(model: ModelSpec, hw: HardwareSpec, regime: Regime):
    """Step time (s) of ``model`` in ``regime``, memory feasibility ignored (HBM capacity set to
    1e30 B: capacity enters only B_max and feasibility, never a time term, docs/cost-model.md §3).
    ``ep = min(regime ep, E)``. Llama-3-70B, h100-sxm, TP8, batch 1, 1k context: 9.69 ms."""
    hw = replace(hw, hbm_bytes=UNBOUNDED_HBM + 0.0 * hw.hbm_bw)
    p = replace(regime.partition, ep=jnp.minimum(regime.partition.ep, model.n_experts))
    point = prefill_point if regime.phase == "prefill" else decode_point
    return point(model, hw, p, regime.workload, regime.accounting).step_time


def _safeguarded_newton(f, u0):
    """Root of the increasing scalar ``f`` in [u0 − BRACKET, u0 + BRACKET]: Newton steps, bisection
    whenever Newton leaves the bracket (which shrinks around the root as signs are seen). A root
    outside the bracket ends at an edge with ``f ≠ 0``; ``equivalent_size`` checks the residual."""

    def body(_, state):
        x, lo, hi = state
        fx, dfx = jax.jvp(f, (x,), (jnp.ones_like(x),))
        lo, hi = jnp.where(fx < 0, x, lo), jnp.where(fx < 0, hi, x)
        newton = x - fx / dfx
        ok = jnp.isfinite(newton) & (newton > lo) & (newton < hi)
        x = jnp.where(fx == 0, x, jnp.where(ok, newton, 0.5 * (lo + hi)))
        return x, lo, hi

    x, _, _ = jax.lax.fori_loop(0, ITERATIONS, body, (u0, u0 - BRACKET, u0 + BRACKET))
    return x


def equivalent_size(
    total, n_experts, top_k, hw: HardwareSpec, regime: Regime, anchor: ModelSpec, family: str = "epoch-cube-root"
) -> dict:
    """Dense size ``Q`` (params) of ``family`` whose step time equals the MoE's, for one design.

    Solves ``f(u) = log t_dense(offset + e^u) − log t_moe = 0`` with ``jax.lax.custom_root``
    (safeguarded Newton inside), so ``d log Q / d(total, hardware, workload …)`` is the implicit
    ``−(∂f/∂θ)/(∂f/∂u)``. Returns {"p_eq", "t_moe", "t_dense" (at Q), "active" (MoE active params)}.
    E = k = 1 gives ``p_eq = total`` exactly (the MoE is the family's own model of size P).
    """
    moe = moe_design(total, n_experts, top_k, anchor)
    t_moe = step_time(moe, hw, regime)
    log_t = jnp.log(t_moe)
    offset = family_offset(moe, family)

    def f(u):
        return jnp.log(step_time(family_model(offset + jnp.exp(u), moe, anchor, family), hw, regime)) - log_t

    guess = jnp.log(jnp.maximum(total * jnp.sqrt(top_k / n_experts) - offset, 1e-3 * total))
    u = jax.lax.custom_root(f, guess, _safeguarded_newton, lambda g, y: y / g(1.0))
    q = offset + jnp.exp(u)
    t_dense = step_time(family_model(q, moe, anchor, family), hw, regime)
    # solved: |log t_dense(Q) − log t_moe| < √eps (1.5e-8 in float64; the solve reaches ~1e-15); a root
    # outside the bracket leaves an O(1) residual at the bracket edge
    solved = jnp.abs(jnp.log(t_dense) - log_t) < jnp.sqrt(jnp.finfo(log_t.dtype).eps)
    return {"p_eq": jnp.where(solved, q, jnp.nan), "t_moe": t_moe, "t_dense": t_dense, "active": arch.param_counts(moe)[1]}


def equivalent_sizes(total, n_experts, top_k, hw, regime, anchor, family="epoch-cube-root") -> dict:
    """``equivalent_size`` lifted over designs (1-D arrays of equal length) with ``vmap``."""
    fn = lambda p, e, k: equivalent_size(p, e, k, hw, regime, anchor, family)  # noqa: E731
    return jax.vmap(fn)(jnp.asarray(total, dtype=float), jnp.asarray(n_experts, dtype=float), jnp.asarray(top_k, dtype=float))


_equivalent_sizes_jit = jax.jit(equivalent_sizes, static_argnames=("family",))


def feasible_at(total, n_experts, top_k, hw: HardwareSpec, regime: Regime, anchor: ModelSpec):
    """Whether each MoE design fits in ``hw``'s real HBM in ``regime`` (informative only)."""

    def one(p, e, k):
        moe = moe_design(p, e, k, anchor)
        part = replace(regime.partition, ep=jnp.minimum(regime.partition.ep, moe.n_experts))
        point = prefill_point if regime.phase == "prefill" else decode_point
        return point(moe, hw, part, regime.workload, regime.accounting).feasible

    return jax.vmap(one)(jnp.asarray(total, dtype=float), jnp.asarray(n_experts, dtype=float), jnp.asarray(top_k, dtype=float))


_feasible_jit = jax.jit(feasible_at)


# ---------------------------------------------------------------------------------------------
# Design set and fit
# ---------------------------------------------------------------------------------------------


def build_design(total_params, n_experts, top_k, max_k_fraction: float = 0.5, pairs=None):
    """(P, E, k) float arrays: every total × every (E, k) with ``k ≤ max_k_fraction·E``, or the
    explicit ``pairs`` [[E, k], …] × every total. Values are checked here (host)."""
    totals = [_positive("design.total_params", v) for v in _as_list("design.total_params", total_params)]
    if pairs is None:
        es = [_positive("design.n_experts", v, at_least=1.0) for v in _as_list("design.n_experts", n_experts)]
        ks = [_positive("design.top_k", v, at_least=1.0) for v in _as_list("design.top_k", top_k)]
        ek = [(e, k) for e in es for k in ks if k <= max_k_fraction * e]
        if not ek:
            raise SpecError(f"design is empty: no (E, k) with k <= {max_k_fraction:g}·E among n_experts = {es} and top_k = {ks}")
    else:
        ek = []
        for pair in _as_list("design.pairs", pairs):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise SpecError(f"design.pairs entry {pair!r} is invalid: must be [n_experts, top_k]")
            e, k = _positive("design.pairs E", pair[0], at_least=1.0), _positive("design.pairs k", pair[1], at_least=1.0)
            if k > e:
                raise SpecError(f"design.pairs entry {list(pair)!r} is invalid: top_k must not exceed n_experts")
            ek.append((e, k))
    rows = np.array([(p, e, k) for p in totals for e, k in ek], dtype=float)
    return rows[:, 0], rows[:, 1], rows[:, 2]


def _as_list(field: str, value) -> list:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise SpecError(f"{field} = {value!r} is invalid: must be a list")
    out = list(value)
    if not out:
        raise SpecError(f"{field} is empty: give at least one value")
    return out


def _positive(field: str, value, at_least: float = 0.0) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
        or value < at_least
    ):
        allowed = f"a finite number >= {at_least:g}" if at_least else "a finite number > 0"
        raise SpecError(f"{field} = {value!r} is invalid: must be {allowed}")
    return float(value)


@jax.jit
def _expert_widths(total, n_experts, top_k, anchor):
    return jax.vmap(lambda p, e, k: moe_design(p, e, k, anchor).d_ff_expert)(total, n_experts, top_k)


def check_designs_exist(total, n_experts, top_k, anchor: ModelSpec) -> None:
    """One-line ``SpecError`` unless every design has a positive expert width (the total must
    exceed the shared attention, router and embeddings of its active-size shape)."""
    width = np.asarray(
        _expert_widths(
            jnp.asarray(total, dtype=float), jnp.asarray(n_experts, dtype=float), jnp.asarray(top_k, dtype=float), anchor
        )
    )
    bad = ~(np.isfinite(width) & (width > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise SpecError(
            f"design.total_params = {total[i]:.4g} is invalid for E = {n_experts[i]:g}, k = {top_k[i]:g}: "
            "too small to hold the shared attention and embeddings (expert width <= 0)"
        )


def ols(x, y) -> dict:
    """Closed-form least squares of ``y ≈ x·θ`` with the usual statistics.

    θ = lstsq(x, y); σ² = RSS/(n − p); se = √diag(σ²·(xᵀx)⁻¹); R² = 1 − RSS/TSS.
    y = [0, 1, 2, 4] on x = [[1, 0], [1, 1], [1, 2], [1, 3]]: θ = (−0.2, 1.3), RSS = 0.3,
    σ² = 0.15, se(slope) = √(0.15/5) = 0.1732, R² = 1 − 0.3/8.75 = 0.96571.
    """
    theta = jnp.linalg.lstsq(x, y)[0]
    resid = y - x @ theta
    n, p = x.shape[-2], x.shape[-1]
    rss = jnp.sum(resid**2)
    tss = jnp.sum((y - jnp.mean(y)) ** 2)
    sigma2 = rss / (n - p)
    se = jnp.sqrt(jnp.diag(sigma2 * jnp.linalg.inv(x.T @ x)))
    r2 = jnp.where(tss > 0, 1 - rss / jnp.where(tss > 0, tss, 1.0), 1.0)
    return {"theta": theta, "se": se, "r2": r2, "resid": resid}


_ols_jit = jax.jit(ols)


def fit_power_law(total, n_experts, top_k, p_eq) -> dict:
    """Fit ``log(P_eq/P) = log c + b·log k − a·log E`` (closed form). Returns floats a, b, c,
    r2, se_a, se_b and ``fitted`` (params). Rank-deficient designs raise ``SpecError``."""
    check_design_rank(n_experts, top_k)
    x = design_matrix(n_experts, top_k)
    y = jnp.log(jnp.asarray(p_eq) / jnp.asarray(total))
    r = _ols_jit(x, y)
    return _result(r["theta"], r["se"], r["r2"], total, x)


def _result(theta, se, r2, total, x) -> dict:
    return {
        "a": float(theta[2]),
        "b": float(theta[1]),
        "c": float(jnp.exp(theta[0])),
        "r2": float(r2),
        "se_a": float(se[2]),
        "se_b": float(se[1]),
        "se_log_c": float(se[0]),
        "fitted": np.asarray(jnp.asarray(total) * jnp.exp(x @ theta)),
    }


def fit_power_law_optax(n_experts, top_k, log_ratio, steps: int = 100) -> dict:
    """The same least-squares loss, ``½·mean((Xθ − y)²)``, minimised by ``optax.lbfgs`` from
    θ = 0 (a check on the closed form, which it matches to ~1e-9). Returns a, b, c, loss."""
    theta, loss = _lbfgs(design_matrix(n_experts, top_k), jnp.asarray(log_ratio), steps)
    return {"a": float(theta[2]), "b": float(theta[1]), "c": float(jnp.exp(theta[0])), "loss": float(loss)}


@jax.jit
def _lbfgs_impl(x, y, steps):
    def loss(theta):
        return 0.5 * jnp.mean((x @ theta - y) ** 2)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(_, carry):
        theta, state = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(theta, updates), state

    theta0 = jnp.zeros(x.shape[-1], dtype=y.dtype)
    theta, _ = jax.lax.fori_loop(0, steps, step, (theta0, opt.init(theta0)))
    return theta, loss(theta)


def _lbfgs(x, y, steps):
    return _lbfgs_impl(x, y, jnp.asarray(steps))


@dataclasses.dataclass
class RegimeResult:
    """One regime's roots and fits (arrays over designs; fits as floats)."""

    regime: str
    p_eq: np.ndarray
    t_moe: np.ndarray
    t_dense: np.ndarray
    active: np.ndarray
    feasible: np.ndarray
    fit: dict
    fit_optax: dict


def latency_fit(
    total, n_experts, top_k, hw: HardwareSpec, regime: Regime, anchor: ModelSpec, family: str = "epoch-cube-root"
) -> RegimeResult:
    """Roots for every design (one jitted vmap), then the closed-form and optax fits.

    Raises ``SpecError`` for a rank-deficient design or a root that is not bracketed."""
    if family not in FAMILIES:
        raise SpecError(f"family = {family!r} is unknown: allowed {', '.join(FAMILIES)}")
    check_design_rank(n_experts, top_k)
    unnamed = replace(regime, name="")  # the name is static: keep one compiled kernel per phase
    out = _equivalent_sizes_jit(total, n_experts, top_k, hw, unnamed, anchor, family=family)
    p_eq = np.asarray(out["p_eq"])
    if not np.all(np.isfinite(p_eq) & (p_eq > 0)):
        i = int(np.argmin(np.isfinite(p_eq) & (p_eq > 0)))
        raise SpecError(
            f"regime {regime.name}: no dense size of family {family} matches the MoE step time for "
            f"P = {total[i]:.3g}, E = {n_experts[i]:g}, k = {top_k[i]:g} within a factor e^{BRACKET:g}"
        )
    fit = fit_power_law(total, n_experts, top_k, p_eq)
    fit_opt = fit_power_law_optax(n_experts, top_k, np.log(p_eq / total))
    feasible = np.asarray(_feasible_jit(total, n_experts, top_k, hw, unnamed, anchor))
    return RegimeResult(
        regime.name, p_eq, np.asarray(out["t_moe"]), np.asarray(out["t_dense"]), np.asarray(out["active"]), feasible, fit, fit_opt
    )
