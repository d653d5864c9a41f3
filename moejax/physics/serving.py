"""Serving one request stream: ISL/OSL workloads, time to first token, aggregated (chunked
prefill on the decode GPUs) vs disaggregated (a separate prefill pool) serving, and economics.

Written for one point (scalar leaves), lifted with ``vmap`` like ``cost.decode_point``. SI units:
seconds, tokens/s, requests/s, bytes, watts, US dollars. A request has ``isl`` prompt tokens and
generates ``osl`` output tokens; its KV grows from ``isl`` to ``isl + osl``, so decode runs at the
mean KV length ``decode_context = isl + osl/2``.

Prefill of a prompt on a partition ``p`` is ``cost.prefill_point`` at ``b = pp·dp_attn`` prompts
(the fewest that fill every pipeline stage and attention group; 1 without pp or DP-attention):
it takes ``T_pf`` seconds (each prompt's latency) and costs the replica ``T_pf/b`` seconds per
prompt of its time.

**Aggregated (chunked prefill, same GPUs).** Prompts are split into chunks of ``chunk`` tokens
that ride on decode steps (mixed batches, as vLLM/SGLang/TensorRT-LLM chunked prefill runs them).
The prefill work is charged in full on top of the decode step (no weight read shared with the
decode step: conservative, exact where prefill is compute-bound). In steady state every output
token of the replica owes ``T_pf/(b·osl)`` seconds of prefill, so the replica's output rate is
``X_agg = 1 / (1/X + T_pf/(b·osl))`` for the decode-only rate ``X`` (``decode_point``'s
throughput, speculative decoding's accepted tokens included); every decode step stretches by
``X/X_agg`` and tokens/s per user shrink by the same factor. A new request's prompt takes
``n = ceil(isl/chunk)`` steps (``chunk <= 0``: the whole prompt in one step), so
``TTFT = T_pf + n·t_step``: its own prefill plus ``n`` interleaved steps at their steady-state
mean length (decode plus the mean prefill load they carry; its own chunks are part of that load,
so they are counted twice: conservative by at most ``T_pf``). No queueing before admission: the
request joins at the next step boundary.

**Disaggregated (prefill pool).** A prefill pool on partition ``p_pf`` hands each prompt's KV to
a decode pool on partition ``p_dec``. Per GPU, the decode pool finishes ``r_dec = x_dec/osl``
requests/s (``x_dec`` output tokens/s/GPU) and the prefill pool ``r_pf = b/(T_pf·N_pf)`` prompts/s
(``N_pf`` GPUs per prefill replica). With a share ``s`` of the GPUs in the prefill pool, the pools
keep pace when ``s·r_pf = (1-s)·r_dec``:

    s = r_dec / (r_dec + r_pf),     end-to-end output tokens/s per GPU = (1-s)·x_dec = osl / (1/r_dec + 1/r_pf)

(continuous shares: whole replicas per pool are not enforced). The end-to-end rate is the
harmonic combination of the two pools' rates, increasing in each, so the best pair is the best
decode partition with the best prefill partition (searched independently) unless a TTFT limit
couples them. ``TTFT = T_pf + t_kv`` where every prefill GPU sends its share of the batch's KV,
``(b/dp_attn)·kv_bytes_per_sequence_gpu(isl)``, as one point-to-point transfer
(``collectives.send``) over NVLink when both replicas fit in one island, else over its NIC; not
overlapped with the prefill (an upper bound: layer-wise KV streaming hides most of it). Decode
tokens/s per user are the decode pool's.

Economics: ``cost_per_mtok`` and ``joules_per_token`` turn tokens/s per GPU into US dollars per
million output tokens and joules per output token (board power only, see ``joules_per_token``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import cost
from .collectives import send
from .specs import (
    Accounting,
    HardwareSpec,
    ModelSpec,
    Partition,
    Workload,
    _host_values,
    _require,
    _require_speculation,
    pytree_spec,
)
from .xp import namespace


@pytree_spec
class ServingWorkload:
    """A request stream: ``isl`` prompt tokens and ``osl`` output tokens per request; ``batch``
    decode sequences per replica (<= 0: B_max at the decode context); ``chunk`` prefill tokens per
    decode step in aggregated serving (<= 0: the whole prompt in one step); speculative decoding
    as in ``Workload``."""

    isl: Any
    osl: Any
    batch: Any = 0.0
    chunk: Any = 0.0
    draft_tokens: Any = 0.0
    accepted: Any = 0.0

    def __post_init__(self):
        v = _host_values(self)
        if v is None:
            return
        for f in ("isl", "osl"):
            _require("ServingWorkload", v, f, np.isfinite(v[f]) & (v[f] >= 1), "must be >= 1 token")
        for f in ("batch", "chunk"):
            _require("ServingWorkload", v, f, np.isfinite(v[f]), "must be finite (<= 0: the default)")
        _require_speculation("ServingWorkload", v)


@pytree_spec
class ServingCosts:
    """One serving configuration. ``ttft`` s (inf where infeasible); ``throughput_per_gpu``
    end-to-end output tokens/s per GPU over every GPU used (both pools when disaggregated; 0 where
    infeasible); ``tokens_per_s_per_user`` decode tokens/s one request sees; ``prefill_share``
    fraction of the GPUs in the prefill pool (0: aggregated); ``prefill_time`` s (``T_pf``);
    ``kv_transfer_time`` s (0: aggregated); ``decode`` the decode step's ``StepCosts`` at
    ``decode_context``."""

    ttft: Any
    throughput_per_gpu: Any
    tokens_per_s_per_user: Any
    prefill_share: Any
    prefill_time: Any
    kv_transfer_time: Any
    feasible: Any
    decode: Any


def decode_context(isl, osl):
    """Mean KV length over a generation, tokens: ``isl + osl/2``.

    A 1024-token prompt generating 1024 tokens decodes at 1536 tokens on average.
    """
    return isl + osl / 2


def _decode_workload(swl: ServingWorkload) -> Workload:
    return Workload(context=decode_context(swl.isl, swl.osl), batch=swl.batch,
                    draft_tokens=swl.draft_tokens, accepted=swl.accepted)


def prefill_batch(p: Partition):
    """Prompts one prefill pass runs on ``p``: ``pp·dp_attn`` (one per pipeline microbatch and
    attention group; 1 on TP/EP-only partitions)."""
    return p.pp * p.dp_attn


def prefill(m: ModelSpec, hw: HardwareSpec, p: Partition, isl, acc: Accounting) -> cost.StepCosts:
    """``cost.prefill_point`` of ``prefill_batch(p)`` prompts of ``isl`` tokens on ``p``."""
    return cost.prefill_point(m, hw, p, Workload(context=isl, batch=prefill_batch(p)), acc)


def chunked_prefill(throughput, step_time, prefill_time, prompts_per_pass, isl, osl, chunk):
    """(output tokens/s, step time s, TTFT s) of a replica interleaving prefill with decode, from
    its decode-only ``throughput`` (tokens/s) and ``step_time`` (s) and a prefill pass of
    ``prompts_per_pass`` prompts taking ``prefill_time`` (s): ``X_agg = 1/(1/X + T_pf/(b·osl))``,
    steps stretched by ``X/X_agg``, ``TTFT = T_pf + ceil(isl/chunk)·t_step`` (``chunk <= 0``: one step).

    A replica decoding 1000 tokens/s in 50 ms steps, prefill 0.2 s per prompt (b = 1), osl = 200:
    each output token owes 1 ms of prefill, X_agg = 1/(1 ms + 1 ms) = 500 tokens/s, steps take
    100 ms; a whole-prompt chunk gives TTFT = 0.2 + 0.1 = 0.3 s, 512-token chunks of a 2000-token
    prompt 0.2 + 4·0.1 = 0.6 s.
    """
    xp = namespace(throughput, step_time, prefill_time, chunk)
    stretch = 1 + throughput * (prefill_time / (prompts_per_pass * osl))  # X / X_agg = t_agg / t_step
    t_step = step_time * stretch
    steps = xp.where(chunk > 0, xp.ceil(isl / xp.where(chunk > 0, chunk, 1.0)), 1.0)
    return throughput / stretch, t_step, prefill_time + steps * t_step


def aggregated_point(m: ModelSpec, hw: HardwareSpec, p: Partition, swl: ServingWorkload, acc: Accounting) -> ServingCosts:
    """Chunked prefill on the decode GPUs of partition ``p`` (module docstring, ``chunked_prefill``):
    decode at ``decode_context(isl, osl)``, prefill of ``prefill_batch(p)`` prompts of ``isl`` tokens."""
    xp = namespace(m, hw, p, swl)
    dec = cost.decode_point(m, hw, p, _decode_workload(swl), acc)
    pf = prefill(m, hw, p, swl.isl, acc)
    ok = dec.feasible & pf.feasible
    safe = lambda x: xp.where(ok, x, 1.0)  # noqa: E731  (finite inputs where infeasible)
    rate, _, ttft = chunked_prefill(safe(dec.throughput), safe(dec.step_time), safe(pf.step_time),
                                         prefill_batch(p), swl.isl, swl.osl, swl.chunk)
    slow = rate / safe(dec.throughput)  # X_agg / X
    zero = xp.zeros_like(rate)
    return ServingCosts(
        ttft=xp.where(ok, ttft, xp.inf),
        throughput_per_gpu=xp.where(ok, dec.throughput_per_gpu * slow, 0.0),
        tokens_per_s_per_user=xp.where(ok, dec.tokens_per_s_per_user * slow, 0.0),
        prefill_share=zero,
        prefill_time=pf.step_time,
        kv_transfer_time=zero,
        feasible=ok,
        decode=dec,
    )


def kv_transfer_time(m: ModelSpec, hw: HardwareSpec, p_pf: Partition, p_dec: Partition, isl, acc: Accounting):
    """Seconds to hand one prefill pass's KV to the decode pool: every prefill GPU sends its
    ``(b/dp_attn)·kv_bytes_per_sequence_gpu(isl)`` bytes at once, over NVLink when both replicas
    fit in one island, else over its NIC (``collectives.send``).

    Llama-3-70B (GQA, BF16 KV) prefilled on TP8 H100 (b = 1), 8k prompt: each GPU holds 8192 tokens
    × 2·1·128 values × 2 B × 80 layers = 335.5 MB; to a decode replica on another node
    (16 GPUs > the 8-GPU island): 5 µs + 335.5 MB / 50 GB/s = 6.716 ms at speed of light.
    """
    per_gpu = prefill_batch(p_pf) / p_pf.dp_attn * cost.kv_bytes_per_sequence_gpu(m, p_pf, isl, acc)
    return send(hw, p_pf.gpus_per_replica + p_dec.gpus_per_replica, per_gpu, acc)


def pool_share(requests_per_s_per_gpu_decode, requests_per_s_per_gpu_prefill):
    """Share of the GPUs in the prefill pool so that it keeps pace with the decode pool:
    ``s = r_dec / (r_dec + r_pf)`` (then ``s·r_pf = (1-s)·r_dec``).

    Decode finishing 1 request/s/GPU and prefill 3 prompts/s/GPU: s = 1/4 (one prefill GPU per
    three decode GPUs: 0.25·3 = 0.75·1).
    """
    return requests_per_s_per_gpu_decode / (requests_per_s_per_gpu_decode + requests_per_s_per_gpu_prefill)


def prefill_rate_per_gpu(m: ModelSpec, hw: HardwareSpec, p: Partition, isl, acc: Accounting):
    """Prompts of ``isl`` tokens per second per GPU a prefill pool on ``p`` sustains:
    ``r_pf = b/(T_pf·N_pf)`` (0 where the prefill does not fit). The disaggregated search maximises it."""
    xp = namespace(m, hw, p, isl)
    pf = prefill(m, hw, p, isl, acc)
    return xp.where(pf.feasible, prefill_batch(p) / (xp.where(pf.feasible, pf.step_time, 1.0) * p.gpus_per_replica), 0.0)


def disaggregated_rate(decode_tokens_per_s_per_gpu, osl, prefill_time, prompts_per_pass, prefill_gpus):
    """(end-to-end output tokens/s per GPU, prefill share ``s``) of a prefill pool whose replicas
    of ``prefill_gpus`` GPUs prefill ``prompts_per_pass`` prompts in ``prefill_time`` s, feeding a
    decode pool at ``decode_tokens_per_s_per_gpu``: ``r_dec = x_dec/osl``,
    ``r_pf = b/(T_pf·N_pf)``, ``s = pool_share(r_dec, r_pf)``, rate ``(1-s)·x_dec = osl/(1/r_dec + 1/r_pf)``.

    Decode at 2000 tokens/s/GPU, osl = 1000 (r_dec = 2 requests/s/GPU); prefill of 1 prompt in
    0.125 s on 8 GPUs (r_pf = 1 prompt/s/GPU): s = 2/3, 2000/3 = 666.7 tokens/s per GPU.
    """
    r_dec = decode_tokens_per_s_per_gpu / osl
    r_pf = prompts_per_pass / (prefill_time * prefill_gpus)
    share = pool_share(r_dec, r_pf)
    return (1 - share) * decode_tokens_per_s_per_gpu, share


def disaggregated_point(m: ModelSpec, hw: HardwareSpec, p_dec: Partition, p_pf: Partition, swl: ServingWorkload,
                        acc: Accounting) -> ServingCosts:
    """A prefill pool on ``p_pf`` feeding a decode pool on ``p_dec`` (module docstring,
    ``disaggregated_rate``); ``TTFT = T_pf + kv_transfer_time``. With ``p_pf = p_dec`` the
    end-to-end rate equals ``aggregated_point``'s (both are ``osl/(1/r_dec + 1/r_pf)``: prefill
    is charged in full either way); the pools differ in TTFT and tokens/s per user."""
    xp = namespace(m, hw, p_dec, p_pf, swl)
    dec = cost.decode_point(m, hw, p_dec, _decode_workload(swl), acc)
    pf = prefill(m, hw, p_pf, swl.isl, acc)
    ok = dec.feasible & pf.feasible
    rate, share = disaggregated_rate(dec.throughput_per_gpu, swl.osl, xp.where(ok, pf.step_time, 1.0),
                                     prefill_batch(p_pf), p_pf.gpus_per_replica)
    t_kv = kv_transfer_time(m, hw, p_pf, p_dec, swl.isl, acc)
    return ServingCosts(
        ttft=xp.where(ok, pf.step_time + t_kv, xp.inf),
        throughput_per_gpu=xp.where(ok, rate, 0.0),
        tokens_per_s_per_user=xp.where(ok, dec.tokens_per_s_per_user, 0.0),
        prefill_share=xp.where(ok, share, 0.0),
        prefill_time=pf.step_time,
        kv_transfer_time=t_kv,
        feasible=ok,
        decode=dec,
    )


def cost_per_mtok(price_per_gpu_hour, tokens_per_s_per_gpu):
    """US dollars per million output tokens: ``price_per_gpu_hour / 3600 / tokens_per_s_per_gpu · 1e6``
    (inf at 0 tokens/s).

    $2.99 per GPU-hour at 1000 tokens/s/GPU: 2.99/3600/1000·1e6 = $0.8306 per million tokens.
    """
    return price_per_gpu_hour / 3600 / tokens_per_s_per_gpu * 1e6


def joules_per_token(board_power, tokens_per_s_per_gpu):
    """Joules per output token: ``board_power / tokens_per_s_per_gpu`` (inf at 0 tokens/s).

    The accelerator board's rated power (TDP) only, drawn in full while serving: no host CPUs,
    NICs, switches, cooling or facility overhead (multiply by a PUE and a host share for those).
    700 W at 1000 tokens/s/GPU: 0.7 J per token.
    """
    return board_power / tokens_per_s_per_gpu
