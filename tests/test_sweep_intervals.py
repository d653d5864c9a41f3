"""80 % prediction intervals in a sweep (``analysis/validation/sweep_intervals.py``): the bounds are
the central values times the preset's factors for each accelerator, the rule and its reason are
stored per accelerator, and a preset without intervals (or one changed by an override) says so."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest
import xarray as xr
from cli_runs import run_main

from moejax.analysis.validation import intervals
from moejax.analysis.validation.sweep_intervals import interval_table, interval_writer
from moejax.engine.config import AccountingOverrides
from moejax.engine.variables import INTERVAL_RULES

REALISTIC = AccountingOverrides(mode="realistic")


def _file(path, hardware, step_time, ttft):
    """A sweep-like netCDF file: step_time, throughput_per_gpu and serving_ttft along (hardware, x)."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("hardware", len(hardware))
        nc.createDimension("x", step_time.shape[1])
        for name, values, units in (
            ("step_time", step_time, "s"),
            ("throughput_per_gpu", 100.0 / step_time, "s-1"),
            ("serving_ttft", ttft, "s"),
        ):
            v = nc.createVariable(name, "f8", ("hardware", "x"))
            v.units = units
            v[:] = values


def test_bounds_are_the_central_values_times_the_presets_factors(tmp_path):
    """Per accelerator: step time and TTFT times [lo, hi], throughput divided by [hi, lo]; a calibrated
    system and an unseen family (extrapolated, wider) side by side; NaN stays NaN."""
    hardware = ["h200", "mi300x"]
    step, ttft = np.array([[0.01, 0.02], [0.03, np.nan]]), np.array([[0.5, 1.0], [2.0, 3.0]])
    path = tmp_path / "s.nc"
    _file(path, hardware, step, ttft)
    with netCDF4.Dataset(path, "r+") as nc:
        interval_writer(REALISTIC, hardware)(nc)
    table = intervals.load("realistic")
    with xr.open_dataset(path) as ds:
        for i, name in enumerate(hardware):
            bd, status, reason = intervals.lookup(table, None, name)
            assert int(ds.interval[i]) == INTERVAL_RULES.index(status) and f"{name}: {status}" in ds.interval.attrs["reasons"]
            assert reason in ds.interval.attrs["reasons"]
            (t_lo, t_hi), (f_lo, f_hi) = bd["tpot"], bd["ttft"]
            np.testing.assert_array_equal(ds.step_time_lo[i], step[i] * t_lo)
            np.testing.assert_array_equal(ds.step_time_hi[i], step[i] * t_hi)
            np.testing.assert_array_equal(ds.throughput_per_gpu_lo[i], (100.0 / step[i]) / t_hi)
            np.testing.assert_array_equal(ds.throughput_per_gpu_hi[i], (100.0 / step[i]) / t_lo)
            np.testing.assert_array_equal(ds.serving_ttft_lo[i], ttft[i] * f_lo)
            np.testing.assert_array_equal(ds.serving_ttft_hi[i], ttft[i] * f_hi)
        assert ds.interval.values.tolist() == [0, 1]  # h200 is in the calibration data, cdna3 is not
        assert (ds.step_time_hi / ds.step_time_lo)[1, 0] >= (ds.step_time_hi / ds.step_time_lo)[0, 0]  # wider
        assert np.isnan(ds.step_time_lo[1, 1]) and ds.step_time_lo.attrs["units"] == "s"


@pytest.mark.parametrize(
    "accounting,fragment",
    [
        (AccountingOverrides(mode="layered"), "accounting layered has no calibrated intervals"),
        (AccountingOverrides(mode="realistic", overlap=0.5), "grid.accounting.overlap changes the fitted preset"),
    ],
)
def test_no_table_no_bounds_and_the_reason(accounting, fragment, tmp_path):
    assert interval_table(accounting)[0] is None
    path = tmp_path / "s.nc"
    _file(path, ["h200"], np.array([[0.01]]), np.array([[0.5]]))
    with netCDF4.Dataset(path, "r+") as nc:
        interval_writer(accounting, ["h200"])(nc)
    with xr.open_dataset(path) as ds:
        assert ds.interval.values.tolist() == [INTERVAL_RULES.index("none")] and fragment in ds.interval.attrs["reasons"]
        assert not [v for v in ds.data_vars if v.endswith(("_lo", "_hi"))]


def test_a_serving_sweep_carries_its_intervals(tmp_path):
    """The main job at its default preset (realistic, which carries an interval table): the bounds hold
    their central value (lo <= central <= hi)."""
    out = tmp_path / "s.nc"
    code, _, err = run_main(
        "moejax.sweep",
        [
            "+grid=quick",
            "grid.models=[mixtral-8x22b]",
            "grid.hardware=[h200,mi300x]",
            "grid.num_gpus=[8]",
            "grid.contexts=[4096]",
            "summary=false",
            f"out={out}",
            f"parts_dir={tmp_path / 'parts'}",
        ],
        hydra_dir=tmp_path / "run",
    )
    assert code == 0, err[-3000:]
    with xr.open_dataset(out) as ds:
        assert ds.interval.values.tolist() == [0, 1]
        ok = ds.feasible.values.astype(bool)
        assert ok.any()
        for name in ("step_time", "throughput_per_gpu"):
            lo, mid, hi = (ds[name + s].values[ok] for s in ("_lo", "", "_hi"))
            assert (lo <= mid).all() and (mid <= hi).all() and (lo < hi).all(), name
