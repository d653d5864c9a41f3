"""Component mode: the post's argument as coefficient-free power laws in ``(E, k)``, their
exact weighted exponents ``a``, ``b``, the same by least squares, and the residual table
against the post's figures."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import jax.numpy as jnp
import numpy as np

from ...catalogue import load_model
from ...physics.arch import param_counts
from ...physics.specs import SpecError


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
        PowerLaw("memory", Fraction(0), Fraction(0), assume.w_memory, "HBM reads all P params: P_mem = P"),
        PowerLaw("arithmetic", Fraction(1), Fraction(1), assume.w_arithmetic, "FLOP/token ∝ active params: P_flop = P·k/E"),
        PowerLaw(
            "depth",
            d * (1 / d),
            d * (1 / d),
            assume.w_depth,
            f"depth ∝ (P·k/E)^{d}; the dense size of that depth: P_depth = P·k/E",
        ),
        PowerLaw(
            "communication",
            width_split * comm_size_exp,
            comm_size_exp,
            assume.w_comm,
            f"traffic ratio k/E^{width_split} at fixed depth; dense traffic ∝ size^{d + w}: P_comm = P·(k/√E)^{comm_size_exp}",
        ),
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


def check_design_rank(n_experts, top_k) -> None:
    """One-line ``SpecError`` unless [1, log k, −log E] has full column rank and ≥ 4 designs
    (E and k must vary independently; one residual degree of freedom for standard errors)."""
    e, k = np.asarray(n_experts, dtype=float).ravel(), np.asarray(top_k, dtype=float).ravel()
    if len(np.unique(e)) < 2:
        raise SpecError(
            f"design is rank-deficient: n_experts takes the single value {e[0]:g}, so a cannot be "
            "separated from c; give at least two n_experts values"
        )
    if len(np.unique(k)) < 2:
        raise SpecError(
            f"design is rank-deficient: top_k takes the single value {k[0]:g}, so b cannot be "
            "separated from c; give at least two top_k values"
        )
    x = np.asarray(design_matrix(e, k))
    if np.linalg.matrix_rank(x, tol=1e-9 * np.linalg.norm(x)) < 3:
        ratio = np.log(k) / np.log(e) if np.all(e > 1) else None
        how = (
            "k/E is constant"
            if np.ptp(np.log(k) - np.log(e)) < 1e-9
            else (f"log k = {ratio[0]:.3g}·log E" if ratio is not None and np.ptp(ratio) < 1e-9 else "log k is affine in log E")
        )
        raise SpecError(
            f"design is rank-deficient: {how} over all {len(e)} designs, so a and b cannot be separated; "
            "vary n_experts and top_k independently"
        )
    if len(e) < 4:
        raise SpecError(f"design has {len(e)} (E, k) points: need at least 4 to fit log c, a, b with a residual variance")


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
    laws = component_laws(assume)
    a, b = (float(x) for x in exponents(laws))
    by_name = {law.name: law for law in laws}
    p, e, k = GPT4["total"], GPT4["n_experts"], GPT4["top_k"]
    llama, gpt4 = load_model("llama-3-405b"), load_model("gpt-4-rumoured")
    llama_total, _ = map(float, param_counts(llama))
    _, gpt4_active = map(float, param_counts(gpt4))
    depth = float(cube_root_size_from_layers(float(gpt4.n_layers), float(llama.n_layers), llama_total))
    comm = float(by_name["communication"].size(p, e, k))
    mem = float(by_name["memory"].size(p, e, k))
    post = [POST[q][0] for q in ("gpt4_memory", "gpt4_depth", "gpt4_comm")]
    w = [float(assume.w_memory), float(assume.w_depth), float(assume.w_comm)]
    mixtral_total, _ = map(float, param_counts(load_model("mixtral-8x22b")))
    ratio, gpt4_adv = comm_advantage(e, k)
    mix_ratio, mix_adv = comm_advantage(8.0, 2.0)

    def row(quantity, ref, value, note):
        return {
            "quantity": quantity,
            "reference": ref,
            "moejax": float(value),
            "rel_residual": float(value) / ref - 1 if ref else float("nan"),
            "note": note,
        }

    return [
        row("a (E exponent)", POST["a"][0], a, f"= {exponents(laws)[0]} exactly; the post rounds to 2 d.p."),
        row("b (k exponent)", POST["b"][0], b, f"= {exponents(laws)[1]} exactly; the post rounds to 2 d.p."),
        row("GPT-4 memory-bandwidth size", POST["gpt4_memory"][0], mem, "P_mem = P_total"),
        row(
            "GPT-4 arithmetic size",
            POST["gpt4_arithmetic"][0],
            gpt4_active,
            "active params of conf/model/gpt-4-rumoured.yaml (attention + 2 experts + LM head); P·k/E alone = 225B",
        ),
        row(
            "GPT-4 serial-depth size",
            POST["gpt4_depth"][0],
            depth,
            "llama-3-405b total × (120/126)^3; the post rounds up (the formula's P·k/E would give 225B)",
        ),
        row("GPT-4 communication size", POST["gpt4_comm"][0], comm, "1.8T · (2/√16)^(3/2) = 1.8T · 0.5^1.5"),
        row("GPT-4 comm ratio k/√E", POST["gpt4_comm_ratio"][0], float(ratio), "at fixed depth and params"),
        row(
            "GPT-4 fast decode, post's rounded components",
            POST["gpt4_fast_decode"][0],
            geometric_mean_size(post, w),
            "1.8T^½ · 400B^¼ · 635B^¼: checks the post's own arithmetic",
        ),
        row(
            "GPT-4 fast decode, moejax components",
            POST["gpt4_fast_decode"][0],
            geometric_mean_size([mem, depth, comm], w),
            "1.8T^½ · 350.6B^¼ · 636.4B^¼ (depth from the layer counts)",
        ),
        row(
            "GPT-4 fast decode, fitted formula",
            POST["gpt4_fast_decode"][0],
            dense_equivalent(p, e, k, a, b),
            "P·k^b/E^a: the formula's depth is P·k/E = 225B, not GPT-4's 120 layers (≈351B), hence lower",
        ),
        row(
            "Mixtral-8x22B fast decode",
            POST["mixtral"][0],
            dense_equivalent(mixtral_total, 8.0, 2.0, a, b),
            f"P = {mixtral_total / 1e9:.2f}B (moejax.param_counts), E = 8, k = 2",
        ),
        row(
            "4-way sparse P_eq/P (E=8, k=2)",
            POST["sparse4"][0],
            dense_equivalent(1.0, 8.0, 2.0, a, b),
            f"taking k = 2; with E = 4, k = 1: {float(dense_equivalent(1.0, 4.0, 1.0, a, b)):.3f}",
        ),
        row(
            "8-way sparse P_eq/P (E=16, k=2)",
            POST["sparse8"][0],
            dense_equivalent(1.0, 16.0, 2.0, a, b),
            f"taking k = 2; with E = 8, k = 1: {float(dense_equivalent(1.0, 8.0, 1.0, a, b)):.3f}",
        ),
        row(
            "k < √E (comm advantage) for GPT-4 and Mixtral",
            1.0,
            float(bool(gpt4_adv) and bool(mix_adv)),
            f"1 = holds for both, as the post says: k/√E = {float(ratio):.3f} (GPT-4), {float(mix_ratio):.3f} (Mixtral)",
        ),
    ]


def format_table(rows: list[dict]) -> str:
    """Fixed-width text of ``residual_table`` rows."""

    def fmt(x):
        return f"{x / 1e9:.1f}B" if abs(x) >= 1e8 else f"{x:.4g}"

    lines = [f"{'quantity':<46} {'reference':>10} {'moejax':>10} {'residual':>9}  note"]
    for r in rows:
        lines.append(
            f"{r['quantity']:<46} {fmt(r['reference']):>10} {fmt(r['moejax']):>10} {r['rel_residual']:>+8.1%}  {r['note']}"
        )
    return "\n".join(lines)
