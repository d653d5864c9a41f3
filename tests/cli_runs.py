"""The sweep command run for real, and the check that it refused bad input cleanly: exit code 2,
one ``error: ...`` line, no dataset, part or log written."""

from __future__ import annotations

import json
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
    return subprocess.run(
        [sys.executable, "-m", "moejax.sweep", *options, *grid, *args, f"out={run / 'x.nc'}"],
        cwd=run,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sweep_here(tmp_path, monkeypatch, *args, grid):
    """``sweep``'s command run in this process (``run_main``) from ``tmp_path/run``
    (``monkeypatch.chdir``: the default outputs/, parts and log land there), as a
    ``subprocess.CompletedProcess`` for ``assert_refused``: a refusal, not the process, is tested."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    monkeypatch.chdir(run)
    argv = [*grid, *args, f"out={run / 'x.nc'}"]
    code, out, err = run_main("moejax.sweep", argv)
    return subprocess.CompletedProcess([sys.executable, "-m", "moejax.sweep", *argv], code, out, err)


def _env(env):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def sweeps(runs, *, grid, env=None, envs=None, timeout=300):
    """``sweep(tmp_path, *args, grid=grid, options=options, env=env or envs[i])`` for each ``(tmp_path,
    args, options)`` in ``runs``, each its own process, forked from one interpreter start (``forked``)."""
    cwds, argvs = [], []
    for tmp_path, args, options in runs:
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        cwds.append(run)
        argvs.append([*options, *grid, *args, f"out={run / 'x.nc'}"])
    return forked("moejax.sweep", argvs, cwds=cwds, env=_env(env), envs=envs and [_env(e) for e in envs], timeout=timeout)


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


def forked(module, runs, *, cwd=ROOT, cwds=None, env=None, envs=None, timeout=300):
    """``python -m MODULE *ARGS`` for each ``ARGS`` in ``runs`` (in ``cwd`` or ``cwds[i]``, with the
    environment ``env``, or ``envs[i]`` where given), as
    ``subprocess.CompletedProcess`` objects, from one interpreter that imports ``MODULE`` once and
    forks a fresh child per run (tests/cli_fork.py): the command's exit code, stdout and stderr,
    for a fraction of the start-up. What a library reads when imported (``JAX_*``, ``XLA_FLAGS``)
    comes from ``env``, not ``envs[i]``: ``envs`` is for what a command reads while it runs."""
    cwds = cwds or [cwd] * len(runs)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("cli_fork.py")), module, str(timeout)],
        input=json.dumps(
            [[str(d), list(map(str, args)), e] for d, args, e in zip(cwds, runs, envs or [None] * len(runs), strict=True)]
        ),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout * len(runs) + 120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [
        subprocess.CompletedProcess([sys.executable, "-m", module, *args], code, out, err)
        for args, (code, out, err) in zip(runs, json.loads(proc.stdout), strict=True)
    ]
