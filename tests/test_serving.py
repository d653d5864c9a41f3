"""ISL/OSL serving: TTFT, chunked vs disaggregated prefill, and economics (moejax.physics.serving).

Worked examples are checked to their hand arithmetic; model-level results are held to the
prefill/decode model they are built from (tolerances stated; tests run in float64)."""

import math

import jax
import numpy as np
import pytest

from moejax import Partition, load_hardware, load_model
from moejax.catalogue import available, hardware_economics, hardware_entry, load_accounting
from moejax.engine.grid import stack
from moejax.physics import arch
from moejax.physics.cost import decode_point, prefill_point
from moejax.physics.serving import (
    ServingWorkload,
    aggregated_point,
    chunked_prefill,
    cost_per_mtok,
    decode_context,
    disaggregated_point,
    disaggregated_rate,
    joules_per_token,
    kv_transfer_time,
    pool_share,
    prefill_rate_per_gpu,
)
from moejax.physics.specs import Accounting, SpecError, Workload

REL = dict(rel=1e-12)


@pytest.fixture(scope="module")
def setup():
    return load_model("mixtral-8x7b"), load_hardware("h100-sxm"), load_accounting("realistic")


TP8EP8 = Partition(tp=8., ep=8.)


def test_decode_context_example():
    assert float(decode_context(1024.0, 1024.0)) == 1536.0


def test_chunked_prefill_example():
    rate, t_step, ttft = (float(x) for x in chunked_prefill(1000.0, 0.05, 0.2, 1.0, 2000.0, 200.0, 0.0))
    assert rate == pytest.approx(500.0, **REL)  # 1/(1 ms + 0.2 s/200)
    assert t_step == pytest.approx(0.1, **REL)
    assert ttft == pytest.approx(0.3, **REL)
    assert float(chunked_prefill(1000.0, 0.05, 0.2, 1.0, 2000.0, 200.0, 512.0)[2]) == pytest.approx(0.2 + 4 * 0.1, **REL)


def test_pool_share_and_rate_examples():
    assert float(pool_share(1.0, 3.0)) == 0.25
    rate, share = (float(x) for x in disaggregated_rate(2000.0, 1000.0, 0.125, 1.0, 8.0))
    assert share == pytest.approx(2 / 3, **REL)
    assert rate == pytest.approx(2000 / 3, **REL) == pytest.approx(1000 / (1 / 2 + 1 / 1), **REL)


def test_kv_transfer_example():
    """Llama-3-70B TP8 H100, 8k prompt, speed of light: 8192·2·1·128·2·80 B per GPU over the NIC."""
    m, hw = load_model("llama-3-70b"), load_hardware("h100-sxm")
    per_gpu = 8192 * 2 * 1 * 128 * 2 * 80
    assert per_gpu == 335_544_320
    t = float(kv_transfer_time(m, hw, Partition(tp=8.), Partition(tp=8.), 8192.0, Accounting()))
    assert t == pytest.approx(5e-6 + per_gpu / 50e9, **REL)
    assert t == pytest.approx(6.716e-3, rel=1e-3)
    # both replicas inside one 8-GPU island: NVLink (2 µs + bytes / 450 GB/s)
    small = float(kv_transfer_time(m, hw, Partition(tp=4.), Partition(tp=4.), 8192.0, Accounting()))
    assert small == pytest.approx(2e-6 + 8192 * 2 * 2 * 128 * 2 * 80 / 450e9, **REL)


def test_ttft_equals_prefill_model(setup):
    """Aggregated: TTFT = prefill step (1 prompt, TP/EP-only partition) + one interleaved step;
    disaggregated: TTFT = prefill step + KV transfer. Against prefill_point/decode_point called directly."""
    m, hw, acc = setup
    swl = ServingWorkload(isl=2048.0, osl=512.0)
    pf = prefill_point(m, hw, TP8EP8, Workload(context=2048.0, batch=1.0), acc)
    dec = decode_point(m, hw, TP8EP8, Workload(context=2048.0 + 256.0), acc)
    agg = aggregated_point(m, hw, TP8EP8, swl, acc)
    t_agg = float(dec.step_time) * (1 + float(dec.throughput) * float(pf.step_time) / 512.0)
    assert float(agg.prefill_time) == float(pf.step_time)
    assert float(agg.ttft) == pytest.approx(float(pf.step_time) + t_agg, **REL)
    assert float(agg.throughput_per_gpu) == pytest.approx(float(dec.throughput_per_gpu) * float(dec.step_time) / t_agg, **REL)
    dis = disaggregated_point(m, hw, TP8EP8, Partition(tp=4., ep=4.), swl, acc)
    pf4 = prefill_point(m, hw, Partition(tp=4., ep=4.), Workload(context=2048.0, batch=1.0), acc)
    t_kv = float(kv_transfer_time(m, hw, Partition(tp=4., ep=4.), TP8EP8, 2048.0, acc))
    assert float(dis.ttft) == pytest.approx(float(pf4.step_time) + t_kv, **REL)
    assert float(dis.tokens_per_s_per_user) == float(dec.tokens_per_s_per_user)


