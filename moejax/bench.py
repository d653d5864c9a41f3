"""Benchmark: ``python -m moejax.bench`` (add ``--stream-points 0`` to skip the 10⁹-point stream).

On the same frontier grid (every candidate partition of every point: 1.6×10⁷ evaluations):
- ``search``: the compiled kernel with the best-partition search reduced on the device;
- ``all outputs``: the compiled kernel returning every candidate's full result (no search);
- ``numpy``: the same kernel code evaluated by NumPy (whole-array, un-fused) on a slice;
- ``reference``: the pure-Python oracle on random points of the grid, checked against the kernel;
- ``stream``: the main job on a ≥10⁹-evaluation grid in a fresh process (peak RSS of that process);
- ``frontier``: the main job's chunked kernels with batch as a search axis (``grid.batches``: every
  partition × 16 batches + B_max, the Pareto frontier and per-batch bests), in a fresh process.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .analysis.breakeven import solve, summary_json
from .analysis.qs import sweep_columns
from .analysis.validation.sweep_intervals import bounds_counter
from .analysis.validation.timing import serving_timing
from .catalogue import CONF_DIR
from .engine.grid import (
    PARTITION_FIELDS,
    GridInputs,
    cast,
    device_inputs,
    evaluate_chunks,
    lifted_kernel,
    local_devices,
    partitions_from_table,
    stack,
)
from .engine.plan import build_plan
from .engine.run import run
from .physics.cost import decode_point
from .physics.reference import reference_decode
from .physics.specs import HardwareSpec, ModelSpec, Partition, Workload
from .schema import register, sweep_config


def _compose(overrides: list[str]):
    """The frozen, validated ``SweepConfig`` of the main config with ``overrides``."""
    from hydra import compose, initialize_config_dir

    register()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return sweep_config(compose("config", overrides=overrides), kappa_star=True)


def _plan(overrides: list[str]):
    cfg = _compose(["+grid=frontier", "grid.batches=null", *overrides])  # the B_max search (frontier: frontier_timing)
    return build_plan(cfg.grid, False)


def _contexts_override(n: int) -> str:
    """``grid.contexts=[...]``: ``n`` distinct whole-token contexts spread geometrically over 1k-16M."""
    contexts = np.round(np.geomspace(1024, 2**24, n))  # distinct for n up to several thousand
    return "grid.contexts=[" + ",".join(f"{c:.0f}" for c in contexts) + "]"


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    fork+exec, so a child would report its parent's peak."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_kernel(inputs: GridInputs, acc, keep: bool, repeats: int, dtype) -> tuple[float, float, float]:
    """Seconds of one whole-grid call: (first call incl. compile, best steady state with the results
    copied to the host as a user gets them, best steady state on the device alone)."""
    kernel = lifted_kernel(keep)
    args = (*device_inputs(inputs, dtype), jnp.asarray(0.0, dtype), cast(acc, dtype))

    def call(to_host: bool) -> float:
        t0 = time.perf_counter()
        out = kernel(*args)
        jax.tree_util.tree_map(np.asarray, out) if to_host else jax.block_until_ready(out)
        return time.perf_counter() - t0

    first = call(True)
    host = min(call(True) for _ in range(repeats))
    device = min(call(False) for _ in range(repeats))
    return first, host, device


def numpy_all_outputs(inputs: GridInputs, acc):
    """Every candidate of every point by NumPy broadcasting: axes (row, hw, num_gpus, context, partition).
    The kernel's own code: given NumPy arrays, every physics function runs on NumPy (``physics/xp.py``)."""
    expand = lambda tree, shape: jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32).reshape(shape), tree)  # noqa: E731
    m = expand(inputs.rows, (-1, 1, 1, 1, 1))
    hw = expand(inputs.hardware, (1, -1, 1, 1, 1))
    parts = partitions_from_table(inputs.partitions.astype(np.float32)[None, None, :, None, :, :])
    wl = Workload(context=inputs.contexts.astype(np.float32).reshape(1, 1, 1, -1, 1), batch=np.float32(0))
    with np.errstate(divide="ignore", invalid="ignore"):  # where() evaluates both branches
        return decode_point(m, hw, parts, wl, acc)


