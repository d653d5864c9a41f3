"""Structured-config schemas (Hydra ConfigStore) for sweeps, and their semantic validation.

Hydra checks types against these dataclasses when it composes the config; ``validate_grid``
checks values and catalogue names, raising one-line ``SpecError``s.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from ..catalogue import DTYPE_BYTES, available, model_entry
from ..physics.baseline import FAMILIES
from ..physics.specs import EXPERT_TRAFFIC, KV_MODES, ROOFLINES, Accounting, SpecError


@dataclasses.dataclass
class PartitionsConf:
    tp: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8])
    ep: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    pp: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4])
    dp_attn: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8])
    kvp: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8])
    kv_modes: list[str] = dataclasses.field(default_factory=lambda: ["kvp", "cp"])
    dense_tp: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8])
    redundant_experts: list[int] = dataclasses.field(default_factory=lambda: [0])


@dataclasses.dataclass
class DtypesConf:
    """Serving dtypes of every model of a grid (moejax.catalogue.load_model keys); None keeps the
    catalogue entry's (or the loader's default)."""

    weights: Optional[str] = "fp8"  # noqa: UP007
    kv: Optional[str] = "bf16"  # noqa: UP007
    activations: Optional[str] = "bf16"  # noqa: UP007
    experts: Optional[str] = None  # noqa: UP007
    embeddings: Optional[str] = None  # noqa: UP007
    gemm: Optional[str] = None  # noqa: UP007
    attention: Optional[str] = None  # noqa: UP007
    dispatch: Optional[str] = None  # noqa: UP007


# The Hydra schema of ``Accounting``: ``mode`` names the preset (conf/accounting/: realistic or sol);
# every other field is unset (None: the preset's value) or overrides the preset.
AccountingConf = dataclasses.make_dataclass(
    "AccountingConf",
    [("mode", str, "realistic")]
    + [
        (f.name, Optional[type(f.default) if f.metadata.get("static") else float], None)  # noqa: UP007 (Hydra needs Optional)
        for f in dataclasses.fields(Accounting)
        if f.name != "mode"
    ],
)


@dataclasses.dataclass
class InteractivityConf:
    """``grid.interactivity``: the frontier's levels, ``count`` log-spaced tokens/s per user."""

    min: float = 1.0
    max: float = 1000.0
    count: int = 31


@dataclasses.dataclass
class SloConf:
    """``grid.slo``: the best configuration meeting every limit set (None: no limit), e.g.
    ``grid.slo.tpot_max=0.05`` (s per output token)."""

    tpot_max: Optional[float] = None  # noqa: UP007 (Hydra needs Optional)
    tokens_per_s_per_user_min: Optional[float] = None  # noqa: UP007
    ttft_max: Optional[float] = None  # noqa: UP007


@dataclasses.dataclass
class HardwareSpaceConf:
    """``grid.hardware_space``: multipliers on each catalogue accelerator's numbers (``flops``
    scales every precision), ``island_size`` absolute GPU counts; None leaves a quantity as it is.
    Set from the command line as ``grid.hardware_space.hbm_bw=[1,2]``."""

    hbm_bw: Optional[list[float]] = None  # noqa: UP007 (Hydra needs Optional)
    hbm_bytes: Optional[list[float]] = None  # noqa: UP007
    flops: Optional[list[float]] = None  # noqa: UP007
    intra_bw: Optional[list[float]] = None  # noqa: UP007
    inter_bw: Optional[list[float]] = None  # noqa: UP007
    intra_latency: Optional[list[float]] = None  # noqa: UP007
    inter_latency: Optional[list[float]] = None  # noqa: UP007
    island_size: Optional[list[float]] = None  # noqa: UP007


@dataclasses.dataclass
class GridConf:
    name: str = MISSING
    models: list[str] = MISSING
    kappas: list[float] = dataclasses.field(default_factory=lambda: [5.0])
    baseline: str = "keep-attention"
    hardware: list[str] = MISSING
    num_gpus: list[int] = MISSING
    contexts: Optional[list[float]] = None  # noqa: UP007  tokens; or grid.workloads (one of the two)
    workloads: Any = None  # {isl, osl} or a list of them: contexts isl + osl/2, TTFT and serving (engine/workloads.py)
    prefill_chunk: float = 0.0  # prompt tokens per decode step in chunked prefill (<= 0: the whole prompt in one step)
    economics: Any = None  # {price_per_gpu_hour: {hardware: USD}, board_power: {hardware: W}}: catalogue overrides
    batch: Any = "bmax"  # "bmax" or sequences per replica
    batches: Any = None  # [1, 2, 4, ...] sequences per replica: batch as a search axis + the frontier (engine/frontier.py)
    interactivity: InteractivityConf = dataclasses.field(default_factory=InteractivityConf)  # frontier levels
    slo: SloConf = dataclasses.field(default_factory=SloConf)  # limits on tpot / tokens/s/user / ttft
    hardware_space: HardwareSpaceConf = dataclasses.field(default_factory=HardwareSpaceConf)  # all None: no design space
    partitions: PartitionsConf = dataclasses.field(default_factory=PartitionsConf)
    dtypes: DtypesConf = dataclasses.field(default_factory=DtypesConf)
    accounting: AccountingConf = dataclasses.field(default_factory=AccountingConf)


