"""Standard figures from a sweep dataset: ``python -m moejax.plot outputs/.../sweep.nc [--out DIR]``.

Makes, each as PNG and SVG (matplotlib, Agg backend), for one selection (model, hardware,
num_gpus, κ; defaults: the first model and hardware, the largest cluster with any feasible MoE
point, κ nearest 5):

- ``throughput``: decode tokens/s per GPU vs context, the MoE and its dense baseline at every κ
  (log-log; infeasible points, stored as 0, are left out of the lines);
- ``reuse_gap``: the qs paper's factorisation per context at one κ: routing factor E/k ×
  capacity factor B_dense/B_MoE = reuse gap R_dense/R_MoE;
- ``bound``: what bounds the MoE step (compute / HBM / communication / infeasible) over
  context × num_gpus;
- ``kappa_star``: break-even κ* over context × num_gpus (only if the dataset has ``kappa_star``,
  i.e. it was written with ``breakeven.include=true``);
- ``roofline``: attainable FLOP/s vs arithmetic intensity for the hardware (``moejax.load_hardware``),
  BF16 and FP8 ceilings, with the ridge point (peak FLOP/s ÷ HBM bandwidth, FLOP per byte) marked;
- ``sensitivity``: the ``elasticity_*`` variables (only if written with ``sensitivities=true``).

``make_plots(ds, out_dir, **selection)`` returns ``{name: (png_path, svg_path, arrays)}`` where
``arrays`` holds the exact numbers drawn (dataset slices, before masking for log axes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402

from .catalogue import load_hardware  # noqa: E402

BOUND_COLOURS = {"compute": "#4477aa", "hbm": "#ee6677", "communication": "#ccbb44", "infeasible": "#bbbbbb"}
ELASTICITY_LABELS = {
    "hbm_bw": "HBM bandwidth", "hbm_bytes": "HBM capacity", "flops_bf16": "BF16 FLOP/s", "flops_fp8": "FP8 FLOP/s",
    "intra_bw": "intra-node bandwidth", "intra_latency": "intra-node latency", "inter_bw": "inter-node bandwidth",
    "inter_latency": "inter-node latency",
}


def _ctx_label(c: float) -> str:
    c = int(c)
    if c >= 1 << 20 and c % (1 << 20) == 0:
        return f"{c >> 20}M"
    if c >= 1 << 10 and c % (1 << 10) == 0:
        return f"{c >> 10}k"
    return str(c)


def default_selection(ds: xr.Dataset, model: str | None = None, hardware: str | None = None,
                      num_gpus: int | None = None, kappa: float | None = None) -> dict:
    """The selection the figures use; unspecified fields get the defaults (see module doc)."""
    model = str(ds.model.values[0]) if model is None else model
    hardware = str(ds.hardware.values[0]) if hardware is None else hardware
    for name, value, coord in (("model", model, ds.model), ("hardware", hardware, ds.hardware)):
        if value not in [str(v) for v in coord.values]:
            raise ValueError(f"{name} = {value!r} is not in the dataset: available {', '.join(map(str, coord.values))}")
    if num_gpus is None:
        feas = ds.feasible.sel(model=model, hardware=hardware, variant="moe").any(("kappa", "context")).values
        gpus = ds.num_gpus.values[feas] if feas.any() else ds.num_gpus.values
        num_gpus = int(gpus.max())
    elif int(num_gpus) not in [int(n) for n in ds.num_gpus.values]:
        raise ValueError(f"num_gpus = {num_gpus!r} is not in the dataset: available {', '.join(map(str, ds.num_gpus.values))}")
    target = 5.0 if kappa is None else float(kappa)
    kappa = float(ds.kappa.values[int(np.argmin(np.abs(ds.kappa.values - target)))])
    return {"model": model, "hardware": hardware, "num_gpus": int(num_gpus), "kappa": kappa}


def _title(what: str, sel: dict, kappa: bool = True, gpus: bool = True) -> str:
    parts = [sel["model"], sel["hardware"]]
    if gpus:
        parts.append(f"{sel['num_gpus']} GPUs")
    if kappa:
        parts.append(f"κ = {sel['kappa']:g}")
    return f"{what}\n" + ", ".join(parts)


def _save(fig, out_dir: Path, name: str) -> tuple[Path, Path]:
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)
    return png, svg


def _positive(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def _context_axis(ax, contexts) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(contexts)
    ax.set_xticklabels([_ctx_label(c) for c in contexts])
    ax.minorticks_off()


def plot_throughput(ds, out_dir, sel):
    point = dict(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"])
    tput = ds.throughput_per_gpu.sel(**point)
    ctx = ds.context.values
    arrays = {"context": ctx, "moe": tput.sel(variant="moe", kappa=sel["kappa"]).values}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ctx, _positive(arrays["moe"]), "o-", color="black", lw=2.2, label="MoE")
    cmap = plt.get_cmap("plasma")
    kappas = ds.kappa.values
    for i, k in enumerate(kappas):
        key = f"dense_kappa_{float(k):g}"
        arrays[key] = tput.sel(variant="dense", kappa=k).values
        ax.plot(ctx, _positive(arrays[key]), "s--", color=cmap(0.1 + 0.7 * i / max(len(kappas) - 1, 1)),
                label=f"dense, κ = {float(k):g}")
    ax.set_yscale("log")
    _context_axis(ax, ctx)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("decode throughput per GPU (tokens/s/GPU)")
    ax.set_title(_title("Decode throughput per GPU at B_max, best partition", sel, kappa=False))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="infeasible points omitted", fontsize=8, title_fontsize=8)
    return (*_save(fig, out_dir, "throughput"), arrays)


def plot_reuse_gap(ds, out_dir, sel):
    point = dict(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"], kappa=sel["kappa"])
    ctx = ds.context.values
    routing = float(ds.routing_factor.sel(model=sel["model"]))
    arrays = {"context": ctx, "routing_factor": np.full(ctx.shape, routing),
              "capacity_factor": ds.capacity_factor.sel(**point).values, "reuse_gap": ds.reuse_gap.sel(**point).values}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = np.arange(len(ctx))
    w = 0.27
    bars = (("routing_factor", "routing factor E/k", "#4477aa"),
            ("capacity_factor", "capacity factor B_dense/B_MoE", "#ccbb44"),
            ("reuse_gap", "reuse gap R_dense/R_MoE", "#ee6677"))
    for i, (key, label, colour) in enumerate(bars):
        v = _positive(arrays[key])
        ax.bar(x + (i - 1) * w, np.nan_to_num(v, nan=0.0), w, label=label, color=colour)
        for xi, vi in zip(x + (i - 1) * w, v):
            ax.annotate("n/a" if np.isnan(vi) else f"{vi:.3g}", (xi, vi if np.isfinite(vi) else 1.0),
                        ha="center", va="bottom", fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    top = np.nanmax([np.nanmax(_positive(arrays[k])) for k, _, _ in bars] + [1.0])
    ax.set_ylim(top=top * 4)
    ax.set_xticks(x)
    ax.set_xticklabels([_ctx_label(c) for c in ctx])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("factor (dimensionless, log scale)")
    ax.set_title(_title("Reuse-gap factorisation: routing × capacity = reuse gap (n/a: a side infeasible)", sel))
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return (*_save(fig, out_dir, "reuse_gap"), arrays)


def _grid_axes(ax, ds) -> None:
    ctx, gpus = ds.context.values, ds.num_gpus.values
    ax.set_xticks(np.arange(len(ctx)))
    ax.set_xticklabels([_ctx_label(c) for c in ctx])
    ax.set_yticks(np.arange(len(gpus)))
    ax.set_yticklabels([str(int(g)) for g in gpus])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("GPUs in the cluster")


def plot_bound(ds, out_dir, sel):
    meanings = ds.bound.attrs.get("flag_meanings", "compute hbm communication infeasible").split()
    bound = ds.bound.sel(model=sel["model"], hardware=sel["hardware"], variant="moe", kappa=sel["kappa"])
    bound = bound.transpose("num_gpus", "context")
    arrays = {"num_gpus": ds.num_gpus.values, "context": ds.context.values, "bound": bound.values}
    colours = [BOUND_COLOURS.get(m, "#000000") for m in meanings]
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.55 * len(ds.num_gpus)))
    ax.imshow(arrays["bound"], cmap=ListedColormap(colours),
              norm=BoundaryNorm(np.arange(len(meanings) + 1) - 0.5, len(meanings)), aspect="auto", origin="lower")
    for (i, j), v in np.ndenumerate(arrays["bound"]):
        ax.text(j, i, meanings[int(v)], ha="center", va="center", fontsize=8)
    _grid_axes(ax, ds)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    ax.legend(handles, meanings, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="MoE bound by")
    ax.set_title(_title("What bounds the MoE decode step", sel, kappa=False, gpus=False))
    return (*_save(fig, out_dir, "bound"), arrays)


def plot_kappa_star(ds, out_dir, sel):
    ks = ds.kappa_star.sel(model=sel["model"], hardware=sel["hardware"]).transpose("num_gpus", "context")
    arrays = {"num_gpus": ds.num_gpus.values, "context": ds.context.values, "kappa_star": ks.values}
    reasons = None
    if "reason" in ds:
        reasons = ds.reason.sel(model=sel["model"], hardware=sel["hardware"]).transpose("num_gpus", "context").values
        arrays["reason"] = reasons
    meanings = ds.reason.attrs.get("flag_meanings", "").split() if "reason" in ds else []
    fig, ax = plt.subplots(figsize=(7, 1.8 + 0.55 * len(ds.num_gpus)))
    v = np.asarray(arrays["kappa_star"], dtype=float)
    finite = v[np.isfinite(v)]
    cmap = plt.get_cmap("magma_r").with_extremes(bad="#dddddd")
    from matplotlib.colors import LogNorm

    norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.01)) if finite.size else None
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, norm=norm, aspect="auto", origin="lower")
    for (i, j), x in np.ndenumerate(v):
        if np.isfinite(x):
            text = f"{x:.3g}"
        else:
            text = meanings[int(reasons[i, j])].replace("_", " ") if reasons is not None and meanings else "none"
        ax.text(j, i, text, ha="center", va="center", fontsize=7,
                color="white" if np.isfinite(x) and norm is not None and norm(x) > 0.6 else "black")
    _grid_axes(ax, ds)
    if norm is not None:
        fig.colorbar(im, ax=ax, label="break-even κ* (dense params / (ρ·P_total), dimensionless)")
    ax.set_title(_title("Break-even κ*: above it the MoE serves more tokens/s/GPU", sel, kappa=False, gpus=False))
    return (*_save(fig, out_dir, "kappa_star"), arrays)


def plot_roofline(ds, out_dir, sel):
    hw = load_hardware(sel["hardware"])
    bw = float(hw.hbm_bw)
    peaks = {"BF16": float(hw.flops_bf16), "FP8": float(hw.flops_fp8)}
    ridges = {k: p / bw for k, p in peaks.items()}
    lo, hi = 0.1, 10 ** np.ceil(np.log10(max(ridges.values()) * 30))
    intensity = np.logspace(np.log10(lo), np.log10(hi), 200)
    arrays = {"intensity": intensity, "hbm_bw": np.array(bw)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"BF16": "#4477aa", "FP8": "#ee6677"}
    for name, peak in peaks.items():
        attain = np.minimum(peak, bw * intensity)
        arrays[f"attainable_{name.lower()}"] = attain
        arrays[f"ridge_{name.lower()}"] = np.array(ridges[name])
        ax.plot(intensity, attain, color=colours[name], lw=2, label=f"{name}: peak {peak / 1e15:.3g} PFLOP/s")
        ax.axvline(ridges[name], color=colours[name], ls=":", lw=1)
        ax.annotate(f"ridge {ridges[name]:.0f} FLOP/B", (ridges[name], peak), xytext=(5, -14), textcoords="offset points",
                    fontsize=8, color=colours[name])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte read from HBM)")
    ax.set_ylabel("attainable FLOP/s")
    ax.set_title(f"Roofline: {sel['hardware']} (HBM {bw / 1e12:.3g} TB/s, dense peak FLOP/s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.text(0.98, 0.03, "A decode GEMM over B tokens does 2B FLOP per weight read\n"
            "(2 bytes in BF16, 1 in FP8): intensity B FLOP/B in BF16, 2B in FP8.\n"
            f"Critical batch ≈ ridge × bytes/param ÷ 2: BF16 {ridges['BF16']:.0f}, FP8 {ridges['FP8'] / 2:.0f} tokens\n"
            "per weight read (for an expert: tokens routed to it).",
            transform=ax.transAxes, va="bottom", ha="right", fontsize=7.5, bbox={"facecolor": "white", "alpha": 0.85, "lw": 0})
    ax.legend(loc="upper left", fontsize=8)
    return (*_save(fig, out_dir, "roofline"), arrays)


def plot_sensitivity(ds, out_dir, sel):
    names = [n for n in ds.data_vars if n.startswith("elasticity_")]
    point = dict(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"], kappa=sel["kappa"])
    ctx = ds.context.values
    arrays = {"context": ctx, "variables": np.array(names)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    cmap = plt.get_cmap("viridis")
    y = np.arange(len(names))
    h = 0.8 / len(ctx)
    for ax, variant in zip(axes, ("moe", "dense")):
        values = np.stack([ds[n].sel(variant=variant, **point).values for n in names])  # [variable, context]
        arrays[variant] = values
        for j, c in enumerate(ctx):
            ax.barh(y + (j - (len(ctx) - 1) / 2) * h, np.nan_to_num(values[:, j], nan=0.0), h,
                    color=cmap(j / max(len(ctx) - 1, 1)), label=f"{_ctx_label(c)} tokens")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title("MoE" if variant == "moe" else f"dense baseline, κ = {sel['kappa']:g}")
        ax.set_xlabel("elasticity ∂log(tokens/s/GPU) / ∂log(x)  (dimensionless)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([ELASTICITY_LABELS.get(n[len("elasticity_"):], n[len("elasticity_"):]) for n in names])
    axes[1].legend(title="context (NaN/infeasible = 0)", fontsize=8, title_fontsize=8)
    fig.suptitle(_title("Sensitivity of throughput per GPU to hardware quantities", sel, kappa=False))
    fig.tight_layout()
    return (*_save(fig, out_dir, "sensitivity"), arrays)


def make_plots(ds: xr.Dataset, out_dir, **selection) -> dict:
    """Every standard figure the dataset supports: ``{name: (png_path, svg_path, arrays)}``.
    ``selection``: ``model``, ``hardware``, ``num_gpus``, ``kappa`` (nearest in the dataset).
    Figures whose variables are missing are skipped with a printed note."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sel = default_selection(ds, **{k: v for k, v in selection.items() if v is not None})
    plots = {"throughput": plot_throughput, "reuse_gap": plot_reuse_gap, "bound": plot_bound}
    if "kappa_star" in ds:
        plots["kappa_star"] = plot_kappa_star
    else:
        print("note: no kappa_star in the dataset (write it with breakeven.include=true): kappa_star figure skipped")
    plots["roofline"] = plot_roofline
    if any(n.startswith("elasticity_") for n in ds.data_vars):
        plots["sensitivity"] = plot_sensitivity
    else:
        print("note: no elasticity_* variables in the dataset (write them with sensitivities=true): sensitivity figure skipped")
    missing = [v for v in ("routing_factor", "capacity_factor", "reuse_gap") if v not in ds]
    if missing:
        print(f"note: no {', '.join(missing)} in the dataset (keep_partitions=true omits them): reuse_gap figure skipped")
        del plots["reuse_gap"]
    return {name: fn(ds, out_dir, sel) for name, fn in plots.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m moejax.plot", description=__doc__.split("\n")[0])
    p.add_argument("dataset", type=Path, help="sweep dataset (netCDF), as written by python -m moejax.sweep")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: plots/ next to the dataset)")
    p.add_argument("--model", default=None)
    p.add_argument("--hardware", default=None)
    p.add_argument("--num-gpus", type=int, default=None)
    p.add_argument("--kappa", type=float, default=None, help="κ for single-κ figures (nearest in the dataset; default 5)")
    args = p.parse_args(argv)
    if not args.dataset.is_file():
        print(f"error: dataset = {str(args.dataset)!r} is invalid: no such file", file=sys.stderr)
        return 2
    out = args.out or args.dataset.parent / "plots"
    with xr.open_dataset(args.dataset) as ds:
        try:
            sel = default_selection(ds, args.model, args.hardware, args.num_gpus, args.kappa)
            result = make_plots(ds, out, **sel)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(f"selection: model {sel['model']}, hardware {sel['hardware']}, {sel['num_gpus']} GPUs, kappa {sel['kappa']:g}")
    for name, (png, svg, _) in result.items():
        print(f"wrote {png}  {svg.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
