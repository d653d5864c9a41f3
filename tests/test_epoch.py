"""Epoch-style dense-equivalent size: component derivation, latency roots, fits and the CLI.

Reference values are the post's (seed 001), hand arithmetic written out in the test, or
independent recomputations (NumPy cubic roots, FLOP counts from docs/cost-model.md §4), never
numbers copied from this code's own output.
"""

import json
import math
import re
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from cli_runs import run_main

from moejax import Partition, Workload, load_hardware, load_model, param_counts, prefill_point
from moejax.analysis import epoch as ep
from moejax.physics import arch
from moejax.physics.baseline import epoch_cube_root
from moejax.physics.specs import Accounting, SpecError, replace

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# Component mode
# ---------------------------------------------------------------------------------------------


def test_component_exponents_are_the_weighted_sums_by_hand():
    laws = {law.name: law for law in ep.component_laws()}
    # memory P, arithmetic and depth P·k/E, communication P·(k/√E)^(3/2)
    assert (laws["memory"].e_exp, laws["memory"].k_exp) == (0, 0)
    assert (laws["depth"].e_exp, laws["depth"].k_exp) == (1, 1)
    assert (laws["arithmetic"].e_exp, laws["arithmetic"].k_exp) == (1, 1)
    assert (laws["communication"].e_exp, laws["communication"].k_exp) == (Fraction(3, 4), Fraction(3, 2))
    a, b = ep.exponents()
    assert a == Fraction(1, 2) * 0 + Fraction(1, 4) * 1 + Fraction(1, 4) * Fraction(3, 4) == Fraction(7, 16)
    assert b == Fraction(1, 4) * 1 + Fraction(1, 4) * Fraction(3, 2) == Fraction(5, 8)
    assert isinstance(a, Fraction) and float(a) == 0.4375 and float(b) == 0.625


def test_exponents_follow_the_assumptions():
    # depth and width ∝ size^(1/4): dense comm ∝ size^(1/2), so P_comm = P·(k/√E)^2 → (E: 1, k: 2)
    quarter = ep.Assumptions(depth_exponent=Fraction(1, 4), width_exponent=Fraction(1, 4))
    comm = {law.name: law for law in ep.component_laws(quarter)}["communication"]
    assert (comm.e_exp, comm.k_exp) == (1, 2)
    assert ep.exponents(ep.component_laws(quarter)) == (Fraction(1, 4) + Fraction(1, 4), Fraction(1, 4) + Fraction(1, 2))
    # pure arithmetic (prefill in the post): P_eq = P·k/E
    flops_only = ep.Assumptions(w_memory=Fraction(0), w_arithmetic=Fraction(1), w_depth=Fraction(0), w_comm=Fraction(0))
    assert ep.exponents(ep.component_laws(flops_only)) == (1, 1)
    with pytest.raises(SpecError, match="sum to 5/4"):
        ep.exponents(ep.component_laws(ep.Assumptions(w_memory=Fraction(3, 4))))


def test_least_squares_over_the_component_model_recovers_a_and_b():
    e, k = np.meshgrid([2.0, 4, 8, 16, 32, 64, 128, 256], [1.0, 2, 4, 8])
    keep = k <= e / 2
    fit = ep.fit_components(e[keep], k[keep])
    assert abs(fit["a"] - 7 / 16) < 1e-12 and abs(fit["b"] - 5 / 8) < 1e-12 and abs(fit["c"] - 1) < 1e-12


