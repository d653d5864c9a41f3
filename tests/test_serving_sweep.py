"""Serving in the sweep (engine/workloads.py, the workload branch of engine/frontier.py): ISL/OSL
workloads, TTFT of the frontier and SLO winners, the ``slo.ttft_max`` mask, disaggregated vs
aggregated serving and the economics, each held to the serving functions evaluated one by one."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from cli_runs import assert_refused, sweep_here
from hydra import compose, initialize_config_dir

from moejax.catalogue import CONF_DIR, hardware_economics
from moejax.engine import frontier
from moejax.engine.grid import PARTITION_FIELDS, device_inputs
from moejax.engine.plan import build_plan
from moejax.physics import serving
from moejax.physics.cost import decode_point
from moejax.physics.partition import partition_valid
from moejax.physics.specs import HardwareSpec, ModelSpec, Partition, SpecError, Workload
from moejax.schema import register, sweep_config

# the scalar serving functions jitted (not the vectorised sweep kernel): the same one-by-one oracle,
# compiled once instead of dispatching every operation eagerly at every candidate
_aggregated, _decode = jax.jit(serving.aggregated_point), jax.jit(decode_point)
_capacity = jax.jit(serving.prefill_capacity_per_gpu)

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = "grid.workloads=[{isl: 1024, osl: 1024}, {isl: 8192, osl: 512}]"
TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x22b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.kappas=[5]",
    "grid.contexts=null",
    WORKLOADS,
    "grid.partitions={tp:[1,2,4,8],ep:[1,2,4,8],pp:[1,2],dp_attn:[1],kvp:[1],dense_tp:[1]}",
    # kernel-level constants, no end-to-end ones: the SLO's 0.1 s TTFT limit (SLO below) is set against the
    # closed-loop physics, which the default preset's fitted 0.1 s per-request overhead would swamp
    "grid.accounting.mode=kernel",
]
BATCHES = [1, 16, 256]
CHUNK = 512.0  # prompt tokens per decode step: TTFT = T_pf + ceil(isl/512) stretched steps
SLO = {"tokens_per_s_per_user_min": 20.0, "ttft_max": 0.1}  # ttft_max binds at isl 1024 (asserted below)
RTOL = 1e-9  # float64 kernel vs float64 NumPy evaluation of the same model


def _grid(*extra, workloads=WORKLOADS):
    register()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return sweep_config(compose("config", overrides=[*(o for o in TINY if o != WORKLOADS), workloads, *extra])).grid


def _leaf(tree, i):
    return {k: float(np.asarray(v)[i]) for k, v in vars(tree).items()}


SERVING = [  # the frontier settings of ``tiny`` (and of the missing-baseline check: the same compiled kernel)
    f"+grid.batches={BATCHES}",
    f"grid.prefill_chunk={CHUNK}",
    f"grid.slo.tokens_per_s_per_user_min={SLO['tokens_per_s_per_user_min']}",
    f"grid.slo.ttft_max={SLO['ttft_max']}",
]


def _frontier64(plan):
    """The frontier kernel's float64 outputs on ``plan``."""
    out = frontier.frontier_extra(plan.frontier, plan.accounting, jnp.float64)(*device_inputs(plan.inputs, jnp.float64))
    return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def tiny():
    """(plan, float64 frontier outputs) with batches, chunked prefill and an SLO with ttft_max."""
    plan = build_plan(_grid(*SERVING), False)
    return plan, _frontier64(plan)


def _specs(plan, row, c):
    m, hw = ModelSpec(**_leaf(plan.inputs.rows, row)), HardwareSpec(**_leaf(plan.inputs.hardware, 0))
    isl, osl = (float(v) for v in np.array(plan.frontier.workloads)[c, 1:])
    return m, hw, isl, osl


def _legal(plan, m, n=0):
    for i in np.nonzero(plan.inputs.partition_mask[n])[0]:
        p = Partition(**dict(zip(PARTITION_FIELDS, map(float, plan.inputs.partitions[n, i]))))
        if bool(partition_valid(m, p)):
            yield p


def _winner(out, prefix, at):
    return Partition(**{f: float(out[prefix + f][at]) for f in PARTITION_FIELDS})


