"""Many runs of one command for the price of one interpreter start: ``python tests/cli_fork.py
MODULE TIMEOUT`` reads a JSON list of ``[working directory, argument list, environment or null]``
on stdin, imports ``MODULE`` once (JAX, xarray, Hydra: most of a command's start), then forks one
child per argument list that runs the module as ``python -m MODULE *ARGS`` would (``runpy``,
``__main__``, ``sys.argv``), with its own stdout and stderr; prints a JSON list of
``[returncode, stdout, stderr]``. The parent never touches a JAX backend, so each child starts as
clean as a fresh process (no compiled program, no Hydra state). An uncaught exception exits 1
with its traceback on stderr, as Python does; a child still running after TIMEOUT seconds is
killed (returncode -9)."""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
import tempfile
import time
import traceback


def _child(module: str, cwd: str, args: list[str], env: dict | None, out: str, err: str) -> None:
    code = 1
    try:
        if env is not None:  # as ``subprocess.run(env=...)``: this environment only
            os.environ.clear()
            os.environ.update(env)
        os.chdir(cwd)
        sys.path[0] = cwd  # as ``python -m``: the working directory first
        for fd, path in ((1, out), (2, err)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(f, fd)
            os.close(f)
        sys.argv = [module, *args]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, exit 1
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> None:
    module, timeout = sys.argv[1], float(sys.argv[2])
    runs = json.loads(sys.stdin.read())
    importlib.import_module(module)  # the module's imports, once
    del sys.modules[module]  # ... but the module itself runs afresh in each child, as __main__ (as -m has it)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (cwd, args, env) in enumerate(runs):
            out, err = os.path.join(tmp, f"{i}.out"), os.path.join(tmp, f"{i}.err")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(module, cwd, args, env, out, err)
            deadline = time.monotonic() + timeout
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    _, status = os.waitpid(pid, 0)
                    break
                time.sleep(0.005)
            code = os.waitstatus_to_exitcode(status)
            with open(out) as o, open(err) as e:
                results.append([code, o.read(), e.read()])
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
