"""Random valid evaluation points (plain dicts keyed by spec field names) for oracle tests.

Besides the base architecture, hardware and partition, a good share of points exercise the
per-component dtypes (FP4/FP8/BF16 weights, experts, embeddings, GEMM inputs, attention and
dispatch), FP4 peaks, mesh fabrics, MTP/speculative decoding, redundant experts (with ``ep`` not
dividing ``n_experts``), a separate dense-FFN tensor-parallel degree, uneven pipeline stages and
the communication accounting constants. Every partition is legal under docs/cost-model.md §2.
"""

from __future__ import annotations

import numpy as np

NVFP4 = 0.5625  # bytes per value, block scales included


def _dtype(rng: np.random.Generator, p_default: float = 0.5) -> float:
    """A per-component dtype: 0 (the default dtype) with probability ``p_default``, else FP4/FP8/BF16."""
    return 0.0 if rng.random() < p_default else float(rng.choice([NVFP4, 1.0, 2.0]))


def random_model(rng: np.random.Generator) -> dict:
    kind = rng.choice(["mha", "gqa", "mqa", "mla"])
    heads = float(rng.choice([8, 16, 32, 64, 128]))
    head_dim = float(rng.choice([64, 128]))
    m = {
        "n_layers": float(rng.choice([8, 12, 16, 24, 27, 32, 60, 61, 64, 96])),
        "d_model": heads * head_dim,
        "vocab_size": float(rng.integers(30_000, 160_000)),
        "n_heads": heads,
        "head_dim": head_dim,
        "d_ff": float(rng.integers(1024, 30_000)),
        "ffn_matrices": float(rng.choice([2, 3])),
        "tied_embeddings": float(rng.integers(0, 2)),
        "weight_bytes": float(rng.choice([NVFP4, 1, 2], p=[0.1, 0.45, 0.45])),
        "kv_bytes": float(rng.choice([1, 2])),
        "act_bytes": 2.0,
        "embed_bytes": _dtype(rng),
        "gemm_bytes": _dtype(rng, 0.6),
        "attn_bytes": _dtype(rng),
        "mtp_layers": float(rng.integers(0, 2)),
    }
    if kind == "mla":
        m.update(
            attn_kind=3.0,
            n_kv_heads=heads,
            kv_lora_rank=float(rng.choice([256, 512])),
            rope_head_dim=64.0,
            q_lora_rank=float(rng.choice([0, 1536])),
            v_head_dim=float(rng.choice([0, 128])),
        )
    else:
        kv = {"mha": heads, "mqa": 1.0, "gqa": float(rng.choice([g for g in (2, 4, 8) if heads % g == 0]))}[kind]
        m.update(attn_kind=float({"mha": 0, "gqa": 1, "mqa": 2}[kind]), n_kv_heads=kv)
        if rng.random() < 0.15:  # encoder-decoder
            m.update(cross_attention=1.0, n_encoder_layers=m["n_layers"])
    if rng.random() < 0.7:  # MoE
        e = float(rng.choice([4, 6, 8, 16, 60, 64, 128, 160, 256]))
        m.update(
            n_experts=e,
            top_k=float(rng.integers(1, min(e, 8) + 1)),
            d_ff_expert=float(rng.integers(256, 8192)),
            shared_d_ff=float(rng.choice([0, 0, 2048])),
            n_dense_layers=float(rng.choice([0, 0, 1, 3])),
            expert_bytes=_dtype(rng),
            dispatch_bytes=_dtype(rng),
        )
    else:
        m.update(n_dense_layers=m["n_layers"])
    return m


