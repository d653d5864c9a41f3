"""Kernel-structured step: kernel calls per layer type and their fixed cost (docs/cost-model.md, "Kernel-structured step").

A decode (or prefill) step is a sequence of kernels. Each call costs a fixed ``τ`` of its class (launch and
tail inside a CUDA graph; ``Accounting.tau_*``, s) on top of its share of the phase's roofline. The calls
per layer type are data, ``KERNEL_COUNTS``: each entry names the kernels of one engine decode graph and its
source. Collectives are not counted here: every all-reduce, all-to-all and send already pays its own fixed
cost (``HardwareSpec.intra_latency``/``inter_latency`` plus ``Accounting.collective_latency``).

Worked example (tests/test_kernel_step.py): a Llama GQA decoder layer with a dense FFN runs 4 GEMMs, one
attention kernel and 3 elementwise kernels; with the ``kernel`` preset's Hopper constants (τ_gemm 5.758 µs,
τ_attention 10.97 µs, τ_elementwise 1.321 µs) that is 4·5.758 + 10.97 + 3·1.321 = 37.97 µs per layer.
"""

from __future__ import annotations

from .arch import is_mla
from .specs import Accounting, ModelSpec
from .xp import namespace, static_equals

KERNEL_CLASSES = ("gemm", "grouped_gemm", "attention", "elementwise")
AIC = "ai-dynamo/aiconfigurator@28db912:src/aiconfigurator/sdk/models/"
AIC_QWEN = "ai-dynamo/aiconfigurator@2a8d75c:src/aiconfigurator/sdk/models/qwen35.py"
# Kernel calls per layer of each type, by class (counts), and where they come from.
KERNEL_COUNTS = {
    "gqa": {  # full, sliding and chunked softmax layers of an MHA/GQA/MQA model
        "gemm": 2,
        "attention": 1,
        "elementwise": 1,
        "source": AIC + "llama.py generation_ops (TensorRT-LLM decode graph): add_norm_1, qkv_gemm, "
        "generation_attention (RoPE and KV-cache append inside), proj_gemm",
    },
    "mla": {  # full, sliding and chunked layers of an MLA model
        "gemm": 5,
        "attention": 1,
        "elementwise": 1,
        "source": AIC + "deepseek.py generation_ops: add_norm_1, downscale_gemm (q_a and kv_a fused), "
        "q_b_proj_gemm, bmm_pre (absorbed W_UK), generation_attention (MLA), bmm_post (absorbed W_UV), proj_gemm",
    },
    "dsa_indexer": {  # added to a sparse (DeepSeek Sparse Attention) layer
        "gemm": 3,
        "attention": 1,
        "elementwise": 3,
        "source": "deepseek-ai/DeepSeek-V3.2-Exp@6d8cb70:inference/model.py Indexer.forward: wq_b, wk, weights_proj "
        "GEMMs; fp8_index scores; k_norm, top-k, and RoPE + Hadamard rotation + FP8 quantisation of q and k "
        "taken as one fused kernel (assumed fusion)",
    },
    "linear": {  # a linear-attention (Gated DeltaNet) layer
        "gemm": 2,
        "attention": 1,
        "elementwise": 2,
        "source": AIC_QWEN + " generation_ops (GDN layers): gdn_norm, in_proj_gemm, causal_conv1d_update, "
        "fused_sigmoid_gating_delta_rule_update (the state update, attention class), out_proj_gemm",
    },
    "dense_ffn": {
        "gemm": 2,
        "elementwise": 2,
        "source": AIC + "llama.py generation_ops: add_norm_2, gate_ffn1_gemm, act_gate, ffn2_gemm",
    },
    "moe_ffn": {
        "gemm": 1,
        "grouped_gemm": 1,
        "elementwise": 1,
        "source": AIC + "deepseek.py generation_ops: add_norm_2, router_gemm, generation_moe (one fused module: "
        "routing, permute, two grouped GEMMs, activation, finalize; what moe.csv measures and tau_grouped_gemm fits)",
    },
    "shared_experts": {  # added to an MoE layer with shared experts (shared_d_ff > 0)
        "gemm": 2,
        "elementwise": 1,
        "source": AIC_QWEN + " _ffn_generation_ops: shared up GEMM, activation, shared_down_gemm, in sequence "
        "(deepseek.py runs them on a second stream beside the routed experts: that overlap is not modelled)",
    },
    "lm_head": {
        "gemm": 1,
        "elementwise": 1,
        "source": AIC + "llama.py generation_ops: generation_embedding (lookup), generation_logits_gemm; once per step",
    },
}


def kernel_tau(entry: str, acc: Accounting):
    """Fixed cost (s) of one layer of type ``entry`` (a key of ``KERNEL_COUNTS``): Σ_class count · τ_class."""
    counts = KERNEL_COUNTS[entry]
    return sum(counts.get(c, 0) * getattr(acc, "tau_" + c) for c in KERNEL_CLASSES)


def layer_fixed_costs(m: ModelSpec, acc: Accounting) -> dict:
    """Kernel fixed cost (s) per layer of each phase of ``cost.microbatch_phases``: ``attention`` (a full
    layer; sliding and chunked layers alike: MLA or GQA kernels by ``attn_kind``), ``sparse`` (the same plus
    the DSA indexer), ``linear``, ``dense``, ``moe`` (shared experts' kernels when ``shared_d_ff > 0``) and
    ``head`` (the LM head and embedding lookup, once per step).

    Llama-3-70B with the kernel preset (τ_gemm 5.758 µs, τ_attention 10.97 µs, τ_elementwise 1.321 µs):
    attention 2·5.758 + 10.97 + 1.321 = 23.81 µs, dense 2·5.758 + 2·1.321 = 14.16 µs."""
    xp = namespace(m)
    if all(static_equals(getattr(acc, "tau_" + c), 0.0) for c in KERNEL_CLASSES):  # no fixed costs: none traced
        return dict.fromkeys(("attention", "sliding", "chunked", "sparse", "linear", "dense", "moe", "head"), 0.0)
    attention = xp.where(is_mla(m), kernel_tau("mla", acc), kernel_tau("gqa", acc))
    shared = xp.where(m.shared_d_ff > 0, kernel_tau("shared_experts", acc), 0.0)
    return {
        "attention": attention,
        "sliding": attention,
        "chunked": attention,
        "sparse": attention + kernel_tau("dsa_indexer", acc),
        "linear": kernel_tau("linear", acc),
        "dense": kernel_tau("dense_ffn", acc),
        "moe": kernel_tau("moe_ffn", acc) + shared,
        "head": kernel_tau("lm_head", acc),
    }
