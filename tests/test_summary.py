"""The end-of-run summary (moejax.analysis.summary) on real tiny sweeps: the best MoE configuration,
κ* with its flag, "infeasible" instead of 0.00x, aligned columns for long names, and
keep_partitions datasets (which used to crash the summary and moejax.plot)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from moejax.analysis.summary import best_per_point, summary
from moejax.plot import make_plots

REPO = Path(__file__).resolve().parent.parent
TINY = ["+grid=quick", "grid.hardware=[h100-sxm,b200]", "grid.num_gpus=[8,16]", "grid.contexts=[1024,65536]"]


def _sweep(d: Path, name: str, *extra) -> tuple[Path, str]:
    out = d / f"{name}.nc"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "moejax.sweep",
            *TINY,
            *extra,
            f"out={out}",
            f"hydra.run.dir={d / 'hydra'}",
            f"parts_dir={d / 'parts'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    d = tmp_path_factory.mktemp("summary")
    return {"best": _sweep(d, "best"), "kept": _sweep(d, "kept", "keep_partitions=true")}


def _cells(line: str) -> list[tuple[int, int]]:
    """Spans of a table line's cells (cells are separated by two or more spaces)."""
    return [m.span() for m in re.finditer(r"\S+(?: \S+)*", line)]


def _tables(text: str) -> list[list[str]]:
    """The tables of a summary: runs of lines after a header line starting with 'model'."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("model "):
            current = [line]
            tables.append(current)
        elif current is not None and line.strip() and not line.endswith(":") and "(" not in line[:1]:
            current.append(line)
        else:
            current = None
    return tables


def _assert_aligned(table: list[str]) -> None:
    """Every column either starts (left-aligned) or ends (right-aligned) at one position in every row."""
    spans = [_cells(line) for line in table]
    full = [s for s in spans if len(s) == len(spans[0])]
    assert len(full) >= 2, table
    for col in range(len(spans[0])):
        starts, ends = {s[col][0] for s in full}, {s[col][1] for s in full}
        assert len(starts) == 1 or len(ends) == 1, (col, table)


def test_keep_partitions_sweep_prints_the_summary(sweeps):
    """`python -m moejax.sweep +grid=quick keep_partitions=true` (README) used to crash in the summary."""
    _, stdout = sweeps["kept"]
    assert "all candidate partitions kept: each point is shown at its best feasible one" in stdout
    assert "best MoE configuration" in stdout and "deepseek-v3" in stdout and "Traceback" not in stdout


def test_best_per_point_matches_the_sweeps_own_search(sweeps):
    """Reducing the kept candidates gives the sweep's device-side best-partition search."""
    with xr.open_dataset(sweeps["best"][0]) as best, xr.open_dataset(sweeps["kept"][0]) as kept:
        reduced = best_per_point(kept)
        assert "partition" not in reduced.dims
        for v in ("throughput_per_gpu", "step_time"):
            np.testing.assert_allclose(reduced[v].values, best[v].values, rtol=1e-6)
        ok = best.feasible.values == 1
        np.testing.assert_array_equal(reduced.bound.values, best.bound.values)
        np.testing.assert_allclose(reduced.batch.values[ok], best.batch.values[ok], rtol=1e-6)
        # the winner's degrees give the same throughput: same partition or an exact tie
        for f in ("tp", "ep", "pp"):
            assert np.isnan(reduced[f].values[~ok]).all() and np.isfinite(reduced[f].values[ok]).all()


def test_summary_shows_the_best_moe_configuration(sweeps):
    path, stdout = sweeps["best"]
    text = summary(path)
    assert text in stdout
    with xr.open_dataset(path) as ds:
        moe = ds.sel(model="deepseek-v3", variant="moe", kappa=5.0)
        i = np.unravel_index(int(np.argmax(moe.throughput_per_gpu.values)), moe.throughput_per_gpu.shape)
        at = moe.isel(dict(zip(moe.throughput_per_gpu.dims, i)))
        expect = [
            f"{float(at.throughput_per_gpu):.4g}",
            str(at.hardware.values),
            str(int(at.num_gpus)),
            f"{float(at.batch):.0f}",
            f"TP{int(at.tp)} EP{int(at.ep)} PP{int(at.pp)}",
            f"{1e3 * float(at.step_time):.3g} ms",
            ["compute", "hbm", "communication"][int(at.bound)],
        ]
    row = next(line for line in _tables(text)[0] if line.startswith("deepseek-v3"))
    cells = [row[a:b] for a, b in _cells(row)]
    for e in expect:
        assert any(c == e or c.startswith(e) for c in cells), (e, row)


def test_long_names_keep_columns_aligned(sweeps, tmp_path):
    with xr.open_dataset(sweeps["best"][0]) as ds:
        long = ds.assign_coords(
            model=["deepseek-v3-with-a-very-long-custom-name", "m"],
            hardware=["h100-sxm", "an-accelerator-with-a-long-design-space-name"],
        ).load()
    long.to_netcdf(tmp_path / "long.nc")
    tables = _tables(summary(tmp_path / "long.nc"))
    assert len(tables) == 2
    for t in tables:
        _assert_aligned(t)


