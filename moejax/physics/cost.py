"""Decode (and prefill) cost of one (model, hardware, partition, workload) point.

The definition is docs/cost-model.md; this module implements it with pure array expressions on
scalar leaves (``xp.namespace``), so it is written for one point and lifted with ``vmap``/``jit``
by ``moejax.engine.grid``. ``moejax.physics.reference`` implements the same page independently in
plain Python.

Worked example (tests/test_examples.py), speed of light: Llama-3-70B, BF16, 8×H100 SXM, TP8,
batch 1, 1k context. Each GPU reads 17.38 GB of weights (1/8 of the layers and LM head; the input
table is a lookup) and 42 MB of KV: t_hbm = 5.20 ms at 3.35 TB/s; compute is 18 µs; 160 one-shot
all-reduces of 16 KB over NVSwitch cost 2 µs + 7·16 KB/450 GB/s = 2.255 µs each (a ring would
take 28.06 µs), 0.36 ms with no overlap. Step = 5.56 ms (AIConfigurator's speed of light 5.22 ms;
GenZ, llm-analysis and AIConfigurator's measured-kernel mode 7.1–9.9 ms). With ``overlap = 1``
every all-reduce hides behind its layer's weight read: 5.20 ms.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import arch
from .collectives import all_reduce, all_to_all, send
from .kernels import layer_fixed_costs
from .phases import DecodePhases, MicrobatchCosts, Phase, StageCosts, stage_costs
from .routing import expert_load, expert_slots_per_rank, group_share, remote_share
from .specs import STACKS, Accounting, HardwareSpec, ModelSpec, Partition, Workload, pytree_spec
from .xp import namespace, static_equals, trace_once

BOUND_MEANINGS = ("compute", "hbm", "communication", "infeasible")


@pytree_spec
class StepCosts:
    """Per-step result. Times in s (per decode step of the whole replica), batch in sequences,
    bytes per GPU, throughput in output tokens/s (per replica and per GPU; speculative decoding's
    accepted tokens included), and the tokens/s one sequence sees."""

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
    tokens_per_s_per_user: Any
    weight_bytes_per_gpu: Any
    kv_bytes_per_gpu: Any
    memory_per_gpu: Any


class ValueBytes(NamedTuple):
    """Bytes per value of each kind of tensor (``value_bytes``), the spec's 0 defaults resolved."""

    expert: Any  # routed experts' weights
    embed: Any  # embeddings and LM head
    dispatch: Any  # EP dispatch payload
    attn: Any  # attention matmuls (scores over the KV)
    gemm_weights: Any  # non-expert GEMM inputs: the wider of weights and activations (gemm_bytes)
    gemm_experts: Any  # expert GEMM inputs
    gemm_embed: Any  # LM-head GEMM inputs


def matmul_peak(hw: HardwareSpec, nbytes, acc: Accounting):
    """Dense FLOP/s of a matmul whose inputs have ``nbytes`` per value: the FP4 peak below one
    byte where the chip has FP4 tensor cores (else FP8), the FP8 peak at one byte, else BF16;
    times the efficiencies. W4A16 (4-bit weights, BF16 inputs) runs at the BF16 peak."""
    xp = namespace(hw, nbytes)
    fp4 = (nbytes < 1) & (hw.flops_fp4 > 0)
    peak = xp.where(
        fp4, hw.flops_fp4 * acc.fp4_efficiency, xp.where(nbytes <= 1, hw.flops_fp8 * acc.fp8_efficiency, hw.flops_bf16)
    )
    return peak * acc.flops_efficiency


def value_bytes(m: ModelSpec) -> ValueBytes:
    """Bytes per value of (routed experts, embeddings/LM head, EP dispatch, attention matmuls,
    non-expert GEMM inputs, expert GEMM inputs, LM-head GEMM inputs) with the 0 defaults resolved."""
    xp = namespace(m)
    expert = xp.where(m.expert_bytes > 0, m.expert_bytes, m.weight_bytes)
    embed = xp.where(m.embed_bytes > 0, m.embed_bytes, m.weight_bytes)
    dispatch = xp.where(m.dispatch_bytes > 0, m.dispatch_bytes, m.act_bytes)
    attn = xp.where(m.attn_bytes > 0, m.attn_bytes, m.kv_bytes)
    gemm = lambda w: xp.maximum(w, m.gemm_bytes)  # noqa: E731  (a GEMM runs at its wider input)
    return ValueBytes(expert, embed, dispatch, attn, gemm(m.weight_bytes), gemm(expert), gemm(embed))


