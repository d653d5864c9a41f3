"""Elasticities from autodiff against central finite differences; Table 3 columns in the sweep."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from cli_runs import run_main
from points import random_point

from moejax import Accounting, HardwareSpec, ModelSpec, Partition, Workload, decode_point, load_hardware, load_model
from moejax.engine.grid import ELASTICITY_FIELDS, elasticities
from moejax.physics.baseline import reuse_gap


def _arrays(*specs):
    """Every leaf a float64 array, as the sweep passes them: the autodiff then traces one program for
    every point (``physics/xp.py``'s ``trace_once`` keys its cache on the Python-number leaves)."""
    return tuple(jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=float), s) for s in specs)


def _log_tput(m, hw, p, wl, acc):
    return float(jnp.log(decode_point(m, hw, p, wl, dataclasses.replace(acc, integer_batch=False)).throughput_per_gpu))


@pytest.mark.parametrize("seed", range(12))
def test_elasticities_match_finite_differences(seed):
    m, hw, p, wl, acc = random_point(np.random.default_rng(seed))
    m, hw, p, wl, acc = ModelSpec(**m), HardwareSpec(**hw), Partition(**p), Workload(**wl), Accounting(**acc)
    if not bool(decode_point(m, hw, p, wl, dataclasses.replace(acc, integer_batch=False)).feasible):
        pytest.skip("infeasible point")
    got = np.asarray(elasticities(*_arrays(m, hw, p, wl, acc)))
    h = 1e-6
    for i, f in enumerate(ELASTICITY_FIELDS):
        x = getattr(hw, f)
        up = _log_tput(m, dataclasses.replace(hw, **{f: x * np.exp(h)}), p, wl, acc)
        down = _log_tput(m, dataclasses.replace(hw, **{f: x * np.exp(-h)}), p, wl, acc)
        # kinks (max, island switch) sit on a set of measure zero; a random point is off them
        np.testing.assert_allclose(got[i], (up - down) / (2 * h), rtol=1e-4, atol=1e-7, err_msg=f)


def test_hbm_bound_point_has_unit_bandwidth_elasticity():
    """Batch-1 Llama-3-70B on 8×H100 TP8: t = t_hbm + exposed all-reduces and t_hbm ∝ 1/BW, so the
    HBM-bandwidth elasticity is exactly t_hbm / t; compute and capacity do not matter."""
    m, hw = load_model("llama-3-70b"), load_hardware("h100-sxm")
    p, wl = Partition(tp=8.0), Workload(context=1024.0, batch=1.0)
    r = decode_point(m, hw, p, wl, Accounting())
    e = dict(zip(ELASTICITY_FIELDS, np.asarray(elasticities(*_arrays(m, hw, p, wl, Accounting())))))
    # t = t_hbm + t_comm_exposed, t_hbm ∝ 1/BW: elasticity = t_hbm / t
    assert e["hbm_bw"] == pytest.approx(float(r.t_hbm / r.step_time), rel=1e-9)
    assert e["flops_bf16"] == pytest.approx(0.0, abs=1e-12)  # not compute bound anywhere
    assert e["hbm_bytes"] == pytest.approx(0.0, abs=1e-12)  # fixed batch: capacity does not matter


def test_sweep_table3_columns(tmp_path):
    """``python -m moejax.sweep +grid=quick sensitivities=true``, run in this process (cli_runs.run_main)."""
    out = tmp_path / "q.nc"
    args = ["+grid=quick", f"out={out}", "sensitivities=true", "summary=false", f"parts_dir={tmp_path / 'parts'}"]
    code, _, stderr = run_main("moejax.sweep", [*args, "compilation_cache=null"], hydra_dir=tmp_path / "run")
    assert code == 0, stderr[-2000:]
    with xr.open_dataset(out) as ds:
        assert float(ds.rho.sel(model="deepseek-v3")) == 8 / 256
        assert float(ds.rho_kappa.sel(model="deepseek-v3", kappa=5.0)) == pytest.approx(0.15625)
        pt = ds.sel(model="deepseek-v3", kappa=5.0, hardware="b200", num_gpus=8, context=65536.0)
        b_moe, b_dense = float(pt.batch.sel(variant="moe")), float(pt.batch.sel(variant="dense"))
        want = reuse_gap(256, 8, b_moe, b_dense)
        assert float(pt.r_moe) == pytest.approx(want["r_moe"])
        assert float(pt.capacity_factor) == pytest.approx(want["capacity_factor"], rel=1e-6)
        assert float(pt.reuse_gap) == pytest.approx(want["reuse_gap"], rel=1e-6)
        ratio = float(pt.throughput_per_gpu.sel(variant="dense") / pt.throughput_per_gpu.sel(variant="moe"))
        assert float(pt.dense_moe_ratio) == pytest.approx(ratio, rel=1e-6)
        assert "elasticity_hbm_bw" in ds and ds.elasticity_hbm_bw.attrs["units"] == "1"
        assert np.isnan(ds.elasticity_hbm_bw.values[ds.feasible.values == 0]).all()
        assert not np.isnan(ds.elasticity_hbm_bw.values[ds.feasible.values == 1]).any()
