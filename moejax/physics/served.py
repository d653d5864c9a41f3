"""A closed-loop serving benchmark against one deployment: mean TPOT and TTFT, aggregated or
disaggregated (what InferenceMAX, ``trtllm-bench``, ``sglang.bench_serving`` and AIConfigurator's
silicon runs measure). Written for one point (scalar leaves), lifted with ``vmap``. SI units.

A benchmark keeps ``concurrency`` requests in flight (closed loop: a finished request is replaced
at once); each has ``isl`` prompt tokens and ``osl`` output tokens, so decode runs at the mean KV
length ``isl + osl/2``. TPOT is the mean time per output token after the first (exclusive of
TTFT); TTFT the mean time to the first token.

**Aggregated** (in-flight batching with chunked prefill; ``prefill_workers = 0``). Each of the
``decode_workers`` replicas on partition ``p`` holds ``B = min(concurrency/workers, decode_cap,
B_max, token_budget·osl/(isl+osl))`` requests in its running batch (at least ``pp·dp_attn``, one
per attention group). A step decodes one token of each and prefills up to ``room = token_budget - B``
prompt tokens (``cost.decode_point`` with ``chunk_tokens``: the mixed step). In steady state the
closed loop admits ``λ = B/osl`` prompts per step, ``c = B·isl/osl`` prompt tokens, at random
phases: a prompt shares its step with ``λ`` others on average, so a prefill step carries
``k = min(g·isl, room)`` prompt tokens with ``g = clip(1 + λ, 1, min(B, floor(room/isl)))``, and a
share ``s = min(c/k, 1)`` of the steps are prefill steps, ``s·(B-1)/B`` of a request's TPOT window
(its own prompt came before its first token): ``TPOT = (1-s_w)·t_decode + s_w·t_prefill`` (per
output token: divided by ``1 + accepted``). A prompt's first token comes with the step that ends
its prefill (``t_own``: one step, or ``ceil(isl/room)`` chunks of a longer prompt), after waiting
for the step in progress to end (its residual life) and for the prompts ahead of it: an M/D/1
queue on the steps' prompt capacity, utilisation ``ρ = c/room``, mean wait ``ρ/(2(1-ρ))·t_own``
(Pollaczek-Khinchine), at most the start-up wave's. Requests beyond the running batch wait for a
slot: by Little's law ``n`` requests cycling through ``B`` slots, each held ``osl·TPOT + t_own``,
wait ``(n/B - 1)·(osl·TPOT + t_own)``. ``TTFT = request_overhead + t_own + W_queue + W_admission +
warmup_share·W_wave``.

**Start-up wave.** A benchmark's clients all send their first request at once: ``min(n, B)``
prompts queue together and are prefilled in ``m = min(n,B)·isl/room`` full steps of ``room``
tokens, the i-th ending with step ``ceil(i·isl/room)``: a mean TTFT of ``(m + r + 1)/2`` full steps
(``r = isl/room``; one step of ``min(n,B)·isl`` tokens when the wave fits in one: ``wave_steps``),
``W_wave = max(steps·t_wave - t_own, 0)``, ``t_wave`` a step of ``min(min(n,B)·isl, room)`` prompt
tokens, beyond a steady prompt's (aggregated),
``max(N - W_pf·b, 0)/(2μ)`` (disaggregated). Only the run's first wave pays it; ``warmup_share``
(an Accounting constant, fitted: the run's length in requests per client is not published) is its
share of the measured requests. ``request_overhead`` (Accounting, fitted, per engine profile) is
the engine's time per request outside the model's passes (API server, tokenisation, scheduling,
the first token's streaming). tests/test_served.py holds these closed forms to a discrete-event
simulation of the engine stepping the oracle's mixed step (clients at random phases for the steady
state, all at once for the wave).

**Prefill-first engines** (``prefill_first = 1``). SGLang's scheduler runs a waiting prefill batch
(up to ``token_budget`` prompt tokens, no decode tokens) before the next decode step (its
``get_next_batch_to_run``; mixing needs ``--enable-mixed-chunk``). A benchmark's clients start
together and every request has ``osl`` output tokens, so the loop stays in lockstep: each round the
``min(n, B)`` prompts arrive at once, are prefilled in ``M = ceil(min(n,B)·isl/budget)`` prefill-only
steps before any decoding, decode together and end at the same step (``lockstep``). Every request
then pays the wave (no random-phase queue, no ``warmup_share``): ``TTFT = request_overhead +
wave_steps·t_wave + W_admission``, and its TPOT window holds the wave steps after its own first token.
Decode-first engines (vLLM V1 fills a step's token budget after its running requests, TensorRT-LLM's
in-flight batching mixes context and generation requests) spread the first wave over their decode
steps, and the loop settles at random phases (``prefill_first = 0``, the default).

**Disaggregated** (``prefill_workers > 0``). The decode pool's ``decode_workers`` replicas on
``p_dec`` hold ``B`` requests each, as above without prompt tokens (pure decode steps): TPOT is
their step. The prefill pool's ``prefill_workers`` replicas on ``p_pf`` run passes of
``b = prefill_cap`` prompts (default ``pp·dp_attn``) in ``T_b``: capacity ``μ = W_pf·b/T_b``
prompts/s. Prompts arrive at the rate the decode pool completes requests, ``λ = W_dec·B/(osl·TPOT)``,
``ρ = λ/μ``; below saturation a prompt waits the M/D/1 mean ``ρ/(2(1-ρ))·T_b``; at or above it the
closed loop is prefill-bound and Little's law gives ``TTFT = concurrency/μ - osl·TPOT``.
``TTFT = request_overhead + T_1 + W_queue + t_kv + warmup_share·W_wave`` with ``T_1`` the pass of
one prompt per attention group and ``t_kv`` the KV hand-off (``kv_transfer_time``).

Named approximations (docs/cost-model.md §8): prompts arrive at random phases (Poisson-like: the
M/D/1 queues), which is what clients desynchronised by the engines' jitter give; on a prefill-first
engine, lockstep: clients that start together, every request exactly ``osl`` tokens, no mixed chunks
(``--enable-mixed-chunk`` off), jitter below a pass; a batch below
``pp·dp_attn`` is evaluated at one sequence per attention group (the busiest rank sets the step).
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
class Benchmark:
    """A closed-loop serving benchmark: ``concurrency`` requests in flight over the deployment, each
    ``isl`` prompt and ``osl`` output tokens; ``decode_workers`` replicas (aggregated: all of them);
    ``prefill_workers`` replicas of a prefill pool (0: aggregated); ``decode_cap`` the engine's
    running-batch limit per decode replica (<= 0: memory only); ``prefill_cap`` prompts per prefill
    pass (<= 0: ``pp·dp_attn``); ``token_budget`` tokens per aggregated step (chunked prefill);
    speculative decoding as in ``Workload``; ``prefill_first`` 1 for an engine that prefills waiting
    prompts before decoding (the loop runs in lockstep, module docstring), else 0."""

    isl: Any
    osl: Any
    concurrency: Any
    decode_workers: Any = 1.0
    prefill_workers: Any = 0.0
    decode_cap: Any = 0.0
    prefill_cap: Any = 0.0
    token_budget: Any = 8192.0
    draft_tokens: Any = 0.0
    accepted: Any = 0.0
    prefill_first: Any = 0.0

    def __post_init__(self):
        v = _host_values(self)
        if v is None:
            return
        for f in ("isl", "osl", "concurrency", "decode_workers", "token_budget"):
            _require("Benchmark", v, f, np.isfinite(v[f]) & (v[f] >= 1), "must be >= 1")
        for f in ("prefill_workers", "decode_cap", "prefill_cap"):
            _require("Benchmark", v, f, np.isfinite(v[f]) & (v[f] >= 0), "must be >= 0 (0: the default)")
        _require_speculation("Benchmark", v)
        _require("Benchmark", v, "prefill_first", (v["prefill_first"] == 0) | (v["prefill_first"] == 1), "must be 0 or 1")


@pytree_spec
class Served:
    """One benchmark's prediction: ``tpot`` and ``ttft`` (s; inf where infeasible); ``batch``
    requests in each decode replica's running batch; ``throughput_per_gpu`` output tokens/s per GPU
    over every GPU of the deployment; ``tokens_per_s_per_user`` ``1/tpot`` × tokens per step;
    ``t_prefill`` (s) the request's own prefill (prefill-first: the lockstep wave's mean);
    ``queue_wait`` and ``admission_wait`` (s); ``utilisation`` of the prefill capacity;
    ``wave_wait`` (s) the start-up wave's mean wait (before ``warmup_share``); ``kv_transfer_time``
    (s, 0 aggregated); ``feasible``; ``step`` the decode replica's ``StepCosts``."""

    tpot: Any
    ttft: Any
    batch: Any
    throughput_per_gpu: Any
    tokens_per_s_per_user: Any
    t_prefill: Any
    queue_wait: Any
    admission_wait: Any
    utilisation: Any
    wave_wait: Any
    kv_transfer_time: Any
    feasible: Any
    step: Any