def test_infeasible_dense_prints_infeasible_not_zero(sweeps, tmp_path):
    with xr.open_dataset(sweeps["best"][0]) as ds:
        ds = ds.load()
    dense = {"variant": "dense"}
    ds["throughput_per_gpu"].loc[dense] = 0.0
    ds["feasible"].loc[dense] = 0
    ds.to_netcdf(tmp_path / "nodense.nc")
    text = summary(tmp_path / "nodense.nc")
    assert "0.00x" not in text and text.count("dense infeasible") == 4  # 2 models x (shortest, longest context)


@pytest.mark.parametrize("style", ["old", "new"])
def test_kappa_star_shown_with_flag_meanings_from_attrs(sweeps, tmp_path, style):
    """κ* column: the value where the flag means found, the meaning otherwise; the flag values are
    looked up in the attributes (the new-style meanings are deliberately in another order)."""
    with xr.open_dataset(sweeps["best"][0]) as ds:
        ds = ds.load()
    dims = ("model", "hardware", "num_gpus", "context")
    shape = tuple(ds.sizes[d] for d in dims)
    value = np.full(shape, 7.25)
    if style == "old":
        meanings, found, other = "found moe_always_ahead dense_always_ahead moe_infeasible dense_infeasible", 0, 2
    else:
        meanings, found, other = "infeasible above_kappa_max found below_kappa_min", 2, 1
    reason = np.full(shape, found, np.int8)
    reason[1] = other  # the second model: no crossing
    value[1] = np.nan if style == "old" else 64.0  # the new solver may keep the bound it stopped at
    n = len(meanings.split())
    ds["kappa_star"] = (dims, value)
    ds["reason"] = (dims, reason, {"flag_values": np.arange(n, dtype=np.int8), "flag_meanings": meanings})
    if style == "old":
        agrees = np.ones(shape, np.int8)
        agrees[0, :, :, -1] = 0  # deepseek-v3 at the longest context: the solvers disagree
        ds["agrees"] = (dims, agrees, {"flag_values": np.array([0, 1], np.int8), "flag_meanings": "flagged agrees"})
    else:  # the new solver keeps the optax value as a diagnostic
        optax = value.copy()
        optax[0, :, :, -1] *= 1.5  # deepseek-v3 at the longest context: the solvers disagree
        ds["kappa_star_optax"] = (dims, optax)
    ds.to_netcdf(tmp_path / "ks.nc")
    table = _tables(summary(tmp_path / "ks.nc"))[1]
    assert table[0].split()[-1] == "kappa*"
    rows = {(line.split()[0], line.split()[1]): line for line in table[1:]}
    assert rows[("deepseek-v3", "1k")].endswith("7.25")
    assert rows[("deepseek-v3", "64k")].endswith("7.25 (!)")
    expect = "dense always ahead" if style == "old" else "64 above kappa max"
    assert all(line.endswith(expect) for (m, _), line in rows.items() if m == "mixtral-8x22b")


def test_plot_on_a_keep_partitions_dataset(sweeps, tmp_path):
    """moejax.plot used to crash on keep_partitions datasets; it now plots the best partition per
    point, which equals the best-partition sweep's figures."""
    with xr.open_dataset(sweeps["kept"][0]) as kept, xr.open_dataset(sweeps["best"][0]) as best:
        a = make_plots(kept, tmp_path / "kept")
        sel = {k: a["throughput"][2]["selection"][k] for k in ("model", "hardware", "num_gpus")}
        np.testing.assert_allclose(
            a["throughput"][2]["moe"], best.throughput_per_gpu.sel(variant="moe", kappa=5.0, **sel).values, rtol=1e-6
        )
        np.testing.assert_array_equal(
            a["bound"][2]["bound"],
            best.bound.sel(variant="moe", kappa=5.0, model=sel["model"], hardware=sel["hardware"])
            .transpose("num_gpus", "context")
            .values,
        )
        np.testing.assert_allclose(a["reuse_gap"][2]["reuse_gap"], best.reuse_gap.sel(kappa=5.0, **sel).values, rtol=1e-6)
    assert {"throughput", "reuse_gap", "bound", "roofline"} <= set(a)
    for png, svg, _, _ in a.values():
        assert png.stat().st_size > 1000 and svg.stat().st_size > 1000


def test_summary_states_a_narrower_partition_space(sweeps):
    """The quick grid searches fewer partitions than the default space: its summary says so (one
    line naming what was left out), since its results can differ from a default-space grid."""
    _, stdout = sweeps["best"]
    note = [line for line in stdout.splitlines() if "narrower partition space" in line]
    assert len(note) == 1 and "ep 16/32/64" in note[0], stdout
