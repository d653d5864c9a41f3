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
from moejax.physics.served import Benchmark, aggregated, disaggregated, md1_wait, running_batch, slot_wait
from moejax.physics.specs import Accounting, SpecError


def test_worked_examples():
    assert running_batch(64.0, 256.0, 100.0, 910.0, 1.0) == 64.0
    assert running_batch(512.0, 256.0, 100.0, 910.0, 1.0) == 100.0
    assert running_batch(512.0, 0.0, 1e4, 910.0, 1.0) == 512.0  # no engine cap
    assert md1_wait(0.5, 0.2) == pytest.approx(0.1, rel=1e-12)
    assert math.isinf(md1_wait(1.0, 0.2))
    assert slot_wait(300.0, 100.0, 40.0) == pytest.approx(80.0, rel=1e-12)
    assert slot_wait(50.0, 100.0, 40.0) == 0.0


def test_benchmark_refuses_bad_values():
    with pytest.raises(SpecError, match="Benchmark.concurrency"):
        Benchmark(isl=1024.0, osl=1024.0, concurrency=0.0)
    with pytest.raises(SpecError, match="Benchmark.accepted"):
        Benchmark(isl=1024.0, osl=1024.0, concurrency=4.0, draft_tokens=1.0, accepted=2.0)


# ------------------------------------------------------------------------------------------------
# the discrete-event simulation

ACC = Accounting(hbm_efficiency=0.8, flops_efficiency=0.6, layer_latency=20e-6, sequence_latency=5e-6)


def _dicts(m, hw, p):
    spec = lambda s: {f.name: float(getattr(s, f.name)) for f in dataclasses.fields(s)  # noqa: E731
                      if not f.metadata.get("static")}
    acc = {**spec(ACC), "expert_traffic": "physical", "roofline": "phase", "integer_batch": True}
    return spec(m), spec(hw), spec(p), acc


def simulate(m, hw, p, clients, isl, osl, budget, cap, rounds):
    """Mean (TPOT, TTFT) of a closed loop of ``clients`` requests, each sending ``rounds`` requests
    one after another, against one replica: at most ``cap`` requests running; every step decodes one
    token of each decoding request and then prefills waiting prompt tokens first-come-first-served
    up to ``budget`` tokens in all; a request's first token comes with the step that ends its
    prefill, its others one per step. Returns the steady-state means (the start-up wave's requests
    left out) and the run's means over every request."""
    model, hwd, part, acc = _dicts(m, hw, p)
    cache = {}

    def step_time(decoding, prompt_tokens, context):
        key = (decoding, prompt_tokens, round(context / 64))
        if key not in cache:
            wl = {"context": max(context, 1.0), "batch": float(max(decoding, p.pp * p.dp_attn))}
            cache[key] = reference_decode(model, hwd, part, wl, acc, chunk_tokens=float(prompt_tokens),
                                          prompt_len=float(isl))["step_time"]
        return cache[key]

    now, waiting, running = 0.0, collections.deque(), []
    left = {c: rounds for c in range(clients)}
    records = []  # (first wave?, ttft, tpot)
    for c in range(clients):
        waiting.append({"client": c, "arrival": 0.0, "prompt": isl, "out": 0, "first": None, "wave": True})
        left[c] -= 1
    while waiting or running:
        while waiting and len(running) < cap:
            running.append(waiting.popleft())
        decoding = [r for r in running if r["prompt"] == 0]
        room, prompt_tokens = budget - len(decoding), 0
        prefilling = []
        for r in running:
            if r["prompt"] > 0 and room > 0:
                take = min(r["prompt"], room)
                r["prompt"] -= take
                room -= take
                prompt_tokens += take
                prefilling.append(r)
        context = np.mean([isl + r["out"] for r in decoding]) if decoding else isl
        now += step_time(len(decoding), prompt_tokens, context)
        done = []
        for r in decoding:
            r["out"] += 1
            if r["out"] == osl:
                done.append(r)
        for r in prefilling:
            if r["prompt"] == 0:
                r["first"], r["out"] = now, 1
        for r in done:
            running.remove(r)
            records.append((r["wave"], r["first"] - r["arrival"], (now - r["first"]) / (osl - 1)))
            if left[r["client"]] > 0:
                left[r["client"]] -= 1
                waiting.append({"client": r["client"], "arrival": now, "prompt": isl, "out": 0, "first": None,
                                "wave": False})
    steady = np.array([(t, f) for w, f, t in records if not w])
    every = np.array([(t, f) for _, f, t in records])
    return steady.mean(axis=0), every.mean(axis=0)


CASES = {  # model, hardware, tp, clients, isl, osl, engine cap
    "llama70b-c32-1k1k": ("llama-3-70b", "h100-sxm", 8, 32, 1024, 256, 0),
    "llama70b-c64-8k1k": ("llama-3-70b", "h100-sxm", 8, 64, 8192, 256, 0),
    "mixtral-c16-2k512": ("mixtral-8x7b", "h100-sxm", 2, 16, 2048, 128, 0),
    "llama70b-c96-cap48": ("llama-3-70b", "h100-sxm", 8, 96, 1024, 128, 48),
}


@pytest.mark.parametrize("case", list(CASES))
def test_agg_matches_simulation(case):
    """Steady-state TPOT within 15 % and TTFT (own clump steps + slot wait) within 20 % of the simulation;
    with ``warmup_share = 1/rounds`` the run's mean TTFT (start-up wave included) within 20 %."""
    name, hw_name, tp, clients, isl, osl, cap = CASES[case]
    m, hw, p = load_model(name), load_hardware(hw_name), Partition(tp=float(tp))
    rounds = 6
    (tpot_sim, ttft_sim), (_, ttft_run) = simulate(m, hw, p, clients, isl, osl, 8192, cap or 10**9, rounds)
    bench = Benchmark(isl=float(isl), osl=float(osl), concurrency=float(clients), decode_cap=float(cap))
    r = jax.jit(aggregated)(m, hw, p, bench, ACC)
    assert float(r.tpot) == pytest.approx(tpot_sim, rel=0.15)
    assert float(r.ttft) == pytest.approx(ttft_sim, rel=0.20)
    run = jax.jit(aggregated)(m, hw, p, bench, dataclasses.replace(ACC, warmup_share=1.0 / rounds))
    assert float(run.ttft) == pytest.approx(ttft_run, rel=0.20)


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
