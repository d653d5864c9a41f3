"""The serving frontier (moejax/engine/frontier.py) held to a brute-force search in plain Python:
every (partition, batch) candidate of a tiny grid evaluated one by one with ``decode_point``."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from cli_runs import assert_refused, sweep_here
from hydra import compose, initialize_config_dir

from moejax.catalogue import CONF_DIR
from moejax.engine import frontier
from moejax.engine.config import Interactivity, Slo
from moejax.engine.grid import PARTITION_FIELDS, cast, device_inputs, lifted_kernel
from moejax.engine.plan import build_plan
from moejax.physics.cost import decode_point
from moejax.physics.partition import partition_valid
from moejax.physics.specs import HardwareSpec, ModelSpec, Partition, SpecError, Workload
from moejax.schema import register, sweep_config

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x22b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8,16]",
    "grid.kappas=[5]",
    "grid.contexts=[2048,65536]",
    "grid.partitions={tp:[1,2,4,8],ep:[1,2,4,8],pp:[1,2],dp_attn:[1],kvp:[1],dense_tp:[1]}",
]
BATCHES = [1, 4, 16, 64, 256, 1024]
RTOL = 1e-9  # float64 kernel vs float64 NumPy evaluation of the same model


def _grid(*extra):
    register()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return sweep_config(compose("config", overrides=[*TINY, *extra])).grid


def _run(grid):
    """(plan, frontier outputs, today's best-partition search at B_max) for a grid, in float64."""
    plan = build_plan(grid, False)
    args = device_inputs(plan.inputs, jnp.float64)
    out = frontier.frontier_extra(plan.frontier, plan.accounting, jnp.float64)(*args)
    search, _ = lifted_kernel(False)(*args, jnp.asarray(0.0), cast(plan.accounting, jnp.float64))
    return plan, {k: np.asarray(v) for k, v in out.items()}, search


def _leaf(tree, i):
    return {k: float(np.asarray(v)[i]) for k, v in vars(tree).items()}


_BRUTE = {}
# the scalar functions jitted (not the vectorised frontier kernel): the same one-by-one evaluation,
# compiled once instead of dispatching every operation eagerly
_decode, _valid = jax.jit(decode_point), jax.jit(partition_valid)


def _brute(plan, row, n, c):
    """Every legal candidate of one point as (throughput per GPU, tokens/s per user, batch column):
    plain Python over partitions and batches (B_max = column 0)."""
    if (id(plan), row, n, c) in _BRUTE:
        return _BRUTE[id(plan), row, n, c]
    m, hw = ModelSpec(**_leaf(plan.inputs.rows, row)), HardwareSpec(**_leaf(plan.inputs.hardware, 0))
    out = []
    for i in np.nonzero(plan.inputs.partition_mask[n])[0]:
        p = Partition(**dict(zip(PARTITION_FIELDS, map(float, plan.inputs.partitions[n, i]))))
        if not bool(_valid(m, p)):
            continue
        for col, b in enumerate(plan.frontier.columns):
            r = _decode(m, hw, p, Workload(context=float(plan.inputs.contexts[c]), batch=float(b)), plan.accounting)
            if bool(r.feasible):
                out.append((float(r.throughput_per_gpu), float(r.tokens_per_s_per_user), col))
    _BRUTE[id(plan), row, n, c] = np.array(out).reshape(-1, 3)
    return _BRUTE[id(plan), row, n, c]


@pytest.fixture(scope="module")
def tiny():
    # speed of light, so the premise below does not move with the fitted realistic constants: the
    # fastest step is 1.83 ms at 2k and 2.37 ms at 64k, so a 2.1 ms TPOT limit is met at one, not the other
    grid = _grid(
        f"+grid.batches={BATCHES}",
        "+grid.slo={tpot_max: 0.0021}",
        "+grid.interactivity={min: 0.5, max: 2000, count: 25}",
        "grid.accounting.mode=sol",
    )
    return _run(grid)


def _points(plan):
    shape = plan.inputs.shape
    return [(r, n, c) for r in range(shape["row"]) for n in range(shape["num_gpus"]) for c in range(shape["context"])]


def test_frontier_per_batch_and_slo_equal_a_brute_force_search(tiny):
    plan, out, _ = tiny
    levels = np.asarray(plan.frontier.levels)
    checked = 0
    for r, n, c in _points(plan):
        cand = _brute(plan, r, n, c)
        at = (r, 0, n, c)
        for i, lev in enumerate(levels):
            ok = cand[:, 1] >= lev
            if ok.any():
                assert out["frontier_status"][at][i] == 2
                np.testing.assert_allclose(out["frontier_throughput_per_gpu"][at][i], cand[ok, 0].max(), rtol=RTOL)
                assert out["frontier_tokens_per_s_per_user"][at][i] >= lev
                checked += 1
            else:
                assert np.isnan(out["frontier_throughput_per_gpu"][at][i])
                assert out["frontier_status"][at][i] == (1 if len(cand) else 0)
        for k in range(len(BATCHES)):
            col = cand[cand[:, 2] == k + 1]
            if len(col):
                np.testing.assert_allclose(out["at_batch_throughput_per_gpu"][at][k], col[:, 0].max(), rtol=RTOL)
            else:
                assert out["at_batch_feasible"][at][k] == 0 and np.isnan(out["at_batch_throughput_per_gpu"][at][k])
        meets = cand[:, 1] >= 1 / 0.0021  # TPOT <= 2.1 ms: 476 tokens/s per user
        if meets.any():
            assert out["slo_status"][at] == 2
            np.testing.assert_allclose(out["slo_throughput_per_gpu"][at], cand[meets, 0].max(), rtol=RTOL)
            assert out["slo_step_time"][at] <= 0.0021 * (1 + 1e-12)
        else:
            assert out["slo_status"][at] == (1 if len(cand) else 0) and np.isnan(out["slo_throughput_per_gpu"][at])
    assert checked > 20  # the grid reaches many levels: the comparison is not vacuous
    assert {0, 1, 2} <= set(out["slo_status"].ravel())  # met, not met and infeasible points all occur


def test_frontier_is_monotone_and_non_dominated(tiny):
    plan, out, _ = tiny
    for r, n, c in _points(plan):
        at = (r, 0, n, c)
        x, u = out["frontier_throughput_per_gpu"][at], out["frontier_tokens_per_s_per_user"][at]
        reached = out["frontier_status"][at] == 2
        assert np.all(np.diff(x[reached]) <= 0)  # rising interactivity never raises throughput per GPU
        assert np.all(reached[:-1] >= reached[1:])  # once unreachable, stays unreachable
        cand = _brute(plan, r, n, c)
        for xi, ui in zip(x[reached], u[reached]):
            assert not np.any((cand[:, 0] > xi * (1 + 1e-9)) & (cand[:, 1] >= ui))


def test_frontier_winners_are_the_stored_candidates(tiny):
    """Each frontier point is decode_point at its stored partition and batch."""
    plan, out, _ = tiny
    r, n, c = 0, 1, 0
    at = (r, 0, n, c)
    i = int(np.nonzero(out["frontier_status"][at] == 2)[0][-1])
    p = Partition(**{f: float(out[f"frontier_{f}"][at][i]) for f in PARTITION_FIELDS})
    m, hw = ModelSpec(**_leaf(plan.inputs.rows, r)), HardwareSpec(**_leaf(plan.inputs.hardware, 0))
    res = _decode(
        m, hw, p, Workload(context=float(plan.inputs.contexts[c]), batch=float(out["frontier_batch"][at][i])), plan.accounting
    )
    np.testing.assert_allclose(float(res.throughput_per_gpu), out["frontier_throughput_per_gpu"][at][i], rtol=RTOL)
    np.testing.assert_allclose(float(res.step_time), out["frontier_step_time"][at][i], rtol=RTOL)


def test_bmax_end_of_the_frontier_is_todays_search(tiny):
    """Where today's B_max winner and every per-batch winner reach the lowest level (0.5 tokens/s
    per user, checked), the frontier there is the best of them; and on this grid B_max wins, as
    the qs paper assumes: the frontier's B_max end is today's result."""
    plan, out, search = tiny
    today = np.asarray(search.throughput_per_gpu)
    lev0 = plan.frontier.levels[0]
    assert np.all(np.asarray(search.tokens_per_s_per_user)[np.asarray(search.feasible)] >= lev0)
    assert np.all(out["at_batch_tokens_per_s_per_user"][out["at_batch_feasible"] == 1] >= lev0)
    lowest = out["frontier_throughput_per_gpu"][..., 0]
    best_batch = np.nanmax(np.where(out["at_batch_feasible"] == 1, out["at_batch_throughput_per_gpu"], -1), axis=-1)
    ok = np.asarray(search.feasible)
    np.testing.assert_allclose(lowest[ok], np.maximum(today, best_batch)[ok], rtol=RTOL)
    np.testing.assert_allclose(lowest[ok], today[ok], rtol=RTOL)


def test_bucket_is_exact_at_the_levels():
    bucket = jax.jit(frontier.bucket)  # as the kernel runs it (and one compile, not an eager dispatch per operation)
    levels = jnp.asarray(frontier.interactivity_levels(Interactivity(min=1, max=1000, count=31)))
    below = jnp.nextafter(levels, -jnp.inf)
    np.testing.assert_array_equal(bucket(levels, levels), np.arange(1, 32))  # u == level reaches it
    np.testing.assert_array_equal(bucket(below, levels), np.arange(0, 31))
    np.testing.assert_array_equal(bucket(jnp.array([0.0, 0.5, 2000.0]), levels), [0, 0, 31])


def test_slo_rate_is_the_stricter_bound():
    """TPOT = 1/(tokens/s per user): tpot_max 0.02 s is 50 tokens/s per user, stricter than 40."""
    slo = Slo(tpot_max=0.02, tokens_per_s_per_user_min=40)
    assert frontier.slo_rate(slo) == pytest.approx(50.0, rel=1e-12)
    assert frontier.slo_rate(Slo(tokens_per_s_per_user_min=80, tpot_max=0.02)) == 80


def test_grouped_table_holds_every_partition_once():
    from moejax.engine.grid import PartitionSpace, enumerate_partitions

    space = PartitionSpace(tp=(1, 2, 4), ep=(1, 2), pp=(1, 2), dp_attn=(1, 2), kvp=(1,), dense_tp=(1, 2))
    table, mask, slices = frontier.grouped_table([4, 8, 12], space)
    for n, (t, ok) in enumerate(zip(table, mask)):
        want = {tuple(row) for row in enumerate_partitions([4, 8, 12][n], space)}
        assert {tuple(row) for row in t[ok]} == want and ok.sum() == len(want)
        gpus = t[:, 0] * t[:, 2] * t[:, 4] * t[:, 5]  # tp, pp, dp_attn, kvp: one replica size per slice
        assert all(len(set(gpus[a:b])) == 1 for a, b in slices)


@pytest.mark.parametrize(
    "override, field",
    [
        ("+grid.batches=[]", "grid.batches"),
        ("+grid.batches=[4,-1]", "grid.batches"),
        ("+grid.batches=[1.5]", "grid.batches"),
        ("+grid.slo={tpot_max: -0.1}", "grid.slo.tpot_max"),
        ("+grid.slo={ttft_max: 1.0}", "grid.slo.ttft_max"),
        ("+grid.interactivity={min: 10, max: 1, count: 5}", "grid.interactivity.min"),
    ],
)
def test_bad_inputs_are_one_line_errors(override, field):
    with pytest.raises(SpecError, match=f"^{field} = .* is invalid: "):
        frontier.validate(_grid(override))


def test_bad_batches_exit_2_with_no_file(tmp_path, monkeypatch):
    line = assert_refused(sweep_here(tmp_path, monkeypatch, "+grid.batches=[0]", grid=TINY), tmp_path)
    assert line == "error: grid.batches = 0 is invalid: sequences per replica, a positive integer"


def test_sweep_dataset_holds_the_frontier_with_reasons(tiny, tmp_path):
    """The main job's dataset: frontier, per-batch and SLO variables with their dimensions and flags
    (a NaN only where its status says why), equal to the kernel's float64 values, and the printout."""
    from moejax.analysis.frontier import frontier_summary
    from moejax.engine.run import run

    _, out, _ = tiny
    register()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose(
            "config",
            overrides=[
                *TINY,
                f"+grid.batches={BATCHES}",
                "+grid.slo={tpot_max: 0.0021}",
                "+grid.interactivity={min: 0.5, max: 2000, count: 25}",
                "grid.accounting.mode=sol",
                f"parts_dir={tmp_path / 'parts'}",
                "compilation_cache=null",
            ],
        )
    path = run(sweep_config(cfg), tmp_path / "sweep.nc")
    with xr.open_dataset(path) as ds:
        assert ds.frontier_throughput_per_gpu.dims[-1] == "interactivity" and ds.sizes["interactivity"] == 25
        assert ds.at_batch_throughput_per_gpu.dims[-1] == "batches" and list(ds.batches.values) == BATCHES
        assert ds.frontier_status.attrs["flag_meanings"] == "infeasible unreachable reached"
        assert ds.slo_status.attrs["flag_meanings"] == "infeasible slo_not_met slo_met"
        reached = ds.frontier_status.values == 2
        assert np.isfinite(ds.frontier_throughput_per_gpu.values[reached]).all()
        assert np.isnan(ds.frontier_throughput_per_gpu.values[~reached]).all()
        moe = ds.frontier_throughput_per_gpu.sel(model="mixtral-8x22b", variant="moe", kappa=5.0).values
        want = out["frontier_throughput_per_gpu"][0]  # kernel row 0: the MoE
        np.testing.assert_allclose(moe, want, rtol=1e-5)  # float32 run vs float64 kernel
    assert "mixtral-8x22b" in frontier_summary(path)


def test_slo_without_batches_searches_the_bmax_column():
    """``grid.slo`` alone: candidates are every partition at its own B_max; the SLO choice equals
    the brute-force best of those reaching 1/tpot_max tokens/s per user."""
    # tiny's grid and accounting: today's search and the one-by-one oracle are the programs compiled for tiny
    plan, out, _ = _run(_grid("+grid.slo={tpot_max: 0.06}", "grid.accounting.mode=sol"))
    assert plan.frontier.n_columns == 1 and "at_batch_throughput_per_gpu" not in out
    for r, n, c in _points(plan):
        cand = _brute(plan, r, n, c)
        meets = cand[:, 1] >= 1 / 0.06
        at = (r, 0, n, c)
        if meets.any():
            assert out["slo_status"][at] == 2
            np.testing.assert_allclose(out["slo_throughput_per_gpu"][at], cand[meets, 0].max(), rtol=RTOL)
        else:
            assert out["slo_status"][at] == (1 if len(cand) else 0)
    assert 2 in out["slo_status"]  # the MoE meets it here: the comparison is not vacuous
