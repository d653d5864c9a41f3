"""Break-even κ*: the exact bisection against independent evaluation (brute-force scans), the
optax diagnostic, bound-limited points, and independence from unrelated grid axes."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import yaml
from cli_runs import run_main
from hydra import compose, initialize_config_dir

from moejax import Accounting, Workload, load_hardware, load_model
from moejax.analysis.breakeven import REASONS, Solver, breakeven_kernel, kappa_exists, solve
from moejax.catalogue import load_accounting
from moejax.engine.grid import (
    GridInputs,
    PartitionSpace,
    best_partition,
    cast,
    device_inputs,
    lift,
    lift_flat,
    partition_table,
    partitions_from_table,
    stack,
)
from moejax.engine.plan import grid_accounting, partition_space_json, partition_space_note
from moejax.physics.baseline import keep_attention
from moejax.physics.specs import SpecError
from moejax.schema import register, sweep_config

ROOT = Path(__file__).resolve().parent.parent
SMALL = PartitionSpace(tp=(1, 2, 4, 8), ep=(1, 8), pp=(1,), dp_attn=(1, 2), kvp=(1,), kv_modes=("kvp",))


# the grid of the κ* command run below, and of the sweep with κ* held to it (the same κ* program)
SOLVED = [
    "+grid=quick",
    "grid.models=[deepseek-v3,mixtral-8x22b,switch-c-2048]",
    "grid.hardware=[b200,h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.accounting.mode=sol",
]


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """``python -m moejax.breakeven`` on the SOLVED grid, run in this process (``cli_runs.run_main``)."""
    tmp = tmp_path_factory.mktemp("be")
    out = tmp / "be.nc"
    code, stdout, stderr = run_main("moejax.breakeven", [*SOLVED, f"out={out}"], hydra_dir=tmp / "run")
    assert code == 0, stderr[-3000:]
    return out, json.loads(stdout.strip().splitlines()[-1]), stdout


QUICK_ACCOUNTING = load_accounting("sol")  # the accounting of the solved fixture (stable physics, no fitted constants)
QUICK_YAML = yaml.safe_load((ROOT / "conf/grid/quick.yaml").read_text())["partitions"]
QUICK = PartitionSpace(**{k: tuple(v) for k, v in QUICK_YAML.items()})


@jax.jit
def _tput_jit(m, hw, parts, mask, context):
    return best_partition(m, hw, parts, mask, Workload(context=context), QUICK_ACCOUNTING)[1]


def _tput(m, hw, n, context):
    """MoE or dense throughput per GPU at the best candidate of the quick grid's search space
    (jitted once per shape: the same full search, without dispatching every operation eagerly)."""
    table, mask = partition_table([n], QUICK)
    return float(_tput_jit(m, hw, partitions_from_table(jnp.asarray(table[0])), jnp.asarray(mask[0]), jnp.float64(context)))


def test_kappa_star_brackets_the_crossing(solved):
    """At every found point the dense baseline is ahead just below κ* and behind just above it,
    evaluated independently of the solver (full partition search, exact model)."""
    out, summary, _ = solved
    with xr.open_dataset(out) as ds:
        found = ds.where(ds.reason == 0, drop=True)
        assert summary["found"] >= 6
        for model in found.model.values:
            for hw in found.hardware.values:
                for ctx in found.context.values:
                    k = float(ds.kappa_star.sel(model=model, hardware=hw, num_gpus=8, context=ctx))
                    if np.isnan(k):
                        continue
                    m, h = load_model(model, weights="fp8"), load_hardware(hw)  # the quick grid's dtypes
                    moe = _tput(m, h, 8, ctx)
                    assert _tput(keep_attention(m, 0.99 * k), h, 8, ctx) >= moe >= _tput(keep_attention(m, 1.01 * k), h, 8, ctx)


def test_docstring_example(solved):
    out, _, _ = solved
    with xr.open_dataset(out) as ds:
        pt = ds.sel(model="deepseek-v3", hardware="b200", num_gpus=8, context=65536.0)
        assert int(pt.reason) == 0 and float(pt.kappa_star) == pytest.approx(30.9, rel=5e-3)


def test_sweep_can_include_kappa_star(solved, tmp_path, monkeypatch):
    """``python -m moejax.sweep`` with ``breakeven.include=true`` and ``grid.batches`` (run in this
    process) stores the κ* command's κ* and κ* along the frontier; it builds its plan once and hands
    it to the κ* and κ*(u) solvers (``build_plan`` counted)."""
    from moejax.analysis import breakeven
    from moejax.engine import plan as plan_module
    from moejax.engine import run as run_module

    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return plan_module.build_plan(*args, **kwargs)

    for module in (run_module, breakeven):
        monkeypatch.setattr(module, "build_plan", counting)
    out, _, _ = solved
    sweep = tmp_path / "s.nc"
    code, _, stderr = run_main(
        "moejax.sweep",
        [
            *SOLVED,
            "breakeven.include=true",
            "summary=false",
            "+grid.batches=[16,256]",
            "+grid.interactivity={min: 1, max: 100, count: 3}",
            f"out={sweep}",
            f"parts_dir={tmp_path / 'parts'}",
        ],
        hydra_dir=tmp_path / "run",
    )
    assert code == 0, stderr[-3000:]
    assert len(calls) == 1  # the plan is built once per sweep
    with xr.open_dataset(sweep) as s, xr.open_dataset(out) as b:
        assert s.kappa_star.dims == b.kappa_star.dims and s.model.values.tolist() == b.model.values.tolist()
        np.testing.assert_allclose(s.kappa_star.values, b.kappa_star.values, rtol=1e-6)  # NaN where b has NaN
        np.testing.assert_array_equal(s.reason.values, b.reason.values)
        assert (s.reason.values == 0).sum() >= 6
        assert s.reason.attrs["flag_meanings"].split() == list(REASONS)
        assert s.kappa_star.attrs["relative_precision"] < 1e-3
        # with grid.batches, κ* along the frontier too; at 1 token/s/user the frontier is the B_max point
        # (the premise, checked in tests/test_frontier_breakeven.py), so it is today's κ*
        assert s.kappa_star_frontier.dims == ("model", "hardware", "num_gpus", "context", "interactivity")
        assert s.kappa_star_frontier_reason.attrs["flag_meanings"].split() == list(REASONS)
        np.testing.assert_allclose(s.kappa_star_frontier.isel(interactivity=0).values, s.kappa_star.values, rtol=1e-6)
        assert all(
            json.loads(s.attrs["partition_space"])[k] == v for k, v in QUICK_YAML.items()
        )  # the sweep states its space too


def test_optax_diagnostic_agrees_where_flagged_so(solved):
    out, summary, _ = solved
    with xr.open_dataset(out) as ds:
        ok, found = ds.agrees.values == 1, ds.reason.values == 0
        assert ds.agrees.attrs["flag_meanings"] == "optax_disagrees optax_agrees"
        rel = np.abs(ds.kappa_star_optax.values / ds.kappa_star.values - 1)
        assert (rel[ok] <= 1e-3).all() and (rel[found & ~ok] > 1e-3).all()
        # most points agree; the rest are flagged, not hidden. DeepSeek-V3 on 8×H100 (684 GB for 671 GB of FP8
        # weights: B_max of a few sequences, whose integer steps stall Adam at the bound) is held apart
        tight = ds.sel(model="deepseek-v3", hardware="h100-sxm")
        n_tight, agree_tight = int((tight.reason.values == 0).sum()), int((tight.agrees.values == 1).sum())
        assert summary["agree"] - agree_tight >= 0.75 * (summary["found"] - n_tight)
        # exact model at κ*: dense ≈ MoE, up to the step an integer batch makes
        assert (np.abs(ds.ratio_at_kappa_star.values[ok] - 1) < 0.02).all()


def test_no_crossing_reasons(solved):
    out, _, _ = solved
    with xr.open_dataset(out) as ds:
        switch = ds.reason.sel(model="switch-c-2048", hardware="h100-sxm")
        assert (switch == REASONS.index("moe_infeasible")).all()  # 1.57 TB of FP8 weights on 640 GB
        assert np.isnan(ds.kappa_star.sel(model="switch-c-2048", hardware="h100-sxm")).all()


def test_scaling_every_time_term_leaves_kappa_star_unchanged():
    """Doubling every bandwidth and FLOP/s and halving every latency halves every time; κ* is a
    ratio of throughputs at equal memory, so it does not move."""
    models = [load_model("mixtral-8x22b", weights="fp8"), load_model("deepseek-v3")]
    hw = load_hardware("b200")
    fast = dataclasses.replace(
        hw,
        **{f: getattr(hw, f) * 2 for f in ("hbm_bw", "flops_bf16", "flops_fp8", "flops_fp4", "intra_bw", "inter_bw", "link_bw")},
        intra_latency=hw.intra_latency / 2,
        inter_latency=hw.inter_latency / 2,
    )
    table, mask = partition_table([8], SMALL)
    dense_table, dense_mask = partition_table([8], dataclasses.replace(SMALL, ep=(1,)))
    inputs = GridInputs(stack(models), stack([hw, fast]), table, mask, np.array([4096.0, 65536.0]), dense_table, dense_mask)
    kernel = breakeven_kernel(Solver())
    out = kernel(
        *device_inputs(inputs, jnp.float64),
        jnp.float64(0.0),
        cast(Accounting(), jnp.float64),
        jnp.float64(np.log(0.25)),
        jnp.float64(np.log(64.0)),
    )
    k_bis, k_opt, reason = np.asarray(out[0]), np.asarray(out[1]), np.asarray(out[4])
    assert (reason == 0).all()
    np.testing.assert_allclose(k_bis[:, 0], k_bis[:, 1], rtol=1e-9)
    np.testing.assert_allclose(k_opt[:, 0], k_opt[:, 1], rtol=1e-6)


BAD = [
    (["breakeven.kappa_min=8", "breakeven.kappa_max=2"], "breakeven.kappa_min = 8.0 is invalid: must be below kappa_max = 2.0"),
    (["grid.models=[llama-3-70b]"], "it is a dense model (n_experts = 1)"),
    (["max_chunk_evaluations=0"], "max_chunk_evaluations = 0 is invalid: must be a positive integer"),
]


@pytest.mark.parametrize("args,expected", BAD)
def test_bad_input(args, expected, tmp_path):
    """``python -m moejax.breakeven`` (run in this process, ``cli_runs.run_main``): exit code 2, one line, no file."""
    code, _, stderr = run_main("moejax.breakeven", ["+grid=quick", *args, f"out={tmp_path / 'x.nc'}"], hydra_dir=tmp_path / "run")
    assert code == 2 and expected in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.nc").exists()


# --- exact κ*, bound-limited points and grid independence, in-process on a tiny grid -------------
TINY = [
    "+grid=quick",
    "grid.models=[gpt-4-rumoured,qwen3-235b-a22b]",
    "grid.hardware=[mi355x]",
    "grid.num_gpus=[8,16]",
    "grid.contexts=[16384,1024]",
]
# another grid of the same shape (the same compiled κ* kernel): other models, cluster sizes and contexts in another order
OTHER = [
    "+grid=quick",
    "grid.models=[mixtral-8x22b,qwen3-235b-a22b]",
    "grid.hardware=[mi355x]",
    "grid.num_gpus=[16,8]",
    "grid.contexts=[1024,16384]",
]


def compose_cfg(*overrides):
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return sweep_config(compose("config", overrides=list(overrides)), kappa_star=True)


@pytest.fixture(scope="module")
def tiny():
    """gpt-4-rumoured on 8 MI355X at 16k (point [0, 0, 0, 0]): the optax solve stalled at 31.5 where
    the dense baseline no longer fits (zero gradient) and was stored as κ*; the exact crossing is
    near 8. Also 16 GPUs and 1k context: the shape of ``OTHER``."""
    cfg = compose_cfg(*TINY)
    return cfg, solve(cfg)[0]


@jax.jit
def _dense_scan(m, hw, parts, pmask, wl, acc, ks):
    """The dense baseline's best-partition throughput per GPU at each κ of ``ks`` (one program for every model)."""
    return jax.vmap(lambda k: best_partition(keep_attention(m, k), hw, parts, pmask, wl, acc)[1])(ks)


