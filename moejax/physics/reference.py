"""Plain-Python scalar reference of the moejax cost model (docs/cost-model.md): decode and prefill.

This is the test oracle: slow, obvious and written from the doc alone, independently of the
vectorised JAX kernel. Inputs are plain dicts keyed by the field names of the dataclasses in
``moejax/physics/specs.py`` (missing keys take those dataclasses' defaults, copied into
``reference_defaults.py`` so that the oracle imports nothing but ``math``). SI units throughout: bytes, seconds, bytes/s, FLOP/s.

Readings of the doc that were not forced by its text are marked ``# AMBIGUOUS:``.
"""

from __future__ import annotations

import math

from . import reference_kernels as rk
from . import reference_patterns as rp
from .reference_defaults import (
    ACCOUNTING_DEFAULTS,
    HARDWARE_DEFAULTS,
    MLA,
    MODEL_DEFAULTS,
    PARTITION_DEFAULTS,
    STATIC,
    WORKLOAD_DEFAULTS,
    fill,
    floats,
)
from .reference_fabric import Net as _Net


def _model(model: dict) -> dict:
    """ModelSpec dict with defaults filled, floats, and the doc's derived sizes and dtypes.

    Adds: ``dv`` (value head dim), ``n_dense`` (dense decoder layers), ``n_moe``, ``mla``, ``cross``,
    and the section-1 dtypes ``wb, eb, mb, kvb, ab, db, qb, gb`` (defaults resolved).
    """
    m = floats(fill(model, MODEL_DEFAULTS, "ModelSpec"))
    m["dv"] = m["v_head_dim"] if m["v_head_dim"] > 0 else m["head_dim"]
    m["n_dense"] = m["n_layers"] if m["n_dense_layers"] == -1 else m["n_dense_layers"]
    m["n_moe"] = m["n_layers"] - m["n_dense"]
    m["mla"] = m["attn_kind"] == MLA
    m["cross"] = m["cross_attention"]
    m["wb"] = m["weight_bytes"]
    m["eb"] = m["expert_bytes"] if m["expert_bytes"] > 0 else m["wb"]
    m["mb"] = m["embed_bytes"] if m["embed_bytes"] > 0 else m["wb"]
    m["kvb"] = m["kv_bytes"]
    m["ab"] = m["act_bytes"]
    m["db"] = m["dispatch_bytes"] if m["dispatch_bytes"] > 0 else m["ab"]
    m["qb"] = m["attn_bytes"] if m["attn_bytes"] > 0 else m["kvb"]
    m["gb"] = m["gemm_bytes"]
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
        p_attn = d * h * dh * (1 + m["attn_gate"]) + 2 * d * g * dh + h * dv * d
    p_cross = 2 * d * h * dh + 2 * d * g * dh
    p_ffn = nm * d * m["d_ff"]
    p_exp = nm * d * m["d_ff_expert"]
    p_sh = nm * d * m["shared_d_ff"]
    p_router = d * E if E > 1 else 0.0
    moe_resident = E * p_exp + p_sh + p_router
    moe_active = k * p_exp + p_sh + p_router
    ffn_enc = moe_resident if E > 1 else p_ffn
    return {
        "attn": p_attn,
        "cross": p_cross,
        "ffn": p_ffn,
        "exp": p_exp,
        "sh": p_sh,
        "router": p_router,
        "moe_resident": moe_resident,
        "moe_active": moe_active,
        "ffn_enc": ffn_enc,
        "emb": m["vocab_size"] * d * (2 - m["tied_embeddings"]),
    }


def reference_param_counts(model: dict) -> tuple[float, float]:
    """(total, active) parameter counts (params); active is per decoded token. MTP modules are
    not included (section 1: "They are not in the totals above")."""
    m = _model(model)
    p = _layer_params(m)
    attn_all = sum(rp.layer_params(m, kind, p["attn"] + m["cross"] * p["cross"]) for kind in rp.layers(m))
    total = (
        attn_all
        + m["n_dense"] * p["ffn"]
        + m["n_moe"] * p["moe_resident"]
        + m["n_encoder_layers"] * (p["attn"] + p["ffn_enc"])
        + p["emb"]
    )
    active = attn_all + m["n_dense"] * p["ffn"] + m["n_moe"] * p["moe_active"] + m["vocab_size"] * m["d_model"]
    return total, active


