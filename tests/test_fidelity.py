"""The fidelity corrections of the cost model, one test each (docs/cost-model.md; tolerances stated).

Speed of light (``Accounting()``) unless a test says otherwise, so the numbers are the page's own.
"""

import dataclasses

import pytest

import moejax
from moejax import Accounting, Partition, Workload, decode_point, load_hardware, load_model, prefill_point
from moejax.catalogue import DTYPE_BYTES, dense_baseline, load_accounting
from moejax.physics import arch
from moejax.physics.collectives import all_reduce
from moejax.physics.cost import matmul_peak, resident_weight_bytes, value_bytes
from moejax.physics.routing import remote_share

SOL = Accounting()
QS_POINT = dict(context=131072.0)  # the qs paper's point: DeepSeek-V3 FP8, 64 GPUs, TP8 x KVP8, 128k, B_max


def test_dense_ffn_has_its_own_tensor_parallel_degree():
    """At the qs point the κ = 5 dense baseline's FFN no longer all-reduces over 64 GPUs on 8
    nodes: with an 8-way FFN (dense_tp = 8, one island) its step drops by a fifth and it
    serves more tokens/s/GPU than the MoE; laid out the old way (over the whole stage) it does not."""
    m, hw = load_model("deepseek-v3"), load_hardware("qs-reference")
    dense = dense_baseline(m, 5.0)
    old, new = (Partition(tp=8.0, kvp=8.0, kv_mode=1.0, dense_tp=t) for t in (0.0, 8.0))
    wl = Workload(**QS_POINT)
    d_old, d_new, moe = (
        decode_point(dense, hw, old, wl, SOL),
        decode_point(dense, hw, new, wl, SOL),
        decode_point(m, hw, new, wl, SOL),
    )
    assert float(d_new.step_time) < 0.85 * float(d_old.step_time)
    assert float(d_new.t_comm) < 0.3 * float(d_old.t_comm)  # what is left is the attention's KVP exchange
    assert float(d_new.throughput_per_gpu) > float(moe.throughput_per_gpu) > float(d_old.throughput_per_gpu) * 0.9
    # the FFN all-reduce of one dense layer: 8 ranks in one island, the group's tokens (b*8/64) of 7168 x 2 B
    b = float(d_new.batch)
    assert (
        float(all_reduce(hw, 8.0, 8.0, b * 8 / 64 * 7168 * 2.0, SOL)) < float(all_reduce(hw, 64.0, 64.0, b * 7168 * 2.0, SOL)) / 5
    )


def test_dispatch_sends_each_remote_island_one_copy():
    """DeepSeek-V3 (k = 8) on EP32 over four H100 islands: 4·(1 - 0.75^8)·3/4 / 8 = 0.337 of the
    copies cross the NIC (a naive exchange: 24/32); EP8 inside one island: none."""
    m, h100 = load_model("deepseek-v3"), load_hardware("h100-sxm")
    assert float(remote_share(m, h100, Partition(ep=32.0, dp_attn=32.0))) == pytest.approx(4 * (1 - 0.75**8) * 0.75 / 8, rel=1e-6)
    assert float(remote_share(m, h100, Partition(ep=8.0, dp_attn=8.0))) == 0.0


def test_prefill_runs_mla_decompressed():
    """A 128k DeepSeek-V3 prompt on 8×H200 (TP8): ~7 s to first token at speed of light (absorbed
    MLA charged 3.4× the attention FLOPs, ~20 s)."""
    m = load_model("deepseek-v3")
    absorbed = float(arch.score_flops_per_token_layer(m, 1024.0))
    assert absorbed == 2 * 128 * 1088 * 1024
    assert float(arch.score_flops_per_token_layer(m, 1024.0, absorbed=False)) == 2 * 128 * 320 * 1024
    r = prefill_point(m, load_hardware("h200"), Partition(tp=8.0), Workload(context=131072.0, batch=1.0), SOL)
    assert 6.0 < float(r.step_time) < 8.0