def _scan(cfg, model, hardware, num_gpus, context, n=400, rounds=2):
    """Independent brute force: the dense/MoE throughput ratio on a geometric κ grid (exact model,
    full partition search at every κ), refined ``rounds`` times around the first κ where the MoE
    is at least as fast. Returns the bracket (lo, hi) holding the crossing: after two rounds of 400
    points over [0.25, 64] its width is 256^(1/399²) − 1 ≈ 3.5e-5 relative."""
    m, hw = load_model(model, **{k: v for k, v in vars(cfg.grid.dtypes).items() if v}), load_hardware(hardware)
    acc, wl = grid_accounting(cfg.grid.accounting), Workload(context=context)
    space = cfg.grid.partitions.space()
    table, mask = partition_table([num_gpus], space)
    moe = float(best_partition(m, hw, partitions_from_table(table[0]), mask[0], wl, acc)[1])
    table, mask = partition_table([num_gpus], dataclasses.replace(space, ep=(1,)))
    parts, pmask = partitions_from_table(jnp.asarray(table[0])), jnp.asarray(mask[0])
    lo, hi = max(cfg.breakeven.kappa_min, 1.001 * float(kappa_exists(m))), cfg.breakeven.kappa_max
    for _ in range(rounds):
        ks = np.geomspace(lo, hi, n)
        ratio = np.asarray(_dense_scan(cast(m, jnp.float64), hw, parts, pmask, wl, acc, ks)) / moe
        i = int(np.argmax(ratio <= 1))
        assert ratio[0] > 1 >= ratio[i] and i > 0, "no crossing inside the scanned range"
        lo, hi = ks[i - 1], ks[i]
    return lo, hi