def _kv_layer_all(m: dict) -> float:
    """KV values stored per token per decoder layer (values), cross-attention K/V included."""
    g, dh = m["n_kv_heads"], m["head_dim"]
    kv_layer = (m["kv_lora_rank"] + m["rope_head_dim"]) if m["mla"] else 2 * g * dh
    return kv_layer + m["cross"] * 2 * g * dh  # cross-attention is not allowed with MLA


def reference_kv_bytes_per_token(model: dict) -> float:
    """KV bytes per token of context over all decoder layers at the model's kv_bytes (bytes), before
    sharding and without Accounting.kv_scale: the layers whose cache grows with the context (full,
    and sparse with the indexer's key)."""
    m = _model(model)
    per_layer = {"full": _kv_layer_all(m), "sparse": _kv_layer_all(m) + m["index_head_dim"]}
    return sum(per_layer.get(kind, 0.0) for kind in rp.layers(m)) * m["kv_bytes"]


def _kv_layer_gpu(m: dict, tp: float) -> float:
    """KV values per token per decoder layer held on one GPU of a tp-way attention group (values)."""
    if m["mla"]:
        return m["kv_lora_rank"] + m["rope_head_dim"]  # the latent is replicated across tp
    plain = 2 * max(m["n_kv_heads"] / tp, 1.0) * m["head_dim"]
    return plain + m["cross"] * plain


def _f_score(m: dict, L: float, prefill: bool) -> float:
    """Attention-score FLOPs per query token per decoder layer at context L (FLOP)."""
    h, dh, dr, dv = m["n_heads"], m["head_dim"], m["rope_head_dim"], m["dv"]
    if m["mla"]:
        if prefill:  # decompressed K and V, multi-head form
            return 2 * h * (dh + dr + dv) * L
        return 2 * h * (2 * m["kv_lora_rank"] + dr) * L  # absorbed, over the latent
    # AMBIGUOUS: in prefill the cross-attention scores are also taken at L/2 (the page says
    # "F_score at L/2" for the whole F_score, although cross-attention is not causal).
    return 4 * h * dh * L * (1 + m["cross"])


def _peak(x: float, hw: dict, ac: dict) -> float:
    """Sustained FLOP/s for matmul inputs of x bytes per value (section 1, Dtypes)."""
    if x < 1 and hw["flops_fp4"] > 0:
        raw = hw["flops_fp4"] * ac["fp4_efficiency"]
    elif x <= 1:
        raw = hw["flops_fp8"] * ac["fp8_efficiency"]
    else:
        raw = hw["flops_bf16"]
    return raw * ac["flops_efficiency"]


# --- Collectives (section 4, "Collectives") -----------------------------------------------------


# --- Expert load (section 4) --------------------------------------------------------------------


def _expert_load(m: dict, ac: dict, T: float, G: float, ep: float, R: float) -> tuple[float, float]:
    """(X_r, X_c) per GPU per MoE layer for T tokens in the microbatch, in units of P_exp."""
    E, k = m["n_experts"], m["top_k"]
    if ac["expert_traffic"] == "paper-active":
        return E / G, T * k / G
    if ac["expert_traffic"] == "paper-pool":
        return (E / k) * E / G, T * k / G
    skew = ac["routing_skew"]
    tp_e = G / ep
    S_r = (E + R) / ep
    P = max((E + R) * (1 - skew), k)
    n_h = min(max(ep * (1 - skew) + R / S_r, 1.0), ep)
    h = min(S_r, P / n_h)
    pi = 1.0 if P == k else 1 - (1 - k / P) ** T
    c = T * k / n_h
    z = math.sqrt(2 * math.log(n_h))
    touched = min(h, h * pi + z * math.sqrt(h * pi * (1 - pi)))
    copies = min(c + z * math.sqrt(c * (1 - 1 / n_h)), T * min(k, S_r))
    return touched / tp_e, copies / tp_e