def reference_sample(inputs: GridInputs, acc, n: int, seed: int = 0):
    """(points/s of the Python oracle, max relative step-time difference vs the float32 kernel)."""
    from dataclasses import asdict

    rng = np.random.default_rng(seed)
    shape = inputs.shape
    idx = {a: rng.integers(0, s, n) for a, s in shape.items()}
    p_idx = rng.integers(0, inputs.n_partitions, n)
    leaf = lambda tree, i: {k: float(v[i]) for k, v in vars(tree).items()}  # noqa: E731
    pts = [
        (
            leaf(inputs.rows, idx["row"][j]),
            leaf(inputs.hardware, idx["hardware"][j]),
            {f: float(x) for f, x in zip(PARTITION_FIELDS, inputs.partitions[idx["num_gpus"][j], p_idx[j]])},
            {"context": float(inputs.contexts[idx["context"][j]]), "batch": 0.0},
        )
        for j in range(n)
    ]
    acc_dict = {**asdict(acc)}
    t0 = time.perf_counter()
    ref = [reference_decode(m, hw, p, wl, acc_dict) for m, hw, p, wl in pts]
    rate = n / (time.perf_counter() - t0)
    batched = [stack([cls(**d[k]) for d in pts]) for k, cls in enumerate((ModelSpec, HardwareSpec, Partition))]
    wl = Workload(
        context=np.array([d[3]["context"] for d in pts]),
        batch=np.zeros(n),
        kappa=np.full(n, 5.0),
        draft_tokens=np.zeros(n),
        accepted=np.zeros(n),
    )
    out = jax.jit(jax.vmap(decode_point, in_axes=(0, 0, 0, 0, None)))(
        *cast(batched, jnp.float32), cast(wl, jnp.float32), cast(acc, jnp.float32)
    )
    ok = np.array([r["feasible"] for r in ref])
    kern = np.asarray(out.step_time)[ok]
    want = np.array([r["step_time"] for r in ref])[ok]
    return rate, float(np.max(np.abs(kern / want - 1))) if ok.any() else 0.0, int(ok.sum())


def stream(points: float, chunk: int) -> dict:
    """The main job on the frontier grid with enough contexts for ``points`` candidate evaluations."""
    base = _plan([])
    per_context = base.inputs.n_partitions * int(np.prod([v for k, v in base.inputs.shape.items() if k != "context"]))
    n_ctx = int(np.ceil(points / per_context))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _compose(
            [
                "+grid=frontier",
                "grid.batches=null",
                _contexts_override(n_ctx),
                f"parts_dir={tmp}/parts",
                f"max_chunk_evaluations={chunk}",
                "progress=false",
            ]
        )
        t0 = time.perf_counter()
        out = run(cfg, Path(tmp) / "stream.nc", sweep_columns(cfg), bounds_counter(cfg.grid.accounting))
        seconds = time.perf_counter() - t0
        size = out.stat().st_size
    evaluations = per_context * n_ctx
    return {
        "stream_evaluations": evaluations,
        "stream_s": seconds,
        "stream_points_per_s": evaluations / seconds,
        "stream_peak_rss_mb": _peak_rss_mb(),
        "stream_file_mb": size / 2**20,
    }


