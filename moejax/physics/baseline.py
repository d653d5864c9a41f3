"""Quality-matched dense baselines of an MoE (qs paper eq. 21) and Epoch's dense size family.

``P_dense = κ · ρ · P_total`` with ``ρ = k/E``. How the dense model is shaped is a modelling
choice the paper leaves open; two named families are offered:

- ``"keep-attention"`` (default): the MoE's depth, attention (so its KV cache, and its layer
  pattern: sliding, chunked, sparse or linear layers stay as they are) and embeddings are kept;
  every FFN becomes dense, with the width that makes the total exactly ``P_dense``.
  This is what the paper's Table 3 B values imply (notes in shared/reference).
- ``"epoch-cube-root"``: Epoch's assumption, depth, d_model, d_ff and head count each
  ∝ size^(1/3), anchored on a reference dense model (Llama-3-405B by default); the scale is
  solved so the total is exactly ``P_dense``. Shapes are a continuous relaxation (fractional
  layers and heads), which is what lets κ be differentiated through.

Both are pure array expressions in κ: vmappable and differentiable.
"""

from __future__ import annotations

import jax
import numpy as np

from . import arch
from .specs import ModelSpec, SpecError, replace
from .xp import namespace

FAMILIES = ("keep-attention", "epoch-cube-root")
EPOCH_ANCHOR = "llama-3-405b"  # the catalogue model the cube-root family scales


def dense_size(model: ModelSpec, kappa):
    """``κ·ρ·P_total`` parameters. DeepSeek-V3 at κ = 5: 5 · 8/256 · 671.0e9 = 104.9e9."""
    total, _ = arch.param_counts(model)
    return kappa * model.top_k / model.n_experts * total


def _check_positive(name: str, value, kappa) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value)
    if np.any(v <= 0):
        raise SpecError(
            f"dense_baseline: kappa = {np.asarray(kappa).ravel()[0].item()!r} is too small: {name} would be <= 0 "
            "(kappa*rho*P_total must exceed the parameters the baseline keeps)"
        )


def _check_kappa(kappa) -> None:
    """A concrete κ must be a finite number > 0 (NaN or inf would silently give a NaN model)."""
    if isinstance(kappa, jax.core.Tracer):
        return
    try:
        v = np.asarray(kappa, dtype=float)
    except (TypeError, ValueError):
        raise SpecError(f"dense_baseline: kappa = {kappa!r} is invalid: must be a finite number > 0") from None
    bad = v[~(np.isfinite(v) & (v > 0))]
    if bad.size:
        raise SpecError(f"dense_baseline: kappa = {bad.ravel()[0].item()!r} is invalid: must be a finite number > 0")


def reuse_gap(n_experts, top_k, b_moe, b_dense) -> dict:
    """The qs paper's reuse columns (eq. 22–23) from the two admissible batches (sequences).

    ``R_MoE = B_MoE·k/E``, ``R_dense = B_dense``, routing factor ``E/k``, capacity factor
    ``B_dense/B_MoE``, total gap = routing × capacity. DeepSeek-V3 on 32 GPUs (Table 3):
    B = 100 / 130 → R_MoE = 3.125, capacity 1.30, total 32 × 1.30 = 41.6.
    """
    rho = top_k / n_experts
    routing, capacity = n_experts / top_k, b_dense / b_moe
    return {
        "rho": rho,
        "r_moe": b_moe * rho,
        "r_dense": b_dense,
        "routing_factor": routing,
        "capacity_factor": capacity,
        "reuse_gap": routing * capacity,
    }


def kept_params(model: ModelSpec):
    """Parameters the keep-attention baseline keeps from the MoE: attention and embeddings."""
    return arch.total_attn_params(model) + model.n_encoder_layers * arch.attn_params(model) + arch.embedding_params(model)