def test_kappa_star_matches_brute_force_scan(tiny):
    """κ* as stored lies inside the brute-force bracket, widened by its stated relative precision
    (4.2e-5) plus 1e-5 for float32 against the float64 scan."""
    cfg, out = tiny
    prec = out["variable_attrs"]["kappa_star"]["relative_precision"]
    assert prec == pytest.approx(np.expm1(np.log(256) / 2**17), rel=1e-9) and prec < cfg.breakeven.tolerance
    assert (out["reason"] == 0).all()  # every point of the grid, the scanned ones among them
    for i, model in enumerate(cfg.grid.models):
        lo, hi = _scan(cfg, model, "mi355x", 8, 16384.0)
        k = float(out["kappa_star"][i, 0, 0, 0])
        assert lo * (1 - prec - 1e-5) <= k <= hi * (1 + prec + 1e-5), (model, k, lo, hi)


def test_bound_limited_is_never_found(tiny):
    """With the bracket below (above) every point's exact crossing, κ* is NaN and the reason says that
    it lies above kappa_max (below kappa_min); the old solver stored a bound or a stalled value as found."""
    _, out = tiny
    k = out["kappa_star"]
    below = compose_cfg(*TINY, "breakeven.kappa_min=0.25", f"breakeven.kappa_max={0.9 * k.min():.6g}")
    above = compose_cfg(*TINY, f"breakeven.kappa_min={1.1 * k.max():.6g}", "breakeven.kappa_max=64")
    for c, reason in ((below, "above_kappa_max"), (above, "below_kappa_min")):
        o = solve(c)[0]
        said = o["reason"] == REASONS.index(reason)
        # a dense baseline that no longer fits at the bracket's low end (gpt-4-rumoured on 8 MI355X above its κ*) says so
        assert (said | (o["reason"] == REASONS.index("dense_infeasible"))).all() and said.any()
        assert np.isnan(o["kappa_star"]).all()
        assert not o["agrees"].any()


