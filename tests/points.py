"""Random valid evaluation points (plain dicts keyed by spec field names) for oracle tests."""

from __future__ import annotations

import numpy as np


def random_model(rng: np.random.Generator) -> dict:
    kind = rng.choice(["mha", "gqa", "mqa", "mla"])
    heads = float(rng.choice([8, 16, 32, 64, 128]))
    head_dim = float(rng.choice([64, 128]))
    m = dict(n_layers=float(rng.choice([8, 12, 16, 24, 32, 60, 64, 96])), d_model=heads * head_dim,
             vocab_size=float(rng.integers(30_000, 160_000)), n_heads=heads, head_dim=head_dim,
             d_ff=float(rng.integers(1024, 30_000)), ffn_matrices=float(rng.choice([2, 3])),
             tied_embeddings=float(rng.integers(0, 2)), weight_bytes=float(rng.choice([1, 2])),
             kv_bytes=float(rng.choice([1, 2])), act_bytes=2.0)
    if kind == "mla":
        m.update(attn_kind=3.0, n_kv_heads=heads, kv_lora_rank=float(rng.choice([256, 512])), rope_head_dim=64.0,
                 q_lora_rank=float(rng.choice([0, 1536])), v_head_dim=float(rng.choice([0, 128])))
    else:
        kv = {"mha": heads, "mqa": 1.0, "gqa": float(rng.choice([g for g in (2, 4, 8) if heads % g == 0]))}[kind]
        m.update(attn_kind=float({"mha": 0, "gqa": 1, "mqa": 2}[kind]), n_kv_heads=kv)
        if rng.random() < 0.15:  # encoder-decoder
            m.update(cross_attention=1.0, n_encoder_layers=m["n_layers"])
    if rng.random() < 0.7:  # MoE
        e = float(rng.choice([4, 8, 16, 64, 128, 256]))
        m.update(n_experts=e, top_k=float(rng.integers(1, min(e, 8) + 1)), d_ff_expert=float(rng.integers(256, 8192)),
                 shared_d_ff=float(rng.choice([0, 0, 2048])), n_dense_layers=float(rng.choice([0, 0, 1, 3])))
    else:
        m.update(n_dense_layers=m["n_layers"])
    return m


def random_hardware(rng: np.random.Generator) -> dict:
    bf16 = float(rng.uniform(200e12, 3e15))
    return dict(hbm_bytes=float(rng.uniform(40e9, 300e9)), hbm_bw=float(rng.uniform(1e12, 10e12)), flops_bf16=bf16,
                flops_fp8=bf16 * float(rng.choice([1, 2])), intra_bw=float(rng.uniform(50e9, 1e12)),
                intra_latency=float(rng.uniform(0.5e-6, 5e-6)), island_size=float(rng.choice([4, 8, 72])),
                inter_bw=float(rng.uniform(10e9, 100e9)), inter_latency=float(rng.uniform(2e-6, 20e-6)))


def random_partition(rng: np.random.Generator, m: dict) -> dict:
    heads, kv, mla = m["n_heads"], m["n_kv_heads"], m.get("attn_kind") == 3.0
    tps = [t for t in (1, 2, 4, 8) if heads % t == 0 and (mla or (kv % t == 0 if t <= kv else t % kv == 0))]
    tp = float(rng.choice(tps))
    dp_attn = float(rng.choice([1, 1, 2]))
    kvp = float(rng.choice([1, 2, 4]))
    kv_mode = 0.0 if kvp == 1 else float(rng.choice([1, 2]))
    g = tp * dp_attn * kvp
    e = m.get("n_experts", 1.0)
    ep = float(rng.choice([x for x in (1, 2, 4, 8, 16, 32) if e % x == 0 and g % x == 0]))
    pp = float(rng.choice([x for x in (1, 2, 4) if m["n_layers"] % x == 0]))
    return dict(tp=tp, ep=ep, pp=pp, dp=float(rng.choice([1, 2])), dp_attn=dp_attn, kvp=kvp, kv_mode=kv_mode)


def random_workload(rng: np.random.Generator) -> dict:
    batch = 0.0 if rng.random() < 0.5 else float(rng.integers(1, 512))
    return dict(context=float(2 ** rng.uniform(8, 21)), batch=batch, kappa=float(rng.uniform(1, 8)))


def random_accounting_constants(rng: np.random.Generator) -> dict:
    return dict(hbm_usable_fraction=float(rng.uniform(0.5, 1.0)), reserve_bytes=float(rng.uniform(0, 5e9)),
                kv_scale=float(rng.uniform(0.5, 3.0)), routing_skew=float(rng.uniform(0, 0.9)),
                overlap=float(rng.uniform(0, 1)), hbm_efficiency=float(rng.uniform(0.5, 1)),
                flops_efficiency=float(rng.uniform(0.3, 1)), layer_latency=float(rng.uniform(0, 20e-6)))


def random_point(rng: np.random.Generator) -> tuple[dict, dict, dict, dict, dict]:
    m = random_model(rng)
    return m, random_hardware(rng), random_partition(rng, m), random_workload(rng), random_accounting_constants(rng)
