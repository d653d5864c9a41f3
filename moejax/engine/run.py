"""Running a sweep: chunk by chunk on the local devices (and processes), each chunk written as an
atomic part keyed by a hash of the config, the resolved catalogue numbers and the package source,
then one CF netCDF dataset assembled from the parts. Runs of the same sweep take turns (a lock on
its parts directory); an interrupted run keeps its parts for the next one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np
import yaml
from tqdm import tqdm

from ..catalogue import HARDWARE_FIELDS
from ..physics.specs import SpecError
from ..version import __version__
from . import distributed, peers
from .config import SweepConfig, check_sizes, grid_source
from .dataset import (
    assemble,
    check_output,
    completed_chunks,
    disk_full_is_one_line,
    estimated_bytes,
    parts_lock,
    write_part,
)
from .frontier import sweep_hooks
from .grid import chunk_plan, evaluate_chunks, local_devices, n_chunks
from .interrupts import safe_points
from .plan import SweepPlan, build_plan, mask_missing_baselines, partition_space_json
from .workloads import serving_derive

AXES_OF_POINTS = ("model", "variant", "kappa", "hardware", "num_gpus", "context")


def science_config(cfg: SweepConfig) -> dict:
    """The part of the config that determines the numbers (hashed for resume, stored in attrs)."""
    return {
        "grid": grid_source(cfg),
        "precision": cfg.precision,
        "keep_partitions": cfg.keep_partitions,
        "max_chunk_evaluations": cfg.max_chunk_evaluations,
        "sensitivities": cfg.sensitivities,
        "moejax_version": __version__,
    }


class _Dumper(yaml.Dumper):
    """YAML as the config has always been recorded (OmegaConf's): strings that would read back as
    a boolean or a number are quoted."""


_YAML_BOOLS = {v for word in ("y", "yes", "n", "no", "true", "false", "on", "off") for v in (word, word.title(), word.upper())}


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as an int or a float."""
    try:
        float(text)
        return True
    except ValueError:
        return False


_Dumper.add_representer(
    str,
    lambda dumper, data: dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="'" if data in _YAML_BOOLS or _is_number(data) else None
    ),
)


def science_text(cfg: SweepConfig) -> str:
    """``science_config`` as YAML: stored in the dataset's ``config`` attribute and hashed for resume
    (byte-identical to the text earlier versions wrote, so their parts and datasets keep their hashes)."""
    return yaml.dump(science_config(cfg), Dumper=_Dumper, default_flow_style=False, allow_unicode=True, sort_keys=False)


def resolved_specs(plan: SweepPlan) -> str:
    """The numbers the catalogue names resolved to (model rows incl. baselines, hardware), as
    JSON: stored in the dataset and hashed, so an edited catalogue never resumes stale parts."""
    leaves = lambda spec: {k: np.asarray(v).tolist() for k, v in vars(spec).items()}  # noqa: E731
    return json.dumps({"rows": leaves(plan.inputs.rows), "hardware": leaves(plan.inputs.hardware)}, sort_keys=True)


def _code_digest() -> str:
    """Hash of the package's source: parts computed by other code are never reused."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parents[1].rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a sweep; the message says how many chunks were kept, and where."""


def check_size(cfg: SweepConfig, plan: SweepPlan, hooks, derived_bytes=None) -> int:
    """Refuse, before computing, a dataset larger than ``max_output_bytes`` (uncompressed), the
    frontier's variables (``hooks``) and those ``derived_bytes(plan, hooks, float_dtype)`` counts included;
    returns the estimate (bytes)."""
    limit = cfg.max_output_bytes
    size = estimated_bytes(plan.coords, "f8" if cfg.precision == "float64" else "f4", cfg.keep_partitions, cfg.sensitivities)
    points = math.prod(len(plan.coords[d][0]) for d in AXES_OF_POINTS)
    float_dtype = "f8" if cfg.precision == "float64" else "f4"
    size += sum(
        points
        * math.prod(len(hooks.dims[d][0]) for d in var.dims[len(AXES_OF_POINTS) :])
        * np.dtype(var.numpy_dtype(float_dtype)).itemsize
        for var in hooks.variables
    )
    size += derived_bytes(plan, hooks, float_dtype) if derived_bytes is not None and not cfg.keep_partitions else 0
    if size > limit:
        cells = int(np.prod([len(v) for v, _ in plan.coords.values()]))
        raise SpecError(
            f"max_output_bytes = {limit:.3g} is invalid for this grid: its dataset would take about "
            f"{size / 1e9:.3g} GB ({cells:.3g} cells, before compression); raise the limit "
            f"(max_output_bytes={size * 1.1:.2g}) or shrink the grid"
        )
    return size


