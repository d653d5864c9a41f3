"""ISL/OSL serving in steady state: aggregated (chunked prefill) and disaggregated planners over
the closed-loop physics of ``served.py``, and economics (moejax.physics.serving).

Worked examples are checked to their hand arithmetic; model-level results are held to the
prefill/decode model they are built from (tolerances stated; tests run in float64)."""

import math

import jax
import numpy as np
import pytest

from moejax import Partition, load_hardware, load_model
from moejax.catalogue import available, hardware_economics, hardware_entry, load_accounting
from moejax.engine.grid import stack
from moejax.physics import arch, served
from moejax.physics.cost import decode_point, prefill_point
from moejax.physics.serving import (
    ServingWorkload,
    aggregated_point,
    cost_per_mtok,
    decode_context,
    disaggregated_point,
    joules_per_token,
    kv_transfer_time,
    pool_utilisation,
    prefill_capacity_per_gpu,
    prefill_rate_per_gpu,
    utilisation_for_wait,
)
from moejax.physics.specs import Accounting, SpecError, Workload, replace

REL = dict(rel=1e-12)


@pytest.fixture(scope="module")
def setup():
    return load_model("mixtral-8x7b"), load_hardware("h100-sxm"), load_accounting("realistic")


TP8EP8 = Partition(tp=8.0, ep=8.0)


def test_decode_context_example():
    assert float(decode_context(1024.0, 1024.0)) == 1536.0


def test_utilisation_for_wait_example_inverts_md1():
    assert float(utilisation_for_wait(0.1, 0.2)) == pytest.approx(0.5, **REL)
    assert float(served.md1_wait(0.5, 0.2)) == pytest.approx(0.1, **REL)
    for rho in (0.1, 0.5, 0.9, 0.99):
        assert float(utilisation_for_wait(served.md1_wait(rho, 0.3), 0.3)) == pytest.approx(rho, rel=1e-12)
    assert float(utilisation_for_wait(-1.0, 0.2)) == 0.0


def test_kv_transfer_example():
    """Llama-3-70B TP8 H100, 8k prompt, speed of light: 8192·2·1·128·2·80 B per GPU over the NIC."""
    m, hw = load_model("llama-3-70b"), load_hardware("h100-sxm")
    per_gpu = 8192 * 2 * 1 * 128 * 2 * 80
    assert per_gpu == 335_544_320
    t = float(kv_transfer_time(m, hw, Partition(tp=8.0), Partition(tp=8.0), 8192.0, Accounting()))
    assert t == pytest.approx(5e-6 + per_gpu / 50e9, **REL)
    assert t == pytest.approx(6.716e-3, rel=1e-3)
    # both replicas inside one 8-GPU island: NVLink (2 µs + bytes / 450 GB/s)
    small = float(kv_transfer_time(m, hw, Partition(tp=4.0), Partition(tp=4.0), 8192.0, Accounting()))
    assert small == pytest.approx(2e-6 + 8192 * 2 * 2 * 128 * 2 * 80 / 450e9, **REL)


def test_aggregated_is_the_closed_loop_at_its_batch(setup):
    """``aggregated_point`` = ``served.aggregated`` with ``concurrency = batch``, a budget of
    ``batch + chunk`` and no start-up wave; its decode is the pure decode step at the batch."""
    m, hw, acc = setup
    acc = replace(acc, request_overhead=0.05, warmup_share=0.3)
    swl = ServingWorkload(isl=2048.0, osl=512.0, batch=16.0, chunk=512.0)
    agg = aggregated_point(m, hw, TP8EP8, swl, acc)
    want = served.aggregated(
        m,
        hw,
        TP8EP8,
        served.Benchmark(isl=2048.0, osl=512.0, concurrency=16.0, token_budget=16.0 + 512.0),
        replace(acc, warmup_share=0.0),
    )
    assert bool(agg.feasible)
    for name in ("tpot", "ttft", "throughput_per_gpu", "tokens_per_s_per_user"):
        assert float(getattr(agg, name)) == pytest.approx(float(getattr(want, name)), **REL)
    dec = decode_point(m, hw, TP8EP8, Workload(context=2048.0 + 256.0, batch=16.0), acc)
    assert float(agg.decode.step_time) == pytest.approx(float(dec.step_time), **REL)
    # prompt chunks ride on some steps: TPOT is longer than the decode step, throughput lower
    assert float(agg.tpot) > float(dec.step_time) and float(agg.throughput_per_gpu) < float(dec.throughput_per_gpu)
    assert float(agg.ttft) >= 0.05 + float(agg.prefill_time)  # the request's overhead and its own chunks' steps


