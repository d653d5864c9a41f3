"""Import a Hugging Face ``config.json`` as a moejax ``architecture:`` mapping.

``architecture_from_hf_config(cfg)`` returns the same keys as the ``architecture:`` block of a
``conf/model/<name>.yaml`` entry, for four families (dispatch on ``model_type``, or on
``architectures[0]`` when ``model_type`` is absent):

=================  ========================  ==============================================
``model_type``     ``architectures``          mapping
=================  ========================  ==============================================
``llama``          ``LlamaForCausalLM``       dense; every layer has an FFN of width
                                              ``intermediate_size``
``qwen3``          ``Qwen3ForCausalLM``       as ``llama`` (``head_dim`` given; may differ from
                                              ``hidden_size / num_attention_heads``)
``mixtral``        ``MixtralForCausalLM``     every layer MoE: ``num_local_experts`` experts of
                                              width ``intermediate_size``, top-``num_experts_per_tok``
``qwen3_moe``      ``Qwen3MoeForCausalLM``    layer ``i`` is MoE unless ``i in mlp_only_layers`` or
                                              ``(i+1) % decoder_sparse_step != 0`` (then dense, width
                                              ``intermediate_size``); no shared experts
``deepseek_v3``    ``DeepseekV3ForCausalLM``  MLA attention; layer ``i`` is MoE iff
                                              ``i >= first_k_dense_replace`` and
                                              ``i % moe_layer_freq == 0``; shared width
                                              ``n_shared_experts * moe_intermediate_size``; MTP
                                              modules (``num_nextn_predict_layers``) are
                                              ``mtp_layers``, outside the totals
=================  ========================  ==============================================

Families with per-layer attention patterns or 2025 MoE layouts (``deepseek_v32``, ``gpt_oss``,
``qwen3_next``, ``qwen3_5_moe``, ``llama4``, ``glm4_moe``, ``glm_moe_dsa``, ``minimax_m2``, ``kimi_k25``) are
imported by ``hf_patterns.py``, which
registers its importers here when the catalogue package is imported.

moejax places dense layers first (``n_dense_layers`` leading layers). Where a config interleaves
dense and MoE layers, ``n_dense_layers`` is their count; parameter and cost totals depend only on
the count.

Missing or inconsistent fields raise ``SpecError`` with a one-line message naming the field, the
value and what is allowed. Plain Python: no JAX is used here.
"""

from __future__ import annotations

import math
from typing import Any

from ..physics.specs import SpecError

WHERE = "config.json"

#: model_type -> the ``architectures`` class name it is released with.
SUPPORTED = {
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "llama": "LlamaForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
    "deepseek_v32": "DeepseekV32ForCausalLM",
    "gpt_oss": "GptOssForCausalLM",
    "qwen3_next": "Qwen3NextForCausalLM",
    "llama4": "Llama4ForConditionalGeneration",
    "glm4_moe": "Glm4MoeForCausalLM",
    "minimax_m2": "MiniMaxM2ForCausalLM",
    "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration",
    "glm_moe_dsa": "GlmMoeDsaForCausalLM",
    "kimi_k25": "KimiK25ForConditionalGeneration",
}
_BY_CLASS = {cls: mt for mt, cls in SUPPORTED.items()}

#: hidden_act of a gated (3-matrix) FFN -> moejax ffn_activation.
_GATED_ACT = {
    "silu": "swiglu",
    "swish": "swiglu",
    "gelu": "geglu",
    "gelu_new": "geglu",
    "gelu_pytorch_tanh": "geglu",
    "gelu_fast": "geglu",
}

_MISSING = object()


def _supported_text() -> str:
    return ", ".join(f"{mt} ({cls})" for mt, cls in sorted(SUPPORTED.items()))


def _fail(field: str, value: Any, allowed: str) -> None:
    shown = "<missing>" if value is _MISSING else repr(value)
    raise SpecError(f"{WHERE}: {field} = {shown} is invalid: {allowed}")


