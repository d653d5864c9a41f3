"""Parameter counts, KV bytes and FLOPs of one ``ModelSpec`` (definitions: docs/cost-model.md §1).

All functions are pure array expressions of the spec's leaves (``xp.namespace``), so they vmap and differentiate.
"""

from __future__ import annotations

import numpy as np

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
    MLA: DeepSeek-V3 gives 187,105,280 per layer (q-LoRA 1536, kv-LoRA 512, RoPE 64). A gated
    attention (``attn_gate``) adds a second ``d*h*dh`` query-sized projection for its output gate.
    """
    xp = namespace(m)
    d, h, dh, dr = m.d_model, m.n_heads, m.head_dim, m.rope_head_dim
    dv = v_head_dim(m)
    gqa = d * h * dh * (1 + m.attn_gate) + 2 * d * m.n_kv_heads * dh + h * dv * d
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


def n_full_layers(m: ModelSpec):
    """Full-attention decoder layers: those the pattern does not make sliding, chunked, sparse or linear."""
    return m.n_layers - m.n_sliding_layers - m.n_chunked_layers - m.n_sparse_layers - m.n_linear_layers


def has_pattern(m: ModelSpec) -> bool:
    """Whether any layer of a concrete (host) spec, batched or not, is not full attention."""
    return bool(np.any(np.asarray(n_full_layers(m)) != np.asarray(m.n_layers)))


def indexer_params(m: ModelSpec):
    """The lightning indexer of one sparse (DSA) layer: query heads from the query latent (or from
    the hidden state without one), one shared key and a per-head weight from the hidden state:
    ``q_lora·H_I·d_I + d·d_I + d·H_I``. DeepSeek-V3.2 (q_lora 1536, H_I 64, d_I 128, d 7168):
    12,582,912 + 917,504 + 458,752 = 13,959,168."""
    xp = namespace(m)
    q_in = xp.where(m.q_lora_rank > 0, m.q_lora_rank, m.d_model)
    return q_in * m.index_heads * m.index_head_dim + m.d_model * (m.index_head_dim + m.index_heads)


def linear_conv_channels(m: ModelSpec):
    """Channels of a linear-attention layer's short convolution: queries, keys and values."""
    return 2 * m.linear_key_heads * m.linear_key_dim + m.linear_value_heads * m.linear_value_dim


def linear_attn_params(m: ModelSpec):
    """One Gated DeltaNet layer (count): q, k, v and output-gate z projections ``d·(2·nk·dk + 2·nv·dv)``,
    per-head decay and beta ``d·2·nv``, the convolution ``channels·kernel``, the output projection
    ``nv·dv·d`` (norms and per-head scalars omitted). Qwen3-Next-80B (d 2048, nk 16, dk 128, nv 32,
    dv 128, kernel 4): 25,165,824 + 131,072 + 32,768 + 8,388,608 = 33,718,272."""
    d, nv, dv = m.d_model, m.linear_value_heads, m.linear_value_dim
    return (
        d * (2 * m.linear_key_heads * m.linear_key_dim + 2 * nv * dv)
        + d * 2 * nv
        + linear_conv_channels(m) * m.linear_conv_kernel
        + nv * dv * d
    )


def linear_state_values(m: ModelSpec):
    """Fixed state of one sequence in one linear-attention layer (values): a ``dk × dv`` matrix per
    value head plus the convolution's last ``kernel - 1`` inputs. Qwen3-Next-80B: 32·128·128 +
    8192·3 = 524,288 + 24,576 = 548,864 (1.10 MB in BF16), whatever the context."""
    xp = namespace(m)
    return m.linear_value_heads * m.linear_key_dim * m.linear_value_dim + linear_conv_channels(m) * xp.maximum(
        m.linear_conv_kernel - 1, 0.0
    )


