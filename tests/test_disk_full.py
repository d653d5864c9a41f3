"""A full disk is one line naming the path and the bytes (issue 20): the sweep's final dataset and
its parts, written on a real full filesystem (a 12-100 kB tmpfs mounted for the test; skipped where
this process may not mount one, e.g. without root). netCDF reports ENOSPC as "NetCDF: HDF error";
before, that reached the user as a traceback, exit 1."""

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