# Plausibility bounds (inclusive maxima) of integer fields: far above any published model (61-126
# layers, d_model <= 3e4, 384 experts), far below what overflows or allocates without end.
MAXIMUM = {"num_hidden_layers": 10_000, "num_nextn_predict_layers": 100, "first_k_dense_replace": 10_000}
MAXIMUM_OTHER = 10**8  # any other integer field (widths, heads, experts, vocabulary)


def _int(cfg: dict, field: str, *, minimum: int = 1, default: Any = _MISSING, allow_none_as: Any = _MISSING) -> int:
    """An integer field in [``minimum``, its plausibility bound]; ``default`` when absent,
    ``allow_none_as`` when null."""
    value = cfg.get(field, _MISSING)
    if value is None and allow_none_as is not _MISSING:
        return allow_none_as
    if value is _MISSING and default is not _MISSING:
        return default
    maximum = MAXIMUM.get(field, MAXIMUM_OTHER)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > maximum:
        _fail(field, value, f"must be an integer in [{minimum}, {maximum}] (plausibility bound)")
    allowed = f"must be an integer >= {minimum}"
    if value is _MISSING:
        _fail(field, value, f"it is required ({allowed})")
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(field, value, allowed)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        _fail(field, value, allowed)
    if value < minimum:
        _fail(field, value, allowed)
    return int(value)


def _bool(cfg: dict, field: str, default: bool) -> bool:
    value = cfg.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        _fail(field, value, "must be true or false")
    return value


def _gated_activation(cfg: dict) -> str:
    act = cfg.get("hidden_act", "silu")
    if not isinstance(act, str) or act not in _GATED_ACT:  # a list or mapping: unhashable
        _fail("hidden_act", act, f"allowed {', '.join(sorted(_GATED_ACT))} (gated FFN)")
    return _GATED_ACT[act]


def _model_type(cfg: dict) -> str:
    if not isinstance(cfg, dict):
        raise SpecError(f"{WHERE}: top level = {type(cfg).__name__} is invalid: must be a JSON object")
    archs = cfg.get("architectures")
    if archs is not None and (not isinstance(archs, list) or not all(isinstance(a, str) for a in archs)):
        _fail("architectures", archs, "must be a list of class names")
    mt = cfg.get("model_type")
    if mt is None:
        if not archs:
            _fail("model_type", _MISSING, f"it is required (or architectures); supported: {_supported_text()}")
        if archs[0] not in _BY_CLASS:
            _fail("architectures", archs, f"supported: {_supported_text()}")
        return _BY_CLASS[archs[0]]
    if not isinstance(mt, str) or mt not in SUPPORTED:  # a list or mapping: unhashable
        _fail("model_type", mt, f"supported: {_supported_text()}")
    known = [a for a in (archs or []) if a in _BY_CLASS]
    if known and _BY_CLASS[known[0]] != mt:
        _fail("architectures", archs, f"inconsistent with model_type = {mt!r} (expects {SUPPORTED[mt]})")
    return mt


def _attention_heads(cfg: dict, d_model: int) -> tuple[str, int, int, int]:
    """(attention kind, n_heads, n_kv_heads, head_dim) for MHA/GQA/MQA families."""
    h = _int(cfg, "num_attention_heads")
    g = _int(cfg, "num_key_value_heads", default=h, allow_none_as=h)
    if g > h:
        _fail("num_key_value_heads", g, f"must not exceed num_attention_heads = {h}")
    if h % g:
        _fail("num_key_value_heads", g, f"must divide num_attention_heads = {h}")
    if cfg.get("head_dim") is not None:
        dh = _int(cfg, "head_dim")
    else:
        if d_model % h:
            _fail("num_attention_heads", h, f"must divide hidden_size = {d_model} when head_dim is not given")
        dh = d_model // h
    kind = "mha" if g == h else "mqa" if g == 1 else "gqa"
    return kind, h, g, dh


