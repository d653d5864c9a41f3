"""κ* along the serving frontier (moejax/analysis/frontier_breakeven.py) held to a plain-Python
bisection: every (partition, batch) candidate of a tiny grid evaluated one at a time with
``decode_point``, the frontier at each level a max over the list, one level at a time."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from hydra import compose, initialize_config_dir

from moejax.analysis import frontier_breakeven as fb
from moejax.analysis.breakeven import REASONS, kappa_exists, relative_precision
from moejax.breakeven import run
from moejax.catalogue import CONF_DIR
from moejax.engine.grid import PARTITION_FIELDS, PartitionSpace, partition_table
from moejax.engine.plan import build_plan
from moejax.figures.kappa_frontier import plot_kappa_star_frontier
from moejax.physics.arch import param_counts
from moejax.physics.baseline import keep_attention
from moejax.physics.cost import decode_point
from moejax.physics.partition import partition_valid
from moejax.physics.specs import HardwareSpec, ModelSpec, Partition, Workload
from moejax.schema import register, sweep_config

TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x22b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.contexts=[8192]",
    "grid.accounting.mode=sol",
    "precision=float64",
    "grid.partitions={tp:[1,2,4,8],ep:[1,8],pp:[1],dp_attn:[1],kvp:[1],dense_tp:[1,8]}",
    "+grid.batches=[1,4,16,64,256]",
    "+grid.interactivity={min: 1, max: 1000, count: 7}",
]
STEPS = 16


def _cfg(*extra):
    register()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return sweep_config(compose("config", overrides=[*TINY, *extra]), kappa_star=True)


@jax.jit
def _one(m, hw, p, context, batch, acc):
    r = decode_point(m, hw, p, Workload(context=context, batch=batch), acc)
    return r.throughput_per_gpu, r.tokens_per_s_per_user, r.feasible


class Brute:
    """One grid point of the tiny grid, candidates evaluated one by one (float64)."""

    def __init__(self, cfg):
        plan = build_plan(cfg.grid, False)
        leaf = lambda tree: {k: float(np.asarray(v)[0]) for k, v in vars(tree).items()}
        self.m, self.hw = ModelSpec(**leaf(plan.inputs.rows)), HardwareSpec(**leaf(plan.inputs.hardware))
        self.acc, self.context = plan.accounting, float(plan.inputs.contexts[0])
        self.columns, self.levels = list(plan.frontier.columns), np.asarray(plan.frontier.levels)
        space = cfg.grid.partitions.space()
        dense_table, dense_mask = partition_table([8], PartitionSpace(**{**vars(space), "ep": (1,)}))
        self.moe_parts = self._legal(plan.inputs.partitions[0], plan.inputs.partition_mask[0])
        self.dense_parts = self._legal(dense_table[0], dense_mask[0])
        self.moe = self.rates(self.m)
        be = cfg.breakeven
        self.x_lo = max(np.log(be.kappa_min), float(np.log(kappa_exists(self.m))) + 1e-3)
        self.x_hi = float(np.log(be.kappa_max))

    def _legal(self, table, mask):
        parts = [Partition(**dict(zip(PARTITION_FIELDS, map(float, row)))) for row, ok in zip(table, mask) if ok]
        return [p for p in parts if bool(partition_valid(self.m, p))]

    def rates(self, m, dense=False):
        """(throughput per GPU, tokens/s per user, batch column) of every feasible candidate."""
        out = []
        for p in self.dense_parts if dense else self.moe_parts:
            for col, b in enumerate(self.columns):
                x, u, ok = _one(m, self.hw, p, self.context, b, self.acc)
                if bool(ok):
                    out.append((float(x), float(u), col))
        return np.array(out).reshape(-1, 3)

    @staticmethod
    def best(cand, level):
        ok = cand[:, 1] >= level
        return cand[ok, 0].max() if ok.any() else 0.0

    def dense(self, log_kappa, level):
        return self.best(self.rates(keep_attention(self.m, float(np.exp(log_kappa))), dense=True), level)

    def solve(self, i):
        """(κ*, reason) at level i by a bisection on log κ, one level at a time."""
        level = self.levels[i]
        t = self.best(self.moe, level)
        d_lo, d_hi = self.dense(self.x_lo, level), self.dense(self.x_hi, level)
        if t <= 0:
            return np.nan, "moe_infeasible"
        if d_lo <= 0:
            return np.nan, "dense_infeasible"
        if d_lo <= t:
            return np.nan, "below_kappa_min"
        if d_hi >= t:
            return np.nan, "above_kappa_max"
        lo, hi = self.x_lo, self.x_hi
        for _ in range(STEPS):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.dense(mid, level) > t else (lo, mid)
        assert self.dense(lo, level) > t >= self.dense(hi, level)  # a crossing lies in the final bracket
        return float(np.exp(0.5 * (lo + hi))), "found"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The command's own function on the tiny grid: breakeven.nc with κ* and κ*(u)."""
    cfg = _cfg()
    path = tmp_path_factory.mktemp("kf") / "be.nc"
    report = run(cfg, path)
    return cfg, xr.open_dataset(path), report


