"""Plain-Python scalar reference of the moejax decode cost model (docs/cost-model.md).

This is the test oracle: slow, obvious and written from the doc alone, independently of the
vectorised JAX kernel. Inputs are plain dicts keyed by the field names of the dataclasses in
``moejax/specs.py`` (missing keys take those dataclasses' defaults, copied below so that this
module imports nothing but ``math``). SI units throughout: bytes, seconds, bytes/s, FLOP/s.

Readings of the doc that were not forced by its text are marked ``# AMBIGUOUS:``.
"""

from __future__ import annotations

import math

# Defaults copied from moejax/specs.py (specs.py imports jax, so it is not imported here).
# None marks a required field.
MODEL_DEFAULTS = {
    "n_layers": None, "d_model": None, "vocab_size": None, "n_heads": None, "n_kv_heads": None,
    "head_dim": None, "d_ff": None, "attn_kind": 1.0, "v_head_dim": 0.0, "rope_head_dim": 0.0,
    "q_lora_rank": 0.0, "kv_lora_rank": 0.0, "n_dense_layers": -1.0, "n_encoder_layers": 0.0,
    "cross_attention": 0.0, "tied_embeddings": 0.0, "ffn_matrices": 3.0, "n_experts": 1.0,
    "top_k": 1.0, "d_ff_expert": 0.0, "shared_d_ff": 0.0, "weight_bytes": 2.0, "kv_bytes": 2.0,
    "act_bytes": 2.0,
}
HARDWARE_DEFAULTS = {
    "hbm_bytes": None, "hbm_bw": None, "flops_bf16": None, "flops_fp8": None, "intra_bw": None,
    "intra_latency": None, "island_size": None, "inter_bw": None, "inter_latency": None,
}
PARTITION_DEFAULTS = {"tp": 1.0, "ep": 1.0, "pp": 1.0, "dp": 1.0, "dp_attn": 1.0, "kvp": 1.0, "kv_mode": 0.0}
WORKLOAD_DEFAULTS = {"context": None, "batch": 0.0, "kappa": 5.0}
ACCOUNTING_DEFAULTS = {
    "hbm_usable_fraction": 1.0, "reserve_bytes": 0.0, "kv_scale": 1.0, "routing_skew": 0.0,
    "overlap": 0.0, "hbm_efficiency": 1.0, "flops_efficiency": 1.0, "layer_latency": 0.0,
    "expert_traffic": "physical", "integer_batch": True, "roofline": "phase",
}

MLA = 3  # ATTENTION_KINDS["mla"]


def _fill(given: dict, defaults: dict, name: str) -> dict:
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


def _model(model: dict) -> dict:
    """ModelSpec dict with defaults filled, floats, and the doc's derived sizes (counts).

    Adds: ``dv`` (value head dim), ``n_dense`` (dense decoder layers), ``n_moe``, ``mla``, ``cross``.
    """
    m = _fill(model, MODEL_DEFAULTS, "ModelSpec")
    m = {k: float(v) for k, v in m.items()}
    m["dv"] = m["v_head_dim"] if m["v_head_dim"] > 0 else m["head_dim"]
    m["n_dense"] = m["n_layers"] if m["n_dense_layers"] == -1 else m["n_dense_layers"]
    m["n_moe"] = m["n_layers"] - m["n_dense"]
    m["mla"] = m["attn_kind"] == MLA
    m["cross"] = m["cross_attention"]
    return m