def kv_transfer_time(m: ModelSpec, hw: HardwareSpec, p_pf: Partition, p_dec: Partition, isl, acc: Accounting):
    """Seconds to hand one prefill pass's KV to the decode pool: every prefill GPU sends its
    ``(b/dp_attn)·kv_bytes_per_sequence_gpu(isl)`` bytes (``b = pp·dp_attn`` prompts per pass) at
    once, over NVLink when both replicas fit in one island, else over its NIC (``collectives.send``);
    not overlapped with the prefill (an upper bound: layer-wise KV streaming hides most of it).

    Llama-3-70B (GQA, BF16 KV) prefilled on TP8 H100 (b = 1), 8k prompt: each GPU holds 8192 tokens
    × 2·1·128 values × 2 B × 80 layers = 335.5 MB; to a decode replica on another node
    (16 GPUs > the 8-GPU island): 5 µs + 335.5 MB / 50 GB/s = 6.716 ms at speed of light.
    """
    per_gpu = p_pf.pp * cost.kv_bytes_per_sequence_gpu(m, p_pf, isl, acc)
    return send(hw, p_pf.gpus_per_replica + p_dec.gpus_per_replica, per_gpu, acc)


def running_batch(n, cap, b_max, budget_limit, floor):
    """Requests in a replica's running batch: ``min(n, cap, B_max, budget_limit)``, at least ``floor``.

    64 clients, cap 256, B_max 100, budget 910, floor 1: 64; 512 clients: 100 (memory-bound).
    """
    xp = namespace(n, cap, b_max, budget_limit)
    return xp.maximum(xp.minimum(xp.minimum(n, xp.where(cap > 0, cap, xp.inf)), xp.minimum(b_max, budget_limit)), floor)


