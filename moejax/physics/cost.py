"""Decode (and prefill) cost of one (model, hardware, partition, workload) point.

The definition is docs/cost-model.md; this module implements it with pure array expressions on
scalar leaves (``xp.namespace``), so it is written for one point and lifted with ``vmap``/``jit``
by ``moejax.engine.grid``. ``moejax.physics.reference`` implements the same page independently in
plain Python.

Worked example (tests/test_cost.py): Llama-3-70B, BF16, 8×H100 SXM, TP8, batch 1, 1k context.
Each GPU reads 17.38 GB of weights (1/8 of the layers and LM head; the input table is a lookup)
and 42 MB of KV: t_hbm = 5.20 ms at 3.35 TB/s; compute is 18 µs; 160 ring all-reduces of 16 KB
over NVLink cost 14·2 µs + 32 ns = 28.06 µs each, 4.49 ms with no overlap. Step = 9.69 ms (GenZ,
llm-analysis and AIConfigurator give 5–10 ms). With ``overlap = 1`` each FFN all-reduce hides
behind its layer's 11 MB weight read, while the attention one outlasts its 3.8 MB read: 6.53 ms.
"""

from __future__ import annotations

from typing import Any

from . import arch
from .collectives import all_reduce, all_to_all, link
from .specs import Accounting, HardwareSpec, ModelSpec, Partition, Workload, pytree_spec
from .xp import namespace

BOUND_MEANINGS = ("compute", "hbm", "communication", "infeasible")


@pytree_spec
class StepCosts:
    """Per-step result. Times in s (per decode step of the whole replica), batch in sequences,
    bytes per GPU, throughput in tokens/s (per replica and per GPU)."""

    t_compute: Any
    t_hbm: Any
    t_comm: Any
    t_comm_exposed: Any
    step_time: Any
    batch: Any
    b_max: Any
    reuse: Any
    bound: Any
    feasible: Any
    throughput: Any
    throughput_per_gpu: Any
    weight_bytes_per_gpu: Any
    kv_bytes_per_gpu: Any
    memory_per_gpu: Any


def _peak(hw: HardwareSpec, nbytes, acc: Accounting):
    """Dense FLOP/s for operands of ``nbytes`` per value: FP8 peak for 1-byte data, else BF16."""
    xp = namespace(hw, nbytes)
    return xp.where(nbytes <= 1, hw.flops_fp8, hw.flops_bf16) * acc.flops_efficiency


def kv_values_per_token_layer_gpu(m: ModelSpec, p: Partition):
    """KV values per token per layer held by one GPU: GQA heads split over tp up to n_kv and
    replicated beyond; the MLA latent is replicated across tp."""
    xp = namespace(m, p)
    gqa = 2 * xp.maximum(m.n_kv_heads / p.tp, 1.0) * m.head_dim * (1 + m.cross_attention)
    return xp.where(arch.is_mla(m), m.kv_lora_rank + m.rope_head_dim, gqa)


def resident_weight_bytes(m: ModelSpec, p: Partition):
    """Weight bytes resident on one GPU: attention split over tp (replicated over dp_attn and
    kvp), FFNs and experts over the stage's G GPUs, layers over pp, embeddings over all N."""
    g = p.gpus_per_stage
    layers = (
        m.n_layers * arch.decoder_attn_params(m) / p.tp
        + m.n_dense_layers * arch.dense_ffn_params(m) / g
        + arch.n_moe_layers(m) * arch.moe_resident_params(m) / g
        + m.n_encoder_layers * (arch.attn_params(m) / p.tp + arch.encoder_ffn_params(m) / g)
    )
    return m.weight_bytes * (layers / p.pp + arch.embedding_params(m) / p.gpus_per_replica)


def kv_bytes_per_sequence_gpu(m: ModelSpec, p: Partition, context, acc: Accounting):
    """KV bytes one sequence occupies on one GPU: ``L/kvp`` tokens × its layers' values."""
    per_layer = kv_values_per_token_layer_gpu(m, p) * m.kv_bytes * acc.kv_scale
    return context / p.kvp * per_layer * m.n_layers / p.pp


