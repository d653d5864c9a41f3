"""moejax.plot on a real quick-grid dataset (sensitivities and κ* included): files, and the plotted
arrays equal the dataset slices."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from moejax.plot import default_selection, make_plots

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    out = d / "sweep.nc"
    subprocess.run([sys.executable, "-m", "moejax.sweep", "+grid=quick", "sensitivities=true", "breakeven.include=true",
                    "summary=false", f"out={out}", f"hydra.run.dir={d / 'hydra'}", f"parts_dir={d / 'parts'}"],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    return out


def test_cli_writes_every_figure(dataset, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "moejax.plot", str(dataset), "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("throughput", "reuse_gap", "bound", "kappa_star", "roofline", "sensitivity"):
        for ext in ("png", "svg"):
            f = tmp_path / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert "selection: model deepseek-v3, hardware h100-sxm" in proc.stdout


def test_plotted_arrays_are_dataset_slices(dataset, tmp_path):
    with xr.open_dataset(dataset) as ds:
        sel = default_selection(ds)
        assert sel["kappa"] == 5.0 and sel["model"] == str(ds.model.values[0])
        feas = ds.feasible.sel(model=sel["model"], hardware=sel["hardware"], variant="moe")
        assert sel["num_gpus"] == int(ds.num_gpus.values[feas.any(("kappa", "context")).values].max())
        res = make_plots(ds, tmp_path)
        point = dict(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"])
        a = res["throughput"][2]
        np.testing.assert_array_equal(a["moe"], ds.throughput_per_gpu.sel(variant="moe", kappa=5.0, **point).values)
        for k in ds.kappa.values:
            np.testing.assert_array_equal(a[f"dense_kappa_{float(k):g}"],
                                          ds.throughput_per_gpu.sel(variant="dense", kappa=k, **point).values)
        a = res["reuse_gap"][2]
        for v in ("capacity_factor", "reuse_gap"):
            np.testing.assert_array_equal(a[v], ds[v].sel(kappa=5.0, **point).values)
        np.testing.assert_array_equal(a["routing_factor"], float(ds.routing_factor.sel(model=sel["model"])))
        both = np.isfinite(a["reuse_gap"])
        np.testing.assert_allclose(a["reuse_gap"][both], (a["routing_factor"] * a["capacity_factor"])[both], rtol=1e-5)
        where = dict(model=sel["model"], hardware=sel["hardware"])
        np.testing.assert_array_equal(res["bound"][2]["bound"],
                                      ds.bound.sel(variant="moe", kappa=5.0, **where).transpose("num_gpus", "context").values)
        np.testing.assert_array_equal(res["kappa_star"][2]["kappa_star"],
                                      ds.kappa_star.sel(**where).transpose("num_gpus", "context").values)
        s = res["sensitivity"][2]
        for i, name in enumerate(s["variables"]):
            np.testing.assert_array_equal(s["moe"][i], ds[name].sel(variant="moe", kappa=5.0, **point).values)
            np.testing.assert_array_equal(s["dense"][i], ds[name].sel(variant="dense", kappa=5.0, **point).values)
        r = res["roofline"][2]
        import moejax

        hw = moejax.load_hardware(sel["hardware"])
        assert float(r["ridge_bf16"]) == pytest.approx(float(hw.flops_bf16) / float(hw.hbm_bw))
        np.testing.assert_allclose(r["attainable_fp8"], np.minimum(float(hw.flops_fp8), float(hw.hbm_bw) * r["intensity"]))


def test_optional_figures_skipped_with_a_note(dataset, tmp_path, capsys):
    with xr.open_dataset(dataset) as ds:
        bare = ds.drop_vars([n for n in ds.data_vars if n.startswith("elasticity_")] + ["kappa_star"])
        res = make_plots(bare, tmp_path, model="mixtral-8x22b", hardware="b200", num_gpus=8, kappa=2.2)
    out = capsys.readouterr().out
    assert "kappa_star figure skipped" in out and "sensitivity figure skipped" in out
    assert set(res) == {"throughput", "reuse_gap", "bound", "roofline"}


def test_bad_selection_is_one_line_error(dataset):
    proc = subprocess.run([sys.executable, "-m", "moejax.plot", str(dataset), "--model", "nope"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: model = 'nope'")
