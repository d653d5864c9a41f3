"""Hugging Face ``config.json`` importers for per-layer attention patterns and 2025 MoE layouts.

=================  ==============================================================================
``model_type``     mapping
=================  ==============================================================================
``gpt_oss``        every layer MoE (``num_local_experts`` experts of width ``intermediate_size``);
                   ``layer_types`` (default: sliding, full, alternating) with ``sliding_window``
``qwen3_next``     Qwen3-MoE layout plus a shared expert (``shared_expert_intermediate_size``);
                   ``layer_types`` (default: every ``full_attention_interval``-th layer full, the
                   rest Gated DeltaNet ``linear_attention`` with the ``linear_*`` dimensions)
``llama4``         the ``text_config``: layer ``i`` is MoE iff ``(i+1) % interleave_moe_layer_step == 0``
                   (experts of width ``intermediate_size`` plus one shared expert of that width;
                   dense layers ``intermediate_size_mlp``); RoPE layers (``no_rope_layers[i] = 1``,
                   default all but every 4th) attend within chunks of ``attention_chunk_size``,
                   NoPE layers are full attention
``deepseek_v32``   DeepSeek-V3 plus DeepSeek Sparse Attention in every layer: ``index_topk``,
                   ``index_n_heads``, ``index_head_dim``
``glm4_moe``       GQA attention with DeepSeek-style MoE fields (``first_k_dense_replace``,
                   ``n_routed_experts``, ``n_shared_experts``, ``moe_intermediate_size``)
``minimax_m2``     GQA attention, every layer MoE (``num_local_experts`` of width ``intermediate_size``);
                   its MTP modules are not counted
``qwen3_5_moe``    the ``text_config`` as ``qwen3_next`` (output gate iff ``attn_output_gate``); the vision
                   encoder and the MTP layer are not counted
``glm_moe_dsa``    as ``deepseek_v32`` (MLA + DeepSeek Sparse Attention in every layer, DeepSeekMoE)
``kimi_k25``       the ``text_config`` as ``deepseek_v3``; the vision encoder is not counted
=================  ==============================================================================
"""

from __future__ import annotations

from . import hf
from .hf import _MISSING, _arch, _attention_heads, _common, _deepseek_v3, _experts, _fail, _int


def _layer_types(cfg: dict, n_layers: int, default: list[str], allowed: tuple[str, ...]) -> list[str]:
    types = cfg.get("layer_types")
    if types is None:
        return default
    if not isinstance(types, list) or len(types) != n_layers:
        _fail("layer_types", types, f"must be a list of num_hidden_layers = {n_layers} layer types")
    for t in types:
        if t not in allowed:
            _fail("layer_types", types, f"entries allowed: {', '.join(allowed)}")
    return types


def _gpt_oss(cfg: dict) -> dict:
    d, n_layers, vocab, tied, act = _common(cfg)
    kind, h, g, dh = _attention_heads(cfg, d)
    n_experts, top_k = _experts(cfg, "num_local_experts")
    default = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    types = _layer_types(cfg, n_layers, default, ("sliding_attention", "full_attention"))
    out = _arch(
        n_layers=n_layers,
        n_dense_layers=0,
        d_model=d,
        vocab_size=vocab,
        tied=tied,
        attention=kind,
        n_heads=h,
        n_kv_heads=g,
        head_dim=dh,
        ffn_activation=act,
        d_ff=0,
        n_experts=n_experts,
        top_k=top_k,
        d_ff_expert=_int(cfg, "intermediate_size"),
    )
    if "sliding_attention" in types:
        out.update(layer_types=types, sliding_window=_int(cfg, "sliding_window"))
    return out


def _qwen3_next(cfg: dict) -> dict:
    out = hf._qwen3_moe(cfg)
    n_layers = out["n_layers"]
    out["attn_gate"] = True  # Qwen3-Next's full-attention layers gate their output (q_proj is 2·h·dh wide)
    out["shared_d_ff"] = _int(cfg, "shared_expert_intermediate_size", minimum=0, default=0)
    interval = _int(cfg, "full_attention_interval", default=4)
    default = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n_layers)]
    types = _layer_types(cfg, n_layers, default, ("linear_attention", "full_attention"))
    out["layer_types"] = types
    if "linear_attention" in types:
        out.update(
            linear_key_heads=_int(cfg, "linear_num_key_heads"),
            linear_key_dim=_int(cfg, "linear_key_head_dim"),
            linear_value_heads=_int(cfg, "linear_num_value_heads"),
            linear_value_dim=_int(cfg, "linear_value_head_dim"),
            linear_conv_kernel=_int(cfg, "linear_conv_kernel_dim", default=4),
        )
    return out