def random_hardware(rng: np.random.Generator) -> dict:
    bf16 = float(rng.uniform(200e12, 3e15))
    fp8 = bf16 * float(rng.choice([1, 2]))
    mesh = rng.random() < 0.3
    # a switched fabric ignores link_bw: sometimes give it one anyway
    link_bw = float(rng.uniform(25e9, 200e9)) if mesh or rng.random() < 0.3 else 0.0
    hw = {
        "hbm_bytes": float(rng.uniform(40e9, 300e9)),
        "hbm_bw": float(rng.uniform(1e12, 10e12)),
        "flops_bf16": bf16,
        "flops_fp8": fp8,
        "intra_bw": float(rng.uniform(50e9, 1e12)),
        "intra_latency": float(rng.uniform(0.5e-6, 5e-6)),
        "island_size": float(rng.choice([4, 8, 72])),
        "inter_bw": float(rng.uniform(10e9, 100e9)),
        "inter_latency": float(rng.uniform(2e-6, 20e-6)),
        "flops_fp4": 2 * fp8 if rng.random() < 0.5 else 0.0,
        "fabric": float(mesh),
        "link_bw": link_bw,
        "stack": float(rng.integers(0, 4)),  # 1: ROCm (rocm_factor applies)
    }
    if rng.random() < 0.25:  # a torus island (TPU ICI, Trainium): 1-3 dimensions of link_bw links
        hw.update(fabric=2.0, torus_dims=float(rng.integers(1, 4)), link_bw=float(rng.uniform(25e9, 200e9)))
    return hw


def random_partition(rng: np.random.Generator, m: dict) -> dict:
    heads, kv, mla = m["n_heads"], m["n_kv_heads"], m.get("attn_kind") == 3.0
    tps = [t for t in (1, 2, 4, 8) if heads % t == 0 and (mla or (kv % t == 0 if t <= kv else t % kv == 0))]
    tp = float(rng.choice(tps))
    dp_attn = float(rng.choice([1, 1, 2]))
    kvp = float(rng.choice([1, 2, 4]))
    kv_mode = 0.0 if kvp == 1 else float(rng.choice([1, 2]))
    g = tp * dp_attn * kvp
    e = m.get("n_experts", 1.0)
    spare = 0.0
    eps_spare = [x for x in (2, 4, 8, 16, 32) if g % x == 0]
    if e > 1 and eps_spare and rng.random() < 0.35:  # EPLB-style redundant experts
        not_dividing = [x for x in eps_spare if e % x]
        ep = float(rng.choice(not_dividing or eps_spare))
        spare = float((-e) % ep) or ep  # e + spare divisible by ep; ep*j copies when ep divides e
        if rng.random() < 0.3:
            spare += ep
    else:
        ep = float(rng.choice([x for x in (1, 2, 4, 8, 16, 32) if e % x == 0 and g % x == 0]))
    dense_tp = float(rng.choice([0, 0, 0] + [x for x in (1, 2, 4, 8) if g % x == 0]))
    # pp need not divide n_layers (uneven stages), at most one layer per stage
    pp = float(rng.choice([x for x in (1, 1, 2, 2, 3, 4, 5, 8) if x <= m["n_layers"]]))
    return {
        "tp": tp,
        "ep": ep,
        "pp": pp,
        "dp": float(rng.choice([1, 2])),
        "dp_attn": dp_attn,
        "kvp": kvp,
        "kv_mode": kv_mode,
        "dense_tp": dense_tp,
        "redundant_experts": spare,
    }


def _speculation(rng: np.random.Generator) -> dict:
    draft = float(rng.integers(0, 4)) if rng.random() < 0.5 else 0.0
    accepted = float(rng.integers(0, draft + 1)) if rng.random() < 0.3 else float(rng.uniform(0, draft))
    return {"draft_tokens": draft, "accepted": accepted}


def random_workload(rng: np.random.Generator) -> dict:
    batch = 0.0 if rng.random() < 0.5 else float(rng.integers(1, 512))
    return dict(context=float(2 ** rng.uniform(8, 21)), batch=batch, kappa=float(rng.uniform(1, 8)), **_speculation(rng))


def random_prefill_workload(rng: np.random.Generator) -> dict:
    """1..8 prompts of 2^8..2^15 tokens (draft_tokens only decides whether MTP weights are resident)."""
    return dict(
        context=float(2 ** rng.uniform(8, 15)),
        batch=float(rng.integers(1, 9)),
        kappa=float(rng.uniform(1, 8)),
        **_speculation(rng),
    )


