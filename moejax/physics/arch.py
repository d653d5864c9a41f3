"""Parameter counts, KV bytes and FLOPs of one ``ModelSpec`` (definitions: docs/cost-model.md §1).

All functions are pure array expressions of the spec's leaves (``xp.namespace``), so they vmap and differentiate.
"""

from __future__ import annotations

from .specs import ATTENTION_KINDS, ModelSpec
from .xp import namespace

MLA = ATTENTION_KINDS["mla"]


def is_mla(m: ModelSpec):
    return m.attn_kind == MLA


def v_head_dim(m: ModelSpec):
    xp = namespace(m)
    return xp.where(m.v_head_dim > 0, m.v_head_dim, m.head_dim)


def attn_params(m: ModelSpec):
    """Self-attention projection parameters of one layer (count).

    GQA: ``d*h*dh + 2*d*g*dh + h*dv*d``. Llama-3-70B (d 8192, 64 heads, 8 KV heads, dh 128):
    8192*8192 + 2*8192*1024 + 8192*8192 = 150,994,944.
    MLA: DeepSeek-V3 gives 187,105,280 per layer (q-LoRA 1536, kv-LoRA 512, RoPE 64).
    """
    xp = namespace(m)
    d, h, dh, dr = m.d_model, m.n_heads, m.head_dim, m.rope_head_dim
    dv = v_head_dim(m)
    gqa = d * h * dh + 2 * d * m.n_kv_heads * dh + h * dv * d
    p_q = xp.where(m.q_lora_rank > 0, d * m.q_lora_rank + m.q_lora_rank * h * (dh + dr), d * h * (dh + dr))
    mla = p_q + d * (m.kv_lora_rank + dr) + m.kv_lora_rank * h * (dh + dv) + h * dv * d
    return xp.where(is_mla(m), mla, gqa)


def cross_attn_params(m: ModelSpec):
    """Cross-attention parameters of one decoder layer (count); 0 for decoder-only models."""
    d, h, dh = m.d_model, m.n_heads, m.head_dim
    return m.cross_attention * (2 * d * h * dh + 2 * d * m.n_kv_heads * dh)


def decoder_attn_params(m: ModelSpec):
    return attn_params(m) + cross_attn_params(m)


def dense_ffn_params(m: ModelSpec):
    """Dense FFN of one layer: ``m*d*d_ff``. Llama-3-70B: 3*8192*28672 = 704,643,072."""
    return m.ffn_matrices * m.d_model * m.d_ff


def expert_params(m: ModelSpec):
    """One routed expert: ``m*d*d_ff_expert``. DeepSeek-V3: 3*7168*2048 = 44,040,192."""
    return m.ffn_matrices * m.d_model * m.d_ff_expert


def shared_params(m: ModelSpec):
    return m.ffn_matrices * m.d_model * m.shared_d_ff


def router_params(m: ModelSpec):
    xp = namespace(m)
    return xp.where(m.n_experts > 1, m.d_model * m.n_experts, 0.0)


def n_moe_layers(m: ModelSpec):
    return m.n_layers - m.n_dense_layers


def moe_resident_params(m: ModelSpec):
    """All FFN parameters of one MoE layer: routed pool + shared experts + router."""
    return m.n_experts * expert_params(m) + shared_params(m) + router_params(m)


def moe_active_params(m: ModelSpec):
    """FFN parameters one token multiplies in an MoE layer: k experts + shared + router."""
    return m.top_k * expert_params(m) + shared_params(m) + router_params(m)


def encoder_ffn_params(m: ModelSpec):
    xp = namespace(m)
    return xp.where(m.n_experts > 1, moe_resident_params(m), dense_ffn_params(m))


def embedding_params(m: ModelSpec):
    """Input table plus LM head: ``vocab*d*(2 - tied)``."""
    return m.vocab_size * m.d_model * (2 - m.tied_embeddings)