def _experts(cfg: dict, experts_field: str) -> tuple[int, int]:
    n_experts = _int(cfg, experts_field)
    top_k = _int(cfg, "num_experts_per_tok")
    if top_k > n_experts:
        _fail("num_experts_per_tok", top_k, f"must not exceed {experts_field} = {n_experts}")
    return n_experts, top_k


def _arch(
    *,
    n_layers,
    n_dense_layers,
    d_model,
    vocab_size,
    tied,
    attention,
    n_heads,
    n_kv_heads,
    head_dim,
    ffn_activation,
    d_ff,
    n_experts=1,
    top_k=1,
    d_ff_expert=0,
    shared_d_ff=0,
    v_head_dim=0,
    rope_head_dim=0,
    q_lora_rank=0,
    kv_lora_rank=0,
    mtp_layers=0,
) -> dict:
    return {
        **({"mtp_layers": mtp_layers} if mtp_layers else {}),
        "n_layers": n_layers,
        "n_encoder_layers": 0,
        "n_dense_layers": n_dense_layers,
        "cross_attention": False,
        "d_model": d_model,
        "vocab_size": vocab_size,
        "tied_embeddings": tied,
        "attention": attention,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "head_dim": head_dim,
        "v_head_dim": v_head_dim,
        "rope_head_dim": rope_head_dim,
        "q_lora_rank": q_lora_rank,
        "kv_lora_rank": kv_lora_rank,
        "ffn_activation": ffn_activation,
        "d_ff": d_ff,
        "n_experts": n_experts,
        "top_k": top_k,
        "d_ff_expert": d_ff_expert,
        "shared_d_ff": shared_d_ff,
    }


def _common(cfg: dict) -> tuple[int, int, int, bool, str]:
    d = _int(cfg, "hidden_size")
    n_layers = _int(cfg, "num_hidden_layers")
    vocab = _int(cfg, "vocab_size")
    tied = _bool(cfg, "tie_word_embeddings", False)
    act = _gated_activation(cfg)
    return d, n_layers, vocab, tied, act


def _llama(cfg: dict) -> dict:
    d, n_layers, vocab, tied, act = _common(cfg)
    kind, h, g, dh = _attention_heads(cfg, d)
    return _arch(
        n_layers=n_layers,
        n_dense_layers=n_layers,
        d_model=d,
        vocab_size=vocab,
        tied=tied,
        attention=kind,
        n_heads=h,
        n_kv_heads=g,
        head_dim=dh,
        ffn_activation=act,
        d_ff=_int(cfg, "intermediate_size"),
    )


def _mixtral(cfg: dict) -> dict:
    d, n_layers, vocab, tied, act = _common(cfg)
    kind, h, g, dh = _attention_heads(cfg, d)
    n_experts, top_k = _experts(cfg, "num_local_experts")
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


def _qwen3_moe(cfg: dict) -> dict:
    d, n_layers, vocab, tied, act = _common(cfg)
    kind, h, g, dh = _attention_heads(cfg, d)
    n_experts, top_k = _experts(cfg, "num_experts")
    step = _int(cfg, "decoder_sparse_step", default=1)
    only = cfg.get("mlp_only_layers", [])
    if only is None:
        only = []
    if not isinstance(only, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_layers for i in only):
        _fail("mlp_only_layers", only, f"must be a list of layer indices in [0, num_hidden_layers = {n_layers})")
    n_moe = sum(1 for i in range(n_layers) if i not in set(only) and (i + 1) % step == 0)
    if n_moe == 0:
        _fail("decoder_sparse_step", step, f"leaves no MoE layer among num_hidden_layers = {n_layers}")
    n_dense = n_layers - n_moe
    return _arch(
        n_layers=n_layers,
        n_dense_layers=n_dense,
        d_model=d,
        vocab_size=vocab,
        tied=tied,
        attention=kind,
        n_heads=h,
        n_kv_heads=g,
        head_dim=dh,
        ffn_activation=act,
        d_ff=_int(cfg, "intermediate_size") if n_dense else 0,
        n_experts=n_experts,
        top_k=top_k,
        d_ff_expert=_int(cfg, "moe_intermediate_size"),
    )