def test_frontier_at_docstring_example():
    x, u = jnp.array([10.0, 30.0, -1.0]), jnp.array([5.0, 2.0, 0.0])
    assert [float(fb.frontier_at(x, u, lev)) for lev in (1.0, 4.0, 6.0)] == [30.0, 10.0, 0.0]


def test_kappa_star_frontier_agrees_with_plain_python_bisection(written):
    """Every level: the same reason, and where found the same κ* to twice the bisection's
    relative precision (both bracket the crossing to 4.2e-5)."""
    cfg, ds, _ = written
    brute = Brute(cfg)
    tol = 2 * relative_precision(0.25, 64.0, STEPS)
    k, reason = ds.kappa_star_frontier.values.ravel(), ds.kappa_star_frontier_reason.values.ravel()
    assert len(k) == len(brute.levels) == 7
    found = 0
    for i in range(len(k)):
        k_brute, why = brute.solve(i)
        assert REASONS[reason[i]] == why, (i, brute.levels[i])
        if why == "found":
            assert k[i] == pytest.approx(k_brute, rel=tol)
            assert float(ds.dense_equivalent_params_frontier.values.ravel()[i]) == pytest.approx(
                k_brute * 2 / 8 * float(param_counts(brute.m)[0]), rel=tol
            )  # κ*·ρ·P_total, Mixtral 8x22B: ρ = 2/8
            found += 1
        moe = brute.best(brute.moe, brute.levels[i])
        np.testing.assert_allclose(ds.moe_frontier_throughput_per_gpu.values.ravel()[i], moe if moe > 0 else np.nan, rtol=1e-9)
    assert found >= 3 and (reason == REASONS.index("moe_infeasible")).any()  # found and unreachable levels both occur


def test_lowest_level_is_todays_kappa_star(written):
    """At 1 token/s per user every B_max candidate qualifies and no explicit batch beats it (a
    smaller batch of the same partition serves fewer tokens per step; a larger one does not fit),
    so the frontier's low end is the B_max point and κ*(u_0) is today's κ* (same bisection)."""
    cfg, ds, _ = written
    brute = Brute(cfg)
    k0 = float(ds.kappa_star_frontier.values.ravel()[0])
    # the premise, checked: every candidate reaches the lowest level, and the MoE's and the dense
    # baseline's (at κ* and at both ends of the bracket) best candidates there are B_max ones
    # (column 0; at κ_max = 64 nothing fits, where both searches give 0)
    for k in (k0, float(np.exp(brute.x_lo)), 64.0):  # Python floats, as in Brute.dense: one compiled _one
        cand = brute.rates(keep_attention(brute.m, k), dense=True)
        assert len(cand) == 0 or (cand[:, 1].min() >= brute.levels[0] and cand[np.argmax(cand[:, 0]), 2] == 0)
    assert brute.moe[:, 1].min() >= brute.levels[0] and brute.moe[np.argmax(brute.moe[:, 0]), 2] == 0
    assert int(ds.reason.values.ravel()[0]) == 0
    assert k0 == pytest.approx(float(ds.kappa_star.values.ravel()[0]), rel=1e-9)
    assert float(ds.moe_frontier_throughput_per_gpu.values.ravel()[0]) == pytest.approx(
        float(ds.moe_throughput_per_gpu.values.ravel()[0]), rel=1e-12
    )


@pytest.fixture(scope="module")
def narrow():
    """A narrow κ bracket around κ*(u) (2.96 at low levels, 3.96 at 100, 1.96 at 316 tokens/s per
    user on the full bracket)."""
    cfg = _cfg("breakeven.kappa_min=2.5", "breakeven.kappa_max=3.5")
    return cfg, *fb.solve_frontier(cfg)[:2]


def test_bound_flags_hold_their_meaning(narrow):
    """Levels with every kind of flag occur, and each flag's claim holds in the plain-Python evaluation."""
    cfg, out, _ = narrow
    brute = Brute(cfg)
    reason = out["kappa_star_frontier_reason"].ravel()
    for i, level in enumerate(brute.levels):
        t, why = brute.best(brute.moe, level), REASONS[reason[i]]
        if why == "moe_infeasible":
            assert t == 0
        elif why == "dense_infeasible":
            assert t > 0 and brute.dense(brute.x_lo, level) == 0
        elif why == "below_kappa_min":
            assert 0 < brute.dense(brute.x_lo, level) <= t
        elif why == "above_kappa_max":
            assert brute.dense(brute.x_hi, level) >= t > 0
        if why != "found":
            assert np.isnan(out["kappa_star_frontier"].ravel()[i]) and np.isnan(
                out["dense_equivalent_params_frontier"].ravel()[i]
            )
    assert {"found", "above_kappa_max", "moe_infeasible"} <= {REASONS[r] for r in reason}
    assert {"below_kappa_min", "dense_infeasible"} & {REASONS[r] for r in reason}