def run(cfg: SweepConfig, out: Path, derive=None, derived_bytes=None) -> Path | None:
    """Evaluate the grid chunk by chunk (resuming from completed parts) and write ``out``; with
    several processes each evaluates its share and process 0 writes ``out`` (others return None).
    ``derive(plan)``, if given, returns a function that adds derived variables to the open dataset
    (the qs columns, κ*, intervals); it is not called with ``keep_partitions``; ``derived_bytes(plan,
    hooks, float_dtype)``, if given, the bytes it adds beyond the point variables (the size check
    counts them). ``out`` must not exist unless
    ``cfg.overwrite``. ``cfg`` is validated (``SweepConfig.validate``); the plan is built here, once,
    and handed to ``derive``. Ctrl-C raises ``Interrupted``, the parts kept.

    64-bit JAX types are on exactly for ``precision=float64``, whatever the caller's setting (and the
    caller's setting is restored): the plan's host-side solves (the dense baselines) then round alike
    in a command and in a library call from a float64 session, so both write the same file."""
    with jax.enable_x64(cfg.precision == "float64"):
        return _run(cfg, out, derive, derived_bytes)


def _run(cfg: SweepConfig, out: Path, derive, derived_bytes) -> Path | None:
    check_sizes(cfg)  # before anything the grid's sizes scale is allocated
    plan = build_plan(cfg.grid, cfg.keep_partitions)
    text = science_text(cfg)
    specs = resolved_specs(plan)
    devices = local_devices()  # whole chunks per device: the chunk layout, and so the parts, do not depend on it
    digest = hashlib.sha256((text + specs + _code_digest()).encode()).hexdigest()[:16]
    pid, n_proc = jax.process_index(), jax.process_count()  # joined in grid_job, before any JAX use
    if n_proc > 1:
        distributed.check_same_config(digest)
    parts_dir = Path(cfg.parts_dir) / digest
    dtype = np.float64 if cfg.precision == "float64" else np.float32
    hooks = sweep_hooks(plan.frontier, plan.accounting, dtype, cfg.max_chunk_evaluations, "f8" if dtype == np.float64 else "f4")
    size = check_size(cfg, plan, hooks, derived_bytes)
    total = n_chunks(plan.inputs, hooks.max_evaluations)
    overwrite = bool(cfg.overwrite)
    with parts_lock(parts_dir) if pid == 0 else contextlib.nullcontext():  # other processes: process 0's share
        try:
            if pid == 0:
                check_output(out, overwrite)  # again: a run this one waited for may have written it
            written = _evaluate(cfg, plan, hooks, parts_dir, total, pid, n_proc, devices)
            if written:
                _assemble(cfg, plan, hooks, parts_dir, total, out, text, specs, derive, overwrite, size)
        except KeyboardInterrupt:
            kept = len(list(parts_dir.glob("part-*.nc")))
            raise Interrupted(f"{kept} of {total} chunks kept in {parts_dir}; rerun the same command to resume") from None
        except SpecError:  # e.g. out= written meanwhile by a run this one waited for
            if pid == 0 and not any(parts_dir.glob("part-*.nc")):
                shutil.rmtree(parts_dir, ignore_errors=True)
            raise
        if not written:
            return None
        shutil.rmtree(parts_dir)
    return out


LOG_PROGRESS_S = 30.0  # progress=auto off a terminal: first report after this many seconds, then at most this often


