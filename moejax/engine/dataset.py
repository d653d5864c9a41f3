"""Sweep results on disk: one atomic netCDF part per chunk, then one CF-style netCDF4 dataset.

Crash safety: a part is written to a temporary name and renamed, so a part either exists whole
or not at all; a restarted sweep evaluates only the chunks without a part. The final file is
assembled part by part (memory bounded by one chunk) into a temporary file, then renamed.
"""

from __future__ import annotations

import os
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from ..physics.cost import BOUND_MEANINGS
from ..physics.specs import KV_MODES
from .grid import AXES, ELASTICITY_FIELDS, PARTITION_FIELDS

FLAG = "flag"
# name -> (units, long_name); units follow UDUNITS ("1" for counts, "s-1" for per-second rates)
VARIABLES = {
    "throughput_per_gpu": ("s-1", "decode tokens per second per GPU"),
    "throughput": ("s-1", "decode tokens per second per replica"),
    "step_time": ("s", "time of one decode step (per-token latency); inf where infeasible"),
    "tokens_per_s_per_user": ("s-1", "output tokens per second one sequence sees (interactivity)"),
    # components below are NaN where no candidate partition is feasible
    "batch": ("1", "sequences served concurrently per replica"),
    "b_max": ("1", "largest batch whose weights and KV cache fit in HBM"),
    "feasible": (FLAG, "point fits in memory under a legal partition"),
    "bound": (FLAG, "what limits the step"),
    "t_compute": ("s", "compute time per step"),
    "t_hbm": ("s", "HBM traffic time per step"),
    "t_comm": ("s", "collective communication time per step, before overlap"),
    "t_comm_exposed": ("s", "communication time per step not hidden by overlap"),
    "reuse": ("1", "the qs paper's reuse R = (B/pp)*k/E: tokens per expert per microbatch (below 1 when "
                   "experts outnumber token choices)"),
    "memory_per_gpu": ("byte", "HBM used per GPU: weights + KV cache + reserve"),
    "weight_bytes_per_gpu": ("byte", "resident weight bytes per GPU"),
    "kv_bytes_per_gpu": ("byte", "KV-cache bytes per GPU at the served batch"),
}
FLAGS = {
    "feasible": ([0, 1], "infeasible feasible"),
    "bound": (list(range(len(BOUND_MEANINGS))), " ".join(BOUND_MEANINGS)),
    "kv_mode": (list(KV_MODES.values()), " ".join(KV_MODES)),
    "baseline_exists": ([0, 1], "no_dense_baseline exists"),
}
BASELINE = {"baseline_exists": (FLAG, "a dense model of kappa*rho*P_total params exists in the baseline family")}
HARDWARE = {
    "hw_hbm_bytes": ("byte", "HBM capacity per GPU"), "hw_hbm_bw": ("byte s-1", "HBM bandwidth per GPU"),
    "hw_flops_bf16": ("s-1", "dense BF16 FLOP per second per GPU"), "hw_flops_fp8": ("s-1", "dense FP8 FLOP per second per GPU"),
    "hw_intra_bw": ("byte s-1", "intra-node link bandwidth per GPU per direction"),
    "hw_intra_latency": ("s", "intra-node ring hop latency"), "hw_island_size": ("1", "GPUs per node-local island"),
    "hw_inter_bw": ("byte s-1", "inter-node bandwidth per GPU per direction"), "hw_inter_latency": ("s", "inter-node ring hop latency"),
    "hw_flops_fp4": ("s-1", "dense FP4 FLOP per second per GPU (0: no FP4 tensor cores)"),
    "hw_fabric": ("1", "island fabric: 0 switched, 1 full mesh, 2 torus"), "hw_link_bw": ("byte s-1", "per-link bandwidth of a mesh or torus island"),
    "hw_torus_dims": ("1", "dimensions of a torus island (0: not a torus)"),
}
ELASTICITIES = {f"elasticity_{f}": ("1", f"d log(throughput_per_gpu) / d log({f}) at the winning partition, continuous B_max "
                                           "(NaN where infeasible)") for f in ELASTICITY_FIELDS}
