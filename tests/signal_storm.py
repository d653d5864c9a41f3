"""Signals at random moments to a running sweep: ``python tests/signal_storm.py [TRIES] [SEED]``.

Each try starts a small 16-chunk sweep, waits until it has started (its parts directory exists:
handlers are installed), sleeps a random 0-6 s (compiling, writing parts, assembling), then sends
1-4 SIGINTs or SIGTERMs with random gaps (0-0.3 s). Every run must end within ``LIMIT`` seconds of
its last signal (``LIMIT_ONE`` after a lone signal, which waits for the chunk in progress), with exit
code 128 + the signal (130, 143) and exactly one stderr line ``interrupted: ...``, leaving no temporary file;
or, when the first signal came after the dataset was written, exit 0 with the dataset. A run that
does not end in time (a deadlock) is killed and reported. Prints one line per try and a summary;
exit code 1 if any try failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GRID = [
    "+grid=quick",
    "grid.models=[mixtral-8x22b]",
    "grid.hardware=[h100-sxm]",
    "grid.num_gpus=[8]",
    "grid.kappas=[2]",
    "summary=false",
    "progress=false",
    f"grid.contexts=[{','.join(str(1024 + 256 * i) for i in range(16))}]",
    "max_chunk_evaluations=1",
]
# SIGINT not ignored, as typed in a terminal, whatever this process inherited; no preexec_fn (fork in a JAX process)
AS_TYPED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
LIMIT = 10.0  # s from the last signal to the exit: a loaded 2-core machine's margin over the 2 s asked
LIMIT_ONE = 60.0  # s after a lone signal, honoured at the next safe point: after the chunk being compiled


def one_try(rng: np.random.Generator, tmp: Path) -> tuple[bool, str]:
    """One run hit by signals; (passed, description)."""
    sig = [signal.SIGINT, signal.SIGTERM][int(rng.integers(2))]
    count, delay = int(rng.integers(1, 5)), float(rng.uniform(0, 6))
    gaps = rng.uniform(0, 0.3, count - 1)
    parts, out = tmp / "parts", tmp / "x.nc"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            AS_TYPED,
            "-m",
            "moejax.sweep",
            *GRID,
            f"out={out}",
            f"parts_dir={parts}",
            f"hydra.run.dir={tmp / 'run'}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not parts.exists() and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(delay)
    sent = 0
    for i in range(count):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        sent += 1
        if i < count - 1:
            time.sleep(gaps[i])
    last = time.time()
    limit = LIMIT if sent > 1 else LIMIT_ONE
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        return False, f"{sig.name} x{count} after {delay:.2f} s: DEADLOCK (no exit within {limit:g} s); stderr {stderr[-500:]!r}"
    took = time.time() - last
    lines = stderr.strip().splitlines()
    what = f"{sig.name} x{sent}/{count} after {delay:.2f} s: rc {proc.returncode}, exit {took:.2f} s after the last signal"
    leftovers = [p for p in tmp.rglob("*.tmp")]
    if leftovers:
        return False, f"{what}; temporaries left: {leftovers}"
    if proc.returncode == 0 and stdout.startswith("wrote ") and out.exists() and not lines:
        return True, f"{what} (finished before the signal)"
    ok = proc.returncode == 128 + sig and len(lines) == 1 and lines[0].startswith("interrupted")
    return ok, f"{what}; stderr {stderr[-3000:] if not ok else lines[0][:70]!r}"


def storm(tries: int, seed: int) -> list[tuple[bool, str]]:
    rng = np.random.default_rng(seed)
    results = []
    for i in range(tries):
        with tempfile.TemporaryDirectory(prefix="moejax-storm-") as d:
            results.append(one_try(rng, Path(d)))
        print(f"try {i + 1}/{tries}: {'ok' if results[-1][0] else 'FAIL'}: {results[-1][1]}", flush=True)
    return results


if __name__ == "__main__":
    n, s = int(sys.argv[1]) if len(sys.argv) > 1 else 50, int(sys.argv[2]) if len(sys.argv) > 2 else 0
    res = storm(n, s)
    failed = sum(not ok for ok, _ in res)
    print(f"{n} tries (seed {s}): {n - failed} ok, {failed} failed, {sum('DEADLOCK' in w for _, w in res)} deadlocks")
    sys.exit(1 if failed else 0)
