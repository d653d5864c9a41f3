"""Break-even κ*: the optax solve against bisection and against independent evaluation."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import yaml

from moejax import Accounting, Workload, load_hardware, load_model
from moejax.catalogue import load_accounting
from moejax.analysis.breakeven import REASONS, Solver, breakeven_kernel
from moejax.engine.grid import (
    GridInputs,
    PartitionSpace,
    best_partition,
    cast,
    device_inputs,
    partition_table,
    partitions_from_table,
    stack,
)
from moejax.physics.baseline import keep_attention

ROOT = Path(__file__).resolve().parent.parent
SMALL = PartitionSpace(tp=(1, 2, 4, 8), ep=(1, 8), pp=(1,), dp_attn=(1, 2), kvp=(1,), kv_modes=("kvp",))


def cli(*args, check=True):
    return subprocess.run([sys.executable, "-m", "moejax.breakeven", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=check)


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    out = tmp_path_factory.mktemp("be") / "be.nc"
    proc = cli("+grid=quick", "grid.models=[deepseek-v3,mixtral-8x22b,switch-c-2048]", "grid.hardware=[b200,h100-sxm]",
               "grid.num_gpus=[8]", "grid.accounting.mode=sol", f"out={out}")
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


QUICK_ACCOUNTING = load_accounting("sol")  # the accounting of the solved fixture (stable physics, no fitted constants)
QUICK = PartitionSpace(**{k: tuple(v) for k, v in yaml.safe_load((ROOT / "conf/grid/quick.yaml").read_text())["partitions"].items()})


def _tput(m, hw, n, context):
    """MoE or dense throughput per GPU at the best candidate of the quick grid's search space."""
    table, mask = partition_table([n], QUICK)
    return float(best_partition(m, hw, partitions_from_table(table[0]), mask[0], Workload(context=context), QUICK_ACCOUNTING)[1])


def test_kappa_star_brackets_the_crossing(solved):
    """At every found point the dense baseline is ahead just below κ* and behind just above it,
    evaluated independently of the solver (full partition search, exact model)."""
    out, summary = solved
    with xr.open_dataset(out) as ds:
        found = ds.where(ds.reason == 0, drop=True)
        assert summary["found"] >= 6
        for model in found.model.values:
            for hw in found.hardware.values:
                for ctx in found.context.values:
                    k = float(ds.kappa_star_bisection.sel(model=model, hardware=hw, num_gpus=8, context=ctx))
                    if np.isnan(k):
                        continue
                    m, h = load_model(model, weights="fp8"), load_hardware(hw)  # the quick grid's dtypes
                    moe = _tput(m, h, 8, ctx)
                    assert _tput(keep_attention(m, 0.99 * k), h, 8, ctx) >= moe >= _tput(keep_attention(m, 1.01 * k), h, 8, ctx)


def test_docstring_example(solved):
    out, _ = solved
    with xr.open_dataset(out) as ds:
        pt = ds.sel(model="deepseek-v3", hardware="b200", num_gpus=8, context=65536.0)
        assert int(pt.reason) == 0 and float(pt.kappa_star) == pytest.approx(30.5, rel=5e-3)


def test_sweep_can_include_kappa_star(solved, tmp_path):
    out, _ = solved
    sweep = tmp_path / "s.nc"
    subprocess.run([sys.executable, "-m", "moejax.sweep", "+grid=quick", "grid.models=[mixtral-8x22b]", "grid.hardware=[b200]",
                    "grid.num_gpus=[8]", "grid.accounting.mode=sol", "breakeven.include=true", "summary=false",
                    f"out={sweep}", f"parts_dir={tmp_path / 'parts'}"], cwd=ROOT, check=True, capture_output=True)
    with xr.open_dataset(sweep) as s, xr.open_dataset(out) as b:
        np.testing.assert_allclose(s.kappa_star.values[0], b.kappa_star.sel(model=["mixtral-8x22b"], hardware=["b200"]).values[0], rtol=1e-6)
        assert s.reason.attrs["flag_meanings"].split() == list(REASONS)