def test_workloads_give_decode_contexts_and_coordinates():
    plan = build_plan(_grid(), False)
    np.testing.assert_array_equal(plan.inputs.contexts, [1024 + 1024 / 2, 8192 + 512 / 2])
    assert plan.coords["context"][0].tolist() == [1536.0, 8448.0]
    assert plan.context_coords["isl"][1].tolist() == [1024.0, 8192.0]
    assert plan.context_coords["osl"][1].tolist() == [1024.0, 512.0]
    one = build_plan(_grid(workloads="grid.workloads={isl: 100, osl: 50}"), False)  # one pair, not a list
    assert one.inputs.contexts.tolist() == [125.0] and one.frontier.workloads == ((125.0, 100.0, 50.0),)


def test_frontier_winners_equal_aggregated_serving(tiny):
    """Every stored winner (frontier levels, SLO, serving) = ``serving.aggregated_point`` at its
    partition and batch: end-to-end tokens/s per GPU, tokens/s per user, TPOT and TTFT."""
    plan, out = tiny
    checked = 0
    for row in range(2):
        for c in range(2):
            m, hw, isl, osl = _specs(plan, row, c)
            for prefix, idx in (("frontier_", range(len(plan.frontier.levels))), ("slo_", [None]), ("serving_", [None])):
                for i in idx:
                    at = (row, 0, 0, c) + (() if i is None else (i,))
                    if not np.isfinite(out[prefix + "throughput_per_gpu"][at]):
                        assert np.isnan(out[prefix + "ttft"][at])
                        continue
                    swl = serving.ServingWorkload(isl=isl, osl=osl, batch=float(out[prefix + "batch"][at]), chunk=CHUNK)
                    want = _aggregated(m, hw, _winner(out, prefix, at), swl, plan.accounting)
                    for name, value in (
                        ("ttft", want.ttft),
                        ("throughput_per_gpu", want.throughput_per_gpu),
                        ("tokens_per_s_per_user", want.tokens_per_s_per_user),
                        ("step_time", want.tpot),
                    ):
                        np.testing.assert_allclose(out[prefix + name][at], value, rtol=RTOL)
                    checked += 1
    assert checked > 20


def _candidates(plan, row, c):
    """Every legal (partition, batch column) of one point, served aggregated and as pure decode at
    the column's batch (a disaggregated decode pool has no chunk limit):
    rows (tput/GPU, tokens/s/user, TTFT, decode tput/GPU, decode tokens/s/user, partition index,
    column) with -1 / 0 / inf where infeasible."""
    m, hw, isl, osl = _specs(plan, row, c)
    out = []
    for j, p in enumerate(_legal(plan, m)):
        for b in plan.frontier.columns:
            r = _aggregated(m, hw, p, serving.ServingWorkload(isl=isl, osl=osl, batch=float(b), chunk=CHUNK), plan.accounting)
            d = _decode(m, hw, p, Workload(context=isl + osl / 2, batch=float(b)), plan.accounting)
            ok, dec = bool(r.feasible), bool(d.feasible)
            out.append(
                (
                    float(r.throughput_per_gpu) if ok else -1.0,
                    float(r.tokens_per_s_per_user) if ok else 0.0,
                    float(r.ttft) if ok else np.inf,
                    float(d.throughput_per_gpu) if dec else -1.0,
                    float(d.tokens_per_s_per_user) if dec else 0.0,
                    j,
                    float(b),
                )
            )
    return np.array(out).reshape(-1, 7)


def test_slo_with_ttft_max_equals_a_brute_force_search(tiny):
    plan, out = tiny
    binds = 0
    for row in range(2):
        for c in range(2):
            cand, at = _candidates(plan, row, c), (row, 0, 0, c)
            fast = (cand[:, 0] > 0) & (cand[:, 1] >= SLO["tokens_per_s_per_user_min"])
            meets = fast & (cand[:, 2] <= SLO["ttft_max"])
            if meets.any():
                assert out["slo_status"][at] == 2
                np.testing.assert_allclose(out["slo_throughput_per_gpu"][at], cand[meets, 0].max(), rtol=RTOL)
                assert out["slo_ttft"][at] <= SLO["ttft_max"]
                binds += cand[fast, 0].max() > cand[meets, 0].max()
            else:
                assert out["slo_status"][at] == (1 if (cand[:, 0] > 0).any() else 0)
                assert np.isnan(out["slo_throughput_per_gpu"][at])
    assert binds  # the TTFT limit excludes the best fast-enough candidate somewhere: the mask is tested
    assert 2 in out["slo_status"]