def _layer_params(m: dict) -> dict:
    """Per-layer parameter counts (params) of section 1, keyed by the doc's names."""
    d, h, g, dh, dv, dr = m["d_model"], m["n_heads"], m["n_kv_heads"], m["head_dim"], m["dv"], m["rope_head_dim"]
    nm, E, k = m["ffn_matrices"], m["n_experts"], m["top_k"]
    if m["mla"]:
        qr, kr = m["q_lora_rank"], m["kv_lora_rank"]
        p_q = (d * qr + qr * h * (dh + dr)) if qr > 0 else d * h * (dh + dr)
        p_attn = p_q + d * (kr + dr) + kr * h * (dh + dv) + h * dv * d
    else:
        p_attn = d * h * dh + 2 * d * g * dh + h * dv * d
    p_cross = 2 * d * h * dh + 2 * d * g * dh
    p_ffn = nm * d * m["d_ff"]
    p_exp = nm * d * m["d_ff_expert"]
    p_sh = nm * d * m["shared_d_ff"]
    p_router = d * E if E > 1 else 0.0
    moe_resident = E * p_exp + p_sh + p_router
    moe_active = k * p_exp + p_sh + p_router
    ffn_enc = moe_resident if E > 1 else p_ffn
    return {
        "attn": p_attn, "cross": p_cross, "ffn": p_ffn, "exp": p_exp, "sh": p_sh, "router": p_router,
        "moe_resident": moe_resident, "moe_active": moe_active, "ffn_enc": ffn_enc,
        "emb": m["vocab_size"] * d * (2 - m["tied_embeddings"]),
    }


def reference_param_counts(model: dict) -> tuple[float, float]:
    """(total, active) parameter counts (params); active is per decoded token."""
    m = _model(model)
    p = _layer_params(m)
    attn_all = m["n_layers"] * (p["attn"] + m["cross"] * p["cross"])
    total = (attn_all + m["n_dense"] * p["ffn"] + m["n_moe"] * p["moe_resident"]
             + m["n_encoder_layers"] * (p["attn"] + p["ffn_enc"]) + p["emb"])
    active = attn_all + m["n_dense"] * p["ffn"] + m["n_moe"] * p["moe_active"] + m["vocab_size"] * m["d_model"]
    return total, active


def _kv_layer_all(m: dict) -> float:
    """KV values stored per token per decoder layer (values), cross-attention K/V included."""
    g, dh = m["n_kv_heads"], m["head_dim"]
    kv_layer = (m["kv_lora_rank"] + m["rope_head_dim"]) if m["mla"] else 2 * g * dh
    # AMBIGUOUS: the doc's cross-attention sentence here is not tied to an attention kind, so the
    # encoder's 2*g*dh K/V values are added for MLA models too.
    return kv_layer + m["cross"] * 2 * g * dh


def reference_kv_bytes_per_token(model: dict) -> float:
    """KV bytes per token over all decoder layers at the model's kv_bytes (bytes), before
    sharding and without Accounting.kv_scale."""
    m = _model(model)
    return m["n_layers"] * _kv_layer_all(m) * m["kv_bytes"]


def _kv_layer_gpu(m: dict, tp: float) -> float:
    """KV values per token per decoder layer held on one GPU of a tp-way attention group (values)."""
    g, dh = m["n_kv_heads"], m["head_dim"]
    plain = 2 * max(g / tp, 1.0) * dh
    own = (m["kv_lora_rank"] + m["rope_head_dim"]) if m["mla"] else plain
    # AMBIGUOUS: "(+ the same for cross-attention)" is written in the not-MLA clause; cross-attention
    # K/V are of plain form for every kind, so the plain per-GPU amount is added for MLA too
    # (consistent with the section-1 KV count).
    return own + m["cross"] * plain


def _f_score(m: dict, L: float) -> float:
    """Attention-score FLOPs per decoded token per decoder layer at context L (FLOP)."""
    h, dh = m["n_heads"], m["head_dim"]
    plain = 4 * h * dh * L
    own = 2 * h * (2 * m["kv_lora_rank"] + m["rope_head_dim"]) * L if m["mla"] else plain
    # AMBIGUOUS: "cross-attention adds the same again" is written in the not-MLA bullet; the
    # cross-attention is plain multi-head for every kind, so 4*h*dh*L is added for MLA too.
    return own + m["cross"] * plain