def md1_wait(rho, service):
    """Mean wait in an M/D/1 queue (Pollaczek-Khinchine): ``ρ/(2(1-ρ))·S`` s; inf at ``ρ >= 1``.

    Utilisation 0.5, service 0.2 s: 0.5/(2·0.5)·0.2 = 0.1 s.
    """
    xp = namespace(rho, service)
    safe = xp.minimum(rho, 0.999999)
    return xp.where(rho < 1, safe / (2 * (1 - safe)) * service, xp.inf)


def slot_wait(n, batch, residence):
    """Wait for a running-batch slot, Little's law: ``n`` requests cycling through ``batch`` slots,
    each held ``residence`` s, wait ``max(n/batch - 1, 0)·residence`` s.

    300 clients, 100 slots, 40 s per request: (3 - 1)·40 = 80 s.
    """
    xp = namespace(n, batch, residence)
    return xp.maximum(n / batch - 1, 0.0) * residence


def prefill_steps(batch, active, isl, osl, budget):
    """(prompt tokens of a prefill step ``k``, share ``s`` of the steps that carry one, prompt
    tokens a step can carry ``room``) of a running batch of ``batch`` requests, ``active`` of them
    clients (module docstring: ``room = budget - B``, ``g = clip(1 + B/osl, 1, min(active,
    floor(room/isl)))``, ``k = min(g·isl, room)``, ``s = min(B·isl/(osl·k), 1)``).

    64 requests of 1024/1024 tokens, budget 8192: room 8128, g = 1 + 64/1024 = 1.0625 prompts per
    prefill step (k = 1088 tokens), 64 prompt tokens per step on average: s = 64/1088 = 0.0588.
    """
    xp = namespace(batch, active, isl, osl, budget)
    room = xp.maximum(budget - batch, 1.0)
    prompts = xp.clip(1.0 + batch / osl, 1.0, xp.maximum(xp.minimum(active, xp.floor(room / isl)), 1.0))
    chunk = xp.minimum(prompts * isl, room)
    return chunk, xp.minimum(batch * isl / osl / chunk, 1.0), room


def window_share(share, batch):
    """Share of the steps inside one request's TPOT window that carry prompt tokens: while it
    decodes, the other ``B - 1`` slots each prefill one prompt (its own came before its first
    token), so ``s·(B-1)/B`` of ``prefill_steps``'s share ``s`` of all steps.

    64 requests of 1024/1024 tokens (s = 0.0588): 0.0588·63/64 = 0.0579; one client: 0.
    """
    xp = namespace(share, batch)
    return share * xp.maximum(batch - 1.0, 0.0) / batch