def stage_scale(m: ModelSpec, p: Partition):
    """Layers of the largest pipeline stage over the mean: ``ceil(n_layers/pp) / (n_layers/pp)``
    (61 layers on 2 stages: 31/30.5 = 1.0164), and exactly 1 without a pipeline (so a continuous
    layer count, as Epoch's relaxed shapes have, stays smooth). Every per-stage layer count is
    scaled by it."""
    xp = namespace(m, p)
    return xp.where(p.pp > 1, xp.ceil(m.n_layers / p.pp) / (m.n_layers / p.pp), 1.0)


def kv_values_per_token_layer_gpu(m: ModelSpec, p: Partition):
    """KV values per token per layer held by one GPU: GQA heads split over tp up to n_kv and
    replicated beyond; the MLA latent is replicated across tp."""
    xp = namespace(m, p)
    gqa = 2 * xp.maximum(m.n_kv_heads / p.tp, 1.0) * m.head_dim * (1 + m.cross_attention)
    return xp.where(arch.is_mla(m), m.kv_lora_rank + m.rope_head_dim, gqa)


@trace_once
def resident_weight_bytes(m: ModelSpec, p: Partition, draft_tokens=0.0):
    """Weight bytes resident on one GPU of the largest pipeline stage: attention split over tp
    (replicated over dp_attn and kvp); dense FFNs over ``dense_tp``; each EP rank's expert slots,
    shared experts and router over its ``G/ep`` GPUs; layers over pp; embeddings and LM head over
    ``dense_tp`` at their own dtype, averaged over stages; the MTP modules when drafting.

    DeepSeek-V3 FP8 (BF16 embeddings) on TP8 × KVP8 (dense_tp 0 = 64): 11.762 GB per GPU.
    """
    xp = namespace(m, p, draft_tokens)
    vb = value_bytes(m)
    expert, embed = vb.expert, vb.embed
    g, dense = p.gpus_per_stage, p.dense_degree
    tp_ffn = g / p.ep
    moe_gpu = (
        m.weight_bytes * (arch.shared_params(m) + arch.router_params(m))
        + expert * expert_slots_per_rank(m, p) * arch.expert_params(m)
    ) / tp_ffn
    layers = (
        m.weight_bytes * arch.total_attn_params(m) / p.tp
        + m.weight_bytes * m.n_dense_layers * arch.dense_ffn_params(m) / dense
        + arch.n_moe_layers(m) * moe_gpu
        + m.weight_bytes * m.n_encoder_layers * (arch.attn_params(m) / p.tp + arch.encoder_ffn_params(m) / g)
    )
    mtp = xp.where(
        draft_tokens > 0,
        m.mtp_layers
        * (
            m.weight_bytes * (arch.decoder_attn_params(m) / p.tp + 2 * m.d_model * m.d_model / dense)
            + xp.where(m.n_experts > 1, moe_gpu, m.weight_bytes * arch.dense_ffn_params(m) / dense)
        ),
        0.0,
    )
    return (layers * stage_scale(m, p) + embed * arch.embedding_params(m) / dense + mtp) / p.pp


def linear_state_values_gpu(m: ModelSpec, p: Partition):
    """Linear-attention state values of one sequence per layer on one GPU: split over tp by value
    heads (replicated beyond ``linear_value_heads``), held whole on each kvp rank (a recurrent state
    cannot be split along the sequence)."""
    xp = namespace(m, p)
    return arch.linear_state_values(m) * xp.maximum(1 / p.tp, 1 / xp.maximum(m.linear_value_heads, 1.0))