@dataclasses.dataclass
class BreakevenConf:
    """κ* solver settings (moejax.analysis.breakeven)."""

    include: bool = False  # the sweep adds kappa_star variables to its dataset
    kappa_min: float = 0.25
    kappa_max: float = 64.0
    bisection_steps: int = 16
    rounds: int = 6
    adam_steps: int = 60
    learning_rate: float = 0.2
    tolerance: float = 1e-3


@dataclasses.dataclass
class SweepConf:
    grid: Any = None  # a GridConf, chosen with +grid=NAME
    model: Any = None  # set by the optional `model=NAME` group: replaces grid.models
    hardware: Any = None  # set by the optional `hardware=NAME` group: replaces grid.hardware
    out: Any = None  # dataset path; default: sweep.nc in the Hydra run directory
    overwrite: Any = False  # replace an existing out= file
    max_output_bytes: float = 8e9  # refuse a dataset estimated larger (uncompressed), before computing
    max_memory_bytes: float = 4e9  # refuse a grid whose inputs (levels, design space, candidates) need more, before allocating
    parts_dir: str = "outputs/.parts"  # completed chunks, kept until the dataset is written
    precision: str = "float32"
    keep_partitions: Any = False
    sensitivities: Any = False  # add elasticities of throughput to hardware quantities
    max_chunk_evaluations: int = 2**24  # candidate evaluations per chunk: bounds memory
    progress: Any = "auto"  # auto | true | false
    summary: Any = True
    compilation_cache: Any = "~/.cache/moejax/jax"  # persistent JAX compilation cache; null disables
    breakeven: BreakevenConf = dataclasses.field(default_factory=BreakevenConf)
    distributed: Any = None  # conf/distributed/: none | env | slurm


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="sweep_schema", node=SweepConf)
    cs.store(group="grid", name="grid_schema", node=GridConf)


INT32_MAX = 2**31 - 1  # coordinates and degrees are stored as int32


def _positive(field: str, values, integer: bool = False, zero: bool = False) -> None:
    """Every value a finite number > 0 (>= 0 with ``zero``); with ``integer``, whole and <= ``INT32_MAX``."""
    if not values:
        raise SpecError(f"{field} = [] is invalid: needs at least one value")
    for v in values:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (v >= 0 if zero else v > 0)
        if not ok or (integer and (int(v) != v or v > INT32_MAX)):
            kind = f"integer <= {INT32_MAX}" if integer else "number"
            raise SpecError(f"{field} = {v!r} is invalid: must be a {'non-negative' if zero else 'positive'} {kind}")


def validate_partitions(prefix: str, partitions) -> None:
    """A partition search space (``grid.partitions``, the point's ``partitions``): every degree a
    non-empty list of positive integers (``redundant_experts``: >= 0), ``kv_modes`` a non-empty list
    of kvp, cp."""
    for field in ("tp", "ep", "pp", "dp_attn", "kvp", "dense_tp", "redundant_experts", "kv_modes"):
        values = partitions.get(field)
        if values is None:
            continue
        if not isinstance(values, list | tuple) and not OmegaConf.is_list(values):
            raise SpecError(f"{prefix}.{field} = {values!r} is invalid: must be a list, e.g. {prefix}.{field}=[{values}]")
        if field == "kv_modes":
            if not values:
                raise SpecError(f"{prefix}.kv_modes = [] is invalid: needs at least one of {', '.join(KV_SPLITS)}")
            for mode in values:
                _choice(f"{prefix}.kv_modes", mode, KV_SPLITS)
        else:
            _positive(f"{prefix}.{field}", list(values), integer=True, zero=field == "redundant_experts")


KV_SPLITS = [m for m in KV_MODES if KV_MODES[m]]  # kvp, cp: how kvp > 1 splits the KV sequence
FLAGS = ("overwrite", "keep_partitions", "sensitivities", "summary")  # true or false, nothing else


