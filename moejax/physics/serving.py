"""Planning one request stream: ISL/OSL workloads served aggregated (chunked prefill on the
decode GPUs) or disaggregated (a separate prefill pool) at a chosen running batch, in steady
state, and their economics. The physics is ``served.py``'s (the closed-loop benchmark model that
the serving validation holds to 2,145 measured runs); this module picks its operating point.

Written for one point (scalar leaves), lifted with ``vmap`` like ``cost.decode_point``. SI units:
seconds, tokens/s, bytes, watts, US dollars. A request has ``isl`` prompt tokens and generates
``osl`` output tokens; decode runs at the mean KV length ``decode_context = isl + osl/2``.

**Steady state.** A replica keeps ``batch`` requests in flight (<= 0: B_max at the decode
context), each replaced at once when it finishes: ``served.Benchmark`` with ``concurrency =
batch`` on one decode replica. Start-up waves are a benchmark's artefact, not a deployment's:
``warmup_share`` is 0 here (``request_overhead`` stays: every request pays it).

**Aggregated** (``aggregated_point``): ``served.aggregated`` with ``chunk`` prompt tokens per
step (the room a step leaves after its decode tokens; <= 0: a step can take every waiting prompt
whole). A batch the chunk cannot sustain (its prompts need more than ``chunk`` tokens per step:
``batch·isl/osl > chunk``) or above B_max is infeasible, as a batch above B_max is for
``decode_point``. TPOT is the mean of decode steps and the steps that also carry prompt chunks
(they share the weight reads: ``cost.decode_point``'s mixed step).

**Disaggregated** (``disaggregated_point``): the decode replica at ``batch`` (pure decode steps)
fed by prefill replicas on ``p_pf``, as many (a real number: replicas are shared across decode
replicas) as put the prefill pool at utilisation ``prefill_utilisation`` (default 0.8). With a
TTFT limit the pool runs at the largest utilisation that meets it (``utilisation_for_wait``,
the M/D/1 wait inverted), at most 0.99; the limit is unmet when the prefill pass, the KV hand-off
and ``request_overhead`` alone exceed it. ``served.disaggregated`` then gives TPOT, TTFT (the
pass, the M/D/1 wait, the hand-off) and the end-to-end tokens/s per GPU over both pools.

Economics: ``cost_per_mtok`` and ``joules_per_token`` turn tokens/s per GPU into US dollars per
million output tokens and joules per output token (board power only, see ``joules_per_token``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import cost, served
from .served import kv_transfer_time
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
    replace,
)
from .xp import namespace


@pytree_spec
class ServingWorkload:
    """A request stream: ``isl`` prompt tokens and ``osl`` output tokens per request; ``batch``
    requests in flight per decode replica (<= 0: B_max at the decode context); ``chunk`` prompt
    tokens a decode step can carry in aggregated serving (<= 0: every waiting prompt whole);
    ``prefill_utilisation`` the disaggregated prefill pool's utilisation (0 < u < 1); speculative
    decoding as in ``Workload``."""

    isl: Any
    osl: Any
    batch: Any = 0.0
    chunk: Any = 0.0
    prefill_utilisation: Any = 0.8
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
        u = v["prefill_utilisation"]
        _require("ServingWorkload", v, "prefill_utilisation", (u > 0) & (u < 1), "must be in (0, 1)")
        _require_speculation("ServingWorkload", v)


@pytree_spec
class ServingCosts:
    """One serving configuration in steady state. ``tpot`` s per output token after the first and
    ``ttft`` s (inf where infeasible); ``throughput_per_gpu`` end-to-end output tokens/s per GPU
    over every GPU used (both pools when disaggregated; 0 where infeasible);
    ``tokens_per_s_per_user`` ``1/tpot``; ``batch`` requests in flight per decode replica;
    ``prefill_share`` fraction of the GPUs in the prefill pool (0: aggregated); ``prefill_time`` s,
    the request's own prefill (aggregated: its chunks' steps; disaggregated: its pass);
    ``kv_transfer_time`` s (0: aggregated); ``decode`` the pure decode step's ``StepCosts``."""

    tpot: Any
    ttft: Any
    throughput_per_gpu: Any
    tokens_per_s_per_user: Any
    batch: Any
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


def prefill_batch(p: Partition):
    """Prompts one prefill pass runs on ``p``: ``pp·dp_attn`` (one per pipeline microbatch and
    attention group; 1 on TP/EP-only partitions)."""
    return p.pp * p.dp_attn