def kv_bytes_per_sequence_gpu(m: ModelSpec, p: Partition, context, acc: Accounting):
    """KV bytes one sequence occupies on one GPU of the largest stage: per layer kind, the tokens it
    stores (``arch.window_tokens``; full and sparse ``L``) over kvp × its values (sparse layers add
    the indexer key ``index_head_dim``), plus each linear layer's fixed state. Stages hold the
    model's mix of kinds (counts scaled by ``stage_scale/pp``, as for every per-layer count)."""
    if not acc.layer_patterns:  # every layer full attention (Accounting.layer_patterns)
        per_layer = kv_values_per_token_layer_gpu(m, p) * m.kv_bytes * acc.kv_scale
        return context / p.kvp * per_layer * m.n_layers / p.pp * stage_scale(m, p)
    (sl, _), (ch, _), _ = arch.window_tokens(m, context)
    v = kv_values_per_token_layer_gpu(m, p)
    tokens = (
        (arch.n_full_layers(m) + m.n_sparse_layers) * context * v
        + m.n_sparse_layers * context * m.index_head_dim
        + (m.n_sliding_layers * sl + m.n_chunked_layers * ch) * v
    )
    per_seq = tokens / p.kvp + m.n_linear_layers * linear_state_values_gpu(m, p)
    return per_seq * (m.kv_bytes * acc.kv_scale) / p.pp * stage_scale(m, p)


@trace_once
def batch_capacity(m: ModelSpec, hw: HardwareSpec, p: Partition, context, acc: Accounting, draft_tokens=0.0):
    """(B_max, sequences-per-group headroom C/S) from eq. 20: weights + B·KV ≤ capacity.

    DeepSeek-V3 in FP8 (BF16 embeddings) on the qs reference (180 GB, TP8 × KVP8 = 64 GPUs, 1k
    context): 11.762 GB of weights per GPU; a sequence holds 1024/8 tokens × 576 values × 2 B ×
    61 layers = 8.995 MB per GPU; B_max = floor((180 − 11.762) GB / 8.995 MB) = 18,703 sequences.
    """
    xp = namespace(m, hw, p, context)
    budget = hw.hbm_bytes * acc.hbm_usable_fraction - acc.reserve_bytes - resident_weight_bytes(m, p, draft_tokens)
    per_group = budget / kv_bytes_per_sequence_gpu(m, p, context, acc)
    whole = xp.floor(per_group) if acc.integer_batch else per_group
    return xp.maximum(p.dp_attn * whole, 0.0), per_group


def _pattern_phases(m: ModelSpec, p: Partition, pattern, tok_r, f_w, f_kv, kv_gpu, kv_b, wb, p_attn, comm, ar, tail, scale, acc):
    """``Phase`` of the pattern's sliding, chunked, sparse and linear layers, ``hbm`` in bytes at the weights'
    bandwidth (the cache and state reads of attention kernels divided by ``acc.attention_bw_efficiency``).

    ``pattern = (sequences per attention group, context L, prefill?)``. Softmax kinds cost what a full
    layer costs with their own key count: per query token ``score(L_k)`` FLOPs, and per GPU ``L_k/kvp``
    KV tokens read per sequence (decode; ``arch.window_tokens``); in prefill each prompt token is written
    once and a query attends to ``min(L/2, W)``, ``min(L/2, C/2)`` or ``min(L/2, top_k)`` keys. Sparse
    layers add the indexer: its projections, ``2·H_I·d_I`` FLOPs per key over all ``L`` keys (``L/2`` in
    prefill) and its ``index_head_dim`` key per token read in full. Linear layers run their projections
    and ``arch.linear_state_flops`` per token, tp-split and replicated over kvp, and read and write their
    state once per step per sequence (written once in prefill); they pay only the tp all-reduce.
    """
    xp = namespace(m, p, tok_r)
    seqs, context, prefill = pattern
    if not static_equals(acc.attention_bw_efficiency, 1.0):  # attention kernels stream the cache at their own bandwidth
        kv_b = kv_b / acc.attention_bw_efficiency
    fixed = layer_fixed_costs(m, acc)
    s1 = arch.score_flops_per_token_layer(m, 1.0, absorbed=not prefill)  # score FLOPs per key
    (sl_s, sl_r), (ch_s, ch_r), (_, sp_r) = arch.window_tokens(m, context)
    idx_keys = context / 2 if prefill else context
    if prefill:  # keys per query; each prompt token's KV written once
        half = context / 2
        keys = (xp.minimum(half, m.sliding_window), xp.minimum(half, m.chunk_size / 2), xp.minimum(half, m.sparse_top_k))
        written = tok_r * p.tp / p.kvp
        reads = (written, written, written)
    else:
        keys = (sl_r, ch_r, sp_r)
        reads = tuple(seqs * k / p.kvp for k in keys)
    p_sparse = p_attn + arch.indexer_params(m)
    idx_flops = 2 * m.index_heads * m.index_head_dim * idx_keys
    idx_read = (reads[2] if prefill else seqs * context / p.kvp) * (m.index_head_dim * kv_b)
    out = {}
    for name, count, params, n_keys, read, extra_flops, extra_read in (
        ("sliding", m.n_sliding_layers, p_attn, keys[0], reads[0], 0.0, 0.0),
        ("chunked", m.n_chunked_layers, p_attn, keys[1], reads[1], 0.0, 0.0),
        ("sparse", m.n_sparse_layers, p_sparse, keys[2], reads[2], idx_flops, idx_read),
    ):
        c = tok_r * (2 * params / f_w + (s1 * n_keys + extra_flops) / f_kv / p.kvp)
        h = wb * params / p.tp + read * (kv_gpu * kv_b) + extra_read
        out[name] = Phase(c, h, comm, tail, count * scale, fixed[name])
    p_lin = arch.linear_attn_params(m)
    c_lin = tok_r * (2 * p_lin / f_w + arch.linear_state_flops(m) / f_kv)
    state = seqs * linear_state_values_gpu(m, p) * kv_b * (1.0 if prefill else 2.0)  # decode: read + write
    out["linear"] = Phase(c_lin, wb * p_lin / p.tp + state, ar, 0.0, m.n_linear_layers * scale, fixed["linear"])
    return out


