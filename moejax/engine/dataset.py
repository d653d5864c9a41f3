"""Sweep results on disk: one atomic netCDF part per chunk, then one CF-style netCDF4 dataset.

Crash safety: a part is written to a unique temporary name and renamed, so a part either exists
whole or not at all; each records its sweep's hash, its chunk id and a checksum of its values, and
a restarted sweep evaluates every chunk without a part that proves to be that chunk. The final file
is assembled part by part, one variable at a time (memory bounded by one variable of one chunk),
into a unique temporary file, then published atomically.
Runs of the same sweep take turns through a lock on its parts directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import sys
import uuid
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from ..physics.cost import BOUND_MEANINGS
from ..physics.specs import KV_MODES, SpecError
from .grid import AXES, ELASTICITY_FIELDS, PARTITION_FIELDS
from .interrupts import deferred

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
    "hw_hbm_bytes": ("byte", "HBM capacity per GPU"),
    "hw_hbm_bw": ("byte s-1", "HBM bandwidth per GPU"),
    "hw_flops_bf16": ("s-1", "dense BF16 FLOP per second per GPU"),
    "hw_flops_fp8": ("s-1", "dense FP8 FLOP per second per GPU"),
    "hw_intra_bw": ("byte s-1", "intra-node link bandwidth per GPU per direction"),
    "hw_intra_latency": ("s", "intra-node ring hop latency"),
    "hw_island_size": ("1", "GPUs per node-local island"),
    "hw_inter_bw": ("byte s-1", "inter-node bandwidth per GPU per direction"),
    "hw_inter_latency": ("s", "inter-node ring hop latency"),
    "hw_flops_fp4": ("s-1", "dense FP4 FLOP per second per GPU (0: no FP4 tensor cores)"),
    "hw_fabric": ("1", "island fabric: 0 switched, 1 full mesh, 2 torus"),
    "hw_link_bw": ("byte s-1", "per-link bandwidth of a mesh or torus island"),
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


def temp_name(path: Path) -> Path:
    """A hidden temporary next to ``path``, unique to this process and call: concurrent writers
    never share one, and being on the same filesystem, it can be renamed onto ``path`` atomically."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def write_part(parts_dir: Path, chunk_id: int, axis: str, positions: slice, results: dict, trailing: dict | None = None) -> None:
    """Write one chunk's raw results atomically (unique temporary name, then rename). ``trailing``:
    the dimensions after the grid axes of results that have their own (name -> dims). The part
    proves what it is: attributes ``grid`` (the sweep's hash, the name of ``parts_dir``),
    ``chunk_id`` and ``checksum`` (:func:`part_checksum`)."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    dims = AXES + ("partition",) if results["feasible"].ndim == 5 else AXES
    data = {k: (dims[: v.ndim - (k in FIELD_STACKS)] + ((f"{k}_field",) if k in FIELD_STACKS else ()), v)
            for k, v in results.items()}
    data.update({k: (AXES + tuple(trailing[k]), v) for k, v in results.items() if trailing and k in trailing})
    ds = xr.Dataset(data, attrs={"grid": parts_dir.name, "chunk_id": chunk_id, "axis": axis, "start": positions.start,
                                 "stop": positions.stop})
    path = parts_dir / f"part-{chunk_id:06d}.nc"
    tmp = temp_name(path)
    try:
        with deferred():  # no signal raises inside (HDF5's lock): a stop waits for the part to be whole
            ds.to_netcdf(tmp, engine="netcdf4")
            with netCDF4.Dataset(tmp, "r+") as nc:  # the checksum of what is on disk, as a resumed run reads it
                nc.setncattr("checksum", part_checksum(nc))
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when writing failed or was interrupted


def part_checksum(nc) -> str:
    """SHA-256 (hex) of an open part: its identity attributes (grid, chunk_id, axis, start, stop)
    and every variable's name, dtype, shape and raw stored bytes, in name order."""
    h = hashlib.sha256()
    for key in ("grid", "chunk_id", "axis", "start", "stop"):
        h.update(f"{key}={nc.getncattr(key)};".encode())
    for name in sorted(nc.variables):
        var = nc.variables[name]
        var.set_auto_maskandscale(False)  # the bytes as stored: NaN fill and flags untouched
        values = np.ascontiguousarray(var[...])
        h.update(f"{name}:{values.dtype.str}:{values.shape};".encode())
        h.update(values.tobytes())
    return h.hexdigest()