def random_accounting_constants(rng: np.random.Generator) -> dict:
    return {
        "hbm_usable_fraction": float(rng.uniform(0.5, 1.0)),
        "reserve_bytes": float(rng.uniform(0, 5e9)),
        "kv_scale": float(rng.uniform(0.5, 3.0)),
        "routing_skew": float(rng.uniform(0, 0.9)),
        "overlap": float(rng.uniform(0, 1)),
        "hbm_efficiency": float(rng.uniform(0.5, 1)),
        "flops_efficiency": float(rng.uniform(0.3, 1)),
        "layer_latency": float(rng.uniform(0, 20e-6)),
        "fp8_efficiency": float(rng.uniform(0.3, 1)),
        "fp4_efficiency": float(rng.uniform(0.3, 1)),
        "comm_efficiency": float(rng.uniform(0.3, 1)),
        "collective_latency": float(rng.uniform(0, 10e-6)),
        "a2a_peer_latency": float(rng.uniform(0, 10e-6)),
        "sequence_latency": float(rng.uniform(0, 30e-6)),
        "step_latency": float(rng.uniform(0, 2e-3)),
        "rocm_factor": float(rng.uniform(0.8, 2.0)),
        "grouped_gemm_efficiency": float(rng.uniform(0.3, 1.5)),
        "attention_efficiency": float(rng.uniform(0.3, 1.5)),
    }


def random_point(rng: np.random.Generator) -> tuple[dict, dict, dict, dict, dict]:
    m = random_model(rng)
    return m, random_hardware(rng), random_partition(rng, m), random_workload(rng), random_accounting_constants(rng)


def random_prefill_point(rng: np.random.Generator) -> tuple[dict, dict, dict, dict, dict]:
    m = random_model(rng)
    return m, random_hardware(rng), random_partition(rng, m), random_prefill_workload(rng), random_accounting_constants(rng)


def random_pattern(rng: np.random.Generator, m: dict) -> dict:
    """``m`` with a random per-layer attention pattern: counts of sliding, chunked, sparse and linear
    layers (the rest full), each kind's size drawn around the published models' (W 128-8192, chunk
    8192, top-k 2048 with a 64×128 indexer, Gated DeltaNet heads); some points have one kind only."""
    n = int(m["n_layers"])
    kinds = ["n_sliding_layers", "n_chunked_layers", "n_sparse_layers", "n_linear_layers"]
    used = kinds if rng.random() < 0.5 else [str(rng.choice(kinds))]
    counts = dict.fromkeys(kinds, 0)
    left = n
    for k in used:
        counts[k] = int(rng.integers(0, left + 1))
        left -= counts[k]
    out = {**m, **{k: float(v) for k, v in counts.items()}}
    out.update(
        sliding_window=float(rng.choice([128, 512, 4096, 1e6])),
        chunk_size=float(rng.choice([256, 8192, 65536])),
        sparse_top_k=float(rng.choice([64, 2048, 1e6])),
        index_heads=float(rng.choice([0, 32, 64])),
        index_head_dim=float(rng.choice([0, 128])),
        attn_gate=float(m.get("attn_kind") != 3.0 and rng.random() < 0.3),
    )
    if counts["n_linear_layers"] or rng.random() < 0.3:
        out.update(
            linear_key_heads=float(rng.choice([8, 16])),
            linear_key_dim=float(rng.choice([64, 128])),
            linear_value_heads=float(rng.choice([4, 16, 32])),
            linear_value_dim=float(rng.choice([64, 128])),
            linear_conv_kernel=float(rng.choice([0, 4])),
        )
    return out


def random_patterned_point(rng: np.random.Generator, prefill: bool = False) -> tuple[dict, dict, dict, dict, dict]:
    m, hw, p, wl, acc = random_prefill_point(rng) if prefill else random_point(rng)
    return random_pattern(rng, m), hw, p, wl, acc
