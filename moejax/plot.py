"""Standard figures from a sweep dataset: ``python -m moejax.plot outputs/.../sweep.nc [--out DIR]``
(default ``DIR``: ``plots/<dataset name>/`` next to the dataset, so datasets side by side never
share one).

Makes, each as PNG and SVG (matplotlib, Agg backend, constrained layout, legends outside the
axes), for one selection (model, hardware, num_gpus, κ; defaults: DeepSeek-V3 on B200 when the
dataset has them, as in the README's figures, else the first model and hardware; the largest
cluster with any feasible MoE point; κ = 5 when the dataset has it, else the κ nearest 5). Titles
name the serving dtypes. A ``keep_partitions=true`` dataset is first reduced to the best feasible
partition per point (``moejax.analysis.summary.best_per_point``) and given the qs columns
(``with_qs_columns``), so it draws the figures of the same sweep without ``keep_partitions``.

- ``throughput``: decode tokens/s per GPU vs context, the MoE and its dense baseline at every κ
  (log-log; infeasible points, stored as 0, are left out of the lines);
- ``reuse_gap``: the qs paper's factorisation per context at one κ: routing factor E/k ×
  capacity factor B_dense/B_MoE = reuse gap R_dense/R_MoE;
- ``bound``: what bounds the MoE step (compute / HBM / communication / infeasible) over
  context × num_gpus;
- ``kappa_star``: break-even κ* over context × num_gpus (only if the dataset has ``kappa_star``,
  i.e. it was written with ``breakeven.include=true``), each cell hatched by its flag: found,
  bound-limited (no crossing in [κ_min, κ_max]), infeasible, or solvers disagree;
- ``kappa_star_frontier``: κ* against interactivity, one line per model (only if the dataset has
  ``kappa_star_frontier``: ``breakeven.include=true`` with ``grid.batches``; ``moejax.figures.kappa_frontier``);
- ``roofline``: attainable FLOP/s vs arithmetic intensity for the hardware, BF16 and FP8 ceilings
  with their ridge points, and the selection's operating points per context (MoE and dense at κ;
  see ``moejax.analysis.roofline``);
- ``sensitivity``: the ``elasticity_*`` variables (only if written with ``sensitivities=true``);
- ``frontier``: the serving frontier, tokens/s/GPU against tokens/s/user with $/Mtok on a twin axis
  (only if the dataset has ``frontier_*``; ``moejax.figures.frontier``).

Map cells are labelled at the largest font (8, 7, 6 pt), full text or abbreviation, that fits
inside the cell; cells where nothing fits stay unlabelled (the colours and legend still say it).

``make_plots(ds, out_dir, **selection)`` returns ``{name: (png_path, svg_path, arrays, figure)}``
where ``arrays`` holds the exact numbers drawn (dataset slices, before masking for log axes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
import yaml
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.patches import Patch

from .analysis.qs import qs_columns
from .analysis.roofline import model_rows
from .analysis.summary import best_per_point, check_sweep, context_label, flag_meanings, open_sweep
from .engine import interrupts
from .engine.dataset import check_writable, whole_outputs
from .engine.variables import QS
from .figures import roofline, sensitivity
from .figures.frontier import plot_frontier
from .figures.kappa_frontier import plot_kappa_star_frontier
from .physics.errors import one_line
from .physics.specs import SpecError

README_SELECTION = {"model": "deepseek-v3", "hardware": "b200"}  # what the README's figures show
BOUND_COLOURS = {"compute": "#4477aa", "hbm": "#ee6677", "communication": "#ccbb44", "infeasible": "#bbbbbb"}
SHORT = {
    "compute": "comp",
    "hbm": "HBM",
    "communication": "comm",
    "infeasible": "inf.",
    "found": "",
    "moe_always_ahead": "MoE ahead",
    "dense_always_ahead": "dense ahead",
    "moe_infeasible": "MoE inf.",
    "dense_infeasible": "dense inf.",
    "above_kappa_max": "> κmax",
    "below_kappa_min": "< κmin",
}
# κ* cell classes: (legend label, hatch)
KSTAR_CLASSES = {
    "found": ("found (bisection)", ""),
    "bound": ("bound-limited: no crossing in [κ_min, κ_max]", "///"),
    "infeasible": ("a side infeasible", "..."),
    "disagree": ("found, solvers disagree", "xxx"),
}


def _invalid(field: str, value, coord) -> SpecError:
    available = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in coord.values.tolist())
    return SpecError(f"{field} = {value!r} is invalid: not in the dataset, available {available}")


def default_selection(
    ds: xr.Dataset, model: str | None = None, hardware: str | None = None, num_gpus: int | None = None, kappa: float | None = None
) -> dict:
    """The selection the figures use; unspecified fields get the defaults (see module doc). A
    value the dataset does not have raises ``SpecError`` listing the available ones."""
    ds = best_per_point(ds)
    names = {d: [str(v) for v in ds[d].values] for d in ("model", "hardware")}
    chosen = {"model": model, "hardware": hardware}
    for d in ("model", "hardware"):
        if chosen[d] is None:
            chosen[d] = README_SELECTION[d] if README_SELECTION[d] in names[d] else names[d][0]
        elif chosen[d] not in names[d]:
            raise _invalid(d, chosen[d], ds[d])
    model, hardware = chosen["model"], chosen["hardware"]
    if num_gpus is None:
        feas = ds.feasible.sel(model=model, hardware=hardware, variant="moe").any(("kappa", "context")).values
        gpus = ds.num_gpus.values[feas] if feas.any() else ds.num_gpus.values
        num_gpus = int(gpus.max())
    elif int(num_gpus) not in [int(n) for n in ds.num_gpus.values]:
        raise _invalid("num_gpus", num_gpus, ds.num_gpus)
    kappas = ds.kappa.values.astype(float)
    if kappa is None:
        kappa = float(kappas[int(np.argmin(np.abs(kappas - 5.0)))])
    elif not np.isclose(kappas, float(kappa), rtol=1e-9).any():
        raise _invalid("kappa", float(kappa), ds.kappa)
    else:
        kappa = float(kappas[np.isclose(kappas, float(kappa), rtol=1e-9)][0])
    return {"model": model, "hardware": hardware, "num_gpus": int(num_gpus), "kappa": kappa}


def dtype_text(ds: xr.Dataset) -> str:
    """The serving dtypes from the dataset's ``config`` attribute: ``weights fp8, KV bf16`` (and
    every other component set explicitly); empty if the dataset does not record them."""
    try:
        dtypes = yaml.safe_load(ds.attrs["config"])["grid"]["dtypes"]
    except (KeyError, TypeError, yaml.YAMLError):
        return ""
    keys = ["weights", "kv"] + [k for k in dtypes if k not in ("weights", "kv", "activations")]
    return ", ".join(f"{'KV' if k == 'kv' else k} {dtypes[k]}" for k in keys if dtypes.get(k))


def _title(ds, what: str, sel: dict, kappa: bool = True, gpus: bool = True) -> str:
    parts = [sel["model"], sel["hardware"]]
    if gpus:
        parts.append(f"{sel['num_gpus']} GPUs")
    if kappa:
        parts.append(f"κ = {sel['kappa']:g}")
    dt = dtype_text(ds)
    return f"{what}\n" + ", ".join(parts) + (f" ({dt})" if dt else "")


def _save(fig, out_dir: Path, name: str) -> tuple[Path, Path]:
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)  # the Figure object stays usable (Agg canvas) for inspection
    return png, svg


def _positive(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def _context_axis(ax, contexts) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(contexts)
    ax.set_xticklabels([context_label(c) for c in contexts])
    ax.minorticks_off()


def _label_cells(fig, ax, labels: dict, colours: dict | None = None, boxed: set | None = None) -> None:
    """Write ``labels[(row, col)] = (full, short)`` in the first form that fits inside its cell
    (92 % of its width, 90 % of its height): full at 8 or 7 pt, short at 8 or 7, full at 6,
    short at 6; else none. Cells in ``boxed`` (hatched ones) get a white backing box."""
    fig.canvas.draw()  # runs the constrained layout: cell sizes in pixels are final
    renderer = fig.canvas.get_renderer()
    (x0, y0), (x1, y1) = ax.transData.transform([(0, 0), (1, 1)])
    cell_w, cell_h = abs(x1 - x0), abs(y1 - y0)
    for (i, j), (full, short) in labels.items():
        tries = [(full, 8), (full, 7), (short, 8), (short, 7), (full, 6), (short, 6)]
        for text, size in dict.fromkeys(t for t in tries if t[0]):
            t = ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=size,
                color=(colours or {}).get((i, j), "black"),
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 0.5} if (i, j) in (boxed or ()) else None,
            )
            t.set_in_layout(False)
            box = t.get_window_extent(renderer)
            if box.width <= 0.92 * cell_w and box.height <= 0.9 * cell_h:
                break
            t.remove()


def plot_throughput(ds, out_dir, sel):
    point = dict(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"])
    tput = ds.throughput_per_gpu.sel(**point)
    ctx = ds.context.values
    arrays = {"context": ctx, "moe": tput.sel(variant="moe", kappa=sel["kappa"]).values, "selection": dict(sel)}
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    ax.plot(ctx, _positive(arrays["moe"]), "o-", color="black", lw=2.2, label="MoE")
    cmap = plt.get_cmap("plasma")
    kappas = ds.kappa.values
    for i, k in enumerate(kappas):
        key = f"dense_kappa_{float(k):g}"
        arrays[key] = tput.sel(variant="dense", kappa=k).values
        ax.plot(
            ctx,
            _positive(arrays[key]),
            "s--",
            color=cmap(0.1 + 0.7 * i / max(len(kappas) - 1, 1)),
            label=f"dense, κ = {float(k):g}",
        )
    ax.set_yscale("log")
    _context_axis(ax, ctx)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("decode throughput per GPU (tokens/s/GPU)")
    fig.suptitle(_title(ds, "Decode throughput per GPU at B_max, best partition", sel, kappa=False))
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(loc="outside right upper", title="infeasible points\nomitted", fontsize=8, title_fontsize=8)
    return (*_save(fig, out_dir, "throughput"), arrays, fig)


def plot_reuse_gap(ds, out_dir, sel):
    point = dict(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"], kappa=sel["kappa"])
    ctx = ds.context.values
    routing = float(ds.routing_factor.sel(model=sel["model"]))
    arrays = {
        "context": ctx,
        "routing_factor": np.full(ctx.shape, routing),
        "capacity_factor": ds.capacity_factor.sel(**point).values,
        "reuse_gap": ds.reuse_gap.sel(**point).values,
    }
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    x = np.arange(len(ctx))
    w = 0.27
    bars = (
        ("routing_factor", "routing factor E/k", "#4477aa"),
        ("capacity_factor", "capacity factor B_dense/B_MoE", "#ccbb44"),
        ("reuse_gap", "reuse gap R_dense/R_MoE", "#ee6677"),
    )
    for i, (key, label, colour) in enumerate(bars):
        v = _positive(arrays[key])
        ax.bar(x + (i - 1) * w, np.nan_to_num(v, nan=0.0), w, label=label, color=colour)
        for xi, vi in zip(x + (i - 1) * w, v):
            ax.annotate(
                "n/a" if np.isnan(vi) else f"{vi:.3g}",
                (xi, vi if np.isfinite(vi) else 1.0),
                ha="center",
                va="bottom",
                fontsize=7,
                rotation=90,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_yscale("log")
    top = np.nanmax(np.concatenate([_positive(arrays[k]) for k, _, _ in bars] + [[1.0]]))
    ax.set_ylim(top=top * 4)
    ax.set_xticks(x)
    ax.set_xticklabels([context_label(c) for c in ctx])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("factor (dimensionless, log scale)")
    fig.suptitle(_title(ds, "Reuse gap: routing × capacity = reuse gap (n/a: a side infeasible)", sel))
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    return (*_save(fig, out_dir, "reuse_gap"), arrays, fig)


def _grid_axes(ax, ds) -> None:
    ctx, gpus = ds.context.values, ds.num_gpus.values
    ax.set_xticks(np.arange(len(ctx)))
    ax.set_xticklabels([context_label(c) for c in ctx])
    ax.set_yticks(np.arange(len(gpus)))
    ax.set_yticklabels([str(int(g)) for g in gpus])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("GPUs in the cluster")


def _map_size(ds) -> tuple[float, float]:
    return max(6.5, 2.5 + 0.55 * len(ds.context)), 2.2 + 0.45 * len(ds.num_gpus)  # wide enough for the legend


def plot_bound(ds, out_dir, sel):
    flags = flag_meanings(ds.bound)
    meanings = [flags[v] for v in sorted(flags)]
    bound = ds.bound.sel(model=sel["model"], hardware=sel["hardware"], variant="moe", kappa=sel["kappa"])
    arrays = {
        "num_gpus": ds.num_gpus.values,
        "context": ds.context.values,
        "bound": bound.transpose("num_gpus", "context").values,
    }
    colours = [BOUND_COLOURS.get(m, "#000000") for m in meanings]
    fig, ax = plt.subplots(figsize=_map_size(ds), layout="constrained")
    codes = np.searchsorted(sorted(flags), arrays["bound"])
    ax.imshow(
        codes,
        cmap=ListedColormap(colours),
        norm=BoundaryNorm(np.arange(len(meanings) + 1) - 0.5, len(meanings)),
        aspect="auto",
        origin="lower",
    )
    _grid_axes(ax, ds)
    fig.legend(
        [Patch(color=c) for c in colours],
        meanings,
        loc="outside lower center",
        ncols=len(meanings),
        fontsize=8,
        title="MoE bound by",
        title_fontsize=8,
    )
    fig.suptitle(_title(ds, "What bounds the MoE decode step", sel, kappa=False, gpus=False))
    _label_cells(
        fig,
        ax,
        {(i, j): (flags[int(v)], SHORT.get(flags[int(v)], flags[int(v)][:4])) for (i, j), v in np.ndenumerate(arrays["bound"])},
    )
    return (*_save(fig, out_dir, "bound"), arrays, fig)


def kappa_star_classes(ks: xr.Dataset) -> np.ndarray:
    """Per point, the κ* class (a key of ``KSTAR_CLASSES``), from the flag meanings of ``reason``
    (``found``; ``...infeasible``; anything else: no crossing in the bracket) and, for found
    points, ``agrees == 0`` or ``kappa_star_optax`` differing from ``kappa_star`` by > 1e-3."""
    value = np.asarray(ks.kappa_star.values, dtype=float)
    if "reason" not in ks:
        return np.where(np.isfinite(value), "found", "bound").astype(object)
    flags = flag_meanings(ks.reason)
    meaning = np.vectorize(lambda v: flags.get(int(v), "?"), otypes=[object])(ks.reason.values)
    cls = np.where(
        meaning == "found", "found", np.where(np.char.endswith(meaning.astype(str), "infeasible"), "infeasible", "bound")
    ).astype(object)
    disagree = np.zeros(value.shape, bool)
    if "agrees" in ks:
        disagree |= ks.agrees.values == 0
    if "kappa_star_optax" in ks:
        with np.errstate(invalid="ignore", divide="ignore"):
            disagree |= ~(np.abs(ks.kappa_star_optax.values / value - 1) <= 1e-3)
    cls[(cls == "found") & disagree] = "disagree"
    return cls


def plot_kappa_star(ds, out_dir, sel):
    names = [n for n in ("kappa_star", "reason", "agrees", "kappa_star_optax") if n in ds]
    ks = ds[names].sel(model=sel["model"], hardware=sel["hardware"]).transpose("num_gpus", "context")
    v = np.asarray(ks.kappa_star.values, dtype=float)
    cls = kappa_star_classes(ks)
    arrays = {"num_gpus": ds.num_gpus.values, "context": ds.context.values, "kappa_star": v, "class": cls}
    if "reason" in ks:
        arrays["reason"] = ks.reason.values
    flags = flag_meanings(ds.reason) if "reason" in ds else {}
    fig, ax = plt.subplots(figsize=_map_size(ds), layout="constrained")
    finite = v[np.isfinite(v)]
    cmap = plt.get_cmap("magma_r").with_extremes(bad="#eeeeee")
    norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.01)) if finite.size else None
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, norm=norm, aspect="auto", origin="lower")
    for (i, j), c in np.ndenumerate(cls):
        if KSTAR_CLASSES[c][1]:
            ax.add_patch(
                plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch=KSTAR_CLASSES[c][1], edgecolor="#555555", lw=0)
            )
    _grid_axes(ax, ds)
    if norm is not None:
        fig.colorbar(im, ax=ax, label="break-even κ*\n(dense params ÷ ρ·P_total)")
    present = [c for c in KSTAR_CLASSES if (cls == c).any()]
    fig.legend(
        [Patch(facecolor="white", edgecolor="#555555", hatch=KSTAR_CLASSES[c][1]) for c in present],
        [KSTAR_CLASSES[c][0] for c in present],
        loc="outside lower center",
        ncols=2,
        fontsize=8,
    )
    fig.suptitle(_title(ds, "Break-even κ*: above it the MoE serves more tokens/s/GPU", sel, kappa=False, gpus=False))
    labels, colours = {}, {}
    for (i, j), x in np.ndenumerate(v):
        meaning = flags.get(int(arrays["reason"][i, j]), "") if "reason" in arrays else ""
        if cls[i, j] in ("found", "disagree") and np.isfinite(x):
            labels[(i, j)] = (f"{x:.3g}" + ("!" if cls[i, j] == "disagree" else ""), f"{x:.2g}")
            dark = norm is not None and norm(x) > 0.6 and cls[i, j] == "found"  # hatched cells get a white box
            colours[(i, j)] = "white" if dark else "black"
        else:
            labels[(i, j)] = (meaning.replace("_", " ") or "none", SHORT.get(meaning, meaning[:5]))
    _label_cells(fig, ax, labels, colours, boxed={ij for ij, c in np.ndenumerate(cls) if KSTAR_CLASSES[c][1]})
    return (*_save(fig, out_dir, "kappa_star"), arrays, fig)


def plot_roofline(ds, out_dir, sel):
    """The roofline figure (``figures.roofline``) with this module's title and save."""
    return roofline.plot_roofline(ds, out_dir, sel, _title, _save)