def test_optax_agrees_with_bisection_where_flagged_so(solved):
    out, summary = solved
    with xr.open_dataset(out) as ds:
        ok, found = ds.agrees.values == 1, ds.reason.values == 0
        rel = np.abs(ds.kappa_star.values / ds.kappa_star_bisection.values - 1)
        assert (rel[ok] <= 1e-3).all() and (rel[found & ~ok] > 1e-3).all()
        assert summary["agree"] >= 0.75 * summary["found"]  # most points agree; the rest are flagged, not hidden
        # exact model at κ*: dense ≈ MoE, up to the step an integer batch makes
        assert (np.abs(ds.ratio_at_kappa_star.values[ok] - 1) < 0.02).all()


def test_no_crossing_reasons(solved, tmp_path):
    out, _ = solved
    with xr.open_dataset(out) as ds:
        switch = ds.reason.sel(model="switch-c-2048", hardware="h100-sxm")
        assert (switch == REASONS.index("moe_infeasible")).all()  # 1.57 TB of FP8 weights on 640 GB
        assert np.isnan(ds.kappa_star.sel(model="switch-c-2048", hardware="h100-sxm")).all()
    narrow = cli("+grid=quick", "grid.models=[mixtral-8x22b]", "grid.hardware=[b200]", "grid.num_gpus=[8]",
                 "grid.contexts=[1024]", "breakeven.kappa_min=0.3", "breakeven.kappa_max=0.5", f"out={tmp_path / 'a.nc'}")
    assert json.loads(narrow.stdout.strip().splitlines()[-1])["reasons"]["dense_always_ahead"] == 1
    high = cli("+grid=quick", "grid.models=[mixtral-8x22b]", "grid.hardware=[b200]", "grid.num_gpus=[8]",
               "grid.contexts=[1024]", "breakeven.kappa_min=20", "breakeven.kappa_max=30", f"out={tmp_path / 'b.nc'}")
    assert json.loads(high.stdout.strip().splitlines()[-1])["reasons"]["moe_always_ahead"] == 1


def test_scaling_every_time_term_leaves_kappa_star_unchanged():
    """Doubling every bandwidth and FLOP/s and halving every latency halves every time; κ* is a
    ratio of throughputs at equal memory, so it does not move."""
    models = [load_model("mixtral-8x22b", weights="fp8"), load_model("deepseek-v3")]
    hw = load_hardware("b200")
    fast = dataclasses.replace(hw, **{f: getattr(hw, f) * 2 for f in ("hbm_bw", "flops_bf16", "flops_fp8", "flops_fp4", "intra_bw",
                                                                      "inter_bw", "link_bw")},
                               intra_latency=hw.intra_latency / 2, inter_latency=hw.inter_latency / 2)
    table, mask = partition_table([8], SMALL)
    dense_table, dense_mask = partition_table([8], dataclasses.replace(SMALL, ep=(1,)))
    inputs = GridInputs(stack(models), stack([hw, fast]), table, mask, np.array([4096.0, 65536.0]), dense_table, dense_mask)
    kernel = breakeven_kernel(Solver())
    out = kernel(*device_inputs(inputs, jnp.float64), jnp.float64(0.0), cast(Accounting(), jnp.float64),
                 jnp.float64(np.log(0.25)), jnp.float64(np.log(64.0)))
    k_opt, k_bis, reason = np.asarray(out[0]), np.asarray(out[1]), np.asarray(out[4])
    assert (reason == 0).all()
    np.testing.assert_allclose(k_bis[:, 0], k_bis[:, 1], rtol=1e-9)
    np.testing.assert_allclose(k_opt[:, 0], k_opt[:, 1], rtol=1e-6)


@pytest.mark.parametrize("args,expected", [
    (["breakeven.kappa_min=8", "breakeven.kappa_max=2"], "breakeven.kappa_min = 8.0 is invalid: must be below kappa_max = 2.0"),
    (["grid.models=[llama-3-70b]"], "it is a dense model (n_experts = 1)"),
])
def test_bad_input(args, expected, tmp_path):
    proc = cli("+grid=quick", *args, f"out={tmp_path / 'x.nc'}", check=False)
    assert proc.returncode == 2 and expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.nc").exists()
