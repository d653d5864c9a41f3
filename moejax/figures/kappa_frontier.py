"""The κ* against interactivity figure (``kappa_star_frontier``), drawn by ``python -m moejax.plot``
when the sweep holds ``kappa_star_frontier`` (``breakeven.include=true`` with ``grid.batches``;
``moejax.analysis.frontier_breakeven``).

One line per model at the selection's hardware and GPU count and the context nearest 8k (log
axes): filled markers where κ*(u) is found, hollow ones at κ_min / κ_max where the crossing lies
beyond that bound, none where a side cannot reach the level. A dashed line at the selection's κ:
where κ*(u) lies below it, a dense model of equal quality (κ·ρ·P_total parameters) serves fewer
tokens/s per GPU than the MoE at that interactivity, so the MoE is the cheaper one there.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..analysis.summary import context_label, flag_meanings
from .axes import log_ticks


def plot_kappa_star_frontier(ds, out_dir, sel: dict, dtypes: str = "", context: float = 8192.0):
    """The figure for selection ``sel`` (hardware, num_gpus, kappa); ``dtypes`` joins the title.
    Returns (png, svg, arrays, figure); ``arrays`` holds the dataset's values drawn:
    ``kappa_star_frontier`` and ``reason`` [model, level] at the chosen context."""
    c = float(ds.context[np.argmin(np.abs(np.log(ds.context.values / context)))])
    names = ["kappa_star_frontier", "kappa_star_frontier_reason"]
    ks = ds[names].sel(hardware=sel["hardware"], num_gpus=sel["num_gpus"], context=c).transpose("model", "interactivity")
    u, k, reason = ds.interactivity.values, ks.kappa_star_frontier.values.astype(float), ks.kappa_star_frontier_reason.values
    flags = flag_meanings(ds.kappa_star_frontier_reason)
    k_min, k_max = (float(ds.kappa_star_frontier.attrs.get(a, np.nan)) for a in ("kappa_min", "kappa_max"))
    arrays = {
        "interactivity": u,
        "context": c,
        "model": [str(m) for m in ds.model.values],
        "kappa_star_frontier": k,
        "reason": reason,
        "selection": dict(sel),
    }
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for i, model in enumerate(arrays["model"]):
        colour = plt.get_cmap("tab10")(i % 10)
        ax.plot(u, k[i], "o-", color=colour, ms=4, label=model)
        for meaning, bound in (("below_kappa_min", k_min), ("above_kappa_max", k_max)):
            at = np.array([flags.get(int(r)) == meaning for r in reason[i]])
            if at.any():
                ax.plot(u[at], np.full(at.sum(), bound), "o", mfc="none", color=colour, ms=6)
    ax.axhline(sel["kappa"], color="#555555", ls="--", lw=1)
    ax.annotate(
        f"κ = {sel['kappa']:g}: the MoE is cheaper where κ* lies below",
        (u[0], sel["kappa"]),
        fontsize=7,
        xytext=(2, 2),
        textcoords="offset points",
        color="#555555",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="interactivity (output tokens/s per user, at least)",
        ylabel="break-even κ* (dense at its own frontier)",
    )
    log_ticks(ax.xaxis, *ax.get_xlim())  # plain numbers, dense enough for a span under one decade
    log_ticks(ax.yaxis, *ax.get_ylim())
    ax.plot([], [], "o", mfc="none", color="#555555", label="hollow: crossing beyond κ_min / κ_max")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(
        f"Break-even κ* along the serving frontier (MoE ahead where κ > κ*)\n{sel['hardware']}, "
        f"{sel['num_gpus']} GPUs, context {context_label(c)}" + (f" ({dtypes})" if dtypes else "")
    )
    out_dir = Path(out_dir)
    png, svg = out_dir / "kappa_star_frontier.png", out_dir / "kappa_star_frontier.svg"
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    plt.close(fig)  # the Figure object stays usable (Agg canvas) for inspection
    return png, svg, arrays, fig
