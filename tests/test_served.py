"""Serving benchmarks (moejax.physics.served): the worked examples, and the steady-state agg model
and its TTFT queueing held to a brute-force discrete-event simulation of a closed loop of requests
with chunked prefill, in plain Python, stepping an engine whose step time is the oracle's mixed
step (moejax.physics.reference) at the step's actual decode count and prompt tokens."""

from __future__ import annotations

import collections
import dataclasses
import math

import jax
import numpy as np
import pytest

from moejax import Partition, load_hardware, load_model
from moejax.physics.reference import reference_decode
from moejax.physics.served import (
    Benchmark,
    aggregated,
    disaggregated,
    lockstep,
    md1_wait,
    own_prefill_time,
    prefill_steps,
    running_batch,
    slot_wait,
    step_residual,
    wave_steps,
    window_share,
)
from moejax.physics.specs import Accounting, SpecError


def test_worked_examples():
    assert running_batch(64.0, 256.0, 100.0, 910.0, 1.0) == 64.0
    assert running_batch(512.0, 256.0, 100.0, 910.0, 1.0) == 100.0
    assert running_batch(512.0, 0.0, 1e4, 910.0, 1.0) == 512.0  # no engine cap
    assert md1_wait(0.5, 0.2) == pytest.approx(0.1, rel=1e-12)
    assert math.isinf(md1_wait(1.0, 0.2))
    assert slot_wait(300.0, 100.0, 40.0) == pytest.approx(80.0, rel=1e-12)
    assert slot_wait(50.0, 100.0, 40.0) == 0.0
    chunk, share, room = prefill_steps(64.0, 64.0, 1024.0, 1024.0, 8192.0)
    assert (float(room), float(chunk)) == (8128.0, 1088.0) and float(share) == pytest.approx(64 / 1088, rel=1e-6)
    assert float(window_share(64 / 1088, 64.0)) == pytest.approx(63 / 1088, rel=1e-12)
    assert float(window_share(0.3, 1.0)) == 0.0  # one client: no other prompt in its TPOT window
    assert float(own_prefill_time(8192.0, 8188.0, 0.010, 0.350)) == pytest.approx(0.02 + 8192 / 8188 * 0.34, rel=1e-6)
    assert float(own_prefill_time(1024.0, 8128.0, 0.010, 0.050)) == 0.050  # fits in one step: that step
    assert float(step_residual(0.02, 0.012, 0.35, 4.0)) == pytest.approx(0.75 * 0.0690597, rel=1e-6)
    assert float(step_residual(0.0, 0.012, 0.35, 4.0)) == pytest.approx(0.0045, rel=1e-12)
    assert float(step_residual(0.3, 0.012, 0.35, 1.0)) == 0.0  # a lone client finds the engine idle
    assert float(wave_steps(64.0, 1024.0, 8192.0)) == 4.5  # eight prompts end with each of steps 1 to 8
    assert float(wave_steps(4.0, 8192.0, 8192.0)) == 2.5  # one prompt per step: steps 1 to 4
    assert float(wave_steps(64.0, 1024.0, 8128.0)) == pytest.approx(4.590551, rel=1e-6)
    assert float(wave_steps(4.0, 1024.0, 8188.0)) == 1.0  # the whole wave in one step
    first, tpot = lockstep(64.0, 1024.0, 256.0, 8192.0, 0.020, 0.25, 1.0)
    assert float(first) == pytest.approx(1.125, rel=1e-12) and float(tpot) == pytest.approx(0.02 + 3.5 * 0.25 / 255, rel=1e-12)
    first, tpot = lockstep(4.0, 1024.0, 256.0, 8192.0, 0.020, 0.25, 1.0)  # one wave step: the decode step alone
    assert (float(first), float(tpot)) == (0.25, 0.020)
    first, tpot = lockstep(1.0, 16384.0, 256.0, 8192.0, 0.020, 0.25, 1.0)  # a prompt of two passes: none after it
    assert (float(first), float(tpot)) == (0.5, 0.020)
    assert float(lockstep(64.0, 1024.0, 1.0, 8192.0, 0.020, 0.25, 1.0)[1]) == 0.020  # one output token: no window


def test_benchmark_refuses_bad_values():
    with pytest.raises(SpecError, match="Benchmark.concurrency"):
        Benchmark(isl=1024.0, osl=1024.0, concurrency=0.0)
    with pytest.raises(SpecError, match="Benchmark.accepted"):
        Benchmark(isl=1024.0, osl=1024.0, concurrency=4.0, draft_tokens=1.0, accepted=2.0)
    with pytest.raises(SpecError, match="Benchmark.prefill_first"):
        Benchmark(isl=1024.0, osl=1024.0, concurrency=4.0, prefill_first=0.5)


# ------------------------------------------------------------------------------------------------
# the discrete-event simulation

ACC = Accounting(hbm_efficiency=0.8, flops_efficiency=0.6, layer_latency=20e-6, sequence_latency=5e-6)


