"""The end-of-run summary of a sweep dataset: what the main job prints.

Two small tables, columns sized to their contents:

- per model, the best MoE configuration: tokens/s/GPU, hardware × GPUs and context, batch,
  what bounds the step, the partition (degrees) and the step time;
- per model at the shortest and longest context, on the hardware × GPUs where the MoE does best
  there: the MoE's bound, the dense/MoE throughput ratio at κ nearest 5 ("infeasible" where a
  side does not fit) and, when the dataset has it, the break-even κ* with its flag.

A ``keep_partitions=true`` dataset is first reduced to the best feasible partition per point
(``best_per_point``), the same choice the sweep makes without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..engine.dataset import variable_attrs
from ..engine.grid import PARTITION_FIELDS
from ..engine.plan import partition_space_note
from ..physics.specs import SpecError

SWEEP_VARIABLES = ("throughput_per_gpu", "feasible", "bound", "step_time", "t_hbm", "batch")  # what every sweep dataset holds


def flag_meanings(var: xr.DataArray) -> dict[int, str]:
    """``{flag value: meaning}`` of a CF flag variable, read from its attributes."""
    meanings = var.attrs["flag_meanings"].split()
    values = var.attrs.get("flag_values", np.arange(len(meanings)))
    return {int(v): m for v, m in zip(np.atleast_1d(values), meanings)}


def check_sweep(ds: xr.Dataset, name) -> None:
    """``SpecError`` unless ``ds`` is a moejax sweep dataset (the variables and dims plotted)."""
    missing = [v for v in SWEEP_VARIABLES + ("model", "variant", "kappa", "hardware", "num_gpus", "context") if v not in ds]
    if missing:
        raise SpecError(
            f"dataset = {str(name)!r} is invalid: not a moejax sweep dataset (no {', '.join(missing)}); "
            "write one with python -m moejax.sweep"
        )


def open_sweep(path) -> xr.Dataset:
    """The sweep dataset at ``path``, opened (lazily: use it as a context manager) and checked
    (:func:`check_sweep`); ``SpecError`` when it is not a readable netCDF file (the callers say "no
    such file" first, before their checks of ``out``)."""
    try:
        ds = xr.open_dataset(path)
    except Exception as e:  # noqa: BLE001  (any reader failure means: not a readable netCDF file)
        raise SpecError(f"dataset = {str(path)!r} is invalid: not a readable netCDF file ({type(e).__name__})") from None
    try:
        check_sweep(ds, path)
    except SpecError:
        ds.close()
        raise
    return ds


def best_per_point(ds: xr.Dataset) -> xr.Dataset:
    """A ``keep_partitions=true`` dataset reduced to its best feasible, legal partition per point
    (largest ``throughput_per_gpu``; the first candidate where none is feasible, with NaN degrees),
    with the winning degrees as variables ``tp``, ``ep``, ... as a sweep without it stores them.
    Datasets without a ``partition`` dimension are returned unchanged."""
    if "partition" not in ds.dims:
        return ds
    ok = ds.feasible.astype(bool)
    if "partition_valid" in ds:
        ok = ok & ds.partition_valid.astype(bool)
    best = ds.throughput_per_gpu.where(ok, -np.inf).argmax("partition")
    found = ok.any("partition")
    out = ds.drop_vars([v for v in ds.variables if "partition" in ds[v].dims])
    for name in ds.data_vars:
        if "partition" in ds[name].dims and not name.startswith("partition_"):
            out[name] = ds[name].isel(partition=best)
    for f in PARTITION_FIELDS:
        if f"partition_{f}" in ds:
            degree = ds[f"partition_{f}"].isel(partition=best).astype(float)
            out[f] = degree.where(found).transpose(*ds.throughput_per_gpu.dims[:-1])
            out[f].attrs = variable_attrs(f)
    out.attrs["partition_search"] = "best feasible partition by throughput_per_gpu (reduced from all kept candidates)"
    return out


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    """Rows of cells as aligned lines: each column as wide as its widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


def context_label(c: float) -> str:
    """Context in tokens as the report and figures label it: 8192 → 8k, 1048576 → 1M, 1000 → 1000."""
    c = int(c)
    for shift, unit in ((20, "M"), (10, "k")):
        if c >= 1 << shift and c % (1 << shift) == 0:
            return f"{c >> shift}{unit}"
    return str(c)


def partition_label(degrees: dict) -> str:
    """Compact degrees: ``TP8 EP8 PP1`` always, then only the non-trivial ones
    (``DPattn2``, ``KVP2``/``CP2``, ``denseTP4``, ``+16 redundant``)."""
    g = {k: int(v) for k, v in degrees.items() if np.isfinite(v)}
    parts = [f"TP{g.get('tp', 1)} EP{g.get('ep', 1)} PP{g.get('pp', 1)}"]
    if g.get("dp_attn", 1) > 1:
        parts.append(f"DPattn{g['dp_attn']}")
    if g.get("kvp", 1) > 1:
        parts.append(f"{'CP' if g.get('kv_mode') == 2 else 'KVP'}{g['kvp']}")
    if g.get("dense_tp", g.get("tp", 1)) != g.get("tp", 1):
        parts.append(f"denseTP{g['dense_tp']}")
    if g.get("redundant_experts", 0) > 0:
        parts.append(f"+{g['redundant_experts']} redundant")
    return " ".join(parts)


def kappa_star_label(ds: xr.Dataset, point: dict) -> str:
    """κ* at one (model, hardware, num_gpus, context): the value when its flag is ``found`` (with
    ``(!)`` when the solvers disagree: ``agrees == 0``, or ``kappa_star_optax`` more than 1e-3
    relative from ``kappa_star``), else the flag meaning (and the value, if one is stored)."""
    value = float(ds.kappa_star.sel(**point))
    meaning = flag_meanings(ds.reason)[int(ds.reason.sel(**point))] if "reason" in ds else "found"
    if meaning == "found" and np.isfinite(value):
        disagrees = "agrees" in ds and not bool(ds.agrees.sel(**point))
        if "kappa_star_optax" in ds:  # the exact solver's value vs the optax diagnostic
            disagrees |= not abs(float(ds.kappa_star_optax.sel(**point)) / value - 1) <= 1e-3
        return f"{value:.3g}" + (" (!)" if disagrees else "")
    return (f"{value:.3g} " if np.isfinite(value) else "") + meaning.replace("_", " ")


def _header(ds: xr.Dataset) -> str:
    import yaml

    try:
        dtypes = yaml.safe_load(ds.attrs["config"])["grid"]["dtypes"]
    except (KeyError, TypeError, yaml.YAMLError):
        dtypes = {}
    text = ", ".join(f"{'KV' if k == 'kv' else k} {v}" for k, v in dtypes.items() if v)
    return f"grid {ds.attrs.get('grid', '?')}, accounting {ds.attrs.get('accounting_mode', '?')}" + (f", {text}" if text else "")


def summary(path: Path) -> str:
    """The end-of-run report of the sweep dataset at ``path`` (see the module doc)."""
    with xr.open_dataset(path) as opened:
        kept = "partition" in opened.dims
        space_note = partition_space_note(opened.attrs["partition_space"]) if "partition_space" in opened.attrs else None
        needed = [
            "throughput_per_gpu",
            "batch",
            "bound",
            "step_time",
            "feasible",
            "partition_valid",
            *PARTITION_FIELDS,
            *(f"partition_{f}" for f in PARTITION_FIELDS),
            "kappa_star",
            "reason",
            "agrees",
            "kappa_star_optax",
        ]
        ds = best_per_point(opened[[v for v in needed if v in opened]]).load()  # only what is shown: design spaces are large
    kappa = float(ds.kappa[np.argmin(np.abs(ds.kappa.values - 5.0))])
    tput = ds.throughput_per_gpu.sel(kappa=kappa)
    bounds = flag_meanings(ds.bound)
    lines = [_header(ds)] + (["all candidate partitions kept: each point is shown at its best feasible one"] if kept else [])
    lines += ["", "best MoE configuration per model (tokens/s/GPU at B = batch, best partition):"]
    rows = [["model", "tok/s/GPU", "hardware", "GPUs", "context", "batch", "bound", "partition", "step"]]
    for model in ds.model.values:
        moe = tput.sel(model=model, variant="moe")
        if not bool((moe > 0).any()):
            rows.append([str(model), "infeasible", "", "", "", "", "", "", ""])
            continue
        where = {d: moe[d].values[i] for d, i in zip(moe.dims, np.unravel_index(int(np.argmax(moe.values)), moe.shape))}
        at = dict(model=model, variant="moe", kappa=kappa, **where)
        degrees = {f: float(ds[f].sel(**at)) for f in PARTITION_FIELDS if f in ds}
        rows.append(
            [
                str(model),
                f"{float(moe.max()):.4g}",
                str(where["hardware"]),
                str(int(where["num_gpus"])),
                context_label(where["context"]),
                f"{float(ds.batch.sel(**at)):.0f}",
                bounds[int(ds.bound.sel(**at))],
                partition_label(degrees),
                f"{1e3 * float(ds.step_time.sel(**at)):.3g} ms",
            ]
        )
    lines += _table(rows, right={1, 3, 4, 5, 8})

    has_ks = "kappa_star" in ds
    lines += [
        "",
        "at the shortest and longest context, on the hardware x GPUs where the MoE does best there:",
        f"dense/MoE throughput ratio at kappa = {kappa:g} (> 1: the dense baseline is faster)"
        + ("; break-even kappa* (above it the MoE is cheaper; (!): the solvers disagree)" if has_ks else ""),
    ]
    rows = [["model", "context", "hardware", "GPUs", "MoE bound", "dense/MoE"] + (["kappa*"] if has_ks else [])]
    for model in ds.model.values:
        for c in dict.fromkeys((ds.context.values[0], ds.context.values[-1])):
            m = tput.sel(model=model, variant="moe", context=c).stack(place=("hardware", "num_gpus"))
            if not bool((m > 0).any()):
                rows.append([str(model), context_label(c), "", "", "infeasible", "MoE infeasible"] + ([""] if has_ks else []))
                continue
            hw, gpus = m.place.values[int(np.argmax(m.values))]
            point = dict(model=model, hardware=hw, num_gpus=gpus, context=c)
            dense = float(tput.sel(variant="dense", **point))
            ratio = f"{dense / float(m.max()):.2f}x" if dense > 0 else "dense infeasible"
            row = [
                str(model),
                context_label(c),
                str(hw),
                str(int(gpus)),
                bounds[int(ds.bound.sel(variant="moe", kappa=kappa, **point))],
                ratio,
            ]
            rows.append(row + ([kappa_star_label(ds, point)] if has_ks else []))
    lines += _table(rows, right={1, 3, 5})
    if not bool(ds.feasible.any()):
        lines.append("warning: no point of this grid is feasible")
    return "\n".join(lines + (["", space_note] if space_note else []))
