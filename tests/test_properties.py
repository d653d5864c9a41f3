"""Hypothesis properties of the decode cost model (random valid points, seeded by hypothesis)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from points import random_point

from moejax import Accounting, HardwareSpec, ModelSpec, Partition, Workload, decode_point, dense_baseline
from moejax.physics.baseline import dense_size, kept_params
from moejax.physics.routing import expert_load

decode = jax.jit(decode_point)
seeds = st.integers(0, 2**32 - 1)
factors = st.floats(1.0, 10.0)
SETTINGS = settings(max_examples=40, deadline=None)


def specs(seed, roofline="phase", traffic="physical", **acc_over):
    m, hw, p, wl, acc = random_point(np.random.default_rng(seed))
    acc = {**acc, **acc_over}
    return (
        ModelSpec(**m),
        HardwareSpec(**hw),
        Partition(**p),
        Workload(**wl),
        Accounting(**acc, roofline=roofline, expert_traffic=traffic),
    )


def _no_slower(fast, slow):
    """``fast`` serves at least the throughput of ``slow`` and, at an equal batch, no slower."""
    assert float(fast.throughput_per_gpu) >= float(slow.throughput_per_gpu) * (1 - 1e-12)
    if bool(slow.feasible) and float(fast.batch) == float(slow.batch):
        assert float(fast.step_time) <= float(slow.step_time) * (1 + 1e-12)


@SETTINGS
@given(
    seeds,
    factors,
    st.sampled_from(["hbm_bw", "flops_bf16", "flops_fp8", "flops_fp4", "intra_bw", "inter_bw", "link_bw"]),
    st.sampled_from(["phase", "global"]),
    st.sampled_from(["physical", "paper-active", "paper-pool"]),
)
def test_more_bandwidth_or_flops_is_never_slower(seed, factor, field, roofline, traffic):
    # eq. 19's global max is monotone only without overlap windows (see Accounting.roofline)
    over = {"overlap": 0.0} if roofline == "global" else {}
    m, hw, p, wl, acc = specs(seed, roofline, traffic, **over)
    faster = dataclasses.replace(hw, **{field: getattr(hw, field) * factor})
    _no_slower(decode(m, faster, p, wl, acc), decode(m, hw, p, wl, acc))


@SETTINGS
@given(seeds, st.sampled_from(["physical", "paper-active", "paper-pool"]))
def test_single_expert_moe_equals_dense(seed, traffic):
    m, hw, p, wl, acc = specs(seed, traffic=traffic)
    base = dataclasses.replace(
        m, n_experts=1.0, top_k=1.0, d_ff_expert=0.0, shared_d_ff=0.0, n_dense_layers=m.n_layers, expert_bytes=0.0
    )
    moe = dataclasses.replace(base, n_dense_layers=0.0, d_ff_expert=base.d_ff)
    p = dataclasses.replace(p, ep=1.0, dense_tp=0.0, redundant_experts=0.0)  # the dense FFN laid out as the expert
    a, b = decode(moe, hw, p, wl, acc), decode(base, hw, p, wl, acc)
    for f in ("step_time", "t_compute", "t_hbm", "t_comm", "t_comm_exposed", "b_max", "throughput", "memory_per_gpu"):
        np.testing.assert_allclose(float(getattr(a, f)), float(getattr(b, f)), rtol=1e-12, err_msg=f)


@SETTINGS
@given(seeds)
def test_feasible_batch_never_exceeds_b_max(seed):
    m, hw, p, wl, acc = specs(seed)
    out = decode(m, hw, p, wl, acc)
    if bool(out.feasible):
        assert float(out.batch) <= float(out.b_max)
    over = decode(m, hw, p, dataclasses.replace(wl, batch=float(out.b_max) + 1.0), acc)
    assert not bool(over.feasible)


@SETTINGS
@given(seeds, factors)
def test_more_context_never_raises_b_max(seed, factor):
    m, hw, p, wl, acc = specs(seed)
    longer = dataclasses.replace(wl, context=wl.context * factor)
    assert float(decode(m, hw, p, longer, acc).b_max) <= float(decode(m, hw, p, wl, acc).b_max)


@SETTINGS
@given(
    st.sampled_from([4, 8, 16, 64, 128, 256, 2048]),
    st.integers(1, 8),
    st.floats(0.5, 20.0),
    st.sampled_from(["physical", "paper-active"]),
    st.floats(1.0, 4096.0),
)
def test_qs_inequality_ffn_bytes(e, k, kappa, traffic, batch):
    """ρκ < 1 ⇔ the MoE moves more FFN weight bytes per token than its κ-matched dense FFN (κ× the
    active FFN, eq. 11): at any batch with the paper's eq. 17 traffic, and with physical traffic at a
    batch large enough that every expert is touched."""
    k = min(k, e)
    rho = k / e
    if abs(rho * kappa - 1) < 1e-6:
        return
    m = ModelSpec(
        n_layers=1.0,
        d_model=1024.0,
        vocab_size=1000.0,
        n_heads=8.0,
        n_kv_heads=8.0,
        head_dim=128.0,
        d_ff=0.0,
        n_dense_layers=0.0,
        n_experts=float(e),
        top_k=float(k),
        d_ff_expert=512.0,
    )
    if traffic == "physical":
        batch = 1e4 * e / k  # (1 - ρ)^B underflows: all E experts are read once per step
    moe_bytes_per_token = float(expert_load(m, Partition(), batch, Accounting(expert_traffic=traffic)).params_read) / batch
    dense_bytes_per_token = kappa * k * 3 * 1024.0 * 512.0 / batch
    assert (rho * kappa < 1) == (moe_bytes_per_token > dense_bytes_per_token)


@settings(max_examples=25, deadline=None)
@given(seeds)
def test_jit_and_eager_agree(seed):
    m, hw, p, wl, acc = specs(seed)
    jitted, eager = decode(m, hw, p, wl, acc), decode_point(m, hw, p, wl, acc)
    for f in ("step_time", "b_max", "throughput_per_gpu", "t_comm_exposed", "bound"):
        np.testing.assert_allclose(float(getattr(jitted, f)), float(getattr(eager, f)), rtol=1e-12, err_msg=f)


@jax.jit
def _log_ratio_gradients(m, hw, p, wl, acc, kappa):
    """∂/∂(hw, κ) of log(MoE throughput / dense throughput), compiled once for every example."""

    def log_ratio(hw, kappa):
        moe = decode_point(m, hw, p, wl, acc).throughput_per_gpu
        dense = decode_point(dense_baseline(m, kappa), hw, p, wl, acc).throughput_per_gpu
        return jnp.log(moe) - jnp.log(dense)

    return jax.grad(log_ratio, argnums=(0, 1))(hw, kappa)


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_gradients_finite_where_feasible(seed):
    m, hw, p, wl, acc = specs(seed, integer_batch=False)  # continuous B_max: differentiable
    m = dataclasses.replace(
        m,
        n_experts=max(float(m.n_experts), 8.0),
        top_k=min(float(m.top_k), 2.0),
        d_ff_expert=max(float(m.d_ff_expert), 1024.0),
        n_dense_layers=0.0,
    )
    p = dataclasses.replace(p, ep=1.0, redundant_experts=0.0)

    assume(float(dense_size(m, 5.0)) > 1.01 * float(kept_params(m)))  # else dense_baseline refuses κ = 5
    if not (bool(decode(m, hw, p, wl, acc).feasible) and bool(decode(dense_baseline(m, 5.0), hw, p, wl, acc).feasible)):
        return
    g_hw, g_kappa = _log_ratio_gradients(m, hw, p, wl, acc, 5.0)
    leaves = jax.tree_util.tree_leaves(g_hw) + [g_kappa]
    assert all(bool(jnp.isfinite(x)) for x in leaves)
    assert float(g_kappa) > 0  # a bigger dense baseline is slower, so MoE/dense rises with κ