def part_problem(path: Path, chunk_id: int, grid: str) -> str | None:
    """Why a part on disk cannot stand for chunk ``chunk_id`` of the sweep hashed ``grid`` (None if
    it can): unreadable (truncated, garbled), another grid's, another chunk's, or values that do not
    match its checksum (a flipped byte)."""
    try:
        with deferred(), netCDF4.Dataset(path) as nc:
            attrs = set(nc.ncattrs())
            if not {"grid", "chunk_id", "checksum"} <= attrs or "feasible" not in nc.variables:
                return "is damaged (no grid, chunk_id or checksum attribute)"
            if nc.getncattr("grid") != grid:
                return f"belongs to another grid ({nc.getncattr('grid')}, not {grid})"
            if int(nc.getncattr("chunk_id")) != chunk_id:
                return f"holds chunk {int(nc.getncattr('chunk_id'))}, not {chunk_id}"
            if part_checksum(nc) != nc.getncattr("checksum"):  # reads every byte, one variable at a time
                return "is damaged (its values do not match its checksum)"
        return None
    except Exception:  # noqa: BLE001 - HDF5 reports damage as OSError, RuntimeError, IndexError, ...
        return "is damaged (unreadable)"


def _chunk_id(path: Path) -> int:
    return int(path.name.lstrip(".").split("-")[1].split(".")[0])


def completed_chunks(parts_dir: Path, owned=None) -> set[int]:
    """Chunks whose part is on disk and proves to be that chunk of this sweep (:func:`part_problem`;
    the sweep's hash is the name of ``parts_dir``). Temporaries of a killed run are removed,
    and damaged parts are removed (to be recomputed), only those of the ``owned`` chunks when given
    (other processes may be writing theirs). Call it holding ``parts_lock``."""
    mine = lambda p: owned is None or _chunk_id(p) in owned
    for tmp in parts_dir.glob(".part-*.tmp"):
        if mine(tmp):
            tmp.unlink(missing_ok=True)
    done = set()
    for part in parts_dir.glob("part-*.nc"):
        problem = part_problem(part, _chunk_id(part), parts_dir.name) if mine(part) else None
        if problem is None:
            done.add(_chunk_id(part))
        else:
            print(f"warning: {part} {problem}; its chunk is computed again", file=sys.stderr)
            part.unlink(missing_ok=True)
    return done