def _exposed(comm: float, tail: float, overlap: float, compute: float, hbm_time: float) -> float:
    """Communication time (s) not hidden behind ``overlap`` x max(compute, HBM time) of its phase;
    the ``tail`` (part of ``comm``) never overlaps."""
    return max(0.0, comm - tail - overlap * max(compute, hbm_time)) + tail


# --- One step -----------------------------------------------------------------------------------


def _evaluate(
    model: dict, hw: dict, part: dict, workload: dict, acc: dict, prefill: bool, chunk: float = 0.0, prompt_len: float = 0.0
) -> dict:
    m = _model(model)
    p = _layer_params(m)
    hw = floats(fill(hw, HARDWARE_DEFAULTS, "HardwareSpec"))
    pt = floats(fill(part, PARTITION_DEFAULTS, "Partition"))
    wl = floats(fill(workload, WORKLOAD_DEFAULTS, "Workload"))
    ac = fill(acc, ACCOUNTING_DEFAULTS, "Accounting")
    ac = {k: (v if k in STATIC else float(v)) for k, v in ac.items()}
    net = _Net(hw, ac)

    d, h, dh, dr = m["d_model"], m["n_heads"], m["head_dim"], m["rope_head_dim"]
    E, k, V = m["n_experts"], m["top_k"], m["vocab_size"]
    wb, eb, mb, kvb, ab, db = m["wb"], m["eb"], m["mb"], m["kvb"], m["ab"], m["db"]
    tp, ep, pp, dp_attn, kvp, kv_mode = pt["tp"], pt["ep"], pt["pp"], pt["dp_attn"], pt["kvp"], pt["kv_mode"]
    R = pt["redundant_experts"]
    L = wl["context"]
    draft, accepted = wl["draft_tokens"], wl["accepted"]
    kv_scale, overlap = ac["kv_scale"], ac["overlap"]
    n_layers, n_dense, n_moe = m["n_layers"], m["n_dense"], m["n_moe"]

    # Section 1: peaks.
    gb = m["gb"]
    F_w = _peak(max(wb, gb), hw, ac)
    F_e = _peak(max(eb, gb), hw, ac) * (ac["grouped_gemm_efficiency"] if m["n_experts"] > 1 else 1.0)  # grouped GEMM
    F_m = _peak(max(mb, gb), hw, ac)
    F_q = _peak(m["qb"], hw, ac) * ac["attention_efficiency"]  # attention scores, values and linear state

    # Section 2: partition.
    G = tp * dp_attn * kvp
    N = pp * G
    tp_e = G / ep
    S_r = (E + R) / ep
    t_d = pt["dense_tp"] if pt["dense_tp"] > 0 else G
    s = math.ceil(n_layers / pp) / (n_layers / pp) if pp > 1 else 1.0  # largest stage / average stage

    attn_params = p["attn"] + m["cross"] * p["cross"]  # per decoder layer, self + cross attention
    kv_gpu = _kv_layer_gpu(m, tp)

    # Section 3: memory and B_max.
    kinds = rp.layers(m)  # the decoder layers' attention kinds, one per layer
    W_layers = (
        wb * sum(rp.layer_params(m, kind, attn_params) for kind in kinds) / tp
        + n_dense * wb * p["ffn"] / t_d
        + n_moe * (eb * S_r * p["exp"] + wb * (p["sh"] + p["router"])) / tp_e
        + m["n_encoder_layers"] * wb * (p["attn"] / tp + p["ffn_enc"] / G)
    )
    if E > 1:
        ffn_mtp = (eb * S_r * p["exp"] + wb * (p["sh"] + p["router"])) / tp_e
    else:
        ffn_mtp = wb * p["ffn"] / t_d
    # AMBIGUOUS: the MTP weights are resident whenever draft_tokens > 0, in prefill too (the page's
    # condition in section 3 does not name the phase; in prefill draft_tokens is otherwise unused).
    mtp = m["mtp_layers"] * (wb * attn_params / tp + wb * 2 * d * d / t_d + ffn_mtp) if draft > 0 else 0.0
    W_gpu = (s * W_layers + mb * p["emb"] / t_d + mtp) / pp
    stored = sum(rp.stored_values_gpu(m, kind, L, tp, kvp, kv_gpu) for kind in kinds)  # one sequence, all layers
    S = stored / pp * s * kvb * kv_scale  # KV bytes per sequence per GPU (largest stage: the model's mix)
    C = hw["hbm_bytes"] * ac["hbm_usable_fraction"] - ac["reserve_bytes"] - W_gpu
    if ac["integer_batch"]:
        B_max = max(dp_attn * math.floor(C / S), 0.0)
    else:
        B_max = max(dp_attn * C / S, 0.0)
    if wl["batch"] > 0:
        B = wl["batch"]
    else:  # decode serves B_max; prefill one prompt (section 4)
        B = 1.0 if prefill else B_max
    feasible = (C / S >= 1) and (B <= B_max) and (B >= pp * dp_attn)
    # AMBIGUOUS: for infeasible points every B-dependent output (times, reuse, kv_bytes_per_gpu,
    # memory_per_gpu) uses max(B, 1); the reported ``batch`` stays the unclamped B.
    Be = B if feasible else max(B, 1.0)

    b = Be / pp  # sequences per microbatch
    b_a = b / dp_attn  # sequences per attention group
    c = chunk / pp  # mixed step: prompt tokens per microbatch riding on the decode step
    T = b * L if prefill else b * (1 + draft) + c  # tokens per microbatch
    T_a = T / dp_attn

    BW = hw["hbm_bw"] * ac["hbm_efficiency"]

    # Section 4, attention phase, one decoder layer (s, bytes).
    L_score = L / 2 if prefill else L  # prefill: causal average
    score = _f_score(m, L_score, prefill) * T_a
    if c > 0:  # the prompt tokens attend causally (L_p/2 keys, decompressed MLA) and write their KV once
        score = _f_score(m, L, False) * b * (1 + draft) / dp_attn + _f_score(m, prompt_len / 2, True) * c / dp_attn
    attn_c = 2 * attn_params * T_a / tp / F_w + score / (tp * kvp) / F_q
    kv_tokens = T_a / kvp if prefill else b_a * (L / kvp) + c / dp_attn / kvp  # KV tokens read (prefill: written) per GPU
    kv_bw = ac["attention_bw_efficiency"]  # attention kernels stream the cache (and state) at their own bandwidth
    attn_h = wb * attn_params / tp + kv_tokens * kv_gpu * kvb * kv_scale / kv_bw
    attn_comm = net.all_reduce(tp, tp, T_a * d * ab)
    attn_tail = 0.0  # CP ring tail, never overlapped
    if kv_mode == 1:
        attn_comm += net.all_to_all(kvp, tp * kvp, T_a * h * m["dv"] / tp * ab)
    elif kv_mode == 2:
        dq = (m["kv_lora_rank"] + dr) if m["mla"] else dh
        hop = net.send(tp * kvp, T_a * h * dq / tp * ab)
        attn_comm += net.all_to_all(kvp, tp * kvp, T_a * h * m["dv"] / tp * ab) + (kvp - 1) * hop
        attn_tail = hop if kvp > 1 else 0.0
    ar = net.all_reduce(tp, tp, T_a * d * ab)
    ctx = {
        "tp": tp,
        "kvp": kvp,
        "L": L,
        "T_a": T_a,
        "b_a": b_a,
        "prefill": prefill,
        "F_w": F_w,
        "F_q": F_q,
        "wb": wb,
        "kvb": kvb * kv_scale / kv_bw,
        "kv_gpu": kv_gpu,
        "p_attn": attn_params,
        "f_score": _f_score(m, 1.0, prefill),
        "comm": attn_comm,
        "tail": attn_tail,
        "ar": ar,
    }
    # (compute s, HBM s, comm s, exposed s) of each decoder layer
    per_layer = []
    for kind in kinds:
        c_, h_, k_, tail_ = (attn_c, attn_h, attn_comm, attn_tail) if kind == "full" else rp.layer_cost(m, kind, ctx)
        per_layer.append((c_, h_ / BW, k_, _exposed(k_, tail_, overlap, c_, h_ / BW)))

    # Dense-FFN layer (s, bytes).
    dense_c = 2 * p["ffn"] * T / G / F_w
    dense_h = wb * p["ffn"] / t_d
    dense_comm = net.all_reduce(t_d, t_d, T * t_d / G * d * ab)
    dense_exposed = _exposed(dense_comm, 0.0, overlap, dense_c, dense_h / BW)

    # MoE layer (s, bytes).
    X_r, X_c = _expert_load(m, ac, T, G, ep, R)
    moe_c = 2 * X_c * p["exp"] / F_e + 2 * (p["sh"] + p["router"]) * T / G / F_w
    e_bw = ac["grouped_gemm_bw_efficiency"] if E > 1 else 1.0  # grouped GEMMs stream the experts at their own rate
    moe_h = eb * X_r * p["exp"] / e_bw + wb * (p["sh"] + p["router"]) / tp_e
    u = 1.0 - (1.0 - 1.0 / ep) ** k  # share of tokens with an expert in a given EP rank
    M, _ = net.islands(ep, G)  # EP dispatch sends each remote island one copy per token
    r = M * (1 - (1 - 1 / M) ** k) * (M - 1) / M / k if M > 1 else 0.0
    moe_comm = (
        net.all_to_all(ep, G, X_c * d * db, r)
        + net.all_to_all(ep, G, X_c * d * ab, r)
        + net.all_reduce(tp_e, tp_e, T * u * d * ab)
    )
    moe_exposed = _exposed(moe_comm, 0.0, overlap, moe_c, moe_h / BW)

    # Stage totals for one microbatch (largest stage).
    n_attn_s, n_dense_s, n_moe_s = n_layers / pp * s, n_dense / pp * s, n_moe / pp * s
    share = s / pp  # each decoder layer's weight in the largest stage's microbatch
    # AMBIGUOUS: "the LM head once per pp" is read as the head's time averaged over the stages
    # (divided by pp), as the previous page said explicitly; pp*t_micro then holds one head.
    head_c = 2 * V * d * T / G / F_m / pp
    head_h = mb * V * d / t_d / pp
    # AMBIGUOUS: in prefill the LM head runs over all T = b*L prompt tokens (the page's head
    # compute uses T, and "in prefill T = b*L"), not only each prompt's last token.
    Tc = share * sum(x[0] for x in per_layer) + n_dense_s * dense_c + n_moe_s * moe_c + head_c
    Th = share * BW * sum(x[1] for x in per_layer) + n_dense_s * dense_h + n_moe_s * moe_h + head_h
    comm_all = share * sum(x[2] for x in per_layer) + n_dense_s * dense_comm + n_moe_s * moe_comm
    exposed = share * sum(x[3] for x in per_layer) + n_dense_s * dense_exposed + n_moe_s * moe_exposed
    send = net.send(N, T * d * ab) if pp > 1 else 0.0
    latency = ac["layer_latency"] * n_attn_s
    # Kernel-structured step: each layer's kernels pay their fixed costs (the LM head once per step).
    fixed = (
        share * sum(rk.attention_layer(m, kind, ac) for kind in kinds)
        + n_dense_s * rk.tau("dense_ffn", ac)
        + n_moe_s * rk.moe_layer(m, ac)
        + rk.tau("lm_head", ac) / pp
    )

    if ac["roofline"] == "global":  # qs paper eq. 19: one max over the whole step
        roof = max(Tc, Th / BW)
    else:  # phases run one after another, each at its own roofline
        roof = (
            share * sum(max(x[0], x[1]) for x in per_layer)
            + n_dense_s * max(dense_c, dense_h / BW)
            + n_moe_s * max(moe_c, moe_h / BW)
            + max(head_c, head_h / BW)
        )
    # The ROCm stack: every kernel and collective (not the host work, not layer_latency) takes rocm_factor times as long.
    f = ac["rocm_factor"] if hw["stack"] == 1 else 1.0
    Tc, Th, comm_all, exposed, send, fixed, roof = (f * x for x in (Tc, Th, comm_all, exposed, send, fixed, roof))
    host = ac["sequence_latency"] * Be / dp_attn + ac["step_latency"]  # engine host work per step: pp*t_micro holds it once
    t_micro = roof + exposed + fixed + send + latency + host / pp
    t_draft = 0.0
    if not prefill and draft > 0:  # each drafting pass costs one average layer of the step
        t_draft = draft * m["mtp_layers"] * ((roof + exposed + fixed) / n_attn_s + ac["layer_latency"])
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

    per_user = L if prefill else 1 + accepted  # tokens per sequence per step
    if feasible:
        step_time = pp * t_micro + t_draft
        throughput = B * per_user / step_time
        tokens_per_s_per_user = per_user / step_time
    else:
        step_time = math.inf
        throughput = 0.0
        tokens_per_s_per_user = 0.0
        bound = 3

    # AMBIGUOUS: the page defines W_gpu and S but not the reported kv_bytes_per_gpu / memory_per_gpu;
    # they are read as the KV of the B/dp_attn sequences of a GPU's attention group, and W + KV + reserve.
    kv_bytes_per_gpu = Be / dp_attn * S
    return {
        "t_compute": t_compute,
        "t_hbm": t_hbm,
        "t_comm": t_comm,
        "t_comm_exposed": t_comm_exposed,
        "step_time": step_time,
        "batch": B,
        "b_max": B_max,
        "reuse": T * k / E,
        "bound": bound,
        "feasible": feasible,
        "throughput": throughput,
        "throughput_per_gpu": throughput / N,
        "tokens_per_s_per_user": tokens_per_s_per_user,
        "weight_bytes_per_gpu": W_gpu,
        "kv_bytes_per_gpu": kv_bytes_per_gpu,
        "memory_per_gpu": W_gpu + kv_bytes_per_gpu + ac["reserve_bytes"],
    }