def step_residual(share, t_decode, t_prefill, batch):
    """Mean s a prompt arriving at a random instant waits for a step of the other ``B - 1``
    requests to end (the engine never pre-empts a step; a lone client finds it idle): ``(B-1)/B``
    of the residual life ``E[T²]/(2·E[T])`` of steps that last ``t_prefill`` with probability
    ``share`` and ``t_decode`` otherwise. Not in the discrete-event simulation, which admits at step
    boundaries; there it stands in for the bunching of a closed loop's arrivals that M/D/1 misses
    (without it the TTFT of its five cases of 4 to 96 clients is 8-37 % low).

    A 2 % share of 350 ms prefill steps among 12 ms decode steps, 4 requests: 3/4·(0.98·0.012² +
    0.02·0.35²) / (2·(0.98·0.012 + 0.02·0.35)) = 0.0518 s (for decode steps alone 4.5 ms).
    """
    mean = (1 - share) * t_decode + share * t_prefill
    return (batch - 1) / batch * ((1 - share) * t_decode**2 + share * t_prefill**2) / (2 * mean)


def wave_steps(prompts, isl, room):
    """Mean number of steps, each carrying ``min(prompts·isl, room)`` prompt tokens, until a prompt
    of a start-up wave of ``prompts`` prompts, queued at once, has its first token: one step when
    the whole wave fits in one; else the i-th ends with step ``ceil(i·r)``, ``r = isl/room = P/Q``
    in lowest terms (token counts rounded to integers), whose mean over i is ``(m + r)/2 +
    (Q-1)/(2Q)`` with ``m = prompts·r`` the wave's length in steps: exact when ``prompts`` is a
    multiple of ``Q`` (the rounding-up ``ceil(i·r) - i·r`` then takes each value ``k/Q`` once per
    ``Q`` prompts), else the fractional parts taken as spread evenly.

    64 prompts of 1024 tokens, room 8192 (Q = 8): m = 8, 4.5 steps (they end with steps 1 to 8,
    eight each); 4 prompts of 8192 tokens, room 8192 (Q = 1): 2.5 steps (steps 1 to 4); 64 prompts of
    1024 tokens, room 8128 (Q = 127): 4.5906 steps; 4 prompts of 1024 tokens: one step.
    """
    xp = namespace(prompts, isl, room)
    r = isl / room
    whole = lambda x: xp.round(x).astype(int)  # noqa: E731  (token counts)
    q = whole(room) // xp.maximum(xp.gcd(whole(isl), whole(room)), 1)
    return xp.where(prompts * isl <= room, 1.0, (prompts * r + r) / 2 + (q - 1) / (2 * q))


def lockstep(active, isl, osl, budget, t_decode, t_wave, per_step):
    """(mean s from a round's start to a request's first token, TPOT in s) of a prefill-first engine in
    lockstep (module docstring): the ``active`` prompts of a round are prefilled in ``M =
    ceil(active·isl/budget)`` prefill-only steps of ``t_wave`` s, the i-th ending with step
    ``ceil(i·isl/budget)`` (``wave_steps`` on average), before any decoding; a request's TPOT window
    holds its ``(osl-1)/per_step`` decode steps and the ``M - wave_steps`` wave steps after its own
    first token: ``TPOT = t_decode/per_step + (M - wave_steps)·t_wave/(osl-1)``.

    A single output token has no TPOT window: ``t_decode/per_step`` then.

    64 prompts of 1024 tokens, budget 8192, 0.25 s wave steps, 20 ms decode steps, osl 256, no
    speculation: M = 8, wave_steps = 4.5 (eight prompts end with each step): first token after
    1.125 s; TPOT = 0.020 + 3.5·0.25/255 = 0.0234314 s.
    """
    xp = namespace(active, isl, osl, budget, t_decode, t_wave, per_step)
    mean_steps = wave_steps(active, isl, budget)
    steps = xp.maximum(xp.ceil(active * isl / budget), 1.0)
    after = xp.where(osl > 1, (steps - mean_steps) * t_wave / xp.maximum(osl - 1, 1.0), 0.0)
    return mean_steps * t_wave, t_decode / per_step + after


