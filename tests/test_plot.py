"""moejax.plot on a real tiny quick-grid dataset (sensitivities and κ* included): files, the plotted
arrays equal the dataset slices, labels inside their cells and not overlapping, legends off the
axes, texts inside the figure, dtypes in titles, operating points on the roofline, κ* flags, and
bad input as one line with exit code 2."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg

import moejax
from moejax.analysis.roofline import flop_per_token
from moejax.plot import default_selection, main, make_plots, plot_bound, plot_kappa_star

REPO = Path(__file__).resolve().parent.parent
FIGURES = ("throughput", "reuse_gap", "bound", "kappa_star", "roofline", "sensitivity")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    out = d / "sweep.nc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "moejax.sweep",
            "+grid=quick",
            "grid.models=[deepseek-v3]",
            "grid.contexts=[1024,65536]",
            "sensitivities=true",
            "breakeven.include=true",
            "summary=false",
            f"out={out}",
            f"hydra.run.dir={d / 'hydra'}",
            f"parts_dir={d / 'parts'}",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture(scope="module")
def figures(dataset, tmp_path_factory):
    with xr.open_dataset(dataset) as ds:
        return make_plots(ds.load(), tmp_path_factory.mktemp("figures"))


@pytest.fixture(scope="module")
def wide(dataset):
    """The real dataset tiled to 12 contexts, with every bound and κ* flag present: the crowded
    maps of a frontier-size grid."""
    with xr.open_dataset(dataset) as ds:
        ds = ds.load()
    idx = np.arange(12) % ds.sizes["context"]
    w = ds.isel(context=idx).assign_coords(context=2.0 ** np.arange(10, 22))
    bound = w.bound.values.copy()
    bound[..., 0::4], bound[..., 1::4] = 2, 3  # communication, infeasible: the longest labels
    w["bound"] = (w.bound.dims, bound, ds.bound.attrs)
    reason, ks = w.reason.values.copy(), w.kappa_star.values.copy()
    reason[..., 0::3], reason[..., 1::3] = 1, 4  # moe_always_ahead, dense_infeasible
    ks[reason != 0] = np.nan
    w["reason"], w["kappa_star"] = (w.reason.dims, reason, ds.reason.attrs), (w.kappa_star.dims, ks)
    return w


def _renderer(fig):
    if not hasattr(fig.canvas, "get_renderer"):  # plt.close detached the Agg canvas: attach a new one
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _overlap(a, b, tol=0.5) -> bool:
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def test_cli_writes_every_figure(dataset, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "moejax.plot", str(dataset), "--out", str(tmp_path / "p")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name in FIGURES:
        for ext in ("png", "svg"):
            f = tmp_path / "p" / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert "selection: model deepseek-v3, hardware b200, " in proc.stdout


def test_default_selection_is_the_readme_figures(dataset):
    """README figures: DeepSeek-V3 on B200, κ = 5, the largest cluster with a feasible MoE point;
    the quick grid lists h100-sxm first, so 'the first hardware' would not be B200."""
    with xr.open_dataset(dataset) as ds:
        assert [str(h) for h in ds.hardware.values][0] == "h100-sxm"
        sel = default_selection(ds)
        feas = ds.feasible.sel(model="deepseek-v3", hardware="b200", variant="moe").any(("kappa", "context")).values
        assert sel == {"model": "deepseek-v3", "hardware": "b200", "kappa": 5.0, "num_gpus": int(ds.num_gpus.values[feas].max())}


def test_plotted_arrays_are_dataset_slices(dataset, figures):
    res = figures
    with xr.open_dataset(dataset) as ds:
        sel = default_selection(ds)
        point = dict(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"])
        a = res["throughput"][2]
        np.testing.assert_array_equal(a["moe"], ds.throughput_per_gpu.sel(variant="moe", kappa=5.0, **point).values)
        for k in ds.kappa.values:
            np.testing.assert_array_equal(
                a[f"dense_kappa_{float(k):g}"], ds.throughput_per_gpu.sel(variant="dense", kappa=k, **point).values
            )
        a = res["reuse_gap"][2]
        for v in ("capacity_factor", "reuse_gap"):
            np.testing.assert_array_equal(a[v], ds[v].sel(kappa=5.0, **point).values)
        both = np.isfinite(a["reuse_gap"])
        np.testing.assert_allclose(a["reuse_gap"][both], (a["routing_factor"] * a["capacity_factor"])[both], rtol=1e-5)
        where = dict(model=sel["model"], hardware=sel["hardware"])
        np.testing.assert_array_equal(
            res["bound"][2]["bound"], ds.bound.sel(variant="moe", kappa=5.0, **where).transpose("num_gpus", "context").values
        )
        np.testing.assert_array_equal(
            res["kappa_star"][2]["kappa_star"], ds.kappa_star.sel(**where).transpose("num_gpus", "context").values
        )
        s = res["sensitivity"][2]
        for i, name in enumerate(s["variables"]):
            np.testing.assert_array_equal(s["moe"][i], ds[name].sel(variant="moe", kappa=5.0, **point).values)
        hw = moejax.load_hardware(sel["hardware"])
        r = res["roofline"][2]
        assert float(r["ridge_bf16"]) == pytest.approx(float(hw.flops_bf16) / float(hw.hbm_bw))
        np.testing.assert_allclose(r["attainable_fp8"], np.minimum(float(hw.flops_fp8), float(hw.hbm_bw) * r["intensity"]))
    for png, svg, _, _ in res.values():
        assert png.stat().st_size > 1000 and svg.stat().st_size > 1000


def test_flop_per_token_worked_example():
    """DeepSeek-V3 at 1,024 tokens: 2 × 36.62e9 active (published ~37B; moejax.param_counts to
    4 significant figures) + 61 layers × 2·128·(2·512 + 64)·1024 (absorbed MLA) FLOP."""
    expect = 2 * 36.62e9 + 61 * (2 * 128 * (2 * 512 + 64) * 1024)
    assert flop_per_token(moejax.load_model("deepseek-v3"), 1024) == pytest.approx(expect, rel=2e-4)


def test_roofline_places_the_operating_points(dataset, figures):
    png, _, arrays, fig = figures["roofline"]
    ax = fig.axes[0]
    sel = arrays.get("selection") or figures["throughput"][2]["selection"]
    bw = float(moejax.load_hardware(sel["hardware"]).hbm_bw)
    with xr.open_dataset(dataset) as ds:
        at = ds.sel(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"], variant="moe", kappa=5.0)
        feasible = at.feasible.values.astype(bool)
        m = moejax.load_model("deepseek-v3", weights="fp8", kv="bf16", activations="bf16")
        flops = np.array([flop_per_token(m, c) for c in ds.context.values])
        expect = at.throughput_per_gpu.values * flops
    p = arrays["points_moe"]
    assert feasible.sum() >= 1 and len(p["achieved"]) == feasible.sum()
    np.testing.assert_allclose(p["achieved"], expect[feasible], rtol=1e-6)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    drawn = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(drawn) == sum(len(v["achieved"]) for k, v in arrays.items() if k.startswith("points_"))
    assert ((drawn[:, 0] > x0) & (drawn[:, 0] < x1) & (drawn[:, 1] > y0) & (drawn[:, 1] < y1)).all()
    for key in ("points_moe", "points_dense"):  # under the memory roof: step time >= HBM time
        v = arrays[key]
        assert (v["achieved"] <= bw * v["intensity"] * (1 + 1e-6)).all()


def test_legends_are_off_the_axes_and_titles(figures):
    for name, (_, _, _, fig) in figures.items():
        r = _renderer(fig)
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        assert legends, name
        others = [ax.get_window_extent(r) for ax in fig.axes] + [fig._suptitle.get_window_extent(r)]
        for legend in legends:
            box = legend.get_window_extent(r)
            assert not any(_overlap(box, o) for o in others), name


def test_titles_name_the_dtypes(figures):
    for name, (_, _, _, fig) in figures.items():
        assert "weights fp8, KV bf16" in fig._suptitle.get_text(), name


def test_every_text_inside_the_figure(figures):
    """Colorbar and axis labels are not clipped: every axes with its drawn labels (the colorbar's
    included), the title and the legends lie inside the canvas."""
    for name, (_, _, _, fig) in figures.items():
        r = _renderer(fig)
        page = fig.bbox
        boxes = [ax.get_tightbbox(r) for ax in fig.axes] + [fig._suptitle.get_window_extent(r)]
        boxes += [lg.get_window_extent(r) for lg in fig.legends]
        assert len(fig.axes) >= (2 if name in ("kappa_star", "sensitivity") else 1)
        for b in boxes:
            assert page.x0 - 1 <= b.x0 and b.x1 <= page.x1 + 1 and page.y0 - 1 <= b.y0 and b.y1 <= page.y1 + 1, (name, b)


@pytest.mark.parametrize("plot", [plot_bound, plot_kappa_star])
def test_map_labels_fit_their_cells(wide, tmp_path, plot):
    sel = default_selection(wide)
    _, _, arrays, fig = plot(wide, tmp_path, sel)
    ax = fig.axes[0]
    r = _renderer(fig)
    texts = [t for t in ax.texts if t.get_text()]
    assert len(texts) >= 6  # labels are kept where they fit, not all dropped
    boxes = [t.get_window_extent(r) for t in texts]
    for t, b in zip(texts, boxes):
        j, i = t.get_position()
        (cx0, cy0), (cx1, cy1) = ax.transData.transform([(j - 0.5, i - 0.5), (j + 0.5, i + 0.5)])
        assert min(cx0, cx1) <= b.x0 and b.x1 <= max(cx0, cx1) and min(cy0, cy1) <= b.y0 and b.y1 <= max(cy0, cy1), t.get_text()
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            assert not _overlap(boxes[a], boxes[b]), (texts[a].get_text(), texts[b].get_text())


def test_kappa_star_figure_shows_the_flags(wide, tmp_path):
    """Each cell's class (found / bound-limited / infeasible / solvers disagree) is read from the
    flag meanings in the attributes, hatched, and named in the legend."""
    w = wide.copy()
    agrees = np.ones(w.kappa_star.shape, np.int8)
    agrees[..., 2] = 0  # found there (see the fixture): the solvers disagree
    w["agrees"] = (w.kappa_star.dims, agrees, {"flag_values": np.array([0, 1], np.int8), "flag_meanings": "flagged agrees"})
    _, _, arrays, fig = plot_kappa_star(w, tmp_path, default_selection(w))
    sel = default_selection(w)
    reason = w.reason.sel(model=sel["model"], hardware=sel["hardware"]).transpose("num_gpus", "context").values
    expect = np.where(reason == 0, "found", np.where(reason >= 3, "infeasible", "bound"))
    ag = w.agrees.sel(model=sel["model"], hardware=sel["hardware"]).transpose("num_gpus", "context").values
    expect[(reason == 0) & (ag == 0)] = "disagree"
    np.testing.assert_array_equal(arrays["class"].astype(str), expect)
    hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
    assert len(hatched) == int((expect != "found").sum())
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {
        "found (bisection)",
        "found, solvers disagree",
        "bound-limited: no crossing in [κ_min, κ_max]",
        "a side infeasible",
    } <= labels


def test_optional_figures_skipped_with_a_note(dataset, tmp_path, capsys):
    with xr.open_dataset(dataset) as ds:
        bare = ds.drop_vars([n for n in ds.data_vars if n.startswith("elasticity_")] + ["kappa_star"])
        res = make_plots(bare, tmp_path, model="deepseek-v3", hardware="h100-sxm", num_gpus=8, kappa=2)
    out = capsys.readouterr().out
    assert "kappa_star figure skipped" in out and "sensitivity figure skipped" in out
    assert set(res) == {"throughput", "reuse_gap", "bound", "roofline"}


def _error(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_bad_selection_is_one_line_error(dataset, tmp_path, capsys):
    assert _error(capsys, dataset, "--out", tmp_path / "a", "--model", "nope").startswith("error: model = 'nope' is invalid")
    err = _error(capsys, dataset, "--out", tmp_path / "b", "--kappa", "3")
    assert err == "error: kappa = 3.0 is invalid: not in the dataset, available 2, 5\n"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_non_sweep_files_are_refused(dataset, tmp_path, capsys):
    text = tmp_path / "notes.nc"
    text.write_text("not netCDF\n")
    assert "is invalid: not a readable netCDF file" in _error(capsys, text, "--out", tmp_path / "a")
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(other)
    assert "is invalid: not a moejax sweep dataset" in _error(capsys, other, "--out", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_existing_output_directory_needs_overwrite(dataset, tmp_path, capsys):
    out = tmp_path / "plots"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    err = _error(capsys, dataset, "--out", out)
    assert err.startswith(f"error: out = '{out}' is invalid: a non-empty directory")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert main([str(dataset), "--out", str(out), "--overwrite", "--kappa", "2"]) == 0
    assert (out / "throughput.png").stat().st_size > 1000 and (out / "mine.txt").read_text() == "keep me"


def test_guide_plots_in_sequence_do_not_collide(dataset, tmp_path, capsys):
    """docs/guide.md runs its sweeps in one directory and plots with the default ``--out``: a second
    dataset's figures must not be refused because the first's filled ``plots/`` (issue 20)."""
    import re
    import shutil

    guide = (REPO / "docs" / "guide.md").read_text()
    plotted = re.findall(r"python -m moejax\.plot (\S+\.nc)(?! --out)", guide)
    assert plotted, "the guide plots a dataset with the default output directory"
    names = ["first.nc", *plotted]  # a dataset plotted before the guide's own
    for name in names:
        shutil.copy(dataset, tmp_path / name)
        assert main([str(tmp_path / name), "--kappa", "2"]) == 0, capsys.readouterr().err
        assert (tmp_path / "plots" / Path(name).stem / "throughput.png").stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(Path(n).stem for n in names)


def test_frontier_dollar_axis_has_readable_ticks(tmp_path):
    """Issue 20: the $/Mtok axis (a secondary axis, y = c / x) showed two ticks. Over a frontier
    spanning about one decade of tokens/s/GPU it must show at least four labels whose values match
    the left axis through ``cost_per_mtok``, none overlapping."""
    from figure_checks import no_overlaps, tick_labels

    from moejax.figures.frontier import plot_frontier
    from moejax.plot import _save

    levels = np.array([5.0, 10, 20, 50, 100, 200])
    moe = 3000.0 / np.sqrt(levels / 5)  # 3000 -> 480 tokens/s/GPU
    tput = np.stack([moe, 0.7 * moe])[None, None, None, None, :, None, :]  # [model, hw, gpus, context, variant, kappa, level]
    ds = xr.Dataset(
        {
            "frontier_throughput_per_gpu": (
                ("model", "hardware", "num_gpus", "context", "variant", "kappa", "interactivity"),
                tput,
            ),
            "hw_price_per_gpu_hour": (("hardware",), [2.5]),
        },
        coords={
            "model": ["m"],
            "hardware": ["h"],
            "num_gpus": [8],
            "context": [8192.0],
            "variant": ["moe", "dense"],
            "kappa": [5.0],
            "interactivity": levels,
        },
    )
    sel = {"model": "m", "hardware": "h", "num_gpus": 8, "kappa": 5.0}
    _, _, arrays, fig = plot_frontier(ds, tmp_path, sel, "test", _save)
    right = fig.axes[0].child_axes[0]  # the secondary axis
    shown = tick_labels(fig, right.yaxis)
    assert len(shown) >= 4, [t for _, t, _ in shown]
    assert not no_overlaps([b for _, _, b in shown])
    lo, hi = (2.5 / 3600 / np.array(fig.axes[0].get_ylim()) * 1e6)[::-1]  # $/Mtok at the left axis's limits
    assert all(lo * (1 - 1e-6) <= v <= hi * (1 + 1e-6) and float(t) == pytest.approx(v, rel=1e-9) for v, t, _ in shown)
    assert len(tick_labels(fig, fig.axes[0].yaxis)) >= 3


def test_roofline_labels_do_not_overlap(wide, tmp_path):
    """Issue 20: the roofline's ridge and context labels overlapped on a many-context grid. Every text
    in the axes is clear of every other and inside the axes; both ridges are labelled; tick labels
    of each axis do not overlap either."""
    from figure_checks import no_overlaps, renderer, tick_labels

    from moejax.plot import plot_roofline

    sel = default_selection(wide)
    _, _, arrays, fig = plot_roofline(wide, tmp_path, sel)
    ax = fig.axes[0]
    r = renderer(fig)
    texts = [t for t in ax.texts if t.get_text()]
    boxes = [t.get_window_extent(r) for t in texts]
    assert not no_overlaps(boxes), [(texts[i].get_text(), texts[j].get_text()) for i, j in no_overlaps(boxes)]
    assert sum(t.get_text().startswith("ridge ") for t in texts) == 2
    points = sum(len(v["achieved"]) for k, v in arrays.items() if k.startswith("points_"))
    assert len(texts) - 2 >= min(points, 4)  # most contexts keep their label
    frame = ax.get_window_extent(r)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    for axis in (ax.xaxis, ax.yaxis):
        assert len(tick_labels(fig, axis)) >= 2 and not no_overlaps([b for _, _, b in tick_labels(fig, axis)])


def test_ctrl_c_while_drawing_leaves_no_figure(dataset, tmp_path):
    """Ctrl-C once the first figure is on disk: one line ``interrupted``, exit 130, and no figure
    left in ``--out``. Before, the start-up handler (``moejax._startup``) stayed in charge for the
    whole command and exited at once, skipping the clean-up: the figures drawn so far stayed."""
    import signal
    import time

    out = tmp_path / "plots"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moejax.plot", str(dataset), "--out", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: an in-process command run earlier in this worker may have left SIGINT
        # ignored here, and a child inherits an ignored SIGINT (then, rightly, keeps ignoring it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def figures():  # check_writable probes --out first (creates it, then removes it): it may vanish under glob
        try:
            return list(out.glob("*.png"))
        except FileNotFoundError:
            return []

    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not figures():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "interrupted", (proc.returncode, err[-2000:])
    assert not out.exists() or not list(out.iterdir())