def linear_state_flops(m: ModelSpec):
    """FLOPs per token of one linear-attention layer's recurrence: about 6 per state-matrix value
    (``S·k``, the rank-1 delta update, ``S·q``; the decay is folded in). Qwen3-Next: 6·524,288 = 3,145,728."""
    return 6 * m.linear_value_heads * m.linear_key_dim * m.linear_value_dim


def total_attn_params(m: ModelSpec):
    """Attention parameters of all decoder layers: the model's attention in every non-linear layer,
    plus the indexer in sparse layers and the linear-attention projections in linear layers."""
    return (
        (m.n_layers - m.n_linear_layers) * decoder_attn_params(m)
        + m.n_sparse_layers * indexer_params(m)
        + m.n_linear_layers * linear_attn_params(m)
    )


def param_counts(m: ModelSpec):
    """(total, active-per-decoded-token) parameter counts.

    Active counts attention, dense FFNs, k routed + shared experts and router per MoE layer and
    the LM head; the input-embedding lookup is not a matmul and encoder layers do not run.
    Llama-3-70B: total 70,552,387,584 (published 70,553,706,496 with its 1.3M norm weights).
    """
    layers = (
        total_attn_params(m)
        + m.n_dense_layers * dense_ffn_params(m)
        + m.n_encoder_layers * (attn_params(m) + encoder_ffn_params(m))
    )
    total = layers + n_moe_layers(m) * moe_resident_params(m) + embedding_params(m)
    active = (
        total_attn_params(m)
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
    """KV-cache bytes stored per token of context over all decoder layers at ``kv_bytes``: what
    grows with the context (full and sparse layers; sparse layers add the indexer's key). Sliding
    and chunked layers hold at most a window or chunk and linear layers a fixed state
    (``kv_bytes_per_sequence``).

    DeepSeek-V3 (MLA, BF16): 61*576*2 = 70,272 B. Llama-3-70B (GQA, BF16): 80*2048*2 = 327,680 B.
    """
    growing = (n_full_layers(m) + m.n_sparse_layers) * kv_values_per_token_layer(m) + m.n_sparse_layers * m.index_head_dim
    return growing * m.kv_bytes


def window_tokens(m: ModelSpec, context):
    """(stored, read per decode step) tokens of one sequence at ``context`` tokens in a sliding-window
    layer, a chunked layer, and a sparse layer (its latent; its indexer reads every key).

    Sliding: both ``min(L, W)``. Chunked: stored ``min(L, C)`` (the current chunk); read ``L`` while
    the sequence is in its first chunk, else ``C/2``, the mean over the phases of a batch's sequences
    (a step at position ``p`` reads ``p mod C`` tokens). Sparse: stored ``L``, read ``min(L, top_k)``.
    gpt-oss (W 128) at L = 8192: 128 and 128; Llama-4 (C 8192) at L = 131072: 8192 stored, 4096 read.
    """
    xp = namespace(m, context)
    sliding = xp.minimum(context, m.sliding_window)
    chunk_read = xp.where(context <= m.chunk_size, context, m.chunk_size / 2)
    return ((sliding, sliding), (xp.minimum(context, m.chunk_size), chunk_read), (context, xp.minimum(context, m.sparse_top_k)))


def kv_bytes_per_sequence(m: ModelSpec, context):
    """KV-cache and state bytes one sequence holds at ``context`` tokens, before sharding: full and
    sparse layers ``L`` tokens, sliding ``min(L, W)``, chunked ``min(L, C)``, linear layers their
    fixed state. gpt-oss-120b (BF16) at 8192: 8192·36,864 + 18·128·2048 = 306.7 MB.
    """
    (sl, _), (ch, _), _ = window_tokens(m, context)
    v = kv_values_per_token_layer(m)
    return m.kv_bytes * (
        context * (kv_bytes_per_token(m) / m.kv_bytes)
        + v * (m.n_sliding_layers * sl + m.n_chunked_layers * ch)
        + m.n_linear_layers * linear_state_values(m)
    )


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