@pytest.mark.parametrize(
    "weights,experts,gemm,hardware,peak",
    [
        ("fp8", None, None, "h100-sxm", "flops_fp8"),  # W8A8
        ("fp8", None, "bf16", "h100-sxm", "flops_bf16"),  # W8A16
        ("bf16", "nvfp4", "bf16", "h100-sxm", "flops_bf16"),  # W4A16 on Hopper: BF16 tensor cores
        ("bf16", "nvfp4", None, "h100-sxm", "flops_fp8"),  # FP4 inputs on a chip without FP4: the FP8 path
        ("bf16", "nvfp4", "fp4", "b200", "flops_fp4"),  # NVFP4 on Blackwell
    ],
)
def test_expert_gemm_peak_follows_the_wider_input(weights, experts, gemm, hardware, peak):
    m, hw = load_model("deepseek-v3", weights=weights, experts=experts, gemm=gemm), load_hardware(hardware)
    expert_gemm = value_bytes(m).gemm_experts
    assert float(matmul_peak(hw, expert_gemm, SOL)) == float(getattr(hw, peak))


def test_fp8_kv_is_dequantised_for_the_attention_matmul():
    m = load_model("deepseek-v3", kv="fp8")  # the loader's attention dtype: bf16
    h100 = load_hardware("h100-sxm")
    assert float(matmul_peak(h100, value_bytes(m).attn, SOL)) == float(h100.flops_bf16)
    fp8_attn = load_model("deepseek-v3", kv="fp8", attention="fp8")
    assert float(matmul_peak(h100, value_bytes(fp8_attn).attn, SOL)) == float(h100.flops_fp8)


def test_fp4_bytes_include_their_scales():
    assert DTYPE_BYTES["nvfp4"] == 4.5 / 8 and DTYPE_BYTES["mxfp4"] == 4.25 / 8 and DTYPE_BYTES["fp4"] == DTYPE_BYTES["nvfp4"]
    m = load_model("deepseek-v3", experts="nvfp4")
    fp8 = load_model("deepseek-v3")
    p = Partition(tp=8.0, ep=8.0)
    saved = float(resident_weight_bytes(fp8, p) - resident_weight_bytes(m, p))
    experts = float(arch.n_moe_layers(m) * 256 * arch.expert_params(m)) / 8
    assert saved == pytest.approx(experts * (1 - 0.5625), rel=1e-6)


def test_mtp_module_is_resident_only_when_drafting():
    m, p = load_model("deepseek-v3"), Partition(tp=8.0)
    extra = float(resident_weight_bytes(m, p, 1.0) - resident_weight_bytes(m, p, 0.0))
    assert float(arch.mtp_params(m)) == 11_610_030_080
    assert extra == pytest.approx(11_610_030_080 / 8, rel=1e-6)  # FP8, all of it split 8 ways at TP8
    assert float(resident_weight_bytes(dataclasses.replace(m, mtp_layers=0.0), p, 1.0)) == float(resident_weight_bytes(m, p, 0.0))


def test_speculative_decoding_counts_accepted_tokens():
    """3 drafted tokens, 1.82 accepted: each step verifies 4 tokens per sequence (touching more
    experts) and emits 2.82; interactivity rises although the step is longer."""
    m, b200 = load_model("deepseek-v3"), load_hardware("b200")
    p = Partition(tp=8.0, ep=8.0)
    plain = decode_point(m, b200, p, Workload(context=2048.0, batch=1.0), SOL)
    mtp = decode_point(m, b200, p, Workload(context=2048.0, batch=1.0, draft_tokens=3.0, accepted=1.82), SOL)
    assert float(mtp.step_time) > float(plain.step_time)
    assert float(mtp.tokens_per_s_per_user) == pytest.approx(2.82 / float(mtp.step_time), rel=1e-6)
    assert float(mtp.throughput) == pytest.approx(2.82 / float(mtp.step_time), rel=1e-6)
    assert float(mtp.tokens_per_s_per_user) > 1.3 * float(plain.tokens_per_s_per_user)
    with pytest.raises(moejax.SpecError, match="Workload.accepted"):
        Workload(context=1024.0, draft_tokens=1.0, accepted=2.0)


def test_realistic_mode_is_the_default_and_recorded():
    real = load_accounting("realistic")
    assert real.mode == "realistic" and real.hbm_usable_fraction == 0.9 and real.reserve_bytes > 0
    assert load_accounting("sol") == Accounting()
    r = moejax.decode_step("llama-3-70b", "h100-sxm", Partition(tp=8.0), context=1024, batch=1)
    s = moejax.decode_step("llama-3-70b", "h100-sxm", Partition(tp=8.0), context=1024, batch=1, accounting=SOL)
    assert float(r.step_time) > float(s.step_time)