def test_component_worked_examples():
    comm = {law.name: law for law in ep.component_laws()}["communication"]
    # 2^1.5 / 16^0.75 = 2^1.5 / 2^3 = 2^-1.5
    np.testing.assert_allclose(float(comm.size(1.8e12, 16.0, 2.0)), 1.8e12 * 2**-1.5, rtol=1e-14)
    np.testing.assert_allclose(float(comm.size(1.8e12, 16.0, 2.0)), 636.4e9, rtol=1e-4)
    post = math.exp(0.5 * math.log(1.8e12) + 0.25 * math.log(400e9) + 0.25 * math.log(635e9))
    np.testing.assert_allclose(float(ep.geometric_mean_size([1.8e12, 400e9, 635e9], [0.5, 0.25, 0.25])), post, rtol=1e-13)
    np.testing.assert_allclose(post, 952.5e9, rtol=1e-4)  # docstring figure
    formula = 1.8e12 * 2**0.625 / 16**0.4375
    np.testing.assert_allclose(float(ep.dense_equivalent(1.8e12, 16.0, 2.0, 0.4375, 0.625)), formula, rtol=1e-14)
    np.testing.assert_allclose(float(ep.component_equivalent(1.8e12, 16.0, 2.0)), formula, rtol=1e-13)  # same law
    np.testing.assert_allclose(formula, 825.3e9, rtol=1e-4)
    total, _ = param_counts("mixtral-8x22b")
    np.testing.assert_allclose(2**0.625 / 8**0.4375, 0.62093, rtol=1e-5)
    np.testing.assert_allclose(float(ep.dense_equivalent(total, 8.0, 2.0, 0.4375, 0.625)), 87.31e9, rtol=1e-4)
    np.testing.assert_allclose(float(ep.cube_root_size_from_layers(120.0, 126.0, 405.85e9)), 350.6e9, rtol=1e-4)
    ratio, adv = ep.comm_advantage(jnp.array([16.0, 8.0, 16.0, 4.0]), jnp.array([2.0, 2.0, 4.0, 2.0]))
    np.testing.assert_allclose(np.asarray(ratio), [0.5, 2 / math.sqrt(8), 1.0, 1.0], rtol=1e-14)
    assert list(np.asarray(adv)) == [True, True, False, False]  # k < √E, strictly


def test_residual_table_against_the_post():
    rows = {r["quantity"]: r for r in ep.residual_table()}
    ref = {q: r["reference"] for q, r in rows.items()}
    # the post's numbers, quoted independently here
    assert ref["a (E exponent)"] == 0.44 and ref["b (k exponent)"] == 0.63
    assert ref["GPT-4 fast decode, moejax components"] == 950e9 and ref["Mixtral-8x22B fast decode"] == 90e9
    assert ref["4-way sparse P_eq/P (E=8, k=2)"] == 0.65 and ref["8-way sparse P_eq/P (E=16, k=2)"] == 0.50
    for r in rows.values():
        assert r["rel_residual"] == pytest.approx(r["moejax"] / r["reference"] - 1, rel=1e-12, abs=1e-15)
    for q, post in (("a (E exponent)", 0.44), ("b (k exponent)", 0.63)):  # rounds (half up) to the post's 2 d.p.
        assert abs(rows[q]["moejax"] - post) <= 0.005 + 1e-12
    assert abs(rows["GPT-4 communication size"]["rel_residual"]) < 0.005  # "around 635B"
    assert abs(rows["GPT-4 arithmetic size"]["rel_residual"]) < 0.001  # 275B = the catalogue's active count
    assert abs(rows["GPT-4 fast decode, post's rounded components"]["rel_residual"]) < 0.005  # "around 950B"
    # depth from the catalogue's layer counts: 405.85B·(120/126)^3, 12 % under the post's "about 400B"
    llama_total, _ = param_counts("llama-3-405b")
    assert rows["GPT-4 serial-depth size"]["moejax"] == pytest.approx(llama_total * (120 / 126) ** 3, rel=1e-12)
    assert rows["GPT-4 serial-depth size"]["rel_residual"] == pytest.approx(llama_total * (120 / 126) ** 3 / 400e9 - 1)
    assert abs(rows["Mixtral-8x22B fast decode"]["rel_residual"]) < 0.05
    assert rows["4-way sparse P_eq/P (E=8, k=2)"]["moejax"] == pytest.approx(2**0.625 / 8**0.4375, rel=1e-12)
    assert rows["8-way sparse P_eq/P (E=16, k=2)"]["moejax"] == pytest.approx(2**0.625 / 16**0.4375, rel=1e-12)
    assert rows["k < √E (comm advantage) for GPT-4 and Mixtral"]["moejax"] == 1.0