def test_pipeline_prefill_runs_pp_prompts(setup):
    """On pp = 2 a prefill pass carries 2 prompts (one per microbatch): TTFT's prefill term is that pass."""
    m, hw, acc = setup
    p = Partition(tp=4., ep=4., pp=2.)
    agg = aggregated_point(m, hw, p, ServingWorkload(isl=1024.0, osl=256.0), acc)
    pf = prefill_point(m, hw, p, Workload(context=1024.0, batch=2.0), acc)
    assert bool(agg.feasible) and float(agg.prefill_time) == float(pf.step_time)


def test_disaggregated_pools_balance(setup):
    """The prefill pool's prompts/s equal the decode pool's requests/s: s·r_pf = (1-s)·r_dec."""
    m, hw, acc = setup
    swl = ServingWorkload(isl=4096.0, osl=1024.0)
    p_pf = Partition(tp=2., ep=2.)
    dis = disaggregated_point(m, hw, TP8EP8, p_pf, swl, acc)
    s = float(dis.prefill_share)
    r_dec = float(dis.decode.throughput_per_gpu) / 1024.0
    r_pf = 1.0 / (float(dis.prefill_time) * 2.0)
    assert 0 < s < 1
    assert s * r_pf == pytest.approx((1 - s) * r_dec, rel=1e-12)
    assert float(dis.throughput_per_gpu) == pytest.approx((1 - s) * float(dis.decode.throughput_per_gpu), **REL)
    assert float(prefill_rate_per_gpu(m, hw, p_pf, 4096.0, acc)) == pytest.approx(r_pf, **REL)


def test_same_partition_rates_agree(setup):
    """Prefill is charged in full in both modes, so on one partition the end-to-end rates are equal."""
    m, hw, acc = setup
    swl = ServingWorkload(isl=1024.0, osl=512.0)
    agg = aggregated_point(m, hw, TP8EP8, swl, acc)
    dis = disaggregated_point(m, hw, TP8EP8, TP8EP8, swl, acc)
    assert float(agg.throughput_per_gpu) == pytest.approx(float(dis.throughput_per_gpu), rel=1e-12)
    assert float(agg.tokens_per_s_per_user) < float(dis.tokens_per_s_per_user)  # prefill stalls decode steps


def test_infeasible_is_flagged(setup):
    """A prompt whose KV does not fit: infinite TTFT, zero throughput, not NaN."""
    m, hw, acc = setup
    for r in (aggregated_point(m, hw, Partition(tp=1.), ServingWorkload(isl=1e7, osl=1.0), acc),
              disaggregated_point(m, hw, TP8EP8, Partition(tp=1.), ServingWorkload(isl=1e7, osl=1.0), acc)):
        assert not bool(r.feasible) and math.isinf(float(r.ttft)) and float(r.throughput_per_gpu) == 0.0


def test_vmap_over_partitions_matches_points(setup):
    m, hw, acc = setup
    parts = [Partition(tp=8., ep=8.), Partition(tp=4., ep=2., dp=2.), Partition(tp=2., ep=2., pp=2., dp=2.)]
    swl = ServingWorkload(isl=1024.0, osl=1024.0, batch=16.0, chunk=512.0)
    lifted = jax.jit(jax.vmap(aggregated_point, in_axes=(None, None, 0, None, None)))(m, hw, stack(parts), swl, acc)
    for i, p in enumerate(parts):
        one = aggregated_point(m, hw, p, swl, acc)
        assert float(lifted.ttft[i]) == pytest.approx(float(one.ttft), rel=1e-9)
        assert float(lifted.throughput_per_gpu[i]) == pytest.approx(float(one.throughput_per_gpu), rel=1e-9)


def test_serving_workload_rejects_bad_lengths():
    for kw in ({"isl": 0.0, "osl": 10.0}, {"isl": 10.0, "osl": -1.0}):
        with pytest.raises(SpecError, match="must be >= 1 token"):
            ServingWorkload(**kw)


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


@pytest.mark.parametrize("fields,message", [
    ({"draft_tokens": 2.0, "accepted": 3.0}, "accepted = 3.0 is invalid: must be in [0, draft_tokens]"),
    ({"draft_tokens": 1.5}, "draft_tokens = 1.5 is invalid: must be an integer >= 0"),
])
def test_speculation_fields_refused_alike_in_both_workloads(fields, message):
    """``Workload`` and ``ServingWorkload`` check their speculative-decoding fields by one rule."""
    from moejax.physics.serving import ServingWorkload
    from moejax.physics.specs import SpecError, Workload

    for make, name in ((lambda: Workload(context=1024.0, **fields), "Workload"),
                       (lambda: ServingWorkload(isl=1024.0, osl=128.0, **fields), "ServingWorkload")):
        with pytest.raises(SpecError, match=f"^{name}.{message}".replace("[", r"\[").replace("]", r"\]")):
            make()