def batch_capacity(m: ModelSpec, hw: HardwareSpec, p: Partition, context, acc: Accounting):
    """(B_max, sequences-per-group headroom C/S) from eq. 20: weights + B·KV ≤ capacity.

    DeepSeek-V3 in FP8 on the qs reference (180 GB, TP8 × KVP8 = 64 GPUs, 1k context): 11.73 GB
    of weights per GPU; a sequence holds 1024/8 tokens × 576 values × 2 B × 61 layers = 8.99 MB
    per GPU; B_max = floor((180 − 11.73) GB / 8.99 MB) = 18,707 sequences.
    """
    xp = namespace(m, hw, p, context)
    budget = hw.hbm_bytes * acc.hbm_usable_fraction - acc.reserve_bytes - resident_weight_bytes(m, p)
    per_group = budget / kv_bytes_per_sequence_gpu(m, p, context, acc)
    whole = xp.floor(per_group) if acc.integer_batch else per_group
    return xp.maximum(p.dp_attn * whole, 0.0), per_group


def touched_experts(m: ModelSpec, tokens, skew):
    """Expected distinct experts touched by ``tokens`` tokens choosing top-k of E uniformly,
    over an effective pool ``E' = max(E(1-skew), k)``: ``E'(1 - (1 - k/E')^tokens)``.

    Smooth in ``tokens``; exactly k at one token and → E' for many. DeepSeek-V3 (256, 8) at 8 tokens:
    256·(1 - (31/32)^8) = 57.42 experts (vs 64 if no two tokens shared an expert).
    """
    xp = namespace(m, tokens, skew)
    e_eff = xp.maximum(m.n_experts * (1 - skew), m.top_k)
    sparse = e_eff > m.top_k
    base = xp.where(sparse, 1 - m.top_k / xp.where(sparse, e_eff, 2 * m.top_k), 0.5)  # safe pow
    return xp.where(sparse, e_eff * (1 - base**tokens), m.top_k)


def _group_share(m: ModelSpec, p: Partition):
    """Share of tokens with at least one of their k experts in a given EP group, ``1 - (1-1/ep)^k``
    (uniform routing): the outputs of a token's experts within a group are summed locally, so the
    group's tensor-parallel all-reduce carries only these tokens. 1 at ep = 1; DeepSeek-V3 (k = 8)
    on ep = 8: 1 - (7/8)^8 = 0.656."""
    xp = namespace(m, p)
    split = p.ep > 1
    base = xp.where(split, 1 - 1 / xp.where(split, p.ep, 2.0), 0.5)  # safe pow at ep = 1
    return xp.where(split, 1 - base**m.top_k, 1.0)


def _expert_bytes_params(m: ModelSpec, tokens, acc: Accounting):
    """Routed-expert parameters read per MoE layer per microbatch (times weight_bytes = bytes)."""
    if acc.expert_traffic == "paper-active":
        # qs paper eq. 4 with W = active weights, W_active / R per token (R = tokens*k/E), summed over
        # the tokens: k*P_exp*E/k = the whole pool, once per step, whatever the batch.
        return m.n_experts * arch.expert_params(m)
    if acc.expert_traffic == "paper-pool":
        # eq. 4 with W = the pool, W_pool / R per token, summed: E/k pools per step (Table 5's reading).
        return m.n_experts * m.n_experts * arch.expert_params(m) / m.top_k
    return touched_experts(m, tokens, acc.routing_skew) * arch.expert_params(m)


