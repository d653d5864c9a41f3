"""python -m moejax.point: one point explained. In-process checks against brute force over a small
partition space (a Python loop over candidates as the oracle); the CLI's printout in-process, and
real subprocesses for its bad input."""

from pathlib import Path

import jax
import numpy as np
import pytest
from cli_runs import forked, run_main

from moejax import Partition, load_hardware, load_model
from moejax.analysis.point import PointQuery, explain, partition_label
from moejax.catalogue import load_accounting
from moejax.engine.grid import PARTITION_FIELDS, PartitionSpace, enumerate_partitions
from moejax.physics.cost import decode_point
from moejax.physics.partition import partition_valid
from moejax.physics.serving import (
    ServingWorkload,
    aggregated_point,
    cost_per_mtok,
    disaggregated_point,
    prefill_capacity_per_gpu,
    prefill_rate_per_gpu,
)
from moejax.physics.specs import SpecError, Workload

ROOT = Path(__file__).resolve().parents[1]
SPACE = PartitionSpace(tp=(1, 2, 4, 8), ep=(1, 8), pp=(1, 2), dp_attn=(1, 2), kvp=(1,), dense_tp=(1, 8))
MODEL, HW = "mixtral-8x7b", "h100-sxm"


@pytest.fixture(scope="module")
def acc():
    return load_accounting("realistic")


@pytest.fixture(scope="module")
def query(acc):
    return PointQuery(
        model=MODEL,
        hardware=HW,
        num_gpus=8,
        accounting=acc,
        isl=2048.0,
        osl=512.0,
        batches=(1.0, 16.0, 256.0),
        levels=(10.0, 50.0, 100.0),
        dtypes={"weights": "fp8"},
        space=SPACE,
    )


@pytest.fixture(scope="module")
def result(query):
    return explain(query)


@pytest.fixture(scope="module")
def brute(acc):
    """Every legal candidate at B_max and at each batch, one call each (the oracle)."""
    m, hw = load_model(MODEL, weights="fp8"), load_hardware(HW)
    one = jax.jit(decode_point)  # one candidate per call: a different path from the vmapped search
    rows = []
    for row in enumerate_partitions(8, SPACE):
        p = Partition(**dict(zip(PARTITION_FIELDS, map(float, row))))
        if not bool(partition_valid(m, p)):
            continue
        for b in (0.0, 1.0, 16.0, 256.0):
            r = one(m, hw, p, Workload(context=2048.0 + 256.0, batch=b), acc)
            if bool(r.feasible):
                rows.append((partition_label(row), b, float(r.throughput_per_gpu), float(r.tokens_per_s_per_user), p))
    return m, hw, rows


def test_best_is_the_brute_force_argmax(result, brute):
    _, _, rows = brute
    at_bmax = [r for r in rows if r[1] == 0.0]
    best = max(at_bmax, key=lambda r: r[2])
    assert result["best"]["partition"] == best[0]
    assert result["best"]["throughput_per_gpu"] == pytest.approx(best[2], rel=1e-5)  # float32 kernel vs float64 oracle
    assert [t["throughput_per_gpu"] for t in result["top"]] == sorted(
        (t["throughput_per_gpu"] for t in result["top"]), reverse=True
    )
    assert result["feasible"] == len(at_bmax)


def test_breakdown_and_memory_add_up(result):
    b = result["best"]
    assert b["memory_per_gpu"] == pytest.approx(b["weight_bytes_per_gpu"] + b["kv_bytes_per_gpu"] + b["reserve_bytes"], rel=1e-6)
    hbm = 85.52e9  # conf/hardware/h100-sxm.yaml: 81559 MiB as nvidia-smi reports it
    assert float(load_hardware("h100-sxm").hbm_bytes) == hbm
    assert b["free_bytes"] == pytest.approx(hbm - b["memory_per_gpu"], rel=1e-6)
    assert b["t_comm_exposed"] <= b["t_comm"] + 1e-12
    assert b["cost_per_mtok"] == cost_per_mtok(2.99, b["throughput_per_gpu"])
    assert b["joules_per_token"] == pytest.approx(700.0 / b["throughput_per_gpu"], rel=1e-12)
    # the step by phase (decode_phases): Mixtral has no dense-FFN layer; the rest is pipeline sends and fixed latencies
    assert list(b["phases"]) == ["attention", "moe", "head"] and all(t > 0 for t in b["phases"].values())
    assert 0.0 <= b["step_time"] - sum(b["phases"].values()) < b["step_time"] / 2