@trace_once
def microbatch_phases(
    m: ModelSpec, hw: HardwareSpec, p: Partition, acc: Accounting, tokens, score_flops, kv_tokens, pattern=None
) -> MicrobatchCosts:
    """Per-layer phase costs of one microbatch on one GPU of the largest stage, by phase
    (attention, dense FFN, MoE, LM head, and the pattern's kinds): ``Phase`` (compute s, HBM s,
    communication s, of which never hidden s, layers per stage); and the pipeline send to the next
    stage (s, exposed).

    ``tokens`` pass through the FFN (decode: b·(1+draft); prefill: b·L); each attention group
    carries ``tokens/dp_attn`` query tokens, each costing ``score_flops`` in a full-attention layer,
    which reads ``kv_tokens`` KV tokens per GPU. ``pattern`` (``_pattern_phases``) adds the sliding,
    chunked, sparse and linear layers; without it every decoder layer is a full-attention layer.
    """
    xp = namespace(m, hw, p, tokens, score_flops, kv_tokens)
    g, n, dense = p.gpus_per_stage, p.gpus_per_replica, p.dense_degree
    tp_ffn = g / p.ep
    d, wb, ab = m.d_model, m.weight_bytes, m.act_bytes
    vb = value_bytes(m)
    f_w, f_e, f_emb, f_kv = (matmul_peak(hw, b, acc) for b in (vb.gemm_weights, vb.gemm_experts, vb.gemm_embed, vb.attn))
    # kernel classes: routed experts run grouped GEMMs (one expert, E = 1, is a plain GEMM), attention its own kernels
    f_e = f_e * xp.where(m.n_experts > 1, acc.grouped_gemm_efficiency, 1.0)
    f_kv = f_kv * acc.attention_efficiency
    bw = hw.hbm_bw * acc.hbm_efficiency
    dv = arch.v_head_dim(m)
    # Products are grouped so that the batch-dependent factor (tokens, kv_tokens) multiplies a
    # coefficient of the specs alone: under vmap that coefficient is per model/hardware/partition,
    # and each term costs one or two operations per batch.
    tok_a = tokens / p.dp_attn  # query tokens of an attention group
    tok_r = tok_a / p.tp  # ... per tensor-parallel rank (head shard)

    # attention (every decoder layer): tp-way heads, kvp-way sequence shards
    p_attn = arch.decoder_attn_params(m)
    c_attn = tok_r * (2 * p_attn / f_w + score_flops / f_kv / p.kvp)
    kv_attn = kv_values_per_token_layer_gpu(m, p) * (m.kv_bytes * acc.kv_scale)
    if not static_equals(acc.attention_bw_efficiency, 1.0):  # (a Python 1.0 default: no division traced)
        kv_attn = kv_attn / acc.attention_bw_efficiency
    h_attn = wb * p_attn / p.tp + kv_tokens * kv_attn  # the KV read at the attention kernel's bandwidth
    dq = xp.where(arch.is_mla(m), m.kv_lora_rank + m.rope_head_dim, m.head_dim)
    hop = send(hw, p.tp * p.kvp, tok_r * (m.n_heads * dq * ab), acc)
    is_cp = p.kv_mode == 2
    tail = xp.where(is_cp & (p.kvp > 1), hop, 0.0)
    ar_attn = all_reduce(hw, p.tp, p.tp, tok_a * (d * ab), acc)
    comm_attn = (
        ar_attn
        + xp.where(p.kv_mode > 0, all_to_all(hw, p.kvp, p.tp * p.kvp, tok_r * (m.n_heads * dv * ab), acc), 0.0)
        + xp.where(is_cp, (p.kvp - 1) * hop, 0.0)
    )

    # dense-FFN layer: dense_tp-way tensor parallel, replicated over G/dense_tp groups
    p_ffn = arch.dense_ffn_params(m)
    c_dense = tokens * (2 * p_ffn / f_w) / g
    h_dense = wb * p_ffn / dense
    comm_dense = all_reduce(hw, dense, dense, tokens * (dense / g) * (d * ab), acc)

    # MoE layer: the busiest EP rank's experts; shared experts and router replicated per EP group
    fixed = arch.shared_params(m) + arch.router_params(m)
    load = expert_load(m, p, tokens, acc)
    c_moe = load.half_flops * (2 / f_e) + tokens * (2 * fixed / f_w) / g
    expert_bytes = vb.expert
    if not static_equals(acc.grouped_gemm_bw_efficiency, 1.0):  # grouped GEMMs stream experts at their own rate
        expert_bytes = expert_bytes / xp.where(m.n_experts > 1, acc.grouped_gemm_bw_efficiency, 1.0)
    h_moe = expert_bytes * load.params_read + wb * fixed / tp_ffn
    comm_moe = (
        all_to_all(
            hw, p.ep, g, load.copies * (d * (vb.dispatch + ab)), acc, calls=2.0, remote=remote_share(m, hw, p)
        )  # dispatch, combine
        + all_reduce(hw, tp_ffn, tp_ffn, tokens * (group_share(m, p) * (d * ab)), acc)
    )  # within each EP rank

    # LM head (averaged over stages): dense_tp-way, like the dense FFN
    head = m.vocab_size * d
    c_head = tokens * (2 * head / f_emb) / g
    h_head = vb.embed * head / dense

    scale = stage_scale(m, p) / p.pp
    n_full = m.n_layers if pattern is None else arch.n_full_layers(m)
    tau = layer_fixed_costs(m, acc)  # kernel fixed costs per layer (kernels.KERNEL_COUNTS × Accounting.tau_*)
    phases = {  # Phase(compute s, HBM s, communication s, of which never hidden s, layers per stage, fixed s)
        "attention": Phase(c_attn, h_attn / bw, comm_attn, tail, n_full * scale, tau["attention"]),
        "dense": Phase(c_dense, h_dense / bw, comm_dense, 0.0, m.n_dense_layers * scale, tau["dense"]),
        "moe": Phase(c_moe, h_moe / bw, comm_moe, 0.0, arch.n_moe_layers(m) * scale, tau["moe"]),
        "head": Phase(c_head, h_head / bw, 0.0, 0.0, 1 / p.pp, tau["head"]),
    }
    if pattern is not None:
        kinds = _pattern_phases(
            m,
            p,
            pattern,
            tok_r,
            f_w,
            f_kv,
            kv_values_per_token_layer_gpu(m, p),
            m.kv_bytes * acc.kv_scale,
            wb,
            p_attn,
            comm_attn,
            ar_attn,
            tail,
            scale,
            acc,
        )
        phases.update({k: ph._replace(hbm=ph.hbm / bw) for k, ph in kinds.items()})
    pipe = xp.where(p.pp > 1, send(hw, n, tokens * (d * ab), acc), 0.0)
    if static_equals(acc.rocm_factor, 1.0):  # the stack factor's default: nothing traced
        return MicrobatchCosts(phases, pipe)
    # on the ROCm stack every kernel and collective takes rocm_factor times the model's time (docs/cost-model.md §4)
    f = xp.where(hw.stack == STACKS["rocm"], acc.rocm_factor, 1.0)
    scaled = {
        k: Phase(ph.compute * f, ph.hbm * f, ph.comm * f, ph.pinned * f, ph.layers, ph.fixed * f) for k, ph in phases.items()
    }
    return MicrobatchCosts(scaled, pipe * f)