def _microbatch(m: ModelSpec, hw: HardwareSpec, p: Partition, acc: Accounting, tokens, score_context, kv_tokens):
    """Roofline time, compute time, HBM time, total and exposed communication of one microbatch
    on one stage (seconds).

    ``tokens`` pass through the FFN (decode: b sequences; prefill: b·L); each attention group
    carries ``tokens/dp_attn`` query tokens attending over ``score_context`` and reads
    ``kv_tokens`` KV tokens per GPU per layer.
    """
    xp = namespace(m, hw, p, tokens, score_context, kv_tokens)
    g, n = p.gpus_per_stage, p.gpus_per_replica
    tp_ffn = g / p.ep
    d, wb, ab = m.d_model, m.weight_bytes, m.act_bytes
    f_w, f_kv = _peak(hw, wb, acc), _peak(hw, m.kv_bytes, acc)
    bw = hw.hbm_bw * acc.hbm_efficiency
    tok_a = tokens / p.dp_attn
    dv = arch.v_head_dim(m)

    # attention phase (every decoder layer)
    p_attn = arch.decoder_attn_params(m)
    c_attn = 2 * p_attn * tok_a / p.tp / f_w + arch.score_flops_per_token_layer(m, score_context) * tok_a / (p.tp * p.kvp) / f_kv
    h_attn = wb * p_attn / p.tp + kv_tokens * kv_values_per_token_layer_gpu(m, p) * m.kv_bytes * acc.kv_scale
    a_tp, b_tp = link(hw, p.tp)
    a_kv, b_kv = link(hw, p.tp * p.kvp)
    n_out = tok_a * m.n_heads * dv / p.tp * ab
    dq = xp.where(arch.is_mla(m), m.kv_lora_rank + m.rope_head_dim, m.head_dim)
    hop = a_kv + tok_a * m.n_heads * dq / p.tp * ab / b_kv
    is_cp = p.kv_mode == 2
    ring = xp.where(is_cp, (p.kvp - 1) * hop, 0.0)
    tail = xp.where(is_cp & (p.kvp > 1), hop, 0.0)
    comm_attn = all_reduce(p.tp, tok_a * d * ab, a_tp, b_tp) + xp.where(p.kv_mode > 0, all_to_all(p.kvp, n_out, a_kv, b_kv), 0.0) + ring
    exp_attn = xp.maximum(comm_attn - tail - acc.overlap * xp.maximum(c_attn, h_attn / bw), 0.0) + tail

    # dense-FFN layer
    a_g, b_g = link(hw, g)
    p_ffn = arch.dense_ffn_params(m)
    c_dense = 2 * p_ffn * tokens / g / f_w
    h_dense = wb * p_ffn / g
    comm_dense = all_reduce(g, tokens * d * ab, a_g, b_g)
    exp_dense = xp.maximum(comm_dense - acc.overlap * xp.maximum(c_dense, h_dense / bw), 0.0)

    # MoE layer
    fixed = arch.shared_params(m) + arch.router_params(m)
    c_moe = 2 * (m.top_k * arch.expert_params(m) + fixed) * tokens / g / f_w
    h_moe = wb * (_expert_bytes_params(m, tokens, acc) + fixed) / g
    a_tf, b_tf = link(hw, tp_ffn)
    n_disp = tokens * m.top_k * d * ab / g  # token copies, spread over the stage's G GPUs
    comm_moe = 2 * all_to_all(p.ep, n_disp, a_g, b_g) + all_reduce(tp_ffn, tokens * _group_share(m, p) * d * ab, a_tf, b_tf)
    exp_moe = xp.maximum(comm_moe - acc.overlap * xp.maximum(c_moe, h_moe / bw), 0.0)

    n_att, n_den, n_moe = m.n_layers / p.pp, m.n_dense_layers / p.pp, arch.n_moe_layers(m) / p.pp
    head = m.vocab_size * d
    t_c = n_att * c_attn + n_den * c_dense + n_moe * c_moe + 2 * head * tokens / g / f_w / p.pp
    h_b = n_att * h_attn + n_den * h_dense + n_moe * h_moe + wb * head / g / p.pp
    a_pp, b_pp = link(hw, n)
    send = xp.where(p.pp > 1, a_pp + tokens * d * ab / b_pp, 0.0)
    comm = n_att * comm_attn + n_den * comm_dense + n_moe * comm_moe + send
    exposed = n_att * exp_attn + n_den * exp_dense + n_moe * exp_moe + send
    if acc.roofline == "global":
        roof = xp.maximum(t_c, h_b / bw)
    else:
        roof = (n_att * xp.maximum(c_attn, h_attn / bw) + n_den * xp.maximum(c_dense, h_dense / bw)
                + n_moe * xp.maximum(c_moe, h_moe / bw) + xp.maximum(2 * head * tokens / g / f_w, wb * head / g / bw) / p.pp)
    return roof, t_c, h_b / bw, comm, exposed


