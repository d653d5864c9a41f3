"""Epoch-style dense-equivalent size of an MoE: ``P_eq = c · P_total · k^b / E^a``.

Source: Epoch AI, "How do mixture-of-experts models compare to dense models in inference?"
(Gradient Updates; seed 001). Two ways to get ``a``, ``b`` (and ``c``), derivation in
docs/epoch-derivation.md:

- **components** (the post's argument): each inference cost of an MoE with ``P`` total params,
  ``E`` experts, top-``k`` is the cost of a dense model of some size, a coefficient-free power
  law in ``(E, k)``; fast short-context decode is a weighted geometric mean of them. ``a`` and
  ``b`` are the weighted sums of the component exponents, computed exactly with ``Fraction``
  (``a = 7/16``, ``b = 5/8``) and again by least squares over a grid of ``(E, k)``.
- **latency** (moejax's cost model): for each MoE of a design set and each regime, the dense
  model size ``Q`` of a named size family whose step time equals the MoE's is found with
  ``jax.lax.custom_root`` (so ``d log Q / d(anything)`` is implicit), then
  ``log(Q/P) = log c + b·log k − a·log E`` is fitted by least squares.

Units: parameter counts are plain numbers, times in seconds, hardware in SI units (bytes/s,
FLOP/s, s). Every numeric function is pure ``jnp`` for one design and is lifted with ``vmap``.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import arch
from ..baseline import epoch_cube_root, kept_params
from ..cost import decode_point, prefill_point
from ..specs import Accounting, HardwareSpec, ModelSpec, Partition, SpecError, Workload, pytree_spec, replace, static_field

# ---------------------------------------------------------------------------------------------
# 1. Component mode: the post's argument as power laws in (E, k)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Assumptions:
    """The post's stated assumptions, as exact fractions.

    ``depth_exponent`` / ``width_exponent``: a dense model's depth and its d_model (and d_ff)
    each grow as size^(1/3). ``w_*``: weights of the fast short-context decode geometric mean
    (memory 1/2, serial depth 1/4, network communication 1/4, arithmetic 0).
    """

    depth_exponent: Fraction = Fraction(1, 3)
    width_exponent: Fraction = Fraction(1, 3)
    w_memory: Fraction = Fraction(1, 2)
    w_arithmetic: Fraction = Fraction(0)
    w_depth: Fraction = Fraction(1, 4)
    w_comm: Fraction = Fraction(1, 4)


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """One inference cost component: its dense-equivalent size is ``P · k^k_exp / E^e_exp``
    (coefficient-free), weighted by ``weight`` in the geometric mean."""

    name: str
    e_exp: Fraction
    k_exp: Fraction
    weight: Fraction
    derivation: str

    def size(self, total, n_experts, top_k):
        """Dense-equivalent size of this component (params): ``P · k^k_exp / E^e_exp``.

        Communication of GPT-4 (P = 1.8e12, E = 16, k = 2; k_exp 3/2, e_exp 3/4):
        1.8e12 · 2^1.5 / 16^0.75 = 1.8e12 · 0.35355 = 636.4e9.
        """
        return total * top_k ** float(self.k_exp) / n_experts ** float(self.e_exp)


def component_laws(assume: Assumptions = Assumptions()) -> tuple[PowerLaw, ...]:
    """The four cost components of an MoE (P total, E experts, top-k) as power laws.

    - memory bandwidth: every weight is read, ``P_mem = P`` → exponents (E: 0, k: 0);
    - arithmetic: FLOP per token ∝ active params, ``P_flop = P·k/E`` → (1, 1);
    - serial depth: MoE depth is that of a dense model of its active size, depth ∝ (Pk/E)^δ
      (δ = ``depth_exponent``); the dense size with that depth is depth^(1/δ) → (1, 1);
    - network communication: at fixed depth and params, E·d_moe² = d² (layer params ∝ d·d_ff ∝ d²),
      so d_moe = d/√E; per-token FFN traffic ∝ d·k, ratio k/√E; dense traffic ∝ depth·d ∝
      size^(δ+ω) (ω = ``width_exponent``), so ``P_comm = P·(k/√E)^(1/(δ+ω))`` → (3/4, 3/2).
    """
    d, w = assume.depth_exponent, assume.width_exponent
    matrix_exp = 2  # layer params ∝ d_model · d_ff, both ∝ width → ∝ width^2
    comm_size_exp = 1 / (d + w)  # dense comm ∝ size^(d + w): size ∝ comm^(1/(d+w))
    width_split = Fraction(1, matrix_exp)  # d_moe = d · E^(-1/2)
    return (
        PowerLaw("memory", Fraction(0), Fraction(0), assume.w_memory,
                 "HBM reads all P params: P_mem = P"),
        PowerLaw("arithmetic", Fraction(1), Fraction(1), assume.w_arithmetic,
                 "FLOP/token ∝ active params: P_flop = P·k/E"),
        PowerLaw("depth", d * (1 / d), d * (1 / d), assume.w_depth,
                 f"depth ∝ (P·k/E)^{d}; the dense size of that depth: P_depth = P·k/E"),
        PowerLaw("communication", width_split * comm_size_exp, comm_size_exp, assume.w_comm,
                 f"traffic ratio k/E^{width_split} at fixed depth; dense traffic ∝ size^{d + w}: "
                 f"P_comm = P·(k/√E)^{comm_size_exp}"),
    )


def exponents(laws: tuple[PowerLaw, ...] | None = None) -> tuple[Fraction, Fraction]:
    """(a, b) as exact fractions: ``a = Σ w·e_exp``, ``b = Σ w·k_exp``.

    Default laws: a = 1/2·0 + 1/4·1 + 1/4·3/4 = 7/16 = 0.4375; b = 1/4·1 + 1/4·3/2 = 5/8 = 0.625.
    """
    laws = component_laws() if laws is None else laws
    total_weight = sum(law.weight for law in laws)
    if total_weight != 1:
        raise SpecError(f"component weights sum to {total_weight}, not 1: a geometric mean needs weights summing to 1")
    return sum(law.weight * law.e_exp for law in laws), sum(law.weight * law.k_exp for law in laws)


def geometric_mean_size(sizes, weights):
    """Weighted geometric mean ``Π s_i^w_i`` (params; weights sum to 1).

    GPT-4 with the post's component values (1.8e12 memory, 400e9 depth, 635e9 comm; 1/2, 1/4,
    1/4): 1.8e12^0.5 · 400e9^0.25 · 635e9^0.25 = 952.5e9 (the post: "around 950B").
    """
    sizes, weights = jnp.asarray(sizes, dtype=float), jnp.asarray(weights, dtype=float)
    return jnp.exp(jnp.sum(weights * jnp.log(sizes)))


def component_equivalent(total, n_experts, top_k, laws: tuple[PowerLaw, ...] | None = None):
    """Dense-equivalent size from the component model (params): ``Π_i P_i(E, k)^w_i``.

    GPT-4 (1.8e12, 16, 2): 1.8e12^0.5 · 225e9^0.25 · 636.4e9^0.25 = 825.3e9.
    """
    laws = component_laws() if laws is None else laws
    logs = jnp.stack([float(law.weight) * jnp.log(law.size(total, n_experts, top_k)) for law in laws])
    return jnp.exp(jnp.sum(logs, axis=0))


def dense_equivalent(total, n_experts, top_k, a, b, c=1.0):
    """``P_eq = c · P_total · k^b / E^a`` (params).

    Mixtral-8x22B (140.62e9, E = 8, k = 2) with a = 7/16, b = 5/8, c = 1:
    140.62e9 · 2^0.625 / 8^0.4375 = 140.62e9 · 0.62093 = 87.31e9 (the post: "around 90B").
    """
    return c * total * top_k**b / n_experts**a


def comm_advantage(n_experts, top_k):
    """(ratio k/√E, advantage) — MoE FFN traffic / that of a dense model of the same params and
    depth, and whether it is < 1 (the post's "k < √E" condition). GPT-4 (16, 2): 0.5, True."""
    ratio = top_k / jnp.sqrt(n_experts)
    return ratio, ratio < 1


def design_matrix(n_experts, top_k):
    """Regressors of ``log(P_eq/P) = log c + b·log k − a·log E``: columns [1, log k, −log E]
    (dimensionless). E = 16, k = 2: [1, 0.693147, −2.772589]."""
    n_experts, top_k = jnp.asarray(n_experts, dtype=float), jnp.asarray(top_k, dtype=float)
    return jnp.stack([jnp.ones_like(top_k), jnp.log(top_k), -jnp.log(n_experts)], axis=-1)


def fit_components(n_experts, top_k, laws: tuple[PowerLaw, ...] | None = None) -> dict:
    """(a, b, c) by least squares of ``log(P_eq/P)`` from ``component_equivalent`` over a grid.

    The component model is an exact power law, so this recovers a = 7/16, b = 5/8, c = 1 to
    rounding (a check of the symbolic sums, not a second model).
    """
    check_design_rank(np.asarray(n_experts, dtype=float), np.asarray(top_k, dtype=float))
    y = jnp.log(component_equivalent(1.0, jnp.asarray(n_experts, dtype=float), jnp.asarray(top_k, dtype=float), laws))
    coef = jnp.linalg.lstsq(design_matrix(n_experts, top_k), y)[0]
    return {"a": float(coef[2]), "b": float(coef[1]), "c": float(jnp.exp(coef[0]))}


def cube_root_size_from_layers(layers, anchor_layers, anchor_size):
    """Size of a dense model with ``layers`` layers when depth ∝ size^(1/3) (params):
    ``anchor_size · (layers/anchor_layers)^3``. GPT-4's 120 layers vs Llama-3-405B's 126
    (405.85e9 params): 405.85e9 · (120/126)^3 = 350.6e9 (the post: "about 400B")."""
    return anchor_size * (layers / anchor_layers) ** 3


# The post's figures, quoted (reference values for the residual table).
POST = {
    "a": (0.44, "divide the total parameter count by (number of experts)^(0.44)"),
    "b": (0.63, "... / (number of active experts)^(0.63)"),
    "gpt4_memory": (1.8e12, "memory bandwidth cost ... equivalent to a dense model with 1.8T parameters"),
    "gpt4_arithmetic": (275e9, "arithmetic cost of GPT-4 is equivalent to a dense model with 275B parameters"),
    "gpt4_depth": (400e9, "serial depth ... about as big as a model with 400B parameters"),
    "gpt4_comm": (635e9, "half that of a dense model with 1.8T ... around 635B"),
    "gpt4_fast_decode": (950e9, "dense equivalent size for fast short-context decoding of around 950B"),
    "mixtral": (90e9, "Mixtral 8x22B should be equivalent to a dense model with around 90 billion"),
    "sparse4": (0.65, "4-way ... sparse models are comparable to dense models with 65%"),
    "sparse8": (0.50, "8-way sparse ... 50% of their total number of parameters"),
    "gpt4_comm_ratio": (0.5, "GPT-4 needs 50% less communication"),
}
GPT4 = {"total": 1.8e12, "n_experts": 16.0, "top_k": 2.0}  # the post's GPT-4 (rumour: 1.8T, 16 experts, top-2)


def residual_table(assume: Assumptions = Assumptions()) -> list[dict]:
    """Each of the post's figures vs moejax's value: rows of {quantity, reference, moejax,
    rel_residual = moejax/reference − 1, note}. Catalogue inputs come from conf/model/."""
    from ..api import param_counts
    from ..catalogue import load_model

    laws = component_laws(assume)
    a, b = (float(x) for x in exponents(laws))
    by_name = {law.name: law for law in laws}
    p, e, k = GPT4["total"], GPT4["n_experts"], GPT4["top_k"]
    llama, gpt4 = load_model("llama-3-405b"), load_model("gpt-4-rumoured")
    llama_total, _ = param_counts(llama)
    _, gpt4_active = param_counts(gpt4)
    depth = float(cube_root_size_from_layers(float(gpt4.n_layers), float(llama.n_layers), llama_total))
    comm = float(by_name["communication"].size(p, e, k))
    mem = float(by_name["memory"].size(p, e, k))
    post = [POST[q][0] for q in ("gpt4_memory", "gpt4_depth", "gpt4_comm")]
    w = [float(assume.w_memory), float(assume.w_depth), float(assume.w_comm)]
    mixtral_total, _ = param_counts("mixtral-8x22b")
    ratio, gpt4_adv = comm_advantage(e, k)
    mix_ratio, mix_adv = comm_advantage(8.0, 2.0)

    def row(quantity, ref, value, note):
        return {"quantity": quantity, "reference": ref, "moejax": float(value),
                "rel_residual": float(value) / ref - 1 if ref else float("nan"), "note": note}

    return [
        row("a (E exponent)", POST["a"][0], a, f"= {exponents(laws)[0]} exactly; the post rounds to 2 d.p."),
        row("b (k exponent)", POST["b"][0], b, f"= {exponents(laws)[1]} exactly; the post rounds to 2 d.p."),
        row("GPT-4 memory-bandwidth size", POST["gpt4_memory"][0], mem, "P_mem = P_total"),
        row("GPT-4 arithmetic size", POST["gpt4_arithmetic"][0], gpt4_active,
            "active params of conf/model/gpt-4-rumoured.yaml (attention + 2 experts + LM head); P·k/E alone = 225B"),
        row("GPT-4 serial-depth size", POST["gpt4_depth"][0], depth,
            "llama-3-405b total × (120/126)^3; the post rounds up (the formula's P·k/E would give 225B)"),
        row("GPT-4 communication size", POST["gpt4_comm"][0], comm, "1.8T · (2/√16)^(3/2) = 1.8T · 0.5^1.5"),
        row("GPT-4 comm ratio k/√E", POST["gpt4_comm_ratio"][0], float(ratio), "at fixed depth and params"),
        row("GPT-4 fast decode, post's rounded components", POST["gpt4_fast_decode"][0], geometric_mean_size(post, w),
            "1.8T^½ · 400B^¼ · 635B^¼: checks the post's own arithmetic"),
        row("GPT-4 fast decode, moejax components", POST["gpt4_fast_decode"][0], geometric_mean_size([mem, depth, comm], w),
            "1.8T^½ · 350.6B^¼ · 636.4B^¼ (depth from the layer counts)"),
        row("GPT-4 fast decode, fitted formula", POST["gpt4_fast_decode"][0], dense_equivalent(p, e, k, a, b),
            "P·k^b/E^a: the formula's depth is P·k/E = 225B, not GPT-4's 120 layers (≈351B), hence lower"),
        row("Mixtral-8x22B fast decode", POST["mixtral"][0], dense_equivalent(mixtral_total, 8.0, 2.0, a, b),
            f"P = {mixtral_total / 1e9:.2f}B (moejax.param_counts), E = 8, k = 2"),
        row("4-way sparse P_eq/P (E=8, k=2)", POST["sparse4"][0], dense_equivalent(1.0, 8.0, 2.0, a, b),
            f"taking k = 2; with E = 4, k = 1: {float(dense_equivalent(1.0, 4.0, 1.0, a, b)):.3f}"),
        row("8-way sparse P_eq/P (E=16, k=2)", POST["sparse8"][0], dense_equivalent(1.0, 16.0, 2.0, a, b),
            f"taking k = 2; with E = 8, k = 1: {float(dense_equivalent(1.0, 8.0, 1.0, a, b)):.3f}"),
        row("k < √E (comm advantage) for GPT-4 and Mixtral", 1.0, float(bool(gpt4_adv) and bool(mix_adv)),
            f"1 = holds for both, as the post says: k/√E = {float(ratio):.3f} (GPT-4), {float(mix_ratio):.3f} (Mixtral)"),
    ]


def format_table(rows: list[dict]) -> str:
    """Fixed-width text of ``residual_table`` rows."""
    def fmt(x):
        return f"{x / 1e9:.1f}B" if abs(x) >= 1e8 else f"{x:.4g}"
    lines = [f"{'quantity':<46} {'reference':>10} {'moejax':>10} {'residual':>9}  note"]
    for r in rows:
        lines.append(f"{r['quantity']:<46} {fmt(r['reference']):>10} {fmt(r['moejax']):>10} "
                     f"{r['rel_residual']:>+8.1%}  {r['note']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 2. Latency-root mode: dense size of equal step time, by implicit root finding
# ---------------------------------------------------------------------------------------------

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
    return replace(base, n_dense_layers=0.0 * layers, d_ff=0.0 * d, n_experts=n_experts * 1.0, top_k=top_k * 1.0,
                   d_ff_expert=d_ff_expert, shared_d_ff=0.0 * d)


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
    return replace(moe, d_ff=d_ff, n_dense_layers=moe.n_layers, n_experts=1.0 + 0.0 * d_ff, top_k=1.0 + 0.0 * d_ff,
                   d_ff_expert=0.0 * d_ff, shared_d_ff=0.0 * d_ff)


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


def equivalent_size(total, n_experts, top_k, hw: HardwareSpec, regime: Regime, anchor: ModelSpec,
                    family: str = "epoch-cube-root") -> dict:
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
    return jax.vmap(fn)(jnp.asarray(total, dtype=float), jnp.asarray(n_experts, dtype=float),
                        jnp.asarray(top_k, dtype=float))


_equivalent_sizes_jit = jax.jit(equivalent_sizes, static_argnames=("family",))


def feasible_at(total, n_experts, top_k, hw: HardwareSpec, regime: Regime, anchor: ModelSpec):
    """Whether each MoE design fits in ``hw``'s real HBM in ``regime`` (informative only)."""
    def one(p, e, k):
        moe = moe_design(p, e, k, anchor)
        part = replace(regime.partition, ep=jnp.minimum(regime.partition.ep, moe.n_experts))
        point = prefill_point if regime.phase == "prefill" else decode_point
        return point(moe, hw, part, regime.workload, regime.accounting).feasible
    return jax.vmap(one)(jnp.asarray(total, dtype=float), jnp.asarray(n_experts, dtype=float),
                         jnp.asarray(top_k, dtype=float))


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
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0 or value < at_least:
        allowed = f"a finite number >= {at_least:g}" if at_least else "a finite number > 0"
        raise SpecError(f"{field} = {value!r} is invalid: must be {allowed}")
    return float(value)


@jax.jit
def _expert_widths(total, n_experts, top_k, anchor):
    return jax.vmap(lambda p, e, k: moe_design(p, e, k, anchor).d_ff_expert)(total, n_experts, top_k)


def check_designs_exist(total, n_experts, top_k, anchor: ModelSpec) -> None:
    """One-line ``SpecError`` unless every design has a positive expert width (the total must
    exceed the shared attention, router and embeddings of its active-size shape)."""
    width = np.asarray(_expert_widths(jnp.asarray(total, dtype=float), jnp.asarray(n_experts, dtype=float),
                                      jnp.asarray(top_k, dtype=float), anchor))
    bad = ~(np.isfinite(width) & (width > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise SpecError(f"design.total_params = {total[i]:.4g} is invalid for E = {n_experts[i]:g}, k = {top_k[i]:g}: "
                        "too small to hold the shared attention and embeddings (expert width <= 0)")


def check_design_rank(n_experts, top_k) -> None:
    """One-line ``SpecError`` unless [1, log k, −log E] has full column rank and ≥ 4 designs
    (E and k must vary independently; one residual degree of freedom for standard errors)."""
    e, k = np.asarray(n_experts, dtype=float).ravel(), np.asarray(top_k, dtype=float).ravel()
    if len(np.unique(e)) < 2:
        raise SpecError(f"design is rank-deficient: n_experts takes the single value {e[0]:g}, so a cannot be "
                        "separated from c; give at least two n_experts values")
    if len(np.unique(k)) < 2:
        raise SpecError(f"design is rank-deficient: top_k takes the single value {k[0]:g}, so b cannot be "
                        "separated from c; give at least two top_k values")
    x = np.asarray(design_matrix(e, k))
    if np.linalg.matrix_rank(x, tol=1e-9 * np.linalg.norm(x)) < 3:
        ratio = np.log(k) / np.log(e) if np.all(e > 1) else None
        how = "k/E is constant" if np.ptp(np.log(k) - np.log(e)) < 1e-9 else (
            f"log k = {ratio[0]:.3g}·log E" if ratio is not None and np.ptp(ratio) < 1e-9 else "log k is affine in log E")
        raise SpecError(f"design is rank-deficient: {how} over all {len(e)} designs, so a and b cannot be separated; "
                        "vary n_experts and top_k independently")
    if len(e) < 4:
        raise SpecError(f"design has {len(e)} (E, k) points: need at least 4 to fit log c, a, b with a residual variance")


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
    return {"a": float(theta[2]), "b": float(theta[1]), "c": float(jnp.exp(theta[0])), "r2": float(r2),
            "se_a": float(se[2]), "se_b": float(se[1]), "se_log_c": float(se[0]),
            "fitted": np.asarray(jnp.asarray(total) * jnp.exp(x @ theta))}


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


def latency_fit(total, n_experts, top_k, hw: HardwareSpec, regime: Regime, anchor: ModelSpec,
                family: str = "epoch-cube-root") -> RegimeResult:
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
        raise SpecError(f"regime {regime.name}: no dense size of family {family} matches the MoE step time for "
                        f"P = {total[i]:.3g}, E = {n_experts[i]:g}, k = {top_k[i]:g} within a factor e^{BRACKET:g}")
    fit = fit_power_law(total, n_experts, top_k, p_eq)
    fit_opt = fit_power_law_optax(n_experts, top_k, np.log(p_eq / total))
    feasible = np.asarray(_feasible_jit(total, n_experts, top_k, hw, unnamed, anchor))
    return RegimeResult(regime.name, p_eq, np.asarray(out["t_moe"]), np.asarray(out["t_dense"]),
                        np.asarray(out["active"]), feasible, fit, fit_opt)