def keep_attention(model: ModelSpec, kappa) -> ModelSpec:
    """Dense model of ``κ·ρ·P_total`` params keeping the MoE's depth, attention and embeddings."""
    d_ff = (dense_size(model, kappa) - kept_params(model)) / (
        (model.n_layers + model.n_encoder_layers) * model.ffn_matrices * model.d_model
    )
    _check_positive("d_ff", d_ff, kappa)
    return replace(model, d_ff=d_ff, n_dense_layers=model.n_layers, n_experts=1.0, top_k=1.0, d_ff_expert=0.0, shared_d_ff=0.0)


def epoch_cube_root(size, anchor: ModelSpec, newton_steps: int = 30) -> ModelSpec:
    """Dense model of exactly ``size`` params with depth, d_model, d_ff and heads (query and KV)
    scaled by a common factor ``s ≈ (size/P_anchor)^(1/3)`` from ``anchor``.

    Layer parameters scale as s³ and embeddings as s, so ``s`` solves ``a·s³ + c·s = size``
    (Newton from the cube-root guess; monotone, so it converges). Llama-3-405B (126 layers,
    d_model 16384) scaled to 8 × its size gives 252.66 layers and d_model 32,853 (s = 2.005).
    """
    total, _ = arch.param_counts(anchor)
    emb = arch.embedding_params(anchor)
    a, c = total - emb, emb
    s = (size / total) ** (1 / 3)
    for _ in range(newton_steps):
        s = s - (a * s**3 + c * s - size) / (3 * a * s**2 + c)
    return replace(
        anchor,
        n_layers=anchor.n_layers * s,
        n_dense_layers=anchor.n_dense_layers * s,
        d_model=anchor.d_model * s,
        d_ff=anchor.d_ff * s,
        n_heads=anchor.n_heads * s,
        n_kv_heads=anchor.n_kv_heads * s,
    )


def integer_shape(spec: ModelSpec, size) -> ModelSpec:
    """A servable version of a continuous cube-root model: whole layers, query heads a multiple of
    the anchor's KV heads (so every TP up to that count splits them), d_model = heads × head_dim,
    and d_ff re-solved so the total is still exactly ``size`` parameters."""
    xp = namespace(spec, size)
    kv = 2 ** xp.round(xp.log2(xp.maximum(spec.n_kv_heads, 1.0)))  # a power of two: TP 1-8 splits or replicates it
    heads = xp.maximum(kv, xp.round(spec.n_heads / kv) * kv)
    layers = xp.maximum(1.0, xp.round(spec.n_layers))
    shaped = replace(
        spec, n_layers=layers, n_dense_layers=layers, n_heads=heads, n_kv_heads=kv, d_model=heads * spec.head_dim, d_ff=1.0
    )
    per_ffn = arch.dense_ffn_params(shaped)  # parameters per unit of d_ff, one layer
    rest = arch.param_counts(shaped)[0] - layers * per_ffn
    d_ff = (size - rest) / (layers * per_ffn)
    _check_positive("d_ff", d_ff, size)
    return replace(shaped, d_ff=d_ff)


def dense_baseline(
    model: ModelSpec, kappa, family: str = "keep-attention", anchor: ModelSpec | None = None, integer: bool = False
) -> ModelSpec:
    """The κ-matched dense baseline of ``model`` in the named size ``family``. The cube-root family
    scales ``anchor`` (a dense model, by default the catalogue's ``EPOCH_ANCHOR``); ``integer`` gives
    it whole layers and heads (what a sweep's partition search needs)."""
    _check_kappa(kappa)
    if family == "keep-attention":
        return keep_attention(model, kappa)
    if family == "epoch-cube-root":
        if anchor is None:
            raise SpecError(
                f"dense_baseline: anchor is missing: the epoch-cube-root family needs an anchor model "
                f"(the catalogue's {EPOCH_ANCHOR!r}; moejax.dense_baseline loads it)"
            )
        anchor = replace(anchor, weight_bytes=model.weight_bytes, kv_bytes=model.kv_bytes, act_bytes=model.act_bytes)
        size = dense_size(model, kappa)
        shaped = epoch_cube_root(size, anchor)
        return integer_shape(shaped, size) if integer else shaped
    raise SpecError(f"dense_baseline: family = {family!r} is unknown: allowed {', '.join(FAMILIES)}")
