"""Kernel-level calibration (moejax.analysis.kernels): the vendored measurements load and cite their
sources, the bytes/FLOPs formulas' worked examples, the fit recovers known constants from synthetic
data, the shipped constants are in range and are what `python -m moejax.analysis.kernels` produces."""

import math

import numpy as np
import pytest
import yaml

from moejax.analysis.kernels import fit, report, shapes
from moejax.catalogue import available, load_hardware
from moejax.physics.collectives import all_reduce
from moejax.physics.specs import Accounting


@pytest.fixture(scope="module")
def rows():
    return shapes.load()


def test_data_files_load_and_every_row_cites_a_source(rows):
    assert len(rows) > 1000
    for name in shapes.FILES:
        raw = shapes.read_csv(shapes.DATA_DIR / name)
        assert raw, name
        for r in raw:
            assert r["source"].startswith("github:") and "@" in r["source"] and ":" in r["source"][7:], (name, r)
            assert float(r["time_s"]) > 0, (name, r)
    assert set(rows["kernel_class"]) <= set(shapes.COMPUTE_CLASSES + shapes.COLLECTIVE_CLASSES)
    assert set(rows["hardware"]) <= set(available("hardware"))
    assert (shapes.DATA_DIR / "README.md").is_file()
    # every compute row has work, every collective row wire time, and none is faster than speed of light
    compute = np.isin(rows["kernel_class"], shapes.COMPUTE_CLASSES)
    assert np.all(rows["t_bw"][compute] > 0) and np.all(rows["t_wire"][~compute] > 0)
    wire = np.where(
        np.isfinite(rows["ring_latency"]), np.minimum(rows["t_wire"], rows["t_ring"]), rows["t_wire"]
    )  # all-reduce: either algorithm
    sol = np.where(compute, np.maximum(rows["t_bw"], rows["t_flop"]), wire)
    # 7 of 2,781 rows run at 0.86-0.98 of their speed-of-light time (an elementwise, 3 MLA decode, an all-reduce,
    # 2 DeepEP normal combines): a catalogue peak or a byte count a little off, never a unit error (x1000)
    assert np.all(rows["time_s"] >= 0.85 * sol), np.sort(rows["time_s"] / sol)[:10]


def test_gemm_worked_example():
    nbytes, flops = shapes.gemm_work(64, 4096, 7168, 1, "fp8_block")
    assert flops == 3_758_096_384
    assert nbytes == pytest.approx(31_275_008)
    # DeepGEMM README (H800): 287 TFLOPS and 2320 GB/s for this shape; its GB/s counts FP8 values without scales
    nbytes, _ = shapes.gemm_work(64, 4096, 7168, 1, "fp8")
    assert nbytes / (flops / 287e12) == pytest.approx(2320e9, rel=0.01)


def test_moe_worked_example():
    nbytes, flops = shapes.moe_work(1, 7168, 2048, 8, 256, 1, 8, 1, "fp8_block")
    assert flops == 88_080_384
    assert nbytes == pytest.approx(45_416_448 + 40_960)


def test_attention_worked_examples():
    nbytes, flops = shapes.attention_work("attn_decode_gqa", 8, 1, 4096, 8, 1, 128, 0, 0, "bf16")
    assert (nbytes, flops) == (16_809_984, 134_217_728)
    nbytes, flops = shapes.attention_work("attn_decode_mla", 1, 1, 4096, 128, 1, 128, 512, 64, "bf16")
    assert (nbytes, flops) == (4_997_120, 1_140_850_688)
    # prefill is causal: S(S+1)/2 score entries per head
    _, flops = shapes.attention_work("attn_prefill_gqa", 1, 4, 4, 2, 1, 8, 0, 0, "bf16")
    assert flops == 4 * 2 * 8 * 10


def test_elementwise_and_collective_worked_examples():
    assert shapes.elementwise_work(4096 * 7168, 3) == (88_080_384, 0)
    inside, outside = shapes.collective_wire("ep_dispatch_ll", 0, 16, 128, 7168, 8, 8)
    assert (inside, outside) == (pytest.approx(3_311_616), pytest.approx(3_784_704))
    inside, outside = shapes.collective_wire("all_reduce", 2**20, 8, 0, 0, 0, 8)
    assert (inside, outside) == (7_340_032, 0)  # one-shot: every peer's buffer read
    t_ring, latency = shapes.all_reduce_ring(2**20, 8, 450e9, 2e-6)
    assert (t_ring, latency) == (pytest.approx(1_835_008 / 450e9, rel=1e-12), pytest.approx(26e-6, rel=1e-12))


def test_model_worked_example():
    p = np.array([math.log(5e-6), math.log(0.8 / 0.2), 0.0])
    assert fit.model(p, np.array([40e-6]), np.array([10e-6]))[0] == pytest.approx(55e-6)
    ring = (np.array([10e-6]), np.array([26e-6]))
    assert fit.model(p, np.array([40e-6]), np.array([0.0]), ring)[0] == pytest.approx(43.5e-6)


