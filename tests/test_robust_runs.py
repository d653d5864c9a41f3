"""Runs that collide, get interrupted or point at bad places: real subprocesses on tiny grids. The
reference dataset and the runs that resume a killed or interrupted process's parts run the command in
this process (``cli_runs.run_main``: the same Hydra main, its traced kernels reused), so each resume is
another process's parts read back, and each comparison is across processes."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pytest
import xarray as xr
from cli_runs import forked, run_main

from moejax.analysis.validation.sweep_intervals import bounds_bytes
from moejax.engine.config import AccountingOverrides
from moejax.engine.dataset import assemble, completed_chunks, estimated_bytes, part_checksum, publish, temp_name
from moejax.engine.variables import STEP_COSTS
from moejax.physics.specs import SpecError

ROOT = Path(__file__).resolve().parent.parent
# one model, one accelerator, one cluster size: one chunk per context with max_chunk_evaluations=1
TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x22b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.kappas=[2]",
    "summary=false",
    "progress=false",
]
CONTEXTS = [1024 + 256 * i for i in range(16)]
MANY = [*TINY, f"grid.contexts=[{','.join(map(str, CONTEXTS))}]", "max_chunk_evaluations=1"]


def start(args, tmp, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "moejax.sweep", *args, f"hydra.run.dir={tmp / 'run'}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def sweep(args, tmp):
    """``python -m moejax.sweep *args`` in its own process: (exit code, stdout, stderr)."""
    proc = start(args, tmp)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def sweep_here(args, tmp):
    """The same command run in this process: (exit code, stdout, stderr)."""
    return run_main("moejax.sweep", list(args), hydra_dir=tmp / "run")


def temporaries(*dirs):
    return [p for d in dirs for p in Path(d).rglob("*.tmp")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The MANY grid computed alone, the yardstick for every collided or resumed run."""
    tmp = tmp_path_factory.mktemp("reference")
    rc, _, err = sweep_here([*MANY, f"out={tmp / 'ref.nc'}", f"parts_dir={tmp / 'parts'}"], tmp)
    assert rc == 0, err
    return tmp / "ref.nc"


def test_two_identical_sweeps_at_once_both_succeed(reference, tmp_path):
    """Same sweep, same parts directory, started together: the second waits for the first (or
    resumes from its parts); both write the right dataset and no part is left behind, whole or not."""
    parts = tmp_path / "parts"
    procs = [start([*MANY, f"out={tmp_path / f'{i}.nc'}", f"parts_dir={parts}"], tmp_path / str(i)) for i in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    for i in (0, 1):
        with xr.open_dataset(reference) as a, xr.open_dataset(tmp_path / f"{i}.nc") as b:
            assert a.identical(b)
    assert not list(parts.glob("*/part-*")) and not temporaries(parts, tmp_path)


def test_damaged_parts_are_recomputed(reference, tmp_path):
    """A killed run's parts, one truncated and one garbled: the rerun recomputes those two chunks
    (with a warning) and writes the same dataset as a clean run."""
    parts, out = tmp_path / "parts", tmp_path / "x.nc"
    proc = start([*MANY, f"out={out}", f"parts_dir={parts}"], tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*/part-*.nc"))) < 3:
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    files = sorted(parts.glob("*/part-*.nc"))
    assert len(files) >= 3 and not out.exists()
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])  # truncated
    files[1].write_bytes(b"\0" * len(files[1].read_bytes()))  # garbled
    rc, _, err = sweep_here([*MANY, f"out={out}", f"parts_dir={parts}"], tmp_path)
    assert rc == 0, err
    assert err.count("is damaged (unreadable); its chunk is computed again") == 2, err
    with xr.open_dataset(reference) as a, xr.open_dataset(out) as b:
        assert a.identical(b)