def _assemble(m, p, acc, wl, batch, b_eval, b_max, per_group, stage: StageCosts, pipe, t_draft, tokens_per_seq, out_per_seq):
    """Step totals, feasibility and bound from the stage's per-step costs, one microbatch's
    pipeline send (×pp) and the drafting passes. The step adds ``t_comm_exposed``, the bound
    compares the reported totals and the rates divide ``step_time``: each output is computed once
    and read by the others (XLA's CPU fusion would otherwise redo the phases inside each)."""
    xp = namespace(m, p, wl, batch, b_eval, b_max, per_group, stage, pipe, t_draft)
    roof, t_compute, t_hbm, comm, exposed = stage.roofline, stage.compute, stage.hbm, stage.comm, stage.exposed
    t_exp = exposed + p.pp * pipe
    # engine host work per step: per sequence in each attention-DP rank's scheduler, and once per step
    host = acc.sequence_latency * (b_eval / p.dp_attn) + acc.step_latency
    step = roof + t_exp + acc.layer_latency * (m.n_layers * stage_scale(m, p)) + host + t_draft
    if not static_equals(stage.fixed, 0.0):  # kernel fixed costs (accounting=kernel); none traced otherwise
        step = step + stage.fixed
    feasible = (per_group >= 1) & (batch <= b_max) & (batch >= p.pp * p.dp_attn)
    bound = xp.where(t_exp > xp.maximum(t_compute, t_hbm), 2, xp.where(t_compute >= t_hbm, 0, 1))
    weights = resident_weight_bytes(m, p, wl.draft_tokens)
    kv = b_eval / p.dp_attn * kv_bytes_per_sequence_gpu(m, p, wl.context, acc)
    step_time = xp.where(feasible, step, xp.inf)
    per_user = out_per_seq / step_time  # 0 where infeasible: the rates below need no further where
    throughput = batch * per_user
    return StepCosts(
        t_compute=t_compute,
        t_hbm=t_hbm,
        t_comm=comm + p.pp * pipe,
        t_comm_exposed=t_exp,
        step_time=step_time,
        batch=batch,
        b_max=b_max,
        reuse=b_eval / p.pp * (tokens_per_seq * m.top_k / m.n_experts),
        bound=xp.where(feasible, bound, 3).astype(xp.int32),
        feasible=feasible,
        throughput=throughput,
        throughput_per_gpu=throughput / p.gpus_per_replica,
        tokens_per_s_per_user=per_user,
        weight_bytes_per_gpu=weights,
        kv_bytes_per_gpu=kv,
        memory_per_gpu=weights + kv + acc.reserve_bytes,
    )