@pytest.mark.parametrize("message", [2.0**10, 2.0**17, 2.0**20, 2.0**24, 2.0**27])
@pytest.mark.parametrize("ranks", [2.0, 4.0, 8.0])
def test_all_reduce_fit_is_the_cost_models_all_reduce(message, ranks):
    """The all-reduce the fit calibrates is the one moejax.physics.collectives runs: with
    comm_efficiency = η_bw and collective_latency = τ − intra_latency both give the same time, on
    either side of the one-shot/ring crossover."""
    hw = load_hardware("h100-sxm")
    tau, eta_bw = 3.2e-6, 0.6
    acc = Accounting(comm_efficiency=eta_bw, collective_latency=tau - float(hw.intra_latency))
    wire = shapes.collective_wire("all_reduce", message, ranks, 0, 0, 0, 8)[0] / float(hw.intra_bw)
    ring = shapes.all_reduce_ring(message, ranks, float(hw.intra_bw), float(hw.intra_latency))
    p = np.array([math.log(tau), math.log(eta_bw / (1 - eta_bw)), 0.0])
    got = fit.model(p, np.array([wire]), np.array([0.0]), (np.array([ring[0]]), np.array([ring[1]])))[0]
    assert got == pytest.approx(float(all_reduce(hw, ranks, ranks, message, acc)), rel=1e-6)


def synthetic(tau, eta_bw, eta, n=60, seed=0):
    rng = np.random.default_rng(seed)
    t_bw = 10 ** rng.uniform(-7, -3, n)
    t_flop = t_bw * 10 ** rng.uniform(-2, 2, n)
    t = tau + np.maximum(t_bw / eta_bw, t_flop / eta)
    return t_bw, t_flop, t * np.exp(rng.normal(0, 0.01, n))


@pytest.mark.parametrize("truth", [(4e-6, 0.8, 0.6), (20e-6, 0.45, 0.9), (1e-6, 0.95, 0.3)])
def test_fit_recovers_known_constants(truth):
    t_bw, t_flop, t = synthetic(*truth)
    p = fit.solve(t_bw, t_flop, t)
    got = (math.exp(p[0]), 1 / (1 + math.exp(-p[1])), 1 / (1 + math.exp(-p[2])))
    assert got == pytest.approx(truth, rel=0.03)


def test_fit_rows_recovers_a_collective_floor_and_reports_unpinned_terms():
    rng = np.random.default_rng(1)
    wire = 10 ** rng.uniform(-7, -2, 40)
    cols = {"t_wire": wire, "time_s": 8e-6 + wire / 0.6, "ranks": np.repeat([2.0, 8.0], 20), "bytes": wire * 4.5e11}
    f = fit.fit_rows(shapes.Rows(cols), "all_gather")
    assert (f.tau, f.eta_bw) == (pytest.approx(8e-6, rel=0.01), pytest.approx(0.6, rel=0.01))
    assert f.eta is None and len(f.cv_abs_log) == 40 and np.median(f.cv_abs_log) < 0.01


def test_fit_rows_recovers_the_all_reduce_of_the_cost_model():
    """Times made by the one-shot/ring all-reduce (1 KiB to 512 MiB on 2, 4 and 8 ranks, 1 % noise)
    give back its floor and bandwidth fraction."""
    rng = np.random.default_rng(2)
    ranks = np.repeat([2.0, 4.0, 8.0], 20)
    message = 2.0 ** rng.uniform(10, 29, 60)
    wire = shapes.collective_wire("all_reduce", message, ranks, 0, 0, 0, 8)[0] / 450e9
    t_ring, latency = shapes.all_reduce_ring(message, ranks, 450e9, 2e-6)
    t = 3e-6 + np.minimum(wire / 0.7, latency + t_ring / 0.7)
    cols = {"t_wire": wire, "t_ring": t_ring, "ring_latency": latency, "ranks": ranks, "bytes": wire * 4.5e11}
    f = fit.fit_rows(shapes.Rows({**cols, "time_s": t * np.exp(rng.normal(0, 0.01, 60))}), "all_reduce")
    assert (f.tau, f.eta_bw) == (pytest.approx(3e-6, rel=0.03), pytest.approx(0.7, rel=0.02))


def test_shipped_constants_are_in_range():
    data = yaml.safe_load(report.CONSTANTS_PATH.read_text())
    seen = 0
    for section in ("hardware", "families"):
        for where, classes in data[section].items():
            for label, e in classes.items():
                assert e["tau"] is None or e["tau"] >= 0, (where, label)
                for name in ("eta_bw", "eta"):
                    assert e[name] is None or 0 < e[name] <= 1, (where, label, name)
                assert e["rows"] == sum(e["bound"].values()) and e["sources"], (where, label)
                seen += 1
    assert seen > 50
    assert {"h100-sxm", "h200", "h800", "b200", "gb200-nvl72"} <= set(data["hardware"])
    assert {"hopper", "blackwell"} <= set(data["families"])


def test_shipped_files_are_what_the_fit_command_writes(rows):
    constants, residuals = report.build(rows)
    assert report.CONSTANTS_PATH.read_text() == constants, f"stale: rerun `{report.COMMAND}`"
    assert report.RESIDUALS_PATH.read_text() == residuals, f"stale: rerun `{report.COMMAND}`"