def killed_run(tmp_path, parts, out, n):
    """Start the MANY sweep and kill it once ``n`` parts are on disk; its parts, sorted."""
    proc = start([*MANY, f"out={out}", f"parts_dir={parts}"], tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*/part-*.nc"))) < n:
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    files = sorted(parts.glob("*/part-*.nc"))
    assert len(files) >= n and not out.exists()
    return files


def test_parts_that_are_not_what_they_claim_are_recomputed(reference, tmp_path):
    """Each part records its grid's hash, its chunk id and a checksum of its values: a part of
    another grid copied in, another chunk's part renamed, and a flipped byte in the values are each
    recomputed with one warning line, and the dataset equals a clean run's."""
    parts, out = tmp_path / "parts", tmp_path / "x.nc"
    files = killed_run(tmp_path, parts, out, 4)
    with netCDF4.Dataset(files[0], "r+") as nc:  # another grid's part: a valid checksum, another hash
        nc.setncattr("grid", "0123456789abcdef")
        nc.setncattr("checksum", part_checksum(nc))
    shutil.copy(files[2], files[1])  # chunk 2's part renamed to chunk 1's
    with netCDF4.Dataset(files[3]) as nc:  # a bit flipped in the stored throughput (uncompressed, contiguous)
        nc.set_auto_maskandscale(False)
        stored = np.ascontiguousarray(nc["throughput_per_gpu"][...]).tobytes()
    data = bytearray(files[3].read_bytes())
    at = data.find(stored)
    assert at >= 0 and data.find(stored, at + 1) < 0
    data[at + len(stored) // 2] ^= 0x10
    files[3].write_bytes(bytes(data))
    rc, _, err = sweep_here([*MANY, f"out={out}", f"parts_dir={parts}"], tmp_path)
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.endswith("; its chunk is computed again")]
    assert len(warnings) == 3, err
    assert any(f"{files[0]} belongs to another grid (0123456789abcdef, not {files[0].parent.name})" in w for w in warnings), err
    assert any(f"{files[1]} holds chunk 2, not 1" in w for w in warnings), err
    assert any(f"{files[3]} is damaged (its values do not match its checksum)" in w for w in warnings), err
    with xr.open_dataset(reference) as a, xr.open_dataset(out) as b:
        assert a.identical(b)


def test_two_sweeps_racing_for_one_out_file(tmp_path):
    """Different sweeps, same out=: one wins, the other says so in one line (exit 2); the file is
    whole and is the winner's."""
    out = tmp_path / "same.nc"
    procs = [
        start([*TINY, f"grid.contexts=[{c}]", f"out={out}", f"parts_dir={tmp_path / 'parts'}"], tmp_path / str(c))
        for c in (1024, 2048)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 2)
    assert len(loser.strip().splitlines()) == 1 and loser.startswith(f"error: out = '{out}' is invalid: "), loser
    winner = next(c for p, c in zip(procs, (1024, 2048)) if p.returncode == 0)
    with xr.open_dataset(out) as ds:
        assert ds.context.values.tolist() == [winner] and bool(ds.feasible.any())
    assert not temporaries(tmp_path)


@pytest.mark.parametrize("multirun", ["-m", "hydra.mode=MULTIRUN"])
def test_multirun_with_out_gives_each_job_its_own_file(multirun, tmp_path, monkeypatch):
    """Either way of asking Hydra for a multirun; the second is an override, which moejax.cli must
    then let Hydra read (``mode_may_be_set``): without it, Hydra runs one job and refuses the comma list
    (``Ambiguous value for argument 'hardware=h100-sxm,b200'``)."""
    out = tmp_path / "hw.nc"
    monkeypatch.chdir(tmp_path)
    argv = [multirun, *TINY, "grid.contexts=[4096]", "hardware=h100-sxm,b200", f"out={out}", f"parts_dir={tmp_path / 'parts'}"]
    code, _, err = run_main("moejax.sweep", [*argv, f"hydra.sweep.dir={tmp_path / 'multi'}"])
    assert code == 0, err[-2000:]
    for job, hw in enumerate(("h100-sxm", "b200")):
        with xr.open_dataset(tmp_path / f"hw-{job}.nc") as ds:
            assert ds.hardware.values.tolist() == [hw]
    assert not out.exists()


BAD_OUTPUT = ["directory", "exists", "read_only", "chunk_zero", "too_big"]


def _bad_output_args(case, tmp_path):
    out = tmp_path / "x.nc"
    return {
        "directory": [f"out={tmp_path}"],
        "exists": [f"out={out}"],
        "read_only": ["out=/sys/moejax-test/x.nc"],
        "chunk_zero": [f"out={out}", "max_chunk_evaluations=0"],
        "too_big": [f"out={out}", "max_output_bytes=100"],
    }[case]


@pytest.fixture(scope="module")
def bad_output_runs(tmp_path_factory):
    """Each case of BAD_OUTPUT run for real (its own ``python -m moejax.sweep`` process, one
    interpreter start for all: cli_runs.forked), as ``sweep`` runs it."""
    dirs = {case: tmp_path_factory.mktemp(case) for case in BAD_OUTPUT}
    (dirs["exists"] / "x.nc").write_text("keep me")
    procs = forked(
        "moejax.sweep",
        [
            [*TINY, "grid.contexts=[4096]", *_bad_output_args(case, d), f"parts_dir={d / 'parts'}", f"hydra.run.dir={d / 'run'}"]
            for case, d in dirs.items()
        ],
    )
    return {case: (proc, dirs[case]) for case, proc in zip(dirs, procs, strict=True)}


@pytest.mark.parametrize("case", BAD_OUTPUT)
def test_bad_output_and_limits_fail_before_computing(case, bad_output_runs):
    proc, tmp_path = bad_output_runs[case]
    out, parts = tmp_path / "x.nc", tmp_path / "parts"
    expected = {
        "directory": f"out = '{tmp_path}' is invalid: it is a directory",
        "exists": f"out = '{out}' is invalid: the file exists; choose another path or add overwrite=true",
        "read_only": "out = '/sys/moejax-test/x.nc' is invalid: cannot write there",
        "chunk_zero": "max_chunk_evaluations = 0 is invalid: must be a positive integer",
        "too_big": "max_output_bytes = 100 is invalid for this grid: its dataset would take about",
    }[case]
    rc, err = proc.returncode, proc.stderr
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"error: {expected}"), err
    assert not parts.exists() and not (tmp_path / "run").exists()  # refused before any chunk was computed
    assert out.read_text() == "keep me" if case == "exists" else not out.exists()
    assert not temporaries(tmp_path) and not Path("/sys/moejax-test").exists()