@trace_once
def decode_point(
    m: ModelSpec, hw: HardwareSpec, p: Partition, wl: Workload, acc: Accounting, chunk_tokens=0.0, prompt_len=0.0
) -> StepCosts:
    """One decode step of a replica serving ``B`` sequences at ``context`` tokens each.

    ``t_step = pp·(roofline + exposed comm + layer overheads) + drafting`` per docs/cost-model.md
    (``roofline`` is the sum of per-phase ``max(compute, HBM)``, or the paper's global max with
    ``roofline="global"``); ``B`` is ``wl.batch`` when > 0, else B_max. With speculative decoding
    each sequence verifies ``1 + draft_tokens`` tokens per step and emits ``1 + accepted``; the
    ``draft_tokens`` drafting passes through the ``mtp_layers`` modules cost that many layers of
    the step each. Infeasible points: ``feasible = False``, ``step_time = inf``,
    ``throughput = 0``, ``bound = 3``, components evaluated at ``max(B, 1)``.

    Mixed step (chunked prefill in aggregated serving): ``chunk_tokens`` prompt tokens of prompts
    of ``prompt_len`` tokens ride on the step. They pass every GEMM with the decode tokens (sharing
    the weight reads, touching more experts), attend to ``prompt_len/2`` keys each in the
    full-attention layers (causal average, MLA decompressed as in prefill) and write their KV once;
    their attention in pattern layers (sliding, chunked, sparse, linear) and their prefix KV reads
    are not charged. ``chunk_tokens = 0`` (the default, static) is the pure decode step.
    """
    xp = namespace(m, hw, p, wl)
    d = decode_phases(m, hw, p, wl, acc, chunk_tokens, prompt_len)
    stage = stage_costs(d.phases, p.pp, acc)
    per_layer = (stage.roofline + stage.exposed + stage.fixed) / (m.n_layers * stage_scale(m, p)) + acc.layer_latency
    # (a where, not a product with draft_tokens: a static 0 then drops the term at trace time)
    t_draft = xp.where(wl.draft_tokens > 0, wl.draft_tokens * m.mtp_layers * per_layer, 0.0)
    return _assemble(
        m, p, acc, wl, d.batch, d.b_eval, d.b_max, d.per_group, stage, d.pipe, t_draft, d.tokens_per_seq, 1 + wl.accepted
    )