def _llama4(cfg: dict) -> dict:
    text = cfg.get("text_config", cfg)
    if not isinstance(text, dict):
        _fail("text_config", text, "must be a JSON object (the language model's config)")
    d, n_layers, vocab, tied, act = _common(text)
    kind, h, g, dh = _attention_heads(text, d)
    n_experts, top_k = _experts(text, "num_local_experts")
    step = _int(text, "interleave_moe_layer_step", default=1)
    n_moe = sum(1 for i in range(n_layers) if (i + 1) % step == 0)
    d_expert = _int(text, "intermediate_size")
    no_rope = text.get("no_rope_layers") or [
        int((i + 1) % _int(text, "no_rope_layer_interval", default=4) != 0) for i in range(n_layers)
    ]
    if not isinstance(no_rope, list) or len(no_rope) != n_layers or any(x not in (0, 1) for x in no_rope):
        _fail("no_rope_layers", no_rope, f"must be a list of num_hidden_layers = {n_layers} flags 0 or 1")
    chunk = text.get("attention_chunk_size")
    out = _arch(
        n_layers=n_layers,
        n_dense_layers=n_layers - n_moe,
        d_model=d,
        vocab_size=vocab,
        tied=tied,
        attention=kind,
        n_heads=h,
        n_kv_heads=g,
        head_dim=dh,
        ffn_activation=act,
        d_ff=_int(text, "intermediate_size_mlp") if n_moe < n_layers else 0,
        n_experts=n_experts,
        top_k=top_k,
        d_ff_expert=d_expert,
        shared_d_ff=d_expert,
    )
    if chunk is not None:  # RoPE layers attend within their chunk; NoPE layers see the whole context
        out.update(
            layer_types=["chunked_attention" if r else "full_attention" for r in no_rope],
            chunk_size=_int(text, "attention_chunk_size"),
        )
    return out


def _deepseek_v32(cfg: dict) -> dict:
    out = _deepseek_v3(cfg)
    out.update(
        layer_types=["sparse_attention"] * out["n_layers"],
        sparse_top_k=_int(cfg, "index_topk"),
        index_heads=_int(cfg, "index_n_heads"),
        index_head_dim=_int(cfg, "index_head_dim"),
    )
    return out


def _glm4_moe(cfg: dict) -> dict:
    d, n_layers, vocab, tied, act = _common(cfg)
    kind, h, g, dh = _attention_heads(cfg, d)
    n_experts, top_k = _experts(cfg, "n_routed_experts")
    first_dense = _int(cfg, "first_k_dense_replace", minimum=0, default=0)
    if first_dense > n_layers:
        _fail("first_k_dense_replace", first_dense, f"must not exceed num_hidden_layers = {n_layers}")
    d_expert = _int(cfg, "moe_intermediate_size")
    n_shared = _int(cfg, "n_shared_experts", minimum=0, default=0, allow_none_as=0)
    return _arch(
        n_layers=n_layers,
        n_dense_layers=first_dense,
        d_model=d,
        vocab_size=vocab,
        tied=tied,
        attention=kind,
        n_heads=h,
        n_kv_heads=g,
        head_dim=dh,
        ffn_activation=act,
        d_ff=_int(cfg, "intermediate_size") if first_dense else 0,
        n_experts=n_experts,
        top_k=top_k,
        d_ff_expert=d_expert,
        shared_d_ff=n_shared * d_expert,
        mtp_layers=_int(cfg, "num_nextn_predict_layers", minimum=0, default=0, allow_none_as=0),
    )


def _minimax_m2(cfg: dict) -> dict:
    d, n_layers, vocab, tied, act = _common(cfg)
    kind, h, g, dh = _attention_heads(cfg, d)
    n_experts, top_k = _experts(cfg, "num_local_experts")
    types = cfg.get("attn_type_list", _MISSING)
    if types is not _MISSING and types is not None and (not isinstance(types, list) or any(t != 1 for t in types)):
        _fail("attn_type_list", types, "a list of 1s: only full-attention layers (1) are modelled for minimax_m2")
    return _arch(
        n_layers=n_layers,
        n_dense_layers=0,
        d_model=d,
        vocab_size=vocab,
        tied=tied,
        attention=kind,
        n_heads=h,
        n_kv_heads=g,
        head_dim=dh,
        ffn_activation=act,
        d_ff=0,
        n_experts=n_experts,
        top_k=top_k,
        d_ff_expert=_int(cfg, "intermediate_size"),
    )


def _text_config(cfg: dict) -> dict:
    text = cfg.get("text_config", _MISSING)
    if not isinstance(text, dict):
        _fail("text_config", text, "must be a JSON object (the language model's config)")
    return text


def _qwen3_5_moe(cfg: dict) -> dict:
    text = _text_config(cfg)
    out = _qwen3_next(text)
    out["attn_gate"] = hf._bool(text, "attn_output_gate", True)
    return out


def _kimi_k25(cfg: dict) -> dict:
    return _deepseek_v3(_text_config(cfg))


PATTERNED_IMPORTERS = {
    "gpt_oss": _gpt_oss,
    "qwen3_next": _qwen3_next,
    "llama4": _llama4,
    "deepseek_v32": _deepseek_v32,
    "glm4_moe": _glm4_moe,
    "minimax_m2": _minimax_m2,
    "qwen3_5_moe": _qwen3_5_moe,
    "glm_moe_dsa": _deepseek_v32,
    "kimi_k25": _kimi_k25,
}
hf._IMPORTERS.update(PATTERNED_IMPORTERS)  # registered when the catalogue package imports this module