def _assemble(m, p, acc, wl, batch, b_eval, b_max, per_group, roof, t_c, t_h, comm, exposed):
    """Step totals, feasibility and bound from one microbatch's costs (pipeline: ×pp)."""
    xp = namespace(m, p, wl, batch, b_eval, b_max, per_group, roof, t_c, t_h, comm, exposed)
    step = p.pp * (roof + exposed + acc.layer_latency * m.n_layers / p.pp)
    t_compute, t_hbm, t_exp = p.pp * t_c, p.pp * t_h, p.pp * exposed
    feasible = (per_group >= 1) & (batch <= b_max) & (batch >= p.pp * p.dp_attn)
    bound = xp.where(t_exp > xp.maximum(t_compute, t_hbm), 2, xp.where(t_compute >= t_hbm, 0, 1))
    n = p.gpus_per_replica
    weights = resident_weight_bytes(m, p)
    kv = b_eval / p.dp_attn * kv_bytes_per_sequence_gpu(m, p, wl.context, acc)
    throughput = xp.where(feasible, batch / step, 0.0)
    return StepCosts(
        t_compute=t_compute,
        t_hbm=t_hbm,
        t_comm=p.pp * comm,
        t_comm_exposed=t_exp,
        step_time=xp.where(feasible, step, xp.inf),
        batch=batch,
        b_max=b_max,
        reuse=b_eval / p.pp * m.top_k / m.n_experts,
        bound=xp.where(feasible, bound, 3).astype(xp.int32),
        feasible=feasible,
        throughput=throughput,
        throughput_per_gpu=throughput / n,
        weight_bytes_per_gpu=weights,
        kv_bytes_per_gpu=kv,
        memory_per_gpu=weights + kv + acc.reserve_bytes,
    )


def decode_point(m: ModelSpec, hw: HardwareSpec, p: Partition, wl: Workload, acc: Accounting) -> StepCosts:
    """One decode step of a replica serving ``B`` sequences at ``context`` tokens each.

    ``t_step = pp·(roofline + exposed comm)`` per docs/cost-model.md (``roofline`` is the sum of
    per-phase ``max(compute, HBM)``, or the paper's global max with ``roofline="global"``); ``B`` is
    ``wl.batch`` when > 0, else B_max. Infeasible points: ``feasible = False``,
    ``step_time = inf``, ``throughput = 0``, ``bound = 3``, components evaluated at ``max(B, 1)``.
    """
    xp = namespace(m, hw, p, wl)
    b_max, per_group = batch_capacity(m, hw, p, wl.context, acc)
    batch = xp.where(wl.batch > 0, wl.batch, b_max)
    b_eval = xp.maximum(batch, 1.0)
    micro = b_eval / p.pp
    costs = _microbatch(m, hw, p, acc, micro, wl.context, micro / p.dp_attn * wl.context / p.kvp)
    return _assemble(m, p, acc, wl, batch, b_eval, b_max, per_group, *costs)


def prefill_point(m: ModelSpec, hw: HardwareSpec, p: Partition, wl: Workload, acc: Accounting) -> StepCosts:
    """Prefill of ``B`` prompts of ``context`` tokens in one pass (time to first token).

    Every prompt token passes the FFN (``B·L`` tokens, so all experts are touched for any real
    prompt), causal attention averages ``L/2`` keys per query, and each KV token is written once.
    ``batch <= 0`` means one prompt. ``throughput`` is prompt tokens/s. Beyond the qs paper.
    """
    xp = namespace(m, hw, p, wl)
    b_max, per_group = batch_capacity(m, hw, p, wl.context, acc)
    batch = xp.where(wl.batch > 0, wl.batch, 1.0)
    micro = batch / p.pp
    tokens = micro * wl.context
    costs = _microbatch(m, hw, p, acc, tokens, wl.context / 2, tokens / p.dp_attn / p.kvp)
    out = _assemble(m, p, acc, wl, batch, batch, b_max, per_group, *costs)
    tput = xp.where(out.feasible, batch * wl.context / out.step_time, 0.0)
    return StepCosts(**{**vars(out), "throughput": tput, "throughput_per_gpu": tput / p.gpus_per_replica})