def prefill(m: ModelSpec, hw: HardwareSpec, p: Partition, isl, acc: Accounting) -> cost.StepCosts:
    """``cost.prefill_point`` of ``prefill_batch(p)`` prompts of ``isl`` tokens on ``p``."""
    return cost.prefill_point(m, hw, p, Workload(context=isl, batch=prefill_batch(p)), acc)


def _steady(acc: Accounting) -> Accounting:
    return replace(acc, warmup_share=0.0)


def _in_flight(m: ModelSpec, hw: HardwareSpec, p: Partition, swl: ServingWorkload, acc: Accounting):
    """Requests in flight per decode replica: ``swl.batch``, or B_max at the decode context (<= 0)."""
    xp = namespace(m, hw, p, swl)
    b_max, _ = cost.batch_capacity(m, hw, p, decode_context(swl.isl, swl.osl), acc, swl.draft_tokens)
    return xp.maximum(xp.where(swl.batch > 0, swl.batch, b_max), 1.0)


def aggregated_point(m: ModelSpec, hw: HardwareSpec, p: Partition, swl: ServingWorkload, acc: Accounting) -> ServingCosts:
    """Aggregated serving of ``swl`` on one replica of partition ``p`` in steady state (module
    docstring): ``served.aggregated`` with ``concurrency = batch`` and a token budget of
    ``batch + chunk`` (``chunk <= 0``: ``batch·(1 + isl)``, every waiting prompt whole)."""
    xp = namespace(m, hw, p, swl)
    n = _in_flight(m, hw, p, swl, acc)
    room = xp.where(swl.chunk > 0, swl.chunk, n * swl.isl)
    bench = served.Benchmark(
        isl=swl.isl, osl=swl.osl, concurrency=n, token_budget=n + room, draft_tokens=swl.draft_tokens, accepted=swl.accepted
    )
    r = served.aggregated(m, hw, p, bench, _steady(acc))
    ok = r.feasible & (r.batch >= n)  # the whole batch runs: within B_max and what the chunk sustains
    zero = xp.zeros_like(r.tpot)
    return ServingCosts(
        tpot=xp.where(ok, r.tpot, xp.inf),
        ttft=xp.where(ok, r.ttft, xp.inf),
        throughput_per_gpu=xp.where(ok, r.throughput_per_gpu, 0.0),
        tokens_per_s_per_user=xp.where(ok, r.tokens_per_s_per_user, 0.0),
        batch=n,
        prefill_share=zero,
        prefill_time=r.t_prefill,
        kv_transfer_time=zero,
        feasible=ok,
        decode=r.step,
    )


def utilisation_for_wait(wait, service):
    """The utilisation of an M/D/1 queue whose mean wait is ``wait`` s at service time ``service``
    s: ``served.md1_wait`` inverted, ``ρ = 2W/(S + 2W)`` (0 where ``wait <= 0``).

    A 0.1 s wait on 0.2 s passes: 0.2/(0.2 + 0.2) = 0.5 (``md1_wait(0.5, 0.2)`` = 0.1 s).
    """
    xp = namespace(wait, service)
    w = xp.maximum(wait, 0.0)
    return 2 * w / (service + 2 * w)


def pool_utilisation(
    m: ModelSpec, hw: HardwareSpec, p_dec: Partition, p_pf: Partition, swl: ServingWorkload, acc: Accounting, ttft_max=None
):
    """(utilisation ``ρ`` of a prefill pool on ``p_pf`` feeding ``p_dec``, its pass ``T_b`` s,
    whether it can serve): ``swl.prefill_utilisation``, or with ``ttft_max`` s the largest ``ρ``
    whose M/D/1 wait fits the TTFT left after ``request_overhead``, the pass and the KV hand-off
    (``utilisation_for_wait``), at most 0.99; unservable where nothing is left."""
    xp = namespace(m, hw, p_dec, p_pf, swl)
    pf = prefill(m, hw, p_pf, swl.isl, acc)
    t_b = xp.where(pf.feasible, pf.step_time, 1.0)
    if ttft_max is None:
        return swl.prefill_utilisation, t_b, pf.feasible
    headroom = ttft_max - acc.request_overhead - t_b - kv_transfer_time(m, hw, p_pf, p_dec, swl.isl, acc)
    return xp.minimum(utilisation_for_wait(headroom, t_b), 0.99), t_b, pf.feasible & (headroom > 0)