def test_negative_chunk_size_is_refused():
    """The check the CLI's ``chunk_zero`` case goes through (``SweepConfig.validate``, at the command
    boundary), on a negative value: no second subprocess for the same path to the one-line error."""
    from moejax.engine.config import build

    grid = {"name": "t", "models": ["mixtral-8x7b"], "hardware": ["h100-sxm"], "num_gpus": [8], "contexts": [1024]}
    build({"grid": grid})  # the typed config from plain values, no Hydra
    with pytest.raises(SpecError, match=r"^max_chunk_evaluations = -5 is invalid: must be a positive integer$"):
        build({"grid": grid, "max_chunk_evaluations": -5})


def test_overwrite_true_replaces_an_existing_file(tmp_path):
    out = tmp_path / "x.nc"
    out.write_text("old")
    rc, _, err = sweep_here(
        [*TINY, "grid.contexts=[4096]", f"out={out}", "overwrite=true", f"parts_dir={tmp_path / 'p'}"], tmp_path
    )
    assert rc == 0, err
    with xr.open_dataset(out) as ds:
        assert ds.context.values.tolist() == [4096]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_keeps_parts_and_says_how_to_resume(sig, reference, tmp_path):
    """Ctrl-C (SIGINT) or SIGTERM mid-run: one line, exit 130 (SIGINT) or 143 (SIGTERM), parts kept, no output and no
    temporary file; the same command then completes the dataset."""
    parts, out = tmp_path / "parts", tmp_path / "x.nc"
    # as typed in a terminal: SIGINT not ignored, whatever this test process inherited
    proc = start(
        [*MANY, f"out={out}", f"parts_dir={parts}"], tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*/part-*.nc"))) < 3:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    kept = len(list(parts.glob("*/part-*.nc")))
    assert proc.returncode == 128 + sig, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(f"interrupted: {kept} of {len(CONTEXTS)} chunks kept in {parts}/"), err
    assert 3 <= kept < len(CONTEXTS) and not out.exists() and not temporaries(parts, tmp_path)
    if sig == signal.SIGINT:
        rc, _, err = sweep_here([*MANY, f"out={out}", f"parts_dir={parts}"], tmp_path)
        assert rc == 0, err
        with xr.open_dataset(reference) as a, xr.open_dataset(out) as b:
            assert a.identical(b)


def test_size_estimate_matches_the_written_dataset(reference, tmp_path):
    """The estimate is the byte count of the per-point variables actually stored (read back and
    counted by xarray), with and without the partition dimension; without it, the default preset's
    interval bounds (``bounds_bytes``, as the sweep's size check counts them) are among them."""
    full = tmp_path / "full.nc"
    rc, _, err = sweep_here(
        [*TINY, "grid.contexts=[1024,4096]", "keep_partitions=true", f"out={full}", f"parts_dir={tmp_path / 'p'}"], tmp_path
    )
    assert rc == 0, err
    for path, keep in ((reference, False), (full, True)):
        with xr.open_dataset(path, mask_and_scale=False) as ds:
            point = [
                v for v in ds.data_vars if ds[v].dims[:6] == ("model", "variant", "kappa", "hardware", "num_gpus", "context")
            ]
            assert set(STEP_COSTS) <= set(point)
            coords = {d: (ds[d].values, {}) for d in ds[point[0]].dims}
            no_frontier = SimpleNamespace(variables=[], dims={})
            bounds = 0 if keep else bounds_bytes(AccountingOverrides(), SimpleNamespace(coords=coords), no_frontier, "f4")
            assert bounds > 0 or keep
            assert estimated_bytes(coords, "f4", keep, False) + bounds == sum(ds[v].nbytes for v in point)


def test_publish_never_replaces_a_file_without_overwrite(tmp_path):
    out = tmp_path / "x.nc"
    out.write_text("first")
    tmp = temp_name(out)
    tmp.write_text("second")
    with pytest.raises(SpecError, match="another run wrote that file meanwhile"):
        publish(tmp, out, overwrite=False)
    assert out.read_text() == "first" and not tmp.exists()
    tmp.write_text("second")
    publish(tmp, out, overwrite=True)
    assert out.read_text() == "second" and not tmp.exists()


def test_temporaries_are_unique_per_process_and_call(tmp_path):
    names = {temp_name(tmp_path / "x.nc") for _ in range(100)}
    assert len(names) == 100 and all(n.parent == tmp_path and n.name.startswith(".x.nc.") for n in names)
    assert all(str(os.getpid()) in n.name for n in names)


def test_completed_chunks_leaves_other_processes_parts_alone(tmp_path):
    """With ``owned`` (distributed runs), damaged parts and temporaries of other chunks are not
    touched: another process may be writing them."""
    for cid in (0, 1):
        (tmp_path / f"part-{cid:06d}.nc").write_bytes(b"garbage")
        temp_name(tmp_path / f"part-{cid:06d}.nc").write_bytes(b"half")
    assert completed_chunks(tmp_path, owned={0}) == {1}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")) == ["part-000001.nc"]
    assert len(temporaries(tmp_path)) == 1
    np.testing.assert_equal(completed_chunks(tmp_path), set())


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_assembly_leaves_no_file_behind(error, tmp_path):
    """An error or Ctrl-C while the dataset is assembled removes its temporary; no output appears."""
    coords = {
        d: (np.array(v), {})
        for d, v in (
            ("model", ["m"]),
            ("variant", ["moe", "dense"]),
            ("kappa", [2.0]),
            ("hardware", ["h"]),
            ("num_gpus", [8]),
            ("context", [1024.0]),
        )
    }

    def derive(nc):
        assert temporaries(tmp_path)  # the file being written
        raise error("stop")

    with pytest.raises(error, match="stop"):
        assemble(tmp_path / "x.nc", tmp_path, coords, np.zeros((1, 2, 1), int), {}, "f4", derive=derive)
    assert list(tmp_path.iterdir()) == []


def test_dataset_chunks_follow_the_parts_split(tmp_path):
    """A big chunk (over ``SPLIT_CHUNKS_ABOVE`` values) is cut along the parts' split axis at their
    block length, so each part fills whole chunks (a chunk shared by parts was decompressed and
    recompressed by each: a 60x60x60 hardware space took over 10 min to assemble); a small one, or a
    split along another axis (rows), leaves the last three dimensions whole."""
    from moejax.engine.dataset import SPLIT_CHUNKS_ABOVE, _write_layout

    def layout(n_hardware, split):
        sizes = (("model", 1), ("variant", 2), ("kappa", 1), ("hardware", n_hardware), ("num_gpus", 2), ("context", 3))
        coords = {d: (np.arange(n, dtype=float), {}) for d, n in sizes}
        with netCDF4.Dataset(tmp_path / "layout.nc", "w") as nc:
            _write_layout(nc, coords, {}, "f4", None, (), False, split=split)
            return nc.variables["step_time"].chunking()

    big = SPLIT_CHUNKS_ABOVE // 6 + 1  # hardware x 2 GPU counts x 3 contexts: just over the threshold
    assert layout(big, ("hardware", 500)) == [1, 1, 1, 500, 2, 3]
    assert layout(big, ("row", 1)) == [1, 1, 1, big, 2, 3]
    assert layout(10, ("hardware", 4)) == [1, 1, 1, 10, 2, 3]


@pytest.mark.parametrize("errno, printed", [(2, False), (28, True)])  # ENOENT: FileNotFoundError; ENOSPC: OSError
def test_a_cache_write_race_is_not_printed_but_a_full_disk_is(errno, printed, monkeypatch):
    """JAX's own warning when a persistent-cache write fails, raised through its real compile path
    (a forced cache miss, then the write fails): ``moejax.cli.CACHE_RACE``, the filter every command
    runs under, drops the race of two runs on one cache (FileNotFoundError: the other run removed an
    -atime file) and keeps any other failure, such as a full disk."""
    import warnings

    import jax
    from jax._src import compilation_cache

    from moejax.cli import CACHE_RACE

    def fail(*args, **kwargs):
        raise OSError(errno, os.strerror(errno), "entry-atime")

    monkeypatch.setattr(compilation_cache, "get_executable_and_time", lambda *a, **k: (None, None))
    monkeypatch.setattr(compilation_cache, "put_executable_and_time", fail)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", CACHE_RACE, UserWarning)
        scale = 3.0625 + errno / 64  # a program compiled nowhere else, one per case
        jax.jit(lambda x: x * scale)(1.0).block_until_ready()
    assert any("Error writing persistent compilation cache" in str(w.message) for w in seen) == printed, seen