def test_aggregated_batch_the_chunk_cannot_sustain_is_infeasible(setup):
    """16 requests of 2048/64 need 16·2048/64 = 512 prompt tokens per step on average: a 256-token
    chunk cannot carry them (infeasible), a 1024-token one can; B_max (batch 0) never exceeds it."""
    m, hw, acc = setup
    assert not bool(aggregated_point(m, hw, TP8EP8, ServingWorkload(isl=2048.0, osl=64.0, batch=16.0, chunk=256.0), acc).feasible)
    assert bool(aggregated_point(m, hw, TP8EP8, ServingWorkload(isl=2048.0, osl=64.0, batch=16.0, chunk=1024.0), acc).feasible)
    whole = aggregated_point(m, hw, TP8EP8, ServingWorkload(isl=2048.0, osl=64.0), acc)  # B_max, whole prompts
    b_max = float(decode_point(m, hw, TP8EP8, Workload(context=2048.0 + 32.0), acc).batch)
    assert bool(whole.feasible) and float(whole.batch) == b_max


def test_disaggregated_pool_runs_at_its_utilisation(setup):
    """Pools sized so the prefill pool's utilisation is ``prefill_utilisation``: the decode
    replica's prompts/s = ρ × the pool's capacity; TTFT = overhead + pass + M/D/1 wait + KV
    hand-off; TPOT the pure decode step; the end-to-end rate over both pools' GPUs."""
    m, hw, acc = setup
    acc = replace(acc, request_overhead=0.05)
    p_pf = Partition(tp=2.0, ep=2.0)
    swl = ServingWorkload(isl=4096.0, osl=1024.0, batch=32.0, prefill_utilisation=0.6)
    dis = disaggregated_point(m, hw, TP8EP8, p_pf, swl, acc)
    dec = decode_point(m, hw, TP8EP8, Workload(context=4096.0 + 512.0, batch=32.0), acc)
    t_pf = float(prefill_point(m, hw, p_pf, Workload(context=4096.0, batch=1.0), acc).step_time)
    t_kv = float(kv_transfer_time(m, hw, p_pf, TP8EP8, 4096.0, acc))
    assert float(dis.tpot) == pytest.approx(float(dec.step_time), **REL)
    assert float(dis.ttft) == pytest.approx(0.05 + t_pf + float(served.md1_wait(0.6, t_pf)) + t_kv, **REL)
    s = float(dis.prefill_share)
    arrivals = 32.0 / (1024.0 * float(dec.step_time))  # prompts/s of one decode replica (8 GPUs)
    pf_gpus = 8.0 * s / (1 - s)
    assert arrivals == pytest.approx(0.6 * pf_gpus / (2.0 * t_pf), rel=1e-12)  # ρ × capacity (b = 1 per 2-GPU replica)
    assert float(dis.throughput_per_gpu) == pytest.approx(32.0 / float(dec.step_time) / (8.0 + pf_gpus), **REL)
    cap = float(prefill_capacity_per_gpu(m, hw, TP8EP8, p_pf, swl, acc))
    assert cap == pytest.approx(0.6 * float(prefill_rate_per_gpu(m, hw, p_pf, 4096.0, acc)), **REL)


def test_disaggregated_ttft_limit_sets_the_utilisation(setup):
    """With ``ttft_max`` the pool runs at the utilisation whose wait fills the TTFT left: TTFT
    equals the limit; a tighter limit needs more prefill GPUs; one below the pass is infeasible. No
    request overhead: the limits are multiples of the pass (the fitted 0.1 s would exceed them)."""
    m, hw, acc = setup
    acc = replace(acc, request_overhead=0.0)
    swl = ServingWorkload(isl=2048.0, osl=256.0, batch=16.0)
    p_pf = Partition(tp=4.0, ep=4.0)
    t_pf = float(prefill_point(m, hw, p_pf, Workload(context=2048.0, batch=1.0), acc).step_time)
    loose, tight = (disaggregated_point(m, hw, TP8EP8, p_pf, swl, acc, ttft_max=t_pf * k) for k in (4.0, 1.5))
    for r, k in ((loose, 4.0), (tight, 1.5)):
        assert bool(r.feasible) and float(r.ttft) == pytest.approx(t_pf * k, rel=1e-9)
    assert float(tight.prefill_share) > float(loose.prefill_share)
    rho, _, ok = pool_utilisation(m, hw, TP8EP8, p_pf, swl, acc, t_pf * 1.5)
    assert bool(ok) and 0 < float(rho) < 1
    assert not bool(disaggregated_point(m, hw, TP8EP8, p_pf, swl, acc, ttft_max=0.5 * t_pf).feasible)


def test_pipeline_prefill_runs_pp_prompts(setup):
    """On pp = 2 a prefill pass carries 2 prompts (one per microbatch): the disaggregated TTFT's
    prefill term is that pass."""
    m, hw, acc = setup
    p = Partition(tp=4.0, ep=4.0, pp=2.0)
    dis = disaggregated_point(m, hw, TP8EP8, p, ServingWorkload(isl=1024.0, osl=256.0, batch=8.0), acc)
    pf = prefill_point(m, hw, p, Workload(context=1024.0, batch=2.0), acc)
    assert bool(dis.feasible) and float(dis.prefill_time) == float(pf.step_time)