def plot_sensitivity(ds, out_dir, sel):
    """The sensitivity figure (``figures.sensitivity``) with this module's title and save."""
    return sensitivity.plot_sensitivity(ds, out_dir, sel, _title, _save)


def with_qs_columns(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the qs Table 3 columns (``moejax.analysis.qs``) computed from its best-partition
    variables where it lacks them (a reduced ``keep_partitions`` dataset) and its ``resolved_specs``
    name the MoE rows; else unchanged."""
    specs = model_rows(ds)
    if "reuse_gap" in ds or specs is None:
        return ds
    moe = [specs[(str(m), "moe", None)] for m in ds.model.values]
    cols = qs_columns(
        ds.batch.values,
        ds.throughput_per_gpu.values,
        ds.feasible.values.astype(bool),
        [float(m.n_experts) for m in moe],
        [float(m.top_k) for m in moe],
        ds.kappa.values,
    )
    return ds.assign({name: (var.dims, np.asarray(cols[name], float), var.attrs()) for name, var in QS.items()})


def make_plots(ds: xr.Dataset, out_dir, **selection) -> dict:
    """Every standard figure the dataset supports: ``{name: (png_path, svg_path, arrays, figure)}``.
    ``selection``: ``model``, ``hardware``, ``num_gpus``, ``kappa`` (must be in the dataset).
    Figures whose variables are missing are skipped with a printed note."""
    check_sweep(ds, "<in memory>")
    if "partition" in ds.dims:
        print("note: all candidate partitions kept: each point is plotted at its best feasible partition")
    ds = with_qs_columns(best_per_point(ds))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sel = default_selection(ds, **{k: v for k, v in selection.items() if v is not None})
    plots = {"throughput": plot_throughput, "reuse_gap": plot_reuse_gap, "bound": plot_bound}
    if "kappa_star" in ds:
        plots["kappa_star"] = plot_kappa_star
    else:
        print("note: no kappa_star in the dataset (write it with breakeven.include=true): kappa_star figure skipped")
    if "kappa_star_frontier" in ds:
        plots["kappa_star_frontier"] = lambda ds, out, sel: plot_kappa_star_frontier(ds, out, sel, dtype_text(ds))
    plots["roofline"] = plot_roofline
    if any(n.startswith("elasticity_") for n in ds.data_vars):
        plots["sensitivity"] = plot_sensitivity
    else:
        print("note: no elasticity_* variables in the dataset (write them with sensitivities=true): sensitivity figure skipped")
    if "frontier_throughput_per_gpu" in ds:
        plots["frontier"] = lambda d, o, s: plot_frontier(
            d, o, s, _title(d, "Serving frontier: throughput per GPU vs interactivity", s, kappa=False), _save
        )
    missing = [v for v in ("routing_factor", "capacity_factor", "reuse_gap") if v not in ds]
    if missing:
        print(f"note: no {', '.join(missing)} in the dataset: reuse_gap figure skipped")
        del plots["reuse_gap"]
    return {name: fn(ds, out_dir, sel) for name, fn in plots.items()}


def default_out(dataset: Path) -> Path:
    """``plots/<stem>/`` beside ``dataset``: one directory per dataset, so plotting a second dataset
    of the same directory (the guide's commands run in sequence) never meets the first's figures."""
    return dataset.parent / "plots" / dataset.stem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m moejax.plot", description=__doc__.split("\n")[0])
    p.add_argument("dataset", type=Path, help="sweep dataset (netCDF), as written by python -m moejax.sweep")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: plots/NAME/ next to the dataset NAME.nc)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty output directory")
    p.add_argument("--model", default=None)
    p.add_argument("--hardware", default=None)
    p.add_argument("--num-gpus", type=int, default=None)
    p.add_argument("--kappa", type=float, default=None, help="κ for single-κ figures (one of the dataset's; default 5)")

    def refuse(message):  # argparse's usage block and message: one line, exit code 2
        print(f"error: command line is invalid: {one_line(message)}", file=sys.stderr)
        sys.exit(2)

    p.error = refuse
    args = p.parse_args(argv)
    return interrupts.run_command(lambda: _plot(args))


def _plot(args) -> int:
    out = args.out or default_out(args.dataset)
    try:
        if not args.dataset.is_file():
            raise SpecError(f"dataset = {str(args.dataset)!r} is invalid: no such file")
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.overwrite)):
            raise SpecError(
                f"out = {str(out)!r} is invalid: "
                + ("not a directory" if not out.is_dir() else "a non-empty directory; choose a new one or pass --overwrite")
            )
        check_writable("out", out)  # before reading the dataset or drawing
        with open_sweep(args.dataset) as ds, whole_outputs("out", out):  # no half-written figure; a full disk is one line
            sel = default_selection(ds, args.model, args.hardware, args.num_gpus, args.kappa)
            result = make_plots(ds, out, **sel)
    except SpecError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    print(f"selection: model {sel['model']}, hardware {sel['hardware']}, {sel['num_gpus']} GPUs, kappa {sel['kappa']:g}")
    for name, (png, svg, _, _) in result.items():
        print(f"wrote {png}  {svg.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
