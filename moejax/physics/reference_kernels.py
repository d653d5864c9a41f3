"""Plain-Python oracle for the kernel-structured step (docs/cost-model.md, "Kernel-structured step").

Part of the test oracle ``moejax.physics.reference``, kept apart for size; written from the doc's kernel
table, imports nothing, works on plain dicts (a model dict from ``reference._model``, an accounting dict
with defaults filled). Each layer pays ``Σ_class count · τ_class`` (s) beyond its roofline.
"""

from __future__ import annotations

# The doc's table: kernel calls per layer of each type (gemm, grouped_gemm, attention, elementwise).
COUNTS = {
    "gqa": (2, 0, 1, 1),
    "mla": (5, 0, 1, 1),
    "dsa_indexer": (3, 0, 1, 3),
    "linear": (2, 0, 1, 2),
    "dense_ffn": (2, 0, 0, 2),
    "moe_ffn": (1, 1, 0, 1),
    "shared_experts": (2, 0, 0, 1),
    "lm_head": (1, 0, 0, 1),
}
TAUS = ("tau_gemm", "tau_grouped_gemm", "tau_attention", "tau_elementwise")


def tau(entry: str, ac: dict) -> float:
    """Fixed cost (s) of one layer of table row ``entry``."""
    return sum(n * ac[t] for n, t in zip(COUNTS[entry], TAUS, strict=True))


def attention_layer(m: dict, kind: str, ac: dict) -> float:
    """Fixed cost (s) of one decoder layer's attention of ``kind`` (full, sliding, chunked, sparse, linear)."""
    if kind == "linear":
        return tau("linear", ac)
    base = tau("mla" if m["mla"] else "gqa", ac)
    return base + (tau("dsa_indexer", ac) if kind == "sparse" else 0.0)


def moe_layer(m: dict, ac: dict) -> float:
    """Fixed cost (s) of one MoE FFN layer: router, fused expert module, norm; shared experts' kernels if any."""
    return tau("moe_ffn", ac) + (tau("shared_experts", ac) if m["shared_d_ff"] > 0 else 0.0)
