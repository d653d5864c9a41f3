"""The sweep command run for real, and the check that it refused bad input cleanly: exit code 2,
one ``error: ...`` line, no dataset, part or log written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep(tmp_path, *args, grid, options=(), env=None, timeout=300):
    """``python -m moejax.sweep`` run in ``tmp_path/run`` (its outputs/ land there), ``grid``
    overrides first, then ``args``."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "moejax.sweep", *options, *grid, *args, f"out={run / 'x.nc'}"],
                          cwd=run, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def assert_refused(proc, tmp_path, *fragments):
    """Exit code 2, one ``error:`` line holding every fragment, and no file under ``tmp_path/run``;
    returns the line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not [p for p in (tmp_path / "run").rglob("*") if p.is_file()]  # no dataset, part or log
    return lines[0]