def test_frontier_is_brute_force_and_monotone(result, brute):
    """At each level: the most tokens/s per GPU among candidates with at least that interactivity;
    as the level rises the throughput never rises."""
    _, _, rows = brute
    levels = [f["level"] for f in result["frontier"]]
    for f in result["frontier"]:
        reach = [r[2] for r in rows if r[3] >= f["level"] * (1 + 1e-6)]
        assert f["tokens_per_s_per_user"] >= f["level"] * (1 - 1e-6)
        assert f["throughput_per_gpu"] == pytest.approx(max(reach), rel=1e-5)
        assert f["cost_per_mtok"] == cost_per_mtok(2.99, f["throughput_per_gpu"])
    tputs = [f["throughput_per_gpu"] for f in result["frontier"]]
    assert tputs == sorted(tputs, reverse=True) and levels == sorted(levels)
    unreached = [lv for lv in (10.0, 50.0, 100.0) if lv not in levels]
    assert all(max(r[3] for r in rows) < lv for lv in unreached)


def test_serving_modes_are_brute_force(result, brute, acc):
    m, hw, rows = brute
    swl = ServingWorkload(isl=2048.0, osl=512.0)
    legal = {r[0]: r[4] for r in rows}
    agg_one, rate_one = jax.jit(aggregated_point), jax.jit(prefill_rate_per_gpu)
    agg = max(float(agg_one(m, hw, p, swl, acc).throughput_per_gpu) for p in legal.values())
    s = result["serving"]
    assert s["aggregated"]["throughput_per_gpu"] == pytest.approx(agg, rel=1e-5)
    rates = {name: float(rate_one(m, hw, p, 2048.0, acc)) for name, p in legal.items()}
    assert s["disaggregated"]["prefill_partition"] == max(rates, key=rates.get)
    ttft = min(float(agg_one(m, hw, p, swl, acc).ttft) for p in legal.values())
    assert s["aggregated, min TTFT"]["ttft"] == pytest.approx(ttft, rel=1e-5)
    assert s["disaggregated, min TTFT"]["ttft"] <= s["disaggregated"]["ttft"]
    assert 0 < s["disaggregated"]["prefill_share"] < 1
    assert s["disaggregated"]["tokens_per_s_per_user"] == pytest.approx(result["best"]["tokens_per_s_per_user"], rel=1e-5)


SLO = {"tpot_max": 0.03, "ttft_max": 0.5}


def test_slo_choice_is_brute_force(acc, brute):
    """Under a TPOT + TTFT SLO: the aggregated choice is the most end-to-end tokens/s per GPU among
    (partition, batch) candidates meeting both limits; the disaggregated one is the fastest decode
    candidate meeting the TPOT limit fed by the prefill partition with the most prompts/s per GPU at
    the TTFT's utilisation; the cheaper mode is the one with the lower $/Mtok."""
    m, hw, rows = brute
    q = PointQuery(
        model=MODEL,
        hardware=HW,
        num_gpus=8,
        accounting=acc,
        isl=2048.0,
        osl=512.0,
        batches=(1.0, 16.0, 256.0),
        levels=(10.0,),
        dtypes={"weights": "fp8"},
        space=SPACE,
        **SLO,
    )
    slo = explain(q)["slo"]
    agg_one, dis_one, cap_one = jax.jit(aggregated_point), jax.jit(disaggregated_point), jax.jit(prefill_capacity_per_gpu)
    parts = {r[0]: r[4] for r in rows}
    meets = []
    for name, p in parts.items():
        for b in (0.0, 1.0, 16.0, 256.0):
            r = agg_one(m, hw, p, ServingWorkload(isl=2048.0, osl=512.0, batch=b), acc)
            if bool(r.feasible) and float(r.tpot) <= SLO["tpot_max"] and float(r.ttft) <= SLO["ttft_max"]:
                meets.append((float(r.throughput_per_gpu), name))
    assert meets and slo["aggregated"] is not None
    assert slo["aggregated"]["throughput_per_gpu"] == pytest.approx(max(meets)[0], rel=1e-9)
    fast = [r for r in rows if 1 / r[3] <= SLO["tpot_max"]]
    name, b, _, _, p_dec = max(fast, key=lambda r: r[2])
    swl = ServingWorkload(isl=2048.0, osl=512.0, batch=b)
    caps = {n: float(cap_one(m, hw, p_dec, p, swl, acc, SLO["ttft_max"])) for n, p in parts.items()}
    best = max(caps, key=caps.get)
    want = dis_one(m, hw, p_dec, parts[best], swl, acc, SLO["ttft_max"])
    assert bool(want.feasible) and slo["disaggregated"] is not None
    assert slo["disaggregated"]["partition"] == name and slo["disaggregated"]["prefill_partition"] == best
    assert slo["disaggregated"]["throughput_per_gpu"] == pytest.approx(float(want.throughput_per_gpu), rel=1e-9)
    assert slo["disaggregated"]["ttft"] <= SLO["ttft_max"] * (1 + 1e-9)
    costs = {mode: slo[mode]["cost_per_mtok"] for mode in ("aggregated", "disaggregated")}
    assert slo["cheaper"] == min(costs, key=costs.get)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"context": 0.0}, "context = 0.0 is invalid"),
        ({"isl": 0.0, "osl": 5.0}, "isl = 0.0 is invalid"),
        ({"isl": 5.0}, "osl is missing"),
        ({"context": 5.0, "osl": 5.0}, "is invalid with isl/osl"),
        ({"context": 5.0, "batches": ()}, "batches = \\[\\] is invalid"),
        ({"context": 5.0, "batches": (-1.0,)}, "batches = -1.0 is invalid"),
        ({"context": 5.0, "ttft_max": 1.0}, "slo.ttft_max = 1.0 is invalid without a workload"),
        ({"isl": 5.0, "osl": 5.0, "tpot_max": 0.0}, "slo.tpot_max = 0.0 is invalid"),
    ],
)
def test_bad_query(acc, kw, match):
    with pytest.raises(SpecError, match=match):
        PointQuery(model=MODEL, hardware=HW, num_gpus=8, accounting=acc, **kw)