# ---------------------------------------------------------------------------------------------
# Design set and dense family
# ---------------------------------------------------------------------------------------------

ANCHOR = load_model("llama-3-405b")
H100 = load_hardware("h100-sxm")


def _cube_scale(size):
    """s with a·s³ + c·s = size for Llama-3-405B (layers ∝ s³, embeddings ∝ s), by numpy.roots."""
    total = 405_849_243_648.0
    emb = 2 * 128256 * 16384.0
    roots = np.roots([total - emb, 0.0, emb, -size])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def test_moe_design_has_the_active_size_shape_and_the_total():
    m = ep.moe_design(1e12, 16.0, 2.0, ANCHOR)
    s = _cube_scale(1e12 * 2 / 16)
    np.testing.assert_allclose([float(m.n_layers), float(m.d_model), float(m.n_heads)], [126 * s, 16384 * s, 128 * s], rtol=1e-12)
    np.testing.assert_allclose(s, 0.67253, rtol=1e-5)
    total, active = arch.param_counts(m)
    np.testing.assert_allclose(float(total), 1e12, rtol=1e-13)
    # expert width from docs/cost-model.md §1 by hand: L·(attn + E·3·d·dffe + d·E) + 2·V·d = P
    L, d, h, g = 126 * s, 16384 * s, 128 * s, 8 * s
    attn = d * h * 128 + 2 * d * g * 128 + h * 128 * d
    dffe = (1e12 - L * (attn + d * 16) - 2 * 128256 * d) / (L * 16 * 3 * d)
    np.testing.assert_allclose(float(m.d_ff_expert), dffe, rtol=1e-12)
    np.testing.assert_allclose(float(m.d_ff_expert), 21761.2, rtol=1e-5)
    assert float(active) > 1e12 * 2 / 16  # attention and embeddings are shared, not split
    one = ep.moe_design(3e11, 1.0, 1.0, ANCHOR)  # E = k = 1: the cube-root dense model itself
    np.testing.assert_allclose(float(one.d_ff_expert), float(epoch_cube_root(3e11, ANCHOR).d_ff), rtol=1e-12)


def test_keep_attention_family_and_design_matrix_worked_examples():
    m = ep.moe_design(1e12, 16.0, 2.0, ANCHOR)
    s = _cube_scale(1e12 * 2 / 16)
    L, d = 126 * s, 16384 * s
    kept = L * (2 * d * d + 2 * d * (d / 16)) + 2 * 128256 * d  # h·dh = d, g·dh = d/16 (8 of 128 heads)
    np.testing.assert_allclose(float(ep.family_offset(m, "keep-attention")), kept, rtol=1e-12)
    np.testing.assert_allclose(kept, 24.689e9, rtol=1e-4)
    dense = ep.family_model(300e9, m, ANCHOR, "keep-attention")
    np.testing.assert_allclose(float(dense.d_ff), (300e9 - kept) / (L * 3 * d), rtol=1e-12)
    np.testing.assert_allclose(float(dense.d_ff), 98286, rtol=1e-5)
    np.testing.assert_allclose(float(arch.param_counts(dense)[0]), 300e9, rtol=1e-13)
    assert float(dense.n_layers) == float(m.n_layers) and float(dense.n_experts) == 1.0
    assert float(ep.family_offset(m, "epoch-cube-root")) == 0.0
    np.testing.assert_allclose(np.asarray(ep.design_matrix(16.0, 2.0)), [1.0, math.log(2), -math.log(16)], rtol=1e-15)


