"""The defaults of the spec dataclasses for the plain-Python oracle (``reference.py``), copied from
``moejax/physics/specs.py`` (which imports jax, so the oracle does not import it), and the helpers
that complete an input dict with them."""

from __future__ import annotations

from . import reference_patterns as rp

# Defaults copied from moejax/physics/specs.py (specs.py imports jax, so it is not imported here).
# None marks a required field.
MODEL_DEFAULTS = {
    "n_layers": None,
    "d_model": None,
    "vocab_size": None,
    "n_heads": None,
    "n_kv_heads": None,
    "head_dim": None,
    "d_ff": None,
    "attn_kind": 1.0,
    "v_head_dim": 0.0,
    "rope_head_dim": 0.0,
    "q_lora_rank": 0.0,
    "kv_lora_rank": 0.0,
    "n_dense_layers": -1.0,
    "n_encoder_layers": 0.0,
    "cross_attention": 0.0,
    "tied_embeddings": 0.0,
    "ffn_matrices": 3.0,
    "n_experts": 1.0,
    "top_k": 1.0,
    "d_ff_expert": 0.0,
    "shared_d_ff": 0.0,
    "weight_bytes": 2.0,
    "kv_bytes": 2.0,
    "act_bytes": 2.0,
    "expert_bytes": 0.0,
    "embed_bytes": 0.0,
    "gemm_bytes": 0.0,
    "attn_bytes": 0.0,
    "dispatch_bytes": 0.0,
    "mtp_layers": 0.0,
    "attn_gate": 0.0,
    **rp.PATTERN_DEFAULTS,
}
HARDWARE_DEFAULTS = {
    "hbm_bytes": None,
    "hbm_bw": None,
    "flops_bf16": None,
    "flops_fp8": None,
    "intra_bw": None,
    "intra_latency": None,
    "island_size": None,
    "inter_bw": None,
    "inter_latency": None,
    "flops_fp4": 0.0,
    "fabric": 0.0,
    "link_bw": 0.0,
    "torus_dims": 0.0,
    "stack": 0.0,
}
PARTITION_DEFAULTS = {
    "tp": 1.0,
    "ep": 1.0,
    "pp": 1.0,
    "dp": 1.0,
    "dp_attn": 1.0,
    "kvp": 1.0,
    "kv_mode": 0.0,
    "dense_tp": 0.0,
    "redundant_experts": 0.0,
}
WORKLOAD_DEFAULTS = {"context": None, "batch": 0.0, "kappa": 5.0, "draft_tokens": 0.0, "accepted": 0.0}
ACCOUNTING_DEFAULTS = {
    "hbm_usable_fraction": 1.0,
    "reserve_bytes": 0.0,
    "kv_scale": 1.0,
    "routing_skew": 0.0,
    "overlap": 0.0,
    "hbm_efficiency": 1.0,
    "flops_efficiency": 1.0,
    "layer_latency": 0.0,
    "fp8_efficiency": 1.0,
    "fp4_efficiency": 1.0,
    "comm_efficiency": 1.0,
    "collective_latency": 0.0,
    "a2a_peer_latency": 0.0,
    "request_overhead": 0.0,
    "sequence_latency": 0.0,
    "step_latency": 0.0,
    "rocm_factor": 1.0,
    "grouped_gemm_efficiency": 1.0,
    "attention_efficiency": 1.0,
    "warmup_share": 0.0,
    "tau_gemm": 0.0,
    "tau_grouped_gemm": 0.0,
    "tau_attention": 0.0,
    "tau_elementwise": 0.0,
    "attention_bw_efficiency": 1.0,
    "grouped_gemm_bw_efficiency": 1.0,
    "mode": "sol",
    "expert_traffic": "physical",
    "integer_batch": True,
    "roofline": "phase",
}
STATIC = ("mode", "expert_traffic", "integer_batch", "roofline")

MLA = 3  # ATTENTION_KINDS["mla"]


def fill(given: dict, defaults: dict, name: str) -> dict:
    """``given`` completed with ``defaults``; raises KeyError for a missing required field."""
    out = {}
    for key, default in defaults.items():
        if key in given:
            out[key] = given[key]
        elif default is None:
            raise KeyError(f"{name}.{key} is required")
        else:
            out[key] = default
    return out


def floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}