def param_counts(m: ModelSpec):
    """(total, active-per-decoded-token) parameter counts.

    Active counts attention, dense FFNs, k routed + shared experts and router per MoE layer and
    the LM head; the input-embedding lookup is not a matmul and encoder layers do not run.
    Llama-3-70B: total 70,552,387,584 (published 70,553,706,496 with its 1.3M norm weights).
    """
    layers = (
        m.n_layers * decoder_attn_params(m)
        + m.n_dense_layers * dense_ffn_params(m)
        + m.n_encoder_layers * (attn_params(m) + encoder_ffn_params(m))
    )
    total = layers + n_moe_layers(m) * moe_resident_params(m) + embedding_params(m)
    active = (
        m.n_layers * decoder_attn_params(m)
        + m.n_dense_layers * dense_ffn_params(m)
        + n_moe_layers(m) * moe_active_params(m)
        + m.vocab_size * m.d_model
    )
    return total, active


def kv_values_per_token_layer(m: ModelSpec):
    """KV values stored per token per decoder layer, before sharding.

    MLA stores the latent ``kv_lora_rank + rope_head_dim`` (DeepSeek-V3: 512 + 64 = 576);
    MHA/GQA/MQA store ``2*n_kv*head_dim`` (Llama-3-70B: 2*8*128 = 2048), doubled with
    cross-attention (the encoder's K/V over the same context).
    """
    xp = namespace(m)
    gqa = 2 * m.n_kv_heads * m.head_dim * (1 + m.cross_attention)
    return xp.where(is_mla(m), m.kv_lora_rank + m.rope_head_dim, gqa)


def kv_bytes_per_token(m: ModelSpec):
    """KV-cache bytes per token over all decoder layers at the model's ``kv_bytes``.

    DeepSeek-V3 (MLA, BF16): 61*576*2 = 70,272 B. Llama-3-70B (GQA, BF16): 80*2048*2 = 327,680 B.
    """
    return m.n_layers * kv_values_per_token_layer(m) * m.kv_bytes


def score_flops_per_token_layer(m: ModelSpec, context, absorbed: bool = True):
    """Attention score + value FLOPs for one query token in one layer at ``context`` tokens.

    MHA/GQA/MQA: ``4*h*dh*L`` (doubled with cross-attention). MLA in decode runs absorbed, over
    the latent: ``2*h*(2*kv_lora_rank + rope)*L``; in prefill (``absorbed=False``) it decompresses
    K and V and runs as multi-head attention: ``2*h*(dh + rope + dv)*L``. Llama-3-70B at L = 1024:
    4*64*128*1024 = 33,554,432. DeepSeek-V3 at L = 1024: absorbed 2*128*1088*1024 = 285,212,672,
    decompressed 2*128*320*1024 = 83,886,080 (3.4x fewer).
    """
    xp = namespace(m, context)
    gqa = 4 * m.n_heads * m.head_dim * context * (1 + m.cross_attention)
    if absorbed:
        mla = 2 * m.n_heads * (2 * m.kv_lora_rank + m.rope_head_dim) * context
    else:
        mla = 2 * m.n_heads * (m.head_dim + m.rope_head_dim + v_head_dim(m)) * context
    return xp.where(is_mla(m), mla, gqa)


def mtp_params(m: ModelSpec):
    """Parameters of the multi-token-prediction modules: each is one decoder layer (attention and
    the model's FFN kind) plus a ``2d -> d`` projection; embeddings and head are shared.
    DeepSeek-V3 (one module): 187,105,280 (attention) + 11,320,164,352 (MoE layer) + 102,760,448
    (projection) = 11,610,030,080."""
    xp = namespace(m)
    ffn = xp.where(m.n_experts > 1, moe_resident_params(m), dense_ffn_params(m))
    return m.mtp_layers * (decoder_attn_params(m) + ffn + 2 * m.d_model * m.d_model)