def validate_flags(cfg) -> None:
    """The sweep's on/off settings are YAML booleans: ``overwrite=-815`` or ``keep_partitions='1'``
    are refused, not read as true (the schema leaves them open so Hydra does not convert them)."""
    for field in FLAGS:
        value = cfg.get(field)
        if field in cfg and not isinstance(value, bool):
            raise SpecError(f"{field} = {value!r} is invalid: must be true or false")


def _choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise SpecError(f"{field} = {value!r} is invalid: allowed {', '.join(map(str, allowed))}")


def validate_chunking(max_chunk_evaluations) -> None:
    """``max_chunk_evaluations`` bounds the memory of every chunked command: a positive integer."""
    if isinstance(max_chunk_evaluations, bool) or not (isinstance(max_chunk_evaluations, int) and max_chunk_evaluations > 0):
        raise SpecError(f"max_chunk_evaluations = {max_chunk_evaluations!r} is invalid: must be a positive integer")


def validate_breakeven(be) -> None:
    _positive("breakeven.kappa_min", [be.kappa_min])
    _positive("breakeven.kappa_max", [be.kappa_max])
    if be.kappa_min >= be.kappa_max:
        raise SpecError(f"breakeven.kappa_min = {be.kappa_min} is invalid: must be below kappa_max = {be.kappa_max}")
    for field in ("bisection_steps", "rounds", "adam_steps"):
        _positive(f"breakeven.{field}", [be[field]], integer=True)
    _positive("breakeven.learning_rate", [be.learning_rate])
    _positive("breakeven.tolerance", [be.tolerance])


def _check_moe(name: str) -> None:
    """A grid's models are MoEs (their dense baselines are derived from them)."""
    experts = model_entry(name)["architecture"].get("n_experts", 1)
    if isinstance(experts, int | float) and experts <= 1:
        moes = [m for m in available("model") if model_entry(m)["architecture"].get("n_experts", 1) > 1]
        raise SpecError(
            f"grid.models = {name!r} is invalid: it is a dense model (n_experts = {experts}); a grid's models are "
            f"MoEs, their dense baselines derived from them: allowed {', '.join(moes)}"
        )


def validate_grid(grid, precision: str) -> None:
    """Values and names of a composed grid config; one-line ``SpecError`` on the first problem."""
    for field, kind in (("models", "model"), ("hardware", "hardware")):
        names = list(grid[field])
        if not names:
            raise SpecError(f"grid.{field} = [] is invalid: needs at least one {kind} name")
        for name in names:
            if not str(name).endswith((".yaml", ".json")):  # a path is checked when it is loaded
                _choice(f"grid.{field}", name, available(kind))
        if len(set(names)) != len(names):
            raise SpecError(f"grid.{field} = {names!r} is invalid: names must be unique")
    _positive("grid.kappas", list(grid.kappas))
    _positive("grid.num_gpus", list(grid.num_gpus), integer=True)
    if grid.get("contexts") is not None:  # whole tokens (a workload's isl + osl/2 may be a half)
        _positive("grid.contexts", list(grid.contexts), integer=True)
    for field in ("kappas", "num_gpus", "contexts"):
        if grid.get(field) is not None and len(set(grid[field])) != len(grid[field]):
            raise SpecError(f"grid.{field} = {list(grid[field])!r} is invalid: values must be unique")
    validate_partitions("grid.partitions", grid.partitions)
    if grid.batch != "bmax":  # sequences per replica: whole ones unless the accounting is continuous
        if isinstance(grid.batch, str):
            raise SpecError(f"grid.batch = {grid.batch!r} is invalid: bmax or a positive integer (sequences per replica)")
        _positive("grid.batch", [grid.batch], integer=grid.accounting.get("integer_batch") is not False)
    for name in grid.models:
        _check_moe(name)
    _choice("grid.baseline", grid.baseline, FAMILIES)
    for field, name in grid.dtypes.items():
        if name is not None:
            _choice(f"grid.dtypes.{field}", name, DTYPE_BYTES)
    _choice("grid.accounting.mode", grid.accounting.mode, available("accounting"))
    if grid.accounting.expert_traffic is not None:
        _choice("grid.accounting.expert_traffic", grid.accounting.expert_traffic, EXPERT_TRAFFIC)
    if grid.accounting.roofline is not None:
        _choice("grid.accounting.roofline", grid.accounting.roofline, ROOFLINES)
    _choice("precision", precision, ("float32", "float64"))
    if not isinstance(grid.get("prefill_chunk"), int | float) or not math.isfinite(grid.prefill_chunk):
        raise SpecError(f"grid.prefill_chunk = {grid.get('prefill_chunk')!r} is invalid: a number of tokens (<= 0: whole prompt)")