def decode_phases(
    m: ModelSpec, hw: HardwareSpec, p: Partition, wl: Workload, acc: Accounting, chunk_tokens=0.0, prompt_len=0.0
) -> DecodePhases:
    """The decode step of ``decode_point`` (same arguments) split by phase, before the stage totals:
    each phase's per-layer ``Phase`` for one microbatch, the pipeline send, and the batch and
    tokens they are evaluated at (``DecodePhases``). ``stage_costs(phases, pp, acc)`` sums them into
    the step's roofline, compute, HBM and (exposed) communication; ``decode_point`` adds the
    pipeline sends (``pp·pipe``), the per-layer and per-sequence latencies and drafting.

    A phase's share of the step is ``pp·layers·(max(compute, HBM) + exposed)``, with ``exposed =
    max(comm - pinned - overlap·max(compute, HBM), 0) + pinned`` (local roofline).
    """
    xp = namespace(m, hw, p, wl)
    b_max, per_group = batch_capacity(m, hw, p, wl.context, acc, wl.draft_tokens)
    batch = xp.where(wl.batch > 0, wl.batch, b_max)
    b_eval = xp.maximum(batch, 1.0)
    micro = b_eval / p.pp
    per_seq = 1 + wl.draft_tokens
    tokens, reuse_per_seq = micro * per_seq, per_seq
    score = arch.score_flops_per_token_layer(m, wl.context)
    kv_tokens = micro / p.dp_attn * wl.context / p.kvp
    if not (isinstance(chunk_tokens, float) and chunk_tokens == 0.0):  # static 0: the pure decode step
        chunk = chunk_tokens / p.pp
        prompt_score = arch.score_flops_per_token_layer(m, prompt_len / 2, absorbed=False)
        score = (tokens * score + chunk * prompt_score) / (tokens + chunk)
        tokens, kv_tokens = tokens + chunk, kv_tokens + chunk / p.dp_attn / p.kvp
        reuse_per_seq = per_seq + chunk_tokens / b_eval  # the chunk's tokens reuse the weights too
    micro_costs = microbatch_phases(
        m, hw, p, acc, tokens, score, kv_tokens, (micro / p.dp_attn, wl.context, False) if acc.layer_patterns else None
    )
    return DecodePhases(micro_costs.phases, micro_costs.pipe, batch, b_eval, b_max, per_group, tokens, reuse_per_seq)


@trace_once
def prefill_point(m: ModelSpec, hw: HardwareSpec, p: Partition, wl: Workload, acc: Accounting) -> StepCosts:
    """Prefill of ``B`` prompts of ``context`` tokens in one pass (time to first token).

    Every prompt token passes the FFN (``B·L`` tokens, so all experts are touched for any real
    prompt), causal attention averages ``L/2`` keys per query (MLA decompressed, as prefill
    kernels run it), and each KV token is written once. ``batch <= 0`` means one prompt.
    ``throughput`` is prompt tokens/s. Beyond the qs paper.
    """
    xp = namespace(m, hw, p, wl)
    b_max, per_group = batch_capacity(m, hw, p, wl.context, acc, wl.draft_tokens)
    batch = xp.where(wl.batch > 0, wl.batch, 1.0)
    micro = batch / p.pp
    tokens = micro * wl.context
    phases, pipe = microbatch_phases(
        m,
        hw,
        p,
        acc,
        tokens,
        arch.score_flops_per_token_layer(m, wl.context / 2, absorbed=False),
        tokens / p.dp_attn / p.kvp,
        (micro / p.dp_attn, wl.context, True) if acc.layer_patterns else None,
    )
    return _assemble(
        m, p, acc, wl, batch, batch, b_max, per_group, stage_costs(phases, p.pp, acc), pipe, 0.0, wl.context, wl.context
    )