def own_prefill_time(isl, room, t_decode, t_prefill):
    """s from a prompt's admission to its first token, in steps of a running batch (``t_decode``: a
    step without prompt tokens; ``t_prefill``: the step carrying ``k = min(g·isl, room)`` prompt
    tokens, ``prefill_steps``). A prompt that fits in one step's ``room`` ends with that step; a
    longer one is chunked over ``ceil(isl/room)`` steps that carry ``isl`` prompt tokens in all, the
    prompt part of the time linear in its tokens (chunked attention sums to the whole prompt's):
    ``ceil(isl/room)·t_decode + isl/room·(t_prefill - t_decode)``.

    8192 prompt tokens, room 8188, a 10 ms decode step and a 350 ms full step: two steps, the second
    carrying 4 tokens: 2·0.010 + 8192/8188·0.340 = 0.3602 s (not two full steps, 0.700 s).
    """
    xp = namespace(isl, room, t_decode, t_prefill)
    chunked = xp.ceil(isl / room) * t_decode + isl / room * (t_prefill - t_decode)
    return xp.where(isl > room, chunked, t_prefill)


def prefill_mix(m: ModelSpec, hw: HardwareSpec, p: Partition, wl: Workload, acc: Accounting, active, isl, osl, budget):
    """The two steps a steady aggregated loop alternates between, and how often: (the decode step
    of ``wl.batch`` requests, the prefill step that also carries ``k`` prompt tokens, the share
    ``s`` of prefill steps, ``room``), ``prefill_steps``'s ``k``, ``s`` and ``room``. TPOT is
    ``(1-s)·t_decode + s·t_prefill`` per step. ``wl.batch`` is the running batch (> 0)."""
    chunk, share, room = prefill_steps(wl.batch, active, isl, osl, budget)
    step = cost.decode_point(m, hw, p, wl, acc)
    return step, cost.decode_point(m, hw, p, wl, acc, chunk_tokens=chunk, prompt_len=isl), share, room


def aggregated(m: ModelSpec, hw: HardwareSpec, p: Partition, bench: Benchmark, acc: Accounting) -> Served:
    """Aggregated serving with chunked prefill (module docstring)."""
    xp = namespace(m, hw, p, bench)
    context = bench.isl + bench.osl / 2
    b_max, _ = cost.batch_capacity(m, hw, p, context, acc, bench.draft_tokens)
    n = bench.concurrency / bench.decode_workers
    floor = p.pp * p.dp_attn
    budget = bench.token_budget
    lock = bench.prefill_first > 0  # a prefill-first engine's lockstep: prefill-only passes of up to budget tokens
    # the steady prompt load must fit the steps' budget, unless prompts get passes of their own (lockstep)
    steady_limit = xp.where(lock, xp.inf, budget * bench.osl / (bench.isl + bench.osl))
    batch = running_batch(n, bench.decode_cap, b_max, steady_limit, floor)
    wl = Workload(context=context, batch=batch, draft_tokens=bench.draft_tokens, accepted=bench.accepted)
    active = xp.minimum(n, batch)
    step, own, share, room = prefill_mix(m, hw, p, wl, acc, active, bench.isl, bench.osl, budget)
    wave_chunk = xp.minimum(active * bench.isl, room)  # a start-up wave's step: every prompt at once, up to room
    full = cost.decode_point(m, hw, p, wl, acc, chunk_tokens=wave_chunk, prompt_len=bench.isl)
    # a pass carries min(active, budget/isl) prompts: below one, that share of a prompt's pass; below one per
    # attention group, one each (the busiest rank sets the step)
    pass_prompts = xp.minimum(active, budget / bench.isl)
    wave_pass = cost.prefill_point(m, hw, p, Workload(context=bench.isl, batch=xp.maximum(pass_prompts, floor)), acc)
    ok = step.feasible & own.feasible & (xp.logical_not(lock) | wave_pass.feasible)
    safe = lambda x: xp.where(ok, x, 1.0)
    per_step = 1 + bench.accepted
    t_decode, t_prefill = safe(step.step_time), safe(own.step_time)
    seen = window_share(share, batch)
    t_wave = safe(wave_pass.step_time) * xp.minimum(pass_prompts, 1.0)
    lock_own, lock_tpot = lockstep(active, bench.isl, bench.osl, budget, t_decode, t_wave, per_step)
    tpot = xp.where(lock, lock_tpot, ((1 - seen) * t_decode + seen * t_prefill) / per_step)
    t_own = xp.where(lock, lock_own, own_prefill_time(bench.isl, room, t_decode, t_prefill))
    admission = slot_wait(n, batch, bench.osl * tpot + t_own)
    wave = xp.where(lock, 0.0, xp.maximum(wave_steps(active, bench.isl, room) * safe(full.step_time) - t_own, 0.0))
    rho = batch * bench.isl / bench.osl / room
    queue = xp.where(lock, 0.0, xp.minimum(step_residual(share, t_decode, t_prefill, batch) + md1_wait(rho, t_own), wave))
    ttft = acc.request_overhead + t_own + queue + admission + acc.warmup_share * wave
    # lockstep decodes nothing during its passes: a round of `active` requests lasts their first token plus the rest
    rate = xp.where(lock, active * bench.osl / (t_own + (bench.osl - 1) * tpot), active / tpot)
    return Served(
        tpot=xp.where(ok, tpot, xp.inf),
        ttft=xp.where(ok, ttft, xp.inf),
        batch=batch,
        throughput_per_gpu=xp.where(ok, rate / p.gpus_per_replica, 0.0),
        tokens_per_s_per_user=xp.where(ok, 1 / tpot, 0.0),
        t_prefill=t_own,
        queue_wait=queue,
        admission_wait=admission,
        utilisation=rho,
        wave_wait=wave,
        kv_transfer_time=xp.zeros_like(tpot),
        feasible=ok,
        step=step,
    )