def reference_decode(
    model: dict, hw: dict, part: dict, workload: dict, acc: dict, chunk_tokens: float = 0.0, prompt_len: float = 0.0
) -> dict:
    """One decode step (docs/cost-model.md sections 1-4); with ``chunk_tokens`` > 0 the mixed step
    of chunked prefill (section 7: the chunk's tokens join every GEMM, attend to ``prompt_len/2`` keys).

    Returns times in s per decode step, ``batch``/``b_max`` in sequences per replica, bytes per GPU,
    ``throughput`` in output tokens/s per replica, ``throughput_per_gpu`` per GPU and
    ``tokens_per_s_per_user`` per sequence.
    """
    return _evaluate(model, hw, part, workload, acc, prefill=False, chunk=chunk_tokens, prompt_len=prompt_len)


def reference_prefill(model: dict, hw: dict, part: dict, workload: dict, acc: dict) -> dict:
    """Prefill of ``B`` prompts of ``context`` tokens in one pass (the page's prefill readings:
    ``T = b*L``, ``F_score`` at ``L/2`` with decompressed MLA, each KV token written once, no
    drafting). Same keys as :func:`reference_decode`; ``throughput`` is prompt tokens/s."""
    return _evaluate(model, hw, part, workload, acc, prefill=True)


if __name__ == "__main__":
    llama70b = {
        "n_layers": 80,
        "d_model": 8192,
        "vocab_size": 128256,
        "n_heads": 64,
        "n_kv_heads": 8,
        "head_dim": 128,
        "d_ff": 28672,
        "weight_bytes": 2,
        "kv_bytes": 2,
        "act_bytes": 2,
    }
    h100 = {
        "hbm_bytes": 80e9,
        "hbm_bw": 3.35e12,
        "flops_bf16": 989e12,
        "flops_fp8": 1979e12,
        "intra_bw": 450e9,
        "intra_latency": 2e-6,
        "island_size": 8,
        "inter_bw": 50e9,
        "inter_latency": 5e-6,
    }
    total, active = reference_param_counts(llama70b)
    print(f"params total {total:.4e}, active {active:.4e}")
    print(f"kv bytes/token {reference_kv_bytes_per_token(llama70b):.4e}")
    for fn, wl in ((reference_decode, {"context": 1024, "batch": 1}), (reference_prefill, {"context": 4096, "batch": 1})):
        result = fn(llama70b, h100, {"tp": 8}, wl, {"expert_traffic": "physical", "integer_batch": True})
        print(fn.__name__)
        for key, value in result.items():
            print(f"{key:>22} = {value}")