def breakeven_timing(points: float) -> dict:
    """κ* (optax + bisection cross-check) on the frontier grid widened to ``points`` points:
    the first call (with compilation) and a second, compiled one."""
    base = _plan([])
    models = base.row_map.shape[0]
    per_context = models * base.inputs.shape["hardware"] * base.inputs.shape["num_gpus"]
    cfg = _compose(["+grid=frontier", "grid.batches=null", _contexts_override(int(np.ceil(points / per_context)))])
    t0 = time.perf_counter()
    solve(cfg)
    first = time.perf_counter() - t0
    out, _, seconds = solve(cfg)
    s = summary_json(out, seconds)
    return {
        "breakeven_points": s["points"],
        "breakeven_s": seconds,
        "breakeven_compile_s": first - seconds,
        "breakeven_points_per_s": s["points"] / seconds,
        "breakeven_agree_fraction": s["agree"] / max(s["found"], 1),
    }


def device_scan(counts: list[int], repeats: int) -> dict:
    """Search-path evaluations/s of the frontier grid with 1, 2, 4, 8 … local devices (CPU: forced
    host devices, each run in a fresh process), whole chunks per device as in the main job."""
    out = {}
    for n in counts:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        proc = subprocess.run(
            [sys.executable, "-m", "moejax.bench", "--devices-only", "--repeats", str(repeats)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        out[str(n)] = json.loads(proc.stdout.strip().splitlines()[-1])["points_per_s"]
    return {"points_per_s_by_devices": out}


def devices_only(repeats: int) -> dict:
    """Evaluations/s of the search path through ``evaluate_chunks`` on all local devices, in chunks
    of a sixteenth of the frontier grid (so every device gets work)."""
    plan = _plan([])
    inputs = plan.inputs
    evaluations = inputs.n_partitions * int(np.prod(list(inputs.shape.values())))
    once = lambda: [
        r
        for *_, r in evaluate_chunks(
            inputs,
            0.0,
            plan.accounting,
            False,
            evaluations // 16,  # noqa: E731
            jnp.float32,
            devices=local_devices(),
        )
    ]
    once()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return {"devices": len(local_devices()), "points_per_s": evaluations / best}


def frontier_timing(contexts: int, chunk: int) -> dict:
    """Candidate evaluations/s of the frontier path (``+grid=frontier`` with its batch axis) through
    the main job's chunks: every partition × batch column of every point, the B_max search and the
    frontier reductions included; first pass (with compilation), then a timed pass; wall and CPU
    seconds (CPU time says what a shared machine hides), and this process's peak RSS."""
    from .engine.frontier import sweep_hooks

    cfg = _compose(["+grid=frontier", *([] if contexts <= 0 else [f"grid.contexts={[1024 * 4**i for i in range(contexts)]}"])])
    plan = build_plan(cfg.grid, False)
    hooks = sweep_hooks(plan.frontier, plan.accounting, jnp.float32, chunk, "f4")
    inputs = plan.inputs
    evaluations = inputs.n_partitions * int(np.prod(list(inputs.shape.values()))) * plan.frontier.n_columns

    def once():
        for *_, r in evaluate_chunks(inputs, 0.0, plan.accounting, False, hooks.max_evaluations, jnp.float32, extra=hooks.extra):
            pass

    t0, c0 = time.perf_counter(), time.process_time()
    once()
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    once()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "frontier_evaluations": evaluations,
        "frontier_batch_columns": plan.frontier.n_columns,
        "frontier_s": wall,
        "frontier_cpu_s": cpu,
        "frontier_points_per_s": evaluations / wall,
        "frontier_points_per_cpu_s": evaluations / cpu,
        "frontier_compile_s": first - wall,
        "frontier_compile_cpu_s": first_cpu - cpu,
        "frontier_peak_rss_mb": _peak_rss_mb(),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contexts", type=int, default=0, help="widen the grid to this many contexts (1k-16M); 0: frontier's 11")
    ap.add_argument("--reference-points", type=int, default=2000)
    ap.add_argument("--numpy-contexts", type=int, default=1, help="contexts of the grid NumPy evaluates")
    ap.add_argument("--numpy-rows", type=int, default=0, help="model rows of the grid NumPy evaluates (0: all)")
    ap.add_argument("--stream-points", type=float, default=1e9, help="0 skips the streamed main-job run")
    ap.add_argument("--stream-chunk", type=int, default=2**24)
    ap.add_argument("--breakeven-points", type=float, default=1e5, help="kappa* grid size; 0 skips it")
    ap.add_argument("--device-counts", default="", help="e.g. 1,2,4,8: search rate per local device count")
    ap.add_argument("--devices-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stream-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--frontier-contexts", type=int, default=0, help="frontier path: contexts 1k·4^i (0: the grid's 11; -1 skips)"
    )
    ap.add_argument("--frontier-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serving", default="", help="a silicon CSV: time its serving validation (and only that)")
    args = ap.parse_args(argv)
    if args.serving:
        result = serving_timing(args.serving)
        print(
            f"serving validation of {args.serving}: {result['serving_expressible']} of {result['serving_rows']} rows "
            f"expressible, read and resolved in {result['serving_read_s']:.1f} s"
        )
        print(f"{'path':<52} {'rows/s':>12}  notes")
        print(
            f"{'compiled, vmapped (agg and disagg passes)':<52} {result['serving_rows_per_s']:>12.3e}  "
            f"first call {result['serving_first_s']:.1f} s with compilation"
        )
        print(
            f"{'same physics code under NumPy, row by row':<52} {result['serving_numpy_rows_per_s']:>12.3e}  "
            f"max rel diff {result['serving_numpy_max_rel_diff']:.1e}"
        )
        print(f"python -m moejax.validate, fresh process, no compilation cache: {result['serving_validate_wall_s']:.1f} s wall")
        print(json.dumps(result))
        return result
    if args.devices_only:
        result = devices_only(args.repeats)
        print(json.dumps(result))
        return result
    if args.frontier_only:
        result = frontier_timing(args.frontier_contexts, args.stream_chunk)
        print(json.dumps(result))
        return result
    if args.stream_only:
        result = stream(args.stream_points, args.stream_chunk)
        print(json.dumps(result))
        return result

    plan = _plan([] if not args.contexts else [_contexts_override(args.contexts)])
    inputs, acc = plan.inputs, plan.accounting
    evaluations = inputs.n_partitions * int(np.prod(list(inputs.shape.values())))
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}"
    first_s, search_s, _ = time_kernel(inputs, acc, False, args.repeats, jnp.float32)
    first_all, all_s, all_device_s = time_kernel(inputs, acc, True, args.repeats, jnp.float32)

    sub = inputs.take("context", np.arange(min(args.numpy_contexts, inputs.shape["context"])))
    if args.numpy_rows > 0:  # NumPy runs ~1e6 evaluations/s: a slice keeps the cross-check quick
        sub = sub.take("row", np.arange(min(args.numpy_rows, inputs.shape["row"])))
    n_np = sub.n_partitions * int(np.prod(list(sub.shape.values())))
    t0 = time.perf_counter()
    numpy_out = numpy_all_outputs(sub, acc)
    numpy_s = time.perf_counter() - t0
    kernel_out = lifted_kernel(True)(*device_inputs(sub, jnp.float32), jnp.asarray(0.0, jnp.float32), cast(acc, jnp.float32))[0]
    ok = np.asarray(numpy_out.feasible) & np.asarray(kernel_out.feasible)
    # compared where both evaluated the same batch: a float32 rounding can move floor(B_max) by one sequence
    same = ok & (np.asarray(kernel_out.batch) == np.asarray(numpy_out.batch))
    numpy_diff = float(np.max(np.abs(np.asarray(kernel_out.step_time)[same] / np.asarray(numpy_out.step_time)[same] - 1)))
    batch_flips = int(ok.sum() - same.sum())

    ref_rate, ref_diff, ref_feasible = reference_sample(inputs, acc, args.reference_points)
    result = {
        "device": device,
        "grid_points": int(np.prod(list(inputs.shape.values()))),
        "evaluations": evaluations,
        "points_per_s": evaluations / all_s,
        "device_points_per_s": evaluations / all_device_s,
        "search_points_per_s": evaluations / search_s,
        "numpy_points_per_s": n_np / numpy_s,
        "numpy_evaluations": n_np,
        "reference_points_per_s": ref_rate,
        "compile_s": first_s - search_s,
        "compile_all_outputs_s": first_all - all_s,
        "numpy_max_rel_diff": numpy_diff,
        "numpy_batch_flips": batch_flips,
        "reference_max_rel_diff_float32": ref_diff,
        "reference_feasible_points": ref_feasible,
        "peak_rss_mb": _peak_rss_mb(),
    }
    if args.breakeven_points > 0:
        result.update(breakeven_timing(args.breakeven_points))
    if args.device_counts:
        result.update(device_scan([int(n) for n in args.device_counts.split(",")], args.repeats))
    if args.stream_points > 0:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "moejax.bench",
                "--stream-only",
                "--stream-points",
                str(args.stream_points),
                "--stream-chunk",
                str(args.stream_chunk),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    if args.frontier_contexts >= 0:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "moejax.bench",
                "--frontier-only",
                "--frontier-contexts",
                str(args.frontier_contexts),
                "--stream-chunk",
                str(args.stream_chunk),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = [
        ("compiled, best-partition search", result["search_points_per_s"], f"compile {result['compile_s']:.2f} s"),
        (
            "compiled, every candidate's full result, on host",
            result["points_per_s"],
            f"compile {result['compile_all_outputs_s']:.2f} s",
        ),
        ("  the same, left on the device", result["device_points_per_s"], "no device-to-host copy"),
        (
            "same kernel code under NumPy",
            result["numpy_points_per_s"],
            f"max rel diff {numpy_diff:.1e} ({batch_flips} B_max floors differ by 1)",
        ),
        ("pure-Python reference oracle", result["reference_points_per_s"], f"max rel diff {ref_diff:.1e} (float32 kernel)"),
    ]
    if "breakeven_points" in result:
        rows.append(
            (
                f"break-even kappa*, {result['breakeven_points']} points",
                result["breakeven_points_per_s"],
                f"{result['breakeven_s']:.1f} s compiled (+{result['breakeven_compile_s']:.0f} s compile), "
                f"{100 * result['breakeven_agree_fraction']:.0f}% agree with bisection",
            )
        )
    if "stream_points_per_s" in result:
        rows.append(
            (
                f"main job, {result['stream_evaluations']:.2e} evaluations streamed",
                result["stream_points_per_s"],
                f"peak RSS {result['stream_peak_rss_mb']:.0f} MB, {result['stream_s']:.1f} s",
            )
        )
    if "frontier_points_per_s" in result:
        rows.append(
            (
                f"frontier path, {result['frontier_evaluations']:.2e} evaluations "
                f"({result['frontier_batch_columns']} batch columns)",
                result["frontier_points_per_s"],
                f"{result['frontier_points_per_cpu_s']:.3g}/CPU-s, compile "
                f"{result['frontier_compile_s']:.0f} s, peak RSS {result['frontier_peak_rss_mb']:.0f} MB",
            )
        )
    for n, rate in result.get("points_per_s_by_devices", {}).items():
        rows.append((f"search via the main job's chunks, {n} local device(s)", rate, "evaluate_chunks"))
    print(
        f"moejax bench on {device}: frontier grid, {result['grid_points']} points x {inputs.n_partitions} candidate partitions "
        f"= {evaluations:.3e} evaluations"
    )
    print(f"{'path':<52} {'points/s':>12}  notes")
    for name, rate, note in rows:
        print(f"{name:<52} {rate:>12.3e}  {note}")
    print(f"peak RSS of this process: {result['peak_rss_mb']:.0f} MB")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