def disaggregated(m: ModelSpec, hw: HardwareSpec, p_dec: Partition, p_pf: Partition, bench: Benchmark, acc: Accounting) -> Served:
    """Disaggregated serving: a prefill pool on ``p_pf`` feeding a decode pool on ``p_dec`` (module docstring)."""
    xp = namespace(m, hw, p_dec, p_pf, bench)
    context = bench.isl + bench.osl / 2
    b_max, _ = cost.batch_capacity(m, hw, p_dec, context, acc, bench.draft_tokens)
    n = bench.concurrency / bench.decode_workers
    batch = running_batch(n, bench.decode_cap, b_max, xp.inf, p_dec.pp * p_dec.dp_attn)
    wl = Workload(context=context, batch=batch, draft_tokens=bench.draft_tokens, accepted=bench.accepted)
    step = cost.decode_point(m, hw, p_dec, wl, acc)
    per_step = 1 + bench.accepted
    floor = p_pf.pp * p_pf.dp_attn
    one = cost.prefill_point(m, hw, p_pf, Workload(context=bench.isl, batch=floor), acc)
    b = xp.maximum(xp.where(bench.prefill_cap > 0, bench.prefill_cap, floor), floor)
    full = cost.prefill_point(m, hw, p_pf, Workload(context=bench.isl, batch=b), acc)
    ok = step.feasible & one.feasible & full.feasible
    safe = lambda x: xp.where(ok, x, 1.0)
    tpot = safe(step.step_time) / per_step
    t_b, t_1 = safe(full.step_time), safe(one.step_time)
    capacity = bench.prefill_workers * b / t_b  # prompts/s
    arrivals = bench.decode_workers * xp.minimum(n, batch) / (bench.osl * tpot)
    rho = arrivals / capacity
    saturated = xp.maximum(bench.concurrency / capacity - bench.osl * tpot - t_1, 0.0)
    queue = xp.where(rho < 1, md1_wait(rho, t_b), saturated)
    t_kv = kv_transfer_time(m, hw, p_pf, p_dec, bench.isl, acc)
    admission = slot_wait(n, batch, bench.osl * tpot)
    gpus = bench.decode_workers * p_dec.gpus_per_replica + bench.prefill_workers * p_pf.gpus_per_replica
    rate = xp.minimum(arrivals, capacity) * bench.osl  # output tokens/s of the deployment
    wave = xp.maximum(bench.concurrency - bench.prefill_workers * b, 0.0) / (2 * capacity)
    ttft = acc.request_overhead + t_1 + queue + t_kv + admission + acc.warmup_share * wave
    return Served(
        tpot=xp.where(ok, tpot, xp.inf),
        ttft=xp.where(ok, ttft, xp.inf),
        batch=batch,
        throughput_per_gpu=xp.where(ok, rate / gpus, 0.0),
        tokens_per_s_per_user=xp.where(ok, 1 / tpot, 0.0),
        t_prefill=one.step_time,
        queue_wait=queue,
        admission_wait=admission,
        utilisation=rho,
        wave_wait=wave,
        kv_transfer_time=t_kv,
        feasible=ok,
        step=step,
    )