def prefill_capacity_per_gpu(
    m: ModelSpec, hw: HardwareSpec, p_dec: Partition, p_pf: Partition, swl: ServingWorkload, acc: Accounting, ttft_max=None
):
    """Prompts per second per prefill GPU a pool on ``p_pf`` serves at its utilisation
    (``pool_utilisation``): ``ρ·b/(T_b·N_pf)``; 0 where it cannot serve. A decode replica needs
    ``λ/capacity`` prefill GPUs, so the disaggregated search maximises it.

    A pass of b = 1 prompt in 0.125 s on 8 GPUs at ρ = 0.8: 0.8·1/(0.125·8) = 0.8 prompts/s per GPU.
    """
    xp = namespace(m, hw, p_dec, p_pf, swl)
    rho, t_b, ok = pool_utilisation(m, hw, p_dec, p_pf, swl, acc, ttft_max)
    return xp.where(ok, rho * prefill_batch(p_pf) / (t_b * p_pf.gpus_per_replica), 0.0)


def disaggregated_point(
    m: ModelSpec, hw: HardwareSpec, p_dec: Partition, p_pf: Partition, swl: ServingWorkload, acc: Accounting, ttft_max=None
) -> ServingCosts:
    """A prefill pool on ``p_pf`` feeding one decode replica on ``p_dec`` at ``swl.batch`` in
    steady state (module docstring). The pool has ``λ/(ρ·μ)`` replicas for the decode replica's
    ``λ = batch/(osl·TPOT)`` prompts/s, a replica's capacity ``μ = b/T_b`` and utilisation ``ρ``
    (``pool_utilisation``: ``swl.prefill_utilisation``, or with ``ttft_max`` s the largest meeting it)."""
    xp = namespace(m, hw, p_dec, p_pf, swl)
    n = _in_flight(m, hw, p_dec, swl, acc)
    acc0 = _steady(acc)
    step = cost.decode_point(
        m,
        hw,
        p_dec,
        Workload(context=decode_context(swl.isl, swl.osl), batch=n, draft_tokens=swl.draft_tokens, accepted=swl.accepted),
        acc0,
    )
    rho, t_b, pool_ok = pool_utilisation(m, hw, p_dec, p_pf, swl, acc0, ttft_max)
    ok = step.feasible & pool_ok
    rho = xp.where(ok, rho, 0.5)
    tpot = xp.where(ok, step.step_time, 1.0) / (1 + swl.accepted)
    b = prefill_batch(p_pf)
    workers = n / (swl.osl * tpot) / (rho * b / t_b)  # prefill replicas per decode replica
    bench = served.Benchmark(
        isl=swl.isl,
        osl=swl.osl,
        concurrency=n,
        prefill_workers=workers,
        prefill_cap=b,
        draft_tokens=swl.draft_tokens,
        accepted=swl.accepted,
    )
    r = served.disaggregated(m, hw, p_dec, p_pf, bench, acc0)
    ok = ok & r.feasible
    pf_gpus = workers * p_pf.gpus_per_replica
    return ServingCosts(
        tpot=xp.where(ok, r.tpot, xp.inf),
        ttft=xp.where(ok, r.ttft, xp.inf),
        throughput_per_gpu=xp.where(ok, r.throughput_per_gpu, 0.0),
        tokens_per_s_per_user=xp.where(ok, r.tokens_per_s_per_user, 0.0),
        batch=n,
        prefill_share=xp.where(ok, pf_gpus / (pf_gpus + p_dec.gpus_per_replica), 0.0),
        prefill_time=r.t_prefill,
        kv_transfer_time=r.kv_transfer_time,
        feasible=ok,
        decode=r.step,
    )


def prefill_rate_per_gpu(m: ModelSpec, hw: HardwareSpec, p: Partition, isl, acc: Accounting):
    """Prompts of ``isl`` tokens per second per GPU a prefill pool on ``p`` sustains:
    ``r_pf = b/(T_pf·N_pf)`` (0 where the prefill does not fit). The disaggregated search maximises
    it: for a given decode replica the pool's GPUs per decode GPU fall as it rises."""
    xp = namespace(m, hw, p, isl)
    pf = prefill(m, hw, p, isl, acc)
    return xp.where(pf.feasible, prefill_batch(p) / (xp.where(pf.feasible, pf.step_time, 1.0) * p.gpus_per_replica), 0.0)


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