def _dicts(m, hw, p):
    def spec(s):
        return {f.name: float(getattr(s, f.name)) for f in dataclasses.fields(s) if not f.metadata.get("static")}

    acc = {**spec(ACC), "expert_traffic": "physical", "roofline": "phase", "integer_batch": True}
    return spec(m), spec(hw), spec(p), acc


def simulate(m, hw, p, clients, isl, osl, budget, cap, rounds, spread, seed=0, prefill_first=False, jitter=0.0):
    """Mean (TPOT, TTFT) of a closed loop of ``clients`` requests, each client sending ``rounds``
    requests one after another, against one replica: at most ``cap`` requests running; every step
    decodes one token of each decoding request, then prefills waiting prompt tokens first come first
    served up to ``budget`` tokens in all (``prefill_first``: a step with prompt tokens waiting
    prefills up to ``budget`` of them and decodes nothing, SGLang's scheduling); a request's first
    token comes with the step that ends its prefill, the others one per step. ``spread``: the
    clients' first requests arrive at random phases over one request's decode time (steady state);
    else all at once (the start-up wave). ``jitter``: each later request arrives up to that many s
    after its client's previous one ended (uniform).
    Returns the means over the requests between each client's first and last (the steady state:
    the last ones run while the loop drains), and over the first ones."""
    model, hwd, part, acc = _dicts(m, hw, p)
    cache = {}

    def step_time(decoding, prompt_tokens, context):
        key = (decoding, prompt_tokens, round(context / 64))
        if key not in cache:
            wl = {"context": max(context, 1.0), "batch": float(max(decoding, p.pp * p.dp_attn))}
            cache[key] = reference_decode(model, hwd, part, wl, acc, chunk_tokens=float(prompt_tokens), prompt_len=float(isl))[
                "step_time"
            ]
        return cache[key]

    cycle = osl * step_time(min(clients, cap), 0, isl + osl / 2)
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0.0, cycle, clients) if spread else np.zeros(clients)
    arrivals = sorted((float(t), c) for c, t in enumerate(starts))  # (time, client), not yet arrived
    now, waiting, running, left, records = 0.0, collections.deque(), [], dict.fromkeys(range(clients), rounds), []
    while arrivals or waiting or running:
        if not (waiting or running):
            now = max(now, arrivals[0][0])
        while arrivals and arrivals[0][0] <= now:
            t, c = arrivals.pop(0)
            left[c] -= 1
            waiting.append({"client": c, "arrival": t, "prompt": isl, "out": 0, "round": rounds - 1 - left[c]})
        while waiting and len(running) < cap:
            running.append(waiting.popleft())
        decoding = [r for r in running if r["prompt"] == 0]
        if prefill_first and any(r["prompt"] > 0 for r in running):
            decoding = []
        room, prompt_tokens, prefilling = budget - len(decoding), 0, []
        for r in running:
            if r["prompt"] > 0 and room > 0:
                take = min(r["prompt"], room)
                r["prompt"], room, prompt_tokens = r["prompt"] - take, room - take, prompt_tokens + take
                prefilling.append(r)
        context = np.mean([isl + r["out"] for r in decoding]) if decoding else isl
        now += step_time(len(decoding), prompt_tokens, context)
        for r in decoding:
            r["out"] += 1
            if r["out"] == osl:
                running.remove(r)
                records.append((r["round"], r["ttft"], (now - r["ttft_at"]) / (osl - 1)))
                if left[r["client"]] > 0:
                    arrivals.append((now + float(rng.uniform(0.0, jitter)), r["client"]))
                    arrivals.sort()
        for r in prefilling:
            if r["prompt"] == 0:
                r["ttft_at"], r["ttft"], r["out"] = now, now - r["arrival"], 1
    steady = np.array([(t, f) for k, f, t in records if 0 < k < rounds - 1]).reshape(-1, 2)
    first = np.array([(t, f) for k, f, t in records if k == 0])
    return (steady.mean(axis=0) if len(steady) else np.full(2, np.nan)), first.mean(axis=0)


CASES = {  # model, hardware, tp, clients, isl, osl, engine cap
    "llama70b-c32-1k1k": ("llama-3-70b", "h100-sxm", 8, 32, 1024, 256, 0),
    "llama70b-c64-8k1k": ("llama-3-70b", "h100-sxm", 8, 64, 8192, 256, 0),
    "llama70b-c4-8k1k": ("llama-3-70b", "h100-sxm", 8, 4, 8192, 256, 0),  # a prompt longer than a step's room
    "llama70b-c1-1k": ("llama-3-70b", "h100-sxm", 8, 1, 1024, 256, 0),  # a lone client: no wave, no wait
    "llama70b-c2-1k": ("llama-3-70b", "h100-sxm", 8, 2, 1024, 256, 0),
    "mixtral-c16-2k512": ("mixtral-8x7b", "h100-sxm", 2, 16, 2048, 128, 0),
    "llama70b-c96-cap48": ("llama-3-70b", "h100-sxm", 8, 96, 1024, 128, 48),
}


