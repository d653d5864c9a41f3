"""The sensitivity figure of ``python -m moejax.plot``: how throughput per GPU responds to each
hardware quantity (the sweep's ``elasticity_*`` variables)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..analysis.summary import context_label
from ..engine.grid import ELASTICITY_FIELDS
from ..physics.specs import HardwareSpec, field_label

ELASTICITY_LABELS = {f: field_label(HardwareSpec, f) for f in ELASTICITY_FIELDS}  # from HardwareSpec metadata


def plot_sensitivity(ds, out_dir, sel, title, save):
    """Elasticities ∂log(tokens/s/GPU)/∂log(x) of the MoE and its dense κ twin at the selection, one bar
    per hardware quantity and context. ``title``/``save`` from ``moejax.plot``. Returns (png, svg,
    arrays, figure)."""
    names = [n for n in ds.data_vars if n.startswith("elasticity_")]
    point = dict(model=sel["model"], hardware=sel["hardware"], num_gpus=sel["num_gpus"], kappa=sel["kappa"])
    ctx = ds.context.values
    arrays = {"context": ctx, "variables": np.array(names)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True, layout="constrained")
    cmap = plt.get_cmap("viridis")
    y = np.arange(len(names))
    h = 0.8 / len(ctx)
    for ax, variant in zip(axes, ("moe", "dense")):
        values = np.stack([ds[n].sel(variant=variant, **point).values for n in names])  # [variable, context]
        arrays[variant] = values
        for j, c in enumerate(ctx):
            ax.barh(
                y + (j - (len(ctx) - 1) / 2) * h,
                np.nan_to_num(values[:, j], nan=0.0),
                h,
                color=cmap(j / max(len(ctx) - 1, 1)),
                label=f"{context_label(c)} tokens",
            )
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title("MoE" if variant == "moe" else f"dense baseline, κ = {sel['kappa']:g}")
        ax.set_xlabel("elasticity ∂log(tokens/s/GPU) / ∂log(x)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([ELASTICITY_LABELS.get(n[len("elasticity_") :], n[len("elasticity_") :]) for n in names])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="context\n(NaN/infeasible = 0)", fontsize=8, title_fontsize=8)
    fig.suptitle(title(ds, "Sensitivity of throughput per GPU to hardware quantities", sel, kappa=False))
    return (*save(fig, out_dir, "sensitivity"), arrays, fig)
