"""The roofline figure of ``python -m moejax.plot``: attainable FLOP/s per GPU against arithmetic
intensity for the selected hardware, and the sweep's decode operating points on it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..analysis.roofline import operating_points
from ..analysis.summary import context_label
from ..catalogue import load_hardware
from .axes import log_ticks, place_labels


def _hardware_numbers(ds, name: str) -> dict:
    if all(f"hw_{f}" in ds for f in ("hbm_bw", "flops_bf16", "flops_fp8")):
        return {f: float(ds[f"hw_{f}"].sel(hardware=name)) for f in ("hbm_bw", "flops_bf16", "flops_fp8")}
    hw = load_hardware(name)
    return {"hbm_bw": float(hw.hbm_bw), "flops_bf16": float(hw.flops_bf16), "flops_fp8": float(hw.flops_fp8)}


def plot_roofline(ds, out_dir, sel, title, save):
    """The hardware's BF16 and FP8 roofs over arithmetic intensity, with the sweep's decode operating
    points at the selection (MoE and the dense κ twin; ``analysis.roofline``), ridge and context labels
    placed where they overlap nothing. ``title(ds, what, sel)`` and ``save(fig, out_dir, name)`` come
    from ``moejax.plot``. Returns (png, svg, arrays, figure)."""
    hw = _hardware_numbers(ds, sel["hardware"])
    bw = hw["hbm_bw"]
    peaks = {"BF16": hw["flops_bf16"], "FP8": hw["flops_fp8"]}
    ridges = {k: p / bw for k, p in peaks.items()}
    points = operating_points(ds, sel["model"], sel["hardware"], sel["num_gpus"], sel["kappa"], bw)
    xs = np.concatenate([p["intensity"] for p in points.values()] + [list(ridges.values())])
    lo = 10 ** np.floor(np.log10(max(min(xs.min() / 3, 0.1), 1e-3)))
    hi = 10 ** np.ceil(np.log10(max(xs.max(), max(ridges.values())) * 30))
    intensity = np.logspace(np.log10(lo), np.log10(hi), 200)
    arrays = {"intensity": intensity, "hbm_bw": np.array(bw)}
    fig, ax = plt.subplots(figsize=(8.5, 5), layout="constrained")
    colours = {"BF16": "#4477aa", "FP8": "#ee6677"}
    for name, peak in peaks.items():
        attain = np.minimum(peak, bw * intensity)
        arrays[f"attainable_{name.lower()}"] = attain
        arrays[f"ridge_{name.lower()}"] = np.array(ridges[name])
        ax.plot(intensity, attain, color=colours[name], lw=2, label=f"{name} roof: peak {peak / 1e15:.3g} PFLOP/s")
        ax.axvline(ridges[name], color=colours[name], ls=":", lw=1)
    labels = [(f"ridge {ridges[name]:.0f} FLOP/B", (ridges[name], peaks[name]), colours[name]) for name in peaks]
    styles = {"moe": ("o", "black", "MoE"), "dense": ("s", "#228833", f"dense, κ = {sel['kappa']:g}")}
    for variant, p in points.items():
        arrays[f"points_{variant}"] = p
        marker, colour, label = styles[variant]
        ax.scatter(
            p["intensity"],
            p["achieved"],
            marker=marker,
            color=colour,
            zorder=3,
            label=f"{label}: operating points ({sel['num_gpus']} GPUs)",
        )
        labels += [(context_label(c), (x, y), colour) for x, y, c in zip(p["intensity"], p["achieved"], p["context"])]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ys = np.concatenate([p["achieved"] for p in points.values()] + [[bw * lo]])
    ax.set_ylim(min(ys.min(), bw * lo) / 2, max(peaks.values()) * 3)
    ax.set_xlabel("arithmetic intensity (FLOP per byte read from HBM, per GPU per step)")
    ax.set_ylabel("FLOP/s per GPU (attainable; points: achieved)")
    fig.suptitle(
        title(
            ds,
            f"Roofline: {sel['hardware']} (HBM {bw / 1e12:.3g} TB/s, dense peak FLOP/s) and the sweep's decode operating points",
            sel,
        )
    )
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(
        loc="outside lower center",
        ncols=2,
        fontsize=8,
        title="points: achieved = tokens/s/GPU × FLOP/token; intensity = FLOP / HBM bytes per step (moejax.analysis.roofline)",
        title_fontsize=7.5,
    )
    log_ticks(ax.xaxis, lo, hi)
    log_ticks(ax.yaxis, *ax.get_ylim())
    place_labels(ax, labels)  # ridges first, then the points' contexts: none overlapping another
    return (*save(fig, out_dir, "roofline"), arrays, fig)