def test_infeasible_is_flagged(setup):
    """A prompt whose KV does not fit: infinite TTFT, zero throughput, not NaN."""
    m, hw, acc = setup
    for r in (
        aggregated_point(m, hw, Partition(tp=1.0), ServingWorkload(isl=1e7, osl=1.0), acc),
        disaggregated_point(m, hw, TP8EP8, Partition(tp=1.0), ServingWorkload(isl=1e7, osl=1.0), acc),
    ):
        assert not bool(r.feasible) and math.isinf(float(r.ttft)) and float(r.throughput_per_gpu) == 0.0


def test_vmap_over_partitions_matches_points(setup):
    m, hw, acc = setup
    parts = [Partition(tp=8.0, ep=8.0), Partition(tp=4.0, ep=2.0, dp=2.0), Partition(tp=2.0, ep=2.0, pp=2.0, dp=2.0)]
    swl = ServingWorkload(isl=1024.0, osl=1024.0, batch=16.0, chunk=1024.0)
    lifted = jax.jit(jax.vmap(aggregated_point, in_axes=(None, None, 0, None, None)))(m, hw, stack(parts), swl, acc)
    for i, p in enumerate(parts):
        one = aggregated_point(m, hw, p, swl, acc)
        assert bool(one.feasible) and float(lifted.ttft[i]) == pytest.approx(float(one.ttft), rel=1e-9)
        assert float(lifted.throughput_per_gpu[i]) == pytest.approx(float(one.throughput_per_gpu), rel=1e-9)


def test_serving_workload_rejects_bad_lengths():
    for kw in ({"isl": 0.0, "osl": 10.0}, {"isl": 10.0, "osl": -1.0}):
        with pytest.raises(SpecError, match="must be >= 1 token"):
            ServingWorkload(**kw)
    for u in (0.0, 1.0, float("nan")):
        with pytest.raises(SpecError, match="prefill_utilisation .* must be in \\(0, 1\\)"):
            ServingWorkload(isl=10.0, osl=10.0, prefill_utilisation=u)


def test_cost_per_mtok_exact():
    for price, tps in ((2.99, 1000.0), (10.5, 3.7), (1.79, 12345.678)):
        assert cost_per_mtok(price, tps) == price / 3600 / tps * 1e6
    assert cost_per_mtok(2.99, 1000.0) == pytest.approx(0.83056, rel=1e-4)
    arr = np.array([1.0, 2.0, 4.0])
    np.testing.assert_array_equal(cost_per_mtok(2.99, arr), 2.99 / 3600 / arr * 1e6)


def test_joules_per_token():
    assert joules_per_token(700.0, 1000.0) == 0.7
    assert joules_per_token(1000.0, 4000.0) == 1000.0 / 4000.0


@pytest.mark.parametrize("name", available("hardware"))
def test_hardware_economics_carry_sources(name):
    entry, econ = hardware_entry(name), hardware_economics(name)
    assert entry["price_per_gpu_hour"]["source"] and entry["board_power"]["source"]
    assert econ.price_per_gpu_hour == entry["price_per_gpu_hour"]["value"] > 0
    assert econ.board_power == entry["board_power"]["value"] > 0


def test_hardware_economics_overrides():
    econ = hardware_economics("h100-sxm", price_per_gpu_hour=2.0, board_power=None)
    assert econ.price_per_gpu_hour == 2.0 and econ.board_power == 700.0 and econ.sources[0] == "override"
    with pytest.raises(SpecError, match="price_per_gpu_hour = -1.0 is invalid"):
        hardware_economics("h100-sxm", price_per_gpu_hour=-1.0)
    with pytest.raises(SpecError, match="not a known field"):
        hardware_economics("h100-sxm", price=1.0)


def test_kv_bytes_match_arch():
    """Independent check of the KV transfer's payload: one TP1 GPU holds the whole model's KV."""
    m = load_model("llama-3-70b")
    t = float(
        kv_transfer_time(m, load_hardware("h100-sxm"), Partition(tp=1.0), Partition(tp=4.0), 1000.0, Accounting())
    )  # 5 GPUs: one island
    assert t == pytest.approx(2e-6 + 1000 * float(arch.kv_bytes_per_token(m)) / 450e9, **REL)


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"draft_tokens": 2.0, "accepted": 3.0}, "accepted = 3.0 is invalid: must be in [0, draft_tokens]"),
        ({"draft_tokens": 1.5}, "draft_tokens = 1.5 is invalid: must be an integer >= 0"),
    ],
)
def test_speculation_fields_refused_alike_in_both_workloads(fields, message):
    """``Workload`` and ``ServingWorkload`` check their speculative-decoding fields by one rule."""
    from moejax.physics.serving import ServingWorkload
    from moejax.physics.specs import SpecError, Workload

    for make, name in (
        (lambda: Workload(context=1024.0, **fields), "Workload"),
        (lambda: ServingWorkload(isl=1024.0, osl=128.0, **fields), "ServingWorkload"),
    ):
        with pytest.raises(SpecError, match=f"^{name}.{message}".replace("[", r"\[").replace("]", r"\]")):
            make()
