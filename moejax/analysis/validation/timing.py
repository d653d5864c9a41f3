"""``python -m moejax.bench --serving CSV``: how fast the serving validation of a silicon CSV runs,
beside the same physics code under NumPy row by row (the reference in the same run)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from ...catalogue import available, load_accounting
from ...physics.served import aggregated, disaggregated
from . import benchmarks, silicon


def serving_timing(path: str, sample: int = 40) -> dict:
    """The serving validation of a silicon CSV: reading and resolving its rows, the vmapped
    prediction (first call with compilation, then compiled), the same physics code under NumPy row
    by row on ``sample`` rows (max relative difference), and the whole ``python -m moejax.validate``
    command in a fresh process (wall time)."""
    acc = load_accounting("realistic")
    t0 = time.perf_counter()
    rows = silicon.load_silicon(path, set(available("model")))
    cases, _ = benchmarks.resolve_all(rows)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = benchmarks.predict(cases, acc)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    benchmarks.predict(cases, acc)
    run_s = time.perf_counter() - t0
    host = lambda tree: jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=float), tree)  # noqa: E731
    picks = np.random.default_rng(0).choice(len(cases), size=min(sample, len(cases)), replace=False)
    diff, t0 = 0.0, time.perf_counter()
    for i in picks:
        c = cases[i]
        args = [host(c.model), host(c.hardware), host(c.decode)] + ([] if c.row.mode == "agg" else [host(c.prefill)])
        out = (aggregated if c.row.mode == "agg" else disaggregated)(*args, host(c.bench), host(acc))
        if pred["feasible"][i]:
            diff = max(diff, abs(float(out.tpot) / pred["tpot"][i] - 1), abs(float(out.ttft) / pred["ttft"][i] - 1))
    numpy_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "moejax.validate",
                f"measurements={path}",
                f"out={tmp}/out",
                f"hydra.run.dir={tmp}/hydra",
                "compilation_cache=null",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    return {
        "serving_rows": len(rows),
        "serving_expressible": len(cases),
        "serving_read_s": read_s,
        "serving_first_s": first_s,
        "serving_rows_per_s": len(cases) / run_s,
        "serving_numpy_rows_per_s": len(picks) / numpy_s,
        "serving_numpy_max_rel_diff": diff,
        "serving_validate_wall_s": time.perf_counter() - t0,
    }