FIELD_STACKS = {"degrees": PARTITION_FIELDS, "elasticities": ELASTICITY_FIELDS}  # results with a trailing field axis
DEGREES = {f: ("1", f"winning partition: {f}") for f in PARTITION_FIELDS}
DEGREES["kv_mode"] = (FLAG, "winning partition: KV-parallel mode")
DEGREES["dense_tp"] = ("1", "winning partition: tensor-parallel degree of the dense FFN layers and LM head")
DEGREES["redundant_experts"] = ("1", "winning partition: redundant expert slots (EPLB copies)")
INT_VARS = {"feasible", "bound", "kv_mode", "baseline_exists"}


def variable_attrs(name: str) -> dict:
    units, long_name = {**VARIABLES, **DEGREES, **BASELINE, **ELASTICITIES, **HARDWARE}[name]
    if units == FLAG:
        values, meanings = FLAGS[name]
        return {"long_name": long_name, "flag_values": np.array(values, dtype=np.int8), "flag_meanings": meanings}
    return {"units": units, "long_name": long_name}


def write_part(parts_dir: Path, chunk_id: int, axis: str, positions: slice, results: dict, trailing: dict | None = None) -> None:
    """Write one chunk's raw results atomically (temporary name, then rename). ``trailing``: the
    dimensions after the grid axes of results that have their own (name -> dims)."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    dims = AXES + ("partition",) if results["feasible"].ndim == 5 else AXES
    data = {k: (dims[: v.ndim - (k in FIELD_STACKS)] + ((f"{k}_field",) if k in FIELD_STACKS else ()), v)
            for k, v in results.items()}
    data.update({k: (AXES + tuple(trailing[k]), v) for k, v in results.items() if trailing and k in trailing})
    ds = xr.Dataset(data, attrs={"chunk_id": chunk_id, "axis": axis, "start": positions.start, "stop": positions.stop})
    tmp = parts_dir / f".part-{chunk_id:06d}.nc.tmp"
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, parts_dir / f"part-{chunk_id:06d}.nc")


def completed_chunks(parts_dir: Path, owned=None) -> set[int]:
    """Chunks whose part is on disk. Half-written temporaries of a killed run are removed, only
    those of the ``owned`` chunks when given (other processes may be writing theirs)."""
    for tmp in parts_dir.glob(".part-*.nc.tmp"):
        if owned is None or int(tmp.name.split("-")[1].split(".")[0]) in owned:
            tmp.unlink(missing_ok=True)
    return {int(p.stem.split("-")[1]) for p in parts_dir.glob("part-*.nc")}


def _create_variable(nc, name, dims, dtype, chunks, attrs):
    fill = None if dtype.startswith("i") else np.nan
    var = nc.createVariable(name, dtype, dims, zlib=True, complevel=4, shuffle=True,
                            chunksizes=[min(c, len(nc.dimensions[d])) for c, d in zip(chunks, dims)], fill_value=fill)
    var.setncatts(attrs)
    return var


def assemble(out: Path, parts_dir: Path, coords: dict, row_map: np.ndarray, global_attrs: dict,
             float_dtype: str, partition_table: np.ndarray | None = None, extra: tuple = (),
             sensitivities: bool = False, derive=None, extra_dims: dict | None = None,
             extra_vars: tuple = ()) -> None:
    """Write the final dataset from the parts.

    ``coords``: ordered ``{dim: (values, attrs)}`` for model, variant, kappa, hardware, num_gpus,
    context (and partition when kept). ``row_map[model, variant, kappa]`` is the kernel row
    holding that combination. ``extra``: small ``(name, dims, values)`` flag variables.
    ``derive(nc)``, if given, adds derived variables to the open file before it is renamed.
    ``extra_dims`` ``{dim: (values, attrs)}`` and ``extra_vars`` ``(name, trailing dims, dtype,
    attrs)``: results with dimensions of their own after the grid's (the frontier's).
    """
    dims = tuple(coords)
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        for dim, (values, attrs) in coords.items():
            nc.createDimension(dim, len(values))
            values = np.asarray(values)
            kind = str if values.dtype.kind in "US" else values.dtype
            var = nc.createVariable(dim, kind, (dim,))
            var[:] = values.astype(object) if kind is str else values
            var.setncatts(attrs)
        nc.setncatts(global_attrs)
        chunks = [1] * (len(dims) - 3) + [len(coords[d][0]) for d in dims[-3:]]
        names = list(VARIABLES) + ([] if partition_table is not None else list(DEGREES))
        names += list(ELASTICITIES) if sensitivities else []
        for name in names:
            var_dims = dims[:6] if name in DEGREES else dims
            dtype = "i1" if name in INT_VARS else "i2" if name in DEGREES else float_dtype
            _create_variable(nc, name, var_dims, dtype, chunks[: len(var_dims)], variable_attrs(name))
        if partition_table is not None:
            for i, f in enumerate(PARTITION_FIELDS):
                var = nc.createVariable(f"partition_{f}", "i4", ("num_gpus", "partition"))
                var[:] = partition_table[..., i].astype(np.int32)
                var.setncatts({"long_name": f"candidate partition: {f}", "units": "1"})
            _create_variable(nc, "partition_valid", dims, "i1", chunks, {"long_name": "candidate is a legal split of the model", "flag_values": np.array([0, 1], np.int8), "flag_meanings": "illegal legal"})
        for dim, (values, attrs) in (extra_dims or {}).items():
            nc.createDimension(dim, len(values))
            nc.createVariable(dim, np.asarray(values).dtype, (dim,))[:] = values
            nc.variables[dim].setncatts(attrs)
        for name, trailing, dtype, attrs in extra_vars:
            _create_variable(nc, name, dims[:6] + tuple(trailing), dtype, chunks[:6] + [len(nc.dimensions[d]) for d in trailing], attrs)
        for name, var_dims, values in extra:
            var = nc.createVariable(name, values.dtype, var_dims)
            var[:] = values
            var.setncatts(variable_attrs(name))
        for part in sorted(parts_dir.glob("part-*.nc")):
            with xr.open_dataset(part, engine="netcdf4") as ds:
                ds = ds.load()
            _write_chunk(nc, ds, row_map)
        if derive is not None:
            derive(nc)
    os.replace(tmp, out)


def _write_chunk(nc, part: xr.Dataset, row_map: np.ndarray) -> None:
    """Scatter one part (kernel row layout) into the dataset's (model, variant, kappa, ...) layout."""
    axis, lo, hi = part.attrs["axis"], int(part.attrs["start"]), int(part.attrs["stop"])
    grid_slices = {a: slice(None) for a in AXES[1:]}
    rows = range(lo, hi) if axis == "row" else range(row_map.max() + 1)
    if axis != "row":
        grid_slices[axis] = slice(lo, hi)
    tail = tuple(grid_slices[a] for a in AXES[1:])
    arrays = {k: v.values for k, v in part.data_vars.items()}
    for stack, fields in FIELD_STACKS.items():
        prefix = "elasticity_" if stack == "elasticities" else ""
        for i, f in enumerate(fields if stack in arrays else ()):
            arrays[prefix + f] = arrays[stack][..., i]
    for m, v, k in zip(*np.nonzero(row_map >= 0)):
        row = row_map[m, v, k]
        if row not in rows:
            continue
        local = row - (lo if axis == "row" else 0)
        for name, values in arrays.items():
            if name in nc.variables:
                nc.variables[name][(m, v, k) + tail] = values[local]