def test_cube_root_newton_steps_are_converged():
    sizes = jnp.logspace(3, 17, 57)
    totals = jax.vmap(lambda q: arch.param_counts(epoch_cube_root(q, ANCHOR, ep.CUBE_ROOT_STEPS))[0])(sizes)
    np.testing.assert_allclose(np.asarray(totals), np.asarray(sizes), rtol=1e-13)


def test_build_design_defaults_and_bad_numbers():
    p, e, k = ep.build_design([1e11, 1e12], [8, 16, 32, 64, 128], [1, 2, 4, 8])
    # k ≤ E/2: E=8 keeps k = 1, 2, 4 (3); E ≥ 16 keeps all four: 3 + 4·4 = 19 pairs per total
    assert len(p) == 38 and np.all(k <= e / 2) and set(p) == {1e11, 1e12}
    for bad, match in (
        (([-1.0], [8], [1]), "total_params = -1.0"),
        (([1e11], [8, math.inf], [1]), "n_experts = inf"),
        (([1e11], [8], []), "top_k is empty"),
        (([1e11], [2], [4]), "design is empty"),
    ):
        with pytest.raises(SpecError, match=match):
            ep.build_design(*bad)
    with pytest.raises(SpecError, match="must not exceed"):
        ep.build_design([1e11], None, None, pairs=[[8, 1], [4, 8]])


@pytest.mark.parametrize(
    "pairs, match",
    [
        ([[16, 1], [16, 2], [16, 4], [16, 8]], "n_experts takes the single value 16"),
        ([[8, 2], [16, 2], [32, 2], [64, 2]], "top_k takes the single value 2"),
        ([[8, 1], [16, 2], [32, 4], [64, 8]], "k/E is constant"),
        ([[4, 2], [16, 4], [64, 8], [256, 16]], "log k = 0.5·log E"),
        ([[8, 1], [16, 2], [8, 2]], "need at least 4"),
    ],
)
def test_rank_deficient_designs_are_refused(pairs, match):
    e, k = (np.array(v, dtype=float) for v in zip(*pairs))
    with pytest.raises(SpecError, match=match) as info:
        ep.check_design_rank(e, k)
    assert "\n" not in str(info.value)
    with pytest.raises(SpecError, match=match):
        ep.fit_power_law(np.full(len(e), 1e12), e, k, np.full(len(e), 1e11))


# ---------------------------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------------------------


def test_ols_worked_example():
    x = jnp.array([[1.0, 0], [1, 1], [1, 2], [1, 3]])
    r = ep.ols(x, jnp.array([0.0, 1, 2, 4]))
    # slope = Sxy/Sxx = 6.5/5, intercept = 1.75 − 1.3·1.5; RSS 0.3 on 2 dof; TSS 8.75
    np.testing.assert_allclose(np.asarray(r["theta"]), [-0.2, 1.3], atol=1e-14)
    np.testing.assert_allclose(float(r["se"][1]), math.sqrt(0.15 / 5), rtol=1e-12)
    np.testing.assert_allclose(float(r["r2"]), 1 - 0.3 / 8.75, rtol=1e-12)


def test_fit_recovers_synthetic_exponents():
    p, e, k = ep.build_design([1e11, 1e12], [8, 16, 32, 64, 128], [1, 2, 4, 8])  # 38 designs
    a, b, c = 0.3, 0.7, 0.8
    exact = c * p * k**b / e**a
    clean = ep.fit_power_law(p, e, k, exact)
    assert abs(clean["a"] - a) < 1e-12 and abs(clean["b"] - b) < 1e-12 and abs(clean["c"] - c) < 1e-12
    assert clean["r2"] == pytest.approx(1.0, abs=1e-12)
    noise = np.random.default_rng(7).normal(0.0, 0.02, len(p))
    fit = ep.fit_power_law(p, e, k, exact * np.exp(noise))
    for name, true in (("a", a), ("b", b)):
        assert abs(fit[name] - true) < 4 * fit[f"se_{name}"], (name, fit[name], fit[f"se_{name}"])
        assert 0.002 < fit[f"se_{name}"] < 0.05  # σ = 0.02 over 38 points
    opt = ep.fit_power_law_optax(e, k, np.log(exact * np.exp(noise) / p))
    for name in ("a", "b", "c"):
        assert abs(opt[name] - fit[name]) < 1e-7


