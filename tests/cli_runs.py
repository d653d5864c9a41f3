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


def run_main(module: str, argv, hydra_dir=None) -> tuple[int, str, str]:
    """``python -m <module> <argv>`` run in this process (much faster than a subprocess: imports
    and compiled kernels are shared): returns (exit code, stdout, stderr). A Hydra command gets
    ``hydra.run.dir=<hydra_dir>`` appended when given; ``moejax.plot`` takes ``argv`` directly.
    An exception escaping the command (Hydra prints it and exits 1) comes back as its traceback
    on stderr with exit code 1; the signal handlers the commands install are restored."""
    import contextlib
    import importlib
    import io
    import signal
    import traceback

    mod = importlib.import_module(module)
    argv = [*argv, *([f"hydra.run.dir={hydra_dir}"] if hydra_dir is not None and module != "moejax.plot" else [])]
    import logging

    for ref in logging._handlerList:  # Hydra's logging setup closes every handler; absl's would close the real stderr
        handler = ref()
        if type(handler).__module__.startswith("absl") and isinstance(handler, logging.StreamHandler):
            handler.stream = sys.__stderr__  # a stream absl leaves open
    out, err = io.StringIO(), io.StringIO()
    import jax

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    x64 = jax.config.jax_enable_x64  # commands set it (precision=); the tests' own setting is restored
    old_argv, old_full = sys.argv, os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.argv = [module, *argv]
    os.environ["HYDRA_MAIN_MODULE"] = "__main__"  # config_path="../conf" relative to the file, as under python -m
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = mod.main(argv) if module == "moejax.plot" else mod.main()
            except SystemExit as e:
                code = e.code
            except Exception:  # noqa: BLE001 - reported as the traceback a user would see
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = old_argv
        os.environ.pop("HYDRA_MAIN_MODULE", None)
        if old_full is not None:
            os.environ["HYDRA_FULL_ERROR"] = old_full
        for s, handler in saved.items():
            signal.signal(s, handler)
        jax.config.update("jax_enable_x64", x64)
    code = 0 if code is None else code if isinstance(code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_one_line(code: int, stderr: str, *fragments) -> str:
    """Exit code 2 and exactly one ``error: ...`` line on stderr holding every fragment; returns it."""
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, stderr[-3000:])
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
