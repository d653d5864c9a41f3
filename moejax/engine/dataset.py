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
import errno
import fcntl
import hashlib
import math
import os
import random
import shutil
import sys
import time
import uuid
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from ..physics.specs import SpecError
from .grid import AXES, ELASTICITY_FIELDS, PARTITION_FIELDS
from .interrupts import deferred
from .variables import DEGREES, ELASTICITIES, PARTITIONS, REGISTRY, STEP_COSTS, Variable, economics_variables

FIELD_STACKS = {"degrees": PARTITION_FIELDS, "elasticities": ELASTICITY_FIELDS}  # results with a trailing field axis


def variable_attrs(name: str) -> dict:
    """The CF attributes of registered variable ``name`` (``engine.variables.REGISTRY``)."""
    return REGISTRY[name].attrs()


def temp_name(path: Path) -> Path:
    """A hidden temporary next to ``path``, unique to this process and call: concurrent writers
    never share one, and being on the same filesystem, it can be renamed onto ``path`` atomically."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def disk_full_is_one_line(field: str, path: Path, needed: int):
    """Turn a write that failed on a full filesystem into one line naming ``field``'s ``path``, the
    bytes free there and ``needed``, the variables' bytes before compression (a file adds its
    attributes, tens of kB). netCDF hides ENOSPC behind "NetCDF: HDF error", so any write error counts
    as disk full when the filesystem has less free than ``needed`` + 1 MiB; other errors pass through.

    >>> try:
    ...     with disk_full_is_one_line("out", Path("/no/such/dir/x.nc"), 10**30):  # more than any disk has free
    ...         raise RuntimeError("NetCDF: HDF error")
    ... except SpecError as e:
    ...     print(str(e).split(" (")[0])
    out = '/no/such/dir/x.nc' is invalid: the disk is full
    """
    try:
        yield
    except (OSError, RuntimeError) as e:
        where = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        free = shutil.disk_usage(where).free
        if getattr(e, "errno", None) not in (errno.ENOSPC, errno.EDQUOT) and free >= needed + 2**20:
            raise
        more = f": its variables alone take about {needed:.3g} bytes before compression, plus attributes" if needed else ""
        raise SpecError(
            f"{field} = {str(path)!r} is invalid: the disk is full ({free:.3g} bytes free there; the write needs more{more})"
        ) from None


@contextlib.contextmanager
def whole_outputs(field: str, directory: Path, needed: int = 0):
    """The files a command writes into ``directory`` (flat: CSV, JSON, YAML, PNG, SVG) inside the
    block appear whole or not at all: if the block fails, every file it created or changed there is
    removed (and ``directory`` itself if the block created it and left it empty); a full disk is one
    line naming ``field`` (:func:`disk_full_is_one_line`, ``needed`` bytes)."""
    existed = directory.is_dir()
    before = _stamps(directory)
    try:
        with disk_full_is_one_line(field, directory, needed):
            yield
    except BaseException:
        for path, stamp in _stamps(directory).items():
            if before.get(path) != stamp:
                path.unlink(missing_ok=True)
        if not existed:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _stamps(directory: Path) -> dict[Path, tuple[int, int]]:
    """(modification time, size) of each file directly in ``directory``."""
    stamps = {}
    with contextlib.suppress(OSError):  # no directory (yet); a file that vanishes is not one to remove
        for p in directory.iterdir():
            with contextlib.suppress(OSError):
                if p.is_file():
                    st = p.stat()
                    stamps[p] = (st.st_mtime_ns, st.st_size)
    return stamps


def write_text(path: Path, text: str, field: str = "out") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a unique temporary beside it (removed if the
    write fails), then rename; a full disk is one line naming ``field`` (:func:`disk_full_is_one_line`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with disk_full_is_one_line(field, path, len(text.encode())):
            tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_part(parts_dir: Path, chunk_id: int, axis: str, positions: slice, results: dict, trailing: dict | None = None) -> None:
    """Write one chunk's raw results atomically (unique temporary name, then rename). ``trailing``:
    the dimensions after the grid axes of results that have their own (name -> dims). The part
    proves what it is: attributes ``grid`` (the sweep's hash, the name of ``parts_dir``),
    ``chunk_id`` and ``checksum`` (:func:`part_checksum`)."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    dims = AXES + ("partition",) if results["feasible"].ndim == 5 else AXES
    data = {
        k: (dims[: v.ndim - (k in FIELD_STACKS)] + ((f"{k}_field",) if k in FIELD_STACKS else ()), v) for k, v in results.items()
    }
    data.update({k: (AXES + tuple(trailing[k]), v) for k, v in results.items() if trailing and k in trailing})
    ds = xr.Dataset(
        data, attrs={"grid": parts_dir.name, "chunk_id": chunk_id, "axis": axis, "start": positions.start, "stop": positions.stop}
    )
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
                print(
                    f"waiting: another run of this sweep is using {parts_dir}; this one continues when it ends",
                    file=sys.stderr,
                    flush=True,
                )
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
    if directory.is_file():
        raise SpecError(f"{field} = '{shown}' is invalid: '{directory}' is a file, not a directory")
    for attempt in range(5):  # a concurrent check (another process of the run) may remove a directory it created
        missing = [d for d in [directory, *directory.parents] if not d.exists()]
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = temp_name(directory / "probe")
            probe.touch()
            probe.unlink()
            return
        except (FileNotFoundError, FileExistsError) as e:
            if attempt == 4:
                raise SpecError(f"{field} = '{shown}' is invalid: cannot write there ({e.strerror or e})") from None
            time.sleep(random.uniform(0.0, 0.05))  # out of step with the other check
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
    taken = SpecError(
        f"out = '{out}' is invalid: another run wrote that file meanwhile; choose another path or add overwrite=true"
    )
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


def create_variable(
    nc,
    var: Variable,
    float_dtype: str,
    values=None,
    dims: tuple | None = None,
    attrs: dict | None = None,
    compress: bool = True,
    nan_fill: bool = True,
    chunks: list | None = None,
):
    """Create registered variable ``var`` in the open netCDF4 dataset ``nc``: the one place a
    result's encoding is decided. dtype from the registry (``FLOAT``: ``float_dtype``), dims the
    registered ones unless given, attributes ``var.attrs()`` unless ``attrs`` (a result's run-time
    attributes, e.g. κ*'s precision). ``compress``: zlib level 4 with shuffle, in ``chunks`` if given
    (clipped to the dimensions); ``nan_fill``: a float variable's fill value is NaN (an integer
    variable never has one; without it netCDF's default fill applies). ``values`` are written if given."""
    dtype = var.numpy_dtype(float_dtype)
    dims = var.dims if dims is None else tuple(dims)
    fill = np.nan if nan_fill and np.dtype(dtype).kind == "f" else None
    encoding = {"zlib": True, "complevel": 4, "shuffle": True} if compress else {}
    if chunks is not None:
        encoding["chunksizes"] = [min(c, len(nc.dimensions[d])) for c, d in zip(chunks, dims)]
    created = nc.createVariable(var.name, dtype, dims, fill_value=fill, **encoding)
    created.setncatts(var.attrs() if attrs is None else attrs)
    if values is not None:
        created[:] = values
    return created


def _data_variables(keep_partitions: bool, sensitivities: bool) -> list[Variable]:
    """Every per-point variable the dataset holds (with ``keep_partitions`` each gains the
    partition dimension, and the winning partition gives way to ``partition_valid``)."""
    out = list(STEP_COSTS.values()) + ([] if keep_partitions else list(DEGREES.values()))
    out += list(ELASTICITIES.values()) if sensitivities else []
    return out + ([PARTITIONS["partition_valid"]] if keep_partitions else [])


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
    variables = _data_variables(keep_partitions, sensitivities) + list(economics_variables("", tuple(coords)).values())
    return sum(math.prod(sizes[d] for d in coords) * np.dtype(v.numpy_dtype(float_dtype)).itemsize for v in variables)


def assemble(
    out: Path,
    parts_dir: Path,
    coords: dict,
    row_map: np.ndarray,
    global_attrs: dict,
    float_dtype: str,
    partition_table: np.ndarray | None = None,
    extra: tuple = (),
    sensitivities: bool = False,
    derive=None,
    extra_dims: dict | None = None,
    extra_vars: tuple = (),
    overwrite: bool = False,
    checkpoint=lambda: None,
    split: tuple[str, int] | None = None,
) -> None:
    """Write the final dataset from the parts.

    ``coords``: ordered ``{dim: (values, attrs)}`` for model, variant, kappa, hardware, num_gpus,
    context (and partition when kept). ``row_map[model, variant, kappa]`` is the kernel row
    holding that combination. ``extra``: small ``(registered name, values)`` variables, uncompressed.
    ``derive(nc)``, if given, adds derived variables to the open file before it is published.
    ``extra_dims`` ``{dim: (values, attrs)}`` and ``extra_vars`` (``engine.variables.Variable``
    entries): results with dimensions of their own after the grid's (the frontier's).
    ``checkpoint()`` runs after each part and may raise (a pending Ctrl-C). ``split``: the parts'
    (axis, block) (``grid.chunk_plan``), which the file's chunks follow. The temporary file is
    removed on every exit path (error, Ctrl-C, SIGTERM turned into one).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out)
    try:
        with deferred(), netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:  # a stop raises at a checkpoint or after
            _write_layout(
                nc, coords, global_attrs, float_dtype, partition_table, extra, sensitivities, extra_dims, extra_vars, split
            )
            for part in sorted(parts_dir.glob("part-*.nc")):
                with netCDF4.Dataset(part) as ds:
                    _write_chunk(nc, ds, row_map)
                checkpoint()
            if derive is not None:
                derive(nc)
        publish(tmp, out, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


SPLIT_CHUNKS_ABOVE = 2**18  # values (1 MiB of float32): chunks larger than this follow the parts' split


def _write_layout(
    nc, coords, global_attrs, float_dtype, partition_table, extra, sensitivities, extra_dims=None, extra_vars=(), split=None
) -> None:
    """Dimensions, coordinates, attributes, empty per-point variables and the small extras. Chunks
    span the last three dimensions; one of more than ``SPLIT_CHUNKS_ABOVE`` values is cut along the
    parts' ``split`` axis at the parts' block length, so each part fills whole chunks (a big chunk
    written by several parts is decompressed and compressed again by each: a 60x60x60 hardware space
    took over 10 min to assemble). Small ones stay whole: many tiny chunks cost more than they save
    (a frontier test grid split at one context per chunk assembled in twice the time)."""
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
    if split is not None and split[0] in dims and math.prod(chunks) > SPLIT_CHUNKS_ABOVE:
        chunks[dims.index(split[0])] = min(chunks[dims.index(split[0])], split[1])
    for var in _data_variables(partition_table is not None, sensitivities):
        create_variable(nc, var, float_dtype, dims=dims, chunks=chunks)
    if partition_table is not None:
        for i, f in enumerate(PARTITION_FIELDS):
            var = PARTITIONS[f"partition_{f}"]
            create_variable(
                nc,
                var,
                float_dtype,
                partition_table[..., i].astype(np.int32),
                attrs={"long_name": var.long_name, **var.attrs()},
                compress=False,
                nan_fill=False,
            )
    for dim, (values, attrs) in (extra_dims or {}).items():
        nc.createDimension(dim, len(values))
        nc.createVariable(dim, np.asarray(values).dtype, (dim,))[:] = values
        nc.variables[dim].setncatts(attrs)
    for var in extra_vars:
        create_variable(nc, var, float_dtype, chunks=chunks[:6] + [len(nc.dimensions[d]) for d in var.dims[6:]])
    for name, values in extra:
        create_variable(nc, REGISTRY[name], float_dtype, values, compress=False, nan_fill=False)


def _write_chunk(nc, part, row_map: np.ndarray) -> None:
    """Scatter one part (kernel row layout, an open netCDF4 file) into the dataset's (model,
    variant, kappa, ...) layout, reading one variable at a time."""
    axis, lo, hi = part.getncattr("axis"), int(part.getncattr("start")), int(part.getncattr("stop"))
    grid_slices = {a: slice(None) for a in AXES[1:]}
    rows = range(lo, hi) if axis == "row" else range(row_map.max() + 1)
    if axis != "row":
        grid_slices[axis] = slice(lo, hi)
    tail = tuple(grid_slices[a] for a in AXES[1:])
    targets = [
        (m, v, k, row_map[m, v, k] - (lo if axis == "row" else 0))
        for m, v, k in zip(*np.nonzero(row_map >= 0))
        if row_map[m, v, k] in rows
    ]
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