def _link(span: float, hw: dict) -> tuple[float, float]:
    """(latency s, bandwidth bytes/s) for a group spanning ``span`` consecutive GPUs."""
    if span <= hw["island_size"]:
        return hw["intra_latency"], hw["intra_bw"]
    return hw["inter_latency"], hw["inter_bw"]


def _all_reduce(p: float, n: float, span: float, hw: dict) -> float:
    """Ring all-reduce time (s) over p ranks of n bytes each; 0 when p == 1."""
    if p == 1:
        return 0.0
    a, bw = _link(span, hw)
    return 2 * (p - 1) * a + 2 * (p - 1) / p * n / bw


def _all_to_all(p: float, n: float, span: float, hw: dict) -> float:
    """Ring all-to-all (= all-gather) time (s) over p ranks of n bytes each; 0 when p == 1."""
    if p == 1:
        return 0.0
    a, bw = _link(span, hw)
    return (p - 1) * a + (p - 1) / p * n / bw


def _expert_traffic(m: dict, acc: dict, b: float, p_exp: float) -> float:
    """Expert parameters X read per MoE layer per microbatch of b tokens (params)."""
    E, k = m["n_experts"], m["top_k"]
    if acc["expert_traffic"] == "paper-active":
        R = b * k / E
        return b * k * p_exp / R
    if acc["expert_traffic"] == "paper-pool":
        R = b * k / E
        return b * E * p_exp / R
    e_eff = max(E * (1 - acc["routing_skew"]), k)
    touched = e_eff * (1 - (1 - k / e_eff) ** b)
    return touched * p_exp


def _exposed(comm: float, overlap: float, compute: float, hbm_time: float) -> float:
    """Communication time (s) not hidden behind ``overlap`` x max(compute, HBM time) of its phase."""
    return max(0.0, comm - overlap * max(compute, hbm_time))