def _evaluate(cfg, plan: SweepPlan, hooks, parts_dir: Path, total: int, pid: int, n_proc: int, devices) -> bool:
    """Compute this process's missing chunks into parts; whether this process assembles."""
    mine = {c for c in range(total) if c % n_proc == pid}
    done = completed_chunks(parts_dir, owned=mine) | set(range(total)) - mine
    per_chunk = plan.inputs.n_partitions * int(np.prod(list(plan.inputs.shape.values()))) / total
    tty = sys.stderr.isatty()
    show = cfg.progress is True or (cfg.progress == "auto" and total - len(done) > 1)
    # auto, not on a terminal (a log, CI): nothing for a short run; a run past LOG_PROGRESS_S reports then, and
    # every LOG_PROGRESS_S after, so a long run is never silent
    quiet = cfg.progress == "auto" and not tty
    dtype = np.float64 if cfg.precision == "float64" else np.float32
    start = time.perf_counter()
    with (
        safe_points() as pending,
        tqdm(
            total=total,
            initial=len(done),
            unit="chunk",
            disable=not show,
            file=sys.stderr,
            delay=LOG_PROGRESS_S if quiet else 0.0,
            mininterval=LOG_PROGRESS_S if quiet else 0.1,
        ) as bar,
    ):
        for cid, axis, positions, results in evaluate_chunks(
            plan.inputs,
            plan.batch,
            plan.accounting,
            cfg.keep_partitions,
            hooks.max_evaluations,
            dtype,
            skip=done,
            sensitivities=cfg.sensitivities,
            devices=devices,
            extra=hooks.extra,
        ):
            mask_missing_baselines(plan, axis, positions, results)
            with disk_full_is_one_line("parts_dir", parts_dir, sum(np.asarray(v).nbytes for v in results.values())):
                write_part(parts_dir, cid, axis, positions, results, hooks.trailing)
            bar.update(1)
            bar.set_postfix_str(
                f"{per_chunk * (bar.n - len(done)) / (time.perf_counter() - start):.3g} evaluations/s", refresh=not quiet
            )  # a refresh ignores tqdm's delay
            pending.check()  # Ctrl-C stops here, between two written parts
    if n_proc > 1:
        distributed.barrier("moejax: all parts written")
        peers.peers_done()
    return pid == 0  # process 0 assembles the dataset


def _assemble(
    cfg,
    plan: SweepPlan,
    hooks,
    parts_dir: Path,
    total: int,
    out: Path,
    text: str,
    specs: str,
    derive,
    overwrite: bool,
    size: int,
) -> None:
    missing = set(range(total)) - completed_chunks(parts_dir, owned=set())
    if missing:
        raise RuntimeError(f"{len(missing)} of {total} parts missing in {parts_dir} (rerun the same command)")
    dtype = np.float64 if cfg.precision == "float64" else np.float32
    acc = plan.accounting
    attrs = {
        "title": f"moejax decode sweep: grid {cfg.grid.name}",
        "Conventions": "CF-1.10",
        "source": f"moejax {__version__} (jax {jax.__version__})",
        "config": text,
        "resolved_specs": specs,
        "grid": cfg.grid.name,
        "accounting_mode": acc.mode,
        "accounting": json.dumps({k: float(v) for k, v in vars(acc).items() if not isinstance(v, str | bool)}),
        "expert_traffic": acc.expert_traffic,
        "roofline": acc.roofline,
        "integer_batch": int(acc.integer_batch),
        "dense_baseline_family": cfg.grid.baseline,
        "batch_policy": str(cfg.grid.batch),
        "partition_search": "all candidates kept" if cfg.keep_partitions else "best feasible partition by throughput_per_gpu",
        "partition_space": partition_space_json(cfg.grid),
        "precision": cfg.precision,
        "comment": "MoE rows (variant=moe) do not depend on kappa and are repeated along it.",
    }
    baseline = ("baseline_exists", plan.baseline_exists.astype(np.int8))
    hardware_numbers = [
        (f"hw_{f}", np.asarray(getattr(plan.inputs.hardware, f))) for f in HARDWARE_FIELDS
    ]  # each accelerator's numbers, design spaces included
    float_dtype = "f8" if dtype == np.float64 else "f4"
    derives = [serving_derive(plan, [var.name for var in hooks.variables], float_dtype)]  # isl/osl, economics
    if not cfg.keep_partitions and derive is not None:
        derives.append(derive(plan))
    with safe_points() as pending:

        def derive_all(nc):
            for d in derives:
                d(nc)
                pending.check()

        with disk_full_is_one_line("out", out, size):  # size: check_size's estimate, before compression
            assemble(
                out,
                parts_dir,
                plan.coords,
                plan.row_map,
                attrs,
                float_dtype,
                plan.inputs.partitions if cfg.keep_partitions else None,
                extra=[baseline, *hardware_numbers],
                sensitivities=cfg.sensitivities,
                derive=derive_all,
                extra_dims=hooks.dims,
                extra_vars=hooks.variables,
                overwrite=overwrite,
                checkpoint=pending.check,
                split=chunk_plan(plan.inputs.shape, plan.inputs.n_partitions, hooks.max_evaluations),
            )