@contextlib.contextmanager
def parts_lock(parts_dir: Path):
    """Hold an exclusive lock on ``parts_dir`` (created if needed): a second run of the same sweep
    says so on stderr and waits for the first, then resumes from what is left. The kernel drops the
    lock when its holder dies, so a killed run never blocks the next one. If the holder removed the
    directory (its run finished), the lock is taken again on a fresh one."""
    said = False
    while True:
        parts_dir.mkdir(parents=True, exist_ok=True)
        path = parts_dir / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not said:
                print(f"waiting: another run of this sweep is using {parts_dir}; this one continues when it ends",
                      file=sys.stderr, flush=True)
                said = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks (some network mounts): go on unlocked, as before
            break
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def check_writable(field: str, directory: Path, shown: Path | None = None) -> None:
    """Fail early, before any computing, unless files can be created in ``directory``: one line
    ``<field> = '<shown>' is invalid: cannot write there (<reason>)`` (``shown`` defaults to
    ``directory``). Checked by creating and removing a probe file; directories created for the
    probe are removed again. The one writability check of every command's outputs."""
    shown = directory if shown is None else shown
    if directory.exists() and not directory.is_dir():
        raise SpecError(f"{field} = '{shown}' is invalid: '{directory}' is a file, not a directory")
    missing = [d for d in [directory, *directory.parents] if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = temp_name(directory / "probe")
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise SpecError(f"{field} = '{shown}' is invalid: cannot write there ({e.strerror or e})") from None
    finally:
        for d in missing:
            with contextlib.suppress(OSError):
                d.rmdir()


def check_output(out: Path, overwrite: bool, field: str = "out") -> None:
    """Fail early, before any computing: ``out`` must be a file path that can be written (and does
    not exist, unless ``overwrite``); ``check_writable`` on its directory."""
    if out.is_dir():
        raise SpecError(f"{field} = '{out}' is invalid: it is a directory; give a file path, e.g. {field}={out / 'sweep.nc'}")
    if out.exists() and not overwrite:
        raise SpecError(f"{field} = '{out}' is invalid: the file exists; choose another path or add overwrite=true")
    check_writable(field, out.parent, shown=out)


def publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move a finished temporary onto ``out`` atomically. Without ``overwrite`` an existing ``out``
    (e.g. written meanwhile by a concurrent run) is never replaced: a hard link creates ``out`` only
    if it does not exist. ``tmp`` is gone afterwards, whatever happens."""
    taken = SpecError(f"out = '{out}' is invalid: another run wrote that file meanwhile; "
                      "choose another path or add overwrite=true")
    try:
        if overwrite:
            os.replace(tmp, out)
            return
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise taken from None
        except OSError:  # a filesystem without hard links: check, then rename
            if out.exists():
                raise taken from None
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _create_variable(nc, name, dims, dtype, chunks, attrs):
    fill = None if dtype.startswith("i") else np.nan
    var = nc.createVariable(name, dtype, dims, zlib=True, complevel=4, shuffle=True,
                            chunksizes=[min(c, len(nc.dimensions[d])) for c, d in zip(chunks, dims)], fill_value=fill)
    var.setncatts(attrs)
    return var


def _data_variables(dims: tuple, float_dtype: str, keep_partitions: bool, sensitivities: bool) -> list:
    """``(name, dims, dtype)`` of every per-point variable the dataset holds."""
    names = list(VARIABLES) + ([] if keep_partitions else list(DEGREES))
    names += list(ELASTICITIES) if sensitivities else []
    out = [(name, dims[:6] if name in DEGREES else dims,
            "i1" if name in INT_VARS else "i2" if name in DEGREES else float_dtype) for name in names]
    return out + ([("partition_valid", dims, "i1")] if keep_partitions else [])


def estimated_bytes(coords: dict, float_dtype: str, keep_partitions: bool, sensitivities: bool) -> int:
    """Uncompressed size in bytes of the dataset's per-point variables: cells times bytes per cell,
    the partition dimension included when kept, and the derived ``cost_per_mtok`` and
    ``joules_per_token`` (written by the sweep's economics step, same dims as throughput).

    >>> dims = ("model", "variant", "kappa", "hardware", "num_gpus", "context")
    >>> c = {d: (range(n), {}) for d, n in zip(dims, (1, 2, 1, 1, 1, 10))}
    >>> estimated_bytes(c, "f4", False, False)  # 20 cells x (16 f4 + 2 i1 flags + 8 i2 degrees + 1 i1 kv_mode)
    1660
    """
    sizes = {d: len(values) for d, (values, _) in coords.items()}
    variables = _data_variables(tuple(coords), float_dtype, keep_partitions, sensitivities)
    variables += [(name, tuple(coords), float_dtype) for name in ("cost_per_mtok", "joules_per_token")]
    return sum(math.prod(sizes[d] for d in var_dims) * np.dtype(dtype).itemsize for _, var_dims, dtype in variables)


def assemble(out: Path, parts_dir: Path, coords: dict, row_map: np.ndarray, global_attrs: dict,
             float_dtype: str, partition_table: np.ndarray | None = None, extra: tuple = (),
             sensitivities: bool = False, derive=None, extra_dims: dict | None = None,
             extra_vars: tuple = (), overwrite: bool = False, checkpoint=lambda: None) -> None:
    """Write the final dataset from the parts.

    ``coords``: ordered ``{dim: (values, attrs)}`` for model, variant, kappa, hardware, num_gpus,
    context (and partition when kept). ``row_map[model, variant, kappa]`` is the kernel row
    holding that combination. ``extra``: small ``(name, dims, values)`` flag variables.
    ``derive(nc)``, if given, adds derived variables to the open file before it is published.
    ``extra_dims`` ``{dim: (values, attrs)}`` and ``extra_vars`` ``(name, trailing dims, dtype,
    attrs)``: results with dimensions of their own after the grid's (the frontier's).
    ``checkpoint()`` runs after each part and may raise (a pending Ctrl-C). The temporary file is
    removed on every exit path (error, Ctrl-C, SIGTERM turned into one).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out)
    try:
        with deferred(), netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:  # a stop raises at a checkpoint or after
            _write_layout(nc, coords, global_attrs, float_dtype, partition_table, extra, sensitivities, extra_dims, extra_vars)
            for part in sorted(parts_dir.glob("part-*.nc")):
                with netCDF4.Dataset(part) as ds:
                    _write_chunk(nc, ds, row_map)
                checkpoint()
            if derive is not None:
                derive(nc)
        publish(tmp, out, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def _write_layout(nc, coords, global_attrs, float_dtype, partition_table, extra, sensitivities, extra_dims=None,
                  extra_vars=()) -> None:
    """Dimensions, coordinates, attributes, empty per-point variables and the small extras."""
    dims = tuple(coords)
    for dim, (values, attrs) in coords.items():
        nc.createDimension(dim, len(values))
        values = np.asarray(values)
        kind = str if values.dtype.kind in "US" else values.dtype
        var = nc.createVariable(dim, kind, (dim,))
        var[:] = values.astype(object) if kind is str else values
        var.setncatts(attrs)
    nc.setncatts(global_attrs)
    chunks = [1] * (len(dims) - 3) + [len(coords[d][0]) for d in dims[-3:]]
    for name, var_dims, dtype in _data_variables(dims, float_dtype, partition_table is not None, sensitivities):
        attrs = variable_attrs(name) if name != "partition_valid" else {
            "long_name": "candidate is a legal split of the model", "flag_values": np.array([0, 1], np.int8),
            "flag_meanings": "illegal legal"}
        _create_variable(nc, name, var_dims, dtype, chunks[: len(var_dims)], attrs)
    if partition_table is not None:
        for i, f in enumerate(PARTITION_FIELDS):
            var = nc.createVariable(f"partition_{f}", "i4", ("num_gpus", "partition"))
            var[:] = partition_table[..., i].astype(np.int32)
            var.setncatts({"long_name": f"candidate partition: {f}", "units": "1"})
    for dim, (values, attrs) in (extra_dims or {}).items():
        nc.createDimension(dim, len(values))
        nc.createVariable(dim, np.asarray(values).dtype, (dim,))[:] = values
        nc.variables[dim].setncatts(attrs)
    for name, trailing, dtype, attrs in extra_vars:
        _create_variable(
            nc, name, dims[:6] + tuple(trailing), dtype, chunks[:6] + [len(nc.dimensions[d]) for d in trailing], attrs
        )
    for name, var_dims, values in extra:
        var = nc.createVariable(name, values.dtype, var_dims)
        var[:] = values
        var.setncatts(variable_attrs(name))


def _write_chunk(nc, part, row_map: np.ndarray) -> None:
    """Scatter one part (kernel row layout, an open netCDF4 file) into the dataset's (model,
    variant, kappa, ...) layout, reading one variable at a time."""
    axis, lo, hi = part.getncattr("axis"), int(part.getncattr("start")), int(part.getncattr("stop"))
    grid_slices = {a: slice(None) for a in AXES[1:]}
    rows = range(lo, hi) if axis == "row" else range(row_map.max() + 1)
    if axis != "row":
        grid_slices[axis] = slice(lo, hi)
    tail = tuple(grid_slices[a] for a in AXES[1:])
    targets = [(m, v, k, row_map[m, v, k] - (lo if axis == "row" else 0))
               for m, v, k in zip(*np.nonzero(row_map >= 0)) if row_map[m, v, k] in rows]
    for stored, var in part.variables.items():
        if stored not in nc.variables and stored not in FIELD_STACKS:
            continue
        var.set_auto_mask(False)  # raw values: NaN and flags as written
        values = var[...]
        if stored in FIELD_STACKS:
            prefix = "elasticity_" if stored == "elasticities" else ""
            arrays = {prefix + f: values[..., i] for i, f in enumerate(FIELD_STACKS[stored])}
        else:
            arrays = {stored: values}
        for name, array in arrays.items():
            if name in nc.variables:
                for m, v, k, local in targets:
                    nc.variables[name][(m, v, k) + tail] = array[local]