# Working memory per item, bytes (Python objects, NumPy and device copies; measured, rounded up):
LEVEL_BYTES = 64  # one interactivity level or batch (float64 + float32 arrays, a tuple entry)
HARDWARE_BYTES = 4096  # one design-space accelerator (spec object ~250 B, name, stacked leaves, hw_* variables)
CANDIDATE_BYTES = 256  # one enumerated partition combination per cluster size (a row of 9 floats as lists, then arrays)
CELL_BYTES = 27  # the smallest dataset cell: 16 float32 variables + 2 int8 flags + ... (dataset.estimated_bytes)


def _count(value) -> int:
    return 0 if value is None else 1 if not isinstance(value, list | tuple) and not OmegaConf.is_list(value) else len(value)


def available_memory_bytes() -> float | None:
    """Memory this machine can give a new allocation now: ``MemAvailable`` of ``/proc/meminfo``
    (Linux), else free physical pages (``sysconf``); None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_sizes(cfg) -> None:
    """Refuse, from the config alone and before anything is allocated, a grid whose inputs need more
    than ``max_memory_bytes`` of working memory (interactivity levels, batches, design-space
    accelerators, partition candidates) or whose dataset would exceed ``max_output_bytes``
    (uncompressed; a lower bound here, the exact estimate follows once the plan is built). One-line
    ``SpecError`` naming the field. Call after ``validate_grid``."""
    grid = cfg.grid
    budget, limit = cfg.get("max_memory_bytes", 4e9), cfg.get("max_output_bytes", float("inf"))
    for field, value in (("max_memory_bytes", budget), ("max_output_bytes", limit)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise SpecError(f"{field} = {value!r} is invalid: must be a positive number of bytes")
    available = available_memory_bytes()
    machine = available is not None and available < budget  # the machine, not the setting, is the limit
    setting = budget
    if machine:
        budget = available
    levels = int(grid.interactivity["count"]) if grid.get("interactivity") is not None else 0
    batches = _count(grid.get("batches"))
    space = {k: _count(v) for k, v in (grid.get("hardware_space") or {}).items() if v is not None}
    hardware = len(grid.hardware) * math.prod(space.values())
    candidates = math.prod(len(grid.partitions[f]) for f in grid.partitions) * len(grid.num_gpus)

    def over(field, value, need):
        if need > budget and machine:
            raise SpecError(
                f"{field} = {value} is invalid: it needs about {need / 1e9:.3g} GB of working memory, over "
                f"the {budget / 1e9:.3g} GB this machine has available (MemAvailable, below max_memory_bytes = "
                f"{setting:.3g}); shrink it or free memory"
            )
        if need > budget:
            raise SpecError(
                f"{field} = {value} is invalid: it needs about {need / 1e9:.3g} GB of working memory, over "
                f"max_memory_bytes = {budget:.3g}; shrink it (or raise max_memory_bytes={need * 1.1:.2g})"
            )

    over("grid.interactivity.count", levels, levels * LEVEL_BYTES)
    over("grid.batches", f"[{batches} values]", batches * LEVEL_BYTES)
    over(
        "grid.hardware_space",
        f"{' x '.join(f'{n} {k}' for k, n in space.items())} values ({hardware:.3g} accelerators)",
        hardware * HARDWARE_BYTES,
    )
    over(
        "grid.partitions",
        f"{math.prod(len(grid.partitions[f]) for f in grid.partitions):.3g} combinations",
        candidates * CANDIDATE_BYTES,
    )
    contexts = _count(grid.get("contexts")) if grid.get("contexts") is not None else _count(grid.get("workloads"))
    cells = len(grid.models) * 2 * len(grid.kappas) * hardware * len(grid.num_gpus) * max(contexts, 1)
    frontier = batches or grid.get("workloads") is not None or any(v is not None for v in (grid.get("slo") or {}).values())
    size = cells * (CELL_BYTES + (4 * (levels + batches) if frontier else 0))
    if size > limit:
        raise SpecError(
            f"max_output_bytes = {limit:.3g} is invalid for this grid: its dataset would take at least "
            f"{size / 1e9:.3g} GB ({cells:.3g} cells, before compression); raise the limit "
            f"(max_output_bytes={size * 1.1:.2g}) or shrink the grid"
        )