# ---------------------------------------------------------------------------------------------
# Latency roots
# ---------------------------------------------------------------------------------------------


def regime(phase="decode", batch=8.0, context=2048.0, tp=8.0, epd=8.0, name="r", **acc):
    return ep.Regime(
        partition=Partition(tp=tp, ep=epd),
        workload=Workload(context=context, batch=batch),
        accounting=Accounting(**acc),
        name=name,
        phase=phase,
    )


REGIMES = {
    "prefill": regime("prefill", 8.0, 8192.0, 1.0, 1.0),
    "slow_decode": regime(batch=1024.0),
    "fast_decode": regime(),
    "long_context": regime(context=131072.0),
}


def test_regimes_match_conf_fit_yaml():
    from omegaconf import OmegaConf

    from moejax.analysis.epoch import build_regime

    cfg = OmegaConf.load(ROOT / "conf" / "fit.yaml")
    acc = OmegaConf.to_container(cfg.accounting)
    for name in cfg.regimes:
        got = build_regime(name, OmegaConf.to_container(cfg.regime_defs[name]), acc)
        assert got.phase == REGIMES[name].phase
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(REGIMES[name])):
            assert float(a) == float(b), name


def test_step_time_worked_example():
    # moejax/physics/cost.py: Llama-3-70B BF16, 8×H100 TP8, batch 1, 1k context, speed of light:
    # 5.56 ms (ep = min(8, E = 1) = 1)
    t = ep.step_time(load_model("llama-3-70b"), H100, regime(batch=1.0, context=1024.0))
    np.testing.assert_allclose(float(t), 5.560e-3, rtol=1e-3)


DESIGN = ep.build_design([1e11, 1e12], [8, 16, 32, 64, 128], [1, 2, 4, 8])  # the default 38 designs: one shape, one compile
N = len(DESIGN[0])


def _sizes(p, e, k, hw=H100, reg=REGIMES["fast_decode"], family="epoch-cube-root"):
    return ep._equivalent_sizes_jit(
        jnp.asarray(p, dtype=float),
        jnp.asarray(e, dtype=float),
        jnp.asarray(k, dtype=float),
        hw,
        replace(reg, name=""),
        ANCHOR,
        family=family,
    )


def test_one_expert_is_its_own_dense_equivalent():
    p = np.logspace(10, 13, N)
    ones = np.ones(N)
    for name, reg in REGIMES.items():
        np.testing.assert_allclose(np.asarray(_sizes(p, ones, ones, reg=reg)["p_eq"]), p, rtol=1e-9, err_msg=name)
    keep = _sizes(p, ones, ones, reg=REGIMES["fast_decode"], family="keep-attention")
    np.testing.assert_allclose(np.asarray(keep["p_eq"]), p, rtol=1e-9)


def test_roots_equalise_step_times_and_dense_time_increases():
    for reg in (REGIMES["fast_decode"], REGIMES["long_context"]):
        out = _sizes(*DESIGN, reg=reg)
        np.testing.assert_allclose(np.asarray(out["t_dense"]), np.asarray(out["t_moe"]), rtol=1e-10)
    q = jnp.logspace(8, 14, 25)
    t = jax.vmap(lambda s: ep.step_time(epoch_cube_root(s, ANCHOR), H100, REGIMES["fast_decode"]))(q)
    assert np.all(np.diff(np.asarray(t)) > 0)  # a unique root


