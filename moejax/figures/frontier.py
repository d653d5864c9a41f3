"""The serving-frontier figure of ``python -m moejax.plot`` (registered there when the dataset has
``frontier_*`` variables, i.e. was written with ``grid.batches``, an SLO or ``grid.workloads``).

Decode tokens/s per GPU against tokens/s per user (log-log): at each interactivity level the best
throughput per GPU of any (partition, batch) reaching it (``frontier_throughput_per_gpu``), for
the MoE and its dense baseline at every κ, on the selection's hardware × GPUs at the context
nearest 8192 tokens (``FRONTIER_CONTEXT``). The right axis reads the same curves in US dollars
per million output tokens at the hardware's price (``hw_price_per_gpu_hour``):
``$/Mtok = price / 3600 / (tokens/s/GPU) × 1e6`` (``physics.serving.cost_per_mtok``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..physics.serving import cost_per_mtok
from .axes import log_ticks

FRONTIER_CONTEXT = 8192.0  # tokens: the context the figure shows (the nearest in the dataset)


def frontier_context(ds) -> float:
    """The dataset context nearest ``FRONTIER_CONTEXT`` (log distance)."""
    return float(ds.context[np.argmin(np.abs(np.log(ds.context.values / FRONTIER_CONTEXT)))])


def _positive(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def plot_frontier(ds, out_dir, sel, title: str, save):
    """Draw the figure; ``title`` the first line of the caption, ``save(fig, out_dir, name)`` the
    writer (``moejax.plot._save``). Returns (png, svg, arrays, figure); ``arrays`` holds the
    dataset slices drawn (``moe``, ``dense_kappa_<κ>``), the ``interactivity`` axis, ``context``
    and ``price_per_gpu_hour``."""
    context = frontier_context(ds)
    point = {"model": sel["model"], "hardware": sel["hardware"], "num_gpus": sel["num_gpus"], "context": context}
    tput = ds.frontier_throughput_per_gpu.sel(**point)
    levels = ds.interactivity.values
    price = float(ds.hw_price_per_gpu_hour.sel(hardware=sel["hardware"])) if "hw_price_per_gpu_hour" in ds else np.nan
    arrays = {
        "interactivity": levels,
        "context": context,
        "price_per_gpu_hour": price,
        "selection": dict(sel),
        "moe": tput.sel(variant="moe", kappa=sel["kappa"]).values,
    }
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    ax.plot(levels, _positive(arrays["moe"]), "o-", color="black", lw=2.2, ms=3, label="MoE")
    cmap = plt.get_cmap("plasma")
    kappas = ds.kappa.values
    for i, k in enumerate(kappas):
        key = f"dense_kappa_{float(k):g}"
        arrays[key] = tput.sel(variant="dense", kappa=k).values
        ax.plot(
            levels,
            _positive(arrays[key]),
            "s--",
            ms=3,
            color=cmap(0.1 + 0.7 * i / max(len(kappas) - 1, 1)),
            label=f"dense, κ = {float(k):g}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("interactivity (output tokens/s per user, at least)")
    ax.set_ylabel("decode throughput per GPU (tokens/s/GPU)")
    ax.grid(True, which="both", alpha=0.3)
    log_ticks(ax.xaxis, *ax.get_xlim())
    log_ticks(ax.yaxis, *ax.get_ylim())
    if np.isfinite(price):

        def dollars(x):
            return cost_per_mtok(price, np.maximum(np.asarray(x, dtype=float), 1e-30))

        right = ax.secondary_yaxis("right", functions=(dollars, dollars))  # its own inverse: y = c/x
        log_ticks(right.yaxis, *dollars(np.array(ax.get_ylim())))  # 1-2-5 ticks, not decades only
        right.set_ylabel(f"\\$ per million output tokens\n(at \\${price:g}/GPU-hour; cheaper is up)")
    workload = f", isl {ds.isl.sel(context=context).item():g} / osl {ds.osl.sel(context=context).item():g}" if "isl" in ds else ""
    fig.suptitle(f"{title}\ncontext {int(context)} tokens{workload}; best partition and batch at each level")
    fig.legend(loc="outside right upper", title="unreachable levels\nomitted", fontsize=8, title_fontsize=8)
    return (*save(fig, out_dir, "frontier"), arrays, fig)