def test_too_few_bisection_steps_are_refused():
    with pytest.raises(SpecError, match=r"breakeven.bisection_steps = 8 is invalid: .* at least 12 for tolerance"):
        solve(compose_cfg(*TINY, "breakeven.bisection_steps=8"))


def test_same_point_same_kappa_star_under_another_grid(tiny):
    """A point's κ* does not depend on the other models, cluster sizes or contexts of its grid
    when the partition space is the same (issue 11 item 8)."""
    _, out = tiny
    other = solve(compose_cfg(*OTHER))[0]
    np.testing.assert_allclose(other["kappa_star"][1, 0, 1, 1], out["kappa_star"][1, 0, 0, 0], rtol=1e-6)


def test_partition_space_is_stated(solved):
    """The dataset says which space was searched, and the report says when it is narrower than
    the default; candidate counts equal the partition tables' (another code path)."""
    out, _, stdout = solved
    with xr.open_dataset(out) as ds:
        space = json.loads(ds.attrs["partition_space"])
    assert all(space[k] == v for k, v in QUICK_YAML.items()) and space["dense_tp"] == [1, 2, 4, 8]  # the schema's default
    assert space["candidates"] == {"8": int(partition_table([8], QUICK)[1].sum())}
    assert space["default_candidates"] == {"8": int(partition_table([8], PartitionSpace())[1].sum())}
    assert space["candidates"]["8"] < space["default_candidates"]["8"]
    assert (
        "note: searched a narrower partition space than the default (leaves out ep 16/32/64, pp 4, dp_attn 4/8, kvp 4/8" in stdout
    )
    assert partition_space_note(partition_space_json(compose_cfg("+grid=frontier").grid)) is None


def test_flat_lift_equals_the_nested_lift():
    """``lift_flat`` (small κ* grids) and ``lift`` (large ones) give the same array for a point
    function using every argument, with (all, dense) table and mask pairs as the κ* kernel has."""
    table, mask = partition_table([8, 16], SMALL)
    dense_table, dense_mask = partition_table([8, 16], dataclasses.replace(SMALL, ep=(1,)))
    inputs = GridInputs(
        stack([load_model("mixtral-8x22b"), load_model("deepseek-v3"), load_model("grok-1")]),
        stack([load_hardware("b200"), load_hardware("h100-sxm")]),
        table,
        mask,
        np.array([1024.0, 4096.0, 65536.0]),
        dense_table,
        dense_mask,
    )

    def point(m, hw, parts, pmask, context, scale):
        (p, dense_p), (ok, dense_ok) = parts, pmask
        return (
            scale * (m.n_layers * hw.hbm_bw + context)
            + jnp.sum(jnp.where(ok, p.tp * p.ep, 0.0))
            + jnp.sum(jnp.where(dense_ok, dense_p.tp, 0.0)),
            ok.sum(),
        )

    args = (*device_inputs(inputs, jnp.float64), jnp.float64(0.5))
    nested, flat = jax.jit(lift(point))(*args), jax.jit(lift_flat(point))(*args)
    for a, b in zip(nested, flat):
        assert a.shape == (3, 2, 2, 3)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