def test_disaggregated_serving_equals_the_serving_functions(tiny):
    """``serving_disaggregated_*`` and ``slo_disaggregated_*``: the decode candidate with the most
    pure decode tokens/s per GPU (under the SLO: at the tokens/s per user floor) fed by the prefill
    partition serving the most prompts/s per GPU at its utilisation (brute force), through
    ``serving.disaggregated_point`` (the SLO's pool at the utilisation its TTFT limit allows, which
    it then meets); ``slo_mode``
    names the mode with more tokens/s per GPU."""
    plan, out = tiny
    checked = modes = 0
    for row in range(2):
        for c in range(2):
            m, hw, isl, osl = _specs(plan, row, c)
            at = (row, 0, 0, c)
            parts = list(_legal(plan, m))
            cand = _candidates(plan, row, c)
            for prefix, floor, limit in (("serving_", 0.0, None), ("slo_", SLO["tokens_per_s_per_user_min"], SLO["ttft_max"])):
                pick = np.where(cand[:, 4] >= floor, cand[:, 3], -1.0)
                if pick.max() <= 0:
                    assert np.isnan(out[prefix + "disaggregated_throughput_per_gpu"][at])
                    continue
                best = cand[int(np.argmax(pick))]
                p_dec, swl = parts[int(best[5])], serving.ServingWorkload(isl=isl, osl=osl, batch=best[6])
                rates = [float(_capacity(m, hw, p_dec, p, swl, plan.accounting, limit)) for p in parts]
                p_pf = parts[int(np.argmax(rates))]
                want = serving.disaggregated_point(m, hw, p_dec, p_pf, swl, plan.accounting, limit)
                if not bool(want.feasible):  # e.g. the prefill pass alone exceeds the TTFT limit
                    assert np.isnan(out[prefix + "disaggregated_throughput_per_gpu"][at])
                    continue
                assert _winner(out, prefix + "decode_", at) == parts[int(best[5])]
                assert _winner(out, prefix + "prefill_", at) == p_pf
                for name in ("throughput_per_gpu", "ttft", "tokens_per_s_per_user", "batch"):
                    np.testing.assert_allclose(out[f"{prefix}disaggregated_{name}"][at], getattr(want, name), rtol=RTOL)
                np.testing.assert_allclose(out[prefix + "prefill_share"][at], want.prefill_share, rtol=RTOL)
                if limit is not None:
                    assert float(want.ttft) <= limit * (1 + 1e-9)
                    agg = np.nan_to_num(out["slo_throughput_per_gpu"][at])
                    assert out["slo_mode"][at] == (1 if agg >= float(want.throughput_per_gpu) else 2)
                    modes += 1
                checked += 1
    assert checked >= 3 and modes >= 1  # the 8k prompt's prefill alone exceeds the 0.1 s limit


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real sweep dataset (float32) of the tiny workload grid with batches, a price override and
    an SLO (tokens/s per user and TTFT)."""
    from moejax.engine.run import run

    tmp = tmp_path_factory.mktemp("serving")
    register()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose(
            "config",
            overrides=[
                *TINY,
                "+grid.batches=[1,64]",
                "grid.partitions.dense_tp=[1,8]",
                "grid.economics={price_per_gpu_hour: {h100-sxm: 2.5}}",
                "grid.slo.tokens_per_s_per_user_min=10",
                "grid.slo.ttft_max=1.0",
                f"parts_dir={tmp / 'parts'}",
                "compilation_cache=null",
                "summary=false",
            ],
        )
    return run(sweep_config(cfg), tmp / "sweep.nc")


def test_every_dataset_variable_is_registered(dataset):
    """Each data variable of a workload sweep with batches and an SLO is declared in
    engine/variables.py (the fixed registry, the frontier's groups for this grid, or the economics
    beside a throughput), and is stored with the declared dims, dtype and attributes."""
    from moejax.engine.variables import REGISTRY, economics_variables, frontier_variables

    declared = {**REGISTRY, **frontier_variables(serve=True, batches=True, slo_rate=10.0, ttft_max=1.0)}
    for prefix in ("frontier_", "slo_", "slo_disaggregated_", "serving_", "serving_disaggregated_"):
        declared.update(economics_variables(prefix, declared[f"{prefix}throughput_per_gpu"].dims))
    with xr.open_dataset(dataset) as ds:
        assert set(ds.data_vars) <= set(declared), sorted(set(ds.data_vars) - set(declared))
        for name in ds.data_vars:
            var = declared[name]
            assert ds[name].dims == var.dims and ds[name].dtype == np.dtype(var.numpy_dtype("f4")), name
            assert set(ds[name].attrs) == set(var.attrs()), name
            for key, value in var.attrs().items():
                np.testing.assert_array_equal(ds[name].attrs[key], value)


def test_missing_dense_baseline_reports_no_serving_numbers():
    """A κ too small for any dense model: the stand-in row's serving_* hold NaN / 0, not the MoE's."""
    from moejax.engine.plan import mask_missing_baselines

    plan = build_plan(_grid(*SERVING, "grid.kappas=[0.01]"), False)  # tiny's grid but for κ
    assert not plan.baseline_exists.any()
    results = _frontier64(plan)
    results["feasible"] = np.ones(results["serving_status"].shape, bool)
    assert (results["serving_status"][1] == 1).any()  # before masking, the stand-in row is the MoE
    mask_missing_baselines(plan, "row", slice(0, 2), results)
    assert (results["serving_status"][1] == 0).all() and (results["serving_prefill_tp"][1] == 0).all()
    assert np.isnan(results["serving_disaggregated_throughput_per_gpu"][1]).all()
    assert np.isfinite(results["serving_disaggregated_throughput_per_gpu"][0]).any()


def test_sweep_dataset_economics_are_exact(dataset):
    """The main job's dataset: isl/osl along context, hardware price (a grid override) and board
    power, and $/Mtok = price / 3600 / (tokens/s/GPU) × 1e6 (float64 from the stored values, then
    the dataset's float32), J/token = power / (tokens/s/GPU), bit for bit; the printed table."""
    from moejax.analysis.frontier import frontier_summary

    with xr.open_dataset(dataset) as ds:
        assert ds.isl.values.tolist() == [1024.0, 8192.0] and ds.osl.dims == ("context",)
        assert ds.hw_price_per_gpu_hour.values.tolist() == [2.5]
        assert ds.hw_board_power.values.tolist() == [hardware_economics("h100-sxm").board_power]
        checked = 0
        for prefix in ("", "frontier_", "serving_", "serving_disaggregated_", "slo_", "slo_disaggregated_"):
            x = ds[prefix + "throughput_per_gpu"].values
            served = x > 0
            x64 = np.where(served, x, 1.0).astype(np.float64)
            cost = (2.5 / 3600 / x64 * 1e6).astype(np.float32)
            joules = (ds.hw_board_power.values[0] / x64).astype(np.float32)
            np.testing.assert_array_equal(ds[prefix + "cost_per_mtok"].values[served], cost[served])
            np.testing.assert_array_equal(ds[prefix + "joules_per_token"].values[served], joules[served])
            assert np.isnan(ds[prefix + "cost_per_mtok"].values[~served]).all()
            checked += served.sum()
        assert checked > 10
        level = float(ds.interactivity[np.argmin(np.abs(np.log(ds.interactivity.values / 20.0)))])
        at = {"kappa": 5.0, "context": 8448.0, "interactivity": level, "hardware": "h100-sxm", "num_gpus": 8}
        moe_cost = float(ds.frontier_cost_per_mtok.sel(model="mixtral-8x22b", variant="moe", **at))
        dense_cost = float(ds.frontier_cost_per_mtok.sel(model="mixtral-8x22b", variant="dense", **at))
    text = frontier_summary(dataset)
    assert "dense $/Mtok ÷ MoE $/Mtok (> 1: the MoE is cheaper)" in text and "isl 8192, osl 512" in text
    assert np.isfinite(dense_cost)  # dense_tp 8 lets the dense baseline fit: the ratio is a number
    cell = text.splitlines()[2].split()[1:4]  # the first level's cell: ratio, hardware/GPUs, MoE $/Mtok
    assert cell == [f"{dense_cost / moe_cost:.2f}x", "h100-sxm/8", f"${moe_cost:.3g}"]
    table = text.splitlines()[1:]  # cells stay apart: every row splits into the header's column count
    assert {len(re.split(r" {2,}", line.strip())) for line in table} == {len(re.split(r" {2,}", table[0].strip()))}


@pytest.mark.parametrize(
    "override, field",
    [
        ("grid.contexts=[2048]", "grid.workloads"),
        ("grid.workloads={isl: 0, osl: 10}", "grid.workloads.isl"),
        ("grid.workloads=[{isl: 10, osl: -1}]", "grid.workloads.osl"),
        ("grid.workloads=[{isl: 10}]", "grid.workloads"),
        ("grid.workloads=[{isl: 1024, osl: 1024}, {isl: 1280, osl: 512}]", "grid.workloads"),
        ("grid.workloads=null", "grid.contexts"),
        ("grid.workloads=[]", "grid.workloads"),
        ("grid.economics={price_per_gpu_hour: {b200: 1.0}}", "grid.economics.price_per_gpu_hour"),
        ("grid.economics={price_per_gpu_hour: {h100-sxm: -1.0}}", "grid.economics.price_per_gpu_hour.h100-sxm"),
        ("grid.economics={price: {h100-sxm: 1.0}}", "grid.economics.price"),
    ],
)
def test_bad_serving_inputs_are_one_line_errors(override, field):
    """Refused at the command boundary (``SweepConfig.validate``: workloads) or by the plan (economics,
    which need the catalogue's hardware names)."""
    with pytest.raises(SpecError, match=f"^{field} = .* is invalid: |^{field} is not a known field"):
        grid = _grid(workloads=override) if override.startswith("grid.workloads") else _grid(override)
        build_plan(grid, False)


def test_bad_workload_exits_2_with_no_file(tmp_path, monkeypatch):
    grid = [o for o in TINY if o != WORKLOADS]
    line = assert_refused(sweep_here(tmp_path, monkeypatch, "grid.workloads={isl: 1024, osl: 0}", grid=grid), tmp_path)
    assert line == "error: grid.workloads.osl = 0 is invalid: a positive number of tokens"


def test_plot_draws_the_frontier_with_a_cost_axis(dataset, tmp_path):
    """``make_plots`` adds the frontier figure: its lines are the dataset's frontier values at the
    selection (MoE and every dense κ), the twin axis reads $/Mtok at the hardware's price."""
    from moejax.plot import make_plots

    with xr.open_dataset(dataset) as ds:
        ds = ds.load()
    figures = make_plots(ds, tmp_path / "plots", model="mixtral-8x22b", hardware="h100-sxm", num_gpus=8, kappa=5.0)
    png, svg, _, fig = figures["frontier"]
    assert png.stat().st_size > 0 and svg.stat().st_size > 0
    at = {"model": "mixtral-8x22b", "hardware": "h100-sxm", "num_gpus": 8, "context": 8448.0, "kappa": 5.0}
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for label, variant in (("MoE", "moe"), ("dense, κ = 5", "dense")):
        want = ds.frontier_throughput_per_gpu.sel(variant=variant, **at).values
        x, y = lines[label].get_data()
        np.testing.assert_array_equal(x, ds.interactivity.values)
        np.testing.assert_array_equal(y[want > 0], want[want > 0])
        assert np.isnan(y[~(want > 0)]).all()
    assert np.isfinite(lines["MoE"].get_data()[1]).any() and np.isfinite(lines["dense, κ = 5"].get_data()[1]).any()
    right = [a for a in ax.child_axes if "million" in a.get_ylabel()]  # the secondary (twin) y axis
    assert len(right) == 1 and "$2.5/GPU-hour" in right[0].get_ylabel()
    forward = right[0]._functions[0]
    np.testing.assert_allclose(forward(np.array([1000.0])), 2.5 / 3600 / 1000 * 1e6, rtol=1e-12)
