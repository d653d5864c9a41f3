"""python -m moejax.report: one self-contained HTML page from a real quick-grid sweep with the
serving frontier, opened offline in headless Chromium (Playwright): no console errors, no request
leaves file://, every selector changes the plots, the screenshot is not blank; bad input as one
line with exit code 2 and no file. The browser test skips when /usr/bin/chromium or playwright is
missing (.ci/run installs both)."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from moejax.figures.report import compact
from moejax.report import main

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SELECTORS = ("model", "hardware", "num_gpus", "context")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """The quick grid at two contexts and 8/16 GPUs with a small serving frontier (batches 1, 16,
    256; 7 interactivity levels), written by the sweep; then κ*, κ* along the frontier and
    elasticities added in-process with the sweep's names, dims and flag attributes (their solvers
    cost 40 s; the page only reads them)."""
    d = tmp_path_factory.mktemp("report")
    raw = d / "sweep.nc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "moejax.sweep",
            "+grid=quick",
            "grid.contexts=[1024,8192]",
            "grid.num_gpus=[8,16]",
            "grid.batches=[1,16,256]",
            "grid.interactivity={min:1,max:1000,count:7}",
            "summary=false",
            f"out={raw}",
            f"hydra.run.dir={d / 'hydra'}",
            f"parts_dir={d / 'parts'}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    with xr.open_dataset(raw) as ds:
        ds = ds.load()
    point = ("model", "hardware", "num_gpus", "context")
    shape = tuple(ds.sizes[k] for k in point)
    rng = np.random.default_rng(0)
    flags = {
        "flag_values": np.arange(5, dtype=np.int8),
        "flag_meanings": "found below_kappa_min above_kappa_max moe_infeasible dense_infeasible",
    }
    reason = rng.integers(0, 5, shape).astype(np.int8)
    ds["kappa_star"] = (point, np.where(reason == 0, rng.uniform(1, 8, shape), np.nan), {"units": "1"})
    ds["reason"] = (point, reason, flags)
    levels = shape + (ds.sizes["interactivity"],)
    reason_u = rng.integers(0, 5, levels).astype(np.int8)
    ds["kappa_star_frontier"] = (
        point + ("interactivity",),
        np.where(reason_u == 0, rng.uniform(1, 8, levels), np.nan),
        {"units": "1"},
    )
    ds["kappa_star_frontier_reason"] = (point + ("interactivity",), reason_u, flags)
    full = ds.throughput_per_gpu.dims
    for name in ("hbm_bw", "flops_fp8", "inter_bw"):
        ds[f"elasticity_{name}"] = (full, rng.uniform(-0.2, 1.0, ds.throughput_per_gpu.shape), {"units": "1"})
    out = d / "report-sweep.nc"
    ds.to_netcdf(out)
    return out


@pytest.fixture(scope="module")
def validation_csv(tmp_path_factory) -> Path:
    """A validation.csv in the columns python -m moejax.validate writes (made-up rows)."""
    path = tmp_path_factory.mktemp("validation") / "validation.csv"
    header = [
        "id",
        "firmness",
        "phase",
        "figure",
        "measured",
        "predicted",
        "log_ratio",
        "feasible",
        "bound",
        "dominant",
        "batch",
        "b_max",
        "t_compute",
        "t_hbm",
        "t_comm",
        "t_comm_exposed",
        "notes",
    ]
    rows = [
        ["a", "exact", "decode", "step_time", 0.03, 0.028],
        ["b", "prose", "decode", "throughput_per_gpu", 1500, 1720],
        ["c", "exact", "prefill", "throughput_per_gpu", 9000, 8100],
        ["d", "prose", "decode", "tokens_per_s_per_user", 30, np.nan],
    ]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(r + [0.0, True, "hbm", "hbm", 64, 100, 0, 0, 0, 0, ""])
    return path


@pytest.fixture(scope="module")
def page(dataset, validation_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("page") / "report.html"
    assert main([str(dataset), "--out", str(out), "--validation", str(validation_csv.parent)]) == 0
    return out


def test_page_is_self_contained(page):
    text = page.read_text()
    assert page.stat().st_size < 10e6
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", text)  # everything inline
    for panel in ("frontier", "kappa_star_frontier", "kappa_star", "bound", "sensitivity", "validation"):
        assert f'id="plot-{panel}"' in text, panel
    assert "panel omitted" not in text
    assert 'data-dim="accounting" disabled' in text and ">realistic</option>" in text


def test_absent_variables_are_notes(dataset, tmp_path, capsys):
    with xr.open_dataset(dataset) as ds:
        bare = ds.drop_vars([n for n in ds.data_vars if n.startswith(("frontier_", "elasticity_", "kappa_star"))] + ["reason"])
        bare.to_netcdf(tmp_path / "bare.nc")
    assert main([str(tmp_path / "bare.nc")]) == 0
    text = (tmp_path / "report.html").read_text()
    assert 'id="plot-bound"' in text and 'id="plot-frontier"' not in text
    assert len(re.findall(r"panel omitted", text)) == 5  # frontier, κ* frontier, κ* map, sensitivities, validation


def test_compact_rounds_and_nulls():
    assert compact([123456.0, 0.00012345678, np.nan, np.inf, 0.0, -2.5]) == [123500.0, 0.0001235, None, None, 0.0, -2.5]
    assert compact([0.0, 3.0], positive=True) == [None, 3.0]


def _error(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_bad_input_is_one_line(dataset, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert "no such file" in _error(capsys, tmp_path / "nope.nc", "--out", out)
    text = tmp_path / "notes.nc"
    text.write_text("not netCDF\n")
    assert "not a readable netCDF file" in _error(capsys, text, "--out", out)
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(other)
    assert "not a moejax sweep dataset" in _error(capsys, other, "--out", out)
    assert "not a readable validation.csv" in _error(capsys, dataset, "--out", out, "--validation", text)
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    out.write_text("keep me")
    assert "the file exists" in _error(capsys, dataset, "--out", out)
    assert out.read_text() == "keep me"


def _playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium; .ci/run installs it)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is missing (pip install -e '.[test]')")
    from playwright.sync_api import sync_playwright

    return sync_playwright


def test_page_in_headless_chromium(page, tmp_path):
    from PIL import Image

    sync_playwright = _playwright()
    problems, remote = [], []
    data = "JSON.stringify(Array.from(document.querySelectorAll('.plot')).map(d => d.data))"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            tab.on("pageerror", lambda e: problems.append(str(e)))
            tab.route(
                "**/*",
                lambda r: r.continue_() if r.request.url.startswith("file:") else (remote.append(r.request.url), r.abort()),
            )
            tab.goto(page.as_uri())
            tab.wait_for_function("window.moejaxReport && window.moejaxReport.ready", timeout=15000)
            counts = tab.evaluate("Array.from(document.querySelectorAll('.plot')).map(d => [d.id, (d.data || []).length])")
            assert all(n > 0 for _, n in counts) and len(counts) == 6, counts
            for dim in (*SELECTORS, "group"):
                select = tab.locator(f"#select-{dim}")
                before, first = tab.evaluate(data), select.input_value()
                options = select.locator("option").evaluate_all("os => os.map(o => o.value)")
                changed = False
                for value in options:
                    if value == first:
                        continue
                    select.select_option(value)
                    if tab.evaluate(data) != before:
                        changed = True
                        break
                assert changed, f"selecting another {dim} changed no plot"
            shot = tmp_path / "report.png"
            tab.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == [] and remote == []
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "the screenshot is (nearly) blank"


def test_hover_numbers_are_the_datasets(page, dataset):
    """The embedded frontier, $/Mtok and J/token equal the dataset's to 4 significant figures."""
    import base64
    import gzip

    blob = re.search(r'id="moejax-data">([^<]+)<', page.read_text()).group(1)
    data = json.loads(gzip.decompress(base64.b64decode(blob)))
    with xr.open_dataset(dataset) as ds:
        d = data["dims"]
        m, h = d["model"].index("deepseek-v3"), d["hardware"].index("b200")
        at = dict(model="deepseek-v3", hardware="b200", num_gpus=16, context=8192.0, variant="dense", kappa=5.0)
        k = data["frontier"]["curves"].index("dense, κ = 5")
        for name, key in (
            ("frontier_throughput_per_gpu", "tput"),
            ("frontier_cost_per_mtok", "cost"),
            ("frontier_joules_per_token", "joules"),
        ):
            want = ds[name].sel(**at).values
            got = np.array(data["frontier"][key][m][h][d["num_gpus"].index("16")][d["context"].index("8k")][k], dtype=float)
            ok = np.isfinite(want) & (want > 0)
            np.testing.assert_allclose(got[ok], want[ok], rtol=5e-4)
            assert np.isnan(got[~ok & (ds.frontier_throughput_per_gpu.sel(**at).values <= 0)]).all()