def _deepseek_v3(cfg: dict) -> dict:
    d, n_layers, vocab, tied, act = _common(cfg)
    h = _int(cfg, "num_attention_heads")
    n_experts, top_k = _experts(cfg, "n_routed_experts")
    first_dense = _int(cfg, "first_k_dense_replace", minimum=0, default=0)
    if first_dense > n_layers:
        _fail("first_k_dense_replace", first_dense, f"must not exceed num_hidden_layers = {n_layers}")
    freq = _int(cfg, "moe_layer_freq", default=1)
    n_moe = sum(1 for i in range(n_layers) if i >= first_dense and i % freq == 0)
    n_dense = n_layers - n_moe
    d_ff_expert = _int(cfg, "moe_intermediate_size")
    n_shared = _int(cfg, "n_shared_experts", minimum=0, default=0, allow_none_as=0)
    return _arch(
        n_layers=n_layers,
        n_dense_layers=n_dense,
        d_model=d,
        vocab_size=vocab,
        tied=tied,
        attention="mla",
        n_heads=h,
        n_kv_heads=h,
        head_dim=_int(cfg, "qk_nope_head_dim"),
        v_head_dim=_int(cfg, "v_head_dim"),
        rope_head_dim=_int(cfg, "qk_rope_head_dim", minimum=0),
        q_lora_rank=_int(cfg, "q_lora_rank", minimum=0, default=0, allow_none_as=0),
        kv_lora_rank=_int(cfg, "kv_lora_rank"),
        ffn_activation=act,
        d_ff=_int(cfg, "intermediate_size") if n_dense else 0,
        n_experts=n_experts,
        top_k=top_k,
        d_ff_expert=d_ff_expert,
        shared_d_ff=n_shared * d_ff_expert,
        mtp_layers=_int(cfg, "num_nextn_predict_layers", minimum=0, default=0, allow_none_as=0),
    )


_IMPORTERS = {"llama": _llama, "qwen3": _llama, "mixtral": _mixtral, "qwen3_moe": _qwen3_moe, "deepseek_v3": _deepseek_v3}


def architecture_from_hf_config(cfg: dict) -> dict:
    """The moejax ``architecture:`` mapping for a Hugging Face ``config.json`` dict.

    >>> arch = architecture_from_hf_config({
    ...     "model_type": "mixtral", "hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 32000,
    ...     "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
    ...     "num_local_experts": 8, "num_experts_per_tok": 2})
    >>> arch["attention"], arch["head_dim"], arch["n_experts"], arch["top_k"], arch["d_ff_expert"]
    ('gqa', 128, 8, 2, 14336)
    >>> architecture_from_hf_config({"model_type": "gpt2"})
    Traceback (most recent call last):
    ...
    moejax.physics.errors.SpecError: config.json: model_type = 'gpt2' is invalid: supported: deepseek_v3 (DeepseekV3ForCausalLM), deepseek_v32 (DeepseekV32ForCausalLM), glm4_moe (Glm4MoeForCausalLM), glm_moe_dsa (GlmMoeDsaForCausalLM), gpt_oss (GptOssForCausalLM), kimi_k25 (KimiK25ForConditionalGeneration), llama (LlamaForCausalLM), llama4 (Llama4ForConditionalGeneration), minimax_m2 (MiniMaxM2ForCausalLM), mixtral (MixtralForCausalLM), qwen3 (Qwen3ForCausalLM), qwen3_5_moe (Qwen3_5MoeForConditionalGeneration), qwen3_moe (Qwen3MoeForCausalLM), qwen3_next (Qwen3NextForCausalLM)
    """  # noqa: E501 (the doctest's expected exception is one line)
    return _IMPORTERS[_model_type(cfg)](cfg)