def reference_decode(model: dict, hw: dict, part: dict, workload: dict, acc: dict) -> dict:
    """One decode evaluation point (docs/cost-model.md sections 2-4).

    Returns times in s per decode step, ``batch``/``b_max`` in sequences per replica, bytes per GPU,
    ``throughput`` in tokens/s per replica and ``throughput_per_gpu`` in tokens/s per GPU.
    """
    m = _model(model)
    p = _layer_params(m)
    hw = {k: float(v) for k, v in _fill(hw, HARDWARE_DEFAULTS, "HardwareSpec").items()}
    pt = {k: float(v) for k, v in _fill(part, PARTITION_DEFAULTS, "Partition").items()}
    wl = {k: float(v) for k, v in _fill(workload, WORKLOAD_DEFAULTS, "Workload").items()}
    ac = _fill(acc, ACCOUNTING_DEFAULTS, "Accounting")

    d, h, dh, dv, dr = m["d_model"], m["n_heads"], m["head_dim"], m["dv"], m["rope_head_dim"]
    E, k = m["n_experts"], m["top_k"]
    wb, kvb, ab = m["weight_bytes"], m["kv_bytes"], m["act_bytes"]
    tp, ep, pp, dp_attn, kvp, kv_mode = pt["tp"], pt["ep"], pt["pp"], pt["dp_attn"], pt["kvp"], pt["kv_mode"]
    L = wl["context"]
    kv_scale = float(ac["kv_scale"])
    overlap = float(ac["overlap"])

    # Section 2: partition.
    G = tp * dp_attn * kvp
    N = pp * G
    tp_ffn = G / ep

    attn_params = p["attn"] + m["cross"] * p["cross"]  # per decoder layer, self + cross attention
    kv_gpu = _kv_layer_gpu(m, tp)

    # Section 3: memory and B_max.
    W_gpu = (wb / pp * (m["n_layers"] * attn_params / tp + m["n_dense"] * p["ffn"] / G
                        + m["n_moe"] * p["moe_resident"] / G
                        + m["n_encoder_layers"] * (p["attn"] / tp + p["ffn_enc"] / G))
             + wb * p["emb"] / N)
    S = (L / kvp) * kv_gpu * (m["n_layers"] / pp) * kvb * kv_scale  # KV bytes per sequence per GPU
    C = hw["hbm_bytes"] * float(ac["hbm_usable_fraction"]) - float(ac["reserve_bytes"]) - W_gpu
    if ac["integer_batch"]:
        B_max = max(dp_attn * math.floor(C / S), 0.0)
    else:
        B_max = max(dp_attn * C / S, 0.0)
    B = B_max if wl["batch"] <= 0 else wl["batch"]
    feasible = (C > 0) and (B_max >= dp_attn) and (B <= B_max) and (B >= pp * dp_attn)
    # AMBIGUOUS: for infeasible points every B-dependent output (times, reuse, kv_bytes_per_gpu,
    # memory_per_gpu) uses max(B, 1); the reported ``batch`` stays the unclamped B.
    Be = B if feasible else max(B, 1.0)

    b = Be / pp  # sequences per microbatch
    b_a = b / dp_attn  # sequences per attention group

    # Section 4: peaks.
    F_w = (hw["flops_fp8"] if wb <= 1 else hw["flops_bf16"]) * float(ac["flops_efficiency"])
    F_kv = (hw["flops_fp8"] if kvb <= 1 else hw["flops_bf16"]) * float(ac["flops_efficiency"])
    BW = hw["hbm_bw"] * float(ac["hbm_efficiency"])

    # Attention phase, one decoder layer (s, bytes).
    attn_c = 2 * attn_params * b_a / tp / F_w + _f_score(m, L) * b_a / (tp * kvp) / F_kv
    attn_h = wb * attn_params / tp + b_a * (L / kvp) * kv_gpu * kvb * kv_scale
    attn_comm = _all_reduce(tp, b_a * d * ab, tp, hw)  # overlappable part
    attn_tail = 0.0  # CP ring tail, always exposed
    if kv_mode == 1:
        attn_comm += _all_to_all(kvp, b_a * h * dv / tp * ab, tp * kvp, hw)
    elif kv_mode == 2:
        dq = (m["kv_lora_rank"] + dr) if m["mla"] else dh
        nq = b_a * h * dq / tp * ab
        a, bw = _link(tp * kvp, hw)
        hop = a + nq / bw
        ring = (kvp - 1) * hop
        attn_tail = hop if kvp > 1 else 0.0
        # AMBIGUOUS: the ring's non-tail hops, (kvp-1)*hop - tail, are overlappable with the rest;
        # the full ring counts in t_comm, the tail is added to exposed unconditionally.
        attn_comm += (ring - attn_tail) + _all_to_all(kvp, b_a * h * dv / tp * ab, tp * kvp, hw)
    attn_exposed = _exposed(attn_comm, overlap, attn_c, attn_h / BW) + attn_tail
    attn_comm_all = attn_comm + attn_tail

    # Dense-FFN layer (s, bytes).
    dense_c = 2 * p["ffn"] * b / G / F_w
    dense_h = wb * p["ffn"] / G
    dense_comm = _all_reduce(G, b * d * ab, G, hw)
    dense_exposed = _exposed(dense_comm, overlap, dense_c, dense_h / BW)

    # MoE layer (s, bytes).
    X = _expert_traffic(m, ac, b, p["exp"])
    moe_c = 2 * p["moe_active"] * b / G / F_w
    moe_h = wb * (X + p["sh"] + p["router"]) / G
    dispatch_n = b * k * d * ab / G  # token copies, spread over the stage's G GPUs
    distinct = 1.0 - (1.0 - 1.0 / ep) ** k  # share of tokens with an expert in a given EP group
    moe_comm = 2 * _all_to_all(ep, dispatch_n, G, hw) + _all_reduce(tp_ffn, b * distinct * d * ab, tp_ffn, hw)
    moe_exposed = _exposed(moe_comm, overlap, moe_c, moe_h / BW)

    # Stage totals for one microbatch (per-stage layer counts; LM head averaged over stages).
    n_attn_s, n_dense_s, n_moe_s = m["n_layers"] / pp, m["n_dense"] / pp, m["n_moe"] / pp
    head_c = 2 * m["vocab_size"] * d * b / G / F_w / pp
    head_h = wb * m["vocab_size"] * d / G / pp
    Tc = n_attn_s * attn_c + n_dense_s * dense_c + n_moe_s * moe_c + head_c
    Th = n_attn_s * attn_h + n_dense_s * dense_h + n_moe_s * moe_h + head_h
    comm_all = n_attn_s * attn_comm_all + n_dense_s * dense_comm + n_moe_s * moe_comm
    exposed = n_attn_s * attn_exposed + n_dense_s * dense_exposed + n_moe_s * moe_exposed
    send = 0.0
    if pp > 1:
        a, bw = _link(N, hw)
        send = a + b * d * ab / bw
    latency = float(ac["layer_latency"]) * m["n_layers"] / pp

    if ac["roofline"] == "global":  # qs paper eq. 19: one max over the whole step
        roof = max(Tc, Th / BW)
    else:  # phases run one after another, each at its own roofline
        roof = (n_attn_s * max(attn_c, attn_h / BW) + n_dense_s * max(dense_c, dense_h / BW)
                + n_moe_s * max(moe_c, moe_h / BW) + max(head_c, head_h / BW))
    t_micro = roof + exposed + send + latency
    t_compute = pp * Tc
    t_hbm = pp * Th / BW
    t_comm = pp * (comm_all + send)
    t_comm_exposed = pp * (exposed + send)

    if t_comm_exposed > max(t_compute, t_hbm):
        bound = 2
    elif t_compute >= t_hbm:
        bound = 0
    else:
        bound = 1

    if feasible:
        step_time = pp * t_micro
        throughput = B / step_time
        throughput_per_gpu = B / (step_time * N)
    else:
        step_time = math.inf
        throughput = 0.0
        throughput_per_gpu = 0.0
        bound = 3

    kv_bytes_per_gpu = Be / dp_attn * S
    return {
        "t_compute": t_compute,
        "t_hbm": t_hbm,
        "t_comm": t_comm,
        "t_comm_exposed": t_comm_exposed,
        "step_time": step_time,
        "batch": B,
        "b_max": B_max,
        "reuse": b * k / E,
        "bound": bound,
        "feasible": feasible,
        "throughput": throughput,
        "throughput_per_gpu": throughput_per_gpu,
        "weight_bytes_per_gpu": W_gpu,
        "kv_bytes_per_gpu": kv_bytes_per_gpu,
        "memory_per_gpu": W_gpu + kv_bytes_per_gpu + float(ac["reserve_bytes"]),
    }


if __name__ == "__main__":
    llama70b = {
        "n_layers": 80, "d_model": 8192, "vocab_size": 128256, "n_heads": 64, "n_kv_heads": 8,
        "head_dim": 128, "d_ff": 28672, "weight_bytes": 2, "kv_bytes": 2, "act_bytes": 2,
    }
    h100 = {
        "hbm_bytes": 80e9, "hbm_bw": 3.35e12, "flops_bf16": 989e12, "flops_fp8": 1979e12,
        "intra_bw": 450e9, "intra_latency": 2e-6, "island_size": 8, "inter_bw": 50e9, "inter_latency": 5e-6,
    }
    total, active = reference_param_counts(llama70b)
    print(f"params total {total:.4e}, active {active:.4e}")
    print(f"kv bytes/token {reference_kv_bytes_per_token(llama70b):.4e}")
    result = reference_decode(llama70b, h100, {"tp": 8}, {"context": 1024, "batch": 1},
                              {"expert_traffic": "physical", "integer_batch": True})
    for key, value in result.items():
        print(f"{key:>22} = {value}")