def test_cli_one_point(tmp_path):
    """``python -m moejax.point`` (run in this process, ``cli_runs.run_main``; the point of the
    ``query`` fixture, so its compiled kernels are shared) prints every section and writes nothing."""
    space = [f"partitions.{f}=[{','.join(map(str, getattr(SPACE, f)))}]" for f in PartitionSpace.__dataclass_fields__]
    code, out, err = run_main(
        "moejax.point",
        [f"model={MODEL}", f"hardware={HW}", "num_gpus=8", "isl=2048", "osl=512", "top=3", "batches=[1,16,256]", *space],
        hydra_dir=tmp_path / "run",
    )
    assert code == 0, err[-2000:]
    for text in (
        "best: ",
        "compute ",
        "exposed ",
        "by phase: ",
        "attention ",
        "MoE FFN ",
        "weights ",
        "KV ",
        "free ",
        "per million output tokens",
        "J per token",
        "top 3 partitions:",
        "frontier",
        "aggregated",
        "disaggregated",
        "TTFT",
    ):
        assert text in out, text
    assert not (tmp_path / "run").exists()  # nothing written


BAD = [
    (["isl=0", "osl=10"], "isl = 0"),
    (["model=nope", "context=10"], "model = 'nope'"),
    (["context=10", "num_gpus=0"], "num_gpus = 0"),
]


def _bad_args(args, tmp_path):
    base = {"model": MODEL, "hardware": HW, "num_gpus": "8"}
    base.update(a.split("=", 1) for a in args)
    return [*[f"{k}={v}" for k, v in base.items()], f"hydra.run.dir={tmp_path}/run"]


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Each case of BAD through ``python -m moejax.point``, its own process (one interpreter start: cli_runs.forked)."""
    dirs = [tmp_path_factory.mktemp("bad") for _ in BAD]
    procs = forked("moejax.point", [_bad_args(args, d) for d, (args, _) in zip(dirs, BAD)])
    return {tuple(args): (proc, d) for (args, _), proc, d in zip(BAD, procs, dirs, strict=True)}


@pytest.mark.parametrize("args, field", BAD)
def test_cli_bad_input(args, field, bad_runs):
    proc, tmp_path = bad_runs[tuple(args)]
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), proc.stderr
    assert proc.stdout == "" and not (tmp_path / "run").exists()


def test_labels_roundtrip():
    row = np.array([8, 8, 1, 1, 1, 1, 0, 8, 0], float)
    assert dict(zip(PARTITION_FIELDS, row))["tp"] == 8
    assert partition_label(row) == "TP8·EP8·PP1·DPattn1·dTP8 ×1"
