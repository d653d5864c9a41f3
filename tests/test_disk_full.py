"""A full disk is one line naming the path and the bytes (issue 20): the sweep's final dataset and
its parts, and the outputs of validate, calibrate, fit, breakeven, plot and report, written on a real
full filesystem (a 4-100 kB tmpfs mounted for the test; skipped where this process may not mount
one, e.g. without root). netCDF reports ENOSPC as "NetCDF: HDF error"; before, that reached the user
as a traceback, exit 1, and validate and plot left half-written files."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from cli_runs import _env

TINY = [
    "+grid=quick",
    "grid.models=[mixtral-8x22b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.contexts=[1024,8192]",
    "summary=false",
    "compilation_cache=null",
]


@contextlib.contextmanager
def tmpfs(path, size: str):
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize(
    "field,size",
    [("out", "100k"), ("parts_dir", "12k")],
)
def test_full_disk_is_one_line(field, size, tmp_path):
    with tmpfs(tmp_path / "full", size) as full:
        target = {"out": full / "x.nc", "parts_dir": full / "parts"}
        args = [*TINY, f"out={target['out'] if field == 'out' else tmp_path / 'x.nc'}"]
        args += [f"parts_dir={target['parts_dir'] if field == 'parts_dir' else tmp_path / 'parts'}"]
        # a process of its own: netCDF keeps the failed file's handle open until the process ends
        proc = subprocess.run(
            [sys.executable, "-m", "moejax.sweep", *args],
            cwd=tmp_path,
            env=_env(None),
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert lines[0].startswith(f"error: {field} = '{target[field]}") and "the disk is full" in lines[0], lines[0]
        assert "bytes free there" in lines[0] and "bytes before compression" in lines[0], lines[0]
        assert not [p for p in full.rglob("*") if p.is_file()]  # no half-written dataset or part


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small sweep dataset for the commands that read one (plot, report)."""
    d = tmp_path_factory.mktemp("dataset")
    proc = subprocess.run(
        [sys.executable, "-m", "moejax.sweep", *TINY, f"out={d / 'x.nc'}", f"parts_dir={d / 'parts'}"],
        cwd=d,
        env=_env(None),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return d / "x.nc"


# command, its arguments ({full}: the full disk, {data}: a sweep dataset), the field its line names,
# the path it names (under {full})
OTHER_COMMANDS = {
    "validate": ("moejax.validate", ["out={full}/v", "compilation_cache=null"], "out", "v"),
    "calibrate": ("moejax.calibrate", ["~fits.throughput", "out={full}/c", "compilation_cache=null"], "out", "c"),
    "fit": (
        "moejax.fit",
        ["mode=latency", "design.total_params=[1e11,4e11]", "design.n_experts=[8,64]", "design.top_k=[1,4]"]
        + ["regimes=[fast_decode]", "out={full}/fit.nc"],
        "out",
        "fit.nc",
    ),
    "breakeven": (
        "moejax.breakeven",
        [*TINY, "breakeven.bisection_steps=12", "breakeven.rounds=1", "breakeven.adam_steps=2"]
        + ["out={full}/b.nc", "parts_dir={tmp}/parts"],
        "out",
        "b.nc",
    ),
    "plot": ("moejax.plot", ["{data}", "--out", "{full}/plots"], "out", "plots"),
    "report": ("moejax.report", ["{data}", "--out", "{full}/r.html"], "out", "r.html"),
}


@pytest.mark.parametrize("name", list(OTHER_COMMANDS))
def test_full_disk_is_one_line_for_every_command(name, dataset, tmp_path):
    """Every command that writes files, on a 4 kB disk: one line naming ``out`` and the disk, exit
    2, nothing half-written left (before: tracebacks, "NetCDF: HDF error", half-written CSVs)."""
    module, args, field, target = OTHER_COMMANDS[name]
    with tmpfs(tmp_path / "full", "4k") as full:
        argv = [a.format(full=full, data=dataset, tmp=tmp_path) for a in args]
        proc = subprocess.run(
            [sys.executable, "-m", module, *argv], cwd=tmp_path, env=_env(None), capture_output=True, text=True, timeout=300
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert lines[0].startswith(f"error: {field} = '{full / target}") and "the disk is full" in lines[0], lines[0]
        assert not [p for p in full.rglob("*") if p.is_file()]  # nothing half-written