@pytest.mark.parametrize("case", list(CASES))
def test_agg_matches_simulation(case):
    """Clients at random phases: TPOT within 10 % and TTFT (own prefill steps + M/D/1 wait + slot
    wait) within 25 % of the simulation. All clients at once: the first requests' mean TTFT is
    the start-up wave's (``warmup_share = 1``), within 10 %."""
    name, hw_name, tp, clients, isl, osl, cap = CASES[case]
    m, hw, p = load_model(name), load_hardware(hw_name), Partition(tp=float(tp))
    bench = Benchmark(isl=float(isl), osl=float(osl), concurrency=float(clients), decode_cap=float(cap))
    (tpot_sim, ttft_sim), _ = simulate(m, hw, p, clients, isl, osl, 8192, cap or 10**9, 5, spread=True)
    r = jax.jit(aggregated)(m, hw, p, bench, ACC)
    assert float(r.tpot) == pytest.approx(tpot_sim, rel=0.10)
    assert float(r.ttft) == pytest.approx(ttft_sim, rel=0.25)
    _, (_, wave_sim) = simulate(m, hw, p, min(clients, cap or clients), isl, osl, 8192, cap or 10**9, 1, spread=False)
    wave = jax.jit(aggregated)(
        m,
        hw,
        p,
        dataclasses.replace(bench, concurrency=float(min(clients, cap or clients))),
        dataclasses.replace(ACC, warmup_share=1.0),
    )
    assert float(wave.t_prefill + wave.wave_wait) == pytest.approx(wave_sim, rel=0.10)


LOCKSTEP = {  # CASES entries, or (model, hardware, tp, clients, isl, osl); jitter in decode steps
    "llama70b-c32-1k1k": 0,
    "llama70b-c64-8k1k": 0,
    "mixtral-c16-2k512": 0,
    "llama70b-c4-8k1k": 0,  # a prompt exactly one pass long
    "llama70b-c1-16k": 0,  # a prompt of two passes
    "llama70b-c32-1k1k-jitter": 3,  # clients resending up to three decode steps late
}


@pytest.mark.parametrize("case", list(LOCKSTEP))
def test_prefill_first_lockstep_matches_simulation(case):
    """A prefill-first engine (SGLang's scheduling), clients starting together: the loop stays in
    lockstep (also when each client resends up to three decode steps late), and every later round's
    mean TTFT and TPOT are ``lockstep``'s, within 10 %."""
    extra = {"llama70b-c1-16k": ("llama-3-70b", "h100-sxm", 8, 1, 16384, 256, 0)}
    name, hw_name, tp, clients, isl, osl, _ = CASES.get(case.removesuffix("-jitter")) or extra[case]
    m, hw, p = load_model(name), load_hardware(hw_name), Partition(tp=float(tp))
    bench = Benchmark(isl=float(isl), osl=float(osl), concurrency=float(clients), prefill_first=1.0)
    jitter = LOCKSTEP[case] * float(jax.jit(aggregated)(m, hw, p, bench, ACC).step.step_time)
    (tpot_sim, ttft_sim), _ = simulate(
        m, hw, p, clients, isl, osl, 8192, 10**9, 4, spread=False, prefill_first=True, jitter=jitter
    )
    r = jax.jit(aggregated)(m, hw, p, bench, ACC)
    assert float(r.tpot) == pytest.approx(tpot_sim, rel=0.10)
    assert float(r.ttft) == pytest.approx(ttft_sim, rel=0.10)
    steady = jax.jit(aggregated)(m, hw, p, dataclasses.replace(bench, prefill_first=0.0), ACC)
    if clients >= 16:
        assert float(r.ttft) > 2 * float(steady.ttft)  # every round pays the wave that random phases avoid


def test_disagg_tpot_is_the_pure_decode_step():
    """Disaggregated: TPOT is the decode pool's step at its running batch (no prompt tokens), TTFT
    at least the prefill pass plus the KV hand-off; a slower prefill pool only lengthens TTFT."""
    m, hw, p = load_model("llama-3-70b"), load_hardware("h100-sxm"), Partition(tp=8.0)
    bench = Benchmark(isl=4096.0, osl=512.0, concurrency=64.0, prefill_workers=1.0)
    r = jax.jit(disaggregated)(m, hw, p, p, bench, ACC)
    wl = {"context": 4096 + 256, "batch": 64.0}
    ref = reference_decode(*_dicts(m, hw, p)[:3], wl, _dicts(m, hw, p)[3])
    assert float(r.tpot) == pytest.approx(ref["step_time"], rel=1e-6)
    assert float(r.ttft) >= float(r.t_prefill) + float(r.kv_transfer_time)
    slow = jax.jit(disaggregated)(m, hw, p, Partition(tp=4.0), bench, ACC)
    assert float(slow.tpot) == pytest.approx(float(r.tpot), rel=1e-12) and float(slow.ttft) > float(r.ttft)