def test_implicit_gradient_matches_finite_differences():
    """d log Q / d log P (each design) and d Σ log Q / d log hbm_bw through custom_root vs central
    differences of the solver itself (slow decode: compute, HBM and communication all present)."""
    reg = replace(REGIMES["slow_decode"], name="")
    p, e, k = DESIGN

    def total_log_q(log_p, log_bw):
        hw = replace(H100, hbm_bw=jnp.exp(log_bw))
        return jnp.sum(jnp.log(ep.equivalent_sizes(jnp.exp(log_p), e, k, hw, reg, ANCHOR)["p_eq"]))

    x = (jnp.log(jnp.asarray(p)), jnp.log(3.35e12))
    g_p, g_bw = jax.jit(jax.grad(total_log_q, argnums=(0, 1)))(*x)
    h = 1e-4
    log_q = lambda pp, hw=H100: np.log(np.asarray(_sizes(pp, e, k, hw, reg)["p_eq"]))  # noqa: E731
    fd_p = (log_q(p * math.exp(h)) - log_q(p * math.exp(-h))) / (2 * h)
    fd_bw = np.sum(
        log_q(p, replace(H100, hbm_bw=3.35e12 * math.exp(h))) - log_q(p, replace(H100, hbm_bw=3.35e12 * math.exp(-h)))
    ) / (2 * h)
    np.testing.assert_allclose(np.asarray(g_p), fd_p, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(float(g_bw), fd_bw, rtol=1e-6)
    assert np.all(np.abs(np.asarray(g_p)) > 0.5) and abs(float(g_bw)) > 0.1  # real sensitivities, not zeros


def test_scaling_every_time_term_leaves_p_eq_unchanged():
    s = 3.7
    faster = replace(
        H100,
        hbm_bw=H100.hbm_bw * s,
        flops_bf16=H100.flops_bf16 * s,
        flops_fp8=H100.flops_fp8 * s,
        intra_bw=H100.intra_bw * s,
        inter_bw=H100.inter_bw * s,
        intra_latency=H100.intra_latency / s,
        inter_latency=H100.inter_latency / s,
    )
    for reg in REGIMES.values():
        base, fast = _sizes(*DESIGN, reg=reg), _sizes(*DESIGN, faster, reg)
        np.testing.assert_allclose(np.asarray(fast["t_moe"]), np.asarray(base["t_moe"]) / s, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(fast["p_eq"]), np.asarray(base["p_eq"]), rtol=1e-9)
    # control: speeding up HBM alone does move P_eq in a memory-heavy regime
    hbm_only = _sizes(*DESIGN, replace(H100, hbm_bw=H100.hbm_bw * s), REGIMES["slow_decode"])
    base = _sizes(*DESIGN, reg=REGIMES["slow_decode"])
    assert np.max(np.abs(np.asarray(hbm_only["p_eq"]) / np.asarray(base["p_eq"]) - 1)) > 1e-2


def _prefill_flops(m, tokens, context):
    """FLOPs of one prefill pass from docs/cost-model.md §4 (all weight matmuls and scores)."""
    moe = arch.n_moe_layers(m) * 2 * arch.moe_active_params(m)
    per_token = (
        m.n_layers * (2 * arch.decoder_attn_params(m) + arch.score_flops_per_token_layer(m, context / 2))
        + m.n_dense_layers * 2 * arch.dense_ffn_params(m)
        + moe
        + 2 * m.vocab_size * m.d_model
    )
    return per_token * tokens


def test_prefill_is_compute_bound_and_fits_near_one():
    """One GPU, 8 × 8k prompts: no collectives and ≥ 512 tokens per expert (> the 295 FLOP/B ridge),
    so every phase is compute-bound and P_eq is the dense size with the MoE's FLOPs."""
    reg = REGIMES["prefill"]
    p, e, k = DESIGN
    res = ep.latency_fit(p, e, k, H100, reg, ANCHOR)
    hw = replace(H100, hbm_bytes=1e30)
    pp = lambda m: prefill_point(m, hw, Partition(), reg.workload, reg.accounting)  # noqa: E731
    moe = jax.jit(jax.vmap(lambda a, b, c: pp(ep.moe_design(a, b, c, ANCHOR))))(p, e, k)
    dense = jax.jit(jax.vmap(lambda q: pp(epoch_cube_root(q, ANCHOR))))(jnp.asarray(res.p_eq))
    for r in (moe, dense):
        np.testing.assert_allclose(np.asarray(r.step_time), np.asarray(r.t_compute), rtol=1e-12)  # all compute
        assert np.all(np.asarray(r.t_comm) == 0)
    # independent root: bisection on FLOPs (no cost.py, no custom_root)
    tokens, ctx = 8 * 8192.0, 8192.0
    target = np.asarray(jax.vmap(lambda a, b, c: _prefill_flops(ep.moe_design(a, b, c, ANCHOR), tokens, ctx))(p, e, k))
    flops = jax.jit(jax.vmap(lambda q: _prefill_flops(epoch_cube_root(q, ANCHOR), tokens, ctx)))
    lo, hi = np.log(p) - 12, np.log(p) + 12
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = np.asarray(flops(jnp.exp(mid))) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    np.testing.assert_allclose(res.p_eq, np.exp(0.5 * (lo + hi)), rtol=1e-9)
    # a ≈ b ≈ 1 within 0.1: the MoE's active params exceed P·k/E by (1 − k/E)·(attention + embeddings),
    # a share that grows as the active size shrinks, and score FLOPs scale as L·d, not as size;
    # the fit on active params alone gives ~0.96, the FLOP-matched size ~0.95 (docs/epoch-derivation.md)
    fit = res.fit
    assert abs(fit["a"] - 1) < 0.1 and abs(fit["b"] - 1) < 0.1 and abs(fit["a"] - fit["b"]) < 0.02
    active = ep.fit_power_law(p, e, k, res.active)
    assert abs(active["a"] - fit["a"]) < 0.03 and abs(active["b"] - fit["b"]) < 0.03
    assert fit["r2"] > 0.99
    assert abs(res.fit_optax["a"] - fit["a"]) < 1e-6 and abs(res.fit_optax["b"] - fit["b"]) < 1e-6


def test_safeguarded_newton_root_and_bracket():
    x = ep._safeguarded_newton(lambda u: jnp.exp(u) - 5.0, jnp.asarray(0.0))  # convex: Newton alone overshoots
    np.testing.assert_allclose(float(x), math.log(5.0), rtol=1e-15)
    np.testing.assert_allclose(float(ep._safeguarded_newton(lambda u: u - 100.0, jnp.asarray(0.0))), 12.0)  # edge of u0 ± 12


def test_unbracketed_root_is_a_one_line_error(monkeypatch):
    p, e, k = DESIGN
    nan = lambda p, *a, **kw: {"p_eq": jnp.full(len(p), jnp.nan), "t_moe": p, "t_dense": p, "active": p}  # noqa: E731
    monkeypatch.setattr(ep.latency, "_equivalent_sizes_jit", nan)
    with pytest.raises(SpecError, match="no dense size of family epoch-cube-root matches") as info:
        ep.latency_fit(p, e, k, H100, REGIMES["fast_decode"], ANCHOR)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def cli(*args, tmp_path):
    """``python -m moejax.fit *args`` run in this process (cli_runs.run_main): the latency mode's
    compiled roots and fits are the ones the tests above compiled (the default 38 designs)."""
    return run_main("moejax.fit", list(args), hydra_dir=tmp_path / "run")


def test_cli_components(tmp_path):
    code, stdout, stderr = cli("mode=components", tmp_path=tmp_path)
    assert code == 0, stderr[-2000:]
    record = json.loads(stdout.strip().splitlines()[-1])
    assert record["mode"] == "components" and record["a"] == 0.4375 and record["b"] == 0.625
    assert record["a_exact"] == "7/16" and abs(record["a_lstsq"] - 0.4375) < 1e-12
    assert "GPT-4 serial-depth size" in stdout and "residual" in stdout


@pytest.fixture(scope="module")
def latency_run(tmp_path_factory):
    """``python -m moejax.fit mode=latency`` as configured (4 regimes x the 38 default designs), once for
    the two tests below: (JSON record, stdout, its directory)."""
    tmp = tmp_path_factory.mktemp("latency")
    code, stdout, stderr = cli("mode=latency", f"out={tmp / 'fit.nc'}", tmp_path=tmp)
    assert code == 0, stderr[-2000:]
    return json.loads(stdout.strip().splitlines()[-1]), stdout, tmp


def test_cli_latency_writes_the_dataset(latency_run):
    record, stdout, tmp = latency_run
    assert record["mode"] == "latency" and list(record["regimes"]) == list(REGIMES)  # conf/fit.yaml's order
    assert "P_eq = " in stdout and "R² = " in stdout
    with xr.open_dataset(tmp / "fit.nc") as ds:
        assert dict(ds.sizes) == {"design": N, "regime": len(REGIMES)} and list(ds.regime.values) == list(REGIMES)
        for name in ("total_params", "n_experts", "top_k", "p_eq", "step_time_moe", "step_time_dense", "p_eq_fitted"):
            assert "units" in ds[name].attrs and "long_name" in ds[name].attrs
        np.testing.assert_allclose(ds.step_time_dense.values, ds.step_time_moe.values, rtol=1e-10)
        for i, fit in enumerate(record["regimes"].values()):
            assert set(fit) >= {"a", "b", "c", "r2"}
            assert abs(fit["a_optax"] - fit["a"]) < 1e-6 and abs(fit["b_optax"] - fit["b"]) < 1e-6
            # the stored fit is the least-squares fit of the stored roots
            refit = ep.fit_power_law(ds.total_params.values, ds.n_experts.values, ds.top_k.values, ds.p_eq.values[:, i])
            assert abs(refit["a"] - float(ds.a[i])) < 1e-10 and abs(refit["a"] - fit["a"]) < 1e-10
    assert not list(tmp.glob(".fit.nc.*"))  # no temporary left behind


def test_epoch_latency_table_is_what_fit_prints(latency_run):
    """docs/epoch-derivation.md's results table against ``python -m moejax.fit mode=latency`` (default
    config: 38 designs × 4 regimes), every cell, to half a unit of its last printed digit plus 1e-9
    (a tests/test_doc_numbers.py check, here to share the run and the compiled roots)."""
    text = (ROOT / "docs" / "epoch-derivation.md").read_text()
    rows = re.findall(r"^\| (prefill|slow_decode|fast_decode|long_context) \| (.+) \|$", text, flags=re.MULTILINE)
    assert [r[0] for r in rows] == ["prefill", "slow_decode", "fast_decode", "long_context"]
    printed = latency_run[0]["regimes"]
    for name, cells in rows:
        for key, cell in zip(("c", "b", "a", "r2", "se_a", "se_b"), (c.strip() for c in cells.split("|"))):
            tol = 0.5 * 10.0 ** -(len(cell.split(".")[1]) if "." in cell else 0) + 1e-9
            assert abs(float(cell) - printed[name][key]) <= tol, (name, key, cell, printed[name][key])


@pytest.mark.parametrize(
    "args, match",
    [
        (["mode=nope"], "mode = 'nope' is invalid"),
        (["mode=latency", "regimes=[]"], "regimes is empty"),
        (["mode=latency", "design.n_experts=[16]"], "rank-deficient"),
    ],
)
def test_cli_errors_are_one_line_exit_2_no_file(tmp_path, args, match):
    out = tmp_path / "fit.nc"
    code, _, stderr = cli(*args, f"out={out}", tmp_path=tmp_path)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], stderr
    assert not out.exists()