def test_command_writes_the_frontier_variables(written):
    _, ds, report = written
    for name in ("kappa_star_frontier", "kappa_star_frontier_reason", "dense_equivalent_params_frontier"):
        assert ds[name].dims == ("model", "hardware", "num_gpus", "context", "interactivity")
    assert ds.kappa_star_frontier_reason.attrs["flag_meanings"].split() == list(REASONS)
    assert ds.interactivity.values[0] == pytest.approx(1.0) and ds.interactivity.values[-1] == pytest.approx(1000.0, rel=1e-6)
    summary = json.loads(report.splitlines()[-1])["frontier"]
    assert summary["levels"] == 7 and summary["found"] == int((ds.kappa_star_frontier_reason == 0).sum())
    assert "kappa* along the frontier" in report


def test_no_frontier_without_batches():
    cfg = _cfg()
    cfg = dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, batches=None))  # frozen: a changed copy
    assert fb.solve_frontier(cfg) is None


def test_figure_draws_the_dataset_values(narrow, tmp_path):
    """The figure's lines are the dataset's κ*(u); hollow markers sit at κ_min / κ_max exactly at
    the levels flagged below_kappa_min / above_kappa_max; PNG and SVG are written."""
    _, out, coords = narrow
    ds = xr.Dataset({n: v for n, v in fb.dataset_variables(out).items()}, coords={d: (d, v, a) for d, (v, a) in coords.items()})
    sel = {"model": "mixtral-8x22b", "hardware": "h100-sxm", "num_gpus": 8, "kappa": 5.0}
    png, svg, arrays, fig = plot_kappa_star_frontier(ds, tmp_path, sel)
    assert png.stat().st_size > 10_000 and svg.stat().st_size > 10_000
    k = ds.kappa_star_frontier.values[0, 0, 0, 0]
    np.testing.assert_array_equal(arrays["kappa_star_frontier"][0], k)
    lines = fig.axes[0].get_lines()
    np.testing.assert_array_equal(lines[0].get_ydata(), k)  # NaN (no crossing) where the line breaks
    np.testing.assert_array_equal(lines[0].get_xdata(), ds.interactivity.values)
    reason = ds.kappa_star_frontier_reason.values[0, 0, 0, 0]
    hollow = {
        float(y[0]): list(line.get_xdata())
        for line in lines[1:]
        if line.get_markerfacecolor() == "none" and len(y := line.get_ydata())
    }
    for meaning, bound in (("below_kappa_min", 2.5), ("above_kappa_max", 3.5)):
        at = ds.interactivity.values[reason == REASONS.index(meaning)]
        assert hollow.get(bound, []) == list(at)
    assert hollow  # the bracket makes bound-limited levels


def test_figure_labels_the_kappa_axis_below_kappa(narrow, tmp_path):
    """Issue 20: κ* between 2.5 and 5 had no y label below 5 (decades and 2/5 only, on a span under
    one decade). Every κ* drawn must be readable: at least three y labels, one below the selection's
    κ and one at or below the smallest κ* plotted times 2; labels on each axis do not overlap."""
    from figure_checks import no_overlaps, tick_labels

    _, out, coords = narrow
    ds = xr.Dataset({n: v for n, v in fb.dataset_variables(out).items()}, coords={d: (d, v, a) for d, (v, a) in coords.items()})
    sel = {"model": "mixtral-8x22b", "hardware": "h100-sxm", "num_gpus": 8, "kappa": 5.0}
    _, _, arrays, fig = plot_kappa_star_frontier(ds, tmp_path, sel)
    ys = tick_labels(fig, fig.axes[0].yaxis)
    values = [v for v, _, _ in ys]
    drawn = arrays["kappa_star_frontier"][np.isfinite(arrays["kappa_star_frontier"])]
    assert len(values) >= 3 and min(values) < sel["kappa"], [t for _, t, _ in ys]
    assert min(values) <= 2 * min(drawn.min(), 2.5), (values, drawn.min())
    assert all(float(t) == pytest.approx(v, rel=1e-9) for v, t, _ in ys)  # plain numbers, the tick's value
    for axis in (fig.axes[0].xaxis, fig.axes[0].yaxis):
        assert not no_overlaps([b for _, _, b in tick_labels(fig, axis)])
